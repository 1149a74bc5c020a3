"""Pixel-art LoRA training sets: import, check, caption and prepare images for SDXL.

Why this shape:
- A dataset is a plain folder a person can open and fix by hand::

      <root>/<name>/dataset.toml      name, trigger word, class word, notes, created
      <root>/<name>/dataset.json      the index: one ImageRecord per image (include flag, problems ...)
      <root>/<name>/images/<stem>.*   the imported originals (safe unique names) + <stem>.txt captions
      <root>/<name>/native/<stem>.png the native-resolution sprite the pixel engine found in each image
      <root>/<name>/captions.undo.json the captions before the last bulk edit (undo survives a restart)

  The `.txt` beside each image is the caption's source of truth (kohya and most trainers read it), so a
  caption edited in a text editor wins over the index on the next open.
- Every write is atomic (temp file + os.replace): a crash or a bad upload never leaves half a file.
- Problems are listed, never silently fixed: a person decides what to exclude.
- Training images are made from the NATIVE sprite enlarged by an integer factor with nearest neighbour;
  any other resampling smears the pixel grid the LoRA is supposed to learn.
- No database here: the studio mirrors `records` into DuckDB itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import os
import re
import threading
import tomllib
import uuid
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from scipy import fft as sfft

from pipelines.pixel import PixelImageError, PixelParams, PixelResult, load_frames, load_rgba, pixelate
from pipelines.pixel.color import parse_hex
from pipelines.pixel.grid import uniform_cuts
from studio.files import atomic_write_bytes

SDXL_BUCKETS: tuple[tuple[int, int], ...] = (
    (1024, 1024), (896, 1152), (1152, 896), (832, 1216), (1216, 832), (768, 1344), (1344, 768),
)
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
IMPORT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
MAX_FILE_BYTES = 64 * 1024 * 1024  # one image file
MAX_ZIP_BYTES = 1024 * 1024 * 1024  # all entries of one zip, uncompressed
MAX_ZIP_ENTRIES = 20_000
MAX_FRAMES = 256  # frames taken from one animated file
MIN_NATIVE_SIDE = 8
MAX_NATIVE_SIDE = 2048
MAX_INPUT_SIDE = 4096  # larger images are imported with a too-large problem
MAX_IMPORT_SIDE = 16384  # larger images are refused at import, from the header (memory)
MOSTLY_EMPTY = 0.90  # share of transparent pixels above which an image is "mostly empty"
NEAR_DUPLICATE_BITS = 6  # perceptual-hash Hamming distance at or below which two sprites look alike
# "no clean grid": edges must sit on the lattice (near/far edge strength) and the cells must be flat
GRID_CONTRAST_MIN = 1.6
RECON_ERROR_MAX = 0.35
CELL_NOISE_MAX = 0.10  # share of cell-centre pixels off their cell colour by > 8 levels (JPEG ringing)

INDEX_FILE, META_FILE, UNDO_FILE = "dataset.json", "dataset.toml", "captions.undo.json"


Progress = Callable[[int, int, str], None]


class DatasetError(ValueError):
    """A dataset operation that cannot be done; str(e) says why in words a person can act on."""


# ----------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------
def _check_word(what: str, v: str, allow_empty: bool = True) -> None:
    if not isinstance(v, str):
        raise DatasetError(f"{what} must be text, got {v!r}")
    if not v.strip() and not allow_empty:
        raise DatasetError(f"{what} must not be empty")
    if len(v) > 64 or any(c in v for c in ",/\\\n\r\t") or v != v.strip():
        raise DatasetError(f"{what} must be at most 64 characters without commas, slashes or line breaks: {v!r}")


def check_name(name: str) -> str:
    """A dataset name is also a folder name: `[a-z0-9][a-z0-9_-]{0,63}` (no dots, so no path escapes)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DatasetError(
            f"dataset name {name!r} is not allowed: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class DatasetMeta:
    """What `dataset.toml` holds."""

    name: str
    trigger: str = ""
    class_word: str = "sprite"
    notes: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_word("trigger word", self.trigger)
        _check_word("class word", self.class_word, allow_empty=False)
        if not isinstance(self.notes, str):
            raise DatasetError("notes must be text")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset. `file` is its name in images/; `sha256` hashes the decoded RGBA pixels
    (not the file bytes), so the same picture saved with other PNG settings is still an exact duplicate.
    `phash` (16 hex digits) is a DCT hash of the NATIVE sprite, so scale does not change it."""

    file: str
    sha256: str
    width: int
    height: int
    n_colours: int
    native_scale: float
    native_size: tuple[int, int]
    has_alpha: bool
    opaque_fraction: float
    phash: str
    caption: str = ""
    include: bool = True
    problems: tuple[str, ...] = ()
    source: str = ""  # the name it was imported from (folder-relative path, zip entry or upload)

    def __post_init__(self) -> None:
        if not isinstance(self.file, str) or not self.file or "/" in self.file or "\\" in self.file \
                or self.file.startswith("."):
            raise DatasetError(f"record file must be a plain file name, got {self.file!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise DatasetError(f"sha256 must be 64 hex digits, got {self.sha256!r}")
        if not re.fullmatch(r"[0-9a-f]{16}", str(self.phash)):
            raise DatasetError(f"phash must be 16 hex digits, got {self.phash!r}")
        object.__setattr__(self, "native_size", tuple(int(v) for v in self.native_size))
        object.__setattr__(self, "problems", tuple(str(p) for p in self.problems))
        if len(self.native_size) != 2 or min(self.native_size) < 1 or min(self.width, self.height) < 1:
            raise DatasetError(f"{self.file}: sizes must be positive")
        if not 0.0 <= float(self.opaque_fraction) <= 1.0:
            raise DatasetError(f"{self.file}: opaque_fraction must be within 0..1")
        if float(self.native_scale) <= 0:
            raise DatasetError(f"{self.file}: native_scale must be positive")
        if not isinstance(self.caption, str) or not isinstance(self.include, bool):
            raise DatasetError(f"{self.file}: caption must be text and include true/false")

    @property
    def stem(self) -> str:
        return Path(self.file).stem

    @property
    def problem_codes(self) -> tuple[str, ...]:
        return tuple(problem_code(p) for p in self.problems)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["native_size"], d["problems"] = list(self.native_size), list(self.problems)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ImageRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def problem_code(problem: str) -> str:
    """'too-small: ...' -> 'too-small' (problems are 'code: explanation')."""
    return problem.split(":", 1)[0]


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # "exact" | "near"
    files: tuple[str, ...]


@dataclass(frozen=True)
class ImportReport:
    added: tuple[ImageRecord, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    duplicates: tuple[DuplicateGroup, ...] = ()

    def summary(self) -> str:
        return f"added {len(self.added)}, skipped {len(self.skipped)}, duplicate groups {len(self.duplicates)}"


# ----------------------------------------------------------------------------------------
# small file helpers
# ----------------------------------------------------------------------------------------
def write_atomic(dst: Path, data: bytes | str) -> None:
    """dst is either the complete new content or untouched (temp file in the same folder + os.replace)."""
    atomic_write_bytes(dst, data.encode("utf-8") if isinstance(data, str) else data)


def _png_bytes(img: Image.Image | np.ndarray) -> bytes:
    im = Image.fromarray(np.ascontiguousarray(img, np.uint8)) if isinstance(img, np.ndarray) else img
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes


def slug(name: str, max_len: int = 48) -> str:
    """A file-name stem anyone's filesystem accepts: 'Red Slime (idle) 01' -> 'red_slime_idle_01'."""
    s = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_-")
    s = re.sub(r"_{2,}", "_", s)[:max_len].strip("_-")
    return s or "image"


# ----------------------------------------------------------------------------------------
# image analysis
# ----------------------------------------------------------------------------------------
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


def _axis_lattice(changes: np.ndarray) -> tuple[int, int] | None:
    """(period, phase) of the positions where an axis' lines change, or None when nothing changes."""
    pos = np.flatnonzero(changes) + 1
    if not len(pos):
        return None
    k = int(np.gcd.reduce(np.diff(pos))) if len(pos) > 1 else int(pos[0])
    return k, int(pos[0] % k)


def exact_upscale(rgba: np.ndarray) -> PixelResult | None:
    """The native sprite of an image that is an EXACT integer nearest-neighbour enlargement (every k x k
    block one colour, blocks aligned to one lattice, edge blocks may be cut), or None.

    This is how most people store pixel art (x2 .. x16 exports), and it is recognised exactly, without
    the engine's lattice search, which can misread small sprites with large flat or transparent areas.
    Anything else (k = 1, smoothing, noise, JPEG) returns None and goes to the engine."""
    a = np.asarray(rgba)
    h, w = a.shape[:2]
    lat_x = _axis_lattice(np.any(a[:, 1:] != a[:, :-1], axis=(0, 2)))
    lat_y = _axis_lattice(np.any(a[1:] != a[:-1], axis=(1, 2)))
    if lat_x is None and lat_y is None:
        return None  # one flat colour: no lattice to see
    k = int(np.gcd(lat_x[0] if lat_x else 0, lat_y[0] if lat_y else 0))
    if k < 2:
        return None
    starts = []
    for lat, n in ((lat_x, w), (lat_y, h)):
        o = lat[1] % k if lat else 0
        starts.append(np.unique(np.r_[0, np.arange(o, n, k)]))
    xs, ys = starts
    nat = a[np.ix_(ys, xs)].copy()
    opaque = nat[..., 3] >= 128
    nat[..., 3] = np.where(opaque, 255, 0)
    nat[~opaque, :3] = 0
    used = np.unique(nat[opaque][:, :3], axis=0) if opaque.any() else np.zeros((0, 3), np.uint8)
    phase = (float(xs[1] % k) if len(xs) > 1 else 0.0, float(ys[1] % k) if len(ys) > 1 else 0.0)
    return PixelResult(image=Image.fromarray(nat, "RGBA"), cell=(float(k), float(k)),
                       grid_size=(len(xs), len(ys)), palette=used.astype(np.uint8),
                       info={"phase": phase, "exact": True})


def detect_native(rgba: np.ndarray) -> PixelResult:
    """The native sprite, background kept as it is (no colour made transparent): an exact integer
    upscale is read back exactly (`exact_upscale`); anything else goes to the pixel engine.

    An unexpected failure inside the engine becomes a DatasetError naming it, so one odd image is a
    skipped file with a reason, never a crashed import."""
    exact = exact_upscale(np.asarray(rgba))
    if exact is not None:
        return exact
    try:
        return pixelate(rgba, PixelParams(background="keep"))
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


def _count_colours(rgba: np.ndarray) -> int:
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


# ----------------------------------------------------------------------------------------
# the dataset folder
# ----------------------------------------------------------------------------------------
def list_datasets(root: str | os.PathLike) -> list[str]:
    """Names of the datasets under root (folders with a dataset.toml), sorted."""
    r = Path(root)
    if not r.is_dir():
        return []
    return sorted(p.name for p in r.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name)
                  and (p / META_FILE).is_file())


def _sheet_cells(rgba: np.ndarray, split: tuple[int, int] | None, cell: tuple[int, int] | None
                 ) -> list[tuple[int, int, np.ndarray]]:
    """Cut a sheet into (row, col, cell) pieces; empty cells (nothing opaque, or one flat colour) are
    left out. Raises DatasetError when the grid does not fit the image."""
    h, w = rgba.shape[:2]
    if split is not None:
        cols, rows = (int(v) for v in split)
        if cols < 1 or rows < 1:
            raise DatasetError(f"split must be (columns, rows) of at least 1, got {split!r}")
        if w % cols or h % rows:
            raise DatasetError(f"a {w}x{h} sheet does not divide into {cols}x{rows} equal cells")
        cw, ch = w // cols, h // rows
    else:
        cw, ch = (int(v) for v in cell)  # type: ignore[union-attr]
        if cw < 1 or ch < 1 or w % cw or h % ch:
            raise DatasetError(f"a {w}x{h} sheet does not divide into {cw}x{ch} px cells")
    out = []
    for r in range(h // ch):
        for c in range(w // cw):
            piece = rgba[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw]
            vis = piece[..., 3] >= 128
            if not vis.any():
                continue
            flat = piece.reshape(-1, 4)
            if np.all(flat == flat[0]):
                continue
            out.append((r, c, np.ascontiguousarray(piece)))
    return out


class Dataset:
    """A handle on one dataset folder. Records are frozen; edits replace them and save the index at once,
    so every edit survives a restart."""

    def __init__(self, path: Path, meta: DatasetMeta, records: Iterable[ImageRecord] = ()):
        self.path = path
        self.meta = meta
        self._records: dict[str, ImageRecord] = {r.file: r for r in records}
        self._lock = threading.RLock()  # one handle may be shared by several UI events

    # --- create / open --------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, name: str, trigger: str = "", class_word: str = "sprite",
               notes: str = "") -> Dataset:
        meta = DatasetMeta(check_name(name), trigger, class_word, notes,
                           datetime.now(UTC).isoformat(timespec="seconds"))
        path = Path(root) / name
        if (path / META_FILE).exists():
            raise DatasetError(f"a dataset named {name!r} already exists in {root}")
        (path / "images").mkdir(parents=True, exist_ok=True)
        (path / "native").mkdir(exist_ok=True)
        ds = cls(path, meta)
        ds._save_meta()
        ds._save_index()
        return ds

    @classmethod
    def open(cls, root: str | os.PathLike, name: str) -> Dataset:
        path = Path(root) / check_name(name)
        if not (path / META_FILE).is_file():
            raise DatasetError(f"no dataset named {name!r} in {root}")
        try:
            m = tomllib.loads((path / META_FILE).read_text("utf-8"))
            meta = DatasetMeta(name, m.get("trigger", ""), m.get("class_word", "sprite"), m.get("notes", ""),
                               str(m.get("created", "")))
        except (tomllib.TOMLDecodeError, OSError, TypeError) as e:
            raise DatasetError(f"{path / META_FILE} cannot be read: {e}") from None
        records: list[ImageRecord] = []
        if (path / INDEX_FILE).is_file():
            try:
                data = json.loads((path / INDEX_FILE).read_text("utf-8"))
                records = [ImageRecord.from_dict(d) for d in data.get("records", [])]
            except (json.JSONDecodeError, OSError, TypeError, AttributeError) as e:
                raise DatasetError(f"{path / INDEX_FILE} cannot be read: {e}") from None
        ds = cls(path, meta, records)
        for r in list(ds._records.values()):
            txt = ds.caption_path(r.file)
            cap = txt.read_text("utf-8").strip() if txt.is_file() else r.caption  # the .txt wins
            # files deleted by hand are reported, not silently dropped
            problems = [q for q in r.problems if problem_code(q) != "missing-file"]
            gone = [p.name for p in (path / "images" / r.file, path / "native" / f"{r.stem}.png") if not p.is_file()]
            if gone:
                problems.append(f"missing-file: {', '.join(gone)} no longer on disk")
            if cap != r.caption or tuple(problems) != r.problems:
                ds._records[r.file] = dataclasses.replace(r, caption=cap, problems=tuple(problems))
        return ds

    # --- paths and records -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def records(self) -> tuple[ImageRecord, ...]:
        return tuple(self._records.values())

    def record(self, file: str) -> ImageRecord:
        try:
            return self._records[file]
        except KeyError:
            raise DatasetError(f"{file!r} is not in dataset {self.name!r}") from None

    def image_path(self, file: str) -> Path:
        return self.path / "images" / self.record(file).file

    def native_path(self, file: str) -> Path:
        return self.path / "native" / f"{self.record(file).stem}.png"

    def caption_path(self, file: str) -> Path:
        return self.path / "images" / f"{Path(file).stem}.txt"

    def native_image(self, file: str) -> Image.Image:
        with Image.open(self.native_path(file)) as im:
            return im.convert("RGBA")

    # --- saving ------------------------------------------------------------------------
    def _save_meta(self) -> None:
        m = self.meta
        write_atomic(self.path / META_FILE, "".join(
            f"{k} = {_toml_str(v)}\n" for k, v in
            (("name", m.name), ("trigger", m.trigger), ("class_word", m.class_word), ("notes", m.notes),
             ("created", m.created))))

    def _save_index(self) -> None:
        data = {"version": 1, "name": self.name, "records": [r.to_dict() for r in self._records.values()]}
        write_atomic(self.path / INDEX_FILE, json.dumps(data, indent=1, ensure_ascii=False))

    def update_meta(self, **changes: str) -> DatasetMeta:
        """Change trigger, class word or notes (not the name)."""
        unknown = set(changes) - {"trigger", "class_word", "notes"}
        if unknown:
            raise DatasetError(f"only trigger, class_word and notes can be changed, not {', '.join(sorted(unknown))}")
        self.meta = dataclasses.replace(self.meta, **changes)
        self._save_meta()
        return self.meta

    def _put(self, records: Iterable[ImageRecord], write_captions: bool = True) -> None:
        with self._lock:
            for r in records:
                if write_captions and (not self.caption_path(r.file).is_file()
                                       or self._records.get(r.file, r).caption != r.caption):
                    write_atomic(self.caption_path(r.file), r.caption)
                self._records[r.file] = r
            self._save_index()

    def set_include(self, file: str, include: bool) -> ImageRecord:
        r = dataclasses.replace(self.record(file), include=bool(include))
        self._put([r], write_captions=False)
        return r

    def set_caption(self, file: str, caption: str) -> ImageRecord:
        r = dataclasses.replace(self.record(file), caption=str(caption).strip())
        self._put([r])
        return r

    def remove(self, file: str) -> None:
        """Drop an image and its native sprite and caption from the dataset."""
        with self._lock:
            rec = self.record(file)
            for p in (self.path / "images" / rec.file, self.native_path(file), self.caption_path(file)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            del self._records[file]
            self._refresh_duplicate_problems()
            self._save_index()

    # --- import ------------------------------------------------------------------------
    def import_folder(self, folder: str | os.PathLike, split: tuple[int, int] | None = None,
                      cell: tuple[int, int] | None = None, recursive: bool = True, frames: bool = True,
                      progress: Progress | None = None) -> ImportReport:
        """Import every image under a folder; a `<stem>.txt` beside an image becomes its caption.

        split=(columns, rows) or cell=(w, h) cuts every image as a sprite sheet (empty cells are left
        out); frames=True imports every frame of an animated GIF/WebP/APNG. progress(done, total, name)
        is called after each file."""
        base = Path(folder)
        if not base.is_dir():
            raise DatasetError(f"{folder} is not a folder")
        files = sorted(p for p in (base.rglob("*") if recursive else base.iterdir()) if p.is_file())
        return self._import(((p.relative_to(base).as_posix(), _file_reader(p)) for p in files), split, cell,
                            frames, progress)

    def import_files(self, paths: Sequence[str | os.PathLike], split: tuple[int, int] | None = None,
                     cell: tuple[int, int] | None = None, frames: bool = True,
                     progress: Progress | None = None) -> ImportReport:
        """Import uploads (a list of file paths); a zip among them is imported entry by entry. Options as
        in `import_folder`."""
        paths = [Path(p) for p in paths]
        zips = [p for p in paths if p.suffix.lower() == ".zip"]
        items = [(p.name, _file_reader(p)) for p in paths if p.suffix.lower() != ".zip"]
        report = self._import(items, split, cell, frames, progress)
        for z in zips:
            report = _merge(report, self.import_zip(z, split, cell, frames, progress))
        return report

    def import_zip(self, zip_path: str | os.PathLike, split: tuple[int, int] | None = None,
                   cell: tuple[int, int] | None = None, frames: bool = True,
                   progress: Progress | None = None) -> ImportReport:
        """Import the images of a zip. Nothing is extracted by the zip's own names (entries are read into
        memory and renamed), entries that try to escape ('../', absolute paths) are refused, and sizes
        are limited per entry, in total and in count."""
        try:
            zf = zipfile.ZipFile(zip_path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(f"{Path(zip_path).name} is not a readable zip file ({e})") from None
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_ZIP_ENTRIES:
                raise DatasetError(f"{Path(zip_path).name} has {len(infos)} entries (at most {MAX_ZIP_ENTRIES})")
            skipped, items, total = [], [], 0
            for info in infos:
                why = _unsafe_zip_name(info.filename)
                if why:
                    skipped.append(Skipped(info.filename, why))
                    continue
                if info.file_size > MAX_FILE_BYTES:
                    skipped.append(Skipped(info.filename, f"larger than {MAX_FILE_BYTES // 2**20} MiB"))
                    continue
                total += info.file_size
                if total > MAX_ZIP_BYTES:
                    skipped.append(Skipped(info.filename, f"the zip holds over {MAX_ZIP_BYTES // 2**20} MiB"))
                    continue
                items.append((info.filename, _zip_reader(zf, info)))
            rep = self._import(items, split, cell, frames, progress)
        return dataclasses.replace(rep, skipped=tuple(skipped) + rep.skipped)

    def _import(self, items: Iterable[tuple[str, Callable[[], bytes]]], split: tuple[int, int] | None,
                cell: tuple[int, int] | None, frames_too: bool = True, progress: Progress | None = None
                ) -> ImportReport:
        if split is not None and cell is not None:
            raise DatasetError("give either split=(columns, rows) or cell=(w, h), not both")
        items = list(items)
        with self._lock:
            return self._import_locked(items, split, cell, frames_too, progress)

    def _import_locked(self, items: list[tuple[str, Callable[[], bytes]]], split: tuple[int, int] | None,
                       cell: tuple[int, int] | None, frames_too: bool, progress: Progress | None) -> ImportReport:
        names = {n.lower() for n, _ in items}
        captions = {n.lower(): r for n, r in items if n.lower().endswith(".txt")}
        added: list[ImageRecord] = []
        skipped: list[Skipped] = []
        seen = {r.sha256: r.file for r in self._records.values()}
        exact: list[DuplicateGroup] = []  # copies refused at import
        try:
            for i, (src, read) in enumerate(items):
                ext = PurePosixPath(src).suffix.lower()
                if ext == ".txt" and any(str(PurePosixPath(src.lower()).with_suffix(e)) in names
                                         for e in IMPORT_EXTENSIONS):
                    continue  # a caption beside an image: read with the image
                if ext not in IMPORT_EXTENSIONS:
                    skipped.append(Skipped(src, f"not a supported image type ({ext or 'no extension'}); "
                                                f"use {', '.join(IMPORT_EXTENSIONS)}"))
                    continue
                try:
                    raw = read()
                    if len(raw) > MAX_FILE_BYTES:
                        raise DatasetError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
                    fmt, n_frames = _format_of(raw)
                    frames = (load_frames(raw, MAX_FRAMES) if n_frames > 1 and frames_too else [load_rgba(raw)])
                    pieces = _pieces(frames, split, cell)
                except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error,
                        zipfile.BadZipFile) as e:  # unreadable file or zip entry: a reason, never a crash
                    skipped.append(Skipped(src, str(e)))
                    continue
                cap_src = str(PurePosixPath(src.lower()).with_suffix(".txt"))
                caption = ""
                if cap_src in captions:
                    with contextlib.suppress(OSError, UnicodeDecodeError, RuntimeError, DatasetError):
                        caption = captions[cap_src]().decode("utf-8").strip()
                for tag, px in pieces:
                    label = f"{src}#{tag}" if tag else src
                    sha = pixel_sha256(px)
                    if sha in seen:
                        skipped.append(Skipped(label, f"exact duplicate of {seen[sha]}"))
                        exact.append(DuplicateGroup("exact", (seen[sha], label)))
                        continue
                    try:
                        rec = self._add(src, tag, px, None if tag else raw, fmt, sha, caption)
                    except (PixelImageError, ValueError, OSError) as e:
                        skipped.append(Skipped(label, str(e)))
                        continue
                    seen[sha] = rec.file
                    added.append(rec)
                if progress is not None:
                    progress(i + 1, len(items), src)
        finally:
            self._refresh_duplicate_problems()
            self._save_index()
        added = [self._records[r.file] for r in added]
        new = {r.file for r in added}
        dups = [g for g in find_duplicates(self.records) if new & set(g.files)]
        return ImportReport(tuple(added), tuple(skipped), tuple(exact + dups))

    def _unique_stem(self, want: str) -> str:
        taken = {r.stem for r in self._records.values()}
        stem, i = want, 2
        while stem in taken or (self.path / "images" / f"{stem}.txt").exists():
            stem, i = f"{want}-{i}", i + 1
        return stem

    def _add(self, src: str, tag: str, rgba: np.ndarray, raw: bytes | None,
             fmt: str | None, sha: str, caption: str) -> ImageRecord:
        """Analyse one image (a file, or a frame / sheet cell of one: tag 'f1', 'r0c2', 'f1_r0c2') and write
        original, native sprite and caption; on any failure nothing of it is left behind."""
        try:
            result = detect_native(rgba)
            problems = check_image(rgba, result, fmt)
            nat = np.asarray(result.image)
            hashed = phash(nat)
        except (DatasetError, PixelImageError):
            raise
        except Exception as e:  # an analysis bug must cost one image, not the whole import
            raise DatasetError(f"the image could not be analysed ({type(e).__name__}: {e})") from e
        stem = self._unique_stem(slug(PurePosixPath(src).stem) + (f"_{tag}" if tag else ""))
        ext = {"JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}.get(fmt or "", ".png")
        if raw is None or ext == ".png" and fmt != "PNG":
            raw, ext = _png_bytes(rgba), ".png"
        rec = ImageRecord(
            file=f"{stem}{ext}", sha256=sha, width=rgba.shape[1], height=rgba.shape[0],
            n_colours=_count_colours(rgba), native_scale=round(float(np.mean(result.cell)), 2),
            native_size=result.image.size, has_alpha=bool((rgba[..., 3] < 255).any()),
            opaque_fraction=round(float((rgba[..., 3] >= 128).mean()), 4), phash=hashed,
            caption=caption, problems=problems, source=f"{src}#{tag}" if tag else src,
        )
        written: list[Path] = []
        try:
            for dst, data in ((self.path / "images" / rec.file, raw), (self.path / "native" / f"{stem}.png",
                                                                        _png_bytes(nat)),
                              (self.caption_path(rec.file), caption.encode("utf-8"))):
                write_atomic(dst, data)
                written.append(dst)
        except BaseException:
            for p in written:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
        self._records[rec.file] = rec
        return rec

    def _refresh_duplicate_problems(self) -> None:
        """Recompute the set-level duplicate problems of every record (they change as images come and go)."""
        extra: dict[str, list[str]] = {}
        for g in find_duplicates(self.records):
            first = g.files[0]
            for f in g.files[1:]:
                what = "same pixels as" if g.kind == "exact" else "looks like"
                code = "duplicate" if g.kind == "exact" else "near-duplicate"
                extra.setdefault(f, []).append(f"{code}: {what} {first}")
        for f, r in list(self._records.items()):
            kept = [p for p in r.problems if problem_code(p) not in ("duplicate", "near-duplicate")]
            new = tuple(kept + extra.get(f, []))
            if new != r.problems:
                self._records[f] = dataclasses.replace(r, problems=new)

    # --- checks ------------------------------------------------------------------------
    def warnings(self) -> list[str]:
        return dataset_warnings(self.records)

    def duplicates(self, threshold: int = NEAR_DUPLICATE_BITS) -> list[DuplicateGroup]:
        return find_duplicates(self.records, threshold)


def _file_reader(p: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise DatasetError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        return p.read_bytes()
    return read


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zf.open(info) as f:
                data = f.read(MAX_FILE_BYTES + 1)  # never trust the header's size
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
            raise DatasetError(f"the zip entry is damaged and cannot be unpacked ({e})") from None
        except RuntimeError as e:  # encrypted entries
            raise DatasetError(f"the zip entry cannot be read ({e})") from None
        if len(data) > MAX_FILE_BYTES:
            raise DatasetError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        return data
    return read


def _unsafe_zip_name(name: str) -> str | None:
    n = name.replace("\\", "/")
    parts = PurePosixPath(n).parts
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n) or ".." in parts:
        return "unsafe path in the zip (it points outside the archive); refused"
    if parts and parts[0] == "__MACOSX" or PurePosixPath(n).name.startswith("."):
        return "hidden or macOS metadata file"
    return None


def _format_of(raw: bytes) -> tuple[str | None, int]:
    """Pillow's format name and frame count, from the header (load_rgba does the real validation).
    An image over MAX_IMPORT_SIDE px a side is a DatasetError before any pixel is decoded."""
    size = None
    with contextlib.suppress(Exception), Image.open(io.BytesIO(raw)) as im:
        fmt, n, size = im.format, int(getattr(im, "n_frames", 1)), im.size
    if size is None:
        return None, 1
    if max(size) > MAX_IMPORT_SIDE:
        raise DatasetError(f"the image is {size[0]}x{size[1]} px; at most {MAX_IMPORT_SIDE} px a side can be "
                           "imported (scale it down to its native pixels first)")
    return fmt, n


def _pieces(frames: list[np.ndarray], split: tuple[int, int] | None, cell: tuple[int, int] | None
            ) -> list[tuple[str, np.ndarray]]:
    """(tag, image) for every frame of an animation and every non-empty cell of a sheet; tag '' for a
    plain single image."""
    out = []
    for i, f in enumerate(frames):
        ftag = f"f{i}" if len(frames) > 1 else ""
        if split is None and cell is None:
            out.append((ftag, f))
            continue
        for r, c, p in _sheet_cells(f, split, cell):
            out.append(("_".join(t for t in (ftag, f"r{r}c{c}") if t), p))
    if not out:
        raise DatasetError("every cell of the sheet is empty")
    return out


def _merge(a: ImportReport, b: ImportReport) -> ImportReport:
    return ImportReport(a.added + b.added, a.skipped + b.skipped, a.duplicates + b.duplicates)


# ----------------------------------------------------------------------------------------
# captions: bulk edits with one level of undo that survives a restart
# ----------------------------------------------------------------------------------------
def _targets(ds: Dataset, files: Iterable[str] | None) -> list[ImageRecord]:
    return list(ds.records) if files is None else [ds.record(f) for f in files]


def _bulk(ds: Dataset, op: str, fn: Callable[[ImageRecord], str], files: Iterable[str] | None) -> str:
    """Set every target's caption to fn(record), first saving the old captions to captions.undo.json (so
    undo survives a restart). Returns the undo token."""
    with ds._lock:
        recs = _targets(ds, files)
        token = uuid.uuid4().hex[:12]
        old = {r.file: r.caption for r in recs}
        new = [dataclasses.replace(r, caption=_tidy(fn(r))) for r in recs]  # fails before anything is written
        write_atomic(ds.path / UNDO_FILE, json.dumps({"token": token, "op": op, "captions": old},
                                                     ensure_ascii=False))
        ds._put(new)
    return token


def _tidy(caption: str) -> str:
    return re.sub(r"\s+", " ", caption).strip().strip(",").strip()


def _join(a: str, b: str, sep: str) -> str:
    return a if not b.strip() else b if not a.strip() else f"{a}{sep}{b}"


def caption_prepend(ds: Dataset, text: str, files: Iterable[str] | None = None, sep: str = ", ") -> str:
    return _bulk(ds, "prepend", lambda r: _join(text, r.caption, sep), files)


def caption_append(ds: Dataset, text: str, files: Iterable[str] | None = None, sep: str = ", ") -> str:
    return _bulk(ds, "append", lambda r: _join(r.caption, text, sep), files)


def caption_replace_all(ds: Dataset, text: str, files: Iterable[str] | None = None) -> str:
    return _bulk(ds, "replace", lambda r: text, files)


def caption_find_replace(ds: Dataset, find: str, replace: str, regex: bool = False,
                         files: Iterable[str] | None = None) -> str:
    """Plain or regular-expression find and replace (a bad pattern is a DatasetError, nothing changes)."""
    if not find:
        raise DatasetError("nothing to find: the search text is empty")
    if regex:
        try:
            pat = re.compile(find)
        except re.error as e:
            raise DatasetError(f"{find!r} is not a valid regular expression: {e}") from None
        try:
            pat.sub(replace, "")
        except (re.error, IndexError) as e:
            raise DatasetError(f"{replace!r} is not a valid replacement: {e}") from None
        return _bulk(ds, "find-replace", lambda r: pat.sub(replace, r.caption), files)
    return _bulk(ds, "find-replace", lambda r: r.caption.replace(find, replace), files)


def caption_ensure_trigger(ds: Dataset, trigger: str | None = None, files: Iterable[str] | None = None) -> str:
    """Make the trigger word the first tag of every caption (moved there if it is elsewhere)."""
    t = (trigger if trigger is not None else ds.meta.trigger).strip()
    if not t:
        raise DatasetError("the dataset has no trigger word; set one first")

    def fix(r: ImageRecord) -> str:
        tags = [x.strip() for x in r.caption.split(",") if x.strip() and x.strip() != t]
        return ", ".join([t, *tags])
    return _bulk(ds, "ensure-trigger", fix, files)


def auto_caption(ds: Dataset, captioner, files: Iterable[str] | None = None, overwrite: bool = False,
                 progress: Progress | None = None) -> str:
    """Caption images with a captioner (anything with `caption(image) -> str`), on the native sprite.
    Existing captions are kept unless overwrite. The trigger word is put first. Undoable as one edit;
    nothing is written until every image is captioned. progress(done, total, file) after each image.

    A native sprite the captioner refuses (a failed detection can leave 1x1 px; the record already says
    too-small) is captioned from the imported original instead; an image neither can caption is a
    DatasetError naming it."""
    recs = [r for r in _targets(ds, files) if overwrite or not r.caption]
    takes_name = "name" in inspect.signature(captioner.caption).parameters

    def run(img: Image.Image, r: ImageRecord) -> str:
        return captioner.caption(img, name=r.source or r.file) if takes_name else captioner.caption(img)

    new: dict[str, str] = {}
    for r in recs:
        try:
            text = run(ds.native_image(r.file), r)
        except (PixelImageError, ValueError) as first:
            try:
                with Image.open(ds.image_path(r.file)) as im:
                    text = run(im.convert("RGBA"), r)
            except (PixelImageError, ValueError, OSError) as e:
                raise DatasetError(f"{r.file} cannot be captioned ({first}; the original: {e})") from e
        t = ds.meta.trigger
        tags = [x.strip() for x in str(text).split(",") if x.strip() and x.strip() != t]
        new[r.file] = ", ".join([t, *tags] if t else tags)
        if progress is not None:
            progress(len(new), len(recs), r.file)
    return _bulk(ds, "auto-caption", lambda r: new[r.file], list(new))


def undo_last(ds: Dataset, token: str | None = None) -> int:
    """Restore the captions from before the last bulk edit; returns how many were restored.
    token: only undo if the last bulk edit is this one (another edit since is an error)."""
    p = ds.path / UNDO_FILE
    with ds._lock:
        if not p.is_file():
            raise DatasetError("there is no caption edit to undo")
        try:
            data = json.loads(p.read_text("utf-8"))
            captions = dict(data["captions"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{p} cannot be read ({e}); the edit cannot be undone") from None
        if token is not None and data.get("token") != token:
            raise DatasetError("another caption edit was made since; only the last one can be undone")
        old = {f: str(c) for f, c in captions.items() if f in ds._records}
        ds._put([dataclasses.replace(ds.record(f), caption=c) for f, c in old.items()])
        p.unlink()
    return len(old)


def tag_frequencies(ds: Dataset, included_only: bool = False) -> dict[str, int]:
    """Comma-separated caption tags -> how many captions use them, most common first."""
    counts: Counter[str] = Counter()
    for r in ds.records:
        if r.include or not included_only:
            counts.update({t.strip() for t in r.caption.split(",") if t.strip()})
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------------------
# prepare for SDXL and export
# ----------------------------------------------------------------------------------------
Background = tuple[int, int, int] | str


def _background(bg: Background) -> tuple[int, int, int] | None:
    """None = transparent; else an RGB colour ((r, g, b) or '#rrggbb')."""
    if isinstance(bg, str):
        if bg.strip().lower() == "transparent":
            return None
        return parse_hex(bg)
    try:
        r, g, b = (int(v) for v in bg)
    except (TypeError, ValueError):
        raise DatasetError(f"background must be (r, g, b), '#rrggbb' or 'transparent', got {bg!r}") from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise DatasetError(f"background colour values must be 0..255, got {bg!r}")
    return (r, g, b)


def choose_bucket(size: tuple[int, int], buckets: Sequence[tuple[int, int]] = SDXL_BUCKETS) -> tuple[int, int]:
    """The bucket closest in aspect ratio (compared as log ratios, so 2:1 and 1:2 are equally far from 1:1)."""
    w, h = size
    if not buckets:
        raise DatasetError("no buckets given")
    return min(buckets, key=lambda b: (abs(np.log(b[0] / b[1]) - np.log(w / h)), -b[0] * b[1]))


@dataclass(frozen=True)
class Prepared:
    image: Image.Image = dataclasses.field(compare=False)
    bucket: tuple[int, int] = (1024, 1024)
    scale: int = 1
    offset: tuple[int, int] = (0, 0)


def prepare_image(native: Image.Image, bucket: tuple[int, int] | None = None,
                  buckets: Sequence[tuple[int, int]] = SDXL_BUCKETS, background: Background = (255, 255, 255),
                  margin: float = 0.0625) -> Prepared:
    """The native sprite scaled by the largest integer factor that fits the bucket minus a margin
    (a share of each side), nearest neighbour only, centred on the background."""
    src = native.convert("RGBA")
    w, h = src.size
    bw, bh = bucket or choose_bucket((w, h), buckets)
    if not 0 <= margin < 0.5:
        raise DatasetError(f"margin must be within 0..0.5, got {margin}")
    k = int(min((bw * (1 - 2 * margin)) // w, (bh * (1 - 2 * margin)) // h))
    if k < 1:
        k = int(min(bw // w, bh // h))
    if k < 1:
        raise DatasetError(f"a {w}x{h} sprite does not fit the {bw}x{bh} bucket")
    a = np.asarray(src).copy()
    bg = _background(background)
    big = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
    ox, oy = (bw - w * k) // 2, (bh - h * k) // 2
    if bg is None:
        canvas = np.zeros((bh, bw, 4), np.uint8)
        canvas[oy:oy + h * k, ox:ox + w * k] = big
        return Prepared(Image.fromarray(canvas, "RGBA"), (bw, bh), k, (ox, oy))
    canvas = np.empty((bh, bw, 3), np.uint8)
    canvas[:] = bg
    region = canvas[oy:oy + h * k, ox:ox + w * k]
    region[:] = np.where(big[..., 3:] >= 128, big[..., :3], region)
    return Prepared(Image.fromarray(canvas, "RGB"), (bw, bh), k, (ox, oy))


def preview_prepared(ds: Dataset, file: str, bucket: tuple[int, int] | None = None,
                     background: Background = (255, 255, 255), margin: float = 0.0625) -> Prepared:
    """What `prepare` will write for one image (for the UI)."""
    return prepare_image(ds.native_image(file), bucket, background=background, margin=margin)


@dataclass(frozen=True)
class PreparedItem:
    file: str
    image: str  # written file name
    caption: str
    bucket: tuple[int, int]
    scale: int


@dataclass(frozen=True)
class PrepareReport:
    folder: Path
    items: tuple[PreparedItem, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def _ready_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise DatasetError(f"{folder} is not empty; choose another folder or allow overwriting")
        for p in folder.iterdir():  # only what prepare itself writes
            if p.is_file() and p.suffix.lower() in (".png", ".txt", ".jsonl"):
                p.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def prepare(ds: Dataset, out_dir: str | os.PathLike, buckets: Sequence[tuple[int, int]] = SDXL_BUCKETS,
            background: Background = (255, 255, 255), repeats: int | None = None, margin: float = 0.0625,
            overwrite: bool = False) -> PrepareReport:
    """Write every included image as a bucket-sized PNG + `.txt` caption into out_dir, or, with repeats,
    into kohya's `out_dir/<repeats>_<trigger> <class>/`."""
    folder = Path(out_dir)
    if repeats is not None:
        if not isinstance(repeats, int) or not 1 <= repeats <= 10_000:
            raise DatasetError(f"repeats must be a whole number from 1 to 10000, got {repeats!r}")
        words = " ".join(w for w in (ds.meta.trigger, ds.meta.class_word) if w)
        folder = folder / f"{repeats}_{words}"
    _background(background)
    _ready_folder(folder, overwrite)
    items, skipped = [], []
    for r in ds.records:
        if not r.include:
            continue
        try:
            p = prepare_image(ds.native_image(r.file), None, buckets, background, margin)
        except (DatasetError, OSError) as e:
            skipped.append(Skipped(r.file, str(e)))
            continue
        name = f"{r.stem}.png"
        write_atomic(folder / name, _png_bytes(p.image))
        write_atomic(folder / f"{r.stem}.txt", r.caption)
        items.append(PreparedItem(r.file, name, r.caption, p.bucket, p.scale))
    return PrepareReport(folder, tuple(items), tuple(skipped))


def export_kohya(ds: Dataset, out_dir: str | os.PathLike, repeats: int = 10,
                 background: Background = (255, 255, 255), overwrite: bool = False) -> PrepareReport:
    """kohya sd-scripts layout: `out_dir/<repeats>_<trigger> <class>/` with images and .txt captions.

    kohya trains every `<n>_...` folder it finds, so with overwrite the folders of earlier exports with
    another repeat count are removed too (only when they hold nothing but .png/.txt files)."""
    if overwrite and Path(out_dir).is_dir():
        for d in Path(out_dir).iterdir():
            files = list(d.iterdir()) if d.is_dir() and re.match(r"^\d+_", d.name) else None
            if files is not None and all(f.is_file() and f.suffix.lower() in (".png", ".txt") for f in files):
                for f in files:
                    f.unlink()
                d.rmdir()
    return prepare(ds, out_dir, background=background, repeats=repeats, overwrite=overwrite)


def export_diffusers(ds: Dataset, out_dir: str | os.PathLike, background: Background = (255, 255, 255),
                     overwrite: bool = False) -> PrepareReport:
    """Hugging Face imagefolder layout: images + metadata.jsonl lines {"file_name": ..., "text": ...}."""
    rep = prepare(ds, out_dir, background=background, overwrite=overwrite)
    for it in rep.items:
        (rep.folder / f"{Path(it.image).stem}.txt").unlink()
    lines = "".join(json.dumps({"file_name": it.image, "text": it.caption}, ensure_ascii=False) + "\n"
                    for it in rep.items)
    write_atomic(rep.folder / "metadata.jsonl", lines)
    return rep


__all__ = [
    "SDXL_BUCKETS", "Dataset", "DatasetError", "DatasetMeta", "DuplicateGroup", "ImageRecord", "ImportReport",
    "Prepared", "PrepareReport", "PreparedItem", "Skipped", "auto_caption", "caption_append",
    "caption_ensure_trigger", "caption_find_replace", "caption_prepend", "caption_replace_all", "check_image",
    "check_name", "choose_bucket", "dataset_warnings", "detect_native", "exact_upscale", "export_diffusers",
    "export_kohya",
    "find_duplicates", "list_datasets", "phash", "prepare", "prepare_image", "preview_prepared",
    "tag_frequencies", "undo_last",
]
