"""Benchmark: what the studio costs on top of diffusers, and what resident adapters save.

    .venv/bin/python bench/studio_overhead.py [--model NAME] [--lora NAME:W] [--tiny] [--data DIR]

The quick suite's `cold`, `generation`, `lora_switch` and `pixel` benchmarks (studio.features.benchmarks, the
code `dgx-pixels bench` runs):
  1. opening a studio and its first sprite (the model loaded from disk);
  2. one generation through the studio (queue + manager + DuckDB + PNG writes) vs the same direct diffusers call
     on the same resident pipeline (goal: ratio <= 1.05);
  3. switching a LoRA on/off via resident peft adapters vs reloading the pipeline with it (goal: >= 20x);
  4. the pixel engine's seconds per image on the bundled sample renders.
Default model: the studio's (the tiny demo SDXL on a fresh checkout: CPU, float32).
"""

from __future__ import annotations

import sys

from _suite import main

if __name__ == "__main__":
    sys.exit(main("studio_overhead", __doc__, "quick", ("cold", "generation", "lora_switch", "pixel")))
