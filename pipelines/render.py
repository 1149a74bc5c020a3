"""What every generation recipe shares: the SDXL call, img2img on the resident modules, progress, cancel.

A recipe (sprite, batch, sheet, tiles, variation) decides *what* to render; this module does the rendering,
the same way for all of them: one CPU generator per image seeded `seed + i` (so image i of a batch is the
picture a single job with that seed gives, on any device), a per-step callback that reports progress and
stops the denoising loop when `Cancelled` is raised in it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from studio.params import GenerateParams


class Cancelled(Exception):
    """Raised from the step callback; stops the denoising loop at the step it is raised in."""


StepFn = Callable[[int, int], None]  # (steps done, total steps); may raise Cancelled


@dataclass
class SpriteOutput:
    seed: int
    raw: Image.Image  # the render at generation size
    sprite: Image.Image  # the native-resolution sprite (the raw render when pixel params are None)


def offset_steps(on_step: StepFn | None, offset: int, steps: int, total: int) -> StepFn | None:
    """Progress of one render (of `steps`) -> progress over a job of `total` steps that began at `offset`."""
    if on_step is None:
        return None
    return lambda done, _n: on_step(offset + min(done, steps), total)


def _callback(on_step: StepFn | None, steps: int):
    """diffusers' `callback_on_step_end`, reporting `steps` as the render's total."""

    def callback(_pipe, step: int, _t, kwargs):
        if on_step is not None:
            on_step(min(step + 1, steps), steps)
        return kwargs

    return callback


def render(pipe, params: GenerateParams, on_step: StepFn | None = None) -> list[Image.Image]:
    """Text to image: `params.count` renders at the resolved size, seeds `params.seeds()`."""
    import torch  # lazily: the pixel-only paths (CLI pixelate, dataset checks) never pay for torch

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
            callback_on_step_end=_callback(on_step, params.steps),
        )
    return list(out.images)


def img2img_pipeline(pipe):
    """An SDXL img2img pipeline on the resident pipeline's modules: same objects, so same LoRAs and device."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    accepted = inspect.signature(StableDiffusionXLImg2ImgPipeline.__init__).parameters
    parts = {k: v for k, v in pipe.components.items() if k in accepted}
    i2i = StableDiffusionXLImg2ImgPipeline(
        **parts,
        force_zeros_for_empty_prompt=pipe.config.get("force_zeros_for_empty_prompt", True),
        add_watermarker=getattr(pipe, "watermark", None) is not None,
    )
    i2i.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return i2i


def img2img_steps(steps: int, strength: float) -> tuple[int, int]:
    """(num_inference_steps to ask for, denoising steps that will run). diffusers runs int(steps * strength)
    of them and refuses zero, so few steps at low strength are raised until one runs."""
    num = steps
    while int(num * strength) < 1:
        num += 1
    return num, min(int(num * strength), num)


def img2img(i2i, params: GenerateParams, image: Image.Image, strength: float, seed: int,
            on_step: StepFn | None = None) -> Image.Image:
    """One img2img render of `image` with `params.prompt`; progress counts the steps that really run."""
    import torch

    num, runs = img2img_steps(params.steps, strength)
    with torch.inference_mode():
        return i2i(prompt=params.prompt, negative_prompt=params.negative or None, image=image, strength=strength,
                   num_inference_steps=num, guidance_scale=params.guidance,
                   generator=torch.Generator(device="cpu").manual_seed(seed),
                   callback_on_step_end=_callback(on_step, runs)).images[0]
