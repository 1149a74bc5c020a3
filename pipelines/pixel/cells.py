"""Cell colours: one robust colour (and alpha) per cell from the pixels of its interior.

Why: the interior of a cell (its central part, away from the anti-aliased borders) holds
the cell's own colour plus shading, texture, noise and sometimes a speck (a small blob of
another colour, up to ~40 % of the cell across, i.e. up to about a third of the sampled
area). A per-channel median lands in the majority; the mean of the half of the samples
nearest to it, refined twice, is then the majority colour without the speck's pull and
with the noise averaged out. Alpha is the majority of the samples. Everything is
vectorised over all cells at once (no per-cell Python loop).
"""

from __future__ import annotations

import numpy as np

REFINE = 1  # nearest-half refinements after the median


def cell_colours(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """samples (ny, nx, s, s, 4) uint8 -> (opaque (ny, nx) bool, colour (ny, nx, 3) uint8).

    Colours are computed from the opaque samples only; a cell none of whose samples is
    opaque gets black (it is transparent anyway).
    """
    ny, nx = samples.shape[:2]
    flat = samples.reshape(ny * nx, -1, 4)
    m = flat.shape[1]
    op = flat[..., 3] >= 128
    n_op = op.sum(1)
    opaque = n_op * 2 > m
    rgb = flat[..., :3].astype(np.float32)
    out = np.zeros((ny * nx, 3), np.float32)
    full = n_op == m
    if full.any():
        out[full] = _robust(rgb[full], None)
    mixed = (n_op > 0) & ~full
    if mixed.any():
        out[mixed] = _robust(rgb[mixed], op[mixed])
    colour = np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(ny, nx, 3)
    return opaque.reshape(ny, nx), colour


def _robust(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Majority colour of each row of rgb (N, m, 3); mask (N, m) marks the samples to use."""
    if mask is None:
        med = np.median(rgb, axis=1)
        k = max(1, rgb.shape[1] // 2)
        for _ in range(REFINE):
            d = ((rgb - med[:, None, :]) ** 2).sum(-1)
            near = d <= np.partition(d, k - 1, axis=1)[:, k - 1 : k]
            med = (rgb * near[..., None]).sum(1) / near.sum(1)[:, None]
        return med
    x = np.where(mask[..., None], rgb, np.nan)
    med = np.nanmedian(x, axis=1)
    half = np.maximum(1, mask.sum(1) // 2)
    for _ in range(REFINE):
        d = np.where(mask, ((rgb - med[:, None, :]) ** 2).sum(-1), np.inf)
        kth = np.take_along_axis(np.sort(d, axis=1), (half - 1)[:, None], axis=1)
        near = mask & (d <= kth)
        med = (rgb * near[..., None]).sum(1) / np.maximum(near.sum(1), 1)[:, None]
    return med


ART_STEP = 16  # a colour step between neighbouring cells (max over R, G, B) that is art, not shading
MIN_STEP_SHARE = 0.05  # pixel art has at least this share of such steps between neighbours


def step_share(opaque: np.ndarray, colour: np.ndarray) -> float:
    """Share of neighbouring cell pairs (both opaque, or one opaque and one not) that differ
    by a clear colour step. Pixel art is made of flat cells and clear steps; the "cells"
    of a smooth gradient's banding or of noise differ by a few levels only."""
    c = colour.astype(np.int16)
    steps, pairs = 0, 0
    for axis in (0, 1):
        a = np.moveaxis(opaque, axis, 0)
        v = np.moveaxis(c, axis, 0)
        both = a[1:] & a[:-1]
        edge = a[1:] != a[:-1]
        big = np.abs(v[1:] - v[:-1]).max(-1) >= ART_STEP
        steps += int(np.sum(both & big) + np.sum(edge))
        pairs += int(np.sum(both | edge))
    return steps / pairs if pairs else 0.0
