"""Bevy export: sprites, animated sheets and tilesets laid out the way a Bevy game loads them.

Layout (the "Bevy contract" in DESIGN.md)::

    <assets_root>/sprites/<name>/<name>.png            uniform cells, no padding; row = animation, column = frame
    <assets_root>/sprites/<name>/<name>.sheet.json     tile size, grid, animations {name: [first, last, fps]}, palette
    <assets_root>/sprites/<name>/<name>.aseprite.json  Aseprite "array" JSON, for tools that read that instead
    <assets_root>/tilesets/<name>/...                  the same for tilesets, with `tiles` instead of `animations`

A single sprite is a 1x1 sheet. Pixels are copied exactly (RGBA, never resampled, never lossy), so what the
studio shows is what the game draws once Bevy samples with `ImagePlugin::default_nearest()`.

Safety and atomicity (no path escapes the assets root; the three files are replaced as one transaction) are
`asset_writer`'s job; the Rust snippet is `bevy_snippet`'s.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from studio import limits
from studio.features.asset_writer import (
    KIND_DIRS,
    ExportError,
    check_label,
    check_name,
    make_dirs,
    safe_asset_dir,
    write_all,
)
from studio.features.bevy_snippet import APP_NAME, bevy_snippet
from studio.files import atomic_write_bytes, save_png

DEFAULT_FPS = 8.0
STILL_DURATION_MS = 100  # Aseprite's default frame duration, for frames that do not animate

ACCEPTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA"})  # convert to RGBA without loss
SHEET_FORMAT = "dgx-pixels-sheet"
SHEET_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Animation:
    """One row of a sheet: its frames left to right, played at `fps`."""

    name: str
    frames: list[Image.Image]
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        check_label(self.name, "animation name")
        if isinstance(self.frames, Image.Image) or not isinstance(self.frames, Sequence):
            raise ExportError(f"animation {self.name!r}: frames must be a list of images")
        object.__setattr__(self, "frames", list(self.frames))
        object.__setattr__(self, "fps", _check_fps(self.fps, self.name))

    @classmethod
    def from_sheet(
        cls,
        name: str,
        sheet: Image.Image,
        tile_width: int,
        tile_height: int,
        *,
        row: int = 0,
        count: int | None = None,
        fps: float = DEFAULT_FPS,
    ) -> Animation:
        """Cut one row of an existing grid sheet into frames, so a strip from elsewhere can be re-exported."""
        sheet = _as_image(sheet, "sheet")
        if tile_width < 1 or tile_height < 1:
            raise ExportError("tile size must be at least 1x1")
        columns = sheet.width // tile_width
        if sheet.width % tile_width or sheet.height % tile_height:
            raise ExportError(f"sheet {sheet.width}x{sheet.height} is not a grid of {tile_width}x{tile_height} cells")
        if not 0 <= row < sheet.height // tile_height:
            raise ExportError(f"row {row} is outside the sheet ({sheet.height // tile_height} rows)")
        count = columns if count is None else count
        if not 1 <= count <= columns:
            raise ExportError(f"frame count {count} must be between 1 and {columns}")
        y = row * tile_height
        frames = [sheet.crop((c * tile_width, y, (c + 1) * tile_width, y + tile_height)) for c in range(count)]
        return cls(name, frames, fps)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the three files (PNG first), the sheet JSON, and Rust to paste into the game."""

    files: list[Path]
    sheet_json: dict
    bevy_snippet: str
    kind: str
    asset_path: str = ""  # the path Bevy's AssetServer loads, relative to the assets root


# --------------------------------------------------------------------------------------------------- validation


def _check_fps(fps: object, animation: str) -> float:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps):
        raise ExportError(f"animation {animation!r}: fps must be a number, got {fps!r}")
    if not 0 < fps <= limits.MAX_EXPORT_FPS:
        raise ExportError(f"animation {animation!r}: fps must be above 0 and at most {limits.MAX_EXPORT_FPS:g}, got {fps:g}")
    return float(fps)


def _as_image(image: object, label: str) -> Image.Image:
    """An RGBA copy of `image`; modes that would lose information on the way to RGBA are refused."""
    if not isinstance(image, Image.Image):
        raise ExportError(f"{label} is not an image (got {type(image).__name__})")
    if image.mode not in ACCEPTED_MODES:
        raise ExportError(f"{label} has image mode {image.mode!r}; export needs 8-bit RGBA, RGB, L or P pixels")
    if image.width < 1 or image.height < 1:
        raise ExportError(f"{label} is empty ({image.width}x{image.height})")
    return image.convert("RGBA")


def _check_source_job(source_job: object) -> str | int | None:
    if source_job is None or (isinstance(source_job, str | int) and not isinstance(source_job, bool)):
        return source_job  # type: ignore[return-value]
    raise ExportError(f"source_job must be a job id (text or number), got {type(source_job).__name__}")


# ------------------------------------------------------------------------------------------------------ sheet


def build_sheet(rows: list[list[Image.Image]], row_names: Sequence[str] | None = None) -> Image.Image:
    """Paste frames into one RGBA grid: row r, column c at (c*w, r*h), no padding, empty cells transparent.

    Every frame must have the same size, because Bevy's `TextureAtlasLayout::from_grid` cuts uniform cells; the
    error names the first frame that differs. `row_names` only make those messages clearer.
    """
    if not isinstance(rows, Sequence) or not rows:
        raise ExportError("nothing to export: no frames")
    grid: list[list[Image.Image]] = []
    for r, row in enumerate(rows):
        row_label = f"animation {row_names[r]!r}" if row_names else f"row {r}"
        if isinstance(row, Image.Image) or not isinstance(row, Sequence) or not row:
            raise ExportError(f"{row_label} has no frames")
        grid.append([_as_image(frame, f"{row_label} frame {c}") for c, frame in enumerate(row)])
    w, h = grid[0][0].size
    for r, row in enumerate(grid):
        for c, frame in enumerate(row):
            if frame.size != (w, h):
                row_label = f"animation {row_names[r]!r}" if row_names else f"row {r}"
                raise ExportError(
                    f"{row_label} frame {c} is {frame.width}x{frame.height}, but frames must all be {w}x{h} "
                    "(the first frame's size)"
                )
    columns = max(len(row) for row in grid)
    width, height = columns * w, len(grid) * h
    if width > limits.MAX_SHEET_SIDE or height > limits.MAX_SHEET_SIDE:
        raise ExportError(f"sheet would be {width}x{height} px; the limit is {limits.MAX_SHEET_SIDE} px per side")
    sheet = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    for r, row in enumerate(grid):
        for c, frame in enumerate(row):
            sheet.paste(frame, (c * w, r * h))  # no mask: pixels are copied, not blended
    return sheet


def _palette_from_image(sheet: Image.Image) -> list[str]:
    """Distinct visible colours (alpha > 0), most frequent first, capped at limits.MAX_COLORS.

    Semi-transparent pixels count as visible because they are drawn; fully transparent ones carry no colour.
    """
    px = np.asarray(sheet, dtype=np.uint8).reshape(-1, 4)
    px = px[px[:, 3] > 0]
    if not len(px):
        return []
    packed = (px[:, 0].astype(np.uint32) << 16) | (px[:, 1].astype(np.uint32) << 8) | px[:, 2]
    colours, counts = np.unique(packed, return_counts=True)
    order = np.lexsort((colours, -counts))[:limits.MAX_COLORS]
    return [f"#{int(colours[i]):06x}" for i in order]


def _normalise_palette(palette: Sequence[object]) -> list[str]:
    """Accept "#rrggbb", "rrggbb", "#rgb" or (r, g, b[, a]) entries; store lowercase "#rrggbb"."""
    if isinstance(palette, str) or not isinstance(palette, Sequence):
        raise ExportError("palette must be a list of colours")
    if len(palette) > limits.MAX_COLORS:
        raise ExportError(f"palette has {len(palette)} colours; the limit is {limits.MAX_COLORS}")
    return [_colour_hex(entry, i) for i, entry in enumerate(palette)]


def _colour_hex(entry: object, index: int) -> str:
    if isinstance(entry, str):
        digits = entry.removeprefix("#")
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        if len(digits) == 6 and all(ch in "0123456789abcdefABCDEF" for ch in digits):
            return "#" + digits.lower()
    elif isinstance(entry, Sequence) and len(entry) in (3, 4):
        channels = list(entry)[:3]
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in channels):
            return "#" + "".join(f"{v:02x}" for v in channels)
    raise ExportError(f"palette colour {index} ({entry!r}) is not '#rrggbb' or an (r, g, b) triple")


# ------------------------------------------------------------------------------------------------------- JSON


@dataclass(frozen=True)
class _Cell:
    """One real frame of the sheet, for the Aseprite JSON."""

    label: str
    row: int
    column: int
    duration_ms: int


@dataclass(frozen=True)
class _Layout:
    """Everything both JSON files are made from."""

    kind: str
    name: str
    sheet: Image.Image
    tile: tuple[int, int]
    cells: list[_Cell]
    tags: list[tuple[str, int, int]] = field(default_factory=list)  # (name, first, last) into `cells`

    @property
    def columns(self) -> int:
        return self.sheet.width // self.tile[0]

    @property
    def rows(self) -> int:
        return self.sheet.height // self.tile[1]


def _sheet_json(layout: _Layout, extra: dict, palette: list[str], source_job: str | int | None,
                source_params: dict | None = None) -> dict:
    out = {
        "format": SHEET_FORMAT,
        "version": SHEET_FORMAT_VERSION,
        "kind": layout.kind,
        "name": layout.name,
        "image": f"{layout.name}.png",
        "tile_size": list(layout.tile),
        "columns": layout.columns,
        "rows": layout.rows,
        **extra,
        "palette": palette,
        "source_job": source_job,
    }
    if source_params is not None:
        out["source_params"] = source_params  # the job's resolved params: enough to make the asset again
    return out


def _aseprite_json(layout: _Layout) -> dict:
    """Aseprite's "array" export, which Phaser, Godot importers, LibreSprite and others read."""
    w, h = layout.tile
    frames = [
        {
            "filename": cell.label,
            "frame": {"x": cell.column * w, "y": cell.row * h, "w": w, "h": h},
            "rotated": False,
            "trimmed": False,
            "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h},
            "sourceSize": {"w": w, "h": h},
            "duration": cell.duration_ms,
        }
        for cell in layout.cells
    ]
    tags = [{"name": n, "from": a, "to": b, "direction": "forward"} for n, a, b in layout.tags]
    meta = {
        "app": APP_NAME,
        "version": str(SHEET_FORMAT_VERSION),
        "image": f"{layout.name}.png",
        "format": "RGBA8888",
        "size": {"w": layout.sheet.width, "h": layout.sheet.height},
        "scale": "1",
        "frameTags": tags,
        "layers": [],
        "slices": [],
    }
    return {"frames": frames, "meta": meta}


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _export(
    layout: _Layout,
    extra: dict,
    assets_root: Path,
    *,
    palette: Sequence[object] | None,
    source_job: object,
    allowed_roots: Sequence[Path] | None,
    overwrite: bool,
    source_params: dict | None = None,
) -> ExportResult:
    """Shared tail of every export: validate the rest, check the folder, write the three files, build the result."""
    job = _check_source_job(source_job)
    colours = _palette_from_image(layout.sheet) if palette is None else _normalise_palette(palette)
    target = safe_asset_dir(assets_root, layout.kind, layout.name, allowed_roots)
    root = Path(assets_root).expanduser().resolve()
    sheet_json = _sheet_json(layout, extra, colours, job, source_params)
    files = [target / f"{layout.name}{suffix}" for suffix in (".png", ".sheet.json", ".aseprite.json")]
    for path in files:
        if path.is_dir() and not path.is_symlink():
            raise ExportError(f"{path} is a folder; remove it or choose another name")
        if not overwrite and os.path.lexists(path):
            raise ExportError(f"{path} already exists (overwrite is off)")
    sheet_bytes, aseprite_bytes = _json_bytes(sheet_json), _json_bytes(_aseprite_json(layout))
    created = make_dirs(root, target)
    write_all(
        [
            (files[0], lambda p: save_png(layout.sheet, p)),
            (files[1], lambda p: atomic_write_bytes(p, sheet_bytes)),
            (files[2], lambda p: atomic_write_bytes(p, aseprite_bytes)),
        ],
        created,
    )
    return ExportResult(
        files=files,
        sheet_json=sheet_json,
        bevy_snippet=bevy_snippet(layout.kind, layout.name, sheet_json),
        kind=layout.kind,
        asset_path=f"{KIND_DIRS[layout.kind]}/{layout.name}/{layout.name}.png",
    )


# ----------------------------------------------------------------------------------------------------- public


def export_sprite(
    image: Image.Image,
    assets_root: Path,
    name: str,
    *,
    source_job: str | int | None = None,
    source_params: dict | None = None,
    palette: Sequence[object] | None = None,
    allowed_roots: Sequence[Path] | None = None,
    overwrite: bool = True,
) -> ExportResult:
    """One still sprite as a 1x1 sheet under `sprites/<name>/`."""
    check_name(name)
    sheet = build_sheet([[image]])
    cell = _Cell(name, 0, 0, STILL_DURATION_MS)
    layout = _Layout("sprite", name, sheet, sheet.size, [cell])
    return _export(
        layout, {"animations": {}}, assets_root,
        palette=palette, source_job=source_job, allowed_roots=allowed_roots, overwrite=overwrite,
        source_params=source_params,
    )


def export_sheet(
    animations: list[Animation],
    assets_root: Path,
    name: str,
    *,
    source_job: str | int | None = None,
    source_params: dict | None = None,
    palette: Sequence[object] | None = None,
    allowed_roots: Sequence[Path] | None = None,
    overwrite: bool = True,
) -> ExportResult:
    """Animations as rows of one sheet under `sprites/<name>/`.

    `animations` in sheet.json holds atlas indices (row-major over the whole grid, so row r starts at
    r * columns), which is what `TextureAtlas::index` takes; shorter rows leave transparent cells. The Aseprite
    JSON lists only real frames, so its tag `from`/`to` count frames, as Aseprite's own export does.
    """
    check_name(name)
    anims = _check_animations(animations)
    sheet = build_sheet([a.frames for a in anims], row_names=[a.name for a in anims])
    tile = anims[0].frames[0].size
    columns = sheet.width // tile[0]
    cells: list[_Cell] = []
    tags: list[tuple[str, int, int]] = []
    ranges: dict[str, list] = {}
    for r, anim in enumerate(anims):
        duration = max(1, round(1000 / anim.fps))
        tags.append((anim.name, len(cells), len(cells) + len(anim.frames) - 1))
        cells += [_Cell(f"{name}_{anim.name}_{c}", r, c, duration) for c in range(len(anim.frames))]
        ranges[anim.name] = [r * columns, r * columns + len(anim.frames) - 1, anim.fps]
    layout = _Layout("sheet", name, sheet, tile, cells, tags)
    return _export(
        layout, {"animations": ranges}, assets_root,
        palette=palette, source_job=source_job, allowed_roots=allowed_roots, overwrite=overwrite,
        source_params=source_params,
    )


def _check_animations(animations: object) -> list[Animation]:
    if isinstance(animations, Animation):
        animations = [animations]
    if not isinstance(animations, Sequence) or not animations:
        raise ExportError("nothing to export: no animations")
    seen: set[str] = set()
    for i, anim in enumerate(animations):
        if not isinstance(anim, Animation):
            raise ExportError(f"animation {i} is not an Animation (got {type(anim).__name__})")
        if anim.name in seen:
            raise ExportError(f"animation name {anim.name!r} is used twice")
        seen.add(anim.name)
        if not anim.frames:
            raise ExportError(f"animation {anim.name!r} has no frames")
        if len(anim.frames) > limits.MAX_FRAMES_PER_ANIMATION:
            raise ExportError(
                f"animation {anim.name!r} has {len(anim.frames)} frames; the limit is {limits.MAX_FRAMES_PER_ANIMATION}"
            )
    return list(animations)


def export_tileset(
    tiles: list[Image.Image],
    assets_root: Path,
    name: str,
    *,
    columns: int | None = None,
    tile_names: Sequence[str] | None = None,
    source_job: str | int | None = None,
    source_params: dict | None = None,
    palette: Sequence[object] | None = None,
    allowed_roots: Sequence[Path] | None = None,
    overwrite: bool = True,
) -> ExportResult:
    """Tiles in a grid under `tilesets/<name>/`; tile i is atlas index i (row-major).

    Without `columns` the grid is as square as possible, which keeps large tilesets under the side limit.
    """
    check_name(name)
    if isinstance(tiles, Image.Image) or not isinstance(tiles, Sequence) or not tiles:
        raise ExportError("nothing to export: no tiles")
    if len(tiles) > limits.MAX_TILES:
        raise ExportError(f"tileset has {len(tiles)} tiles; the limit is {limits.MAX_TILES}")
    names = _check_tile_names(tile_names, len(tiles))
    columns = _check_columns(columns, len(tiles))
    rows = [list(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    try:
        sheet = build_sheet(rows)
    except ExportError as exc:  # say "tile 5", not "row 1 frame 1"
        raise ExportError(_tile_message(str(exc), columns)) from None
    tile = tiles[0].size
    labels = names or [f"{name}_{i}" for i in range(len(tiles))]
    cells = [_Cell(labels[i], i // columns, i % columns, STILL_DURATION_MS) for i in range(len(tiles))]
    tiles_info: dict = {"count": len(tiles)}
    if names:
        tiles_info["names"] = names
    layout = _Layout("tileset", name, sheet, tile, cells)
    return _export(
        layout, {"tiles": tiles_info}, assets_root,
        palette=palette, source_job=source_job, allowed_roots=allowed_roots, overwrite=overwrite,
        source_params=source_params,
    )


def _check_tile_names(tile_names: Sequence[str] | None, count: int) -> list[str] | None:
    if tile_names is None:
        return None
    if isinstance(tile_names, str) or not isinstance(tile_names, Sequence):
        raise ExportError("tile_names must be a list of names")
    if len(tile_names) != count:
        raise ExportError(f"{len(tile_names)} tile names for {count} tiles")
    names = [check_label(n, "tile name") for n in tile_names]
    if len(set(names)) != len(names):
        raise ExportError("tile names must be unique")
    return names


def _check_columns(columns: int | None, count: int) -> int:
    if columns is None:
        return math.ceil(math.sqrt(count))
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ExportError(f"columns must be a whole number of at least 1, got {columns!r}")
    return min(columns, count)


def _tile_message(message: str, columns: int) -> str:
    def index(match: re.Match[str]) -> str:
        return f"tile {int(match[1]) * columns + int(match[2])}"

    return re.sub(r"row (\d+) frame (\d+)", index, message)


