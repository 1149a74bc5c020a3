"""Shading: remove the smooth light field a render lays over the art, before the palette.

Why: a diffusion render lights its sprite: a ramp or a soft bump of a few to ~16 levels
across the whole sprite, plus a little per-cell jitter. Each cell's colour is then the
art's colour plus the light at that place, and one art colour spreads over a range wider
than a palette cluster, so it splits into two or three entries. The light is smooth
(low order across the sprite) while the art is piecewise constant, so: cluster once,
fit a smooth field (quadratic in x and y, per OKLab channel) to what is left of every
cell after its cluster centre, with weights that ignore cells that do not fit (robust,
two re-weighting rounds), and subtract it. Art colours stay the art's; a flat render
(no field) is returned unchanged, bit for bit.
"""

from __future__ import annotations

import numpy as np

from .color import nearest_index, oklab_to_rgb, rgb_to_oklab

RESIDUAL_SCALE = 0.02  # OKLab: residuals beyond this weigh less (misassigned cells, specks)
MIN_FIELD = 0.01  # OKLab: a fitted field weaker than this (about 2 RGB levels) is left alone
MIN_CELLS = 12


def deshade(colour: np.ndarray, opaque: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """colour (ny, nx, 3) uint8 with the smooth light field removed from the opaque cells,
    fitted against `palette` (a first clustering of the cell colours)."""
    ny, nx = opaque.shape
    if int(opaque.sum()) < MIN_CELLS or len(palette) == 0:
        return colour
    lab = rgb_to_oklab(colour[opaque])
    centres = rgb_to_oklab(np.asarray(palette, np.uint8))
    r = lab - centres[nearest_index(lab, centres)]
    jj, ii = np.nonzero(opaque)
    y = 2.0 * (jj + 0.5) / ny - 1.0
    x = 2.0 * (ii + 0.5) / nx - 1.0
    basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)
    w = np.ones(len(r))
    coef = np.zeros((basis.shape[1], 3))
    for _ in range(3):
        sw = np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(basis * sw, r * sw, rcond=None)[0]
        res = np.sqrt(((r - basis @ coef) ** 2).sum(1))
        w = 1.0 / (1.0 + (res / RESIDUAL_SCALE) ** 2)
    field = basis[:, 1:] @ coef[1:]  # the constant part belongs to the colours
    field -= field.mean(0)
    if float(np.abs(field).max()) < MIN_FIELD:
        return colour
    out = colour.copy()
    out[opaque] = oklab_to_rgb(lab - field)
    return out
