"""The split test: does a lattice hide an edge inside its cells? (image space)"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SPLIT_SIGMAS = 4.0  # half-cell mean difference (in noise std) that counts as an edge ...
SPLIT_MIN_DIFF = 12.0  # ... and at least this much in one channel (0..255)
MIN_TESTED = 4  # a lattice needs this many inner cells per line for the split test to vouch for it


class SplitTester:
    """Image-space check of a lattice along one axis: do its cells hide an edge?

    For sampled lines (rows for the x axis) and every inner cell, the cell minus 20 % at
    both ends (where blur lives) is split in two halves; the cell is *broken* on that
    line when the halves' mean colours differ by more than noise allows. A lattice that is
    too coarse (2c, 3c) or misplaced breaks many cells; the true one and its refinements
    (c/2, c/3) break almost none. Each line uses the boundaries of its own place along the
    other axis (bent lattices), interpolated between the strip centres.
    """

    def __init__(self, lines: np.ndarray, at: np.ndarray, centres: np.ndarray):
        r, n, ch = lines.shape
        self.n_lines, self.length = r, n
        self.spacing = float(np.median(np.diff(at))) if r > 1 else 1.0
        self.prefix = np.zeros((r, ch, n + 1), np.float32)  # channels first: cumsum along memory
        np.cumsum(np.ascontiguousarray(lines.transpose(0, 2, 1)), axis=2, dtype=np.float32, out=self.prefix[:, :, 1:])
        d = np.abs(np.diff(lines[::4], axis=1))[:, ::3].reshape(-1, ch) if n > 3 else np.zeros((1, ch))
        k = d.shape[0] // 2
        self.sigma = np.maximum(1.4826 * np.partition(d, k, axis=0)[k] / np.sqrt(2.0), 1.0)
        s_n = len(centres)
        if s_n == 1:
            self.i0 = np.zeros(r, dtype=np.intp)
            self.w = np.zeros(r)
        else:
            t = np.interp(at, centres, np.arange(s_n))
            self.i0 = np.floor(t).astype(np.intp).clip(0, s_n - 2)
            self.w = t - self.i0

    def line_cuts(self, cuts: np.ndarray) -> np.ndarray:
        """(S, K) strip boundaries -> (lines, K)."""
        cuts = np.atleast_2d(cuts)
        if cuts.shape[0] == 1:
            return np.repeat(cuts, self.n_lines, axis=0)
        return cuts[self.i0] * (1 - self.w[:, None]) + cuts[self.i0 + 1] * self.w[:, None]

    def rate(self, cuts: np.ndarray, c: float | None = None) -> float:
        """Share of (line, inner cell) pairs that are broken. Cells cut by the image's ends
        are not tested (they may hold padding). With c (the cell size, taken as the cell's
        extent across the lines too), a cell only counts as broken on a run of lines at
        least half a cell long: a speck smaller than half a cell hides no boundary."""
        cl = self.line_cuts(cuts)
        inner = (cl.min(0) >= 0) & (cl.max(0) <= self.length)
        cl = cl[:, inner]
        if cl.shape[1] < MIN_TESTED + 1:
            return 1.0
        a, b = cl[:, :-1], cl[:, 1:]
        m = np.maximum(1.0, 0.2 * (b - a))
        ia = np.clip(np.ceil(a + m - 1e-6), 0, self.length).astype(np.intp)
        ib = np.clip(np.floor(b - m + 1e-6), 0, self.length).astype(np.intp)
        ok = (ib - ia) >= 2
        if ok.sum() < MIN_TESTED * self.n_lines:
            return 1.0  # too few cells to vouch for this lattice
        ib = np.where(ok, ib, ia + 2)
        im = ia + (ib - ia) // 2

        def at(idx: np.ndarray) -> np.ndarray:  # (lines, channels, cells)
            return np.take_along_axis(self.prefix, idx[:, None, :], axis=2)

        sa, sm, sb = at(ia), at(im), at(ib)
        left = (sm - sa) / (im - ia)[:, None, :]
        right = (sb - sm) / (ib - im)[:, None, :]
        tol = SPLIT_SIGMAS * self.sigma[None, :, None] * np.sqrt(1.0 / (im - ia) + 1.0 / (ib - im))[:, None, :]
        broken = np.any(np.abs(left - right) > np.maximum(tol, SPLIT_MIN_DIFF), axis=1) & ok
        run = int(round(0.5 * c / self.spacing)) if c else 1
        if run > 1:
            broken = ndimage.binary_opening(broken, structure=np.ones((run, 1), bool))
        return float(broken[ok].mean())
