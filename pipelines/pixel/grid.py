"""Grid recovery: the art-pixel lattice hidden in an upscaled, degraded render.

The lattice itself is fitted by `lattice` (edge evidence per strip, tracked boundaries
that may drift and bend, period chosen among its harmonics, confidence). This module
holds what the rest of the package and its users see of it:
- `AxisGrid` / `Grid`: per axis the cell boundaries (their mean over the image, `cuts`)
  and, for a bent lattice, the boundaries per strip of the other axis (`bent`, at the
  strip centres `at`); the grid's confidence and a sentence when it is low.
- `detect_grid`: the entry point (clean native art is recognised first; huge renders are
  fitted on a box-reduced copy).
- `sample_cells`: pixels from the interior of every cell, following the bent lattice.
- `draw_lattice`: the fitted lattice drawn over the input, for a UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from . import lattice

MIN_VISIBLE = lattice.MIN_VISIBLE
DETECT_MAX_SIDE = 2048  # larger inputs are box-reduced for detection (speed, memory)
HALF_MIN_SIDE = 512  # inputs at least this large are fitted on a half-size copy first ...
HALF_MIN_CELL = 12.0  # ... and kept when its cells are at least this big there (24 input px)
INTERIOR = 0.6  # share of a cell (per axis, centred) that is sampled: AA bands and blur stay outside


@dataclass(frozen=True)
class AxisGrid:
    """Boundaries of the cells along one axis, in input pixels.

    cuts: n + 1 ascending floats, the boundaries averaged over the other axis.
    bent: (S, n + 1) boundaries at S places along the other axis (`at`, ascending), or
    None for a straight lattice. Between two places the boundaries are interpolated.
    """

    cuts: np.ndarray
    period: float
    phase: float
    bent: np.ndarray | None = None
    at: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.cuts) - 1

    def cuts_at(self, t: np.ndarray) -> np.ndarray:
        """Boundaries at positions t along the other axis: (len(t), n + 1)."""
        t = np.asarray(t, dtype=np.float64)
        if self.bent is None or self.at is None or len(self.at) < 2:
            return np.broadcast_to(self.cuts, (len(t), len(self.cuts)))
        u = np.interp(t, self.at, np.arange(len(self.at)))
        i0 = np.floor(u).astype(np.intp).clip(0, len(self.at) - 2)
        w = (u - i0)[:, None]
        return self.bent[i0] * (1 - w) + self.bent[i0 + 1] * w


@dataclass(frozen=True)
class Grid:
    """The recovered lattice: one AxisGrid per axis, how sure it is, and why not."""

    x: AxisGrid
    y: AxisGrid
    confidence: float = 1.0
    note: str | None = None  # e.g. "grid uncertain: 31 or 32 columns"
    alternatives: dict = field(default_factory=dict)  # {"columns": [31], "rows": []}

    @property
    def cell(self) -> tuple[float, float]:
        return (self.x.period, self.y.period)

    @property
    def size(self) -> tuple[int, int]:
        return (self.x.n, self.y.n)


def features(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied RGB + alpha as float32: transparent pixels all look alike, whatever
    RGB garbage they carry, and a colour edge and an alpha edge both count."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.concatenate([rgba[..., :3].astype(np.float32) * a, rgba[..., 3:4].astype(np.float32)], axis=-1)


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
    if min(a.shape) < 3:
        return False
    probe = rgba.reshape(-1, 4)[:: max(1, a.size // 4096)]  # cheap early outs on a sample
    if not np.all((probe[:, 3] == 0) | (probe[:, 3] == 255)):
        return False
    probe = np.where(probe[:, 3:] == 0, 0, probe).astype(np.uint8)  # transparent: any RGB is one colour
    if np.unique(np.ascontiguousarray(probe).view(np.uint32)).size > 256:
        return False
    if not np.all((a == 0) | (a == 255)):
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
def _axis_grid(f: lattice.AxisFit) -> AxisGrid:
    mean = f.cuts.mean(0)
    bent = f.cuts if f.cuts.shape[0] > 1 and np.ptp(f.cuts, axis=0).max() > 1e-6 else None
    return AxisGrid(mean, float(f.period), float(f.phase), bent, f.at if bent is not None else None)


def detect_grid(rgba: np.ndarray, size: tuple[int, int] | None = None, exact: bool = False,
                drift: bool = True, cell: tuple[float, float] | None = None,
                offset: tuple[float, float] | None = None) -> Grid:
    """Recover the lattice of an RGBA uint8 image.

    size: known native (w, h). With exact=False it is a hint (a prior on the period);
    with exact=True the output has exactly that many cells per axis. cell: forced cell
    size (w, h) in input px; offset: forced position (x, y) of a cell boundary (with
    cell: exactly the uniform lattice). drift=False straightens the fitted lattice (one
    period and phase per axis, the lattice's mean).
    """
    h, w = rgba.shape[:2]
    if size is None and cell is None and is_native(rgba):
        return Grid(AxisGrid(np.arange(w + 1, dtype=np.float64), 1.0, 0.0),
                    AxisGrid(np.arange(h + 1, dtype=np.float64), 1.0, 0.0))
    f = int(np.ceil(max(h, w) / DETECT_MAX_SIDE))
    if f > 1:  # a huge render: find the lattice on a box-reduced copy, then scale it back
        small = np.asarray(Image.fromarray(rgba, "RGBA").reduce(f))
        sx, sy = w / small.shape[1], h / small.shape[0]
        cs = (cell[0] / sx, cell[1] / sy) if cell is not None else None
        os_ = (offset[0] / sx, offset[1] / sy) if offset is not None else None
        g = detect_grid(small, size, exact, drift, cs, os_)

        def up(a: AxisGrid, k: float, k_other: float) -> AxisGrid:
            return AxisGrid(a.cuts * k, a.period * k, a.phase * k,
                            None if a.bent is None else a.bent * k, None if a.at is None else a.at * k_other)

        return Grid(up(g.x, sx, sy), up(g.y, sy, sx), g.confidence, g.note, g.alternatives)
    fx = fy = None
    block = lattice.BLOCK
    if min(h, w) >= HALF_MIN_SIDE and cell is None and offset is None:
        # big cells are found as well on a 2x box-reduced copy (4x fewer pixels; the JPEG
        # block grid is 4 px there); small cells are fitted again at full resolution, with
        # line blocks of at most half a cell (as the copy measured them)
        small = np.asarray(Image.fromarray(rgba, "RGBA").reduce(2))
        sx, sy = w / small.shape[1], h / small.shape[0]
        ev = lattice.edge_evidence(small, k=lattice.BLOCK_HALF, jpeg_block=4)
        c_hint = lattice.quick_period(ev)
        if c_hint is None or c_hint >= HALF_MIN_CELL:
            hx, hy = lattice.fit_axes(small, size, exact, None, None, ev, reblock=False)
            if min(hx.period, hy.period) >= HALF_MIN_CELL and min(hx.confidence, hy.confidence) > 0:
                fx, fy = hx.scaled(sx, sy), hy.scaled(sy, sx)
            c_hint = min(hx.period, hy.period)
        block = int(np.clip(c_hint, 1, lattice.BLOCK))  # half a cell at full resolution
    if fx is None:
        ev = lattice.edge_evidence(rgba, k=block)
        fx, fy = lattice.fit_axes(rgba, size, exact, cell, offset, ev)
    gx, gy = _axis_grid(fx), _axis_grid(fy)
    if not drift:
        gx, gy = (AxisGrid(uniform_cuts(n, a.period, a.phase)
                           if not (exact and size) else np.linspace(0.0, float(n), a.n + 1), a.period, a.phase)
                  for a, n in ((gx, w), (gy, h)))
    alts = {"columns": list(fx.alternatives), "rows": list(fy.alternatives)}
    return Grid(gx, gy, min(fx.confidence, fy.confidence), lattice.describe(fx, fy), alts)


def _cell_positions(grid: Grid, s: int, interior: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions (x, y) of shape (ny, nx, s) each: s points across the central
    `interior` of every cell, following the bent lattice (x boundaries taken at each row's
    centre, y boundaries at each column's centre)."""
    yc = 0.5 * (grid.y.cuts[:-1] + grid.y.cuts[1:])  # row centres (ny,)
    xc = 0.5 * (grid.x.cuts[:-1] + grid.x.cuts[1:])  # column centres (nx,)
    bx = grid.x.cuts_at(yc)  # (ny, nx + 1)
    by = grid.y.cuts_at(xc)  # (nx, ny + 1)
    t = (1 - interior) / 2 + interior * (np.arange(s) + 0.5) / s
    xs = bx[:, :-1, None] + (bx[:, 1:] - bx[:, :-1])[..., None] * t  # (ny, nx, s)
    ys = (by[:, :-1, None] + (by[:, 1:] - by[:, :-1])[..., None] * t).transpose(1, 0, 2)  # (ny, nx, s)
    return xs, ys


def sample_cells(rgba: np.ndarray, grid: Grid, max_samples: int = 8, interior: float = 0.5) -> np.ndarray:
    """Pixels from the interior of every cell: (ny, nx, s, s, 4) uint8.

    The interior avoids the blurred, anti-aliased borders; a fixed sample count per cell
    keeps this one vectorised gather however the cells vary in width and bend.
    """
    h, w = rgba.shape[:2]
    width = float(min(np.median(np.diff(grid.x.cuts)), np.median(np.diff(grid.y.cuts))))
    s = int(np.clip(np.floor(interior * width), 1, max_samples))
    xs, ys = _cell_positions(grid, s, interior)
    ix = np.clip(np.floor(xs), 0, w - 1).astype(np.intp)
    iy = np.clip(np.floor(ys), 0, h - 1).astype(np.intp)
    return rgba[iy[:, :, :, None], ix[:, :, None, :]]


def draw_lattice(image: Image.Image | np.ndarray, grid: Grid, colour: tuple[int, int, int, int] = (255, 0, 255, 200),
                 width: int = 1) -> Image.Image:
    """The input with the fitted lattice drawn over it (RGBA), for a UI to show what the
    engine saw: every boundary as a polyline through its bent positions."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    out = im.convert("RGBA").copy()
    h, w = out.height, out.width
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for axis, ag, other in ((0, grid.x, h), (1, grid.y, w)):
        t = np.linspace(0.0, float(other), 17) if ag.bent is not None else np.array([0.0, float(other)])
        pos = ag.cuts_at(t)  # (len(t), n + 1)
        for k in range(pos.shape[1]):
            pts = [(float(p), float(q)) for p, q in zip(pos[:, k], t, strict=True)]
            if axis == 1:
                pts = [(q, p) for p, q in pts]
            draw.line(pts, fill=colour, width=width)
    return Image.alpha_composite(out, layer)
