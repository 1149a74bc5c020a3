"""Benchmark: LoRA training steps with cached latents + text embeddings vs encoding every step.

    .venv/bin/python bench/training_cache.py [--steps 40] [--warmup 3] [--size PX] [--batch 1] [--model PATH]

The runner encodes each image (VAE) and caption (both CLIP encoders) once before the loop;
`cache_latents=False` runs the VAE and text encoders on every step instead. Each mode runs in a fresh
child process so its memory figure is its own (process RSS on CPU, peak CUDA allocation on a GPU); the
speed ratio comes from a third process that alternates one step of each, so a busy neighbour slows both
alike. Goal: cached >= 1.5x steps/s. The most caching can give is (encode + step) / step. Images are the
model's native size unless --size says otherwise (128 px for the tiny demo model, 1024 for SDXL), as the
presets train at native size. The tiny demo model (default; CPU, float32, one thread) is shaped like SDXL
where cost is concerned (VAE at full resolution, UNet on 1/8 latents), but its proportions are not SDXL's:
pass --model to measure a real one.
Results: bench/results/training_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
GOAL = 1.5


def make_dataset(folder: Path, size: int, n: int = 4) -> list:
    """n blocky pixel-art-like images with captions (what a prepared dataset looks like)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        cells = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        images.append(Image.fromarray(np.kron(cells, np.ones((8, 8, 1), dtype=np.uint8))))
    return images


def native_size(model: Path) -> int:
    """The image side the base was trained at: UNet sample size x the VAE's downsampling."""
    unet = json.loads((model / "unet" / "config.json").read_text(encoding="utf-8"))
    vae = json.loads((model / "vae" / "config.json").read_text(encoding="utf-8"))
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def worker(args) -> dict:
    """One mode in this process: prepare the trainer, warm up, then time `steps` training steps."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from training.lora import LoraTrainConfig, LoraTrainer
    from training.runner import _mem_mb

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = StableDiffusionXLPipeline.from_pretrained(args.model, dtype=torch.float32).to(device)
    images = make_dataset(Path(tempfile.gettempdir()), args.size)
    captions = [f"pixel art sprite, character {i}, side view, 16 colours" for i in range(len(images))]
    cfg = LoraTrainConfig(rank=16, alpha=16, learning_rate=1e-4, steps=args.warmup + args.steps,
                          batch_size=args.batch, seed=0)
    t = time.perf_counter()
    trainer = LoraTrainer(pipe, images, captions, cfg, cache=args.mode == "cached", log=lambda _m: None)
    prepare_s = time.perf_counter() - t
    for _ in range(args.warmup):
        trainer.train_step()
    times, mems = [], []
    for _ in range(args.steps):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        trainer.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        mems.append(_mem_mb())
    return {"mode": args.mode, "device": device, "prepare_s": prepare_s, "steps": args.steps,
            "sec_per_step_mean": statistics.mean(times), "sec_per_step_median": statistics.median(times),
            "steps_per_s": 1 / statistics.median(times), "mem_mb_max": max(mems),
            "mem_mb_mean": statistics.mean(mems)}


def interleaved(args) -> dict:
    """Both modes in one process, one step each in turn: a busy neighbour slows both alike, so the ratio of
    their medians is the fair speed comparison (the separate processes give the memory figures)."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from training.lora import LoraTrainConfig, LoraTrainer

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = make_dataset(Path(tempfile.gettempdir()), args.size)
    captions = [f"pixel art sprite, character {i}, side view, 16 colours" for i in range(len(images))]
    cfg = LoraTrainConfig(rank=16, alpha=16, learning_rate=1e-4, steps=args.warmup + args.steps,
                          batch_size=args.batch, seed=0)
    trainers = {}
    for mode in ("cached", "uncached"):
        pipe = StableDiffusionXLPipeline.from_pretrained(args.model, dtype=torch.float32).to(device)
        trainers[mode] = LoraTrainer(pipe, images, captions, cfg, cache=mode == "cached", log=lambda _m: None)
    times: dict[str, list[float]] = {m: [] for m in trainers}
    for i in range(args.warmup + args.steps):
        for mode, trainer in trainers.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            trainer.train_step()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[mode].append(time.perf_counter() - t)
    return {m: {"sec_per_step_median": statistics.median(v), "sec_per_step_mean": statistics.mean(v),
                "steps_per_s": 1 / statistics.median(v)} for m, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, help="image side in px (default: the model's native size)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", type=Path, help="a diffusers SDXL folder (default: the tiny demo model)")
    ap.add_argument("--mode", choices=("cached", "uncached", "interleaved"), help=argparse.SUPPRESS)  # child
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(interleaved(args) if args.mode == "interleaved" else worker(args)))
        return
    if args.model is None:
        from studio.sdxl.demo import ensure_demo_model

        args.model = ensure_demo_model(Path(tempfile.gettempdir()) / "dgxp-bench-demo-tiny")
    if args.size is None:
        args.size = native_size(Path(args.model))
    results = {}
    for mode in ("cached", "uncached", "interleaved"):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", str(args.model),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--size", str(args.size),
               "--batch", str(args.batch), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    c, u, both = results["cached"], results["uncached"], results["interleaved"]
    speedup = both["cached"]["steps_per_s"] / both["uncached"]["steps_per_s"]
    separate = c["steps_per_s"] / u["steps_per_s"]
    print(f"LoRA training on {Path(args.model).name} ({c['device']}, {args.size}px, batch {args.batch}, "
          f"rank 16, {args.threads} thread(s), {args.steps} timed steps)")
    print(f"{'mode':<10}{'steps/s':>9}{'s/step':>9}{'(alone)':>9}{'prepare s':>11}{'mem MB':>9}")
    for r in (c, u):
        fair = both[r["mode"]]
        print(f"{r['mode']:<10}{fair['steps_per_s']:>9.2f}{fair['sec_per_step_median']:>9.3f}"
              f"{r['sec_per_step_median']:>9.3f}{r['prepare_s']:>11.2f}{r['mem_mb_max']:>9.0f}")
    print(f"speedup cached/uncached: {speedup:.2f}x interleaved, {separate:.2f}x in separate processes "
          f"(goal >= {GOAL}x: {'met' if speedup >= GOAL else 'NOT met'})")
    out = {"model": Path(args.model).name, "size": args.size, "batch": args.batch, "threads": args.threads,
           "steps": args.steps, "warmup": args.warmup, "cached": c, "uncached": u, "interleaved": both,
           "speedup": speedup, "speedup_separate_processes": separate, "goal": GOAL,
           "goal_met": speedup >= GOAL,
           "mem_note": "process RSS on CPU (MB), peak CUDA allocation per step on a GPU; s/step (alone) is "
                       "the separate-process timing, steps/s the interleaved one"}
    path = ROOT / "bench" / "results" / "training_cache.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
