"""Grid recovery: find the art-pixel lattice hidden in an upscaled, degraded render.

Why this design:
- A pixel-art cell boundary is a place where colour (or alpha) changes along many rows at
  the same x. Summing |d/dx| of every channel over all rows gives an *edge profile* whose
  peaks sit on the cell boundaries; the same with columns gives the y profile. Each axis is
  solved on its own, so cells need not be square and the size need not be an integer.
- The profile of a lattice is a comb. Its period is found from the spectrum (a harmonic
  sum, so the fundamental beats its harmonics), then period and phase are refined together
  by fitting a comb to the profile (sub-pixel, needed because a 0.1 % period error drifts a
  whole cell over 1000 px).
- Harmonics are the classic failure: a comb at c/2 or 2c also fits. The winner is picked by
  a penalised fit (every tooth must pay for itself with edge mass; see `_comb_gain`), which
  prefers the coarsest lattice that still explains the edges. A mild prior keeps the
  period in the plausible range of pixel-art renders.
- Real renders drift (cells of varying width). After the uniform fit, every boundary is
  moved to the nearest strong edge by dynamic programming that also penalises uneven
  neighbouring cells (`refine_cuts`).
- A cell is kept when at least `MIN_VISIBLE` of it lies inside the image; padding or a
  cropped first cell of less than that is not art.
- A known target size can be used as a hint (a prior on the period) or as an exact
  constraint (the count is forced and only period/phase are fitted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MIN_PERIOD = 3.0  # auto search floor (input px per art pixel); lower only with a size hint
MIN_CELLS = 2.5  # the largest period searched is (art extent) / MIN_CELLS
MIN_VISIBLE = 0.4
SELECT_TOP = 6  # comb candidates examined by the split test
RATE_MARGIN = 0.01  # share of broken cells tolerated above the comb's choice
SPLIT_SIGMAS = 4.0  # half-cell mean difference (in noise std) that counts as an edge ...
SPLIT_MIN_DIFF = 12.0  # ... and at least this much in one channel (0..255)
TEST_LINES = 160
SQUARE_TOL = 0.04  # |log(cx / cy)| above which the axes "disagree"
SQUARE_PAIR_TOL = 0.06  # ... and below which a candidate pair counts as square
SQUARE_GAIN_SHARE = 0.7  # a square candidate needs this share of its axis' best gain ...
SQUARE_LOSS = 0.2  # ... and the pair may lose at most this much relative gain in total
DETECT_MAX_SIDE = 2048  # larger inputs are box-reduced for detection (speed, memory)
MIN_TESTED = 4  # a lattice needs this many inner cells for the split test to vouch for it
DEMOTE_MARGIN = 0.05  # a finer lattice must break this share fewer cells to replace the comb's
DEMOTE_GAIN_SHARE = 0.5  # ... and keep this share of its gain
MIN_GAIN_SHARE = 0.35  # ... and this share of the best comb gain  # lines sampled per axis for the split test
OUTER_SKIP = 12  # px at each end of the art span searched for its outer edge (see _clean_profile)
PEAK_CAP = 3.0  # profile peaks are capped at this multiple of the median peak
KAPPA_NOISE = 2.0  # cost of one comb tooth: this many noise std of its window sum ...
KAPPA_FLOOR = 0.03  # ... plus this fraction of the best comb's mean tooth mass  # fraction of a cell that must lie inside the image to be counted


@dataclass(frozen=True)
class AxisGrid:
    """Boundaries of the cells along one axis, in input pixels (n + 1 ascending floats)."""

    cuts: np.ndarray
    period: float
    phase: float

    @property
    def n(self) -> int:
        return len(self.cuts) - 1


@dataclass(frozen=True)
class Grid:
    """The recovered lattice: one AxisGrid per axis."""

    x: AxisGrid
    y: AxisGrid

    @property
    def cell(self) -> tuple[float, float]:
        return (self.x.period, self.y.period)

    @property
    def size(self) -> tuple[int, int]:
        return (self.x.n, self.y.n)


# ----------------------------------------------------------------------------------------
# features and profiles
# ----------------------------------------------------------------------------------------
def features(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied RGB + alpha as float32: transparent pixels all look alike, whatever
    RGB garbage they carry, and a colour edge and an alpha edge both count."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.concatenate([rgba[..., :3].astype(np.float32) * a, rgba[..., 3:4].astype(np.float32)], axis=-1)


def _span(p: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the positions whose (baseline-free, smoothed) edge mass is noticeable."""
    pos = np.clip(p - np.median(p), 0.0, None)
    if pos.size == 0 or pos.max() <= 0:
        return 0, len(p)
    sm = ndimage.uniform_filter1d(pos, 3)
    idx = np.nonzero(sm > 0.04 * sm.max())[0]
    return int(idx[0]), int(idx[-1]) + 1


def _pixel_noise(d: np.ndarray) -> float:
    """Robust spread of per-pixel edge strength (most pixels lie inside flat cells, so this
    measures noise and JPEG texture, not boundaries). Subsampled for speed."""
    sub = d[::3, ::3] if d.size > 200_000 else d
    med = float(np.median(sub))
    return 1.4826 * float(np.median(np.abs(sub - med))) + 0.25 * med


@dataclass(frozen=True)
class Profiles:
    """Edge profiles of both axes, their noise level and the art's span on each axis."""

    x: np.ndarray
    y: np.ndarray
    noise_x: float
    noise_y: float
    span_x: tuple[int, int]
    span_y: tuple[int, int]


def edge_profiles(feat: np.ndarray) -> Profiles:
    """Edge profile per axis. Index i is the boundary between pixel i and i+1 (position i+1).

    Per-pixel differences are capped so one high-contrast silhouette does not drown the
    inner cell boundaries. Each profile sums only the rows (columns) where the art is: the
    empty background around a sprite adds noise to the sum but no boundaries.

    Also returns the noise std of each profile entry (pixel noise x sqrt(summed lines)).
    """
    dx = np.abs(np.diff(feat, axis=1)).sum(-1)
    dy = np.abs(np.diff(feat, axis=0)).sum(-1)
    cap = 160.0
    np.minimum(dx, cap, out=dx)
    np.minimum(dy, cap, out=dy)
    xlo, xhi = _span(dx.sum(0).astype(np.float64))
    ylo, yhi = _span(dy.sum(1).astype(np.float64))
    rows = dx[max(0, ylo - 1) : yhi + 1]
    cols = dy[:, max(0, xlo - 1) : xhi + 1]
    px = rows.sum(0).astype(np.float64)
    py = cols.sum(1).astype(np.float64)
    nx = _pixel_noise(rows) * np.sqrt(rows.shape[0]) if rows.size else 0.0
    ny = _pixel_noise(cols) * np.sqrt(cols.shape[1]) if cols.size else 0.0
    return Profiles(px, py, nx, ny, (xlo, xhi + 1), (ylo, yhi + 1))


def deblock(p: np.ndarray, block: int = 8) -> np.ndarray:
    """Remove the JPEG block-grid signature from an edge profile.

    JPEG codes 8x8 blocks independently, so every block border (pixel 8k-1 | 8k) and its
    two neighbours carry a small step in *every* row; summed over a column that is a
    strong period-8 comb that looks exactly like a lattice of 8 px cells. The signature is
    the per-phase median of the profile (phase = position mod 8): real cell boundaries are
    too sparse to move a median. When the block-border phase is the strongest (the image
    was JPEG-compressed), that median pattern is subtracted, capped at the profile's
    baseline level so that real edges, which stand far above it, survive.
    """
    n = len(p)
    if n < 6 * block:
        return p
    m = n - n % block
    per_phase = np.median(p[:m].reshape(-1, block), axis=0)
    base = float(np.median(p))
    pattern = per_phase - float(np.min(per_phase))
    if int(np.argmax(pattern)) != block - 1 or pattern[block - 1] < 0.1 * base:
        return p
    pattern = np.minimum(pattern, base)
    return p - np.tile(pattern, n // block + 1)[:n]


def _clean_profile(p: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Baseline-free profile and the span [lo, hi) that holds the art's edges.

    The median is subtracted but the result is not clipped, so a stretch of pure noise
    sums to about zero and cannot make an empty comb tooth look useful.
    """
    if p.size == 0:
        return p, 0, 0
    p = deblock(p)
    q = p - np.median(p)
    pos = np.clip(q, 0.0, None)
    if pos.max() <= 0:
        return q, 0, len(p)
    sm = ndimage.uniform_filter1d(pos, 3)
    idx = np.nonzero(sm > 0.04 * sm.max())[0]
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    q = p - np.median(p[lo:hi])
    # Cap the peaks: a lattice is confirmed by many boundaries, not by one huge one. The
    # outer silhouette of an opaque tile (or a cropped first cell) spans every row and
    # would otherwise decide the fit alone, though it need not lie on a lattice line.
    seg = q[lo:hi]
    noise = 1.4826 * float(np.median(np.abs(seg - np.median(seg))))
    peaks = seg[1:-1][(seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:]) & (seg[1:-1] > 3 * noise)]
    if peaks.size >= 4:
        q = np.minimum(q, PEAK_CAP * float(np.median(peaks)))
    # The outermost edges of the art are where it meets the padding or the image border.
    # After a crop that is the middle of a cell, not a lattice line, so those two edges
    # are no evidence: only the inner boundaries vote.
    q = q.copy()
    a = lo + int(np.argmax(q[lo : lo + OUTER_SKIP]))  # the outermost edge itself ...
    b = hi - OUTER_SKIP + int(np.argmax(q[max(lo, hi - OUTER_SKIP) : hi]))
    q[max(0, lo - 2) : a + 5] = np.minimum(q[max(0, lo - 2) : a + 5], 0.0)  # ... and its blur
    q[max(0, b - 4) : hi + 2] = np.minimum(q[max(0, b - 4) : hi + 2], 0.0)
    return q, lo, hi


def _interp(p: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Profile value at fractional boundary positions (position b <-> index b-1)."""
    return np.interp(pos - 1.0, np.arange(len(p)), p, left=0.0, right=0.0)


# ----------------------------------------------------------------------------------------
# period candidates (spectrum) and comb fitting
# ----------------------------------------------------------------------------------------
def _spectrum_candidates(q: np.ndarray, lo: int, hi: int, cmin: float, cmax: float, k: int = 6) -> list[float]:
    """Candidate periods: local maxima of the spectrum's harmonic sum, then of the plain
    spectrum (k of each, best first, near-duplicates dropped)."""
    seg = q[lo:hi] - q[lo:hi].mean()
    n = len(seg)
    if n < 4 or cmax <= cmin:
        return []
    nfft = 1 << int(np.ceil(np.log2(16 * n)))
    mag = np.abs(np.fft.rfft(seg * np.hanning(n), nfft))
    # period grid: step ~ c^2 / (4 n), i.e. a quarter of the spectral resolution
    periods = [cmin]
    while periods[-1] < cmax:
        c = periods[-1]
        periods.append(c + max(c * c / (4.0 * n), 0.002 * c))
    per = np.array(periods)

    def at(m: int) -> np.ndarray:
        f = m / per
        return np.where(f < 0.5, mag[np.clip(np.round(f * nfft).astype(int), 0, len(mag) - 1)], 0.0)

    plain = at(1)
    harmonic = plain + 0.6 * at(2) + 0.4 * at(3) + 0.3 * at(4)
    out: list[float] = []
    for score in (harmonic, plain):  # the fundamental, and whatever is strongest alone
        peaks = np.nonzero((score[1:-1] >= score[:-2]) & (score[1:-1] >= score[2:]))[0] + 1
        for i in peaks[np.argsort(-score[peaks])][:k]:
            if all(abs(per[i] / c - 1) > 0.01 for c in out):
                out.append(float(per[i]))
    return out


def _tooth_mass(q: np.ndarray, lo: int, hi: int, c: float, o: float) -> np.ndarray:
    """Edge mass within +/- 0.15 c (1 to 5 px) of every tooth o + k c in the art span."""
    first = np.ceil((lo - 0.5 * c - o) / c)
    last = np.floor((hi + 0.5 * c - o) / c)
    if last < first:
        return np.zeros(0)
    teeth = o + c * np.arange(first, last + 1)
    r = float(np.clip(0.15 * c, 1.0, 5.0))  # edge spread does not grow with the cell
    cs = np.concatenate([[0.0], np.cumsum(q)])
    a = np.clip(teeth - 1 - r, 0, len(q))
    b = np.clip(teeth - 1 + r + 1, 0, len(q))
    return np.interp(b, np.arange(len(cs)), cs) - np.interp(a, np.arange(len(cs)), cs)


def _comb_gain(q: np.ndarray, lo: int, hi: int, c: float, o: float, noise: float, floor: float) -> float:
    """Penalised comb fit: sum over teeth of (edge mass near the tooth - cost of a tooth).

    A tooth costs what pure noise could put in its window (KAPPA_NOISE standard
    deviations of the window sum) plus a small floor, so a comb at c/2 (which contains
    the comb at c) pays for its empty mid-cell teeth, and a comb at 2c loses the mass of
    the boundaries it skips: the lattice that explains every real edge with the fewest
    teeth wins over its harmonics.
    """
    r = float(np.clip(0.15 * c, 1.0, 5.0))
    kappa = KAPPA_NOISE * noise * np.sqrt(2 * r + 1) + floor
    return float(np.sum(_tooth_mass(q, lo, hi, c, o) - kappa))


def fit_comb(q: np.ndarray, lo: int, hi: int, c0: float, rel: float = 0.03) -> tuple[float, float, float]:
    """Refine (period, phase) near c0 by maximising the smoothed profile summed on the teeth
    that fall in the art span (a sum, not a mean: a mean rewards a comb that slides its
    last tooth out of the span).

    Returns (period, phase, score). Vectorised over a (period x phase) grid, then once more
    on a 10x finer period grid.
    """
    sig = max(0.7, 0.05 * c0)
    qs = ndimage.gaussian_filter1d(q, sig)
    c, o = c0, 0.0
    best = -np.inf
    for step_rel, n_c in ((rel, 41), (rel / 10.0, 21)):
        cs = c * (1.0 + np.linspace(-step_rel, step_rel, n_c))
        n_o = int(np.clip(np.ceil(c / 0.5), 8, 96))
        os_ = np.linspace(0.0, 1.0, n_o, endpoint=False)[None, :] * cs[:, None]  # (nc, no)
        kmax = int(np.ceil((hi + c) / cs.min())) + 2
        ks = np.arange(-1, kmax)
        pos = os_[:, :, None] + cs[:, None, None] * ks[None, None, :]
        inside = (pos >= lo - 0.5 * cs[:, None, None]) & (pos <= hi + 0.5 * cs[:, None, None])
        vals = np.where(inside, _interp(qs, pos), 0.0)
        mean = vals.sum(-1)
        i, j = np.unravel_index(np.argmax(mean), mean.shape)
        if mean[i, j] > best or step_rel != rel:
            best = float(mean[i, j])
            c, o = float(cs[i]), float(os_[i, j])
    return c, o % c, best


# ----------------------------------------------------------------------------------------
# counting cells and drift refinement
# ----------------------------------------------------------------------------------------
def uniform_cuts(size: int, c: float, o: float, min_visible: float = MIN_VISIBLE) -> np.ndarray:
    """Boundaries o + k c of every cell with at least `min_visible` of it inside [0, size)."""
    k0 = int(np.floor(-o / c)) - 1
    k1 = int(np.ceil((size - o) / c)) + 1
    ks = np.arange(k0, k1 + 1)
    starts = o + ks * c
    vis = np.clip(np.minimum(starts + c, size) - np.maximum(starts, 0), 0, None) / c
    keep = ks[vis >= min_visible]
    if keep.size == 0:
        return np.array([0.0, float(size)])
    return o + c * np.arange(keep[0], keep[-1] + 2)


def refine_cuts(q: np.ndarray, cuts: np.ndarray, c: float, size: int, smooth: float = 0.02) -> np.ndarray:
    """Move each boundary to the strongest nearby edge, allowing drift (Viterbi).

    States: integer offsets d in [-r, r] from the uniform position. Score: smoothed edge
    mass at the moved boundary minus `smooth * mean_mass * (d_k - d_{k-1})^2`, so a
    boundary without an edge follows its neighbours and the lattice stays regular where the
    image has no evidence. Boundaries outside the image are not moved.
    """
    r = int(np.floor(0.18 * c))
    n = len(cuts)
    if r < 1 or n < 3:
        return cuts
    qs = ndimage.gaussian_filter1d(q, max(0.7, 0.04 * c))
    d = np.arange(-r, r + 1, dtype=np.float64)
    pos = cuts[:, None] + d[None, :]
    val = _interp(qs, pos)
    inside = (cuts > 1) & (cuts < size - 1)
    val[~inside] = np.where(d == 0, 0.0, -1e18)[None, :].repeat((~inside).sum(), 0)
    scale = max(float(qs.max()), 1e-9)
    val = val / scale
    trans = smooth * (d[:, None] - d[None, :]) ** 2 * (10.0 / max(c, 1.0))
    score = val[0].copy()
    back = np.zeros((n, len(d)), dtype=np.int64)
    for k in range(1, n):
        tot = score[:, None] - trans  # (prev, cur)
        back[k] = np.argmax(tot, axis=0)
        score = tot[back[k], np.arange(len(d))] + val[k]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for k in range(n - 1, 0, -1):
        path[k - 1] = back[k, path[k]]
    out = cuts + d[path]
    if np.any(np.diff(out) < 0.5 * c):  # never let two boundaries collapse
        return cuts
    return out


# ----------------------------------------------------------------------------------------
# per-axis solve
# ----------------------------------------------------------------------------------------
def _choose_period(q: np.ndarray, lo: int, hi: int, cmin: float, cmax: float,
                   prior: float | None, noise: float | None = None) -> list[tuple[float, float, float]]:
    """(period, phase, gain) of the spectral candidates and their harmonics, best first."""
    cands = _spectrum_candidates(q, lo, hi, cmin, cmax)
    if prior is not None:
        cands.append(prior)
    extra = []
    for c in cands[:6]:
        for f in (2.0, 0.5, 3.0, 1.0 / 3.0, 4.0, 0.25, 1.5, 2.0 / 3.0):
            if cmin <= c * f <= cmax and all(abs(c * f / e - 1) > 0.01 for e in cands + extra):
                extra.append(c * f)
    cands = cands + extra
    if not cands:
        return [(float(max(hi - lo, 1)), float(lo), 0.0)]
    fits = [fit_comb(q, lo, hi, c) for c in cands]
    # a tooth must carry more edge mass than noise could
    if noise is None:  # no image-based estimate: robust spread of the profile itself
        seg = q[lo:hi]
        noise = 1.4826 * float(np.median(np.abs(seg - np.median(seg)))) if seg.size else 0.0
    means = [float(np.mean(m)) if (m := _tooth_mass(q, lo, hi, c, o)).size else 0.0 for c, o, _ in fits]
    floor = KAPPA_FLOOR * max(means)
    ranked = []
    for (c, o, _h) in fits:
        gain = _comb_gain(q, lo, hi, c, o, noise, floor)
        if prior is not None:
            gain *= 1.0 + 0.5 * np.exp(-0.5 * (np.log(c / prior) / 0.03) ** 2)
        ranked.append((c, o, gain))
    ranked.sort(key=lambda t: -t[2])
    return ranked


class SplitTester:
    """Image-space check of a lattice along one axis: do its cells hide an edge?

    For every line (row for the x axis) and every cell, the inner part of the cell (20 %
    trimmed at both ends, where blur lives) is split in two halves; the cell is *broken*
    on that line when the halves' mean colours differ by more than noise allows. A
    lattice that is too coarse (2c, 3c) or simply wrong breaks many cells; the true one
    and its refinements (c/2, c/3, the JPEG 8 px grid...) break almost none. So among the
    candidates whose broken rate is near the lowest, the coarsest is the lattice.
    """

    def __init__(self, lines: np.ndarray):
        r, n, ch = lines.shape
        self.n_lines, self.length = r, n
        self.prefix = np.zeros((r, n + 1, ch))
        np.cumsum(lines, axis=1, dtype=np.float64, out=self.prefix[:, 1:])
        d = np.abs(np.diff(lines, axis=1)).reshape(-1, ch) if n > 1 else np.zeros((1, ch))
        self.sigma = np.maximum(1.4826 * np.median(d, axis=0) / np.sqrt(2.0), 1.0)

    def rate(self, cuts: np.ndarray) -> float:
        """Share of (line, cell) pairs that are broken. The first and last cells are not
        tested: they may be cut by the image border, with padding inside."""
        a, b = cuts[1:-2], cuts[2:-1]
        m = np.maximum(1.0, 0.2 * (b - a))
        ia = np.clip(np.ceil(a + m - 1e-6), 0, self.length).astype(np.intp)
        ib = np.clip(np.floor(b - m + 1e-6), 0, self.length).astype(np.intp)
        ok = (ib - ia) >= 2
        if ok.sum() < MIN_TESTED or self.n_lines == 0:
            return 1.0  # too few cells to vouch for this lattice
        ia, ib = ia[ok], ib[ok]
        im = ia + (ib - ia) // 2
        s = self.prefix
        left = (s[:, im] - s[:, ia]) / (im - ia)[None, :, None]
        right = (s[:, ib] - s[:, im]) / (ib - im)[None, :, None]
        tol = SPLIT_SIGMAS * self.sigma[None, None, :] * np.sqrt(1.0 / (im - ia) + 1.0 / (ib - im))[None, :, None]
        broken = np.any(np.abs(left - right) > np.maximum(tol, SPLIT_MIN_DIFF), axis=-1)
        return float(broken.mean())


def _select(ranked: list[tuple[float, float, float]], size: int, tester: SplitTester | None,
            prior: float | None) -> tuple[float, float]:
    """Final choice: the best comb, or a coarser lattice that is an integer multiple of it
    (k c) when the split test shows that k c explains the image as well (so the comb's
    extra teeth sat on JPEG blocks, dither or repeated texture, not on cell borders)."""
    c1, o1, g1 = ranked[0]
    if prior is not None:
        near = [t for t in ranked if abs(t[0] / prior - 1) < 0.05 and t[2] >= MIN_GAIN_SHARE * g1]
        if near:
            c1, o1, g1 = near[0]
    if tester is None:
        return c1, o1
    base = tester.rate(uniform_cuts(size, c1, o1))
    best = (c1, o1)
    if base > DEMOTE_MARGIN:  # too coarse? a finer candidate that breaks clearly fewer cells
        finer = [(c, o, g, tester.rate(uniform_cuts(size, c, o))) for c, o, g in ranked[1:SELECT_TOP + 4]
                 if c < 0.8 * c1 and g >= DEMOTE_GAIN_SHARE * g1]
        finer = [t for t in finer if t[3] < base - DEMOTE_MARGIN]
        if finer:
            low = min(t[3] for t in finer)
            c1, o1, g1, base = max((t for t in finer if t[3] <= low + RATE_MARGIN), key=lambda t: t[0])
            best = (c1, o1)
    if base >= 1.0:  # untestable (cells too small or too few): a multiple must be near-perfect
        base = 0.0
    for c, o, g in sorted(ranked[1:], key=lambda t: -t[0]):
        k = c / c1
        if k < 1.5 or abs(k - round(k)) > 0.02 * k or g < MIN_GAIN_SHARE * g1:
            continue
        if prior is not None and abs(c / prior - 1) > 0.05 and abs(c1 / prior - 1) < 0.05:
            continue
        if tester.rate(uniform_cuts(size, c, o)) <= base + RATE_MARGIN:
            best = (c, o)
            break
    return best


@dataclass
class _AxisState:
    """One axis between candidate ranking and the final lattice (for the joint step)."""

    q: np.ndarray
    lo: int
    hi: int
    size: int
    ranked: list[tuple[float, float, float]]
    choice: tuple[float, float]
    tester: SplitTester | None


def _axis_state(profile: np.ndarray, size: int, target: int | None, noise: float | None,
                tester: SplitTester | None, min_period: float = MIN_PERIOD) -> _AxisState:
    q, lo, hi = _clean_profile(profile)
    edge_floor = 6.0 * (noise or 0.0) + 1e-6
    if q.size == 0 or float(np.max(q)) <= edge_floor:
        # no edge stands out of the noise: nothing to measure. One cell per axis, or the
        # target count if one was given.
        c = size / target if target else float(size)
        return _AxisState(q, lo, hi, size, [(c, 0.0, 0.0)], (c, 0.0), None)
    span = max(hi - lo, 1)
    prior = None
    cmin = min_period
    if target:
        prior = size / target
        cmin = min(cmin, 0.8 * prior)
    cmax = max(cmin * 1.01, max(span, size * 0.5) / MIN_CELLS)
    ranked = _choose_period(q, lo, hi, cmin, cmax, prior, noise)
    return _AxisState(q, lo, hi, size, ranked, _select(ranked, size, tester, prior), tester)


def _axis_grid(st: _AxisState, drift: bool) -> AxisGrid:
    c, o = st.choice
    cuts = uniform_cuts(st.size, c, o)
    if drift:
        cuts = refine_cuts(st.q, cuts, c, st.size)
    return AxisGrid(cuts=cuts, period=float(c), phase=float(o))


def solve_axis(profile: np.ndarray, size: int, target: int | None = None, exact: bool = False,
               drift: bool = True, min_period: float = MIN_PERIOD, noise: float | None = None,
               tester: SplitTester | None = None) -> AxisGrid:
    """Recover the cell boundaries along one axis of length `size` from its edge profile
    (noise: std of one profile entry, if known; tester: image-space check of candidates)."""
    if exact and target:
        q, lo, hi = _clean_profile(profile)
        return _solve_exact(q, lo, hi, size, target)
    return _axis_grid(_axis_state(profile, size, target, noise, tester, min_period), drift)


def _square_pair(sx: _AxisState, sy: _AxisState) -> None:
    """Tie-break toward square cells when the axes disagree.

    Renders almost always have square art pixels. When the two axes chose clearly
    different periods, a pair of candidates with (nearly) the same period is taken
    instead if each is nearly as good on its own axis (comb gain) and not worse by the
    split test. Truly non-square cells survive: a wrong period breaks cells and loses gain.
    """
    (cx, _), (cy, _) = sx.choice, sy.choice
    if abs(np.log(cx / cy)) <= SQUARE_TOL:
        return

    if max(g for _, _, g in sx.ranked) <= 0 or max(g for _, _, g in sy.ranked) <= 0:
        return

    def choice_gain(st: _AxisState) -> float:
        c0 = st.choice[0]
        return max((g for c, _, g in st.ranked if abs(c / c0 - 1) < 0.01), default=0.0)

    def options(st: _AxisState) -> list[tuple[float, float, float]]:
        g_max = max(choice_gain(st), 1e-9)  # gains relative to the validated choice
        base = st.tester.rate(uniform_cuts(st.size, *st.choice)) if st.tester else 0.0
        out = []
        for c, o, g in st.ranked[:SELECT_TOP + 4]:
            if g < SQUARE_GAIN_SHARE * g_max:
                continue
            r = st.tester.rate(uniform_cuts(st.size, c, o)) if st.tester else 0.0
            if r < 1.0 and r <= base + RATE_MARGIN:
                out.append((c, o, min(1.0, g / g_max)))
        return out

    ox, oy = options(sx), options(sy)
    best, best_score = None, -np.inf
    for c1, o1, g1 in ox:
        for c2, o2, g2 in oy:
            if abs(np.log(c1 / c2)) < SQUARE_PAIR_TOL and g1 + g2 > best_score:
                best, best_score = ((c1, o1), (c2, o2)), g1 + g2
    if best is None or best_score < 2.0 - SQUARE_LOSS:
        return
    common = float(np.sqrt(best[0][0] * best[1][0]))
    for st, (c, o) in zip((sx, sy), best, strict=True):
        c2, o2, _ = fit_comb(st.q, st.lo, st.hi, common, rel=0.03)
        st.choice = (c2, o2) if abs(np.log(c2 / common)) < SQUARE_PAIR_TOL else (c, o)


def _solve_exact(q: np.ndarray, lo: int, hi: int, size: int, target: int) -> AxisGrid:
    """Exactly `target` cells: fit period/phase near size/target among fits with that count."""
    c0 = size / target
    best = None
    for rel in (0.0, 0.02, -0.02, 0.04, -0.04):
        c, o, h = fit_comb(q, lo, hi, c0 * (1 + rel), rel=0.02)
        cuts = uniform_cuts(size, c, o)
        if len(cuts) - 1 == target and (best is None or h > best[2]):
            best = (c, o, h, cuts)
    if best is None:
        cuts = np.linspace(0.0, float(size), target + 1)
        return AxisGrid(cuts=cuts, period=c0, phase=0.0)
    return AxisGrid(cuts=best[3], period=best[0], phase=best[1])


# ----------------------------------------------------------------------------------------
# native (already clean) art
# ----------------------------------------------------------------------------------------
def is_native(rgba: np.ndarray) -> bool:
    """True when the image already is clean pixel art at its native size.

    Clean: <= 256 exact colours and alpha only 0/255. Native: single-pixel details are
    common along both axes, and they are real details, not the in-between colours that a
    smooth upscale leaves on every cell border (a pixel whose value lies between its two
    neighbours' values in every channel is counted as such a transition).
    """
    a = rgba[..., 3]
    if min(a.shape) < 3 or not np.all((a == 0) | (a == 255)):
        return False
    px = rgba.copy()
    px[a == 0] = 0
    packed = px.reshape(-1, 4).view(np.uint32).ravel()
    if packed.size > 65536 and np.unique(packed[:: packed.size // 65536]).size > 256:
        return False  # a subsample already has too many colours
    if np.unique(packed).size > 256:
        return False
    v = px.astype(np.int16)

    def detail_share(k: np.ndarray) -> float:
        left, mid, right = k[:, :-2], k[:, 1:-1], k[:, 2:]
        d_l = np.any(mid != left, axis=-1)
        d_r = np.any(mid != right, axis=-1)
        between = np.all((mid >= np.minimum(left, right) - 2) & (mid <= np.maximum(left, right) + 2), axis=-1)
        detail = d_l & d_r & ~between
        changes = np.any(k[:, 1:] != k[:, :-1], axis=-1).sum()
        return float(detail.sum()) / max(float(changes), 1.0)

    return detail_share(v) >= 0.05 and detail_share(v.transpose(1, 0, 2)) >= 0.05


# ----------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------
def detect_grid(rgba: np.ndarray, size: tuple[int, int] | None = None, exact: bool = False,
                drift: bool = True) -> Grid:
    """Recover the lattice of an RGBA uint8 image.

    size: known native (w, h). With exact=False it is a hint (a prior on the period);
    with exact=True the output has exactly that many cells per axis.
    """
    h, w = rgba.shape[:2]
    if size is None and is_native(rgba):
        return Grid(AxisGrid(np.arange(w + 1, dtype=np.float64), 1.0, 0.0),
                    AxisGrid(np.arange(h + 1, dtype=np.float64), 1.0, 0.0))
    f = int(np.ceil(max(h, w) / DETECT_MAX_SIDE))
    if f > 1:  # a huge render: find the lattice on a box-reduced copy, then scale it back
        from PIL import Image

        small = np.asarray(Image.fromarray(rgba, "RGBA").reduce(f))
        g = detect_grid(small, size, exact, drift)
        sx, sy = w / small.shape[1], h / small.shape[0]

        def up(a: AxisGrid, k: float, limit: int) -> AxisGrid:
            return AxisGrid(np.clip(a.cuts * k, -k * a.period, limit + k * a.period), a.period * k, a.phase * k)

        return Grid(up(g.x, sx, w), up(g.y, sy, h))
    feat = features(rgba)
    pr = edge_profiles(feat)
    tw, th = size if size is not None else (None, None)
    (x0, x1), (y0, y1) = pr.span_x, pr.span_y
    rows = feat[y0:y1:max(1, (y1 - y0) // TEST_LINES)]
    cols = feat[:, x0:x1:max(1, (x1 - x0) // TEST_LINES)].transpose(1, 0, 2)
    if exact and size is not None:
        return Grid(solve_axis(pr.x, w, tw, True, drift), solve_axis(pr.y, h, th, True, drift))
    sx = _axis_state(pr.x, w, tw, pr.noise_x, SplitTester(rows))
    sy = _axis_state(pr.y, h, th, pr.noise_y, SplitTester(cols))
    if size is None:
        _square_pair(sx, sy)
    return Grid(_axis_grid(sx, drift), _axis_grid(sy, drift))


def sample_cells(rgba: np.ndarray, grid: Grid, max_samples: int = 8) -> np.ndarray:
    """Pixels from the central half of every cell: (ny, nx, s_y, s_x, 4) uint8.

    The centre avoids the blurred borders; a fixed sample count per cell keeps this one
    vectorised gather however the cells vary in width.
    """
    h, w = rgba.shape[:2]

    def coords(cuts: np.ndarray, limit: int) -> np.ndarray:
        a, b = cuts[:-1], cuts[1:]
        width = b - a
        s = int(np.clip(np.floor(0.5 * np.median(width)), 1, max_samples))
        t = (np.arange(s) + 0.5) / s  # positions inside the central half
        pos = (a + 0.25 * width)[:, None] + (0.5 * width)[:, None] * t[None, :]
        return np.clip(np.floor(pos), 0, limit - 1).astype(np.intp)

    ys = coords(grid.y.cuts, h)
    xs = coords(grid.x.cuts, w)
    return rgba[ys[:, None, :, None], xs[None, :, None, :]]
