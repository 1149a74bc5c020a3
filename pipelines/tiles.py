"""Seamless tiles and tilesets: SDXL with circular padding, then the pixel engine with one shared palette.

Why circular padding: a convolution with zero padding sees black beyond the image border, so the model draws
the two opposite edges independently and a tile repeated side by side shows a seam. With circular padding every
conv in the UNet and the VAE decoder sees the opposite edge as its neighbour, so the render is periodic: the
last column continues into the first one exactly as one interior column continues into the next.

How `seamless()` switches it: per conv *instance*, never by patching torch classes. Each `nn.Conv2d` with a
non-zero integer padding gets an instance attribute `_conv_forward` (the method `Conv2d.forward` calls) that
pads the wrapped axes circularly and the others with zeros, then convolves with padding 0; this gives x-only
and y-only as well as both. On exit the attribute is removed again (or the one that was there is put back), so
the modules are exactly as before and a later job renders byte-identical pixels. LoRA convs (peft's `lora_A`)
are plain `nn.Conv2d`s too and get the same treatment. The VAE encoder's asymmetric `F.pad` in its downsamplers
is not a conv padding and stays zero; txt2img never runs the encoder. Not covered: a Conv2d subclass whose
own forward skips `_conv_forward` (diffusers' deprecated LoRACompatibleConv, unused by 0.42's models) and peft
DoRA convs, which call F.conv2d with the base layer's zero padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipelines.pixel import PixelParams, apply_palette, load_palette, palette_from_images, upscale_nearest
from pipelines.pixel.color import oklab_distance, rgb_to_oklab
from pipelines.pixel.grid import AxisGrid, Grid, detect_grid, sample_cells
from pipelines.render import StepFn, render
from studio import limits
from studio.params import GenerateParams, checked_fields
from studio.values import parse_bool, parse_int, parse_size

SEAM_TOLERANCE = 1.0  # the spec: the wrap step may be no larger than the typical interior step
_MISSING = object()


# ----------------------------------------------------------------------------------------
# circular padding
# ----------------------------------------------------------------------------------------
def _circular_conv_forward(conv, wrap_x: bool, wrap_y: bool):
    """A replacement for `conv._conv_forward` that wraps the chosen axes and zero-pads the others."""
    import torch.nn.functional as F

    py, px = conv.padding

    def forward(input, weight, bias):
        x = F.pad(input, (px, px, 0, 0), mode="circular" if wrap_x else "constant")
        x = F.pad(x, (0, 0, py, py), mode="circular" if wrap_y else "constant")
        return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return forward


@contextmanager
def seamless(pipe, axes: str = "xy") -> Iterator[int]:
    """Circular padding on every padded Conv2d of `pipe.unet` and `pipe.vae` while the block runs.

    axes: "xy", "x" (wraps left/right) or "y" (wraps top/bottom). Yields the number of convs switched.
    Each module's previous state is restored on exit, on exceptions and on `Cancelled` alike.
    """
    import torch

    if axes not in ("xy", "x", "y"):
        raise ValueError(f"axes must be 'xy', 'x' or 'y', got {axes!r}")
    saved: list[tuple[torch.nn.Conv2d, Any]] = []
    try:
        for model in (pipe.unet, pipe.vae):
            for m in model.modules():
                if not isinstance(m, torch.nn.Conv2d) or m.padding_mode != "zeros":
                    continue
                if isinstance(m.padding, str) or not any(m.padding):
                    continue  # 1x1 convs and 'same'/'valid' strings: nothing crosses an edge
                saved.append((m, m.__dict__.get("_conv_forward", _MISSING)))
                m._conv_forward = _circular_conv_forward(m, "x" in axes, "y" in axes)
        yield len(saved)
    finally:
        for m, previous in reversed(saved):
            if previous is _MISSING:
                del m.__dict__["_conv_forward"]
            else:
                m.__dict__["_conv_forward"] = previous


# ----------------------------------------------------------------------------------------
# the spec and the seam measure
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileSpec:
    """What a tileset job asks for beyond the prompt: how many variants, their native size, the palette."""

    count: int = 4
    tile_size: tuple[int, int] = (16, 16)  # native px (width, height)
    seamless: bool = True
    colors: int | None = 16
    palette: str | None = None  # a palette name or file; overrides colors

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", parse_int(self.count, "count", 1, limits.MAX_TILE_VARIANTS))
        object.__setattr__(self, "tile_size", parse_size(self.tile_size, "tile_size", limits.MIN_TILE_SIDE,
                                                         limits.MAX_TILE_SIDE))
        object.__setattr__(self, "seamless", parse_bool(self.seamless, "seamless"))
        checked = PixelParams(colors=self.colors, palette=self.palette)  # the pixel engine's own rules
        object.__setattr__(self, "colors", checked.colors)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tile_size"] = list(self.tile_size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileSpec:
        return cls(**checked_fields(cls, data, "tile parameter"))


@dataclass(frozen=True)
class SeamReport:
    """How hard the wrap-around edges are compared with the tile's own texture (OKLab ΔE)."""

    edge_step: float  # median step across the worse of the two wrap lines
    interior_step: float  # the upper end of the typical interior neighbour step (its 90th percentile)
    ratio: float  # edge_step / interior_step (0 when both are 0)
    passes: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seam_report(tile: Image.Image | np.ndarray, tolerance: float = SEAM_TOLERANCE) -> SeamReport:
    """Is the native tile seamless? Compares the colour step across the wrap edges with the interior ones.

    Passes when edge_step <= interior_step * tolerance (tolerance 1: the spec's "no larger than the typical
    step between neighbouring interior pixels"). The statistics, and why:
    - edge_step: per wrap line (last column -> first, last row -> first) the *median* step, and the worse
      of the two axes. A seam is a jump along most of a line; a few texture edges crossing it are not one.
    - interior_step: the 90th percentile of all interior neighbour steps, i.e. the top of the typical range
      (above it are the texture's own hard edges). Like-for-like statistics (median vs median, mean vs mean)
      fail a seamless tile about half the time at tolerance 1, because its wrap line is just one more
      sample of the interior steps: on 100 random smooth periodic textures, median-vs-mean passed 29 and
      median-vs-P90 97 (pixel-noise and few-colour tiles: 100), while tiles cut from a larger texture, with
      a real seam on the wrap, passed 1-12 % (the rest are seams weak enough to be hard to see).
    Alpha is ignored: tiles are opaque.
    """
    a = np.asarray(tile.convert("RGB") if isinstance(tile, Image.Image) else tile)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 3:
        raise ValueError(f"a tile must be an RGB(A) image of at least 3x3 px, got shape {a.shape}")
    lab = rgb_to_oklab(a[..., :3].astype(np.uint8))
    dx = oklab_distance(lab[:, 1:], lab[:, :-1])
    dy = oklab_distance(lab[1:], lab[:-1])
    interior = float(np.percentile(np.concatenate([dx.ravel(), dy.ravel()]), 90))
    wrap_x = oklab_distance(lab[:, 0], lab[:, -1])
    wrap_y = oklab_distance(lab[0], lab[-1])
    edge = float(max(np.median(wrap_x), np.median(wrap_y)))
    ratio = 0.0 if edge == 0 else (float("inf") if interior == 0 else edge / interior)
    return SeamReport(edge, interior, ratio, bool(edge <= interior * tolerance))


# ----------------------------------------------------------------------------------------
# the tileset job
# ----------------------------------------------------------------------------------------
@dataclass
class TilesetOutput:
    tiles: list[Image.Image]  # native RGBA, exactly spec.tile_size, opaque
    raws: list[Image.Image]  # the renders
    seeds: list[int]
    palette: np.ndarray  # (k, 3) uint8, shared by every tile
    reports: list[SeamReport]
    seamless: bool


def periodic_cells(raw: Image.Image, tile_size: tuple[int, int], align: bool) -> np.ndarray:
    """The render cut into exactly tile_size cells of render/tile px each: (h, w, 4) uint8, opaque.

    Why not the pixel engine's exact grid: it fits period and phase to the picture, and on the tiny model
    it chose e.g. 4.17 px cells at phase 1.9 for a 64 px render cut into 16 (and 3.84 px on clean 4 px
    blocks), so the lattice did not close on itself: the last column would not be the neighbour of the first
    one, and a seamless render would come out seamed. Here the period is exactly render/tile, so the cells
    tile the torus. align=True (seamless renders only) first rolls the render so that the lattice phase the
    engine detects lands at 0: rolling a periodic picture moves no seam, and the cells then follow the
    pseudo pixels the model drew. Each cell is the median of its central half, the engine's own sampling.
    """
    rgba = np.asarray(raw.convert("RGBA")).copy()
    rgba[..., 3] = 255
    h, w = rgba.shape[:2]
    tw, th = tile_size
    if align:
        found = detect_grid(rgba, tile_size, exact=True)
        dy, dx = (int(round(g.phase % g.period)) for g in (found.y, found.x))
        rgba = np.roll(rgba, (-dy, -dx), axis=(0, 1))
    grid = Grid(AxisGrid(np.linspace(0.0, w, tw + 1), w / tw, 0.0), AxisGrid(np.linspace(0.0, h, th + 1), h / th, 0.0))
    samples = sample_cells(rgba, grid).reshape(th, tw, -1, 4)
    return np.round(np.median(samples.astype(np.float64), axis=2)).astype(np.uint8)


def generate_tileset(pipe, params: GenerateParams, spec: TileSpec, on_step: StepFn | None = None) -> TilesetOutput:
    """Render spec.count variants (seeds seed..seed+count-1, one batch), cut and map them to one palette.

    spec.count wins over params.count. The palette is built from the cells of all renders together (or is
    spec.palette), then every tile is mapped to it with the engine's OKLab nearest-colour step, so the tiles
    of a set share their colours exactly. No stray clean-up: it treats the tile border as an edge, not a wrap.
    """
    tw, th = spec.tile_size
    if (params.width and tw > params.width) or (params.height and th > params.height):
        raise ValueError(f"tile_size {tw}x{th} is larger than the render ({params.width}x{params.height})")
    job = dataclasses.replace(params, count=spec.count)
    if spec.seamless:
        with seamless(pipe):
            raws = render(pipe, job, on_step)
    else:
        raws = render(pipe, job, on_step)
    cells = [periodic_cells(raw, spec.tile_size, align=spec.seamless) for raw in raws]
    palette = load_palette(spec.palette) if spec.palette else palette_from_images(cells, spec.colors)
    tiles = [Image.fromarray(apply_palette(c, palette), "RGBA") for c in cells]
    return TilesetOutput(tiles, raws, job.seeds(), np.asarray(palette, np.uint8).reshape(-1, 3),
                         [seam_report(t) for t in tiles], spec.seamless)


def repeat_preview(tile: Image.Image, n: int = 3, scale: int = 8) -> Image.Image:
    """The tile repeated n x n and enlarged with nearest neighbour: the way to see a seam at a glance."""
    if not isinstance(n, int) or not 1 <= n <= 16:
        raise ValueError(f"n must be a whole number from 1 to 16, got {n!r}")
    w, h = tile.size
    out = Image.new(tile.mode, (w * n, h * n))
    for y in range(n):
        for x in range(n):
            out.paste(tile, (x * w, y * h))
    return upscale_nearest(out, scale)
