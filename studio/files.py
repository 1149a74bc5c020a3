"""Atomic file writes: a temp file in the same folder, fsync, then `os.replace`.

A reader (Bevy's hot reload, the history gallery, a second studio) sees the old file or the new one, never
half a PNG; a full disk or a crash leaves no partial file behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(image, path: Path, pnginfo=None) -> Path:
    """Encode in memory first so an encoder error never touches the destination."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo)
    return atomic_write_bytes(path, buf.getvalue())
