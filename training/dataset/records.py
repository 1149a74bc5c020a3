"""Training-set records and the dataset folder: names, metadata, one ImageRecord per image, and import.

Why this shape:
- A dataset is a plain folder a person can open and fix by hand::

      <root>/<name>/dataset.toml      name, trigger word, class word, notes, created
      <root>/<name>/dataset.json      the index: one ImageRecord per image (include flag, problems ...)
      <root>/<name>/images/<stem>.*   the imported originals (safe unique names) + <stem>.txt captions
      <root>/<name>/native/<stem>.png the native-resolution sprite the pixel engine found in each image
      <root>/<name>/captions.undo.json the captions before the last bulk edit (undo survives a restart)

  The `.txt` beside each image is the caption's source of truth (kohya and most trainers read it), so a
  caption edited in a text editor wins over the index on the next open.
- Every write is atomic (`studio.files`: temp file + os.replace): a crash or a bad upload never leaves half
  a file.
- Import takes files, folders and zips; a zip is read entry by entry into memory under new names, never
  extracted by its own names, and entries that try to escape or are too large are refused with a reason.
- Every image is checked as it comes in (`checks`); problems are listed, never silently fixed.
- No database here: the studio mirrors `records` into DuckDB itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import threading
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from pipelines.pixel import PixelImageError, load_frames, load_rgba
from studio import limits
from studio.files import atomic_write_bytes, atomic_write_text
from training.dataset.checks import (
    NEAR_DUPLICATE_BITS,
    DatasetError,
    DuplicateGroup,
    check_image,
    count_colours,
    dataset_warnings,
    detect_native,
    find_duplicates,
    phash,
    pixel_sha256,
)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
IMPORT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")

INDEX_FILE, META_FILE = "dataset.json", "dataset.toml"


Progress = Callable[[int, int, str], None]


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
class ImportReport:
    added: tuple[ImageRecord, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    duplicates: tuple[DuplicateGroup, ...] = ()

    def summary(self) -> str:
        return f"added {len(self.added)}, skipped {len(self.skipped)}, duplicate groups {len(self.duplicates)}"


# ----------------------------------------------------------------------------------------
# small file helpers
# ----------------------------------------------------------------------------------------
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
        atomic_write_text(self.path / META_FILE, "".join(
            f"{k} = {_toml_str(v)}\n" for k, v in
            (("name", m.name), ("trigger", m.trigger), ("class_word", m.class_word), ("notes", m.notes),
             ("created", m.created))))

    def _save_index(self) -> None:
        data = {"version": 1, "name": self.name, "records": [r.to_dict() for r in self._records.values()]}
        atomic_write_text(self.path / INDEX_FILE, json.dumps(data, indent=1, ensure_ascii=False))

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
                    atomic_write_text(self.caption_path(r.file), r.caption)
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
            if len(infos) > limits.MAX_ZIP_ENTRIES:
                raise DatasetError(f"{Path(zip_path).name} has {len(infos)} entries (at most {limits.MAX_ZIP_ENTRIES})")
            skipped, items, total = [], [], 0
            for info in infos:
                why = _unsafe_zip_name(info.filename)
                if why:
                    skipped.append(Skipped(info.filename, why))
                    continue
                if info.file_size > limits.MAX_IMPORT_FILE_BYTES:
                    skipped.append(Skipped(info.filename, f"larger than {limits.MAX_IMPORT_FILE_BYTES // 2**20} MiB"))
                    continue
                total += info.file_size
                if total > limits.MAX_ZIP_BYTES:
                    skipped.append(Skipped(info.filename, f"the zip holds over {limits.MAX_ZIP_BYTES // 2**20} MiB"))
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
                    if len(raw) > limits.MAX_IMPORT_FILE_BYTES:
                        raise DatasetError(f"larger than {limits.MAX_IMPORT_FILE_BYTES // 2**20} MiB")
                    fmt, n_frames = _format_of(raw)
                    frames = (load_frames(raw, limits.MAX_IMPORT_FRAMES) if n_frames > 1 and frames_too else [load_rgba(raw)])
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
            n_colours=count_colours(rgba), native_scale=round(float(np.mean(result.cell)), 2),
            native_size=result.image.size, has_alpha=bool((rgba[..., 3] < 255).any()),
            opaque_fraction=round(float((rgba[..., 3] >= 128).mean()), 4), phash=hashed,
            caption=caption, problems=problems, source=f"{src}#{tag}" if tag else src,
        )
        written: list[Path] = []
        try:
            for dst, data in ((self.path / "images" / rec.file, raw), (self.path / "native" / f"{stem}.png",
                                                                        _png_bytes(nat)),
                              (self.caption_path(rec.file), caption.encode("utf-8"))):
                atomic_write_bytes(dst, data)
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
        if p.stat().st_size > limits.MAX_IMPORT_FILE_BYTES:
            raise DatasetError(f"larger than {limits.MAX_IMPORT_FILE_BYTES // 2**20} MiB")
        return p.read_bytes()
    return read


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zf.open(info) as f:
                data = f.read(limits.MAX_IMPORT_FILE_BYTES + 1)  # never trust the header's size
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
            raise DatasetError(f"the zip entry is damaged and cannot be unpacked ({e})") from None
        except RuntimeError as e:  # encrypted entries
            raise DatasetError(f"the zip entry cannot be read ({e})") from None
        if len(data) > limits.MAX_IMPORT_FILE_BYTES:
            raise DatasetError(f"larger than {limits.MAX_IMPORT_FILE_BYTES // 2**20} MiB")
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
    An image over limits.MAX_IMPORT_SIDE px a side is a DatasetError before any pixel is decoded."""
    size = None
    with contextlib.suppress(Exception), Image.open(io.BytesIO(raw)) as im:
        fmt, n, size = im.format, int(getattr(im, "n_frames", 1)), im.size
    if size is None:
        return None, 1
    if max(size) > limits.MAX_IMPORT_SIDE:
        raise DatasetError(f"the image is {size[0]}x{size[1]} px; at most {limits.MAX_IMPORT_SIDE} px a side can be "
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
