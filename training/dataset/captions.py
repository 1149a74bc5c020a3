"""Captions of a training set: bulk edits, auto-captioning, one level of undo, tag counts.

Why a module of its own: caption work is what a person does most after an import, and it only needs a
Dataset handle (`records`), never the image checks or the SDXL preparation.
- Every bulk edit first saves the old captions to `captions.undo.json` (atomically), so the last edit can
  be undone even after a restart; a token makes sure it is the edit the person means.
- An edit is computed for every target before anything is written: a bad pattern changes nothing.
- The trigger word is kept first in every caption it touches.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable

from PIL import Image

from pipelines.pixel import PixelImageError
from studio.files import atomic_write_text
from training.dataset.checks import DatasetError
from training.dataset.records import Dataset, ImageRecord, Progress

UNDO_FILE = "captions.undo.json"


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
        atomic_write_text(ds.path / UNDO_FILE, json.dumps({"token": token, "op": op, "captions": old},
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
