"""The studio core: the one object every front end (Python, CLI, Gradio, MCP) talks to.

It owns the settings, the DuckDB store, the model registry, the pipeline manager and the GPU job queue.
Front ends build params, call `submit_generate` / `generate`, and show what comes back; none of them touches
a pipeline or the database directly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from studio.demo import ensure_demo_model
from studio.files import save_png
from studio.jobs import Job, JobQueue
from studio.manager import PipelineManager
from studio.metadata import pnginfo
from studio.params import GenerateParams, ParamsError, new_seed
from studio.registry import HashCache, Registry, read_safetensors_header
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
    images: list[ImageResult]


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
        if not [m for m in self.registry.checkpoints() if not m.demo]:
            ensure_demo_model(settings.checkpoints_dir / DEMO_MODEL)
        self.manager = PipelineManager(self.registry, settings.device, int(settings.model_cache_gb * 2**30))
        self.queue = JobQueue(self.store, {"generate": self._run_generate})
        from studio.compare import Arena

        self.arena = Arena(self)

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
        models = self.registry.checkpoints()
        if self.settings.model:
            return self.registry.checkpoint(self.settings.model).name
        real = [m for m in models if not m.demo]
        return (real or models)[0].name

    @property
    def using_demo_model(self) -> bool:
        return all(m.demo for m in self.registry.checkpoints())

    def models(self) -> list[dict]:
        resident = set(self.manager.resident())
        return [
            {"name": m.name, "kind": m.kind, "path": str(m.path), "demo": m.demo, "size_mb": round(m.size_bytes / 2**20, 1),
             "resident": m.name in resident}
            for m in self.registry.checkpoints()
        ]

    def loras(self) -> list[dict]:
        return [
            {"name": lo.name, "path": str(lo.path), "size_mb": round(lo.size_bytes / 2**20, 2),
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
        model = self.registry.checkpoint(params.model).name if params.model else self.default_model
        for ref in params.loras:
            read_safetensors_header(self.registry.lora(ref.name).path)
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

    def _run_generate(self, job: Job) -> GenerateResult:
        params: GenerateParams = job.params
        pipe = self.manager.activate(params.model, params.loras)
        native = pipe.default_sample_size * pipe.vae_scale_factor
        params = params.resolved(width=native, height=native, model=params.model)
        job.params = params
        job.total = params.steps
        from pipelines.sprite import generate_sprites

        started = time.perf_counter()
        outputs = generate_sprites(pipe, params, job.check)
        log.info("job %s rendered %d image(s) in %.2f s", job.id, len(outputs), time.perf_counter() - started)
        entry = self.registry.checkpoint(params.model)
        model_hash = self.registry.hashes.short_hash(entry.path) if entry.kind == "single_file" else None
        day = time.strftime("%Y-%m-%d")
        folder = self.settings.outputs_dir / day
        written: list[Path] = []
        images: list[ImageResult] = []
        try:
            for i, out in enumerate(outputs):
                info = pnginfo(params, out.seed, {"job_id": job.id, "index": i}, model_hash)
                sprite_path = save_png(out.sprite, folder / f"{job.id}-{i}.png", info)
                written.append(sprite_path)
                raw_path = save_png(out.raw, folder / f"{job.id}-{i}-raw.png", info)
                written.append(raw_path)
                images.append(ImageResult(uuid.uuid4().hex[:12], out.seed, sprite_path, raw_path, *out.sprite.size))
            self.store.finish_job(
                job.id,
                params.to_dict(),
                [
                    {"id": im.id, "idx": i, "seed": im.seed, "path": str(im.path), "raw_path": str(im.raw_path),
                     "width": im.width, "height": im.height}
                    for i, im in enumerate(images)
                ],
            )
        except BaseException:
            for p in written:  # a full disk mid-batch leaves no orphan files behind
                p.unlink(missing_ok=True)
            raise
        return GenerateResult(job.id, params, images)

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

    def clean_up(self, source: Path | str, pixel_params):
        """An uploaded image -> native sprite PNG under the data folder; returns (path, PixelResult)."""
        from pipelines.pixel import pixelate_file

        dst = self.settings.data_dir / "cleanup" / f"{uuid.uuid4().hex[:12]}.png"
        return dst, pixelate_file(Path(source), dst, pixel_params)
