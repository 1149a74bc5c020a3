"""Palettes: build one (automatic count or fixed N), load one (by name or file), apply one.

Why:
- A render has hundreds of near-duplicate colours; the sprite had a handful. Clustering is
  done in OKLab (perceptual) on the per-cell colours, seeded deterministically by median
  cut so the same input always gives the same palette, refined by weighted k-means, and
  each centre is snapped to a colour that really occurs (a k-means mean is a blend no
  artist picked).
- "Automatic" count = keep splitting until every cluster is tight (`AUTO_TOLERANCE` in
  OKLab), then merge centres closer than that: similar shades collapse, distinct art
  colours stay apart.
- Named palettes and .hex/.gpl/.pal files let a sprite set share a house palette; a
  palette built from many images (`palette_from_images`) keeps a batch consistent.
- No dithering unless asked: ordered Bayer is available, error diffusion is not (it
  produces the noisy texture pixel art avoids).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from studio import limits

from .color import nearest_index, oklab_distance, parse_hex, rgb_to_oklab

AUTO_TOLERANCE = 0.05  # OKLab diameter of one automatic colour cluster

_NAMED_HEX: dict[str, str] = {
    "pico-8": "000000 1d2b53 7e2553 008751 ab5236 5f574f c2c3c7 fff1e8 "
    "ff004d ffa300 ffec27 00e436 29adff 83769c ff77a8 ffccaa",
    "gameboy": "0f380f 306230 8bac0f 9bbc0f",
    "dawnbringer-16": "140c1c 442434 30346d 4e4a4e 854c30 346524 d04648 757161 "
    "597dce d27d2c 8595a1 6daa2c d2aa99 6dc2ca dad45e deeed6",
    "dawnbringer-32": "000000 222034 45283c 663931 8f563b df7126 d9a066 eec39a "
    "fbf236 99e550 6abe30 37946e 4b692f 524b24 323c39 3f3f74 "
    "306082 5b6ee1 639bff 5fcde4 cbdbfc ffffff 9badb7 847e87 "
    "696a6a 595652 76428a ac3232 d95763 d77bba 8f974a 8a6f30",
    "endesga-32": "be4a2f d77643 ead4aa e4a672 b86f50 733e39 3e2731 a22633 "
    "e43b44 f77622 feae34 fee761 63c74d 3e8948 265c42 193c3e "
    "124e89 0099db 2ce8f5 ffffff c0cbdc 8b9bb4 5a6988 3a4466 "
    "262b44 181425 ff0044 68386c b55088 f6757a e8b796 c28569",
    "pyxel": "000000 2b335f 7e2072 19959c 8b4852 395c98 a9c1ff eeeeee "
    "d4186c d38441 e9c35b 70c6a9 7696de a3a3a3 ff9798 edc7b0",
}
_ALIASES = {"pico8": "pico-8", "gb": "gameboy", "game-boy": "gameboy", "db16": "dawnbringer-16",
            "db32": "dawnbringer-32", "endesga32": "endesga-32", "eds32": "endesga-32",
            "dawnbringer16": "dawnbringer-16", "dawnbringer32": "dawnbringer-32"}


def _hex_list(s: str) -> np.ndarray:
    return np.array([parse_hex(h) for h in s.split()], dtype=np.uint8)


NAMED_PALETTES: dict[str, np.ndarray] = {k: _hex_list(v) for k, v in _NAMED_HEX.items()}


def palette_names() -> list[str]:
    return sorted(NAMED_PALETTES)


def _normalise_name(name: str) -> str:
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _ALIASES.get(key, key)


# ----------------------------------------------------------------------------------------
# palette files
# ----------------------------------------------------------------------------------------
def parse_hex_file(text: str) -> np.ndarray:
    """.hex (Lospec): one colour per line, 'rrggbb' or '#rrggbb'. Also Paint.NET .txt
    ('aarrggbb', ';' comments)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith((";", "//")):
            continue
        s = s.split()[0].lstrip("#")
        if len(s) == 8:  # aarrggbb
            s = s[2:]
        try:
            out.append(parse_hex(s))
        except ValueError:
            raise ValueError(f"line {n}: {line.strip()!r} is not a hex colour") from None
    return np.array(out, dtype=np.uint8).reshape(-1, 3)


def parse_gpl(text: str) -> np.ndarray:
    """GIMP palette: 'GIMP Palette' header, optional Name:/Columns:, '#' comments, 'R G B name'."""
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("GIMP Palette"):
        raise ValueError("not a GIMP palette (the first line must be 'GIMP Palette')")
    out = []
    for n, line in enumerate(lines[1:], 2):
        s = line.strip()
        if not s or s.startswith("#") or re.match(r"^(Name|Columns)\s*:", s):
            continue
        parts = s.split()
        try:
            rgb = tuple(int(v) for v in parts[:3])
        except ValueError:
            raise ValueError(f"line {n}: {s!r} is not 'R G B [name]'") from None
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"line {n}: {s!r} is not 'R G B [name]' with values 0..255")
        out.append(rgb)
    return np.array(out, dtype=np.uint8).reshape(-1, 3)


def parse_jasc_pal(text: str) -> np.ndarray:
    """JASC-PAL (Paint Shop Pro): 'JASC-PAL', '0100', count, then 'R G B' lines."""
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    if len(lines) < 3 or lines[0] != "JASC-PAL":
        raise ValueError("not a JASC palette (the first line must be 'JASC-PAL')")
    try:
        count = int(lines[2])
    except ValueError:
        raise ValueError(f"JASC palette: line 3 must be the colour count, got {lines[2]!r}") from None
    out = []
    for s in lines[3 : 3 + count]:
        try:
            rgb = tuple(int(v) for v in s.split()[:3])
        except ValueError:
            raise ValueError(f"JASC palette: {s!r} is not 'R G B'") from None
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"JASC palette: {s!r} is not 'R G B' with values 0..255")
        out.append(rgb)
    if len(out) != count:
        raise ValueError(f"JASC palette says {count} colours but has {len(out)}")
    return np.array(out, dtype=np.uint8).reshape(-1, 3)


def load_palette(spec: str | os.PathLike) -> np.ndarray:
    """A palette by name (see `palette_names`) or from a .hex/.txt/.gpl/.pal file -> (k, 3) uint8."""
    if isinstance(spec, str) and _normalise_name(spec) in NAMED_PALETTES:
        return NAMED_PALETTES[_normalise_name(spec)].copy()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"unknown palette {str(spec)!r}: not one of {', '.join(palette_names())} "
                         "and not a palette file (.hex, .gpl, .pal)")
    text = path.read_text(encoding="utf-8", errors="replace")
    ext = path.suffix.lower()
    if ext == ".gpl" or text.startswith("GIMP Palette"):
        pal = parse_gpl(text)
    elif ext == ".pal" or text.startswith("JASC-PAL"):
        pal = parse_jasc_pal(text)
    elif ext in (".hex", ".txt"):
        pal = parse_hex_file(text)
    else:
        raise ValueError(f"palette file {path.name!r}: unsupported type (use .hex, .gpl or .pal)")
    if len(pal) == 0:
        raise ValueError(f"palette file {path.name!r} holds no colours")
    if len(pal) > limits.MAX_COLORS:
        raise ValueError(f"palette file {path.name!r} holds {len(pal)} colours; at most {limits.MAX_COLORS}")
    return pal


# ----------------------------------------------------------------------------------------
# building a palette
# ----------------------------------------------------------------------------------------
def _median_cut(lab: np.ndarray, w: np.ndarray, k: int | None, tol: float) -> list[np.ndarray]:
    """Deterministic median cut in OKLab. Splits the box with the largest weighted spread at
    the weighted median of its widest axis, until k boxes (fixed) or until every box is
    within tol/2 of its mean, i.e. about tol across (k=None)."""

    def score(idx: np.ndarray) -> float:
        if len(idx) < 2:
            return -1.0
        pts, ww = lab[idx], w[idx]
        mean = (pts * ww[:, None]).sum(0) / ww.sum()
        spread = np.sqrt(((pts - mean) ** 2).sum(-1))
        if k is None:
            err = float(spread.max())
            return err if err > 0.5 * tol else -1.0  # radius from the mean: half the diameter
        return float(np.sum(ww * spread**2))

    boxes = [np.arange(len(lab))]
    errs = [score(boxes[0])]
    limit = k if k is not None else limits.MAX_COLORS
    while len(boxes) < limit:
        best = int(np.argmax(errs))
        if errs[best] <= 0:
            break
        idx = boxes.pop(best)
        errs.pop(best)
        pts, ww = lab[idx], w[idx]
        axis = int(np.argmax(pts.max(0) - pts.min(0)))
        order = np.argsort(pts[:, axis], kind="stable")
        cw = np.cumsum(ww[order])
        cut = int(np.searchsorted(cw, cw[-1] / 2.0))
        cut = min(max(cut, 1), len(idx) - 1)
        for part in (idx[order[:cut]], idx[order[cut:]]):
            boxes.append(part)
            errs.append(score(part))
    return boxes


def _kmeans(lab: np.ndarray, w: np.ndarray, centres: np.ndarray, iters: int = 12) -> np.ndarray:
    """Weighted Lloyd iterations; a centre that loses all members keeps its position."""
    for _ in range(iters):
        lab_idx = nearest_index(lab, centres)
        sums = np.zeros_like(centres)
        np.add.at(sums, lab_idx, lab * w[:, None])
        tot = np.bincount(lab_idx, weights=w, minlength=len(centres))
        new = np.where(tot[:, None] > 0, sums / np.maximum(tot, 1e-12)[:, None], centres)
        if np.allclose(new, centres, atol=1e-6):
            break
        centres = new
    return centres


def build_palette(rgb: np.ndarray, weights: np.ndarray | None = None, n_colors: int | None = None,
                  tol: float = AUTO_TOLERANCE) -> np.ndarray:
    """Palette (k, 3) uint8 for the colours rgb (n, 3) uint8 with optional weights.

    n_colors=None picks the count automatically (clusters about tol across in OKLab).
    Every returned colour occurs in rgb (snapped to the heaviest real colour nearest the
    cluster centre). Order: most used first.
    """
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    if len(rgb) == 0:
        return np.zeros((0, 3), np.uint8)
    w = np.ones(len(rgb)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    keys, inv = np.unique(packed, return_inverse=True)  # 1-D unique: much faster than rows
    uniq = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)
    uw = np.bincount(inv.reshape(-1), weights=w, minlength=len(uniq))
    lab = rgb_to_oklab(uniq)
    if n_colors is not None:
        n_colors = int(n_colors)
        if len(uniq) <= n_colors:
            order = np.argsort(-uw, kind="stable")
            return uniq[order]
    boxes = _median_cut(lab, uw, n_colors, tol)
    centres = np.array([(lab[b] * uw[b, None]).sum(0) / uw[b].sum() for b in boxes])
    centres = _kmeans(lab, uw, centres)
    if n_colors is None:  # merge centres that ended up closer than the tolerance
        centres = _merge_close(centres, lab, uw, tol)
    assign = nearest_index(lab, centres)
    out, used = [], []
    for i in range(len(centres)):
        members = np.nonzero(assign == i)[0]
        if members.size == 0:
            continue
        # snap: among real colours near the centre, the most used one
        d = oklab_distance(lab[members], centres[i])
        near = members[d <= d.min() + 0.5 * tol]
        pick = near[np.argmax(uw[near])]
        out.append(uniq[pick])
        used.append(uw[members].sum())
    order = np.argsort(-np.array(used), kind="stable")
    return _dedupe(np.array(out, dtype=np.uint8)[order])


def _dedupe(pal: np.ndarray) -> np.ndarray:
    _, first = np.unique(pal, axis=0, return_index=True)
    return pal[np.sort(first)]


def _merge_close(centres: np.ndarray, lab: np.ndarray, w: np.ndarray, tol: float) -> np.ndarray:
    """Greedily fold every centre into an earlier one closer than tol/2, then re-fit; repeat
    until no two centres are that close (a re-fit of two seeds inside one spread cluster,
    e.g. one colour under a light ramp, would pull them apart again)."""

    def keep_of(c: np.ndarray) -> list[int]:
        d = oklab_distance(c[:, None], c[None])
        keep: list[int] = []
        for i in range(len(c)):
            if all(d[i, j] >= 0.5 * tol for j in keep):
                keep.append(i)
        return keep

    for _ in range(4):
        keep = keep_of(centres)
        if len(keep) == len(centres):
            return centres
        centres = _kmeans(lab, w, centres[keep], iters=4)
    return centres[keep_of(centres)]


def palette_from_images(images: list[np.ndarray], n_colors: int | None = None,
                        tol: float = AUTO_TOLERANCE) -> np.ndarray:
    """One palette shared by several RGBA images (opaque pixels of all of them)."""
    cols = [im[im[..., 3] >= 128][:, :3] for im in images]
    cols = [c for c in cols if len(c)]
    if not cols:
        return np.zeros((0, 3), np.uint8)
    return build_palette(np.concatenate(cols), n_colors=n_colors, tol=tol)


# ----------------------------------------------------------------------------------------
# applying a palette
# ----------------------------------------------------------------------------------------
_BAYER4 = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], dtype=np.float64)


def bayer_offsets(h: int, w: int) -> np.ndarray:
    """Ordered-dither thresholds in [-0.5, 0.5), tiled 4x4 Bayer, shape (h, w)."""
    t = (_BAYER4 + 0.5) / 16.0 - 0.5
    return np.tile(t, (h // 4 + 1, w // 4 + 1))[:h, :w]


def apply_palette(rgba: np.ndarray, palette: np.ndarray, dither: str = "none") -> np.ndarray:
    """Map every opaque pixel of an RGBA image to its nearest palette colour (OKLab).

    dither="bayer" adds an ordered 4x4 threshold before the lookup, scaled to the typical
    spacing of the palette, so gradients become regular patterns. Transparent pixels stay
    transparent (RGB zeroed).
    """
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(palette) == 0:
        raise ValueError("the palette is empty")
    out = rgba.copy()
    opaque = out[..., 3] >= 128
    rgb = out[..., :3].astype(np.float64)
    if dither == "bayer" and len(palette) > 1:
        pl = palette.astype(np.float64)
        d = np.sqrt(((pl[:, None] - pl[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        spread = float(np.median(d.min(1)))
        rgb = np.clip(rgb + bayer_offsets(*rgb.shape[:2])[..., None] * spread, 0, 255)
    elif dither not in ("none", "bayer"):
        raise ValueError(f"dither must be 'none' or 'bayer', got {dither!r}")
    idx = nearest_index(rgb_to_oklab(np.round(rgb).astype(np.uint8)), rgb_to_oklab(palette))
    out[..., :3] = np.where(opaque[..., None], palette[idx], 0)
    out[..., 3] = np.where(opaque, 255, 0)
    return out
