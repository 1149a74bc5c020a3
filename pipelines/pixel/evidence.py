"""Edge evidence for lattice fitting: where do cell boundaries cross the image's lines?

Why this design (the physics of the degradation):
- A cell boundary is a step in colour (or alpha) between two flat-ish cells. Blur (sigma up
  to ~2 px), anti-aliased edges (blend bands 1-3 px) and smooth resampling spread the step
  over a few pixels. A difference across a 2 px baseline, |f(x+1) - f(x-1)|, sees the whole
  step of such an edge where a 1 px difference sees only a slice of it; noise grows no more
  (it is still the difference of two pixels). It is centred on pixel x, so a sharp
  boundary at position p (between pixels p-1 and p) answers at x = p-1 and x = p.
- Before differencing, BLOCK consecutive lines are summed: the step of a boundary has the
  same sign along a cell's side and adds up, noise and texture do not. A block must not
  span more than about half a cell (`lattice.fit_axes` measures again with smaller blocks
  when the cells turn out small).
- Differences are capped at CAP (a silhouette or an alpha edge is one strong edge, not
  more evidence than any other boundary) and summed per strip of lines (`n_strips` bands
  across the other axis), so a boundary that bends, or a grid that is slightly rotated,
  can be followed strip by strip.
- JPEG codes 8x8 blocks independently: every block border carries a small step in every
  line, a period-8 comb that looks like a lattice of 8 px cells (and summing lines makes
  it coherent too). `deblock` removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAP = 160.0  # a step (sum over R, G, B, A of 0..255) above this is a silhouette, not more evidence
JPEG_BLOCK = 8
BLOCK = 8  # lines averaged before differencing (coherent steps add up, noise does not)


@dataclass(frozen=True)
class Evidence:
    """Strip profiles of both axes.

    px[s, x]: evidence for a vertical boundary at pixel x (centred on x, i.e. position
    x + 0.5), summed over the rows of horizontal strip s; rows_x holds the strips' row
    bounds (S + 1). py[s, y]: the same for horizontal boundaries, over the columns of
    vertical strip s.
    """

    px: np.ndarray
    py: np.ndarray
    rows_x: np.ndarray
    cols_y: np.ndarray
    width: int
    height: int
    block: int = 1  # lines averaged before differencing

    @property
    def gx(self) -> np.ndarray:
        return self.px.sum(0)

    @property
    def gy(self) -> np.ndarray:
        return self.py.sum(0)


def _planes(rgba: np.ndarray) -> list[np.ndarray]:
    """R, G, B premultiplied by alpha, and A, as int16 planes (transparent pixels all look
    alike whatever RGB garbage they carry; a colour edge and an alpha edge both count)."""
    a = rgba[..., 3]
    if bool(np.all(a == 255)):
        return [rgba[..., c].astype(np.int16) for c in range(3)]
    a16 = a.astype(np.uint16)
    out = [((rgba[..., c] * a16) >> 8).astype(np.int16) for c in range(3)]  # ~ c * a / 255
    return out + [a.astype(np.int16)]


def _diff2(planes: list[np.ndarray], axis: int) -> np.ndarray:
    """Sum over planes of |f(i+1) - f(i-1)| along `axis`, centred on pixel i (zero at the ends)."""
    if axis == 1:
        acc = np.abs(planes[0][:, 2:] - planes[0][:, :-2])
        for p in planes[1:]:
            acc += np.abs(p[:, 2:] - p[:, :-2])
        return np.pad(acc, ((0, 0), (1, 1)))
    acc = np.abs(planes[0][2:] - planes[0][:-2])
    for p in planes[1:]:
        acc += np.abs(p[2:] - p[:-2])
    return np.pad(acc, ((1, 1), (0, 0)))


def strip_bounds(n: int, n_strips: int) -> np.ndarray:
    return np.round(np.linspace(0, n, n_strips + 1)).astype(np.intp)


def deblock(p: np.ndarray, block: int = JPEG_BLOCK) -> np.ndarray:
    """Remove the JPEG block-border signature from strip profiles p (S, n).

    A block border at position 8k is a step in every line, confined to the two pixels
    around it (the centred difference answers at 8k-1 and 8k). When those two phases
    stand out in the summed profile (the image was JPEG coded on this grid), each of
    them is clipped to the level of its outer neighbour (8k-2, 8k+1): a cell boundary is
    spread over more pixels by blur, anti-aliasing and resampling and survives; a block
    step does not. (A perfectly sharp lattice of exactly 8 px cells on the block grid
    cannot be told from JPEG this way; it loses its evidence.)
    """
    n = p.shape[-1]
    if n < 6 * block:
        return p
    m = n - n % block
    g = p.sum(0)
    ph = np.median(g[:m].reshape(-1, block), axis=0)
    inner = np.max(ph[2 : block - 2] if block >= 6 else ph[1 : block - 1])  # a 4 or 2 px lattice answers there
    if min(ph[0], ph[block - 1]) < 1.5 * inner + 1e-9:
        return p
    out = p.copy()
    left = np.arange(block - 1, n, block)  # 8k - 1, outer neighbour 8k - 2
    left = left[left >= 1]
    out[:, left] = np.minimum(p[:, left], p[:, left - 1])
    right = np.arange(block, n - 1, block)  # 8k, outer neighbour 8k + 1
    out[:, right] = np.minimum(p[:, right], p[:, right + 1])
    return out


def _block_mean(p: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Sum of k consecutive lines along `axis` (the tail that does not fill a block is
    dropped), as int32: k strided slices added (fast whatever the axis)."""
    n = p.shape[axis] // k
    if axis == 0:
        return p[: n * k].reshape(n, k, p.shape[1]).sum(1, dtype=np.int32)
    out = p[:, 0 : n * k : k].astype(np.int32)
    for j in range(1, k):
        out += p[:, j : n * k : k]
    return out


def edge_evidence(rgba: np.ndarray, n_strips: int = 6, k: int = BLOCK, jpeg_block: int = JPEG_BLOCK) -> Evidence:
    """Strip profiles of both axes (k lines summed before differencing; JPEG blocks of
    `jpeg_block` px, 4 on a half-size copy)."""
    h, w = rgba.shape[:2]
    planes = _planes(rgba)
    k = max(1, min(k, h // 64, w // 64))
    dx = _diff2([_block_mean(p, 0, k) for p in planes], 1)
    dy = _diff2([_block_mean(p, 1, k) for p in planes], 0)
    ti = int(CAP * k)
    np.minimum(dx, ti, out=dx)
    np.minimum(dy, ti, out=dy)
    sx = max(1, min(n_strips, dx.shape[0]))
    sy = max(1, min(n_strips, dy.shape[1]))
    rows = strip_bounds(dx.shape[0], sx)
    cols = strip_bounds(dy.shape[1], sy)
    px = np.add.reduceat(dx, rows[:-1], axis=0, dtype=np.int64).astype(np.float64) / ti
    py = np.add.reduceat(dy, cols[:-1], axis=1, dtype=np.int64).astype(np.float64).T / ti
    return Evidence(deblock(px, jpeg_block), deblock(py, jpeg_block), rows * k, cols * k, w, h, k)
