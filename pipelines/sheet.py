"""Animation frames -> sprite sheet: N poses of one character, one palette, one cell size, a GIF preview.

Two ways to get frames that belong together:
- "strip": one render N frames wide with a sprite-sheet prompt, cut into N equal cells. One seed, one pass,
  so the character tends to stay the same; the model decides the poses.
- "img2img": frame 0 by txt2img, frames 1..N-1 by img2img from frame 0 with the same seed and a pose prompt
  each. The img2img pipeline is built from the resident pipeline's own modules (no reload, no copy, LoRAs
  stay active). Not `from_pipe`: in diffusers 0.42 it ends with `.to(dtype=float32)` unless given the dtype,
  which would cast the shared fp16/bf16 modules in place.
Every frame then goes through the pixel engine at exactly `frame_size` with one palette built from all
frames, so the sheet has uniform cells and consistent colours (the Bevy contract in DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipelines.pixel import (
    PixelParams,
    apply_palette,
    build_palette,
    pixelate,
    shared_palette,
    upscale_nearest,
)
from pipelines.render import StepFn, img2img, img2img_pipeline, img2img_steps, offset_steps, render
from studio import limits
from studio.params import GenerateParams, checked_fields
from studio.values import parse_float, parse_int, parse_size

STRATEGIES = ("strip", "img2img")
# per-frame pose phrases; cycles loop, one-shot animations run from first to last phrase
POSES: dict[str, tuple[str, ...]] = {
    "idle": ("standing, breathing in", "standing, breathing out"),
    "walk": ("left foot forward", "passing pose", "right foot forward", "passing pose"),
    "run": ("left leg reaching forward, airborne", "left foot landing", "right leg reaching forward, airborne",
            "right foot landing"),
    "attack": ("ready stance", "wind-up, weapon raised", "strike, weapon swung forward", "follow-through"),
    "jump": ("crouching", "taking off", "at the top of the jump", "landing"),
    "hurt": ("recoiling from a hit", "flinching, eyes shut"),
    "death": ("staggering", "falling", "collapsing", "lying on the ground"),
}
CYCLES = {"idle", "walk", "run"}
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def pose_prompts(animation: str, frames: int) -> list[str]:
    """One pose phrase per frame. Cycles repeat their table (or sample it evenly when there are fewer
    frames); one-shot animations always include their first and last pose. Unknown animations get a
    frame counter, which still tells the model the frames differ."""
    table = POSES.get(animation.lower())
    if table is None:
        return [f"{animation} frame {i + 1} of {frames}" for i in range(frames)]
    n = len(table)
    if animation.lower() in CYCLES:
        idx = [i % n for i in range(frames)] if frames >= n else [i * n // frames for i in range(frames)]
    else:
        idx = [round(i * (n - 1) / (frames - 1)) for i in range(frames)]
    return [table[i] for i in idx]


@dataclass(frozen=True)
class SheetSpec:
    """What an animation job asks for beyond the prompt. Validated on construction (ValueError)."""

    animation: str = "walk"  # any word; the known ones (POSES) get pose prompts
    frames: int = 4
    frame_size: tuple[int, int] = (32, 32)  # native px (width, height)
    strategy: str = "img2img"  # "strip" | "img2img"
    strength: float = 0.45  # img2img only: how far later frames may move from frame 0
    fps: float = 8.0
    colors: int | None = 16
    palette: str | None = None  # a palette name or file; overrides colors

    def __post_init__(self) -> None:
        if not isinstance(self.animation, str) or not _WORD.match(self.animation.strip()):
            raise ValueError(f"animation must be one word (letters, digits, - or _), got {self.animation!r}")
        object.__setattr__(self, "animation", self.animation.strip())
        object.__setattr__(self, "frames", parse_int(self.frames, "frames", limits.MIN_FRAMES, limits.MAX_FRAMES))
        object.__setattr__(self, "frame_size", parse_size(self.frame_size, "frame_size", limits.MIN_FRAME_SIDE,
                                                          limits.MAX_FRAME_SIDE))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be 'strip' or 'img2img', got {self.strategy!r}")
        object.__setattr__(self, "strength", parse_float(self.strength, "strength", limits.MIN_STRENGTH,
                                                         limits.MAX_STRENGTH))
        object.__setattr__(self, "fps", parse_float(self.fps, "fps (a GIF cannot show frames faster than 50)",
                                                    limits.MIN_FPS, limits.MAX_FPS))
        checked = PixelParams(colors=self.colors, palette=self.palette)  # the pixel engine's own rules
        object.__setattr__(self, "colors", checked.colors)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frame_size"] = list(self.frame_size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SheetSpec:
        return cls(**checked_fields(cls, data, "sheet parameter"))


@dataclass
class SheetOutput:
    frames: list[Image.Image]  # native RGBA, all exactly spec.frame_size
    raws: list[Image.Image]  # one render per frame (strip: the strip's cells)
    sheet: Image.Image  # 1 row x N columns, uniform cells, no padding
    gif: bytes  # animated preview, enlarged with nearest neighbour, loops forever
    palette: np.ndarray  # (k, 3) uint8: the colours the frames use, all from the one shared palette
    strategy: str
    seeds: list[int]  # the seed of each frame (the same one for all, in both strategies)
    animation: str
    fps: float
    prompts: list[str]  # the prompt each frame was rendered with (strip: the one strip prompt)

    @property
    def seed(self) -> int:
        return self.seeds[0]


# ----------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------
def strip_frame_size(width: int, height: int, frames: int) -> tuple[int, int]:
    """Render size of one strip frame: the job's size, shrunk (aspect kept, multiples of 8) when the strip
    would be wider than the widest render allowed (limits.MAX_RENDER_SIDE)."""
    if frames * width <= limits.MAX_RENDER_SIDE:
        return width, height
    k = limits.MAX_RENDER_SIDE / (frames * width)
    return max(8, int(width * k) // 8 * 8), max(64, int(height * k) // 8 * 8)


def _render_strip(pipe, params: GenerateParams, spec: SheetSpec, on_step: StepFn | None):
    n = spec.frames
    fw, fh = strip_frame_size(params.width, params.height, n)
    prompt = f"{params.prompt}, sprite sheet, {n} frames, {spec.animation} cycle, side by side"
    job = dataclasses.replace(params, prompt=prompt, width=n * fw, height=fh, count=1)
    strip = render(pipe, job, offset_steps(on_step, 0, params.steps, params.steps))[0]
    cells = [strip.crop((i * fw, 0, (i + 1) * fw, fh)) for i in range(n)]
    return cells, [prompt]


def _render_img2img(pipe, params: GenerateParams, spec: SheetSpec, on_step: StepFn | None):
    poses = pose_prompts(spec.animation, spec.frames)
    prompts = [f"{params.prompt}, {spec.animation}, {pose}" for pose in poses]
    _, i2i_steps = img2img_steps(params.steps, spec.strength)
    total = params.steps + (spec.frames - 1) * i2i_steps
    first = dataclasses.replace(params, prompt=prompts[0], count=1)
    raws = [render(pipe, first, offset_steps(on_step, 0, params.steps, total))[0]]
    i2i = img2img_pipeline(pipe)
    for i, prompt in enumerate(prompts[1:]):
        report = offset_steps(on_step, params.steps + i * i2i_steps, i2i_steps, total)
        frame = dataclasses.replace(params, prompt=prompt)
        raws.append(img2img(i2i, frame, raws[0], spec.strength, params.seed, report))
    return raws, prompts


# ----------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------
def generate_sheet(pipe, params: GenerateParams, spec: SheetSpec, on_step: StepFn | None = None) -> SheetOutput:
    """Render spec.frames frames, pixelate them on one palette and one cell size, assemble sheet and GIF.

    params must be resolved (seed, width, height); params.count is ignored. The pixel options other than
    size, colours and palette (background, outline ...) come from params.pixel; crop and canvas are off
    because every cell must be the same size. on_step(done, total) counts over the whole sheet and may
    raise Cancelled.
    """
    if params.seed is None or params.width is None or params.height is None:
        raise ValueError("params must be resolved (seed, width and height set) before rendering a sheet")
    renderer = _render_strip if spec.strategy == "strip" else _render_img2img
    raws, prompts = renderer(pipe, params, spec, on_step)
    pp = dataclasses.replace(params.pixel or PixelParams(), size=spec.frame_size, size_mode="exact",
                             colors=spec.colors, palette=spec.palette, crop=False, canvas=None)
    palette = None if spec.palette else shared_palette(raws, pp, spec.colors)
    if palette is not None and len(palette) == 0:  # every frame came out background
        palette = None
    frames = [pixelate(raw, pp, palette).image for raw in raws]
    w, h = spec.frame_size
    sheet = Image.new("RGBA", (w * len(frames), h), (0, 0, 0, 0))
    for i, frame in enumerate(frames):
        sheet.paste(frame, (i * w, 0))
    used = _opaque_colours(frames)
    return SheetOutput(frames, raws, sheet, make_gif(frames, spec.fps), used, spec.strategy,
                       [params.seed] * len(frames), spec.animation, spec.fps, prompts)


def _opaque_colours(frames: list[Image.Image]) -> np.ndarray:
    arrays = [np.asarray(f.convert("RGBA")) for f in frames]
    cols = [a[a[..., 3] >= 128][:, :3] for a in arrays]
    return np.unique(np.concatenate(cols), axis=0).astype(np.uint8) if cols else np.zeros((0, 3), np.uint8)


def gif_duration_ms(fps: float) -> int:
    """GIF stores delays in hundredths of a second, so the frame time is rounded to 10 ms."""
    return 10 * max(2, round(100 / fps))


def make_gif(frames: list[Image.Image], fps: float, scale: int = 4) -> bytes:
    """Animated GIF of the native frames, enlarged with nearest neighbour, transparent, looping forever.

    The frames are written as palette images with one exact shared palette (index 0 = transparent), so
    Pillow has nothing to re-quantise or dither. Above 255 colours the engine's palette step reduces them.
    disposal=2 clears each frame, so transparent pixels do not show the previous pose. Note: Pillow merges
    identical consecutive frames into one longer one (the timing stays right, n_frames drops).
    """
    arrays = [np.asarray(f.convert("RGBA")) for f in frames]
    colours = _opaque_colours(frames)
    if len(colours) > 255:
        colours = build_palette(colours, n_colors=255)
        arrays = [apply_palette(a, colours) for a in arrays]
        colours = _opaque_colours([Image.fromarray(a, "RGBA") for a in arrays])
    key = lambda rgb: (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]  # noqa: E731
    keys = key(colours)
    flat_palette = [0, 0, 0] + colours.reshape(-1).tolist()
    images = []
    for a in arrays:
        opaque = a[..., 3] >= 128
        idx = np.zeros(a.shape[:2], np.uint8)
        idx[opaque] = np.searchsorted(keys, key(a[opaque][:, :3])) + 1
        im = Image.fromarray(idx, "P")
        im.putpalette(flat_palette)
        images.append(upscale_nearest(im, scale))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=gif_duration_ms(fps),
                   loop=0, transparency=0, disposal=2, optimize=False)
    return buf.getvalue()
