"""img2img variations of a sprite: the same character or item, redrawn with a new seed at a chosen strength.

A native sprite (say 32x32) is first enlarged with nearest-neighbour to the render size, so SDXL sees crisp
pixel blocks rather than a blurry upscale; the result goes through the pixel engine at the source sprite's
own size, so a variation drops in where the original was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipelines.pixel import PixelParams, pixelate
from pipelines.render import SpriteOutput, StepFn, img2img, img2img_pipeline, img2img_steps, offset_steps
from studio.params import GenerateParams


@dataclass(frozen=True)
class VariationSpec:
    source: str  # path of the image to vary
    strength: float = 0.5  # 0.05 (almost the same) .. 0.95 (almost new)

    def __post_init__(self) -> None:
        if not 0.05 <= float(self.strength) <= 0.95:
            raise ValueError(f"strength must be from 0.05 to 0.95, got {self.strength}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def init_image(source: Image.Image, width: int, height: int) -> Image.Image:
    """Nearest-neighbour enlarge (integer factor where possible), centred on white, to the render size."""
    rgba = source.convert("RGBA")
    k = max(1, min(width // rgba.width, height // rgba.height))
    big = rgba.resize((rgba.width * k, rgba.height * k), Image.NEAREST) if k > 1 else rgba
    if big.size != (width, height):
        big = big.resize((min(width, big.width), min(height, big.height)), Image.NEAREST)
    canvas = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    canvas.alpha_composite(big, ((width - big.width) // 2, (height - big.height) // 2))
    return canvas.convert("RGB")


def generate_variations(pipe, params: GenerateParams, source: Image.Image, strength: float,
                        on_step: StepFn | None = None) -> list[SpriteOutput]:
    """params.count variations (seeds seed..seed+count-1) of `source`, each cleaned to the source's size."""
    start = init_image(source, params.width, params.height)
    _, runs = img2img_steps(params.steps, strength)
    i2i = img2img_pipeline(pipe)
    total = runs * params.count
    pixel = params.pixel or PixelParams()
    if pixel.size is None and source.width <= 256 and source.height <= 256:
        pixel = dataclasses.replace(pixel, size=source.size, size_mode="exact")
    outputs = []
    for i, seed in enumerate(params.seeds()):
        raw = img2img(i2i, params, start, strength, seed, offset_steps(on_step, i * runs, runs, total))
        outputs.append(SpriteOutput(seed, raw, pixelate(raw, pixel).image))
    return outputs
