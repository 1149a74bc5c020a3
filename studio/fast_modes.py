"""Few-step modes: the sampler, steps and guidance an LCM, Lightning, Hyper-SD or Turbo model needs.

Why: distilled models draw a sprite in 2-8 steps instead of 30, the biggest speed lever there is on one GPU,
but only with their own settings (LCM-LoRA: the LCM sampler, CFG 1-2; Lightning: trailing Euler, CFG 0). A
model says what it needs in its metadata (`dgxp.sampler`, `dgxp.steps`, `dgxp.guidance`), or the studio
knows it by name; "fast preview" applies it and says where it came from.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from studio.params import GenerateParams, ParamsError
from studio.registry import Registry
from studio.samplers import parse_sampler


@dataclass(frozen=True)
class FastMode:
    sampler: str
    steps: int
    guidance: float
    schedule: str = "automatic"
    source: str = ""  # which model asked for it, for the user

    def describe(self) -> str:
        return f"fast preview: {self.sampler}, {self.steps} steps, CFG {self.guidance:g} (from {self.source})"


def _steps_in(name: str, default: int) -> int:
    """'sdxl_lightning_4step_lora' -> 4; Hyper-SD and Lightning name their step count."""
    m = re.search(r"(\d+)[-_ ]?steps?", name.lower())
    return int(m.group(1)) if m and 1 <= int(m.group(1)) <= 16 else default


def known_mode(name: str) -> FastMode | None:
    """The few-step settings a model's name announces (the published recipes of each family)."""
    low = name.lower()
    if "lcm" in low:
        return FastMode("LCM", 6, 1.5, source=name)
    if "lightning" in low or "hyper" in low:
        return FastMode("Lightning", _steps_in(name, 4), 0.0, source=name)
    if "turbo" in low:
        return FastMode("Euler a", _steps_in(name, 4), 0.0, "trailing", source=name)
    return None


def declared_mode(name: str, metadata: dict) -> FastMode | None:
    """Settings written into a model's own metadata win over its name."""
    if "dgxp.sampler" not in metadata:
        return None
    sampler, schedule = parse_sampler(str(metadata["dgxp.sampler"]), str(metadata.get("dgxp.schedule", "automatic")))
    return FastMode(sampler, int(metadata.get("dgxp.steps", 4)), float(metadata.get("dgxp.guidance", 0.0)),
                    schedule, name)


def find_mode(registry: Registry, params: GenerateParams, model: str) -> FastMode | None:
    """The first few-step mode among the job's LoRAs, then its checkpoint."""
    for ref in params.loras:
        entry = registry.lora(ref.name)
        mode = declared_mode(entry.name, entry.metadata) or known_mode(entry.name)
        if mode:
            return mode
    return known_mode(model)


def apply_fast_mode(registry: Registry, params: GenerateParams, model: str) -> tuple[GenerateParams, str]:
    """The job with its few-step settings, and the sentence that says so; ParamsError when none of its models
    is a few-step one (fast preview cannot make an ordinary model fast without ruining the picture)."""
    mode = find_mode(registry, params, model)
    if mode is None:
        raise ParamsError("fast preview needs a few-step model: an LCM, Lightning, Hyper-SD or Turbo LoRA or "
                          "checkpoint (or one whose metadata names dgxp.sampler); this job has none")
    return dataclasses.replace(params, sampler=mode.sampler, schedule=mode.schedule, steps=mode.steps,
                               guidance=mode.guidance), mode.describe()
