"""A lattice that bends: cell boundaries as monotone sequences fitted to edge evidence.

Why this design:
- Real renders are not drawn on one uniform grid: cell widths drift across the image
  (+-5..15 %), rows and columns bend, the grid may be rotated by up to ~1 degree. One
  period and one phase per axis cannot follow that; a sequence of boundaries can.
- Per axis, the boundaries are found by dynamic programming over positions (`chain`):
  every boundary scores the edge evidence it sits on, consecutive cell widths stay within
  [WMIN, WMAX] of the period and pay a smoothness prior (a width may differ from its
  neighbour's and from the period, but each change costs). Where the image has no
  evidence (a sprite's empty margin, a flat area), the chain simply continues at its
  current width. The period itself only sets the scale: it comes from the spectrum of
  the evidence, and its harmonics (c/2, 2c...) are told apart as before, by penalised
  evidence and by an image-space split test, now run on the fitted chains.
- Bending: the evidence is also summed per strip of lines. Each strip moves every
  boundary by an offset (a second small DP along the boundaries), and each strip's score
  curves are blended with their neighbours', so a strip without evidence follows the
  strips around it. The boundaries are thus a smooth function of the other axis.
- Counting: the chain covers the image and a margin on both sides; a cell counts when
  at least MIN_VISIBLE of it lies inside the image (a crop leaves > half a cell, padding
  adds < a quarter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WMIN, WMAX = 0.7, 1.4  # cell widths allowed, relative to the period
LAMBDA = 100.0  # cost of a width change between neighbours, per (change / period)^2
MU = 10.0  # cost of a width away from the period, per (deviation / period)^2
MIN_VISIBLE = 0.4
BIN_TARGET = 12.0  # the chain runs on bins of ~period / BIN_TARGET px


def position_evidence(g: np.ndarray) -> np.ndarray:
    """Evidence at boundary positions 0..n from profiles (..., n) centred on pixels (index
    x <-> position x + 0.5): a boundary at p answers at pixels p-1 and p."""
    out = np.zeros(g.shape[:-1] + (g.shape[-1] + 1,))
    out[..., 1:] += 0.5 * g
    out[..., :-1] += 0.5 * g
    return out


def count_cells(cuts: np.ndarray, n: int) -> np.ndarray:
    """The boundaries of the cells with at least MIN_VISIBLE of their width inside [0, n]."""
    a, b = cuts[:-1], cuts[1:]
    vis = np.clip(np.minimum(b, n) - np.maximum(a, 0), 0, None) / np.maximum(b - a, 1e-9)
    keep = np.nonzero(vis >= MIN_VISIBLE)[0]
    if keep.size == 0:
        return np.array([0.0, float(n)])
    return cuts[keep[0] : keep[-1] + 2]


def _floor(e: np.ndarray, z: float) -> np.ndarray:
    """Noise floor of each row of e: mean + z std of its lowest 40 % of positions."""
    k = max(2, int(0.4 * e.shape[-1]))
    low = np.partition(e, k - 1, axis=-1)[..., :k]
    return low.mean(-1) + z * low.std(-1)


def normalise(p: np.ndarray, z: float = 3.0, cap: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Evidence above noise at boundary positions, in units of a strong boundary: for the
    whole axis (n + 1,) and per strip (S, n + 1), the strips summing to about the whole.

    The noise floor is measured on the lowest 40 % of the positions (inside cells, even
    when small blurred cells put edges on half of the positions): their mean plus z
    standard deviations. Below that the lattice follows its prior instead of chasing
    noise bumps. The unit is the median of the strongest 2 % of the summed positions;
    values are capped at `cap` units so that one silhouette cannot decide alone.
    """
    es = position_evidence(p)
    g = es.sum(0)
    e = np.maximum(g - _floor(g, z), 0.0)
    k = max(3, len(e) // 50)
    unit = float(np.median(np.partition(e, len(e) - k)[len(e) - k :]))
    if unit <= 0:
        return e, np.zeros_like(es)
    es = np.maximum(es - _floor(es, z)[:, None], 0.0) / unit
    return np.minimum(e / unit, cap), np.minimum(es, cap)


def viterbi(ref: np.ndarray, e: np.ndarray, c: float, ds: np.ndarray, lam: float, nu: float) -> np.ndarray:
    """Boundaries ref[k] + d_k (one sequence per row of e), d_k taken from ds, by Viterbi
    along k, vectorised over the rows.

    e: (S, n + 1) evidence at boundary positions 0..n (interpolated between them). Score:
    evidence at the boundaries, minus lam * ((d_k - d_{k-1}) / c)^2 (cell k's width moves
    away from the reference width) and nu * (d_k / c)^2 (the boundary strays from its
    reference). Cell widths stay within [WMIN, WMAX] c. Returns (S, K) positions.
    """
    s_rows, n1 = e.shape
    k_n, nd = len(ref), len(ds)
    pos = ref[:, None] + ds[None, :]  # (K, nd)
    x = np.arange(n1)
    un = np.stack([np.interp(pos, x, row, left=0.0, right=0.0) for row in e]) - nu * (ds / c) ** 2  # (S, K, nd)
    dd = ds[:, None] - ds[None, :]  # (current, previous)
    pair = lam * (dd / c) ** 2
    score = un[:, 0].copy()
    back = np.zeros((k_n, s_rows, nd), dtype=np.int32)
    rows = np.arange(s_rows)[:, None]
    cols = np.arange(nd)[None, :]
    for k in range(1, k_n):
        width = (ref[k] - ref[k - 1]) + dd
        cost = np.where((width < WMIN * c) | (width > WMAX * c), np.inf, pair)
        tot = score[:, None, :] - cost[None]  # (S, current, previous)
        j = np.argmax(tot, axis=2)
        back[k] = j
        score = tot[rows, cols, j] + un[:, k]
    path = np.empty((s_rows, k_n), dtype=np.int64)
    path[:, -1] = np.argmax(score, axis=1)
    for k in range(k_n - 1, 0, -1):
        path[:, k - 1] = back[k, np.arange(s_rows), path[:, k]]
    return ref[None, :] + ds[path]


def track(e: np.ndarray, c: float, o: float, lam: float = 30.0, nu: float = 0.0, reach: float = 1.5,
          steps: int = 16) -> np.ndarray:
    """Boundaries o + k c + d_k covering [-1.5 c, n + 1.5 c] on 1-D evidence e, with
    displacements |d_k| <= reach * c from the uniform lattice (see `viterbi`)."""
    n = len(e) - 1
    ds = np.arange(-int(reach * steps), int(reach * steps) + 1) * (c / steps)
    k0 = int(np.floor((-1.5 * c - o) / c)) - 1
    k1 = int(np.ceil((n + 1.5 * c - o) / c)) + 1
    ref = o + c * np.arange(k0, k1 + 1)
    return viterbi(ref, e[None, :], c, ds, lam, nu)[0]


def bend(es: np.ndarray, cuts: np.ndarray, c: float, lam: float = 30.0, nu: float = 2.0,
         reach: float = 0.4, steps: int = 16) -> np.ndarray:
    """Per strip, move every boundary of `cuts` by up to reach * c to follow that strip's
    evidence es[s] (S, n + 1): bent lines and a slight rotation. Each strip's evidence is
    blended with its neighbours' (1/4, 1/2, 1/4), so a strip with nothing to show follows
    the strips around it. Returns (S, K)."""
    if es.shape[0] == 1:
        return cuts[None, :]
    pad = np.concatenate([es[:1], es, es[-1:]])
    blend = 0.25 * pad[:-2] + 0.5 * pad[1:-1] + 0.25 * pad[2:]
    ds = np.arange(-int(reach * steps), int(reach * steps) + 1) * (c / steps)
    return viterbi(cuts, blend, c, ds, lam, nu)


# ----------------------------------------------------------------------------------------
# split test
# ----------------------------------------------------------------------------------------
SPLIT_SIGMAS = 4.0  # half-cell mean difference (in noise std) that counts as an edge ...
SPLIT_MIN_DIFF = 12.0  # ... and at least this much in one channel (0..255)
MIN_TESTED = 4  # a lattice needs this many inner cells per line for the test to vouch for it
TEST_LINES = 160


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
        self.prefix = np.zeros((r, n + 1, ch))
        np.cumsum(lines, axis=1, dtype=np.float64, out=self.prefix[:, 1:])
        d = np.abs(np.diff(lines[:, ::2], axis=1)).reshape(-1, ch) if n > 3 else np.zeros((1, ch))
        self.sigma = np.maximum(1.4826 * np.median(d, axis=0) / np.sqrt(2.0), 1.0)
        s_n = len(centres)
        if s_n == 1:
            self.i0 = self.i1 = np.zeros(r, dtype=np.intp)
            self.w = np.zeros(r)
        else:
            t = np.interp(at, centres, np.arange(s_n))
            self.i0 = np.floor(t).astype(np.intp).clip(0, s_n - 2)
            self.i1 = self.i0 + 1
            self.w = t - self.i0

    def line_cuts(self, cuts: np.ndarray) -> np.ndarray:
        """(S, K) strip boundaries -> (lines, K)."""
        cuts = np.atleast_2d(cuts)
        if cuts.shape[0] == 1:
            return np.repeat(cuts, self.n_lines, axis=0)
        return cuts[self.i0] * (1 - self.w[:, None]) + cuts[self.i1] * self.w[:, None]

    def rate(self, cuts: np.ndarray) -> float:
        """Share of (line, inner cell) pairs that are broken. Cells cut by the image's ends
        are not tested (they may hold padding)."""
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

        def at(idx: np.ndarray) -> np.ndarray:
            return np.take_along_axis(self.prefix, idx[..., None], axis=1)

        sa, sm, sb = at(ia), at(im), at(ib)
        left = (sm - sa) / (im - ia)[..., None]
        right = (sb - sm) / (ib - im)[..., None]
        tol = SPLIT_SIGMAS * self.sigma * np.sqrt(1.0 / (im - ia) + 1.0 / (ib - im))[..., None]
        broken = np.any(np.abs(left - right) > np.maximum(tol, SPLIT_MIN_DIFF), axis=-1)
        return float(broken[ok].mean())


# ----------------------------------------------------------------------------------------
# period hypotheses
# ----------------------------------------------------------------------------------------
KAPPA = 0.1  # cost of one boundary, in strong-boundary units (an empty tooth must not pay)
MIN_PERIOD = 3.0
MIN_CELLS = 2.5
BORDER = 0.3  # evidence this close to the image's ends (in cells) is padding or crop
SELECT_TOP = 8
RATE_MARGIN = 0.01
DEMOTE_MARGIN = 0.05
DEMOTE_COVER_SHARE = 0.5
MIN_COVER_SHARE = 0.5
MULTIPLE_TOL = 0.06
EDGE_HALF = 3.0  # half-width of a boundary's evidence bump, px (2 px difference, AA band, blur)
CLASS_TOL = 0.12  # periods closer than this (log ratio) are one hypothesis class


@dataclass
class Hypothesis:
    """One period's lattice along an axis: tracked boundaries (per strip) and their score."""

    c: float
    o: float
    cuts: np.ndarray  # (S, K) boundaries covering the image and a margin, per strip
    gain: float
    cover: float = 0.0  # share of the evidence mass within EDGE_HALF of a boundary
    rate: float = float("nan")  # split-test broken rate (filled in lazily)

    @property
    def mean_cuts(self) -> np.ndarray:
        return self.cuts.mean(0)


def evidence_span(e: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the positions that carry evidence."""
    idx = np.nonzero(e > 0.05)[0]
    if idx.size == 0:
        return 0, len(e)
    return int(idx[0]), int(idx[-1]) + 1


def phase_of(e: np.ndarray, c: float) -> float:
    """Phase o of a comb o + k c that fits evidence e best (angle of the DFT at 1 / c)."""
    x = np.arange(len(e))
    f = np.sum(e * np.exp(-2j * np.pi * x / c))
    return float((-np.angle(f) * c / (2 * np.pi)) % c)


def _no_border(e: np.ndarray, c: float) -> np.ndarray:
    """Evidence without the image's ends: padding and crops put steps there that are not
    lattice lines (within BORDER cells, plus the width of an edge's evidence bump)."""
    b = int(np.ceil(BORDER * c + EDGE_HALF))
    out = e.copy()
    out[..., :b] = 0.0
    out[..., max(0, out.shape[-1] - b):] = 0.0
    return out


def hypothesis(e: np.ndarray, es: np.ndarray, c: float, lo: int, hi: int) -> Hypothesis:
    """Track the lattice of period ~c on the summed evidence; refit period and phase once
    on the boundaries that sit on evidence and track again; then bend it strip by strip."""
    n = len(e) - 1
    eb = _no_border(e, c)
    o = phase_of(eb, c)
    cuts = track(eb, c, o)
    inside = (cuts > lo) & (cuts < hi)
    k = np.nonzero(inside)[0]
    if k.size >= 3:
        w = np.interp(cuts[k], np.arange(n + 1), eb) + 1e-3
        A = np.stack([np.ones(k.size), k.astype(float)], 1) * w[:, None]
        sol = np.linalg.lstsq(A, cuts[k] * w, rcond=None)[0]
        if 0.9 * c < sol[1] < 1.1 * c:
            c = float(sol[1])
            o = float(sol[0]) % c
            cuts = track(eb, c, o)
    esb = _no_border(es, c)
    bent = bend(esb, cuts, c)
    inside = (bent >= lo) & (bent <= hi)
    x = np.arange(n + 1)
    vals = np.stack([np.interp(bent[s], x, esb[s]) for s in range(len(esb))])
    n_in = inside.mean(0).sum()
    return Hypothesis(c, o, bent, float(np.sum(vals * inside) - KAPPA * n_in), coverage(esb, bent, c))


def coverage(es: np.ndarray, cuts: np.ndarray, c: float) -> float:
    """Share of the evidence mass that lies within r = min(EDGE_HALF, c / 4) of a boundary
    (each strip against its own boundaries). The windows cover at most half of the axis,
    so a lattice finer than the art (c/2, c/3) explains no more of the mass than the art's
    own lattice, while a coarser one (2c) leaves boundaries unexplained."""
    r = min(EDGE_HALF, c / 4.0)
    cs = np.concatenate([np.zeros((es.shape[0], 1)), np.cumsum(es, axis=1)], axis=1)
    x = np.arange(cs.shape[1], dtype=np.float64)
    total = float(cs[:, -1].sum())
    if total <= 0:
        return 0.0
    mass = 0.0
    for s in range(es.shape[0]):
        a = np.interp(cuts[s] - r, x, cs[s])
        b = np.interp(cuts[s] + r + 1.0, x, cs[s])
        mass += float(np.sum(b - a))
    f = min(0.99, (2 * r + 1.0) / c)  # the share random windows would cover
    return (mass / total - f) / (1 - f)


def candidate_periods(e: np.ndarray, lo: int, hi: int, cmin: float, cmax: float,
                      prior: float | None) -> list[float]:
    from .grid import _spectrum_candidates

    cands = _spectrum_candidates(e, lo, hi, cmin, cmax)
    if prior is not None:
        cands.append(prior)
    extra: list[float] = []
    for c in cands[:6]:
        for f in (2.0, 0.5, 3.0, 1.0 / 3.0):
            if cmin <= c * f <= cmax and all(abs(c * f / x - 1) > 0.01 for x in cands + extra):
                extra.append(c * f)
    return cands + extra


def select(hyps: list[Hypothesis], tester: SplitTester | None, prior: float | None) -> Hypothesis:
    """The lattice that explains most of the evidence (`coverage`); a finer one instead
    when it breaks clearly fewer cells (it was too coarse); then the coarsest integer
    multiple of it that breaks no more cells (the extra boundaries sat on JPEG blocks,
    texture, dither or specks, not on cell borders)."""
    reps: list[Hypothesis] = []  # one per period class: the best covering of close periods
    for h in sorted(hyps, key=lambda h: -h.cover):
        if all(abs(np.log(h.c / r.c)) > CLASS_TOL for r in reps):
            reps.append(h)
    best = reps[0]
    if prior is not None:
        near = [h for h in reps if abs(h.c / prior - 1) < 0.05 and h.cover >= MIN_COVER_SHARE * best.cover]
        if near:
            return near[0]
    if tester is None:
        return best

    def rate(h: Hypothesis) -> float:
        if h.rate != h.rate:
            h.rate = tester.rate(h.cuts)
        return h.rate

    base, top = rate(best), best.cover
    if base > DEMOTE_MARGIN:  # too coarse: a finer lattice that breaks clearly fewer cells
        finer = [h for h in reps[1:SELECT_TOP] if h.c < 0.8 * best.c and h.cover >= DEMOTE_COVER_SHARE * top
                 and rate(h) < base - DEMOTE_MARGIN]
        if finer:
            low = min(rate(h) for h in finer)
            best = max((h for h in finer if rate(h) <= low + RATE_MARGIN), key=lambda h: h.c)
            base = rate(best)
    if base >= 1.0:  # untestable (cells too small or too few): a multiple must be near-perfect
        base = 0.0
    for h in sorted(reps, key=lambda h: -h.c):
        k = h.c / best.c
        if k < 1.5 or abs(k - round(k)) > MULTIPLE_TOL * k or h.cover < MIN_COVER_SHARE * top:
            continue
        if rate(h) <= base + RATE_MARGIN:
            return h
    return best


def solve_axis(p: np.ndarray, size: int, tester: SplitTester | None = None, target: int | None = None,
               min_period: float = MIN_PERIOD) -> Hypothesis | None:
    e, es = normalise(p)
    lo, hi = evidence_span(e)
    if float(e.max()) <= 0:
        return None
    prior = size / target if target else None
    cmin = min(min_period, 0.8 * prior) if prior else min_period
    cmax = max(cmin * 1.01, max(hi - lo, size * 0.5) / MIN_CELLS)
    cands = candidate_periods(e, lo, hi, cmin, cmax, prior)
    if not cands:
        return None
    hyps = [hypothesis(e, es, c, lo, hi) for c in cands]
    if prior is not None:
        for h in hyps:
            h.gain *= 1.0 + 0.5 * np.exp(-0.5 * (np.log(h.c / prior) / 0.03) ** 2)
    return select(hyps, tester, prior)


def detect(rgba: np.ndarray, size: tuple[int, int] | None = None):
    from .evidence import edge_evidence
    from .grid import AxisGrid, Grid, features

    h, w = rgba.shape[:2]
    ev = edge_evidence(rgba)
    feat = features(rgba)
    ry = np.arange(0, h, max(1, h // TEST_LINES))
    cx = np.arange(0, w, max(1, w // TEST_LINES))
    rows = feat[ry]
    cols = feat[:, cx].transpose(1, 0, 2)
    tw, th = size if size is not None else (None, None)
    out = []
    for p, n, lines, at, bounds, t in ((ev.px, w, rows, ry, ev.rows_x, tw), (ev.py, h, cols, cx, ev.cols_y, th)):
        centres = 0.5 * (bounds[:-1] + bounds[1:])
        hyp = solve_axis(p, n, SplitTester(lines, at + 0.5, centres), t)
        if hyp is None:
            c = n / t if t else float(n)
            out.append(AxisGrid(np.linspace(0.0, float(n), (t or 1) + 1), c, 0.0))
            continue
        cuts = count_cells(hyp.mean_cuts, n)
        out.append(AxisGrid(cuts, hyp.c, hyp.o))
    return Grid(out[0], out[1])
