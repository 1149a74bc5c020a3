"""The one atomic file writer: a temp file in the same folder, fsync, then `os.replace`.

A reader (Bevy's hot reload, the history gallery, a second studio) sees the old file or the new one, never
half a PNG; a full disk or a crash leaves no partial file behind. Files get the permissions any new file of
this process gets (0644 under the usual umask), not the 0600 of a temp file: a game's build tools may run as
another user. It imports nothing from the project, so every room (the pixel engine included) may use it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_file(path: str | os.PathLike) -> bool:
    """Whether `path` names an existing file, for text a person or a client typed: a name too long for the
    file system, a NUL byte or `~nobody/` is simply not a file (instead of OSError, ValueError, RuntimeError)."""
    try:
        return Path(path).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):
        return False


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_png(image, path: str | os.PathLike, pnginfo=None) -> Path:
    """Encode in memory first so an encoder error never touches the destination."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo)
    return atomic_write_bytes(path, buf.getvalue())
