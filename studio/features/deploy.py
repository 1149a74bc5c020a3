"""Send studio output into a Bevy project: resolve a job or image, export it, record it in the manifest.

One function for the CLI (`dgx-pixels export`), the Generate tab's "Send to Bevy" button and MCP's
`deploy_to_bevy`. The file writing itself (path safety, atomic replace) is `studio.features.export`'s job; this module
decides *what* to export and keeps `assets/sprites/manifest.json`, which lists every exported asset so a game
(or the example viewer) can load them all without knowing their names.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from studio.core import Studio
from studio.features.export import (
    Animation,
    ExportError,
    ExportResult,
    export_sheet,
    export_sprite,
    export_tileset,
    safe_asset_dir,
)
from studio.files import atomic_write_bytes

KINDS = ("auto", "sprite", "sheet", "tileset")
MANIFEST_FORMAT = "dgx-pixels-manifest"


def _load(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGBA")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ExportError(f"{path}: not a readable image ({exc})") from exc


def deploy(studio: Studio, source: str, assets_dir: Path | str, name: str, kind: str = "auto",
           allowed_roots: tuple[Path, ...] | None = None, create: bool = False) -> ExportResult:
    """Export a job's output (or an image file) as `kind` into `assets_dir`, then update the manifest.

    `allowed_roots`: where writing is allowed at all (None: anywhere the caller can write, as for the CLI;
    remote front ends pass the studio's configured project roots). `create`: make `assets_dir` (and missing
    folders above it) when it does not exist yet; the allowed roots are checked first.
    """
    try:
        return _deploy(studio, source, assets_dir, name, kind, allowed_roots, create)
    except ExportError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:  # a path no file system takes: too long, NUL, ~nobody
        raise ExportError(f"cannot export {source!r} to {str(assets_dir)!r}: {exc}") from None


def _deploy(studio: Studio, source: str, assets_dir: Path | str, name: str, kind: str,
            allowed_roots: tuple[Path, ...] | None, create: bool) -> ExportResult:
    if kind not in KINDS:
        raise ExportError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    assets = Path(assets_dir).expanduser()
    if create and not assets.is_dir():
        safe_asset_dir(assets, "sprite", name, allowed_roots)  # refuses names and places it may not write
        try:
            assets.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"could not create {assets}: {exc.strerror or exc}") from exc
    _manifest_path(assets)
    job = _job_or_none(studio, source)
    if job is None:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ExportError(f"{source!r} is neither a job id nor an image file")
        if kind not in ("auto", "sprite"):
            raise ExportError(f"an image file exports as a sprite; use a {kind} job's id for kind {kind!r}")
        result = export_sprite(_load(path), assets, name, allowed_roots=allowed_roots)
    else:
        result = _export_job(job, assets, name, kind, allowed_roots)
    update_manifest(assets, result)
    return result


def _job_or_none(studio: Studio, source: str) -> dict | None:
    rows = studio.store.query("SELECT id FROM jobs WHERE id = ?", [source])
    return studio.job(source) if rows else None


def _export_job(job: dict, assets: Path, name: str, kind: str, roots) -> ExportResult:
    if job["status"] != "done" or not job["images"]:
        raise ExportError(f"job {job['id']} has no finished images (status: {job['status']})")
    frames = [_load(im["path"]) for im in job["images"]]
    params = job["params"]
    spec = params.get("sheet") or params.get("tiles") or {}
    job_kind = job["kind"]
    if kind == "auto":
        kind = {"sheet": "sheet", "tileset": "tileset"}.get(job_kind, "sprite")
    common = {"source_job": job["id"], "source_params": params, "allowed_roots": roots}
    if kind == "sprite":
        return export_sprite(frames[0], assets, name, **common)
    if kind == "sheet":
        anim = Animation(spec.get("animation", "frames"), frames, float(spec.get("fps", 8.0)))
        return export_sheet([anim], assets, name, **common)
    return export_tileset(frames, assets, name, **common)


def _manifest_path(assets: Path) -> Path:
    """Where the manifest goes, refusing symlinks on the way (checked before anything is exported)."""
    root = Path(assets).expanduser().resolve()
    path = root / "sprites" / "manifest.json"
    for link in (root / "sprites", path, path.with_suffix(".json.bak")):
        if link.is_symlink():
            raise ExportError(f"{link} is a symbolic link; the studio does not follow links inside an assets root")
    return path


def update_manifest(assets: Path, result: ExportResult) -> Path:
    """Add or replace this asset's entry in `assets/sprites/manifest.json` (written atomically).

    A symlink there (or a `sprites` folder that is one) is neither read nor replaced: it could point outside
    the assets root, and following it would copy that file into the project or overwrite it."""
    path = _manifest_path(assets)
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "assets": {}}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(old, dict) and isinstance(old.get("assets"), dict):
                manifest["assets"] = old["assets"]
        except (ValueError, UnicodeDecodeError):
            atomic_write_bytes(path.with_suffix(".json.bak"), path.read_bytes())  # keep what we could not read
    sj = result.sheet_json
    image = result.asset_path
    manifest["assets"][f"{sj['kind']}:{sj['name']}"] = {
        "kind": sj["kind"], "name": sj["name"], "image": image,
        "sheet": image.removesuffix(".png") + ".sheet.json",
        "tile_size": sj["tile_size"], "columns": sj["columns"], "rows": sj["rows"],
        **({"animations": sj["animations"]} if "animations" in sj else {}),
        **({"tiles": sj["tiles"]} if "tiles" in sj else {}),
        "source_job": sj.get("source_job"),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest["assets"] = dict(sorted(manifest["assets"].items()))
    atomic_write_bytes(path, (json.dumps(manifest, indent=2) + "\n").encode())
    return path
