"""The one rule for "what is this image's native sprite?", used by dataset import and by the captioner.

The order matters and follows how pixel art is really stored:
1. an EXACT integer nearest-neighbour enlargement (x2 .. x16 exports, every k x k block one colour) is read
   back exactly, without the lattice search, which can misread small sprites with large flat areas;
2. an image that already is clean native pixel art is its own native sprite, unchanged; so is a clean image
   (exact colours, alpha 0 or 255: nothing blurred or blended) in which the engine finds no sure grid: art
   with large flat areas can look like a coarse grid, but a real enlargement leaves its grid in plain view;
3. anything else (a render, a smoothed or JPEG'd upscale) goes through the engine with the background kept.

`reproduces` says whether the answer can be believed: enlarging the native sprite back onto the input's
lattice must reproduce the input (at most a quarter of the pixels off). A caption must not claim a sprite
size that does not survive this test.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .engine import PixelParams, PixelResult, pixelate
from .exact import exact_lattice
from .grid import is_native
from .io import load_rgba

REPRODUCE_MAX_OFF = 0.25  # share of pixels more than 32 levels off after enlarging back


def exact_upscale(rgba: np.ndarray) -> PixelResult | None:
    """The native sprite of an image that is an exact integer nearest-neighbour enlargement (every k x k
    block one colour, blocks aligned to one lattice, edge blocks may be cut), or None (k = 1, smoothing,
    noise, JPEG: not exact)."""
    a = np.asarray(rgba)
    h, w = a.shape[:2]
    found = exact_lattice(a)
    if found is None:
        return None
    k, (ox, oy) = found
    xs, ys = (np.unique(np.r_[0, np.arange(o, n, k)]) for o, n in ((ox, w), (oy, h)))
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


def _itself(rgba: np.ndarray) -> PixelResult:
    result = _result(rgba.copy(), 1.0, {"phase": (0.0, 0.0), "reproduces": True})
    result.native_input = True
    return result


def _clean(rgba: np.ndarray) -> bool:
    """Exact colours: alpha only 0/255 and at most 256 colours (no blur, anti-aliasing or JPEG in it)."""
    alpha = rgba[..., 3]
    if not np.all((alpha == 0) | (alpha == 255)):
        return False
    opaque = rgba[alpha == 255][:, :3]
    packed = (opaque[:, 0].astype(np.int32) << 16) | (opaque[:, 1].astype(np.int32) << 8) | opaque[:, 2]
    return len(np.unique(packed)) <= 256


def native_sprite(image) -> PixelResult:
    """The native sprite (rule in the module docstring); `info["reproduces"]` says whether to believe it."""
    rgba = load_rgba(image)
    exact = exact_upscale(rgba)
    if exact is not None:
        exact.info["reproduces"] = True
        return exact
    if is_native(rgba):
        return _itself(rgba)
    result = pixelate(rgba, PixelParams(background="keep"))
    if result.note and _clean(rgba):
        return _itself(rgba)
    nat = result.image
    back = np.asarray(nat.resize((rgba.shape[1], rgba.shape[0]), Image.Resampling.NEAREST)).astype(np.int16)
    off = np.abs(back - rgba.astype(np.int16)).max(-1) > 32
    result.info["reproduces"] = bool(off.mean() <= REPRODUCE_MAX_OFF)
    return result
