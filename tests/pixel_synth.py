"""Synthetic fake pixel art with a known answer, for tests and demos.

Why: the engine's claims (exact size, exact colours, identity on clean input) are only
checkable where the truth is known. `make_sprite` draws a random but art-like sprite
(blobby, outlined, few colours, transparent margin); `render` degrades it the way a
diffusion "pixel art" render looks: non-integer and drifting cells, an offset, blur,
colour noise, JPEG and a flat background.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def make_sprite(w: int = 16, h: int = 16, n_colors: int = 5, seed: int = 0, margin: int = 1,
                opaque: bool = False) -> np.ndarray:
    """A random RGBA sprite (h, w, 4) uint8 with distinct colours and a dark outline.

    opaque=True gives a tile: every pixel opaque, several colour regions.
    """
    rng = np.random.default_rng(seed)
    # well separated colours: random hues at varied lightness
    cols = []
    while len(cols) < n_colors:
        c = rng.integers(0, 256, 3)
        if all(np.abs(c.astype(int) - p).sum() > 150 for p in cols):
            cols.append(c.astype(int))
    cols_a = np.array(cols, np.uint8)
    if opaque:
        field = ndimage.gaussian_filter(rng.random((h, w)), 1.2, mode="wrap")
        cuts = np.quantile(field, np.linspace(0, 1, n_colors + 1)[1:-1])
        idx = np.searchsorted(cuts, field)
        out = np.dstack([cols_a[idx], np.full((h, w), 255, np.uint8)])
        return np.ascontiguousarray(out)
    iw, ih = w - 2 * margin, h - 2 * margin
    yy, xx = np.mgrid[0:ih, 0:iw]
    blob = ((xx - (iw - 1) / 2) / (iw / 2)) ** 2 + ((yy - (ih - 1) / 2) / (ih / 2)) ** 2 <= 1.0
    blob |= rng.random((ih, iw)) < 0.15
    blob = ndimage.binary_opening(blob) | blob & ndimage.binary_erosion(blob)
    blob = ndimage.binary_fill_holes(blob)
    field = ndimage.gaussian_filter(rng.random((ih, iw)), 1.0)
    cuts = np.quantile(field, np.linspace(0, 1, n_colors)[1:-1]) if n_colors > 2 else np.array([])
    body = 1 + np.searchsorted(cuts, field)
    edge = blob & ~ndimage.binary_erosion(blob)
    idx = np.where(edge, 0, body)
    inner = np.zeros((ih, iw, 4), np.uint8)
    inner[..., :3] = cols_a[idx]
    inner[..., 3] = np.where(blob, 255, 0)
    inner[~blob, :3] = 0
    out = np.zeros((h, w, 4), np.uint8)
    out[margin : margin + ih, margin : margin + iw] = inner
    return out


def render(sprite: np.ndarray, cell: float | tuple[float, float] = 32.0, offset: tuple[float, float] = (0.0, 0.0),
           pad: int = 0, blur: float = 0.0, noise: float = 0.0, jpeg: int | None = None,
           background: tuple[int, int, int] | None = (255, 255, 255), drift: float = 0.0,
           smooth: bool = False, seed: int = 0) -> np.ndarray:
    """Degrade a native sprite into a fake render. Returns RGB (background given) or RGBA.

    cell: input px per art pixel (x, y), may be non-integer. offset: crop this many input
    px off the left/top (shifts the grid). drift: relative std of the individual cell
    widths (cells of varying width). smooth: anti-aliased cell borders (box filter of
    an 8x supersampled render) instead of nearest.
    """
    rng = np.random.default_rng(seed)
    h, w = sprite.shape[:2]
    cx, cy = (cell, cell) if np.isscalar(cell) else cell  # type: ignore[misc]

    def edges(n: int, c: float) -> np.ndarray:
        widths = c * (1.0 + drift * rng.standard_normal(n)) if drift else np.full(n, c)
        widths = np.clip(widths, 0.6 * c, 1.4 * c)
        return np.concatenate([[0.0], np.cumsum(widths)])

    ex, ey = edges(w, float(cx)), edges(h, float(cy))
    ss = 4 if smooth else 1
    W, H = int(round(ex[-1])), int(round(ey[-1]))
    xs = (np.arange(W * ss) + 0.5) / ss
    ys = (np.arange(H * ss) + 0.5) / ss
    ix = np.clip(np.searchsorted(ex, xs, side="right") - 1, 0, w - 1)
    iy = np.clip(np.searchsorted(ey, ys, side="right") - 1, 0, h - 1)
    img = sprite[iy[:, None], ix[None, :]].astype(np.float64)
    img[..., :3] *= img[..., 3:] / 255.0  # premultiplied
    if smooth:
        img = img.reshape(H, ss, W, ss, 4).mean(axis=(1, 3))
    ox, oy = int(round(offset[0])), int(round(offset[1]))
    img = img[oy:, ox:]
    if pad:
        img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    if background is not None:
        a = img[..., 3:] / 255.0
        img[..., :3] = img[..., :3] + np.array(background, np.float64) * (1.0 - a)
        img[..., 3] = 255.0
    return _camera(img, background, blur, noise, jpeg, rng)


def _warp_modes(n: int, n_other: int, drift: float, bend: float, rng: np.random.Generator) -> list[tuple]:
    """Sine modes (amp, m, f, phase, c) of a smooth monotone displacement along one axis
    (in cells) that vanishes at 0 and n: one long mode and two short ones (3..8 cells),
    modulated along the other axis by c (bending), scaled so that the largest local
    stretch is `drift`."""
    modes = [(1.0, int(rng.integers(1, 3)), float(rng.uniform(0.3, 1.2)), float(rng.uniform(0, 2 * np.pi)), bend)]
    for _ in range(2):
        m = max(1, int(round(2 * n / rng.uniform(3.0, 8.0))))
        modes.append((float(rng.uniform(0.3, 0.6)) * n / (np.pi * m), m, float(rng.uniform(0.5, 2.0)),
                      float(rng.uniform(0, 2 * np.pi)), bend))
    a = np.linspace(0, n, 8 * n + 1)[:, None]
    b = np.linspace(0, n_other, 33)[None, :]
    stretch = np.abs(np.gradient(_displace(modes, a, b, n, n_other), a[:, 0], axis=0)).max()
    k = drift / max(stretch, 1e-9)
    return [(amp * k, m, f, ph, c) for amp, m, f, ph, c in modes]


def _displace(modes: list[tuple], a: np.ndarray, b: np.ndarray, n: int, n_other: int) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(np.shape(a), np.shape(b)))
    for amp, m, f, ph, c in modes:
        out = out + amp * np.sin(np.pi * m * a / n) * (1 - c + c * np.cos(2 * np.pi * f * b / n_other + ph))
    return out


def render_hard(sprite: np.ndarray, cell: float = 24.0, drift: float = 0.1, bend: float = 0.4, rotate: float = 0.0,
                shading: float = 10.0, jitter: float = 2.0, specks: float = 0.03, crop: tuple[float, float] = (0.3, 0.2),
                pad: float = 0.1, blur: float = 0.0, noise: float = 0.0, jpeg: int | None = None,
                background: tuple[int, int, int] | None = (250, 250, 250), seed: int = 0) -> np.ndarray:
    """A render the way real SDXL pixel-art output looks (the hard development set's
    layers, smaller): a warped lattice whose cell widths drift by up to `drift` and whose
    lines bend, an optional rotation (degrees), anti-aliased cell edges (3x supersampled),
    a light ramp of `shading` levels, per-cell colour jitter, specks 20..40 % of a cell
    across in a share `specks` of the cells, a crop of crop * cell at the left / top and
    pad * cell of padding, then blur, noise and JPEG. The outer cells keep their place,
    so the native size stays exactly the sprite's. RGB with a background, else RGBA."""
    rng = np.random.default_rng(seed)
    h, w = sprite.shape[:2]
    mu = _warp_modes(w, h, drift, bend, rng)
    mv = _warp_modes(h, w, drift, bend, rng)
    ss = 3
    cx0, cy0 = crop[0] * cell, crop[1] * cell
    p = pad * cell
    W, H = int(round(w * cell - cx0 + 2 * p)), int(round(h * cell - cy0 + 2 * p))
    xs = (np.arange(W * ss) + 0.5) / ss + cx0 - p
    ys = (np.arange(H * ss) + 0.5) / ss + cy0 - p
    th = np.radians(rotate)
    X, Y = xs[None, :] - w * cell / 2, ys[:, None] - h * cell / 2
    uh = (np.cos(th) * X + np.sin(th) * Y + w * cell / 2) / cell
    vh = (-np.sin(th) * X + np.cos(th) * Y + h * cell / 2) / cell
    u = uh + _displace(mu, uh, vh, w, h)
    v = vh + _displace(mv, vh, uh, h, w)
    iu, iv = np.floor(u).astype(int), np.floor(v).astype(int)
    inside = (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
    art = sprite.astype(np.float64).copy()
    art[..., :3] += rng.normal(0, jitter, (h, w, 3))  # per-cell jitter: repeated colours differ a little
    img = np.where(inside[..., None], art[iv.clip(0, h - 1), iu.clip(0, w - 1)], 0.0)
    fu, fv = u - iu, v - iv
    for _ in range(max(1, int(round(specks * w * h)))):  # specks: small blobs of a contrasting colour
        if specks <= 0:
            break
        j, i = int(rng.integers(h)), int(rng.integers(w))
        if sprite[j, i, 3] < 128:
            continue
        r = rng.uniform(0.1, 0.2)
        cu, cv = rng.uniform(r + 0.05, 1 - r - 0.05, 2)
        m = (iu == i) & (iv == j) & ((fu - cu) ** 2 + (fv - cv) ** 2 <= r * r)
        img[m, :3] = 255.0 - sprite[j, i, :3]
    ramp = shading * ((u / w - 0.5) * np.cos(1.0) + (v / h - 0.5) * np.sin(1.0))
    img[..., :3] += ramp[..., None]
    a = img[..., 3:] / 255.0
    img[..., :3] *= a  # premultiplied for the box filter
    img = img.reshape(H, ss, W, ss, 4).mean(axis=(1, 3))
    if background is not None:
        a = img[..., 3:] / 255.0
        img[..., :3] += np.array(background, np.float64) * (1 - a)
        img[..., 3] = 255.0
    return _camera(img, background, blur, noise, jpeg, rng)


def _camera(img: np.ndarray, background, blur: float, noise: float, jpeg: int | None,
            rng: np.random.Generator) -> np.ndarray:
    """What follows the drawing in every render: blur, colour noise, JPEG, and RGB out on a background."""
    if blur:
        img = ndimage.gaussian_filter(img, sigma=(blur, blur, 0))
    alpha = img[..., 3:]
    rgb = np.where(alpha > 0, img[..., :3] * 255.0 / np.maximum(alpha, 1e-9), 0.0)
    if noise:
        rgb = rgb + rng.normal(0.0, noise, rgb.shape)
    out = np.clip(np.round(np.dstack([rgb, alpha])), 0, 255).astype(np.uint8)
    if jpeg is not None:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(out[..., :3])).save(buf, "JPEG", quality=jpeg)
        out[..., :3] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if background is not None:
        return np.ascontiguousarray(out[..., :3])
    return out
