"""Tracking a lattice: boundary sequences fitted to edge evidence by dynamic programming.

Why this design:
- Real renders are not drawn on one uniform grid: cell widths drift across the image
  (+-5..15 %), rows and columns bend, the grid may be rotated by up to ~1 degree. An error
  of 1 % in a uniform period moves the last boundary of a 100-cell axis by a whole cell.
- So the boundaries are *tracked* (`track`): each boundary b_k = o + k c + c d_k may stray
  from a uniform reference lattice by up to REACH_TRACK cells (the hard set's warps move
  boundaries by up to ~1.2 cells); it scores the evidence it sits on and pays
  LAM_TRACK * (d_k - d_{k-1})^2 for the change of width it makes. Viterbi along k, all
  lattices of all axes in one loop (`viterbi`), so the cost is one pass over the longest.
- Bending (`bend`): the same Viterbi per strip of lines, each boundary moving by up to
  REACH_BEND cells from the axis' lattice (a strip's evidence blended with its
  neighbours', so a strip with nothing to show follows the strips around it).
- Beyond the evidence (a sprite's empty margin) the lattice continues at its local width
  (`extend`); boundaries are refined to the centre of their evidence (`refine`); cells
  count when MIN_VISIBLE of them lies inside the image (`count_range`): a crop leaves more
  than half a cell, padding less than a quarter, so the threshold sits between.
"""

from __future__ import annotations

import numpy as np

WMIN, WMAX = 0.7, 1.4  # cell widths allowed, relative to the period
LAM_TRACK = 30.0  # cost of a width change, per (change / period)^2, along the whole axis
LAM_BEND, NU_BEND = 30.0, 2.0  # ... per strip, and of a strip straying from the axis' lattice
REACH_TRACK, REACH_BEND = 1.5, 0.4  # how far (cells) a boundary may stray from its reference
STEPS = 8  # positions per cell searched by the tracker (the bend refines to 1/16, then sub-pixel)
MIN_VISIBLE = 0.4  # share of a cell inside the image for it to count
BORDER = 0.3  # evidence this close to the image's ends (cells) is padding or a crop ...
EDGE_HALF = 3.0  # ... plus the half-width of an edge's evidence bump (px: 2 px difference, AA, blur)
NOISE_Z = 3.0  # evidence must stand this many noise std above the noise floor
CAP = 2.0  # evidence is capped at this many strong-boundary units
EXTEND_CELLS = 4  # cells next to the evidence whose mean width continues into the margins


# ----------------------------------------------------------------------------------------
# evidence at boundary positions
# ----------------------------------------------------------------------------------------
def position_evidence(g: np.ndarray) -> np.ndarray:
    """Evidence at boundary positions 0..n from profiles (..., n) centred on pixels (index
    x <-> position x + 0.5): a boundary at p answers at pixels p-1 and p."""
    out = np.zeros(g.shape[:-1] + (g.shape[-1] + 1,))
    out[..., 1:] += 0.5 * g
    out[..., :-1] += 0.5 * g
    return out


def noise_floor(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the noise of each row of e: those of its lowest 40 % of positions
    (inside cells, even when small blurred cells put edges on half of the others)."""
    k = max(2, int(0.4 * e.shape[-1]))
    low = np.partition(e, k - 1, axis=-1)[..., :k]
    return low.mean(-1), low.std(-1)


def normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evidence above noise at boundary positions: for the whole axis (n + 1,) and per
    strip (S, n + 1).

    The noise floor is the noise mean plus NOISE_Z std (`noise_floor`); below it the
    lattice follows its prior instead of chasing noise bumps. The unit is the median of
    the strongest 2 % of the summed positions (a strong boundary). The whole-axis
    evidence is compressed logarithmically above the noise (log1p(e / noise)): a boundary
    that only some of the lines show (a small part of the sprite) still counts, while one
    silhouette cannot decide alone. Strip evidence stays linear, in the same unit.
    """
    es = position_evidence(p)
    g = es.sum(0)
    mu, sd = noise_floor(g)
    e = np.maximum(g - (mu + NOISE_Z * sd), 0.0)
    k = max(3, len(e) // 50)
    unit = float(np.median(np.partition(e, len(e) - k)[len(e) - k :]))
    if unit <= 0:
        return e, np.zeros_like(es)
    mus, sds = noise_floor(es)
    es = np.maximum(es - (mus + NOISE_Z * sds)[:, None], 0.0) / unit
    eps = max(float(sd), 1e-3 * unit)
    return np.minimum(np.log1p(e / eps) / np.log1p(unit / eps), CAP), np.minimum(es, CAP)


def no_border(e: np.ndarray, c: float) -> np.ndarray:
    """Evidence without the image's ends: padding and crops put steps there that are not
    lattice lines (within BORDER cells, plus the width of an edge's evidence bump)."""
    b = int(np.ceil(BORDER * c + EDGE_HALF))
    out = e.copy()
    out[..., :b] = 0.0
    out[..., max(0, out.shape[-1] - b) :] = 0.0
    return out


def evidence_span(e: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the positions that carry evidence."""
    idx = np.nonzero(e > 0.05)[0]
    if idx.size == 0:
        return 0, len(e)
    return int(idx[0]), int(idx[-1]) + 1


# ----------------------------------------------------------------------------------------
# tracking
# ----------------------------------------------------------------------------------------
def viterbi(refs: list[np.ndarray], rows: list[np.ndarray], cs: list[float], ds: np.ndarray, lam: float,
            nu: float, bounded: bool) -> list[np.ndarray]:
    """Boundaries refs[h][k] + c_h * d_k for several lattices at once, by Viterbi along k.

    refs[h]: (K_h,) reference positions of lattice h with period cs[h]; rows[h]:
    (S_h, n + 1) evidence at boundary positions 0..n, one boundary sequence per row;
    ds: displacements in cells (the same states for every lattice). Score: evidence at
    the boundaries (interpolated), minus lam * (d_k - d_{k-1})^2 (the width of cell k
    moves away from its reference width) and nu * d_k^2 (the boundary strays from its
    reference). bounded: widths must stay within [WMIN, WMAX] periods (reference
    spacing one period). All lattices run in one loop over k (padded to the longest),
    vectorised over every row of every lattice. Returns [(S_h, K_h)] positions.
    """
    ks = np.array([len(r) for r in refs])
    k_max, nd = int(ks.max()), len(ds)
    owner = np.repeat(np.arange(len(refs)), [len(r) for r in rows])
    n1 = max(r.shape[1] for r in rows)  # rows of different axes are padded to the longest
    ev = np.zeros((len(owner), n1))
    n_row = np.empty(len(owner), dtype=np.intp)
    ref_h = np.empty((len(refs), k_max))
    i = 0
    for h, (r, rr) in enumerate(zip(rows, refs, strict=True)):
        ev[i : i + len(r), : r.shape[1]] = r
        n_row[i : i + len(r)] = r.shape[1] - 1
        i += len(r)
        ref_h[h, : len(rr)] = rr
        ref_h[h, len(rr) :] = rr[-1]
    ref = ref_h[owner]  # (R, K)
    c = np.asarray(cs, dtype=np.float64)[owner]
    pos = ref[:, :, None] + c[:, None, None] * ds[None, None, :]  # (R, K, nd)
    idx = np.clip(pos, 0, n1 - 1)
    i0 = np.floor(idx).astype(np.intp).clip(0, max(n1 - 2, 0))
    fr = idx - i0
    r_ix = np.arange(len(ev))[:, None, None]
    un = ev[r_ix, i0] * (1 - fr) + ev[r_ix, np.minimum(i0 + 1, n1 - 1)] * fr
    un *= (pos >= 0) & (pos <= n_row[:, None, None])
    un -= nu * ds**2
    last = ks[owner] - 1  # each row ends at its own last boundary (later steps are padding)
    dd = ds[:, None] - ds[None, :]  # (current, previous)
    pair = lam * dd**2
    if bounded:
        pair = np.where((1 + dd < WMIN) | (1 + dd > WMAX), np.inf, pair)
    score = un[:, 0].copy()
    end = np.zeros((len(ev), nd))
    end[last == 0] = score[last == 0]
    back = np.empty((k_max, len(ev), nd), dtype=np.intp)
    tot = np.empty((len(ev), nd, nd))
    ends = {int(k): last == k for k in np.unique(last) if k > 0}
    for k in range(1, k_max):
        np.subtract(score[:, None, :], pair, out=tot)  # (R, current, previous)
        tot.argmax(axis=2, out=back[k])
        tot.max(axis=2, out=score)
        score += un[:, k]
        done = ends.get(k)
        if done is not None:
            end[done] = score[done]
    r_all = np.arange(len(ev))
    path = np.empty((len(ev), k_max), dtype=np.intp)
    final = end.argmax(axis=1)
    path[:, -1] = final
    for k in range(k_max - 1, 0, -1):
        prev = back[k, r_all, path[:, k]]
        path[:, k - 1] = np.where(k - 1 >= last, final, prev)
    out = ref + c[:, None] * ds[path]
    return [out[owner == h, : ks[h]] for h in range(len(refs))]


def track(es: list[np.ndarray], cs: list[float], os: list[float]) -> list[np.ndarray]:
    """Boundaries o + k c + c d_k covering [-1.5 c, n + 1.5 c] of 1-D evidence e, with
    |d_k| <= REACH_TRACK, for several (e, c, o) at once (see `viterbi`)."""
    refs = []
    for e, c, o in zip(es, cs, os, strict=True):
        n = len(e) - 1
        k0 = int(np.floor((-1.5 * c - o) / c)) - 1
        k1 = int(np.ceil((n + 1.5 * c - o) / c)) + 1
        refs.append(o + c * np.arange(k0, k1 + 1))
    r = int(REACH_TRACK * STEPS)
    ds = np.arange(-r, r + 1) / STEPS
    return [t[0] for t in viterbi(refs, [e[None, :] for e in es], cs, ds, LAM_TRACK, 0.0, True)]


def bend(ess: list[np.ndarray], cuts: list[np.ndarray], cs: list[float]) -> list[np.ndarray]:
    """Per strip, move every boundary of a lattice by up to REACH_BEND cells to follow that
    strip's evidence (S, n + 1): bent lines and a slight rotation, for several lattices at
    once. Each strip's evidence is blended with its neighbours' (1/4, 1/2, 1/4), so a strip
    with nothing to show follows the strips around it. A strip whose boundaries would fold
    a cell keeps the straight lattice. Returns [(S, K)]."""
    if ess[0].shape[0] == 1:
        return [k[None, :] for k in cuts]
    blends = []
    for es in ess:
        pad = np.concatenate([es[:1], es, es[-1:]])
        blends.append(0.25 * pad[:-2] + 0.5 * pad[1:-1] + 0.25 * pad[2:])
    r = int(REACH_BEND * 16)
    ds = np.arange(-r, r + 1) / 16
    out = viterbi(cuts, blends, cs, ds, LAM_BEND, NU_BEND, False)
    for b, k, c in zip(out, cuts, cs, strict=True):
        folded = np.any(np.diff(b, axis=1) < 0.3 * c, axis=1)
        b[folded] = k
    return out


def extend(cuts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Beyond the evidence (a sprite's empty margin, padding), continue each row of
    boundaries at the mean width of its EXTEND_CELLS cells nearest to that end: a drifting
    lattice keeps drifting smoothly, it does not snap back to the mean period."""
    out = cuts.copy()
    for row in out:
        inside = np.nonzero((row >= lo) & (row <= hi))[0]
        if inside.size < 2:
            continue
        i0, i1 = int(inside[0]), int(inside[-1])
        m = min(EXTEND_CELLS, i1 - i0)
        w0 = (row[i0 + m] - row[i0]) / m
        w1 = (row[i1] - row[i1 - m]) / m
        row[:i0] = row[i0] - w0 * np.arange(i0, 0, -1)
        row[i1 + 1 :] = row[i1] + w1 * np.arange(1, len(row) - i1)
    return out


def count_range(cuts: np.ndarray, n: int) -> tuple[int, int, float, float]:
    """(first, last) cell indices with at least MIN_VISIBLE of their width inside [0, n]
    (mean over the rows of cuts), and the visible share of the cells just outside them."""
    a, b = cuts[..., :-1], cuts[..., 1:]
    vis = np.clip(np.minimum(b, n) - np.maximum(a, 0), 0, None) / np.maximum(b - a, 1e-9)
    if vis.ndim == 2:
        vis = vis.mean(0)
    keep = np.nonzero(vis >= MIN_VISIBLE)[0]
    if keep.size == 0:
        return 0, -1, 0.0, 0.0
    i, j = int(keep[0]), int(keep[-1])
    before = float(vis[i - 1]) if i > 0 else 0.0
    after = float(vis[j + 1]) if j + 1 < len(vis) else 0.0
    return i, j, before, after


def count_cells(cuts: np.ndarray, n: int) -> np.ndarray:
    """The boundaries of the cells with at least MIN_VISIBLE of their width inside [0, n]."""
    i, j, _, _ = count_range(cuts, n)
    if j < i:
        return np.array([0.0, float(n)])
    return cuts[..., i : j + 2]


def refine(es: np.ndarray, cuts: np.ndarray, c: float) -> np.ndarray:
    """Each boundary moved to the centre of its strip's evidence within min(EDGE_HALF,
    c / 4) (sub-pixel; the trackers search on a grid of c / 16). A strip without evidence
    there moves its boundary as the strips around it do."""
    n1 = es.shape[1]
    r = int(np.floor(min(EDGE_HALF, c / 4.0)))
    if r < 1:
        return cuts
    base = np.round(cuts).astype(np.intp)
    idx = base[..., None] + np.arange(-r, r + 1)  # (S, K, 2r + 1)
    ok = (idx >= 0) & (idx < n1)
    w = es[np.arange(es.shape[0])[:, None, None], np.clip(idx, 0, n1 - 1)] * ok
    mass = w.sum(-1)
    cen = (w * idx).sum(-1) / np.maximum(mass, 1e-12)
    seen = mass > 0.05
    shift = np.where(seen, cen - cuts, 0.0)
    s_ix = np.arange(cuts.shape[0])
    for k in np.nonzero(seen.any(0) & ~seen.all(0))[0]:  # unseen strips: the shift of their neighbours
        shift[~seen[:, k], k] = np.interp(s_ix[~seen[:, k]], s_ix[seen[:, k]], shift[seen[:, k], k])
    return cuts + shift


def measure(e: np.ndarray, cuts: np.ndarray, c: float, o: float) -> tuple[float, float]:
    """Mean period and phase of the fitted boundaries: a line through the boundaries that
    sit on evidence (weighted by it), or the hypothesis' own when there are too few."""
    x = np.arange(len(e))
    w = np.interp(cuts, x, e)
    k = np.arange(len(cuts), dtype=float)
    if np.count_nonzero(w > 0.05) < 3:
        return float(c), float(o)
    a = np.stack([np.ones_like(k), k], 1) * w[:, None]
    sol = np.linalg.lstsq(a, cuts * w, rcond=None)[0]
    period = float(sol[1])
    if not 0.8 * c < period < 1.25 * c:
        return float(c), float(o)
    return period, float(sol[0] % period)


def visible(cell: np.ndarray, n: int) -> float:
    a, b = cell[:, 0], cell[:, 1]
    return float(np.mean(np.clip(np.minimum(b, n) - np.maximum(a, 0), 0, None) / np.maximum(b - a, 1e-9)))
