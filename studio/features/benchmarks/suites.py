"""What each benchmark measures, and which suite runs which.

Each benchmark is a function of the `Run` returning its figures. The same functions serve every suite; the
suite's `Knobs` say how much they do (20 steps and 3 repeats for `quick`, SDXL base at 1024 px and 30 steps for
`gpu`, 1-2 steps for a tiny smoke run). Goals are the project's (README, Benchmarks).
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.pixel import PixelParams, load_rgba, pixelate
from pipelines.tiles import TileSpec
from studio.features.benchmarks.measure import PROMPT, Figure, Run
from studio.features.compare import BattleSettings, Contender
from studio.jobs import PeakMemory
from studio.manager import PipelineManager, pick_device
from studio.params import LoraRef
from studio.sdxl import demo
from training.lora import LoraTrainConfig, LoraTrainer

SAMPLES = Path(__file__).resolve().parents[3] / "tabs" / "samples"  # the renders the Clean-up panel offers


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


# -- quick -------------------------------------------------------------------------------------------------------

def build(run: Run) -> list[Figure]:
    """gpu suite: SDXL with random weights (base 1.0's architecture, or the tiny demo one), built on the device
    and saved as a diffusers folder in the scratch models folder. Skipped when a model was named."""
    if run.model is not None:
        run.notes.append(f"build: skipped, measuring the model {run.model!r}")
        return []
    arch = ((demo.SDXL_UNET, demo.SDXL_VAE, demo.SDXL_CLIP, demo.SDXL_CLIP_2, demo.SDXL_VOCAB) if run.knobs.full_size
            else (demo.TINY_UNET, demo.TINY_VAE, demo.TINY_CLIP, demo.TINY_CLIP_2, None))
    device, dtype = pick_device(run.main.settings.device)
    name = "sdxl-random" if run.knobs.full_size else "tiny-random"
    folder = run.models / "checkpoints" / name
    t = time.perf_counter()
    pipe = demo.build_random_pipeline(*arch[:4], device=str(device), vocab_size=arch[4])
    pipe.to(dtype)
    run.sync()
    built = time.perf_counter() - t
    counts = {n: sum(p.numel() for p in getattr(pipe, n).parameters())
              for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
    saved = run.timed(functools.partial(pipe.save_pretrained, folder, safe_serialization=True))
    del pipe
    run.free()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    run.model = name
    return [Figure("build_s", built, "s", better="lower"), Figure("save_s", saved, "s", better="lower"),
            *(Figure(f"params_{n}", float(c), "parameters") for n, c in counts.items()),
            Figure("folder_gb", size / 2**30, "GB")]


def cold(run: Run) -> list[Figure]:
    """Open a studio (DuckDB, registry, queue) and make its first sprite (the model loaded from disk)."""
    opened = run.timed(run.open)
    run.tick(1, 2)
    first, _job = run.generate(run.params())
    return [Figure("studio_open_s", opened, "s", better="lower"),
            Figure("first_generation_s", first, "s", better="lower", note="model load included")]


def generation(run: Run) -> list[Figure]:
    """One generation through the studio (queue, manager, PNGs, DuckDB) vs the same direct diffusers call on the
    same resident pipeline, interleaved so a busy neighbour slows both alike. The render only: a direct call
    has no pixel clean-up (the `pixel` benchmark times that)."""
    k = run.knobs
    params = run.studio.check_generate(run.params(pixel=None))
    run.generate(params)  # warm: model, adapters, scheduler
    run.direct(params)
    direct, studio, rates = [], [], []
    for i in range(k.repeats):
        direct.append(run.direct(params))
        seconds, job = run.generate(params)
        studio.append(seconds)
        if job.figures and job.figures.steps_per_s:
            rates.append(job.figures.steps_per_s)
        run.tick(i + 1, k.repeats)
    d, s = _median(direct), _median(studio)
    out = [Figure("studio_s", s, "s", better="lower"), Figure("direct_s", d, "s", better="lower"),
           Figure("studio_over_direct", s / d, "ratio", goal=1.05, better="lower")]
    if rates:
        out.append(Figure("steps_per_s", _median(rates), "steps/s", better="higher",
                          note="denoising steps after the first, as the job measured them"))
    return out


def lora_switch(run: Run) -> list[Figure]:
    """A LoRA switched on and off on the resident pipeline (peft adapters) vs reloading the pipeline with the
    LoRA (what a studio without resident adapters does for every change)."""
    k = run.knobs
    ref = run.bench_lora()
    with_lora = (ref,)
    first, _job = run.generate(run.params(loras=with_lora))  # loads the adapter once
    manager = run.studio.manager
    switches = []
    for i in range(k.switches):
        switches.append(run.timed(lambda: manager.activate(run.model, ())))
        switches.append(run.timed(lambda: manager.activate(run.model, with_lora)))
        run.tick(i + 1, k.switches + k.reloads)
    manager.activate(run.model, run.loras)

    def reload() -> None:
        fresh = PipelineManager(run.studio.registry, run.main.settings.device, manager.cache_bytes)
        fresh.activate(run.model, with_lora)

    reloads = []
    for i in range(k.reloads):
        reloads.append(run.timed(reload))
        run.free()
        run.tick(k.switches + i + 1, k.switches + k.reloads)
    switch, again = _median(switches), _median(reloads)
    return [Figure("first_generation_with_lora_s", first, "s", better="lower", note="the adapter loaded once"),
            Figure("switch_ms", switch * 1000, "ms", better="lower"),
            Figure("reload_s", again, "s", better="lower"),
            Figure("switch_speedup", again / switch, "x", goal=20.0, better="higher",
                   note=f"LoRA {ref.name}")]


def pixel(run: Run) -> list[Figure]:
    """The pixel engine (grid, palette, background) on the bundled sample renders, default settings."""
    k = run.knobs
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: k.samples]
    if not files:
        run.notes.append("pixel: no sample renders found")
        return []
    per_image = []
    for i, path in enumerate(files):
        rgba = load_rgba(path)
        times = []
        for _ in range(k.pixel_repeats):
            t = time.perf_counter()
            pixelate(rgba, PixelParams())
            times.append(time.perf_counter() - t)
        per_image.append(_median(times))
        run.tick(i + 1, len(files))
    return [Figure("s_per_image", statistics.mean(per_image), "s", better="lower",
                   note=f"{len(files)} sample render(s), median of {k.pixel_repeats} each")]


def mcp(run: Run) -> list[Figure]:
    """What an MCP tool call costs on top of the same core call: `generate_sprite` and `list_models` through a
    fastmcp client (in memory: the protocol and the tool layer, not the HTTP hop) vs calling the core."""
    if run.mcp is None:
        run.notes.append("mcp: skipped (this front end serves no MCP)")
        return []
    from fastmcp import Client  # lazily: only this benchmark needs the client side

    k = run.knobs
    server = run.mcp(run.open())
    studio = run.studio
    pixel_params = PixelParams(size=(8, 8), size_mode="exact")
    params = run.params(steps=k.mcp_steps, negative="", pixel=pixel_params)
    tool_args = {"prompt": PROMPT, "seed": 1, "steps": k.mcp_steps, "size": "8x8", "negative": "",
                 **({"loras": {r.name: r.weight for r in run.loras}} if run.loras else {})}

    async def measure() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"gen_mcp": [], "gen_core": [], "list_mcp": [], "list_core": []}
        async with Client(server) as client:
            await client.call_tool("generate_sprite", tool_args)  # warm
            run.generate(params)
            for i in range(k.mcp_repeats):
                if run.cancelled():
                    break
                t = time.perf_counter()
                await client.call_tool("generate_sprite", tool_args)
                times["gen_mcp"].append(time.perf_counter() - t)
                times["gen_core"].append(run.generate(params)[0])
                t = time.perf_counter()
                await client.call_tool("list_models", {})
                times["list_mcp"].append(time.perf_counter() - t)
                t = time.perf_counter()
                studio.models()
                times["list_core"].append(time.perf_counter() - t)
                run.tick(i + 1, k.mcp_repeats)
        return times

    times = asyncio.run(measure())
    run.tick(1, 1)  # raises Cancelled when the run was cancelled meanwhile
    med = {name: _median(v) for name, v in times.items()}
    return [Figure("generate_sprite_overhead_ms", (med["gen_mcp"] - med["gen_core"]) * 1000, "ms", goal=50.0,
                   better="lower"),
            Figure("list_models_overhead_ms", (med["list_mcp"] - med["list_core"]) * 1000, "ms", goal=50.0,
                   better="lower"),
            Figure("generate_sprite_mcp_s", med["gen_mcp"], "s", better="lower")]


# -- standard ----------------------------------------------------------------------------------------------------

def batch(run: Run) -> list[Figure]:
    """Whole jobs of 1, 4 and 8 sprites (render, clean-up, PNGs, DuckDB): latency p50/p95, sprites per minute,
    steps/s and peak memory, as a team plans a day's work."""
    k = run.knobs
    cap = run.studio.settings.max_count
    sizes = [b for b in k.batch_sizes if b <= cap]
    if len(sizes) < len(k.batch_sizes):
        run.notes.append(f"batch: sizes over this studio's max_count ({cap}) skipped")
    run.generate(run.params())  # warm
    out, done, total = [], 0, len(sizes) * k.batch_repeats
    for b in sizes:
        latencies, peaks, rates = [], [], []
        for _ in range(k.batch_repeats):
            seconds, job = run.generate(run.params(count=b))
            latencies.append(seconds)
            if job.figures:
                peaks.append(job.figures.peak_mem_mb or 0.0)
                if job.figures.steps_per_s:
                    rates.append(job.figures.steps_per_s)
            done += 1
            run.tick(done, total)
        p50 = _pct(latencies, 50)
        out += [Figure(f"batch{b}_p50_s", p50, "s", better="lower"),
                Figure(f"batch{b}_p95_s", _pct(latencies, 95), "s", better="lower"),
                Figure(f"batch{b}_sprites_per_min", 60 * b / p50, "sprites/min", better="higher")]
        if rates:
            out.append(Figure(f"batch{b}_steps_per_s", _median(rates), "steps/s", better="higher"))
        if any(peaks):
            out.append(Figure(f"batch{b}_peak_mem_mb", max(peaks), "MB", better="lower",
                              note="peak of its jobs (torch's peak allocation on CUDA, process RSS on a CPU)"))
    return out


def battle(run: Run) -> list[Figure]:
    """A 4-way Compare battle (base; base + LoRA at 1.0, 0.5, 1.5) vs four single generations of the same
    contenders: the battle switches adapters between contenders, so a reload would show here."""
    k = run.knobs
    ref = run.bench_lora()
    arena = run.open().arena
    contenders = [Contender("base"), *(Contender(f"lora@{w}", loras=(LoraRef(ref.name, w),)) for w in (1.0, 0.5, 1.5))]
    for c in contenders:
        arena.save_contender(c)

    def singles() -> float:
        return sum(run.generate(run.params(loras=c.loras))[0] for c in contenders)

    def fight() -> float:
        return run.job_time(lambda: arena.submit_battle([c.name for c in contenders], PROMPT, seed=1,
                                                        settings=BattleSettings(steps=k.steps)))[0]

    singles()  # warm: base and adapter loaded once
    s_times, b_times = [], []
    for i in range(k.battle_repeats):
        s_times.append(singles())
        b_times.append(fight())
        run.tick(i + 1, k.battle_repeats)
    s, b = _median(s_times), _median(b_times)
    return [Figure("battle_s", b, "s", better="lower"), Figure("four_singles_s", s, "s", better="lower"),
            Figure("battle_over_singles", b / s, "ratio", goal=1.1, better="lower")]


def _native_side(folder: Path) -> int:
    unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def training(run: Run) -> list[Figure]:
    """LoRA training steps with latents and text embeddings cached vs encoded on every step, interleaved one
    step each so a busy neighbour slows both alike; peak memory per mode. Native size; on CUDA bf16 and
    gradient checkpointing, as the presets train."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    k = run.knobs
    entry = run.studio.registry.checkpoint(run.model)
    if entry.kind != "diffusers":
        run.notes.append("training: skipped (training needs a diffusers folder as the base)")
        return []
    folder = entry.path.resolve()
    run.close_app()  # its memory back: two training copies follow
    device, _dtype = pick_device(run.main.settings.device)
    side = _native_side(folder)
    rng = np.random.default_rng(0)
    cells = max(side // 16, 1)
    images = [Image.fromarray(np.kron(rng.integers(0, 255, (cells, cells, 3), np.uint8),
                                      np.ones((side // cells, side // cells, 1), np.uint8))) for _ in range(4)]
    captions = [f"pixel art sprite, character {i}, side view, 16 colours" for i in range(4)]
    cuda = device.type == "cuda"
    cfg = LoraTrainConfig(rank=k.train_rank, alpha=k.train_rank, learning_rate=1e-4,
                          steps=k.train_warmup + k.train_steps + 1, seed=0, gradient_checkpointing=cuda,
                          mixed_precision="bf16" if cuda else "no")
    trainers, prepare = {}, {}
    for mode in ("cached", "uncached"):
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=torch.float32).to(device)
        pipe.set_progress_bar_config(disable=True)
        t = time.perf_counter()
        trainers[mode] = LoraTrainer(pipe, images, captions, cfg, cache=mode == "cached", log=lambda _m: None)
        prepare[mode] = time.perf_counter() - t
    times: dict[str, list[float]] = {m: [] for m in trainers}
    peaks: dict[str, float] = {m: 0.0 for m in trainers}
    rounds = k.train_warmup + k.train_steps
    for i in range(rounds):
        for mode, trainer in trainers.items():
            meter = PeakMemory(cuda).start()
            dt = run.timed(trainer.train_step)
            peak = meter.stop() or 0.0
            if i >= k.train_warmup:
                times[mode].append(dt)
                peaks[mode] = max(peaks[mode], peak)
        run.tick(i + 1, rounds)
    del trainers
    run.free()
    rate = {m: 1 / _median(v) for m, v in times.items()}
    out = [Figure(f"{m}_steps_per_s", rate[m], "steps/s", better="higher") for m in rate]
    out.append(Figure("cached_speedup", rate["cached"] / rate["uncached"], "x", goal=1.5, better="higher",
                      note=f"{side} px, rank {k.train_rank}, {cfg.mixed_precision} precision"))
    out += [Figure(f"{m}_prepare_s", prepare[m], "s", better="lower") for m in prepare]
    out += [Figure(f"{m}_peak_mem_mb", peaks[m], "MB", better="lower",
                   note="per step: torch's peak allocation on CUDA, process RSS on a CPU") for m in peaks if peaks[m]]
    return out


# -- gpu ---------------------------------------------------------------------------------------------------------

def tiles(run: Run) -> list[Figure]:
    """One seamless tile render vs the same render plain: the cost of circular padding."""
    out = {}
    for seamless in (True, False):
        spec = TileSpec(count=1, tile_size=(32, 32), seamless=seamless)
        params = run.params()
        out[seamless] = run.job_time(lambda spec=spec, params=params: run.studio.submit_tileset(
            params, spec, source="bench"))[0]
        run.tick(len(out), 2)
    return [Figure("seamless_s", out[True], "s", better="lower"), Figure("plain_s", out[False], "s", better="lower"),
            Figure("seamless_over_plain", out[True] / out[False], "ratio", better="lower")]


BENCHMARKS = {
    "build": ("build the random SDXL", build),
    "cold": ("open a studio, first sprite", cold),
    "generation": ("studio vs direct diffusers", generation),
    "lora_switch": ("LoRA switch vs reload", lora_switch),
    "pixel": ("pixel engine on the samples", pixel),
    "mcp": ("MCP overhead", mcp),
    "batch": ("batches of 1, 4 and 8", batch),
    "battle": ("battle vs four singles", battle),
    "training": ("training steps, cached vs encoded", training),
    "tiles": ("seamless vs plain tiles", tiles),
}
SUITES: dict[str, tuple[str, ...]] = {
    "quick": ("cold", "generation", "lora_switch", "pixel", "mcp"),
    "standard": ("cold", "generation", "lora_switch", "pixel", "mcp", "batch", "battle", "training"),
    "gpu": ("build", "cold", "generation", "lora_switch", "tiles", "training"),
}
