"""What a training run is asked to do: `TrainConfig`, typed-in settings, and the presets.

Why a module of its own: every front end (the Train tab, `dgx-pixels train`, REST, MCP) builds and
validates a config long before any run folder or child process exists, and the child reads the same class
back from config.json. Keeping it apart from the run machinery (`training.runs`) and the child
(`training.runner`) lets a front end import it without either.
- Validation lives in the class, so every front end shows the same message for the same mistake.
- Presets are plain TOML files in `training/presets/` (`fast`, `balanced`, `quality`, or any .toml path).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.params import checked_fields
from training.lora import LoraTrainConfig

PRESETS_DIR = Path(__file__).with_name("presets")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
        data = checked_fields(cls, data, "training setting")
        missing = {"base_model", "dataset_dir", "output_name"} - set(data)
        if missing:
            raise ValueError(f"missing training setting(s): {', '.join(sorted(missing))}")
        return cls(**data)

    def lora_config(self) -> LoraTrainConfig:
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


def native_resolution(base_model: str | Path) -> int | None:
    """The image side a diffusers base model was made for: its UNet's sample_size (latents) times the VAE's
    scale factor (2 per down step), as diffusers computes its default size. SDXL base: 128 x 8 = 1024; the
    demo model: 16 x 8 = 128. None when the folder's configs cannot be read."""
    base = Path(base_model)
    try:
        unet = json.loads((base / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((base / "vae" / "config.json").read_text(encoding="utf-8"))
        size = unet["sample_size"]
        size = size[0] if isinstance(size, list | tuple) else size
        side = int(size) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return side if side >= 64 and side % 8 == 0 else None


def config_from_preset(preset: str | Path | dict[str, Any], **overrides: Any) -> TrainConfig:
    """Preset values, then `overrides` (base_model, dataset_dir, output_name at least); validated.

    A preset's warmup is a share of its steps: when `steps` is overridden and `warmup_steps` is not, the
    warmup scales with it (balanced's 75 of 1500 becomes 3 of 60), rather than failing validation.

    Unless `resolution` is overridden, a run trains at the base model's native size (`native_resolution`):
    a preset's 1024 is SDXL's native size, and training a smaller base (the demo model: 128) at 1024 costs
    ~4x the time per step and renders its samples at a size the base never makes. The preset's value is the
    fallback when the base's configs cannot be read."""
    values = dict(preset) if isinstance(preset, dict) else load_preset(preset)
    values.pop("description", None)
    if "resolution" not in overrides and overrides.get("base_model"):
        values["resolution"] = native_resolution(overrides["base_model"]) or values.get("resolution", 1024)
    if "steps" in overrides and "warmup_steps" not in overrides and values.get("steps"):
        values["warmup_steps"] = round(values.get("warmup_steps", 0) * overrides["steps"] / values["steps"])
    values.update(overrides)
    return TrainConfig.from_dict(values)
