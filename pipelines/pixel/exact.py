"""Exact integer enlargements: the lattice of an image in which every k x k block is one colour.

Why a rule of its own: most pixel art is stored as x2 .. x16 exports, and such an image holds its lattice
exactly, with no estimate needed: every colour change sits on a multiple of k (from one phase per axis). The
lattice search reads many things well but can misread small sprites with large flat areas; an exact lattice
is never wrong, so both the engine and the native-sprite rule ask this first.
"""

from __future__ import annotations

import numpy as np


def _axis_lattice(changes: np.ndarray) -> tuple[int, int] | None:
    """(period, phase) of the positions where an axis' lines change, or None when nothing changes."""
    pos = np.flatnonzero(changes) + 1
    if not len(pos):
        return None
    k = int(np.gcd.reduce(np.diff(pos))) if len(pos) > 1 else int(pos[0])
    return k, int(pos[0] % k)


def exact_lattice(rgba: np.ndarray) -> tuple[int, tuple[int, int]] | None:
    """(k, (phase x, phase y)) of an exact integer nearest-neighbour enlargement by k >= 2 (edge blocks may be
    cut), or None (k = 1, one flat colour, smoothing, noise or JPEG: not exact)."""
    a = np.asarray(rgba)
    lat_x = _axis_lattice(np.any(a[:, 1:] != a[:, :-1], axis=(0, 2)))
    lat_y = _axis_lattice(np.any(a[1:] != a[:-1], axis=(1, 2)))
    if lat_x is None and lat_y is None:
        return None
    k = int(np.gcd(lat_x[0] if lat_x else 0, lat_y[0] if lat_y else 0))
    if k < 2:
        return None
    return k, (lat_x[1] % k if lat_x else 0, lat_y[1] % k if lat_y else 0)
