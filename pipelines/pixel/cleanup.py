"""Clean-up passes on the native sprite: stray pixels, outline, crop and canvas.

Why: after grid recovery a few cells can come out wrong in a way no artist would draw:
a lone speck floating in empty space, or a single pixel of a barely different shade
inside a flat area (a split colour). Those are removed. Deliberate single pixels (an
eye, a highlight: a clearly different colour) are kept; that is why a stray must be
close in colour to its uniform surroundings, or be an opaque speck with nothing around.
"""

from __future__ import annotations

import numpy as np

from .color import oklab_distance, parse_hex, rgb_to_oklab

STRAY_TOLERANCE = 0.04  # OKLab: a lone pixel this close to its uniform surroundings is noise


def _neighbours(a: np.ndarray) -> np.ndarray:
    """The 8 neighbours of every pixel, edge-replicated: (8, h, w, ...)."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    h, w = a.shape[:2]
    return np.stack([p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])


def remove_strays(rgba: np.ndarray, tol: float = STRAY_TOLERANCE) -> np.ndarray:
    """Replace isolated pixels by their surroundings.

    A pixel is a stray when its 8 neighbours (image edge replicated) all have one and the
    same RGBA value that differs from it, and either the neighbours are transparent and it
    is opaque (a floating speck) or it is within `tol` of their colour (a split shade).
    """
    if min(rgba.shape[:2]) < 3:
        return rgba
    key = rgba.reshape(rgba.shape[0], rgba.shape[1], 4).copy()
    key[key[..., 3] == 0, :3] = 0
    packed = key.view(np.uint32)[..., 0]
    nb = _neighbours(packed)
    uniform = np.all(nb == nb[0], axis=0) & (nb[0] != packed)
    if not uniform.any():
        return rgba
    nb_rgba = _neighbours(key)[0]
    speck = (nb_rgba[..., 3] == 0) & (key[..., 3] > 0)
    both_opaque = (nb_rgba[..., 3] > 0) & (key[..., 3] > 0)
    close = both_opaque & (oklab_distance(rgb_to_oklab(key[..., :3]), rgb_to_oklab(nb_rgba[..., :3])) <= tol)
    fix = uniform & (speck | close)
    out = key.copy()
    out[fix] = nb_rgba[fix]
    return out


def add_outline(rgba: np.ndarray, colour: str | tuple[int, int, int]) -> np.ndarray:
    """A 1-px outline: every transparent pixel 4-adjacent to an opaque one gets `colour`.

    The canvas size does not change; crop with padding first if the sprite touches the edge.
    """
    rgb = parse_hex(colour) if isinstance(colour, str) else tuple(int(v) for v in colour)
    op = rgba[..., 3] >= 128
    p = np.pad(op, 1)
    near = p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    ring = near & ~op
    out = rgba.copy()
    out[ring] = (*rgb, 255)
    return out


def content_box(rgba: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the opaque pixels, or None if there are none."""
    ys, xs = np.nonzero(rgba[..., 3] >= 128)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_to_content(rgba: np.ndarray, padding: int = 0) -> np.ndarray:
    """Crop to the opaque pixels, then add `padding` transparent pixels on every side."""
    box = content_box(rgba)
    if box is None:
        return rgba
    x0, y0, x1, y1 = box
    out = rgba[y0:y1, x0:x1]
    if padding > 0:
        out = np.pad(out, ((padding, padding), (padding, padding), (0, 0)))
    return np.ascontiguousarray(out)


def pad_to_canvas(rgba: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """Centre the image on a transparent canvas (w, h). ValueError if it does not fit."""
    cw, ch = canvas
    h, w = rgba.shape[:2]
    if w > cw or h > ch:
        raise ValueError(f"the sprite is {w}x{h} px and does not fit the {cw}x{ch} canvas")
    out = np.zeros((ch, cw, 4), np.uint8)
    x0, y0 = (cw - w) // 2, (ch - h) // 2
    out[y0 : y0 + h, x0 : x0 + w] = rgba
    return out
