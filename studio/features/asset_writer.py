"""Where an exported asset may go, and how its files are replaced: path safety and a small transaction.

Safety. An asset's name is a short lowercase slug and the target folder is resolved (symlinks included) and
checked to lie inside the assets root, which itself must lie inside one of `allowed_roots` when given: an agent
driving the studio remotely can pick a name, never a path.

Atomicity. Bevy's `file_watcher` reloads an asset as soon as the file changes, and the JSON describes the PNG, so
an export is a small transaction over its files:

1. every file is first written in full to a hidden staging file beside its destination (through
   `studio.files`, so each staging file is itself fsynced and never half written);
2. every destination that already exists gets a hard link (or, where links are unsupported, a copy) as backup;
3. the staging files are `os.replace`d onto their destinations in order (PNG first, JSON last), so a reader
   never sees a JSON that describes a PNG which is not there yet.

If anything fails, destinations already replaced are put back from their backups (or removed when this call
created them), staging files, backups and folders this call created are removed, and `ExportError` is raised:
previously exported files are left byte for byte as they were.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

KIND_DIRS = {"sprite": "sprites", "sheet": "sprites", "tileset": "tilesets"}
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Device names Windows refuses as file names; assets folders get synced to Windows dev boxes.
_RESERVED = frozenset({"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)})


class ExportError(ValueError):
    """A refused or failed export, with a message for a person; nothing was written when it is raised."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ExportError(
            f"invalid asset name {name!r}: use 1-64 characters of lowercase a-z, 0-9, '_' or '-', "
            "starting with a letter or digit (no paths, spaces or dots)"
        )
    if name in _RESERVED:
        raise ExportError(f"invalid asset name {name!r}: it is a reserved device name on Windows")
    return name


def check_label(label: object, what: str) -> str:
    """Animation and tile names end up in JSON keys and in a Rust comment, so they stay plain identifiers."""
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label):
        raise ExportError(f"invalid {what} {label!r}: use 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return label


def check_kind(kind: object) -> str:
    if kind not in KIND_DIRS:
        raise ExportError(f"unknown export kind {kind!r}: expected one of {', '.join(KIND_DIRS)}")
    return kind  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------------------- paths


def safe_asset_dir(
    assets_root: Path, kind: str, name: str, allowed_roots: Sequence[Path] | None = None
) -> Path:
    """The resolved folder an export of `kind`/`name` goes to, after checking it cannot escape `assets_root`.

    Symlinks are resolved before the containment checks, so a link inside the assets root that points elsewhere
    is refused. When `allowed_roots` is given (even empty), the resolved assets root must lie inside one of them:
    that is what keeps a remote agent from choosing any folder on the machine. Nothing is created here.
    """
    check_name(name)
    subdir = KIND_DIRS[check_kind(kind)]
    if not isinstance(assets_root, str | os.PathLike) or not str(assets_root):
        raise ExportError(f"assets root must be a folder path, got {assets_root!r}")
    root = Path(assets_root).expanduser().resolve()
    if allowed_roots is not None:
        allowed = [Path(r).expanduser().resolve() for r in allowed_roots]
        if not any(root.is_relative_to(a) for a in allowed):
            shown = ", ".join(str(a) for a in allowed) or "none configured"
            raise ExportError(f"assets root {root} is outside the allowed project folders ({shown})")
    if root.exists() and not root.is_dir():
        raise ExportError(f"assets root {root} is not a folder")
    target = (root / subdir / name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ExportError(f"{subdir}/{name} resolves to {target}, outside the assets root {root}")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder")
    return target


def make_dirs(root: Path, target: Path) -> list[Path]:
    """Create `target` (and `root`, one level only) and return the folders created, outermost first."""
    created: list[Path] = []
    try:
        between = [root / p for p in reversed(target.relative_to(root).parents[:-1])]
        for path in [root, *between, target]:
            if not path.is_dir():
                path.mkdir()
                created.append(path)
    except OSError as exc:
        remove_dirs(created)
        raise ExportError(f"could not create {target}: {exc.strerror or exc}") from exc
    # A symlink swapped in between the check and the mkdir would show up here.
    if not target.resolve().is_relative_to(root):
        remove_dirs(created)
        raise ExportError(f"{target} moved outside the assets root {root} while exporting")
    return created


def remove_dirs(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty (someone else wrote there): leave it
            folder.rmdir()


# ------------------------------------------------------------------------------------------------ transaction

Writer = Callable[[Path], object]


def write_all(items: list[tuple[Path, Writer]], created_dirs: list[Path]) -> None:
    """Stage every file, back up what exists, then replace in order; on failure undo all of it (module doc)."""
    token = secrets.token_hex(6)
    staged: list[tuple[Path, Path]] = []
    backups: dict[Path, Path] = {}
    committed: list[Path] = []
    current = items[0][0]
    try:
        for final, write in items:
            current = final
            tmp = final.with_name(f".{final.name}.{token}.staged.tmp")
            staged.append((tmp, final))
            write(tmp)
        for _, final in staged:
            current = final
            if os.path.lexists(final):
                backups[final] = _backup(final, final.with_name(f".{final.name}.{token}.bak.tmp"))
        for tmp, final in staged:
            current = final
            os.replace(tmp, final)
            committed.append(final)
    except BaseException as exc:
        problems = _rollback(committed, backups)
        _discard([tmp for tmp, _ in staged] + list(backups.values()))
        remove_dirs(created_dirs)
        if not isinstance(exc, OSError):
            raise
        reason = exc.strerror or str(exc)
        if problems:
            raise ExportError(
                f"could not write {current}: {reason}; restoring the previous files also failed "
                f"({'; '.join(problems)})"
            ) from exc
        raise ExportError(f"could not write {current}: {reason}; the previous files are unchanged") from exc
    _discard(list(backups.values()))


def _backup(final: Path, backup: Path) -> Path:
    """A hard link costs no space or time; fall back to a copy where the filesystem has no links."""
    try:
        os.link(final, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(final, backup, follow_symlinks=False)
    return backup


def _rollback(committed: list[Path], backups: dict[Path, Path]) -> list[str]:
    problems: list[str] = []
    for final in reversed(committed):
        try:
            if final in backups:
                os.replace(backups.pop(final), final)
            else:
                final.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"{final.name}: {exc.strerror or exc}")
    return problems


def _discard(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # best effort: a leftover hidden *.tmp harms neither Bevy nor us
            path.unlink(missing_ok=True)
