"""Colour conversion and distances for the pixel engine.

Why OKLab: palette clustering, background flood fills and "is this the same colour?"
tests all need a distance that follows perceived difference. sRGB distances treat a
small step in dark blues like the same step in yellows; OKLab is close to perceptually
uniform and is cheap (two 3x3 matrices and a cube root), so every colour comparison in
this package is done there.
"""

from __future__ import annotations

import numpy as np

# Björn Ottosson's published OKLab matrices (linear sRGB -> LMS -> OKLab).
_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_M1_INV = np.linalg.inv(_M1)
_M2_INV = np.linalg.inv(_M2)

# A lookup table makes the sRGB decode of uint8 data a gather instead of a power.
_SRGB_TO_LINEAR_LUT = np.where(
    np.arange(256) / 255.0 <= 0.04045,
    np.arange(256) / 255.0 / 12.92,
    ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4,
)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any float or uint8 array, last axis 3) -> linear light 0..1."""
    if rgb.dtype == np.uint8:
        return _SRGB_TO_LINEAR_LUT[rgb]
    c = np.clip(np.asarray(rgb, dtype=np.float64) / 255.0, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light 0..1 -> sRGB float 0..255 (not rounded)."""
    c = np.clip(lin, 0.0, 1.0)
    return 255.0 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def rgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (..., 3) -> OKLab (..., 3) float64; L in 0..1, a/b roughly -0.4..0.4."""
    lms = srgb_to_linear(rgb) @ _M1.T
    return np.cbrt(lms) @ _M2.T


def oklab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """OKLab (..., 3) -> sRGB uint8 (..., 3), clipped to the gamut and rounded."""
    lms = (np.asarray(lab, dtype=np.float64) @ _M2_INV.T) ** 3
    return np.clip(np.round(linear_to_srgb(lms @ _M1_INV.T)), 0, 255).astype(np.uint8)


def oklab_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance in OKLab between broadcastable (..., 3) arrays (ΔE_ok)."""
    return np.sqrt(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))


def nearest_index(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (k, 3) for every colour in lab (..., 3), in OKLab.

    Uses |x|^2 - 2 x.c + |c|^2 so memory stays O(n*k) without a (n, k, 3) temporary.
    """
    flat = lab.reshape(-1, 3)
    d = (flat**2).sum(1)[:, None] - 2.0 * flat @ centres.T + (centres**2).sum(1)[None, :]
    return np.argmin(d, axis=1).reshape(lab.shape[:-1])


def parse_hex(colour: str) -> tuple[int, int, int]:
    """'#rrggbb', 'rrggbb' or '#rgb' -> (r, g, b); ValueError with a clear message otherwise."""
    s = colour.strip().lstrip("#")
    if len(s) == 3:
        s = "".join(ch * 2 for ch in s)
    if len(s) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in s):
        raise ValueError(f"not a hex colour: {colour!r} (expected '#rrggbb')")
    return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)


def to_hex(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """(r, g, b) -> '#rrggbb'."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
