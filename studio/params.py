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

MAX_SIDE = 4096
MAX_STEPS = 150
MAX_COUNT = 64
MAX_PROMPT = 4000


class ParamsError(ValueError):
    """A parameter a person typed is wrong; the message says which and why."""


@dataclass(frozen=True)
class LoraRef:
    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ParamsError("LoRA name must be a non-empty string")
        if not -4.0 <= float(self.weight) <= 4.0:
            raise ParamsError(f"LoRA weight for {self.name!r} must be between -4 and 4, got {self.weight}")

    @classmethod
    def parse(cls, text: str) -> LoraRef:
        """`name` or `name:weight`, as typed on the command line."""
        name, _, weight = text.rpartition(":") if ":" in text else (text, "", "")
        try:
            return cls(name.strip(), float(weight) if weight else 1.0)
        except ValueError as exc:
            raise ParamsError(f"bad LoRA {text!r}: use NAME or NAME:WEIGHT") from exc


def checked_fields(cls, data: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy of `data` that refuses keys which are not fields of the dataclass `cls`: a typo in a TOML file,
    a JSON payload or an MCP call fails with its name instead of being silently ignored."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ParamsError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    return dict(data)


def new_seed() -> int:
    return random.SystemRandom().randrange(0, 2**32 - 1)


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

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ParamsError("prompt must not be empty")
        if len(self.prompt) > MAX_PROMPT or len(self.negative) > MAX_PROMPT:
            raise ParamsError(f"prompt is longer than {MAX_PROMPT} characters")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ParamsError(f"steps must be a whole number from 1 to {MAX_STEPS}, got {self.steps!r}")
        if not 0.0 <= float(self.guidance) <= 30.0:
            raise ParamsError(f"guidance must be between 0 and 30, got {self.guidance}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, int) or v % 8 or not 64 <= v <= MAX_SIDE:
                raise ParamsError(f"{name} must be a multiple of 8 from 64 to {MAX_SIDE}, got {v!r}")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise ParamsError(f"count must be from 1 to {MAX_COUNT}, got {self.count!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed < 2**32):
            raise ParamsError(f"seed must be a whole number from 0 to 4294967295, got {self.seed!r}")
        names = [lr.name for lr in self.loras]
        if len(set(names)) != len(names):
            raise ParamsError("each LoRA may be listed only once")

    def seeds(self) -> list[int]:
        if self.seed is None:
            raise ParamsError("seed is not resolved yet")
        return [(self.seed + i) % 2**32 for i in range(self.count)]

    def resolved(self, *, width: int, height: int, model: str) -> GenerateParams:
        """The same job with nothing left to chance: the form that is stored and embedded in the PNG."""
        return dataclasses.replace(
            self,
            seed=new_seed() if self.seed is None else self.seed,
            width=self.width or width,
            height=self.height or height,
            model=self.model or model,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loras"] = [{"name": lr.name, "weight": lr.weight} for lr in self.loras]
        d["pixel"] = None if self.pixel is None else self.pixel.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateParams:
        d = checked_fields(cls, data, "parameter")
        d["loras"] = tuple(
            LoraRef(**x) if isinstance(x, dict) else LoraRef.parse(x) if isinstance(x, str) else LoraRef(*x)
            for x in d.get("loras") or ()
        )
        if "pixel" in d and d["pixel"] is not None:
            d["pixel"] = PixelParams.from_dict(d["pixel"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise ParamsError(str(exc)) from exc
