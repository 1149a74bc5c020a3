"""Background removal on the native-resolution sprite.

Why on the native image: one decision per art pixel, no JPEG halo to fight, and the
result's alpha is exactly 0 or 255.

- The background is the colour connected to the image border (4-connected flood fill in
  OKLab with a tolerance), so a sprite's own pixels of a similar colour that do not touch
  the outside are kept. keep_holes=False also clears enclosed regions of that colour
  (the gaps inside a ring, between arms and body...).
- "auto" first asks whether there is a flat background at all: the outer ring of pixels
  must be (almost) one colour. An opaque tile or a map fills its frame with varied
  colours, so it stays opaque. An input that already has transparency is left alone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .color import oklab_distance, parse_hex, rgb_to_oklab

BG_TOLERANCE = 0.04  # OKLab distance to the background colour that still counts as background
AUTO_MIN_LEFT = 0.05  # "auto" keeps everything if removal would leave less than this share
AUTO_RING_SHARE = 0.98  # share of the border ring that must be the background colour for "auto"


def border_ring(a: np.ndarray) -> np.ndarray:
    """The outermost pixels of a (h, w, ...) array, as (n, ...)."""
    if a.shape[0] <= 2 or a.shape[1] <= 2:
        return a.reshape(-1, *a.shape[2:])
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def detect_background(rgba: np.ndarray, tol: float = BG_TOLERANCE,
                      min_share: float = AUTO_RING_SHARE) -> tuple[int, int, int] | None:
    """The flat background colour of an opaque native image, or None if there is none.

    The candidate is the most common colour of the border ring; it is accepted when at
    least `min_share` of the ring lies within `tol` of it.
    """
    ring = border_ring(rgba)
    ring = ring[ring[:, 3] >= 128][:, :3]
    if len(ring) < 4:
        return None
    uniq, counts = np.unique(ring, axis=0, return_counts=True)
    lab_u = rgb_to_oklab(uniq)
    # the colour with the most ring pixels within tol (robust to a few noisy shades)
    near = oklab_distance(lab_u[:, None], lab_u[None]) <= tol
    support = near.astype(np.int64) @ counts
    best = int(np.argmax(support))
    if support[best] < min_share * len(ring):
        return None
    r, g, b = (int(v) for v in uniq[best])
    return (r, g, b)


def remove_background(rgba: np.ndarray, colour: tuple[int, int, int], tol: float = BG_TOLERANCE,
                      keep_holes: bool = True) -> np.ndarray:
    """Make `colour` (within tol, OKLab) transparent where it is connected to the border;
    with keep_holes=False, everywhere. Alpha of the result is 0 or 255."""
    out = rgba.copy()
    lab = rgb_to_oklab(out[..., :3])
    match = (oklab_distance(lab, rgb_to_oklab(np.array(colour, np.uint8))) <= tol) & (out[..., 3] >= 128)
    match |= out[..., 3] < 128  # already-transparent pixels conduct the flood as well
    if keep_holes:
        labels, _ = ndimage.label(match)
        edge = np.unique(border_ring(labels))
        edge = edge[edge > 0]
        clear = np.isin(labels, edge)
    else:
        clear = match
    out[..., 3] = np.where(clear | (out[..., 3] < 128), 0, 255)
    out[out[..., 3] == 0, :3] = 0
    return out


def handle_background(rgba: np.ndarray, mode: str, keep_holes: bool = True, tol: float = BG_TOLERANCE,
                      source: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """Apply a background mode: "auto", "keep" or "#rrggbb". Returns (image, colour removed).

    source: the full-resolution input, if available. "auto" then leaves the image alone
    when the input already has transparency (it says what is empty), and requires the
    candidate colour to also be the colour of the input's outermost pixels (padding
    around a tile is the true background, not the tile's own edge colour).
    """
    if mode == "keep":
        return rgba, None
    if mode == "auto":
        if np.any(rgba[..., 3] < 128):  # the input already says what is empty
            return rgba, None
        if source is not None and np.mean(source[..., 3] < 128) > 0.002:
            return rgba, None
        colour = detect_background(rgba, tol)
        if colour is None:
            return rgba, None
        if source is not None:
            outer = np.median(border_ring(source)[:, :3], axis=0)
            if oklab_distance(rgb_to_oklab(np.round(outer).astype(np.uint8)),
                              rgb_to_oklab(np.array(colour, np.uint8))) > tol:
                return rgba, None
        out = remove_background(rgba, colour, tol, keep_holes)
        if np.mean(out[..., 3] >= 128) < AUTO_MIN_LEFT:  # nothing would be left: not a background
            return rgba, None
        return out, colour
    colour = parse_hex(mode)
    return remove_background(rgba, colour, tol, keep_holes), colour
