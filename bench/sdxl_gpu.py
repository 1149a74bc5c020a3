"""Benchmark: full-size SDXL with random weights on the GPU, through the studio's own code.

    .venv/bin/python bench/sdxl_gpu.py           # CUDA: SDXL base 1.0's architecture at 1024 px
    .venv/bin/python bench/sdxl_gpu.py --tiny    # the same phases on the tiny demo architecture (CPU smoke run)

No SDXL weights can be downloaded here, so the weights are random: the timings and memory are the real
network's (the same layers and sizes; tests/test_demo_model.py checks the parameter counts), the pictures are
noise. Each phase is saved to bench/results/sdxl_gpu[_tiny].json as soon as it ends, so a run cut short keeps
what it measured; a phase that fails records its error and the next one runs.
  build     construct on the device, save as a diffusers folder (bf16 safetensors)
  cold      Studio() + first generation: load from disk, to the device, channels-last
  generate  1024 px, 30 steps, CFG 5 through the studio (queue, pixel engine, PNG, DuckDB) vs a direct diffusers
            call on the same resident pipeline, interleaved: s/image, peak memory
  lora      a rank-32 LoRA file: first generation with it (load), then base <-> LoRA switch times
  tiles     one seamless tileset render vs the same render plain (the cost of circular padding)
  train     LoraTrainer at 1024 px, bf16, gradient checkpointing, rank 32: cached latents + embeddings vs
            encoding every step, interleaved steps/s and peak memory
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

PROMPT = "a knight in silver armour, pixel art sprite, side view"


class Bench:
    def __init__(self, args) -> None:
        import torch

        from studio.manager import pick_device
        from studio.sdxl.demo import (
            SDXL_CLIP,
            SDXL_CLIP_2,
            SDXL_UNET,
            SDXL_VAE,
            SDXL_VOCAB,
            TINY_CLIP,
            TINY_CLIP_2,
            TINY_UNET,
            TINY_VAE,
        )

        self.args = args
        self.device, self.dtype = pick_device("auto")
        if not args.tiny and self.device.type != "cuda":
            sys.exit("full-size SDXL needs a CUDA GPU (hours on a CPU); use --tiny for a smoke run")
        self.arch = (TINY_UNET, TINY_VAE, TINY_CLIP, TINY_CLIP_2, None) if args.tiny else \
            (SDXL_UNET, SDXL_VAE, SDXL_CLIP, SDXL_CLIP_2, SDXL_VOCAB)
        self.size = 128 if args.tiny else 1024
        self.steps = args.steps or (4 if args.tiny else 30)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="dgxp-sdxl-gpu-"))
        self.folder = self.work / "models" / "checkpoints" / "sdxl-random"
        self.out = Path(args.out) if args.out else \
            ROOT / "bench" / "results" / ("sdxl_gpu_tiny.json" if args.tiny else "sdxl_gpu.json")
        self.results: dict = {"device": str(self.device), "dtype": str(self.dtype), "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name() if self.device.type == "cuda" else None,
                              "size": self.size, "steps": self.steps, "phases": {}}
        self.studio = None

    # --- helpers ----------------------------------------------------------------------------------------
    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device.type == "cuda" else None

    def timed(self, fn) -> float:
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def params(self, **kw):
        from studio.params import GenerateParams

        return GenerateParams(**{"prompt": PROMPT, "steps": self.steps, "guidance": 5.0, "width": self.size,
                                 "height": self.size, "seed": 1, **kw})

    def phase(self, name: str, fn) -> None:
        print(f"--- {name}", flush=True)
        t = time.perf_counter()
        try:
            out = fn()
            out["phase_s"] = round(time.perf_counter() - t, 2)
        except Exception as exc:  # keep going: the later phases are worth having on their own
            traceback.print_exc()
            out = {"error": f"{type(exc).__name__}: {exc}"}
        self.results["phases"][name] = out
        print(json.dumps(out, indent=1), flush=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=2) + "\n", encoding="utf-8")

    # --- phases -------------------------------------------------------------------------------------------
    def build(self) -> dict:
        import torch

        from studio.sdxl.demo import build_random_pipeline

        unet, vae, clip, clip_2, vocab = self.arch
        t = time.perf_counter()
        pipe = build_random_pipeline(unet, vae, clip, clip_2, device=str(self.device), vocab_size=vocab)
        pipe.to(self.dtype)
        self.sync()
        built = time.perf_counter() - t
        counts = {n: sum(p.numel() for p in getattr(pipe, n).parameters())
                  for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
        t = time.perf_counter()
        pipe.save_pretrained(self.folder, safe_serialization=True)
        saved = time.perf_counter() - t
        del pipe
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        size_gb = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file()) / 2**30
        return {"build_s": round(built, 2), "save_s": round(saved, 2), "params": counts,
                "folder_gb": round(size_gb, 2)}

    def cold(self) -> dict:
        from studio.core import Studio
        from studio.settings import Settings

        t = time.perf_counter()
        self.studio = Studio(Settings(data_dir=self.work / "data", models_dir=self.work / "models"))
        opened = time.perf_counter() - t
        self.reset_peak()
        first = self.timed(lambda: self.studio.generate(self.params()))
        return {"studio_open_s": round(opened, 2), "first_generation_s": round(first, 2),
                "peak_gb": self.peak_gb(), "model": self.studio.default_model}

    def generate(self) -> dict:
        import torch

        pipe = self.studio.manager.pipeline(self.studio.default_model)
        p = self.params()

        def direct():
            with torch.inference_mode():
                pipe(prompt=p.prompt, negative_prompt=p.negative or None, num_inference_steps=p.steps,
                     guidance_scale=p.guidance, width=p.width, height=p.height,
                     generator=torch.Generator("cpu").manual_seed(1))

        times: dict[str, list[float]] = {"studio": [], "direct": []}
        peaks = []
        for _ in range(self.args.repeats):
            self.reset_peak()
            times["studio"].append(self.timed(lambda: self.studio.generate(p)))
            peaks.append(self.peak_gb())
            times["direct"].append(self.timed(direct))
        s, d = statistics.median(times["studio"]), statistics.median(times["direct"])
        return {"studio_s": round(s, 3), "direct_s": round(d, 3), "ratio": round(s / d, 3),
                "it_per_s_direct": round(p.steps / d, 2), "peak_gb": max(peaks) if peaks[0] else None,
                "runs": {k: [round(x, 3) for x in v] for k, v in times.items()}}

    def lora(self) -> dict:
        import torch
        from safetensors.torch import save_file

        from studio.params import LoraRef

        pipe = self.studio.manager.pipeline(self.studio.default_model)
        gen = torch.Generator("cpu").manual_seed(0)
        state = {}
        for name, mod in pipe.unet.named_modules():
            if name.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(mod, torch.nn.Linear):
                state[f"unet.{name}.lora_A.weight"] = torch.randn(32, mod.in_features, generator=gen) * 0.01
                state[f"unet.{name}.lora_B.weight"] = torch.randn(mod.out_features, 32, generator=gen) * 0.01
        path = self.studio.settings.loras_dir / "random-r32.safetensors"
        save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(path))
        loras = (LoraRef("random-r32", 0.8),)
        first = self.timed(lambda: self.studio.generate(self.params(loras=loras)))
        name = self.studio.default_model
        switches = []
        for _ in range(10):
            switches.append(self.timed(lambda: self.studio.manager.activate(name, ())))
            switches.append(self.timed(lambda: self.studio.manager.activate(name, loras)))
        self.studio.manager.activate(name, ())
        return {"lora_modules": len(state) // 2, "first_generation_with_lora_s": round(first, 2),
                "switch_ms_median": round(statistics.median(switches) * 1000, 2),
                "lora_loads": self.studio.manager.lora_loads}

    def tiles(self) -> dict:
        from pipelines.tiles import TileSpec

        out = {}
        for seamless in (True, False):
            spec = TileSpec(count=1, tile_size=(32, 32), seamless=seamless)

            def run(spec=spec):
                job = self.studio.queue.wait(self.studio.submit_tileset(self.params(), spec))
                return self.studio.result(job)

            out["seamless_s" if seamless else "plain_s"] = round(self.timed(run), 3)
        out["overhead"] = round(out["seamless_s"] / out["plain_s"], 3)
        return out

    def train(self) -> dict:
        import numpy as np
        import torch
        from diffusers import StableDiffusionXLPipeline
        from PIL import Image

        from training.lora import LoraTrainConfig, LoraTrainer

        if self.studio is not None:  # give its memory back: two training copies follow
            self.studio.close()
            self.studio = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        rng = np.random.default_rng(0)
        images = [Image.fromarray(np.kron(rng.integers(0, 255, (self.size // 16, self.size // 16, 3), np.uint8),
                                          np.ones((16, 16, 1), np.uint8))) for _ in range(4)]
        captions = [f"pixel art sprite {i}, side view" for i in range(4)]
        cuda = self.device.type == "cuda"
        cfg = LoraTrainConfig(rank=32, alpha=32, steps=1000, seed=0, gradient_checkpointing=cuda,
                              mixed_precision="bf16" if cuda else "no")
        trainers, prepare = {}, {}
        for mode in ("cached", "uncached"):
            pipe = StableDiffusionXLPipeline.from_pretrained(self.folder, dtype=torch.float32).to(self.device)
            t = time.perf_counter()
            trainers[mode] = LoraTrainer(pipe, images, captions, cfg, cache=mode == "cached", log=print)
            prepare[mode] = round(time.perf_counter() - t, 2)
        times: dict[str, list[float]] = {m: [] for m in trainers}
        peaks: dict[str, float | None] = {m: 0.0 for m in trainers}
        for i in range(2 + self.args.train_steps):
            for mode, trainer in trainers.items():
                self.reset_peak()
                dt = self.timed(trainer.train_step)
                if i >= 2:
                    times[mode].append(dt)
                    peaks[mode] = max(peaks[mode] or 0, self.peak_gb() or 0) if cuda else None
        med = {m: statistics.median(v) for m, v in times.items()}
        return {"steps_per_s": {m: round(1 / v, 3) for m, v in med.items()},
                "speedup_cached": round(med["uncached"] / med["cached"], 3),
                "peak_gb_during_step": peaks, "prepare_s": prepare, "mixed_precision": cfg.mixed_precision,
                "gradient_checkpointing": cfg.gradient_checkpointing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the tiny demo architecture at 128 px (CPU smoke run)")
    ap.add_argument("--steps", type=int, help="denoising steps (default 30; 4 with --tiny)")
    ap.add_argument("--repeats", type=int, default=3, help="generations per side in the generate phase")
    ap.add_argument("--train-steps", type=int, default=8, help="timed training steps per mode")
    ap.add_argument("--only", nargs="*", help="run only these phases (build always runs first)")
    ap.add_argument("--work", help="working folder (default: a new temp folder)")
    ap.add_argument("--out", help="results file (default: bench/results/sdxl_gpu[_tiny].json)")
    args = ap.parse_args()
    bench = Bench(args)
    phases = ["build", "cold", "generate", "lora", "tiles", "train"]
    for name in phases:
        if args.only and name not in args.only and name != "build":
            continue
        if name in ("generate", "lora", "tiles") and bench.studio is None:
            bench.phase("cold", bench.cold)
        bench.phase(name, getattr(bench, name))
    if bench.studio is not None:
        bench.studio.close()
    print(f"saved {bench.out}")


if __name__ == "__main__":
    main()
