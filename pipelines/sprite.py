"""Text -> sprite: one SDXL render per seed, then the pixel engine turns each render into a native sprite.

Takes a resident pipeline (from the manager) and resolved `GenerateParams`; knows nothing about queues,
storage or UI. Each image has its own CPU generator seeded `seed + i`, so image i of a batch is the same
picture as a single job with that seed, on any device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PIL import Image

from pipelines.pixel import PixelParams, pixelate, shared_palette
from pipelines.render import SpriteOutput, StepFn, render
from studio import limits
from studio.params import GenerateParams, ParamsError


@dataclass(frozen=True)
class ItemList:
    """The prompts of an item batch: one sprite each, one palette for all."""

    prompts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.prompts) <= limits.MAX_ITEMS:
            raise ParamsError(f"an item batch needs 1 to {limits.MAX_ITEMS} items, got {len(self.prompts)}")
        if not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise ParamsError("every item needs a non-empty prompt")
        if any(len(p) > limits.MAX_PROMPT_CHARS for p in self.prompts):
            raise ParamsError(f"an item's prompt is longer than {limits.MAX_PROMPT_CHARS} characters")

    def to_dict(self) -> dict:
        return {"prompts": list(self.prompts)}


def generate_sprites(pipe, params: GenerateParams, on_step: StepFn | None = None) -> list[SpriteOutput]:
    raws = render(pipe, params, on_step)
    outputs = []
    for seed, raw in zip(params.seeds(), raws, strict=True):
        sprite = raw.convert("RGBA") if params.pixel is None else pixelate(raw, params.pixel).image
        outputs.append(SpriteOutput(seed, raw, sprite))
    return outputs


def generate_item_batch(pipe, params: GenerateParams, prompts: list[str], on_step: StepFn | None = None
                        ) -> list[SpriteOutput]:
    """One sprite per prompt (item i gets seed + i), all reduced to ONE palette so a set of items (a shop's
    stock, an inventory) looks like it belongs together."""
    total = params.steps * len(prompts)
    raws: list[Image.Image] = []
    for i, prompt in enumerate(prompts):
        one = dataclasses.replace(params, prompt=prompt, seed=(params.seed + i) % 2**32, count=1)
        step = None if on_step is None else (lambda s, _t, base=i * params.steps: on_step(base + s, total))
        raws += render(pipe, one, step)
    pixel = params.pixel or PixelParams()
    palette = shared_palette(raws, pixel)
    seeds = [(params.seed + i) % 2**32 for i in range(len(prompts))]
    return [SpriteOutput(s, raw, pixelate(raw, pixel, palette=palette).image) for s, raw in zip(seeds, raws, strict=True)]
