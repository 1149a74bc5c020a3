"""Job parameters: the one contract between the UI, the CLI, MCP, the queue, DuckDB and PNG metadata.

Every front end builds a frozen `GenerateParams`; its `to_dict()` is what gets queued, stored and embedded in
the PNG, and `from_dict()` is the only way back. Validation lives here so each front end reports the same
message for the same mistake.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from pipelines.pixel import PixelParams
from studio import limits
from studio.prompts import split_lora_tags, to_compel
from studio.samplers import parse_sampler
from studio.values import ParamsError, parse_bool, parse_float, parse_int

__all__ = ["GenerateParams", "LoraRef", "ParamsError", "checked_fields", "new_seed", "parse_loras"]


@dataclass(frozen=True)
class LoraRef:
    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ParamsError("LoRA name must be a non-empty string")
        w = limits.MAX_LORA_WEIGHT
        object.__setattr__(self, "weight", parse_float(self.weight, f"LoRA weight for {self.name!r}", -w, w))

    @classmethod
    def parse(cls, text: str) -> LoraRef:
        """`name` or `name:weight`, as typed on the command line."""
        name, _, weight = text.rpartition(":") if ":" in text else (text, "", "")
        try:
            return cls(name.strip(), float(weight) if weight else 1.0)
        except ValueError as exc:
            raise ParamsError(f"bad LoRA {text!r}: use NAME or NAME:WEIGHT") from exc


def parse_loras(value: Any) -> tuple[LoraRef, ...]:
    """Every way a list of LoRAs arrives, as LoraRefs: "a:0.8, b" (CLI, UI text), {"a": 0.8} (MCP),
    [{"name": "a", "weight": 0.8}] (JSON), ["a:0.8"], [("a", 0.8)], or LoraRefs."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [t for t in value.replace("\n", ",").split(",") if t.strip()]
    if isinstance(value, dict):
        value = [{"name": k, "weight": v} for k, v in value.items()]
    if not isinstance(value, list | tuple):
        raise ParamsError(f"loras must be a list of NAME:WEIGHT entries, got {value!r}")
    refs = []
    for item in value:
        if isinstance(item, LoraRef):
            refs.append(item)
        elif isinstance(item, str):
            refs.append(LoraRef.parse(item.strip()))
        elif isinstance(item, dict) and set(item) <= {"name", "weight"} and "name" in item:
            refs.append(LoraRef(item["name"], item.get("weight", 1.0)))
        elif isinstance(item, list | tuple) and len(item) in (1, 2):
            refs.append(LoraRef(*item))
        else:
            raise ParamsError(f"each LoRA must be NAME, NAME:WEIGHT or {{\"name\": ..., \"weight\": ...}}, got {item!r}")
    if len(refs) > limits.MAX_LORAS:
        raise ParamsError(f"at most {limits.MAX_LORAS} LoRAs on one job, got {len(refs)}")
    return tuple(refs)


def checked_fields(cls, data: Any, what: str) -> dict[str, Any]:
    """A copy of `data` that refuses keys which are not fields of the dataclass `cls`: a typo in a TOML file,
    a JSON payload or an MCP call fails with its name instead of being silently ignored."""
    if not isinstance(data, dict):
        raise ParamsError(f"{what}s must be an object of named values, got {data!r}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ParamsError(f"unknown {what}(s): {', '.join(sorted(map(repr, unknown)))}")
    return dict(data)


def new_seed() -> int:
    return random.SystemRandom().randrange(0, limits.MAX_SEED)


@dataclass(frozen=True)
class GenerateParams:
    prompt: str
    negative: str = ""
    model: str | None = None  # None: the studio's default checkpoint
    loras: tuple[LoraRef, ...] = ()
    seed: int | None = None  # None: drawn at submit time and recorded; image i gets seed + i
    steps: int = 30
    guidance: float = 6.0
    width: int | None = None  # None: the model's native size
    height: int | None = None
    count: int = 1
    pixel: PixelParams | None = field(default_factory=PixelParams)  # None: keep the raw render
    sampler: str = "default"  # a name of studio.samplers.SAMPLERS ("default": the checkpoint's own)
    schedule: str = "automatic"  # karras | exponential | sgm_uniform | trailing, where the sampler takes it
    clip_skip: int | None = None  # A1111's meaning: 2 (SDXL's own) or more skips more text-encoder layers
    fast: bool = False  # fast preview: the few-step settings of the job's LCM/Lightning/Hyper/Turbo model

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not isinstance(self.negative, str):
            raise ParamsError("prompt and negative must be text")
        prompt, tagged = split_lora_tags(self.prompt)  # `<lora:name:weight>` as A1111 writes it
        object.__setattr__(self, "prompt", prompt)
        if tagged:
            object.__setattr__(self, "loras", (*parse_loras(self.loras), *(LoraRef(n, w) for n, w in tagged)))
        if not self.prompt.strip():
            raise ParamsError("prompt must not be empty")
        to_compel(self.prompt), to_compel(self.negative)  # unbalanced ( ) [ ] are refused here, not mid-render
        sampler, schedule = parse_sampler(self.sampler, self.schedule)
        object.__setattr__(self, "sampler", sampler)
        object.__setattr__(self, "schedule", schedule)
        if self.clip_skip is not None:
            object.__setattr__(self, "clip_skip", parse_int(self.clip_skip, "clip_skip", 1, 12))
        object.__setattr__(self, "fast", parse_bool(self.fast, "fast"))
        if len(self.prompt) > limits.MAX_PROMPT_CHARS or len(self.negative) > limits.MAX_PROMPT_CHARS:
            raise ParamsError(f"prompt is longer than {limits.MAX_PROMPT_CHARS} characters")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ParamsError(f"model must be a model's name, got {self.model!r}")
        object.__setattr__(self, "steps", parse_int(self.steps, "steps", 1, limits.MAX_STEPS))
        object.__setattr__(self, "guidance", parse_float(self.guidance, "guidance", 0.0, limits.MAX_GUIDANCE))
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is None:
                continue
            lo, hi = limits.MIN_RENDER_SIDE, limits.MAX_RENDER_SIDE
            if isinstance(v, bool) or not isinstance(v, int) or v % 8 or not lo <= v <= hi:
                raise ParamsError(f"{name} must be a multiple of 8 from {lo} to {hi}, got {v!r}")
        object.__setattr__(self, "count", parse_int(self.count, "count", 1, limits.MAX_COUNT))
        if self.seed is not None:
            object.__setattr__(self, "seed", parse_int(self.seed, "seed", 0, limits.MAX_SEED))
        object.__setattr__(self, "loras", parse_loras(self.loras))
        names = [lr.name for lr in self.loras]
        if len(set(names)) != len(names):
            raise ParamsError("each LoRA may be listed only once")
        if self.pixel is not None and not isinstance(self.pixel, PixelParams):
            raise ParamsError(f"pixel must be pixel clean-up settings or null, got {self.pixel!r}")

    def seeds(self) -> list[int]:
        if self.seed is None:
            raise ParamsError("seed is not resolved yet")
        return [(self.seed + i) % 2**32 for i in range(self.count)]

    def resolved(self, *, width: int, height: int, model: str, sampler: str = "default") -> GenerateParams:
        """The same job with nothing left to chance: the form that is stored and embedded in the PNG.
        `sampler`: the name of the checkpoint's own scheduler, which "default" stands for."""
        return dataclasses.replace(
            self,
            seed=new_seed() if self.seed is None else self.seed,
            width=self.width or width,
            height=self.height or height,
            model=self.model or model,
            sampler=sampler if self.sampler == "default" else self.sampler,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loras"] = [{"name": lr.name, "weight": lr.weight} for lr in self.loras]
        d["pixel"] = None if self.pixel is None else self.pixel.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateParams:
        d = checked_fields(cls, data, "parameter")
        if "prompt" not in d:
            raise ParamsError("prompt is missing")
        d["loras"] = parse_loras(d.get("loras"))
        if d.get("pixel") is not None:
            d["pixel"] = PixelParams.from_dict(d["pixel"])
        return cls(**d)
