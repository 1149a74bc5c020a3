"""Benchmark: what the studio costs on top of diffusers, and what resident adapters save.

    .venv/bin/python bench/studio_overhead.py [--steps 20] [--repeats 5] [--size 128] [--model PATH]

Reports, side by side in one run:
  1. one generation through the studio (queue + manager + DuckDB + PNG writes) vs the same direct diffusers call
     (goal: ratio <= 1.05); pixel clean-up is timed separately because a direct call has no equivalent;
  2. switching a LoRA on/off via resident peft adapters vs reloading the pipeline with the LoRA (goal: >= 20x);
  3. cold start to ready: a fresh process importing the studio, opening it and loading the base.
Default model: the tiny demo SDXL (CPU, float32, one thread). Pass --model to time a real checkpoint folder.
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


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cold_start(settings_toml: Path) -> tuple[float, float]:
    code = (
        f"import time, sys; t = time.perf_counter(); sys.path.insert(0, {str(ROOT)!r})\n"
        "from studio.core import Studio\nfrom studio.settings import load_settings\n"
        f"st = Studio(load_settings({str(settings_toml)!r})); st.manager.pipeline(st.default_model)\n"
        "print(time.perf_counter() - t); st.close()"
    )
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    wall = time.perf_counter() - t
    return float(out.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", type=Path, help="a diffusers SDXL folder (default: the tiny demo model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "studio_overhead.json")
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from pipelines.pixel import PixelParams, pixelate
    from studio.core import Studio
    from studio.params import GenerateParams, LoraRef
    from studio.sdxl.demo import ensure_demo_model
    from studio.settings import Settings
    from training.lora import LoraTrainConfig, save_lora, train_lora

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="dgxp-bench-"))
    models = work / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "loras").mkdir()
    src = args.model or ensure_demo_model(work / "demo-src" / "demo-tiny")
    (models / "checkpoints" / "base").symlink_to(src.resolve(), target_is_directory=True)
    settings = Settings(data_dir=work / "data", models_dir=models)
    toml = work / "studio.toml"
    toml.write_text(f'[studio]\ndata_dir = "{work / "data-cold"}"\nmodels_dir = "{models}"\n')

    # a small real LoRA, trained a few steps on the same base
    trainer = StableDiffusionXLPipeline.from_pretrained(src)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))]
    cfg = LoraTrainConfig(rank=8, alpha=8, learning_rate=1e-3, steps=2)
    train_lora(trainer, imgs, ["slm"], cfg)
    lora_path = save_lora(trainer, models / "loras" / "bench.safetensors", cfg)
    del trainer

    results: dict = {"steps": args.steps, "size": args.size, "repeats": args.repeats, "threads": args.threads,
                     "model": str(args.model or "demo-tiny"), "device": "cpu"}
    with Studio(settings) as studio:
        results["device"] = str(studio.manager.device)
        params = GenerateParams(prompt="a red slime", seed=1, steps=args.steps, width=args.size,
                                height=args.size, pixel=None)
        studio.generate(params)  # warm: load the base
        pipe = studio.manager.pipeline("base")

        def direct() -> None:
            g = torch.Generator(device="cpu").manual_seed(1)
            with torch.inference_mode():  # as the studio runs it
                pipe(prompt="a red slime", num_inference_steps=args.steps, guidance_scale=6.0, width=args.size,
                     height=args.size, generator=[g])

        def through_studio() -> None:
            studio.generate(params)

        direct()
        # interleave so drift on a shared machine hits both sides alike
        d, s = [], []
        for _ in range(args.repeats):
            d += timed(direct, 1)
            s += timed(through_studio, 1)
        raw = Image.open(studio.history(limit=1)[0]["raw_path"]).convert("RGB")
        px = timed(lambda: pixelate(raw, PixelParams()), args.repeats)
        results["generation"] = {
            "direct_s": statistics.median(d), "studio_s": statistics.median(s),
            "ratio": statistics.median(s) / statistics.median(d), "pixel_cleanup_s": statistics.median(px),
        }

        # LoRA switching: resident adapters vs reloading the pipeline with the LoRA
        studio.manager.activate("base", (LoraRef("bench", 1.0),))

        def switch() -> None:
            studio.manager.activate("base", (LoraRef("bench", 0.8),))
            studio.manager.activate("base", ())

        def reload() -> None:
            p = StableDiffusionXLPipeline.from_pretrained(src)
            p.load_lora_weights(str(lora_path), adapter_name="bench")
            p.set_adapters(["bench"], [0.8])

        sw = timed(switch, max(args.repeats, 10))
        rl = timed(reload, args.repeats)
        results["lora_switch"] = {
            "adapter_switch_s": statistics.median(sw) / 2, "reload_s": statistics.median(rl),
            "speedup": statistics.median(rl) / (statistics.median(sw) / 2),
            "base_loads": studio.manager.loads,
        }
    inner, wall = cold_start(toml)
    results["cold_start"] = {"to_ready_s": inner, "process_wall_s": wall}

    g, lo, c = results["generation"], results["lora_switch"], results["cold_start"]
    print(f"model {results['model']} on {results['device']}, {args.size}x{args.size}, {args.steps} steps, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print(f"{'measure':42} {'studio':>10} {'baseline':>10} {'ratio':>8}  goal")
    print(f"{'generation (studio vs direct diffusers)':42} {g['studio_s']:>9.3f}s {g['direct_s']:>9.3f}s "
          f"{g['ratio']:>8.3f}  <= 1.05")
    print(f"{'LoRA switch (adapters vs reload)':42} {lo['adapter_switch_s']:>9.4f}s {lo['reload_s']:>9.3f}s "
          f"{lo['speedup']:>7.0f}x  >= 20x")
    print(f"{'pixel clean-up of one render':42} {g['pixel_cleanup_s']:>9.3f}s")
    print(f"{'cold start to ready (new process)':42} {c['to_ready_s']:>9.3f}s   (process wall {c['process_wall_s']:.2f}s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
