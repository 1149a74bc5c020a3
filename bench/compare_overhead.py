"""Benchmark: a 4-way Compare battle vs four single generations of the same contenders (goal: <= 1.1x).

    .venv/bin/python bench/compare_overhead.py [--steps 20] [--repeats 3]

Contenders: the base alone and the base with one LoRA at weights 1.0, 0.5 and 1.5, all on the resident tiny
demo SDXL (CPU, one thread). The battle switches adapters between contenders; a reload would show up here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compare_overhead.json")
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from studio.features.compare import BattleSettings, Contender
    from studio.frontends.assemble import App
    from studio.params import GenerateParams, LoraRef
    from studio.sdxl.demo import ensure_demo_model
    from studio.settings import Settings
    from training.lora import LoraTrainConfig, save_lora, train_lora

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="dgxp-compare-bench-"))
    demo = ensure_demo_model(work / "models" / "checkpoints" / "demo-tiny")
    trainer = StableDiffusionXLPipeline.from_pretrained(demo)
    cfg = LoraTrainConfig(rank=8, alpha=8, learning_rate=1e-3, steps=2)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    train_lora(trainer, [img], ["slm"], cfg)
    save_lora(trainer, work / "models" / "loras" / "style.safetensors", cfg)
    del trainer

    with App(Settings(data_dir=work / "data", models_dir=work / "models")) as app:
        studio, arena = app.studio, app.arena
        contenders = [Contender("base"), *(Contender(f"style@{w}", loras=(LoraRef("style", w),)) for w in (1.0, 0.5, 1.5))]
        for c in contenders:
            arena.save_contender(c)
        names = [c.name for c in contenders]

        def singles() -> float:
            t = time.perf_counter()
            for c in contenders:
                studio.generate(GenerateParams(prompt="a red slime", seed=1, steps=args.steps, loras=c.loras))
            return time.perf_counter() - t

        def battle() -> float:
            t = time.perf_counter()
            job = arena.submit_battle(names, "a red slime", seed=1, settings=BattleSettings(steps=args.steps))
            studio.result(studio.queue.wait(job))
            return time.perf_counter() - t

        singles()  # warm: base and adapter loaded once
        s_times, b_times = [], []
        for _ in range(args.repeats):  # interleaved, so machine drift hits both alike
            s_times.append(singles())
            b_times.append(battle())
        res = {
            "steps": args.steps, "repeats": args.repeats,
            "four_singles_s": statistics.median(s_times), "battle_s": statistics.median(b_times),
            "ratio": statistics.median(b_times) / statistics.median(s_times),
            "base_loads": studio.manager.loads, "lora_loads": studio.manager.lora_loads,
        }
    print(f"4-way battle {res['battle_s']:.3f}s vs four single generations {res['four_singles_s']:.3f}s: "
          f"ratio {res['ratio']:.3f} (goal <= 1.1); base loaded {res['base_loads']}x, LoRA {res['lora_loads']}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
