"""Benchmark: LoRA training steps with cached latents + text embeddings vs encoding every step (goal: >= 1.5x).

    .venv/bin/python bench/training_cache.py [--model NAME] [--tiny] [--data DIR]

The standard suite's `training` benchmark (studio.features.benchmarks): two trainers on the model's diffusers
folder at its native size, one step each in turn (a busy neighbour slows both alike), steps/s and peak memory
per mode (torch's peak allocation on CUDA, process RSS on a CPU). On CUDA bf16 with gradient checkpointing, as
the presets train. The most caching can give is (encode + step) / step.
"""

from __future__ import annotations

import sys

from _suite import main

if __name__ == "__main__":
    sys.exit(main("training_cache", __doc__, "standard", ("training",)))
