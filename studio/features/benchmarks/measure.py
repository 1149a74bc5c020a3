"""One benchmark run: its sizes (`Knobs`), its figures, and the scratch studio it measures.

Why a scratch studio: a run makes jobs, sprites, contenders, battles and a LoRA of its own. It makes them in a
studio of its own, on a temporary data folder whose models folder links to the model and LoRAs being measured,
so the user's history, contenders and LoRA list stay as they were (the price: the model is loaded once more for
the run). The run itself is one job on the studio's queue, so nothing else uses the GPU meanwhile: the scratch
studio's worker does the GPU work while the queue's worker waits for it.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.render import Cancelled
from studio.core import Studio
from studio.jobs import Job
from studio.params import GenerateParams, LoraRef
from studio.settings import Settings

PROMPT = "a knight in silver armour, pixel art sprite, side view"


@dataclass(frozen=True)
class Figure:
    """One measured figure: a row of the `benchmarks` table once the run's context is added."""

    metric: str
    value: float | None
    unit: str
    goal: float | None = None
    better: str | None = None  # "lower" | "higher": the side of the goal (or of an earlier run) that is better
    note: str | None = None


@dataclass(frozen=True)
class Knobs:
    """How much each benchmark does; `KNOBS` holds them per suite, full and tiny (a smoke run for tests)."""

    steps: int = 20  # denoising steps of the timed generations
    guidance: float = 6.0
    repeats: int = 3  # timed generations per side (studio, direct)
    switches: int = 10  # LoRA on/off switches timed
    reloads: int = 2  # pipeline reloads timed (the slow side)
    lora_rank: int = 8  # the random LoRA made when none is given
    samples: int = 3  # bundled sample renders the pixel engine cleans up
    pixel_repeats: int = 3
    mcp_repeats: int = 5
    mcp_steps: int = 2
    batch_sizes: tuple[int, ...] = (1, 4, 8)
    batch_repeats: int = 5
    battle_repeats: int = 2
    train_steps: int = 10
    train_warmup: int = 2
    train_rank: int = 16
    full_size: bool = False  # gpu suite: SDXL base's architecture with random weights (else the tiny one)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TINY = dict(steps=2, repeats=1, switches=2, reloads=1, lora_rank=4, samples=1, pixel_repeats=1, mcp_repeats=1,
             mcp_steps=1, batch_repeats=2, battle_repeats=1, train_steps=2, train_warmup=1, train_rank=4)
KNOBS: dict[tuple[str, bool], Knobs] = {
    ("quick", False): Knobs(),
    ("quick", True): Knobs(**_TINY),
    ("standard", False): Knobs(),
    ("standard", True): Knobs(**_TINY),
    ("gpu", False): Knobs(steps=30, guidance=5.0, reloads=1, lora_rank=32, train_steps=8, train_rank=32,
                          full_size=True),
    ("gpu", True): Knobs(**{**_TINY, "steps": 4, "guidance": 5.0}),
}


class Run:
    """The state of one run: the studio's own services (`main`), the outer job (progress, cancel), the scratch
    app, the model and LoRAs measured."""

    def __init__(self, main: Studio, job: Job, suite: str, model: str | None, loras: tuple[LoraRef, ...],
                 knobs: Knobs, open_app: Callable[[Settings], Any], mcp: Callable[[Any], Any] | None):
        self.main, self.job, self.suite, self.knobs = main, job, suite, knobs
        self.model = model  # None until the gpu suite's build phase made one
        self.loras = loras
        self.open_app = open_app  # Settings -> an App (studio + arena): the composition root's
        self.mcp = mcp  # App -> FastMCP server, where the front end serves MCP
        self.cuda = main.manager.device.type == "cuda"
        self.work = Path(tempfile.mkdtemp(prefix="dgxp-bench-"))
        self.models = self.work / "models"
        (self.models / "checkpoints").mkdir(parents=True)
        (self.models / "loras").mkdir()
        self.app: Any = None
        self.notes: list[str] = []
        self._bench_lora: LoraRef | None = None
        self._at = (0, 1, "")

    # -- the scratch studio ----------------------------------------------------------------------------------

    def _link(self) -> None:
        """The measured model and LoRAs, linked into the scratch models folder (never copied)."""
        if self.model and not any((self.models / "checkpoints").iterdir()):
            entry = self.main.registry.checkpoint(self.model)
            (self.models / "checkpoints" / entry.path.name).symlink_to(entry.path.resolve(),
                                                                       target_is_directory=entry.path.is_dir())
        for ref in self.loras:
            entry = self.main.registry.lora(ref.name)
            for path in {entry.path, *entry.formats.values()}:
                link = self.models / "loras" / Path(path).name
                if not link.exists():
                    link.symlink_to(Path(path).resolve())
        hashes = self.main.settings.data_dir / "hashes.json"  # a big model is hashed once, not once per run
        if hashes.is_file():
            (self.work / "data").mkdir(exist_ok=True)
            shutil.copyfile(hashes, self.work / "data" / "hashes.json")

    def open(self) -> Any:
        """The scratch app, opened on first use (the `cold` benchmark times this)."""
        if self.app is None:
            self._link()
            settings = dataclasses.replace(
                self.main.settings, data_dir=self.work / "data", models_dir=self.models, model=self.model,
                lan=False, password=None, mcp_token=None, pause_generation_while_training=False, project_roots=())
            self.app = self.open_app(settings)
        return self.app

    @property
    def studio(self) -> Studio:
        return self.open().studio

    def close_app(self) -> None:
        """Close the scratch studio and give its memory back (before a phase that loads models of its own)."""
        if self.app is not None:
            self.app.close()
            self.app = None
        self.free()

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()

    def close(self) -> None:
        try:
            self.close_app()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- progress and cancel ---------------------------------------------------------------------------------

    def begin(self, index: int, count: int, title: str) -> None:
        self._at = (index, count, title)
        self.tick(0, 1)

    def tick(self, done: int, of: int) -> None:
        """Progress inside the current benchmark; raises Cancelled when the run was cancelled."""
        i, n, title = self._at
        self.job.progress(i * 100 + min(99, int(100 * done / max(of, 1))), n * 100, f"{title} ({i + 1}/{n})")

    def cancelled(self) -> bool:
        return self.job.cancel_requested.is_set()

    def wait(self, job: Job) -> Any:
        """A scratch job's result; a cancel of the run cancels it too."""
        while not job.finished.wait(0.1):
            if self.cancelled():
                self.studio.queue.cancel(job.id)
        if self.cancelled():
            raise Cancelled()
        return self.studio.result(job)

    # -- timing ------------------------------------------------------------------------------------------------

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any]) -> float:
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def params(self, **kw) -> GenerateParams:
        k = self.knobs
        return GenerateParams(**{"prompt": PROMPT, "steps": k.steps, "guidance": k.guidance, "seed": 1,
                                 "model": self.model, "loras": self.loras, **kw})

    def job_time(self, submit: Callable[[], Job]) -> tuple[float, Job]:
        """Seconds from submitting a scratch job to its result (queue, render, clean-up, PNGs, DuckDB)."""
        self.sync()
        t = time.perf_counter()
        job = submit()
        self.wait(job)
        return time.perf_counter() - t, job

    def generate(self, params: GenerateParams) -> tuple[float, Job]:
        return self.job_time(lambda: self.studio.submit_generate(params, source="bench"))

    def direct(self, params: GenerateParams) -> float:
        """The same render as one direct diffusers call on the scratch studio's resident pipeline (its worker
        is idle meanwhile)."""
        import torch

        pipe = self.studio.manager.activate(params.model or self.model, params.loras)
        side = pipe.default_sample_size * pipe.vae_scale_factor

        def step(_pipe, _i, _t, kwargs):  # as the studio's step callback does: a cancel stops the loop
            if self.cancelled():
                raise Cancelled()
            return kwargs

        def call() -> None:
            with torch.inference_mode():
                pipe(prompt=params.prompt, negative_prompt=params.negative or None,
                     num_inference_steps=params.steps, guidance_scale=params.guidance, width=side, height=side,
                     num_images_per_prompt=params.count, callback_on_step_end=step,
                     generator=[torch.Generator("cpu").manual_seed(params.seed + i) for i in range(params.count)])

        return self.timed(call)

    # -- a LoRA to switch ----------------------------------------------------------------------------------------

    def bench_lora(self) -> LoraRef:
        """The first LoRA asked for, else a random one (rank `lora_rank` on the UNet's attention projections)
        written into the scratch LoRA folder once per run."""
        if self.loras:
            return self.loras[0]
        if self._bench_lora is None:
            import torch
            from safetensors.torch import save_file

            pipe = self.studio.manager.pipeline(self.model)
            gen = torch.Generator("cpu").manual_seed(0)
            r, state = self.knobs.lora_rank, {}
            for name, mod in pipe.unet.named_modules():
                if name.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(mod, torch.nn.Linear):
                    state[f"unet.{name}.lora_A.weight"] = torch.randn(r, mod.in_features, generator=gen) * 0.01
                    state[f"unet.{name}.lora_B.weight"] = torch.randn(mod.out_features, r, generator=gen) * 0.01
            save_file({k: v.to(torch.bfloat16) for k, v in state.items()},
                      str(self.models / "loras" / "bench-random.safetensors"))
            self._bench_lora = LoraRef("bench-random", 0.8)
        return self._bench_lora
