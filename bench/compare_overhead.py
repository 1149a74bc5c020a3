"""Benchmark: a 4-way Compare battle vs four single generations of the same contenders (goal: <= 1.1x).

    .venv/bin/python bench/compare_overhead.py [--model NAME] [--lora NAME:W] [--tiny] [--data DIR]

The standard suite's `battle` benchmark (studio.features.benchmarks). Contenders: the base alone and the base
with one LoRA (the one named, else a random one) at weights 1.0, 0.5 and 1.5, on the resident model. The battle
switches adapters between contenders; a reload would show up here.
"""

from __future__ import annotations

import sys

from _suite import main

if __name__ == "__main__":
    sys.exit(main("compare_overhead", __doc__, "standard", ("battle",)))
