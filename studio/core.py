"""The studio core: the one object every front end (Python, CLI, Gradio, MCP) talks to.

It owns the settings, the DuckDB store, the model registry, the pipeline manager and the GPU job queue.
Front ends build params, call `submit_generate` / `generate`, and show what comes back; none of them touches
a pipeline or the database directly.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.pixel import PixelParams, PixelResult, lattice_overlay, load_rgba, pixelate
from pipelines.render import StepFn, default_sampler
from pipelines.sheet import SheetSpec, generate_sheet
from pipelines.sprite import ItemList, generate_item_batch, generate_sprites
from pipelines.tiles import TileSpec, generate_tileset, repeat_preview
from pipelines.variation import VariationSpec, generate_variations
from studio.fast_modes import apply_fast_mode, find_mode
from studio.files import atomic_write_bytes, is_file, save_png
from studio.jobs import Job, JobQueue
from studio.manager import PipelineManager
from studio.metadata import pnginfo
from studio.params import GenerateParams, ParamsError, new_seed
from studio.registry import HashCache, ModelError, Registry, read_safetensors_header
from studio.sdxl.demo import ensure_demo_model
from studio.settings import DEMO_MODEL, Settings
from studio.store import Store

log = logging.getLogger(__name__)


class NotFound(ValueError):
    pass


class JobFailed(RuntimeError):
    def __init__(self, job: Job):
        super().__init__(job.error or f"job {job.id} {job.status}")
        self.job = job


@dataclass
class ImageResult:
    id: str
    seed: int
    path: Path  # native sprite PNG
    raw_path: Path  # the render at generation size
    width: int
    height: int


@dataclass
class GenerateResult:
    job_id: str
    params: GenerateParams  # resolved: seed, size and model filled in
    images: list[ImageResult]  # sprites, or a sheet's frames, or a tileset's tiles, in order
    extras: dict[str, Path] = field(default_factory=dict)  # sheet.png, preview.gif, repeat-N.png ...
    info: dict = field(default_factory=dict)  # strategy, seam reports ...


@dataclass
class SpecJob:
    """A sheet or tileset job: the generation params plus the pipeline's own spec, stored under `key`."""

    params: GenerateParams
    spec: object  # SheetSpec | TileSpec (frozen, with to_dict)
    key: str  # "sheet" | "tiles"

    @property
    def prompt(self) -> str:
        return self.params.prompt

    def to_dict(self) -> dict:
        return {**self.params.to_dict(), self.key: self.spec.to_dict()}


@dataclass
class Rendered:
    """What a recipe hands back to be stored: (seed, sprite, raw render) per image, facts for the PNG
    metadata and the result, and extra files (a sheet, a GIF, tile previews)."""

    images: list[tuple[int, Image.Image, Image.Image]]
    info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Image.Image | bytes] = field(default_factory=dict)


def _sprites(pipe, params: GenerateParams, _spec: None, on_step: StepFn) -> Rendered:
    return Rendered([(o.seed, o.sprite, o.raw) for o in generate_sprites(pipe, params, on_step)])


def _batch(pipe, params: GenerateParams, items: ItemList, on_step: StepFn) -> Rendered:
    outputs = generate_item_batch(pipe, params, list(items.prompts), on_step)
    return Rendered([(o.seed, o.sprite, o.raw) for o in outputs], {"items": items.to_dict()})


def _variation(pipe, params: GenerateParams, spec: VariationSpec, on_step: StepFn) -> Rendered:
    with Image.open(spec.source) as src:
        src.load()
        source = src.convert("RGBA")
    outputs = generate_variations(pipe, params, source, spec.strength, on_step)
    return Rendered([(o.seed, o.sprite, o.raw) for o in outputs], {"variation": spec.to_dict()})


def _sheet(pipe, params: GenerateParams, spec: SheetSpec, on_step: StepFn) -> Rendered:
    out = generate_sheet(pipe, params, spec, on_step)
    info = {"sheet": spec.to_dict(), "strategy": out.strategy, "animation": out.animation, "fps": out.fps,
            "prompts": out.prompts}
    return Rendered(list(zip(out.seeds, out.frames, out.raws, strict=True)), info,
                    {"sheet.png": out.sheet, "preview.gif": out.gif})


def _tileset(pipe, params: GenerateParams, spec: TileSpec, on_step: StepFn) -> Rendered:
    out = generate_tileset(pipe, params, spec, on_step)
    info = {"tiles": spec.to_dict(), "seamless": out.seamless, "seams": [r.to_dict() for r in out.reports]}
    extras = {f"repeat-{i}.png": repeat_preview(t) for i, t in enumerate(out.tiles)}
    return Rendered(list(zip(out.seeds, out.tiles, out.raws, strict=True)), info, extras)


@dataclass(frozen=True)
class Recipe:
    """A job kind: the recipe that renders it, and the key its spec is stored under in the job's params."""

    run: Callable[[Any, GenerateParams, Any, StepFn], Rendered]
    spec_key: str | None = None


RECIPES: dict[str, Recipe] = {
    "generate": Recipe(_sprites),
    "batch": Recipe(_batch, "items"),
    "variation": Recipe(_variation, "variation"),
    "sheet": Recipe(_sheet, "sheet"),
    "tileset": Recipe(_tileset, "tiles"),
}


class Studio:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        settings.loras_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_path)
        stale = self.store.interrupt_stale_jobs()
        if stale:
            log.warning("%d job(s) from a previous run were interrupted", stale)
        self.registry = Registry(settings.models_dir, HashCache(settings.data_dir / "hashes.json"))
        if not [m for m in self.registry.checkpoints() if not m.demo and not m.error]:
            ensure_demo_model(settings.checkpoints_dir / DEMO_MODEL)
        self.manager = PipelineManager(self.registry, settings.device, int(settings.model_cache_gb * 2**30))
        self.queue = JobQueue(self.store, {kind: self._run for kind in RECIPES}, device=self.manager.device)

    def close(self) -> None:
        self.queue.shutdown()
        self.store.close()

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is available --------------------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The configured model, else the first usable real checkpoint, else the demo model. A file that cannot
        be read is listed (with why) but never chosen."""
        if self.settings.model:
            return self.registry.checkpoint(self.settings.model).name
        usable = [m for m in self.registry.checkpoints() if not m.error]
        real = [m for m in usable if not m.demo]
        if not usable:
            raise ModelError(f"no usable checkpoint in {self.registry.checkpoints_dir}")
        return (real or usable)[0].name

    @property
    def using_demo_model(self) -> bool:
        return all(m.demo for m in self.registry.checkpoints() if not m.error)

    def models(self) -> list[dict]:
        resident = set(self.manager.resident())
        return [
            {"name": m.name, "kind": m.kind, "path": str(m.path), "demo": m.demo,
             "size_mb": round(m.size_bytes / 2**20, 1), "resident": m.name in resident, "error": m.error}
            for m in self.registry.checkpoints()
        ]

    def loras(self) -> list[dict]:
        """One entry per LoRA; `formats` names the file of each export form (diffusers, kohya) it has."""
        return [
            {"name": lo.name, "path": str(lo.path), "size_mb": round(lo.size_bytes / 2**20, 2),
             "formats": {kind: str(path) for kind, path in lo.formats.items()},
             "trigger_words": lo.trigger_words, "base": lo.metadata.get("dgxp.base_model") or lo.metadata.get("ss_base_model_version")}
            for lo in self.registry.loras()
        ]

    # -- generation ---------------------------------------------------------------------------------------

    def check_generate(self, params: GenerateParams) -> GenerateParams:
        """Everything that can be checked without the GPU, so bad input fails before anything is queued."""
        s = self.settings
        for side in (params.width, params.height):
            if side is not None and side > s.max_side:
                raise ParamsError(f"size {params.width}x{params.height} is over this studio's limit of {s.max_side}")
        if params.count > s.max_count:
            raise ParamsError(f"count {params.count} is over this studio's limit of {s.max_count}")
        entry = self.registry.checkpoint(params.model or self.default_model)
        if entry.error:
            raise ModelError(f"model {entry.name!r} cannot be used: {entry.error}")
        model = entry.name
        for ref in params.loras:
            read_safetensors_header(self.registry.lora(ref.name).path)
        if params.fast:  # the few-step sampler, steps and guidance of the job's LCM/Lightning/Turbo model
            params = apply_fast_mode(self.registry, params, model)[0]
        return dataclasses.replace(params, model=model, seed=new_seed() if params.seed is None else params.seed)

    def submit_generate(self, params: GenerateParams, source: str = "python", owner: str | None = None) -> Job:
        return self.queue.submit("generate", self.check_generate(params), source, owner)

    def generate(self, params: GenerateParams, source: str = "python", timeout: float | None = None) -> GenerateResult:
        job = self.queue.wait(self.submit_generate(params, source), timeout)
        return self.result(job)

    def result(self, job: Job) -> GenerateResult:
        if job.status != "done":
            raise JobFailed(job)
        return job.result

    def _prepare(self, job: Job) -> tuple[object, GenerateParams]:
        """Activate the job's model and LoRAs; fill in the render size the model was trained at."""
        params: GenerateParams = job.params.params if isinstance(job.params, SpecJob) else job.params
        pipe = self.manager.activate(params.model, params.loras)
        native = pipe.default_sample_size * pipe.vae_scale_factor
        return pipe, params.resolved(width=native, height=native, model=params.model,
                                     sampler=default_sampler(pipe))

    def _run(self, job: Job) -> GenerateResult:
        """Run one job of a kind in RECIPES on the worker thread: activate, render, store."""
        recipe = RECIPES[job.kind]
        pipe, params = self._prepare(job)
        spec = job.params.spec if isinstance(job.params, SpecJob) else None
        job.params = SpecJob(params, spec, recipe.spec_key) if recipe.spec_key else params
        job.total = params.steps
        started = time.perf_counter()
        rendered = recipe.run(pipe, params, spec, job.check)
        if params.fast and (mode := find_mode(self.registry, params, params.model)):
            rendered.info["fast_preview"] = mode.describe()
        log.info("job %s (%s) rendered %d image(s) in %.2f s", job.id, job.kind, len(rendered.images),
                 time.perf_counter() - started)
        return self._store(job, params, job.params.to_dict(), rendered)

    def _store(self, job: Job, params: GenerateParams, job_params: dict, rendered: Rendered) -> GenerateResult:
        """Write every image (with metadata) and extra file, then record them and 'done' in one transaction.

        Any failure (a full disk) removes what this job wrote, so no orphan files and no half-recorded job.
        """
        entry = self.registry.checkpoint(params.model)
        model_hash = self.registry.hashes.short_hash(entry.path) if entry.kind == "single_file" else None
        lora_hashes = {r.name: self.registry.hashes.addnet_hash(self.registry.lora(r.name).path) for r in params.loras}
        folder = self.settings.outputs_dir / time.strftime("%Y-%m-%d")
        written: list[Path] = []
        results: list[ImageResult] = []
        extra_paths: dict[str, Path] = {}
        try:
            for i, (seed, sprite, raw) in enumerate(rendered.images):
                meta = pnginfo(params, seed, {"job_id": job.id, "index": i, **rendered.info}, model_hash, lora_hashes)
                written.append(save_png(sprite, folder / f"{job.id}-{i}.png", meta))
                written.append(save_png(raw, folder / f"{job.id}-{i}-raw.png", meta))
                results.append(ImageResult(uuid.uuid4().hex[:12], seed, written[-2], written[-1], *sprite.size))
            for name, content in rendered.extras.items():
                path = folder / f"{job.id}-{name}"
                if isinstance(content, Image.Image):
                    written.append(save_png(content, path))
                else:
                    written.append(atomic_write_bytes(path, content))
                extra_paths[name] = written[-1]
            self.store.finish_job(job.id, job_params, [
                {"id": im.id, "idx": i, "seed": im.seed, "path": str(im.path), "raw_path": str(im.raw_path),
                 "width": im.width, "height": im.height}
                for i, im in enumerate(results)
            ])
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        return GenerateResult(job.id, params, results, extra_paths, dict(rendered.info))

    def submit_variation(self, params: GenerateParams, source: Path | str, strength: float = 0.5,
                         source_label: str = "python", owner: str | None = None) -> Job:
        """img2img variations of an image (an upload, or a sprite from the history by its image id)."""
        if isinstance(source, str) and not is_file(source):
            rows = self.store.query("SELECT path FROM images WHERE id = ?", [source])
            source = rows[0]["path"] if rows else source
        rgba = load_rgba(source)  # an unreadable image fails here, before anything is queued
        kept = save_png(Image.fromarray(rgba), self.settings.data_dir / "inputs" / f"{uuid.uuid4().hex[:12]}.png")
        spec = VariationSpec(str(kept), strength)  # a copy: uploads may vanish before the job runs
        return self._submit("variation", params, spec, source_label, owner)

    # -- sheets and tilesets ------------------------------------------------------------------------------

    def submit_sheet(self, params: GenerateParams, spec: SheetSpec, source: str = "python",
                     owner: str | None = None) -> Job:
        return self._submit("sheet", params, spec, source, owner)

    def submit_batch(self, params: GenerateParams, prompts: list[str], source: str = "python",
                     owner: str | None = None) -> Job:
        """Several items (one prompt each) in one job with one shared palette."""
        return self._submit("batch", params, ItemList(tuple(prompts)), source, owner)

    def submit_tileset(self, params: GenerateParams, spec: TileSpec, source: str = "python",
                       owner: str | None = None) -> Job:
        return self._submit("tileset", params, spec, source, owner)

    def _submit(self, kind: str, params: GenerateParams, spec: object, source: str, owner: str | None) -> Job:
        """Check what can be checked before the GPU, then queue (spec and params stored together)."""
        return self.queue.submit(kind, SpecJob(self.check_generate(params), spec, RECIPES[kind].spec_key),
                                 source, owner)

    # -- lookups ------------------------------------------------------------------------------------------

    def history(self, text: str = "", limit: int = 48) -> list[dict]:
        return self.store.history(text, limit)

    def job(self, job_id: str) -> dict:
        live = self.queue.get(job_id)
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        if live is not None:
            row.update(live.summary())
        return row

    # -- clean-up of any image (CPU only: runs in the caller's thread, not the GPU queue) -------------------

    def clean_up(self, source: Path | str, pixel_params: PixelParams, source_label: str = "python",
                 owner: str | None = None) -> tuple[Path, PixelResult]:
        """Any image -> its native sprite, named `<source>-sprite-<w>x<h>.png` in a folder of its own; returns
        (path, PixelResult). Beside it, `lattice.png`: the input with the fitted lattice drawn over it, so a wrong
        grid shows at a glance. Recorded as a finished 'cleanup' job with its seconds, so it is in the history,
        Metrics and exportable to Bevy like a generated sprite."""
        source = Path(source)
        job_id = uuid.uuid4().hex[:12]
        params = {"source": source.name, "pixel": pixel_params.to_dict()}
        self.store.add_job(job_id, "cleanup", source_label, owner, params, f"clean-up of {source.name}")
        self.store.mark_job(job_id, "running")
        try:
            rgba = load_rgba(source)
            result = pixelate(rgba, pixel_params)
            w, h = result.image.size
            stem = re.sub(r"[^A-Za-z0-9_-]+", "-", source.stem).strip("-")[:48] or "image"
            folder = self.settings.data_dir / "cleanup" / job_id
            dst = save_png(result.image, folder / f"{stem}-sprite-{w}x{h}.png")
            if result.lattice is not None:
                save_png(lattice_overlay(rgba, result), folder / "lattice.png")
            self.store.finish_job(job_id, params, [{"id": uuid.uuid4().hex[:12], "idx": 0, "seed": 0,
                                                    "path": str(dst), "width": w, "height": h}])
        except Exception as exc:
            self.store.mark_job(job_id, "failed", str(exc))
            raise
        return dst, result
