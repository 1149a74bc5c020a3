"""Image checks of a training set: what is wrong with one image, and with the set as a whole.

Why a module of its own: these are pure measurements (numbers in, problem strings out) that import nothing
else of the package at run time, so `records` (which runs them on every import) can depend on them without
a cycle.
That is also why `DatasetError` and `DuplicateGroup` live here, the lowest layer; `training.dataset`
re-exports them.
- The native sprite comes from the pixel engine's one rule (`pipelines.pixel.native`), shared with the
  captioner, so a dataset and its captions never disagree about a sprite's size.
- Problems are listed as 'code: explanation' strings, never fixed: a person decides what to exclude.
- Duplicates: `pixel_sha256` hashes decoded pixels (exact copies whatever the file settings), `phash` the
  native sprite (near copies whatever the scale).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import fft as sfft

from pipelines.pixel import PixelImageError, PixelResult
from pipelines.pixel.grid import uniform_cuts
from pipelines.pixel.native import native_sprite

if TYPE_CHECKING:  # annotations only: records imports this module
    from training.dataset.records import ImageRecord

MIN_NATIVE_SIDE = 8
MAX_NATIVE_SIDE = 2048
MAX_INPUT_SIDE = 4096  # larger images are imported with a too-large problem
MOSTLY_EMPTY = 0.90  # share of transparent pixels above which an image is "mostly empty"
NEAR_DUPLICATE_BITS = 6  # perceptual-hash Hamming distance at or below which two sprites look alike
# "no clean grid": edges must sit on the lattice (near/far edge strength) and the cells must be flat
GRID_CONTRAST_MIN = 1.6
RECON_ERROR_MAX = 0.35
CELL_NOISE_MAX = 0.10  # share of cell-centre pixels off their cell colour by > 8 levels (JPEG ringing)


class DatasetError(ValueError):
    """A dataset operation that cannot be done; str(e) says why in words a person can act on."""


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # "exact" | "near"
    files: tuple[str, ...]


def pixel_sha256(rgba: np.ndarray) -> str:
    """Hash of the decoded pixels; RGB under fully transparent pixels is ignored (it is invisible)."""
    a = np.ascontiguousarray(rgba, np.uint8).copy()
    a[a[..., 3] == 0] = 0
    h = hashlib.sha256(f"{a.shape[1]}x{a.shape[0]}:".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def phash(img: Image.Image | np.ndarray) -> str:
    """64-bit DCT perceptual hash of an RGBA image (transparent pixels count as mid grey), as 16 hex
    digits. Computed on the native sprite, so the same sprite at another scale hashes the same."""
    a = np.asarray(img.convert("RGBA") if isinstance(img, Image.Image) else img, np.float64)
    alpha = a[..., 3:4] / 255.0
    lum = ((a[..., :3] @ np.array([0.299, 0.587, 0.114]))[..., None] * alpha + 128.0 * (1 - alpha))[..., 0]
    small = np.asarray(Image.fromarray(lum.astype(np.float32), "F").resize((32, 32), Image.Resampling.BOX))
    low = sfft.dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _lattice_measures(rgba: np.ndarray, result: PixelResult) -> tuple[float, float, float]:
    """(grid contrast, reconstruction error, cell noise) of a non-native image against its lattice.

    grid contrast: mean edge strength on the cell boundaries / away from them (per axis, the lower);
    pixel art has its edges on the lattice, a photo or a smooth gradient does not (ratio ~1).
    reconstruction error: share of opaque pixels that differ by > 32 levels from their cell colour.
    cell noise: share of cell-centre pixels off their cell colour by > 8 levels: ringing from JPEG
    blocks (or noise) inside what should be flat cells.
    Large images are measured on at most ~512 lines per axis and a strided residual (memory, speed).
    """
    nat = np.asarray(result.image)
    h, w = rgba.shape[:2]
    (cx, cy), (ox, oy) = result.cell, result.info.get("phase", (0.0, 0.0))
    contrast = np.inf
    cuts = {}
    for axis, (c, o, n) in ((1, (cx, ox, w)), (0, (cy, oy, h))):
        cut = uniform_cuts(n, c, o)
        cuts[axis] = cut
        m = rgba.shape[1 - axis]
        lines = np.unique(np.linspace(0, m - 1, min(m, 512)).astype(np.intp))
        f = (rgba[lines] if axis == 1 else rgba[:, lines]).astype(np.float32)
        f[..., :3] *= f[..., 3:] / 255.0
        d = np.abs(np.diff(f, axis=axis)).max(-1).mean(axis=1 - axis)
        dist = np.abs(np.arange(1, n)[:, None] - cut[None, :]).min(1)
        far = dist >= min(2.0, c / 3)
        if far.any() and (dist <= 1.0).any():
            contrast = min(contrast, float(d[dist <= 1.0].mean() / (d[far].mean() + 1e-3)))
    step = max(1, int(np.ceil(max(h, w) / 1024)))
    xs, ys = np.arange(0, w, step) + 0.5, np.arange(0, h, step) + 0.5
    ix, iy = np.searchsorted(cuts[1], xs) - 1, np.searchsorted(cuts[0], ys) - 1
    okx, oky = (ix >= 0) & (ix < nat.shape[1]), (iy >= 0) & (iy < nat.shape[0])
    if not okx.any() or not oky.any():
        return 0.0, 1.0, 1.0
    sub = rgba[np.ix_(np.arange(0, h, step)[oky], np.arange(0, w, step)[okx])].astype(np.int16)
    rec = nat[np.ix_(iy[oky], ix[okx])].astype(np.int16)
    opaque = sub[..., 3] >= 128
    res = np.abs(sub[..., :3] - rec[..., :3]).max(-1)
    cxs, cys = cuts[1], cuts[0]
    fx = (xs[okx] - cxs[ix[okx]]) / (cxs[ix[okx] + 1] - cxs[ix[okx]])
    fy = (ys[oky] - cys[iy[oky]]) / (cys[iy[oky] + 1] - cys[iy[oky]])
    centre = ((fy > 0.25) & (fy < 0.75))[:, None] & ((fx > 0.25) & (fx < 0.75))[None, :] & opaque
    err = float((res[opaque] > 32).mean()) if opaque.any() else 0.0
    noise = float((res[centre] > 8).mean()) if centre.any() else 0.0
    return float(contrast), err, noise


def detect_native(rgba: np.ndarray) -> PixelResult:
    """The native sprite, background kept as it is (no colour made transparent), by the pixel engine's one
    rule (`pipelines.pixel.native.native_sprite`): an exact integer upscale is read back exactly, clean
    native art comes back unchanged, anything else goes through the engine.

    An unexpected failure inside the engine becomes a DatasetError naming it, so one odd image is a
    skipped file with a reason, never a crashed import."""
    try:
        return native_sprite(rgba)
    except PixelImageError:
        raise
    except Exception as e:
        raise DatasetError(f"the pixel engine could not find its native sprite ({type(e).__name__}: {e})") from e


def check_image(rgba: np.ndarray, result: PixelResult | None = None, source_format: str | None = None
                ) -> tuple[str, ...]:
    """Problems of one image as 'code: explanation' strings (codes: too-small, too-large,
    not-pixel-art, jpeg-source, jpeg-artefacts, mostly-empty). Nothing is changed.

    result: the image's `detect_native` result, if already computed. source_format: Pillow's format
    name of the file ("JPEG" marks a lossy source).
    """
    rgba = np.asarray(rgba)
    result = result if result is not None else detect_native(rgba)
    h, w = rgba.shape[:2]
    nw, nh = result.image.size
    out: list[str] = []
    if min(nw, nh) < MIN_NATIVE_SIDE:
        out.append(f"too-small: the native sprite is {nw}x{nh} px (under {MIN_NATIVE_SIDE} px)")
    if max(nw, nh) > MAX_NATIVE_SIDE:
        out.append(f"too-large: the native sprite is {nw}x{nh} px (over {MAX_NATIVE_SIDE} px)")
    elif max(w, h) > MAX_INPUT_SIDE:
        out.append(f"too-large: the image is {w}x{h} px (over {MAX_INPUT_SIDE} px)")
    if (source_format or "").upper() in ("JPEG", "MPO"):
        out.append("jpeg-source: saved as JPEG, a lossy format that damages pixel edges and colours")
    # an exact integer upscale has a perfect lattice by construction: nothing to measure
    if not result.native_input and not result.info.get("exact"):
        contrast, err, noise = _lattice_measures(rgba, result)
        if contrast < GRID_CONTRAST_MIN or err > RECON_ERROR_MAX:
            out.append(f"not-pixel-art: no clean pixel grid (edge contrast {contrast:.1f}, "
                       f"{err:.0%} of pixels off their cell colour)")
        elif noise > CELL_NOISE_MAX:
            out.append(f"jpeg-artefacts: {noise:.0%} of cell centres are noisy (JPEG blocks or noise)")
    transparent = float((rgba[..., 3] < 128).mean())
    if transparent > MOSTLY_EMPTY:
        out.append(f"mostly-empty: {transparent:.0%} of the image is transparent")
    return tuple(out)


def count_colours(rgba: np.ndarray) -> int:
    """How many distinct RGB colours the opaque pixels use."""
    opaque = rgba[rgba[..., 3] >= 128][:, :3].astype(np.uint32)
    if not len(opaque):
        return 0
    return int(np.unique((opaque[:, 0] << 16) | (opaque[:, 1] << 8) | opaque[:, 2]).size)


def find_duplicates(records: Sequence[ImageRecord], threshold: int = NEAR_DUPLICATE_BITS) -> list[DuplicateGroup]:
    """Exact duplicates (same pixels) and near duplicates (native-sprite phash within `threshold` bits).

    Near groups are connected components of "looks like", so A~B~C is one group. A near group that is
    only copies of one picture is already an exact group and is not repeated. Natives under 4 px a side
    (failed detections, flagged too-small anyway) all hash alike and are left out of near groups.
    """
    groups: list[DuplicateGroup] = []
    by_sha: dict[str, list[str]] = {}
    for r in records:
        by_sha.setdefault(r.sha256, []).append(r.file)
    groups += [DuplicateGroup("exact", tuple(v)) for v in by_sha.values() if len(v) > 1]
    n = len(records)
    if n < 2:
        return groups
    hashes = np.array([int(r.phash, 16) for r in records], dtype=np.uint64)
    usable = [min(r.native_size) >= 4 for r in records]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i0 in range(0, n, 256):  # blocks of rows: memory stays O(256 n) however large the set
        close = np.bitwise_count(hashes[i0:i0 + 256, None] ^ hashes[None, :]) <= threshold
        for i, j in zip(*np.nonzero(close), strict=True):
            if i0 + i < j and usable[i0 + i] and usable[j]:
                parent[root(int(i0 + i))] = root(int(j))
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(root(i), []).append(i)
    for members in comps.values():
        if len(members) > 1 and len({records[i].sha256 for i in members}) > 1:
            groups.append(DuplicateGroup("near", tuple(records[i].file for i in members)))
    return groups


def dataset_warnings(records: Sequence[ImageRecord]) -> list[str]:
    """Set-level problems: a mix of fully opaque and transparent images teaches the LoRA two
    background styles at once."""
    inc = [r for r in records if r.include]
    opaque = sum(1 for r in inc if not r.has_alpha)
    if inc and 0 < opaque < len(inc):
        return [f"alpha-mix: {opaque} image(s) are fully opaque and {len(inc) - opaque} have transparency; "
                "pick one background style (or set one background colour in prepare)"]
    return []
