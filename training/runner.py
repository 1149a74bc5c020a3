"""The training child process: `python -m training.runner RUN_DIR` trains, samples, checkpoints and exports.

The studio's side (run folders, start/resume, RunHandle, status) is `training.runs`, which starts this
module as its own process and never imports it; the run folder's layout is described there. The child
imports `training.runs` and `training.config` for the files they own, never the other way round.

A checkpoint folder is written under a temp name and renamed, so a kill mid-save leaves the previous
checkpoints and never a half one. Resume restores LoRA weights, optimizer, lr schedule, RNG and step, so the
loss curve of a stopped-and-resumed run is the curve of an uninterrupted one.

torch, diffusers and safetensors are imported inside the functions that use them, as everywhere in the
studio: importing this module (the tests, the bench, the usage message) does not pay seconds for torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.sprite import generate_sprites
from studio.files import atomic_write_text, save_png
from studio.params import GenerateParams
from training.config import TrainConfig
from training.hashing import dataset_hash
from training.lora import LoraTrainer, save_lora
from training.lora_formats import save_kohya
from training.runs import check_base, list_checkpoints, read_json, read_metrics, scan_dataset, write_json


# ------------------------------------------------------------------------------------------------ dataset
def bucket_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The training size for an image: about resolution² pixels, its aspect ratio, sides a multiple of
    resolution // 16 (64 at 1024, what SDXL's buckets use)."""
    step = max(8, resolution // 16)
    scale = (resolution * resolution / (width * height)) ** 0.5
    w = max(step, int(width * scale) // step * step)
    h = max(step, int(height * scale) // step * step)
    return w, h


def load_image(path: Path, resolution: int):
    """The image at its bucket size, plus SDXL's six size/crop conditioning ids.

    Nearest-neighbour only: any smoothing filter blurs a pixel-art grid into something else. The image is
    scaled to cover the bucket and centre-cropped; transparency is flattened onto white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            rgba = im.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        else:
            img = im.convert("RGB")
    ow, oh = img.size
    bw, bh = bucket_size(ow, oh, resolution)
    scale = max(bw / ow, bh / oh)
    sw, sh = max(bw, round(ow * scale)), max(bh, round(oh * scale))
    if (sw, sh) != (ow, oh):
        img = img.resize((sw, sh), Image.NEAREST)
    left, top = (sw - bw) // 2, (sh - bh) // 2
    img = img.crop((left, top, left + bw, top + bh))
    return img, (oh, ow, top, left, bh, bw)


def with_trigger(caption: str, trigger: str) -> str:
    if not trigger or trigger in caption.split(", ") or caption.startswith(trigger):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


class _Run:
    """The state of one training process: writes the run folder as it goes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.cfg = TrainConfig.from_dict(read_json(run_dir / "config.json"))
        self.status = read_json(run_dir / "status.json") or {"started": time.time()}
        self._last_status = 0.0

    def log(self, msg: str) -> None:
        with open(self.run_dir / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def set_status(self, force: bool = True, **fields: Any) -> None:
        self.status.update(fields, pid=os.getpid(), total=self.cfg.steps, updated=time.time())
        if force or time.time() - self._last_status > 0.5:
            write_json(self.run_dir / "status.json", self.status)
            self._last_status = time.time()


@dataclass
class RunResult:
    """What an in-process run leaves behind: the final status, and the trained pipeline and trainer (for tests
    and for a caller that wants to render with the LoRA it just trained without reloading it)."""

    status: dict[str, Any]
    pipe: Any = None
    trainer: Any = None


def run_training(run_dir: str | Path) -> RunResult:
    """Train the run in this process (the child's entry point).

    Errors are recorded in status.json (state failed, error) and log.txt, then re-raised."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    run = _Run(Path(run_dir))
    try:
        pipe, trainer = _train(run)
    except BaseException as exc:
        msg = _error_message(exc)
        run.log("FAILED: " + msg + "\n" + traceback.format_exc())
        run.set_status(state="failed", error=msg)
        raise
    return RunResult(run.status, pipe, trainer)


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == 28:
        return f"disk full while saving ({exc}); the previous checkpoint is kept - free space and resume"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _train(run: _Run) -> tuple[Any, Any]:
    import torch

    cfg, run_dir = run.cfg, run.run_dir
    run.set_status(state="running", error=None)
    current_hash = check_base(cfg)
    pairs = scan_dataset(cfg.dataset_dir)
    data_hash = dataset_hash(pairs)
    loaded = [load_image(p, cfg.resolution) for p, _ in pairs]
    captions = [with_trigger(c, cfg.trigger_word) for _, c in pairs]
    run.log(f"dataset: {len(pairs)} images, hash {data_hash}; base {cfg.base_model} ({current_hash})")

    pipe = _load_pipeline(cfg, run)
    lcfg = cfg.lora_config()
    if lcfg.mixed_precision == "bf16" and pipe.unet.device.type != "cuda":
        run.log("note: mixed_precision bf16 needs CUDA; training in float32 on the CPU")
        lcfg = dataclasses.replace(lcfg, mixed_precision="no")
    t0 = time.time()
    trainer = LoraTrainer(pipe, [im for im, _ in loaded], captions, lcfg, time_ids=[c for _, c in loaded],
                          cache=cfg.cache_latents, log=run.log)
    run.log(f"prepared in {time.time() - t0:.1f}s (cache_latents={cfg.cache_latents})")
    _resume_from_checkpoint(run, trainer, current_hash, data_hash)
    prompts = sample_prompts(cfg, captions)

    recent: list[float] = []
    while trainer.step < cfg.steps:
        if (run_dir / "STOP").exists():
            _save_checkpoint(run, trainer, current_hash, data_hash)
            (run_dir / "STOP").unlink(missing_ok=True)
            run.log(f"stopped at step {trainer.step}")
            run.set_status(state="stopped", step=trainer.step, eta_s=None)
            return pipe, trainer
        t = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        lr = trainer.lr  # the rate this step uses (the schedule advances inside train_step)
        loss = trainer.train_step()
        dt = time.perf_counter() - t
        if not torch.isfinite(torch.tensor(loss)):
            raise FloatingPointError(f"loss became {loss} at step {trainer.step}; try a lower learning_rate")
        row = {"step": trainer.step, "loss": loss, "lr": lr, "sec_per_step": round(dt, 5),
               "mem_mb": round(_mem_mb(), 1), "time": round(time.time(), 3)}
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        recent = (recent + [dt])[-20:]
        eta = sum(recent) / len(recent) * (cfg.steps - trainer.step)
        run.set_status(force=False, step=trainer.step, eta_s=round(eta, 1))
        if cfg.sample_every and trainer.step % cfg.sample_every == 0:
            _sample(run, pipe, prompts, trainer.step)
        if cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0 and trainer.step < cfg.steps:
            _save_checkpoint(run, trainer, current_hash, data_hash)
    # the end of a run, each phase logged with its time (so the minutes after the last step are never silent)
    last_step = time.perf_counter()
    run.log(f"training finished: step {trainer.step}/{cfg.steps}")
    if cfg.sample_every and cfg.steps % cfg.sample_every:
        _sample(run, pipe, prompts, trainer.step)
    # the finished state is a checkpoint too: if the export fails (disk full), resuming only re-exports
    _save_checkpoint(run, trainer, current_hash, data_hash)
    pipe.unet.eval()
    run.set_status(phase="exporting the LoRA")
    t = time.perf_counter()
    files = export_lora(run, pipe, lcfg, current_hash, data_hash)
    run.log(f"LoRA exported in {time.perf_counter() - t:.1f} s ({time.perf_counter() - last_step:.1f} s after "
            "the last step): " + ", ".join(str(f) for f in files))
    run.set_status(state="done", phase=None, step=trainer.step, eta_s=0, exports=[str(f) for f in files])
    return pipe, trainer


def _load_pipeline(cfg: TrainConfig, run: _Run):
    import torch
    from diffusers import StableDiffusionXLPipeline

    base = Path(cfg.base_model)
    if not (base / "model_index.json").is_file():
        raise ValueError(f"base model {base} is not a diffusers folder (no model_index.json)")
    quiet_progress_bars()
    pipe = StableDiffusionXLPipeline.from_pretrained(base, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    run.log(f"device {device}")
    return pipe.to(device)


def quiet_progress_bars() -> None:
    """No progress bars in log.txt: loading bars (diffusers' components, transformers' weights) are redrawn
    with carriage returns and cursor escapes, which a log file and the Train tab show as garbage. The run's
    own progress is status.json and metrics.jsonl."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()


def _mem_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in KiB on Linux


def sample_prompts(cfg: TrainConfig, captions: list[str]) -> list[str]:
    """The preset's sample prompts, else the first distinct non-empty captions, else the trigger word, else a
    neutral prompt: a dataset without captions or trigger word still gets samples."""
    return (list(cfg.sample_prompts) or list(dict.fromkeys(c for c in captions if c.strip()))[:2]
            or [f"{cfg.trigger_word}, pixel art sprite".lstrip(", ")])


def _sample(run: _Run, pipe, prompts: list[str], step: int) -> None:
    """Fixed prompts and seeds every time, so the samples of successive steps show what training changed.

    Samples are for looking at: a failure here is logged and training goes on, it never costs the weights."""
    side = run.cfg.resolution
    run.set_status(phase="sampling")
    t = time.perf_counter()
    try:
        _render_samples(run, pipe, prompts, step)
    except Exception as exc:  # noqa: BLE001 - anything: the run's weights matter more than its pictures
        run.log(f"samples at step {step} failed ({type(exc).__name__}: {exc}); training continues")
    else:
        run.log(f"sampling at step {step}: {len(prompts)} image(s), {run.cfg.sample_steps} steps at "
                f"{side}x{side} px in {time.perf_counter() - t:.1f} s")
    finally:
        run.set_status(phase=None)


def _render_samples(run: _Run, pipe, prompts: list[str], step: int) -> None:
    import torch

    cfg = run.cfg
    was_training = pipe.unet.training
    pipe.unet.eval()
    bf16 = cfg.mixed_precision == "bf16" and pipe.unet.device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        for i, prompt in enumerate(prompts):
            params = GenerateParams(prompt=prompt, seed=(cfg.sample_seed + i) % 2**32, steps=cfg.sample_steps,
                                    width=cfg.resolution, height=cfg.resolution, model=cfg.base_model)
            with ctx:
                out = generate_sprites(pipe, params)[0]
            save_png(out.sprite, run.run_dir / "samples" / f"step_{step}_{i}.png")
    finally:
        pipe.unet.train(was_training)


# ------------------------------------------------------------------------------------------------ checkpoints
def _save_checkpoint(run: _Run, trainer, base_hash: str, data_hash: str) -> Path | None:
    """checkpoints/step_<N>/ via a temp folder + rename; then drop all but the newest keep_checkpoints."""
    import torch
    from safetensors.torch import save_file

    ckdir = run.run_dir / "checkpoints"
    final = ckdir / f"step_{trainer.step}"
    if final.is_dir():
        return final
    started = time.perf_counter()
    run.set_status(phase="saving a checkpoint")
    tmp = ckdir / f".tmp_step_{trainer.step}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(trainer.lora_state(), str(tmp / "lora.safetensors"))
        state = trainer.state_dict()
        state["torch_rng"] = torch.get_rng_state()
        torch.save(state, tmp / "trainer.pt")
        meta = {"step": trainer.step, "base_model_hash": base_hash, "dataset_hash": data_hash,
                "time": time.time()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(run.run_dir)[: -run.cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    run.log(f"checkpoint step {trainer.step} saved in {time.perf_counter() - started:.1f} s")
    run.set_status(phase=None)
    return final


def load_checkpoint(ckpt: Path) -> tuple[dict, dict, dict]:
    """(LoRA state, trainer state, meta) of one checkpoint folder."""
    import torch
    from safetensors.torch import load_file

    lora = load_file(str(ckpt / "lora.safetensors"))
    state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    return lora, state, read_json(ckpt / "meta.json")


def _resume_from_checkpoint(run: _Run, trainer, base_hash: str, data_hash: str) -> None:
    """Continue from the newest checkpoint; drop metrics the killed process logged after it."""
    import torch

    ckdir = run.run_dir / "checkpoints"
    for leftover in ckdir.glob(".tmp_*") if ckdir.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)  # a save that was killed halfway
    found = list_checkpoints(run.run_dir)
    step = 0
    if found:
        step, ckpt = found[-1]
        lora, state, meta = load_checkpoint(ckpt)
        if meta.get("base_model_hash") not in (None, base_hash):
            raise ValueError(f"checkpoint {ckpt.name} was trained on base {meta['base_model_hash']}, "
                             f"the base model is now {base_hash}")
        if meta.get("dataset_hash") not in (None, data_hash):
            run.log(f"note: the dataset changed since {ckpt.name}; continuing on the new images")
        trainer.load_lora_state(lora)
        trainer.load_state_dict(state)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        run.log(f"resumed from {ckpt.name}")
    rows = [r for r in read_metrics(run.run_dir) if r["step"] <= step]
    metrics = run.run_dir / "metrics.jsonl"
    if rows or metrics.exists():
        atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in rows))
    run.set_status(step=step)


# ------------------------------------------------------------------------------------------------ export
def export_lora(run: _Run, pipe, lcfg, base_hash: str, data_hash: str) -> list[Path]:
    """The final LoRA in diffusers/peft and kohya form, into run_dir/final/ and then export_dir.

    Both go into export_dir under temp names first and are renamed only when both are complete, so the
    studio's LoRA folder never shows a half-written file (or a diffusers file without its kohya twin)."""
    cfg, name = run.cfg, run.cfg.output_name
    metadata = {"dgxp.base_model": Path(cfg.base_model).name, "dgxp.base_model_hash": base_hash,
                "dgxp.rank": str(cfg.rank), "dgxp.alpha": str(cfg.alpha),
                "dgxp.trigger_word": cfg.trigger_word,
                "dgxp.dataset_hash": data_hash, "dgxp.steps": str(cfg.steps), "dgxp.preset": cfg.preset,
                "dgxp.resolution": str(cfg.resolution), "dgxp.learning_rate": str(cfg.learning_rate)}
    final = run.run_dir / "final"
    final.mkdir(exist_ok=True)
    diff_file = save_lora(pipe, final / f"{name}.safetensors", lcfg, metadata)
    kohya_file = save_kohya(diff_file, final / f"{name}_kohya.safetensors", pipe.unet.config, metadata)
    outputs = [diff_file, kohya_file]
    if not cfg.export_dir:
        return outputs
    export = Path(cfg.export_dir)
    export.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        for src in outputs:
            tmp = export / f".{src.name}.{os.getpid()}.tmp"
            temps.append(tmp)
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        published = []
        for src, tmp in zip(outputs, temps, strict=True):
            os.replace(tmp, export / src.name)
            published.append(export / src.name)
        return published
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.runner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    # a polite kill (the studio shutting down) is a stop request: finish the step, checkpoint, exit
    signal.signal(signal.SIGTERM, lambda *_: (run_dir / "STOP").touch())
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
        run_training(run_dir)
    except Exception:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
