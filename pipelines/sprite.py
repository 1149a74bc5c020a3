"""Text -> sprite: one SDXL render per seed, then the pixel engine turns each render into a native sprite.

Takes a resident pipeline (from the manager) and resolved `GenerateParams`; knows nothing about queues,
storage or UI. Each image has its own CPU generator seeded `seed + i`, so image i of a batch is the same
picture as a single job with that seed, on any device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from pipelines.pixel import pixelate
from studio.params import GenerateParams


class Cancelled(Exception):
    """Raised from the step callback; stops the denoising loop at the step it is raised in."""


@dataclass
class SpriteOutput:
    seed: int
    raw: Image.Image  # the render at generation size
    sprite: Image.Image  # the native-resolution sprite (the raw render when pixel params are None)


StepFn = Callable[[int, int], None]  # (steps done, total steps); may raise Cancelled


def render(pipe, params: GenerateParams, on_step: StepFn | None = None) -> list[Image.Image]:
    """The SDXL call itself, with a per-step callback that can report progress and cancel."""
    import torch

    def callback(_pipe, step: int, _t, kwargs):
        if on_step is not None:
            on_step(step + 1, params.steps)
        return kwargs

    generators = [torch.Generator(device="cpu").manual_seed(s) for s in params.seeds()]
    with torch.inference_mode():
        out = pipe(
            prompt=params.prompt,
            negative_prompt=params.negative or None,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance,
            width=params.width,
            height=params.height,
            num_images_per_prompt=params.count,
            generator=generators,
            callback_on_step_end=callback,
        )
    return list(out.images)


def generate_sprites(pipe, params: GenerateParams, on_step: StepFn | None = None) -> list[SpriteOutput]:
    raws = render(pipe, params, on_step)
    outputs = []
    for seed, raw in zip(params.seeds(), raws, strict=True):
        sprite = raw.convert("RGBA") if params.pixel is None else pixelate(raw, params.pixel).image
        outputs.append(SpriteOutput(seed, raw, sprite))
    return outputs
