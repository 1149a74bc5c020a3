"""Preparing a training set for SDXL: bucket choice, the bucket-sized training images, kohya/diffusers export.

Why a module of its own: this is the last step (a Dataset handle in, a folder a trainer reads out) and the
only one that knows SDXL's sizes.
- Training images are made from the NATIVE sprite enlarged by the largest integer factor that fits the
  bucket, nearest neighbour only: any other resampling smears the pixel grid the LoRA is supposed to learn.
- Only what prepare itself writes (.png, .txt, .jsonl) is ever removed from an output folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.pixel.color import parse_hex
from studio.files import atomic_write_text, save_png
from training.dataset.checks import DatasetError
from training.dataset.records import Dataset, Skipped

SDXL_BUCKETS: tuple[tuple[int, int], ...] = (
    (1024, 1024), (896, 1152), (1152, 896), (832, 1216), (1216, 832), (768, 1344), (1344, 768),
)
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
        save_png(p.image, folder / name)
        atomic_write_text(folder / f"{r.stem}.txt", r.caption)
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
    atomic_write_text(rep.folder / "metadata.jsonl", lines)
    return rep
