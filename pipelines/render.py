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
from weakref import WeakKeyDictionary

from PIL import Image

from studio.params import GenerateParams
from studio.prompts import has_emphasis, to_compel
from studio.samplers import name_of, scheduler_for


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


def use_sampler(pipe, params: GenerateParams) -> None:
    """Give the pipeline a fresh scheduler for this job's sampler and schedule, made from the checkpoint's own
    scheduler's config: never a reload, and nothing of an earlier job's sampler is left over."""
    own = _OWN_SCHEDULER.setdefault(pipe, pipe.scheduler)
    pipe.scheduler = scheduler_for(own, params.sampler, params.schedule, params.seed)


_OWN_SCHEDULER: WeakKeyDictionary = WeakKeyDictionary()  # pipeline -> the scheduler it was loaded with


def default_sampler(pipe) -> str:
    """The sampler name of the checkpoint's own scheduler: what a job's "default" is stored as."""
    return name_of(_OWN_SCHEDULER.setdefault(pipe, pipe.scheduler))


def conditioning(pipe, params: GenerateParams) -> dict:
    """The prompt arguments of one call. A plain prompt (no weights, at most the encoder's 77 tokens) goes to
    the pipeline as text, encoded exactly as it always was; a weighted or longer one is encoded by compel
    (SDXL's two encoders and the pooled embedding, long prompts in 77-token chunks)."""
    longest = pipe.tokenizer.model_max_length
    needs_compel = any(has_emphasis(t) or len(pipe.tokenizer(t, verbose=False).input_ids) > longest
                       for t in (params.prompt, params.negative))
    clip_skip = params.clip_skip - 2 if params.clip_skip and params.clip_skip > 2 else None  # A1111 -> diffusers
    if not needs_compel:
        return {"prompt": params.prompt, "negative_prompt": params.negative or None, "clip_skip": clip_skip}
    if clip_skip:
        raise ValueError("clip skip above 2 works with plain prompts only (no weights, at most 77 tokens)")
    import torch
    from compel import CompelForSDXL  # lazily: only weighted or long prompts need it

    c = CompelForSDXL(pipe, device=str(pipe.device))(to_compel(params.prompt),
                                                     negative_prompt=to_compel(params.negative))
    negative, negative_pooled = c.negative_embeds, c.negative_pooled_embeds
    if not params.negative and pipe.config.get("force_zeros_for_empty_prompt", True):
        negative, negative_pooled = torch.zeros_like(negative), torch.zeros_like(negative_pooled)  # as SDXL does
    return {"prompt_embeds": c.embeds, "pooled_prompt_embeds": c.pooled_embeds,
            "negative_prompt_embeds": negative, "negative_pooled_prompt_embeds": negative_pooled}


def render(pipe, params: GenerateParams, on_step: StepFn | None = None) -> list[Image.Image]:
    """Text to image: `params.count` renders at the resolved size, seeds `params.seeds()`."""
    import torch  # lazily: the pixel-only paths (CLI pixelate, dataset checks) never pay for torch

    use_sampler(pipe, params)
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in params.seeds()]
    with torch.inference_mode():
        out = pipe(
            **conditioning(pipe, params),
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
    _OWN_SCHEDULER[i2i] = _OWN_SCHEDULER.get(pipe, pipe.scheduler)  # the checkpoint's own, not a job's
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
    i2i.scheduler = scheduler_for(_OWN_SCHEDULER.setdefault(i2i, i2i.scheduler), params.sampler, params.schedule,
                                  seed)
    with torch.inference_mode():
        return i2i(**conditioning(i2i, params), image=image, strength=strength,
                   num_inference_steps=num, guidance_scale=params.guidance,
                   generator=torch.Generator(device="cpu").manual_seed(seed),
                   callback_on_step_end=_callback(on_step, runs)).images[0]
