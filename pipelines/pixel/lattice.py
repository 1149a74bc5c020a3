"""A lattice that bends: which period, which count, how sure; the entry point `fit_axes`.

Why this design:
- Real renders are not drawn on one uniform grid (cell widths drift, lines bend, a slight
  rotation), so per axis the boundaries are tracked as sequences (`track`: Viterbi over
  boundary displacements, bent strip by strip); the uniform grid is the special case.
- A period hypothesis c only sets the scale. Candidates come from the spectrum of the
  evidence (its harmonic sum and plain peaks) and their harmonics; each is tracked, its
  period and phase refitted once on the boundaries that sit on evidence, bent, and
  scored (`hypotheses_many`: all candidates of both axes in one tracking loop).
- Harmonics (c/2, c/3, 2c...): the hypothesis whose boundaries explain most of the
  evidence mass beyond chance (`coverage`) is taken; the image-space split test
  (`SplitTester`: does a cell hide an edge on a run of lines at least half a cell long?)
  replaces it by a finer lattice when that breaks at most half as many cells, or by the
  coarsest integer multiple that breaks no more cells (the finer lattice's extra
  boundaries sat on JPEG blocks, texture or specks).
- Cells are almost always square: an axis with little evidence takes the other axis'
  period when that period is really seen there (`square_pair`), and when both axes
  chose the same period class the one measured on fewer cells re-tracks with the
  support-weighted mean (`joint_period`).
- Confidence (`axis_fit`): the edge cells' distance from the counting threshold, the
  margin to a competing hypothesis of the same cell size with another count, and the
  amount of evidence; `describe` turns a low one into a sentence.
- Overrides: an exact size (`exact_fit`), a forced cell size and offset (`forced_fit`).

Constants: the physical ones live in `track` and `evidence`; the priors and selection
rules here (KAPPA, SUPPORT_LEVEL, CLASS_TOL, RATE_MARGIN, DEMOTE_*, SQUARE_*, PRUNE_SHARE,
N_SPECTRAL) were set on the even-numbered half of the hard development set while watching
the uniform set (see bench/README-pixel.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .evidence import Evidence, edge_evidence
from .splittest import SplitTester
from .track import (
    EDGE_HALF,
    MIN_VISIBLE,
    bend,
    count_cells,
    count_range,
    evidence_span,
    extend,
    measure,
    no_border,
    normalise,
    refine,
    track,
    visible,
)

PRUNE_SHARE = 0.3  # hypotheses explaining less than this share of the best one's evidence are dropped
MIN_PERIOD = 3.0  # auto search floor (input px per art pixel); lower only with a size hint
MIN_CELLS = 2.5  # the largest period searched is (art extent) / MIN_CELLS
KAPPA = 0.1  # cost of one boundary in the gain (an empty tooth must not pay), strong-boundary units
SUPPORT_LEVEL = 0.25  # evidence (strong-boundary units) that makes a boundary "seen"
CLASS_TOL = 0.12  # periods closer than this (|log ratio|) are one hypothesis
MULTIPLE_TOL = 0.06  # |k - round(k)| / k below which a period is an integer multiple
RATE_MARGIN = 0.01  # broken-cell share a coarser multiple may add and still win
DEMOTE_MARGIN = 0.05  # a finer lattice must break this share fewer cells to replace the choice
DEMOTE_RATIO = 0.5  # ... and at most this share of them (too coarse a lattice hides a boundary in most broken cells)
DEMOTE_COVER_SHARE = 0.5  # ... and keep this share of its coverage
MIN_COVER_SHARE = 0.5  # a coarser multiple must keep this share of the choice's coverage
SQUARE_TOL = 0.08  # |log(cx / cy)| above which the axes "disagree"
SQUARE_SHARE = 0.7  # ... and a square alternative needs this share of the choice's coverage
N_SPECTRAL = 3  # spectral peaks taken (harmonic sum and plain), before harmonics
BLOCK = 8  # lines summed for the evidence (at most half a cell; see `evidence`) ...
BLOCK_HALF = 4  # ... on a half-size copy (8 input lines) averaged for the evidence on a half-size copy (8 input lines)
TEST_LINES = 120  # lines sampled per axis for the split test
LOW_CONFIDENCE = 0.5
EDGE_BAND = 0.15  # an edge cell whose visible share is within this of MIN_VISIBLE could go either way


# ----------------------------------------------------------------------------------------
# period hypotheses
# ----------------------------------------------------------------------------------------
@dataclass
class Hypothesis:
    """One period's lattice along an axis: tracked boundaries (per strip) and their score."""

    c: float
    o: float
    cuts: np.ndarray  # (S, K) boundaries covering the image and a margin, per strip
    gain: float  # evidence at the boundaries minus KAPPA per boundary inside the evidence
    cover: float  # evidence mass near the boundaries, beyond chance (see `coverage`)
    support: int  # cells with clear evidence at both ends (each measures the period)
    rate: float = float("nan")  # split-test broken share (filled in lazily)

    @property
    def mean_cuts(self) -> np.ndarray:
        return self.cuts.mean(0)


def phase_of(e: np.ndarray, c: float) -> float:
    """Phase o of a comb o + k c that fits evidence e best (angle of the DFT at 1 / c)."""
    x = np.arange(len(e))
    f = np.dot(e, np.exp(-2j * np.pi * x / c))
    return float((-np.angle(f) * c / (2 * np.pi)) % c)


def coverage(es: np.ndarray, cuts: np.ndarray, c: float) -> float:
    """Share of the evidence mass within r = min(EDGE_HALF, c / 4) of a boundary (each
    strip against its own boundaries), beyond what windows at random places would hold:
    (share - f) / (1 - f), f the share of the axis the windows cover. A lattice finer than
    the art (c/2, c/3) explains no more than the art's own lattice; a coarser one (2c)
    leaves boundaries unexplained."""
    r = min(EDGE_HALF, c / 4.0)
    s_n, n1 = es.shape
    cs = np.zeros((s_n, n1 + 1))
    np.cumsum(es, axis=1, out=cs[:, 1:])
    total = float(cs[:, -1].sum())
    if total <= 0:
        return 0.0
    a = np.clip(cuts - r, 0, n1)
    b = np.clip(cuts + r + 1.0, 0, n1)
    ia, ib = np.floor(a).astype(np.intp), np.floor(b).astype(np.intp)
    rows = np.arange(s_n)[:, None]

    def at(v: np.ndarray, i: np.ndarray) -> np.ndarray:  # cumulative sum at fractional v
        j = np.minimum(i + 1, n1)
        return cs[rows, i] + (v - i) * (cs[rows, j] - cs[rows, i])

    mass = float(np.sum(at(b, ib) - at(a, ia)))
    f = min(0.99, (2 * r + 1.0) / c)
    return (mass / total - f) / (1 - f)


def hypotheses(e: np.ndarray, es: np.ndarray, cs: list[float], lo: int, hi: int, refit: bool = True,
               os: list[float] | None = None) -> list[Hypothesis]:
    """For each period ~c: track the lattice on the whole-axis evidence; refit period and
    phase once on the boundaries that sit on evidence and track again; bend it strip by
    strip; continue it into the margins; score it (see `hypotheses_many`)."""
    return hypotheses_many([(e, es, cs, lo, hi, os)], refit)[0]


def hypotheses_many(problems: list[tuple], refit: bool = True) -> list[list[Hypothesis]]:
    """`hypotheses` for several axes at once: problems are (e, es, periods, lo, hi, phases
    or None). Every tracking pass runs all periods of all axes in one Viterbi loop."""
    items = []  # [problem, c, o, evidence without border]
    for pi, (e, _es, cs, _lo, _hi, os) in enumerate(problems):
        for j, c in enumerate(cs):
            eb = no_border(e, float(c))
            items.append([pi, float(c), phase_of(eb, float(c)) if os is None else float(os[j]), eb])

    def run_track(sel: list[list]) -> list[np.ndarray]:
        return track([it[3] for it in sel], [it[1] for it in sel], [it[2] for it in sel])

    def prune(sel: list[list], cuts: list[np.ndarray], share: float) -> tuple[list, list]:
        pre = [coverage(it[3][None], k[None], it[1]) for it, k in zip(sel, cuts, strict=True)]
        keep = []
        for pi in range(len(problems)):
            mine = [j for j, it in enumerate(sel) if it[0] == pi]
            if len(mine) > 2:
                top = max(pre[j] for j in mine)
                mine = [j for j in mine if pre[j] >= share * top]
            keep += mine
        keep.sort()
        return [sel[j] for j in keep], [cuts[j] for j in keep]

    cuts = run_track(items)
    items, cuts = prune(items, cuts, PRUNE_SHARE)  # too little of the evidence: not refined
    if refit:
        again = []
        for j, (it, k_cuts) in enumerate(zip(items, cuts, strict=True)):
            e, _es, _cs, lo, hi, _os = problems[it[0]]
            c, eb = it[1], it[3]
            k = np.nonzero((k_cuts > lo) & (k_cuts < hi))[0]
            if k.size < 3:
                continue
            w = np.interp(k_cuts[k], np.arange(len(eb)), eb) + 1e-3
            a = np.stack([np.ones(k.size), k.astype(float)], 1) * w[:, None]
            sol = np.linalg.lstsq(a, k_cuts[k] * w, rcond=None)[0]
            if 0.9 * c < sol[1] < 1.1 * c and abs(sol[1] / c - 1) > 0.005:
                it[1] = float(sol[1])
                it[2] = float(sol[0]) % it[1]
                it[3] = no_border(e, it[1])
                again.append(j)
        if again:
            for j, t in zip(again, run_track([items[j] for j in again]), strict=True):
                cuts[j] = t
    items, cuts = prune(items, cuts, PRUNE_SHARE)  # only a fair share of the evidence is bent and kept
    esbs = [no_border(problems[it[0]][1], it[1]) for it in items]
    bents = bend(esbs, cuts, [it[1] for it in items])
    out: list[list[Hypothesis]] = [[] for _ in problems]
    for it, k_cuts, esb, bent in zip(items, cuts, esbs, bents, strict=True):
        pi, c, o, eb = it
        lo, hi = problems[pi][3], problems[pi][4]
        n = len(eb) - 1
        bent = extend(bent, lo, hi)
        x_in = ((bent >= lo) & (bent <= hi)).mean(0).sum()
        vals = esb[np.arange(len(esb))[:, None], np.clip(np.round(bent), 0, n).astype(np.intp)]
        mc = k_cuts[(k_cuts >= lo) & (k_cuts <= hi)]
        on = np.interp(mc, np.arange(n + 1), eb) >= SUPPORT_LEVEL
        support = int(np.sum(on[1:] & on[:-1]))
        out[pi].append(Hypothesis(c, o, bent, float(vals.sum() - KAPPA * x_in), coverage(esb, bent, c), support))
    return out


def hypothesis(e: np.ndarray, es: np.ndarray, c: float, lo: int, hi: int, refit: bool = True,
               o: float | None = None) -> Hypothesis:
    """One period's hypothesis (see `hypotheses`)."""
    return hypotheses(e, es, [c], lo, hi, refit, None if o is None else [o])[0]


def spectrum_candidates(q: np.ndarray, lo: int, hi: int, cmin: float, cmax: float, k: int = N_SPECTRAL) -> list[float]:
    """Candidate periods: local maxima of the spectrum's harmonic sum, then of the plain
    spectrum (k of each, best first, one per class of close periods)."""
    seg = q[lo:hi] - q[lo:hi].mean()
    n = len(seg)
    if n < 4 or cmax <= cmin:
        return []
    nfft = 1 << int(np.ceil(np.log2(16 * n)))
    mag = np.abs(np.fft.rfft(seg * np.hanning(n), nfft))
    # period grid: step ~ c^2 / (4 n), a quarter of the spectral resolution (at least 0.2 %):
    # geometric up to c* = 0.008 n, then even steps in 1 / c
    steps = [cmin]
    while steps[-1] < cmax:
        c = steps[-1]
        steps.append(c + max(c * c / (4.0 * n), 0.002 * c))
    per = np.array(steps)

    def at(m: int) -> np.ndarray:
        f = m / per
        return np.where(f < 0.5, mag[np.clip(np.round(f * nfft).astype(int), 0, len(mag) - 1)], 0.0)

    plain = at(1)
    harmonic = plain + 0.6 * at(2) + 0.4 * at(3) + 0.3 * at(4)
    out: list[float] = []
    for score in (harmonic, plain):  # the fundamental, and whatever is strongest alone
        peaks = np.nonzero((score[1:-1] >= score[:-2]) & (score[1:-1] >= score[2:]))[0] + 1
        taken = 0
        for i in peaks[np.argsort(-score[peaks])]:
            if taken == k:
                break
            if all(abs(np.log(per[i] / c)) > CLASS_TOL for c in out):
                out.append(float(per[i]))
                taken += 1
    return out


def candidate_periods(e: np.ndarray, lo: int, hi: int, cmin: float, cmax: float,
                      prior: float | None) -> list[float]:
    """Spectral candidates, the prior, and the harmonics of the strongest ones (the
    spectrum of a lattice with weak boundaries peaks at its harmonics), one per class."""
    cands = spectrum_candidates(e, lo, hi, cmin, cmax)
    if prior is not None and all(abs(np.log(prior / c)) > 0.01 for c in cands):
        cands.append(prior)
    for c in list(cands[:3]):
        for f in (2.0, 0.5, 3.0, 1.0 / 3.0):
            if cmin <= c * f <= cmax and all(abs(np.log(c * f / x)) > CLASS_TOL for x in cands):
                cands.append(c * f)
    return cands


# ----------------------------------------------------------------------------------------
# per-axis solve and the joint step
# ----------------------------------------------------------------------------------------
@dataclass
class AxisState:
    """One axis between hypothesis ranking and the final lattice (for the joint step)."""

    e: np.ndarray
    es: np.ndarray
    lo: int
    hi: int
    size: int
    hyps: list[Hypothesis] = field(default_factory=list)
    choice: Hypothesis | None = None
    tester: SplitTester | None = None

    def rate(self, h: Hypothesis) -> float:
        if h.rate != h.rate:
            h.rate = self.tester.rate(h.cuts, h.c) if self.tester is not None else 0.0
        return h.rate


def select(st: AxisState, prior: float | None) -> Hypothesis:
    """The lattice that explains most of the evidence (`coverage`); a finer one instead
    when it breaks clearly fewer cells (it was too coarse); then the coarsest integer
    multiple of it that breaks no more cells (the extra boundaries sat on JPEG blocks,
    texture, dither or specks, not on cell borders)."""
    reps = sorted(st.hyps, key=lambda h: -h.cover)
    best = reps[0]
    if prior is not None:
        near = [h for h in reps if abs(h.c / prior - 1) < 0.05 and h.cover >= MIN_COVER_SHARE * best.cover]
        if near:
            return near[0]
    if st.tester is None:
        return best
    base, top = st.rate(best), best.cover
    if base > DEMOTE_MARGIN:  # too coarse: a finer lattice that breaks clearly fewer cells
        finer = [h for h in reps[1:] if h.c < 0.8 * best.c and h.cover >= DEMOTE_COVER_SHARE * top
                 and st.rate(h) < min(base - DEMOTE_MARGIN, DEMOTE_RATIO * base)]
        if finer:
            low = min(st.rate(h) for h in finer)
            best = max((h for h in finer if st.rate(h) <= low + RATE_MARGIN), key=lambda h: h.c)
            base = st.rate(best)
    if base >= 1.0:  # untestable (cells too small or too few): a multiple must be near-perfect
        base = 0.0
    for h in sorted(reps, key=lambda h: -h.c):
        k = h.c / best.c
        if k < 1.5 or abs(k - round(k)) > MULTIPLE_TOL * k or h.cover < MIN_COVER_SHARE * top:
            continue
        if st.rate(h) <= base + RATE_MARGIN:
            return h
    return best


def prepare_axis(p: np.ndarray, size: int, tester: SplitTester | None = None, target: int | None = None,
                 min_period: float = MIN_PERIOD) -> tuple[AxisState, list[float], float | None]:
    """Evidence, span and candidate periods of one axis (strip profiles p, S x size)."""
    e, es = normalise(p)
    lo, hi = evidence_span(e)
    st = AxisState(e, es, lo, hi, size, tester=tester)
    prior = size / target if target else None
    if float(e.max()) <= 0:
        return st, [], prior
    cmin = min(min_period, 0.8 * prior) if prior else min_period
    cmax = max(cmin * 1.01, max(hi - lo, size * 0.5) / MIN_CELLS)
    return st, candidate_periods(e, lo, hi, cmin, cmax, prior), prior


def solve_axes(jobs: list[tuple[AxisState, list[float], float | None]]) -> None:
    """Rank every axis' period hypotheses (all tracked together) and choose per axis."""
    todo = [(st, cands, prior) for st, cands, prior in jobs if cands]
    if not todo:
        return
    found = hypotheses_many([(st.e, st.es, cands, st.lo, st.hi, None) for st, cands, _ in todo])
    for (st, _cands, prior), hyps in zip(todo, found, strict=True):
        st.hyps = hyps
        if hyps:
            st.choice = select(st, prior)


def solve_axis(p: np.ndarray, size: int, tester: SplitTester | None = None, target: int | None = None,
               min_period: float = MIN_PERIOD) -> AxisState:
    """Rank the period hypotheses of one axis (strip profiles p, S x size) and choose."""
    job = prepare_axis(p, size, tester, target, min_period)
    solve_axes([job])
    return job[0]


def square_pair(sx: AxisState, sy: AxisState) -> None:
    """Tie-break toward square cells when the axes disagree.

    Renders almost always have square art pixels. When the two axes chose clearly
    different periods, the axis whose lattice at the other axis' period explains nearly
    as much of its evidence (SQUARE_SHARE of its choice's coverage) without breaking
    more cells takes that period; if both could, the coarser common period wins (see
    `select`). Truly non-square cells survive: on both axes the square alternative loses
    coverage or breaks cells.
    """
    if sx.choice is None or sy.choice is None:
        return
    cx, cy = sx.choice.c, sy.choice.c
    if abs(np.log(cx / cy)) <= SQUARE_TOL:
        return
    best = None
    for st, c_other in ((sx, cy), (sy, cx)):
        alt = [h for h in st.hyps if abs(np.log(h.c / c_other)) <= SQUARE_TOL]
        alt.append(hypothesis(st.e, st.es, c_other, st.lo, st.hi))
        h = max(alt, key=lambda h: h.cover)
        seen = measure(no_border(st.e, h.c), h.mean_cuts, h.c, h.o)[0]
        if abs(np.log(seen / c_other)) > SQUARE_TOL / 2:
            continue  # the tracker bent the other period onto this axis' own cells: not square
        share = h.cover / max(st.choice.cover, 1e-9)
        if share >= SQUARE_SHARE and st.rate(h) <= st.rate(st.choice) + RATE_MARGIN and (
                best is None or h.c > best[0]):
            best = (h.c, st, h)
    if best is not None:
        best[1].choice = best[2]


def joint_period(sx: AxisState, sy: AxisState) -> None:
    """Square cells, one period: when both axes chose the same period class, the axis
    that measured it on fewer cells re-tracks with the support-weighted mean of both
    periods. A flat panel with edges only at its sides keeps the cell size that the other
    axis shows everywhere."""
    if sx.choice is None or sy.choice is None:
        return
    hx, hy = sx.choice, sy.choice
    r = abs(np.log(hx.c / hy.c))
    if r > CLASS_TOL or r < 0.005:
        return
    wx, wy = hx.support + 1.0, hy.support + 1.0
    c = (wx * hx.c + wy * hy.c) / (wx + wy)
    st = sx if wx < wy else sy
    st.choice = hypothesis(st.e, st.es, c, st.lo, st.hi, refit=False)


# ----------------------------------------------------------------------------------------
# confidence
# ----------------------------------------------------------------------------------------
@dataclass
class AxisFit:
    """The final lattice of one axis: per-strip boundaries of the counted cells."""

    cuts: np.ndarray  # (S, n + 1)
    at: np.ndarray  # (S,) strip centres along the other axis
    period: float
    phase: float
    confidence: float = 1.0
    alternatives: list[int] = field(default_factory=list)  # other plausible cell counts

    def scaled(self, k: float, k_other: float) -> AxisFit:
        """The same lattice on an image k times larger along this axis (k_other across)."""
        return AxisFit(self.cuts * k, self.at * k_other, self.period * k, self.phase * k, self.confidence,
                       list(self.alternatives))


def axis_fit(st: AxisState, at: np.ndarray, target: int | None, exact: bool) -> AxisFit:
    """Count the chosen hypothesis' cells and say how sure that count is.

    Confidence is the lowest of: the edge cells' distance from the counting threshold
    (a cell showing 0.38 or 0.42 of itself could go either way), the margin to a competing
    hypothesis of about the same cell size but another count that explains nearly as much
    of the evidence, and the amount of evidence (a lattice seen on fewer than 3 cells, or
    explaining little of the evidence, is a guess)."""
    n = st.size
    h = st.choice
    if h is None:  # no edge stands out of the noise: one cell, or the target count
        k = target or 1
        cuts = np.linspace(0.0, float(n), k + 1)[None, :]
        return AxisFit(cuts, at[:1] if len(at) else np.zeros(1), n / k, 0.0, 0.0 if not target else 1.0)
    i, j, before, after = count_range(h.cuts, n)
    if exact and target and j - i + 1 != target:
        return exact_fit(st, at, target)
    cuts = refine(no_border(st.es, h.c), h.cuts[:, i : j + 2], h.c) if j >= i else np.array([[0.0, float(n)]])
    count = cuts.shape[1] - 1
    period, phase = measure(no_border(st.e, h.c), cuts.mean(0), h.c, h.o)
    alts: set[int] = set()
    conf = 1.0
    edge_cells = [(before, count + 1), (after, count + 1),  # a cell just outside could count ...
                  (visible(h.cuts[:, i : i + 2], n), count - 1),  # ... or an edge cell not
                  (visible(h.cuts[:, j : j + 2], n), count - 1)]
    for v, other in edge_cells:
        gap = abs(v - MIN_VISIBLE) / EDGE_BAND
        if gap < 1.0:
            conf = min(conf, gap)
            alts.add(other)
    for alt in st.hyps:
        if alt is h or abs(np.log(alt.c / h.c)) < 0.01:
            continue
        ai, aj, _, _ = count_range(alt.cuts, n)
        if aj - ai + 1 == count or alt.cover < 0.8 * h.cover:
            continue
        near = abs(np.log(alt.c / h.c)) <= 2 * CLASS_TOL  # the same cell size, another count
        if near:
            c_alt = 1.0 - (alt.cover / max(h.cover, 1e-9) - 0.8) / 0.2
            conf = min(conf, max(c_alt, 0.0))
            alts.add(aj - ai + 1)
    conf = min(conf, min(1.0, h.support / 3.0), max(0.0, min(1.0, h.cover / 0.3)))
    return AxisFit(cuts, at, period, phase, float(np.clip(conf, 0.0, 1.0)),
                   sorted(a for a in alts if a > 0 and a != count))


def exact_fit(st: AxisState, at: np.ndarray, target: int) -> AxisFit:
    """Exactly `target` cells: the tracked lattice at period n / target (tried at a few
    nearby periods), else the uniform lattice n / target from 0."""
    n = st.size
    c0 = n / target
    if float(st.e.max()) > 0:
        for rel in (0.0, 0.01, -0.01, 0.02, -0.02, 0.04, -0.04):
            h = hypothesis(st.e, st.es, c0 * (1 + rel), st.lo, st.hi, refit=False)
            i, j, _, _ = count_range(h.cuts, n)
            if j - i + 1 == target:
                return AxisFit(h.cuts[:, i : j + 2], at, float(h.c), float(h.o), 1.0)
    cuts = np.linspace(0.0, float(n), target + 1)[None, :]
    return AxisFit(cuts, at[:1] if len(at) else np.zeros(1), c0, 0.0, 1.0)


def forced_fit(st: AxisState, at: np.ndarray, c: float, o: float | None) -> AxisFit:
    """The user's cell size (and offset): with an offset, exactly the uniform lattice
    o + k c; without, the lattice of period c tracked on the evidence (its phase and
    drift found, its period kept)."""
    n = st.size
    if o is None and float(st.e.max()) > 0:
        h = hypothesis(st.e, st.es, c, st.lo, st.hi, refit=False)
        cuts = count_cells(h.cuts, n)
        return AxisFit(cuts, at, c, float(h.o), 1.0)
    o = 0.0 if o is None else float(o) % c
    k0 = int(np.floor(-o / c)) - 1
    k1 = int(np.ceil((n - o) / c)) + 1
    cuts = count_cells((o + c * np.arange(k0, k1 + 1))[None, :], n)
    return AxisFit(cuts, at[:1] if len(at) else np.zeros(1), c, o, 1.0)


# ----------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------
def _lines(rgba: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """Premultiplied RGBA float32 of the sampled rows (axis 0) or columns (axis 1), as
    (lines, length, 4)."""
    sub = rgba[idx] if axis == 0 else rgba[:, idx].transpose(1, 0, 2)
    f = sub.astype(np.float32)
    if not bool(np.all(sub[..., 3] == 255)):
        f[..., :3] *= f[..., 3:4] * (1.0 / 255.0)
    return f


def quick_period(ev: Evidence) -> float | None:
    """A cheap guess of the larger of the two axes' periods: the strongest peak of each
    axis' harmonic spectrum (None without evidence). Used to skip a fit at half size that
    could only find cells too small for it; a harmonic guess only costs that time."""
    out = []
    for p, n in ((ev.px, ev.width), (ev.py, ev.height)):
        e, _ = normalise(p)
        lo, hi = evidence_span(e)
        if float(e.max()) <= 0:
            continue
        c = spectrum_candidates(e, lo, hi, MIN_PERIOD, max(MIN_PERIOD * 1.01, max(hi - lo, n * 0.5) / MIN_CELLS), 1)
        if c:
            out.append(c[0])
    return max(out) if out else None


def fit_axes(rgba: np.ndarray, size: tuple[int, int] | None = None, exact: bool = False,
             cell: tuple[float, float] | None = None, offset: tuple[float, float] | None = None,
             ev: Evidence | None = None, reblock: bool = True) -> tuple[AxisFit, AxisFit]:
    """Fit the lattice of an RGBA uint8 image: (x axis, y axis).

    size: known native (w, h), a hint (a prior on the period) or, with exact=True, the
    exact cell count. cell: forced cell size (w, h) in input px; offset: forced position
    of a cell boundary (x, y) (needs cell). ev: the evidence, if already measured;
    reblock: measure it again with finer line blocks when the cells turn out small.
    """
    h, w = rgba.shape[:2]
    ev = ev if ev is not None else edge_evidence(rgba)
    fits = _fit_axes(rgba, ev, size, exact, cell, offset)
    c_min = min(f.period for f in fits)
    if reblock and ev.block > 1 and c_min < 2 * ev.block and cell is None:
        # lines were averaged over more than half a cell: steps of neighbouring cell rows
        # mixed; measure again with blocks of at most half a cell
        ev = edge_evidence(rgba, k=max(1, int(c_min // 2)))
        fits = _fit_axes(rgba, ev, size, exact, cell, offset)
    return fits


def _fit_axes(rgba: np.ndarray, ev: Evidence, size: tuple[int, int] | None, exact: bool,
              cell: tuple[float, float] | None, offset: tuple[float, float] | None) -> tuple[AxisFit, AxisFit]:
    h, w = rgba.shape[:2]
    ry = np.unique(np.linspace(0, h - 1, min(h, TEST_LINES)).astype(np.intp))
    cx = np.unique(np.linspace(0, w - 1, min(w, TEST_LINES)).astype(np.intp))
    tw, th = size if size is not None else (None, None)
    states, ats, jobs = [], [], []
    for k, (p, n, bounds, lines, t) in enumerate(((ev.px, w, ev.rows_x, ry, tw), (ev.py, h, ev.cols_y, cx, th))):
        at = 0.5 * (bounds[:-1] + bounds[1:])
        ats.append(at)
        if cell is not None or (exact and t):
            e, es = normalise(p)
            lo, hi = evidence_span(e)
            states.append(AxisState(e, es, lo, hi, n))
            continue
        jobs.append(prepare_axis(p, n, SplitTester(_lines(rgba, lines, k), lines + 0.5, at), t))
        states.append(jobs[-1][0])
    solve_axes(jobs)
    if cell is not None:
        offs = offset if offset is not None else (None, None)
        return (forced_fit(states[0], ats[0], float(cell[0]), offs[0]),
                forced_fit(states[1], ats[1], float(cell[1]), offs[1]))
    if exact and size is not None:
        return exact_fit(states[0], ats[0], int(tw)), exact_fit(states[1], ats[1], int(th))
    if size is None:
        square_pair(*states)
        joint_period(*states)
    return (axis_fit(states[0], ats[0], tw, exact), axis_fit(states[1], ats[1], th, exact))


def describe(fx: AxisFit, fy: AxisFit) -> str | None:
    """A sentence for a user when the lattice is uncertain, else None."""
    parts = []
    for f, name in ((fx, "columns"), (fy, "rows")):
        if f.confidence >= LOW_CONFIDENCE:
            continue
        n = f.cuts.shape[1] - 1
        if f.confidence == 0.0 and f.cuts.shape[1] == 2 and not f.alternatives:
            parts.append(f"no pixel grid found along the {name}")
            continue
        counts = sorted({n, *f.alternatives})
        if len(counts) == 1:
            parts.append(f"{n} {name} (little evidence)")
        else:
            parts.append(" or ".join(str(v) for v in counts) + f" {name}")
    if not parts:
        return None
    return "grid uncertain: " + "; ".join(parts)
