"""The LoRA training runner: a config, a run folder, and a child process that trains, samples and checkpoints.

Training runs in its own process (`python -m training.runner RUN_DIR`) so the studio survives a crash or an
out-of-memory kill, and so a run can be stopped, killed and resumed. Everything the studio needs to know is a
small file in the run folder, each written atomically (temp + rename), so a reader never sees half a file:

    <runs_root>/<run_id>/
        config.json              TrainConfig.to_dict() (with the base model's hash pinned at start)
        status.json              state running|stopped|failed|done, step, total, eta_s, error, pid
        metrics.jsonl            one line per step: step, loss, lr, sec_per_step, mem_mb
        log.txt                  the runner's notes plus the child's stdout/stderr
        samples/step_<N>_<i>.png fixed prompts and seeds, rendered with the in-training UNet
        checkpoints/step_<N>/    lora.safetensors, trainer.pt (optimizer, lr schedule, RNG, step), meta.json
        final/<name>.safetensors and <name>_kohya.safetensors (copied atomically into export_dir)
        STOP                     written by RunHandle.stop(); the child checkpoints and exits

A checkpoint folder is written under a temp name and renamed, so a kill mid-save leaves the previous
checkpoints and never a half one. Resume restores LoRA weights, optimizer, lr schedule, RNG and step, so the
loss curve of a stopped-and-resumed run is the curve of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).with_name("presets")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
STATES = ("running", "stopped", "failed", "done")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHORT = 12  # hex digits kept of a sha256


# ------------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs, JSON-serialisable; validation gives the same message to every front end."""

    base_model: str
    dataset_dir: str
    output_name: str
    preset: str = "custom"
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    steps: int = 1000
    batch_size: int = 1
    resolution: int = 1024
    caption_dropout: float = 0.0
    min_snr_gamma: float | None = None
    noise_offset: float = 0.0
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    optimizer: str = "adamw"
    sample_every: int = 0  # 0: no samples
    sample_prompts: tuple[str, ...] = ()  # empty: the first dataset captions
    sample_seed: int = 0
    sample_steps: int = 20
    checkpoint_every: int = 100  # 0: only when stopped
    keep_checkpoints: int = 3
    trigger_word: str = ""  # prepended to every caption that lacks it
    cache_latents: bool = True
    train_text_encoder: bool = False  # LoRA on both CLIP encoders too (kohya's "train_unet_only = false")
    text_encoder_lr: float | None = None  # None: learning_rate
    export_dir: str | None = None  # where the final LoRA files are published (the studio: models/loras/)
    base_model_hash: str | None = None  # pinned by start_run; resuming on another base is refused

    def __post_init__(self) -> None:
        for name in ("base_model", "dataset_dir", "export_dir"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
        object.__setattr__(self, "sample_prompts", tuple(self.sample_prompts))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        need(bool(self.base_model), "base_model must be the path of a diffusers model folder")
        need(bool(self.dataset_dir), "dataset_dir must be the folder of training images and captions")
        need(isinstance(self.output_name, str) and bool(_NAME_RE.match(self.output_name)),
             f"output_name must be 1-100 letters, digits, '.', '_' or '-', got {self.output_name!r}")
        need(is_int(self.rank) and 1 <= self.rank <= 256,
             f"rank must be a whole number from 1 to 256, got {self.rank!r}")
        need(is_num(self.alpha) and self.alpha > 0, f"alpha must be greater than 0, got {self.alpha!r}")
        need(is_num(self.learning_rate) and 0 < self.learning_rate < 1,
             f"learning_rate must be between 0 and 1 (e.g. 1e-4), got {self.learning_rate!r}")
        need(is_int(self.steps) and self.steps >= 1, f"steps must be at least 1, got {self.steps!r}")
        need(is_int(self.batch_size) and self.batch_size >= 1,
             f"batch_size must be at least 1, got {self.batch_size!r}")
        need(is_int(self.resolution) and self.resolution >= 64 and self.resolution % 8 == 0,
             f"resolution must be a multiple of 8 and at least 64, got {self.resolution!r}")
        need(is_num(self.caption_dropout) and 0 <= self.caption_dropout < 1,
             f"caption_dropout must be from 0 up to (not including) 1, got {self.caption_dropout!r}")
        need(self.min_snr_gamma is None or (is_num(self.min_snr_gamma) and self.min_snr_gamma > 0),
             f"min_snr_gamma must be empty or greater than 0, got {self.min_snr_gamma!r}")
        need(is_num(self.noise_offset) and 0 <= self.noise_offset <= 1,
             f"noise_offset must be from 0 to 1, got {self.noise_offset!r}")
        need(self.lr_scheduler in ("constant", "cosine"),
             f"lr_scheduler must be 'constant' or 'cosine', got {self.lr_scheduler!r}")
        need(is_int(self.warmup_steps) and 0 <= self.warmup_steps <= self.steps,
             f"warmup_steps must be from 0 to steps ({self.steps}), got {self.warmup_steps!r}")
        need(self.max_grad_norm is None or (is_num(self.max_grad_norm) and self.max_grad_norm > 0),
             f"max_grad_norm must be empty or greater than 0, got {self.max_grad_norm!r}")
        need(is_int(self.seed) and 0 <= self.seed < 2**32,
             f"seed must be from 0 to 4294967295, got {self.seed!r}")
        need(self.mixed_precision in ("no", "bf16"),
             f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        need(self.optimizer in ("adamw", "adamw8bit"),
             f"optimizer must be 'adamw' or 'adamw8bit', got {self.optimizer!r}")
        need(self.text_encoder_lr is None or (is_num(self.text_encoder_lr) and 0 < self.text_encoder_lr < 1),
             f"text_encoder_lr must be empty (= learning_rate) or between 0 and 1, got {self.text_encoder_lr!r}")
        for name in ("gradient_checkpointing", "cache_latents", "train_text_encoder"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false")
        for name in ("sample_every", "checkpoint_every", "sample_seed"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 0,
                 f"{name} must be a whole number, 0 or more, got {getattr(self, name)!r}")
        need(is_int(self.sample_steps) and 1 <= self.sample_steps <= 150,
             f"sample_steps must be from 1 to 150, got {self.sample_steps!r}")
        need(is_int(self.keep_checkpoints) and self.keep_checkpoints >= 1,
             f"keep_checkpoints must be at least 1, got {self.keep_checkpoints!r}")
        need(all(isinstance(p, str) and p.strip() for p in self.sample_prompts),
             "sample_prompts must be non-empty text")
        need(isinstance(self.trigger_word, str), "trigger_word must be text")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sample_prompts"] = list(self.sample_prompts)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        from studio.params import checked_fields

        data = checked_fields(cls, data, "training setting")
        missing = {"base_model", "dataset_dir", "output_name"} - set(data)
        if missing:
            raise ValueError(f"missing training setting(s): {', '.join(sorted(missing))}")
        return cls(**data)

    def lora_config(self):
        from training.lora import LoraTrainConfig

        return LoraTrainConfig(
            rank=self.rank, alpha=float(self.alpha), learning_rate=self.learning_rate, steps=self.steps,
            batch_size=self.batch_size, seed=self.seed, caption_dropout=self.caption_dropout,
            min_snr_gamma=self.min_snr_gamma, noise_offset=self.noise_offset, lr_scheduler=self.lr_scheduler,
            warmup_steps=self.warmup_steps, max_grad_norm=self.max_grad_norm,
            gradient_checkpointing=self.gradient_checkpointing, mixed_precision=self.mixed_precision,
            optimizer=self.optimizer, train_text_encoder=self.train_text_encoder,
            text_encoder_lr=self.text_encoder_lr,
        )


def coerce_setting(key: str, text: str) -> Any:
    """A training setting typed in as text (CLI `--set key=value`) -> the value TrainConfig expects.

    The type comes from TrainConfig's own annotation, so a new field needs no code here. "" / "none" / "off"
    clear an optional field (min_snr_gamma=off)."""
    fixed = ("base_model", "dataset_dir", "output_name", "export_dir", "base_model_hash")  # set by the studio
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig) if f.name not in fixed}
    if key not in types:
        raise ValueError(f"unknown training setting {key!r}; settable: {', '.join(sorted(types))}")
    kind, raw = types[key], text.strip()
    if "None" in kind and raw.lower() in ("", "none", "off"):
        return None
    try:
        if kind.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes", "on")
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(p.strip() for p in raw.split("|") if p.strip())
    except ValueError:
        raise ValueError(f"{key} must be {kind.split(' ')[0]}, got {text!r}") from None
    return raw


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """A preset by name (`fast`, `balanced`, `quality`) or a .toml path; returns its settings as a dict."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            choices = ", ".join(list_presets())
            raise ValueError(f"unknown preset {str(name_or_path)!r}; choose one of {choices}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"preset {path.name} is not valid TOML: {exc}") from exc
    data.setdefault("preset", path.stem)
    return data


def config_from_preset(preset: str | Path | dict[str, Any], **overrides: Any) -> TrainConfig:
    """Preset values, then `overrides` (base_model, dataset_dir, output_name at least); validated.

    A preset's warmup is a share of its steps: when `steps` is overridden and `warmup_steps` is not, the
    warmup scales with it (balanced's 75 of 1500 becomes 3 of 60), rather than failing validation."""
    values = dict(preset) if isinstance(preset, dict) else load_preset(preset)
    values.pop("description", None)
    if "steps" in overrides and "warmup_steps" not in overrides and values.get("steps"):
        values["warmup_steps"] = round(values.get("warmup_steps", 0) * overrides["steps"] / values["steps"])
    values.update(overrides)
    return TrainConfig.from_dict(values)


# ------------------------------------------------------------------------------------------------ files
def _write_atomic(path: Path, data: bytes) -> None:
    from studio.files import atomic_write_bytes

    atomic_write_bytes(path, data)


def _write_json(path: Path, obj: Any) -> None:
    _write_atomic(path, json.dumps(obj, indent=2).encode("utf-8"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in this process: a real SDXL UNet is ~5 GB, and
    the studio asks again for every run it starts."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _sha256_uncached(path)
    return _HASHES[key]


def _sha256_uncached(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_model_hash(base_model: str | Path) -> str:
    """Short sha256 of the base's UNet weights: the part of the model a UNet LoRA is trained against."""
    base = Path(base_model)
    if base.is_file():
        return _sha256_file(base)[:_SHORT]
    unet = base / "unet"
    files = sorted(unet.glob("*.safetensors")) or sorted(unet.glob("*.bin"))
    if not files:
        raise ValueError(f"base model {base} has no unet weights (expected a diffusers folder with unet/)")
    h = hashlib.sha256()
    for f in files:
        h.update(_sha256_file(f).encode())
    return (_sha256_file(files[0]) if len(files) == 1 else h.hexdigest())[:_SHORT]


# ------------------------------------------------------------------------------------------------ dataset
def scan_dataset(dataset_dir: str | Path) -> list[tuple[Path, str]]:
    """(image, caption) pairs, kohya style: `x.png` beside `x.txt`, searched recursively; sorted by path."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not images:
        raise ValueError(f"dataset folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [p for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(root)) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{len(missing)} image(s) have no caption file (.txt beside the image): "
                         f"{names}{more}")
    return [(p, p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in images]


def dataset_hash(pairs: list[tuple[Path, str]]) -> str:
    """sha256 over the sorted (image sha256, caption) pairs: renaming files keeps it, editing one
    changes it."""
    items = sorted(f"{_sha256_file(p)}\0{caption}" for p, caption in pairs)
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:_SHORT]


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
    from PIL import Image

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


# ------------------------------------------------------------------------------------------------ run folder
def read_status(run_dir: str | Path) -> dict[str, Any]:
    """status.json, with a 'running' run whose process is gone reported as failed (killed or crashed)."""
    run_dir = Path(run_dir)
    status = _read_json(run_dir / "status.json")
    if status.get("state") == "running" and status.get("pid") and not _pid_alive(int(status["pid"])):
        status = {**status, "state": "failed",
                  "error": f"the training process ended without finishing (killed or crashed) at step "
                           f"{status.get('step', 0)}; resume to continue from the last checkpoint"}
    return status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return True


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl as dicts; a half-written last line (the child is mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def list_runs(runs_root: str | Path) -> list[dict[str, Any]]:
    """Every run folder under runs_root (newest first) with its status and config summary."""
    root = Path(runs_root)
    runs: list[dict[str, Any]] = []
    if not root.is_dir():
        return runs
    for d in sorted((p for p in root.iterdir() if (p / "config.json").is_file()), reverse=True):
        cfg = _read_json(d / "config.json")
        runs.append({"run_id": d.name, "run_dir": str(d), "output_name": cfg.get("output_name"),
                     "preset": cfg.get("preset"), **read_status(d)})
    return runs


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (the renamed folders; temp folders are ignored), oldest first."""
    ckdir = Path(run_dir) / "checkpoints"
    found = []
    for p in ckdir.glob("step_*") if ckdir.is_dir() else []:
        m = re.fullmatch(r"step_(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


# ------------------------------------------------------------------------------------------------ handle
class RunHandle:
    """A run folder plus, when this process started it, the child process."""

    def __init__(self, run_dir: Path, process: subprocess.Popen | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else read_status(self.run_dir).get("pid")

    def stop(self) -> None:
        """Ask the child to checkpoint and exit at the end of the current step."""
        _write_atomic(self.run_dir / "STOP", b"stop\n")

    def kill(self) -> None:
        """SIGKILL the child's whole process group (a stuck run); the last checkpoint stays usable.

        The child is started as a session leader, so its process group id is its pid; a recorded pid whose
        group differs is some other process that reused the number and is left alone."""
        pid = self.process.pid if self.process else read_status(self.run_dir).get("pid")
        if pid and (self.process is not None or _pid_alive(int(pid))):
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.process:
            self.process.wait()

    def is_alive(self) -> bool:
        if self.process:
            return self.process.poll() is None
        pid = read_status(self.run_dir).get("pid")
        return bool(pid) and _pid_alive(int(pid))

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Until the run leaves the running state (or timeout seconds); returns its status."""
        if self.process:
            self.process.wait(timeout)
            return self.status()
        deadline = None if timeout is None else time.time() + timeout
        while (status := self.status()).get("state") == "running" and self.is_alive():
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"run {self.run_dir.name} still running after {timeout}s")
            time.sleep(0.2)
        return status

    def status(self) -> dict[str, Any]:
        if self.process:
            self.process.poll()  # reap, so a dead child is not mistaken for a live zombie
        return read_status(self.run_dir)


def _new_run_dir(runs_root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        run_dir = runs_root / f"{stamp}-{name}" if n == 0 else runs_root / f"{stamp}-{name}-{n}"
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError("could not create a run folder")


def _spawn(run_dir: Path) -> RunHandle:
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))}
    with open(run_dir / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "training.runner", str(run_dir)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=repo_root, env=env,
                                start_new_session=True)
    st = _read_json(run_dir / "status.json")
    _write_json(run_dir / "status.json", {**st, "state": "running", "pid": proc.pid, "error": None,
                                          "updated": time.time()})
    return RunHandle(run_dir, proc)


def prepare_run(config: TrainConfig, runs_root: str | Path) -> Path:
    """Check the inputs (fast failures here, not minutes later in the child), create the run folder, pin the
    base model's hash, write config.json and an initial status.json."""
    pairs = scan_dataset(config.dataset_dir)
    pinned = base_model_hash(config.base_model)
    if config.base_model_hash and config.base_model_hash != pinned:
        raise ValueError(f"base model {config.base_model} has hash {pinned}, not the "
                         f"{config.base_model_hash} this config was made for")
    config = dataclasses.replace(config, base_model_hash=pinned)
    run_dir = _new_run_dir(Path(runs_root), config.output_name)
    _write_json(run_dir / "config.json", config.to_dict())
    _write_json(run_dir / "status.json", {"state": "running", "step": 0, "total": config.steps, "eta_s": None,
                                          "error": None, "pid": None, "images": len(pairs),
                                          "started": time.time(), "updated": time.time()})
    return run_dir


def start_run(config: TrainConfig, runs_root: str | Path) -> RunHandle:
    """Create a run folder and start training in a child process (its own process group)."""
    return _spawn(prepare_run(config, runs_root))


def resume_run(run_dir: str | Path) -> RunHandle:
    """Restart a stopped, killed or failed run; the child continues from the newest checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a training run folder (no config.json)")
    status = read_status(run_dir)
    if status.get("state") == "done":
        raise ValueError(f"run {run_dir.name} has already finished")
    if status.get("state") == "running":
        raise ValueError(f"run {run_dir.name} is still running (pid {status.get('pid')})")
    cfg = TrainConfig.from_dict(_read_json(run_dir / "config.json"))
    _check_base(cfg)
    (run_dir / "STOP").unlink(missing_ok=True)
    return _spawn(run_dir)


def _check_base(cfg: TrainConfig) -> str:
    current = base_model_hash(cfg.base_model)
    if cfg.base_model_hash and current != cfg.base_model_hash:
        raise ValueError(f"the base model at {cfg.base_model} changed since this run started (hash "
                         f"{cfg.base_model_hash} then, {current} now); a LoRA cannot continue on a "
                         "different base")
    return current


# ------------------------------------------------------------------------------------------------ the child
class _Run:
    """The state of one training process: writes the run folder as it goes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.cfg = TrainConfig.from_dict(_read_json(run_dir / "config.json"))
        self.status = _read_json(run_dir / "status.json") or {"started": time.time()}
        self._last_status = 0.0

    def log(self, msg: str) -> None:
        with open(self.run_dir / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def set_status(self, force: bool = True, **fields: Any) -> None:
        self.status.update(fields, pid=os.getpid(), total=self.cfg.steps, updated=time.time())
        if force or time.time() - self._last_status > 0.5:
            _write_json(self.run_dir / "status.json", self.status)
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
    current_hash = _check_base(cfg)
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
    from training.lora import LoraTrainer

    t0 = time.time()
    trainer = LoraTrainer(pipe, [im for im, _ in loaded], captions, lcfg, time_ids=[c for _, c in loaded],
                          cache=cfg.cache_latents, log=run.log)
    run.log(f"prepared in {time.time() - t0:.1f}s (cache_latents={cfg.cache_latents})")
    _resume_from_checkpoint(run, trainer, current_hash, data_hash)
    prompts = list(cfg.sample_prompts) or list(dict.fromkeys(captions))[:2]

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
    if cfg.sample_every and cfg.steps % cfg.sample_every:
        _sample(run, pipe, prompts, trainer.step)
    # the finished state is a checkpoint too: if the export fails (disk full), resuming only re-exports
    _save_checkpoint(run, trainer, current_hash, data_hash)
    pipe.unet.eval()
    files = export_lora(run, pipe, lcfg, current_hash, data_hash)
    run.log("exported " + ", ".join(str(f) for f in files))
    run.set_status(state="done", step=trainer.step, eta_s=0, exports=[str(f) for f in files])
    return pipe, trainer


def _load_pipeline(cfg: TrainConfig, run: _Run):
    import torch
    from diffusers import StableDiffusionXLPipeline

    base = Path(cfg.base_model)
    if not (base / "model_index.json").is_file():
        raise ValueError(f"base model {base} is not a diffusers folder (no model_index.json)")
    pipe = StableDiffusionXLPipeline.from_pretrained(base, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    run.log(f"device {device}")
    return pipe.to(device)


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


def _sample(run: _Run, pipe, prompts: list[str], step: int) -> None:
    """Fixed prompts and seeds every time, so the samples of successive steps show what training changed."""
    import contextlib

    import torch

    from pipelines.sprite import generate_sprites
    from studio.files import save_png
    from studio.params import GenerateParams

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
    run.log(f"checkpoint step {trainer.step}")
    return final


def load_checkpoint(ckpt: Path) -> tuple[dict, dict, dict]:
    """(LoRA state, trainer state, meta) of one checkpoint folder."""
    import torch
    from safetensors.torch import load_file

    lora = load_file(str(ckpt / "lora.safetensors"))
    state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    return lora, state, _read_json(ckpt / "meta.json")


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
        _write_atomic(metrics, "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    run.set_status(step=step)


# ------------------------------------------------------------------------------------------------ export
def export_lora(run: _Run, pipe, lcfg, base_hash: str, data_hash: str) -> list[Path]:
    """The final LoRA in diffusers/peft and kohya form, into run_dir/final/ and then export_dir.

    Both go into export_dir under temp names first and are renamed only when both are complete, so the
    studio's LoRA folder never shows a half-written file (or a diffusers file without its kohya twin)."""
    from training.lora import save_lora
    from training.lora_formats import save_kohya

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
