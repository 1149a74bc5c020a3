"""Benchmark: full-size SDXL with random weights on the GPU, through the studio's own code.

    .venv/bin/python bench/sdxl_gpu.py                  # CUDA: SDXL base 1.0's architecture at 1024 px
    .venv/bin/python bench/sdxl_gpu.py --model NAME     # the same phases on one of the studio's checkpoints
    .venv/bin/python bench/sdxl_gpu.py --tiny           # the tiny demo architecture (CPU smoke run)

The gpu suite (studio.features.benchmarks; `dgx-pixels bench --suite gpu` runs the same). No SDXL weights can be
downloaded here, so the weights are random: the timings and memory are the real network's, the pictures noise.
A phase that fails records its error and the next one runs.
  build        construct on the device, save as a diffusers folder (skipped with --model)
  cold         a studio opened + its first generation: load from disk, to the device
  generation   1024 px, 30 steps, CFG 5 through the studio vs a direct diffusers call, interleaved
  lora_switch  a rank-32 LoRA: first generation with it, base <-> LoRA switch times, a reload for scale
  tiles        one seamless tileset render vs the same render plain (the cost of circular padding)
  training     LoraTrainer at native size, bf16, gradient checkpointing, rank 32: cached vs encoded steps/s
Every phase adds its peak memory (torch's peak allocation on CUDA; on DGX-Spark's unified memory also the
system's, from /proc/meminfo).
"""

from __future__ import annotations

import sys

from _suite import main

PHASES = ["build", "cold", "generation", "lora_switch", "tiles", "training"]

if __name__ == "__main__":
    sys.exit(main("sdxl_gpu", __doc__, "gpu", extra={
        "--only": {"nargs": "*", "choices": PHASES, "help": "run only these phases (build runs first anyway)"}}))
