"""The one rule for "what is this image's native sprite?", used by dataset import and by the captioner.

The order matters and follows how pixel art is really stored:
1. an EXACT integer nearest-neighbour enlargement (x2 .. x16 exports, every k x k block one colour) is read
   back exactly, without the lattice search, which can misread small sprites with large flat areas;
2. an image that already is clean native pixel art is its own native sprite, unchanged;
3. anything else (a render, a smoothed or JPEG'd upscale) goes through the engine with the background kept.

`reproduces` says whether the answer can be believed: enlarging the native sprite back onto the input's
lattice must reproduce the input (at most a quarter of the pixels off). A caption must not claim a sprite
size that does not survive this test.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .engine import PixelParams, PixelResult, pixelate
from .grid import is_native
from .io import load_rgba

REPRODUCE_MAX_OFF = 0.25  # share of pixels more than 32 levels off after enlarging back


def _axis_lattice(changes: np.ndarray) -> tuple[int, int] | None:
    """(period, phase) of the positions where an axis' lines change, or None when nothing changes."""
    pos = np.flatnonzero(changes) + 1
    if not len(pos):
        return None
    k = int(np.gcd.reduce(np.diff(pos))) if len(pos) > 1 else int(pos[0])
    return k, int(pos[0] % k)


def exact_upscale(rgba: np.ndarray) -> PixelResult | None:
    """The native sprite of an image that is an exact integer nearest-neighbour enlargement (every k x k
    block one colour, blocks aligned to one lattice, edge blocks may be cut), or None (k = 1, smoothing,
    noise, JPEG: not exact)."""
    a = np.asarray(rgba)
    h, w = a.shape[:2]
    lat_x = _axis_lattice(np.any(a[:, 1:] != a[:, :-1], axis=(0, 2)))
    lat_y = _axis_lattice(np.any(a[1:] != a[:-1], axis=(1, 2)))
    if lat_x is None and lat_y is None:
        return None  # one flat colour: no lattice to see
    k = int(np.gcd(lat_x[0] if lat_x else 0, lat_y[0] if lat_y else 0))
    if k < 2:
        return None
    starts = []
    for lat, n in ((lat_x, w), (lat_y, h)):
        o = lat[1] % k if lat else 0
        starts.append(np.unique(np.r_[0, np.arange(o, n, k)]))
    xs, ys = starts
    phase = (float(xs[1] % k) if len(xs) > 1 else 0.0, float(ys[1] % k) if len(ys) > 1 else 0.0)
    return _result(a[np.ix_(ys, xs)].copy(), float(k), {"phase": phase, "exact": True})


def _result(native: np.ndarray, cell: float, info: dict) -> PixelResult:
    """A PixelResult for a sprite read exactly: alpha made 0/255, transparent pixels black."""
    opaque = native[..., 3] >= 128
    native[..., 3] = np.where(opaque, 255, 0)
    native[~opaque, :3] = 0
    used = np.unique(native[opaque][:, :3], axis=0) if opaque.any() else np.zeros((0, 3), np.uint8)
    return PixelResult(image=Image.fromarray(native, "RGBA"), cell=(cell, cell),
                       grid_size=(native.shape[1], native.shape[0]), palette=used.astype(np.uint8), info=info)


def native_sprite(image) -> PixelResult:
    """The native sprite (rule in the module docstring); `info["reproduces"]` says whether to believe it."""
    rgba = load_rgba(image)
    exact = exact_upscale(rgba)
    if exact is not None:
        exact.info["reproduces"] = True
        return exact
    if is_native(rgba):
        result = _result(rgba.copy(), 1.0, {"phase": (0.0, 0.0), "reproduces": True})
        result.native_input = True
        return result
    result = pixelate(rgba, PixelParams(background="keep"))
    nat = result.image
    back = np.asarray(nat.resize((rgba.shape[1], rgba.shape[0]), Image.Resampling.NEAREST)).astype(np.int16)
    off = np.abs(back - rgba.astype(np.int16)).max(-1) > 32
    result.info["reproduces"] = bool(off.mean() <= REPRODUCE_MAX_OFF)
    return result
