"""Public API of the pixel engine: fake pixel art (an upscaled, blurred render) -> sprite.

Pipeline (each step lives in its own module):
1. `io`: load and validate -> RGBA uint8.
2. `grid` / `lattice` / `evidence`: recover the lattice (boundaries that may drift and
   bend, per axis) -> native size, with a confidence; or the user's size / cell / offset.
3. `cells`: sample the central 60 % of every cell along the bent lattice; alpha by
   majority, colour by a robust vote (specks and anti-aliased borders never win).
4. `shading` + `palette`: the render's smooth light field is removed, a palette is built
   from the cell colours (auto / N / named / file / given) and every cell snaps to it.
5. `background`: transparent background (auto / keep / #hex).
6. `cleanup`: strays, outline, crop and canvas.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from studio import limits
from studio.files import save_png
from studio.values import parse_colors, parse_int, parse_optional_size, parse_pair

from . import background as bg
from . import cleanup
from .cells import MIN_STEP_SHARE, cell_colours, step_share
from .color import nearest_index, parse_hex, rgb_to_oklab
from .exact import exact_lattice
from .grid import Grid, detect_grid, draw_lattice, sample_cells
from .io import PixelImageError, load_frames, load_rgba, to_pil
from .palette import apply_palette, build_palette, load_palette, palette_from_images
from .shading import deshade

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class PixelParams:
    """Everything the user can choose. Validated on construction (ValueError, clear text)."""

    size: tuple[int, int] | None = None  # target native size (w, h) or None = detect
    size_mode: str = "hint"  # "hint" | "exact"
    colors: int | None = None  # None = auto
    palette: str | None = None  # palette name or path to .hex/.gpl/.pal
    background: str = "auto"  # "auto" | "keep" | "#rrggbb"
    keep_holes: bool = True
    dither: str = "none"  # "none" | "bayer"
    remove_strays: bool = True
    outline: str | None = None  # "#rrggbb" or None
    crop: bool = False
    canvas: tuple[int, int] | None = None  # pad to this canvas after crop
    cell: tuple[float, float] | None = None  # force the cell size (w, h) in input px
    offset: tuple[float, float] | None = None  # force a cell boundary at (x, y) input px (needs cell)

    def __post_init__(self) -> None:
        top = limits.MAX_SPRITE_SIDE
        object.__setattr__(self, "size", parse_optional_size(self.size, "sprite size", 1, top))
        object.__setattr__(self, "canvas", parse_optional_size(self.canvas, "canvas", 1, top))
        if self.size_mode not in ("hint", "exact"):
            raise ValueError(f"size_mode must be 'hint' or 'exact', got {self.size_mode!r}")
        if self.size_mode == "exact" and self.size is None:
            raise ValueError("size_mode 'exact' needs a size (e.g. 32x32)")
        object.__setattr__(self, "colors", parse_colors(self.colors, limits.MIN_COLORS, limits.MAX_COLORS))
        if isinstance(self.palette, os.PathLike):
            object.__setattr__(self, "palette", os.fspath(self.palette))
        if self.palette is not None:
            if not isinstance(self.palette, str) or not self.palette.strip():
                raise ValueError("palette must be a palette name or a path to a .hex/.gpl/.pal file")
            load_palette(self.palette)  # raises ValueError with the known names
        if not isinstance(self.background, str):
            raise ValueError("background must be 'auto', 'keep' or a colour like '#ffffff'")
        if self.background not in ("auto", "keep"):
            try:
                parse_hex(self.background)
            except ValueError:
                raise ValueError(
                    f"background must be 'auto', 'keep' or a colour like '#ffffff', got {self.background!r}"
                ) from None
        if self.dither not in ("none", "bayer"):
            raise ValueError(f"dither must be 'none' or 'bayer', got {self.dither!r}")
        if self.outline is not None:
            try:
                parse_hex(self.outline)
            except ValueError:
                raise ValueError(f"outline must be a colour like '#000000' or None, got {self.outline!r}") from None
        for name in ("keep_holes", "remove_strays", "crop"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._check_lattice_override()

    def _check_lattice_override(self) -> None:
        """cell: a pair of numbers >= 1 (or one number, square cells); offset: a pair of
        finite numbers, only with cell; neither together with an exact size."""
        if self.cell is not None:
            object.__setattr__(self, "cell", parse_pair(self.cell, "cell", 1.0, limits.MAX_CELL_PX))
        if self.offset is not None:
            object.__setattr__(self, "offset", parse_pair(self.offset, "offset"))
        if self.offset is not None and self.cell is None:
            raise ValueError("offset needs a cell size (e.g. cell=(32, 32), offset=(5, 0))")
        if self.cell is not None and self.size_mode == "exact":
            raise ValueError("give either an exact size or a cell size, not both")

    @classmethod
    def from_user(cls, size=None, colors=None, palette=None, background=None, outline=None, **rest) -> PixelParams:
        """What a front end was given, as typed: a blank field means "not set", a size of 0 (or 0x0) and
        colours of 0 mean "detect" / "automatic". Every front end (UI, CLI, MCP) builds its params here."""

        def blank(v):
            return v is None or (isinstance(v, str) and not v.strip())

        if isinstance(size, list | tuple) and len(size) == 2 and not any(size):
            size = None
        if colors in (0, "0"):
            colors = None
        return cls(size=None if blank(size) else size, colors=None if blank(colors) else colors,
                   palette=None if blank(palette) else palette.strip(),
                   background="auto" if blank(background) else background.strip(),
                   outline=None if blank(outline) else outline.strip(),
                   **{k: None if blank(v) else v for k, v in rest.items()})

    def to_dict(self) -> dict:
        """JSON-safe dict (tuples become lists)."""
        d = asdict(self)
        for k in ("size", "canvas", "cell", "offset"):
            d[k] = list(d[k]) if d[k] is not None else None
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> PixelParams:
        """Inverse of to_dict. Unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(d, dict):
            raise ValueError(f"pixel settings must be an object of named values, got {d!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown pixel parameter(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class PixelResult:
    """What `pixelate` returns."""

    image: Image.Image  # RGBA, native resolution, alpha 0/255
    cell: tuple[float, float]  # detected cell size (w, h) in input px
    grid_size: tuple[int, int]  # (w, h) of the recovered grid, before crop/canvas
    palette: np.ndarray  # (k, 3) uint8 colours used
    background: tuple[int, int, int] | None = None  # colour made transparent, if any
    native_input: bool = False  # the input already was clean native pixel art
    info: dict = field(default_factory=dict)
    lattice: Grid | None = None  # the fitted lattice (cell boundaries, bent per strip)
    confidence: float = 1.0  # 0..1: how sure the grid (its size) is
    note: str | None = None  # a sentence when the confidence is low ("grid uncertain: 31 or 32 columns")


# ----------------------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------------------
@dataclass
class _Cells:
    """Intermediate state after grid recovery: samples and robust cell colours."""

    grid: Grid
    samples: np.ndarray  # (ny, nx, s, s, 4) uint8
    opaque: np.ndarray  # (ny, nx) bool
    median: np.ndarray  # (ny, nx, 3) uint8
    native: bool
    source: np.ndarray | None = None  # the input (kept for the background decision)
    bg_done: bool = False
    bg_removed: tuple[int, int, int] | None = None
    confidence: float | None = None  # overrides the grid's when the cells say more
    note: str | None = None
    flat: np.ndarray | None = None  # (ny, nx, 3) colours without the render's light field


def _recover_cells(rgba: np.ndarray, params: PixelParams, grid: Grid | None = None) -> _Cells:
    if grid is None:
        cell, offset = params.cell, params.offset
        if params.size is None and cell is None and (found := exact_lattice(rgba)):
            k, phase = found  # an exact integer enlargement holds its lattice: no estimate needed
            cell, offset = (float(k), float(k)), (float(phase[0]), float(phase[1]))
        grid = detect_grid(rgba, params.size, exact=params.size_mode == "exact", cell=cell, offset=offset)
    native = grid.cell == (1.0, 1.0) and params.size is None and params.cell is None
    samples = sample_cells(rgba, grid, max_samples=6, interior=1.0 if native else 0.6)
    opaque, colour = cell_colours(samples)  # robust to anti-aliased borders and specks
    cells = _Cells(grid, samples, opaque, colour, native, rgba)
    if not native and params.cell is None and params.size_mode != "exact" and min(opaque.shape) > 1:
        share = step_share(opaque, colour)
        if share < MIN_STEP_SHARE:  # banding or noise, not flat cells with clear steps
            cells.confidence = min(grid.confidence, share / MIN_STEP_SHARE)
            cells.note = (f"no clear pixel grid: only {100 * share:.0f} % of neighbouring cells differ by a clear "
                          "colour step" + (f"; {grid.note}" if grid.note else ""))
    return cells


def _dedupe_rows(a: np.ndarray) -> np.ndarray:
    _, first = np.unique(a, axis=0, return_index=True)
    return a[np.sort(first)]


def _quick_palette(cols: np.ndarray, n_colors: int | None, step: int = 4) -> np.ndarray:
    """Palette of cell colours: clustered on colours rounded to `step` levels (shading and noise
    make every cell distinct; clustering thousands of near-duplicates is slow), then every
    entry takes back the most common real colour that rounds to it."""
    q = (cols // step) * step + step // 2
    pal = build_palette(q, n_colors=n_colors)
    key = (cols[:, 0].astype(np.uint32) << 16) | (cols[:, 1].astype(np.uint32) << 8) | cols[:, 2]
    uk, cnt = np.unique(key, return_counts=True)
    uq = np.stack([(uk >> 16) & 255, (uk >> 8) & 255, uk & 255], axis=1).astype(np.uint8)
    uqq = (uq // step) * step + step // 2
    out = []
    for entry in pal:
        m = np.nonzero(np.all(uqq == entry, axis=1))[0]
        out.append(uq[m[np.argmax(cnt[m])]] if m.size else entry)
    return _dedupe_rows(np.array(out, np.uint8).reshape(-1, 3))


def _flat_colours(cells: _Cells) -> np.ndarray:
    """The cell colours with the render's smooth light field removed (computed once)."""
    if cells.flat is None:
        cols = cells.median[cells.opaque]
        first = _quick_palette(cols, None, 8) if len(cols) else np.zeros((0, 3), np.uint8)
        cells.flat = deshade(cells.median, cells.opaque, first)
    return cells.flat


def _cell_palette(cells: _Cells, params: PixelParams) -> np.ndarray:
    cols = _flat_colours(cells)[cells.opaque]
    if len(cols) == 0:
        return np.zeros((0, 3), np.uint8)
    return _quick_palette(cols, params.colors)


def _apply_background(cells: _Cells, params: PixelParams) -> tuple[int, int, int] | None:
    """Decide the background on the unquantised cell colours (so a palette that merges a
    sprite shade with the background cannot leak the flood fill into the sprite), and
    mark those cells transparent. Runs once per cells object."""
    if cells.bg_done:
        return cells.bg_removed
    med = np.zeros(cells.opaque.shape + (4,), np.uint8)
    med[..., :3] = cells.median
    med[..., 3] = np.where(cells.opaque, 255, 0)
    out, removed = bg.handle_background(med, params.background, params.keep_holes, source=cells.source)
    cells.opaque = out[..., 3] >= 128
    cells.bg_done, cells.bg_removed, cells.source = True, removed, None
    return removed


def _vote(cells: _Cells, palette: np.ndarray) -> np.ndarray:
    """Every cell's robust colour snapped to its nearest palette entry (OKLab): shading,
    jitter and texture fold back onto the art's few colours."""
    ny, nx = cells.opaque.shape
    idx = nearest_index(rgb_to_oklab(_flat_colours(cells).reshape(-1, 3)), rgb_to_oklab(palette))
    return palette[idx].reshape(ny, nx, 3)


def _finish(cells: _Cells, params: PixelParams, palette: np.ndarray | None) -> PixelResult:
    removed = _apply_background(cells, params)
    ny, nx = cells.opaque.shape
    out = np.zeros((ny, nx, 4), np.uint8)
    out[..., 3] = np.where(cells.opaque, 255, 0)
    fixed = palette is not None or params.palette is not None
    if palette is None and params.palette is not None:
        palette = load_palette(params.palette)
    if cells.native and not fixed and params.colors is None:
        # already clean native art: keep every colour exactly (identity)
        out[..., :3] = cells.median
    else:
        if palette is None:
            palette = _cell_palette(cells, params)
        pal = np.asarray(palette, np.uint8).reshape(-1, 3)
        if len(pal) == 0:
            pass
        elif params.dither == "bayer":
            tmp = out.copy()
            tmp[..., :3] = _flat_colours(cells)
            out[..., :3] = apply_palette(tmp, pal, "bayer")[..., :3]
        else:
            out[..., :3] = _vote(cells, pal)
    out[out[..., 3] == 0, :3] = 0
    if params.remove_strays and not cells.native:
        out = cleanup.remove_strays(out)
    if params.outline:
        out = cleanup.add_outline(out, params.outline)
    if params.crop:
        out = cleanup.crop_to_content(out)
    if params.canvas:
        out = cleanup.pad_to_canvas(out, params.canvas)
    opaque = out[..., 3] >= 128
    used = np.unique(out[opaque][:, :3], axis=0) if opaque.any() else np.zeros((0, 3), np.uint8)
    return PixelResult(
        image=to_pil(out),
        cell=(round(float(cells.grid.x.period), 4), round(float(cells.grid.y.period), 4)),
        grid_size=cells.grid.size,
        palette=used.astype(np.uint8),
        background=removed,
        native_input=cells.native,
        info={"phase": (float(cells.grid.x.phase), float(cells.grid.y.phase)),
              "confidence": float(cells.grid.confidence if cells.confidence is None else cells.confidence),
              "alternatives": dict(cells.grid.alternatives)},
        lattice=cells.grid,
        confidence=float(cells.grid.confidence if cells.confidence is None else cells.confidence),
        note=cells.grid.note if cells.note is None else cells.note,
    )


# ----------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------
_DEFAULT = PixelParams()


def pixelate(image: Image.Image | np.ndarray | str | os.PathLike, params: PixelParams = _DEFAULT,
             palette: np.ndarray | None = None) -> PixelResult:
    """Recover the native sprite from a fake-pixel-art image.

    palette: an explicit (k, 3) uint8 palette (e.g. shared across a batch); it overrides
    params.palette and params.colors. Raises PixelImageError for unusable images and
    ValueError for impossible requests (e.g. a canvas smaller than the sprite).
    """
    rgba = load_rgba(image)
    if palette is not None:
        palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
        if len(palette) == 0:
            raise ValueError("the given palette is empty")
    cells = _recover_cells(rgba, params)
    return _finish(cells, params, palette)


def pixelate_frames(src: str | os.PathLike | list[Image.Image | np.ndarray], params: PixelParams = _DEFAULT,
                    palette: np.ndarray | None = None) -> list[PixelResult]:
    """Convert every frame of an animation with ONE lattice and ONE palette, so the frames
    stay aligned and consistent. The lattice is found on the first frame (all frames of a
    render share it); the palette is built from all frames unless given or fixed by params.
    src: an animated file (GIF, APNG, WebP) or a list of frames.
    """
    frames = load_frames(src) if isinstance(src, (str, os.PathLike)) else [load_rgba(f) for f in src]
    if not frames:
        raise PixelImageError("the animation has no frames")
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        raise PixelImageError("the frames do not all have the same size")
    first = _recover_cells(frames[0], params)
    cells = [first] + [_recover_cells(f, params, first.grid) for f in frames[1:]]
    if palette is None and params.palette is None:
        palette = shared_palette_from_cells(cells, params, params.colors)
        palette = palette if len(palette) else None
    return [_finish(c, params, palette) for c in cells]


def upscale_nearest(img: Image.Image | np.ndarray, k: int) -> Image.Image:
    """Enlarge by an integer factor with nearest neighbour (crisp preview)."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"scale must be a positive integer, got {k!r}")
    im = to_pil(img) if isinstance(img, np.ndarray) else img
    if k == 1:
        return im.copy()
    return im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)


def preview_path(dst: str | os.PathLike) -> Path:
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.preview.png")


def _save(result: PixelResult, dst: Path, preview_scale: int | None) -> None:
    if preview_scale and max(result.image.size) * preview_scale > limits.MAX_PREVIEW_SIDE:
        raise ValueError(f"a {result.image.width}x{result.image.height} sprite enlarged {preview_scale} times is over "
                         f"the preview limit of {limits.MAX_PREVIEW_SIDE} px; use a smaller --preview-scale")
    save_png(result.image, dst)
    if preview_scale:
        save_png(upscale_nearest(result.image, preview_scale), preview_path(dst))


def pixelate_file(src: str | os.PathLike, dst: str | os.PathLike, params: PixelParams = _DEFAULT,
                  preview_scale: int | None = None, palette: np.ndarray | None = None) -> PixelResult:
    """Convert one file. The PNG at dst (and <stem>.preview.png, nearest-enlarged by
    preview_scale, if asked) is written atomically: on any failure no output is left."""
    if Path(dst).suffix.lower() != ".png":
        raise ValueError(f"sprites are written as PNG: name the output <name>.png, got {Path(dst).name!r}")
    if preview_scale is not None:
        preview_scale = parse_int(preview_scale, "preview scale", 1, limits.MAX_PREVIEW_SCALE)
    result = pixelate(load_rgba(src), params, palette)
    _save(result, Path(dst), preview_scale)
    return result


@dataclass
class FolderItem:
    """One file of a batch: its output and result, or the error that stopped it."""

    src: Path
    dst: Path | None
    result: PixelResult | None = None
    error: str | None = None


def list_images(src_dir: str | os.PathLike) -> list[Path]:
    d = Path(src_dir)
    if not d.is_dir():
        raise ValueError(f"{str(src_dir)!r} is not a folder")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.endswith(".preview.png"))


def pixelate_folder(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, params: PixelParams = _DEFAULT,
                    shared_palette: bool = False, preview_scale: int | None = None,
                    progress: Callable[[int, int, Path], None] | None = None) -> list[FolderItem]:
    """Convert every image of a folder into dst_dir/<stem>.png.

    shared_palette=True: grids are recovered first for all images, one palette is built
    from all their cells (params.colors colours, or automatic), and every sprite is then
    mapped to it, so a set of sprites stays consistent. A bad file is reported in its
    FolderItem.error and does not stop the batch. progress(done, total, path) is called
    after each file.
    """
    if preview_scale is not None:
        preview_scale = parse_int(preview_scale, "preview scale", 1, limits.MAX_PREVIEW_SCALE)
    files = list_images(src_dir)
    out_dir = Path(dst_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [FolderItem(src=f, dst=out_dir / f"{f.stem}.png") for f in files]
    total = len(files)
    fixed = params.palette is not None
    if not shared_palette or fixed:
        for i, it in enumerate(items):
            try:
                it.result = pixelate_file(it.src, it.dst, params, preview_scale)  # type: ignore[arg-type]
            except (PixelImageError, ValueError, OSError) as e:
                it.error, it.dst = str(e), None
            if progress:
                progress(i + 1, total, it.src)
        return items
    # pass 1: recover every grid; pass 2: one palette for all, then finish each
    cells: list[_Cells | None] = []
    for it in items:
        try:
            cells.append(_recover_cells(load_rgba(it.src), params))
        except (PixelImageError, ValueError, OSError) as e:
            it.error, it.dst = str(e), None
            cells.append(None)
    pal = shared_palette_from_cells([c for c in cells if c is not None], params, params.colors)
    for i, (it, c) in enumerate(zip(items, cells, strict=True)):
        if c is not None:
            try:
                it.result = _finish(c, params, pal if len(pal) else None)
                _save(it.result, it.dst, preview_scale)  # type: ignore[arg-type]
            except (ValueError, OSError) as e:
                it.error, it.dst = str(e), None
        if progress:
            progress(i + 1, total, it.src)
    return items


def shared_palette_from_cells(cells: list[_Cells], params: PixelParams,
                              n_colors: int | None = None) -> np.ndarray:
    for c in cells:  # background cells must not take palette entries
        _apply_background(c, params)
    cols = [_flat_colours(c)[c.opaque] for c in cells]
    cols = [c for c in cols if len(c)]
    if not cols:
        return np.zeros((0, 3), np.uint8)
    return build_palette(np.concatenate(cols), n_colors=n_colors)


def shared_palette(images: list[Image.Image | np.ndarray | str | os.PathLike], params: PixelParams = _DEFAULT,
                   n_colors: int | None = None) -> np.ndarray:
    """One palette for several inputs: recover each grid, cluster all cells together.
    Pass the result as `pixelate(img, params, palette=...)` to every image."""
    cells = [_recover_cells(load_rgba(im), params) for im in images]
    return shared_palette_from_cells(cells, params, n_colors if n_colors is not None else params.colors)


def lattice_overlay(image: Image.Image | np.ndarray | str | os.PathLike, result: PixelResult | Grid,
                    colour: tuple[int, int, int, int] = (255, 0, 255, 200), width: int = 1) -> Image.Image:
    """The input image with the lattice that `pixelate` fitted drawn over it (RGBA), so a UI
    can show where the engine put the cell boundaries (bent lines included)."""
    grid = result.lattice if isinstance(result, PixelResult) else result
    if grid is None:
        raise ValueError("the result carries no lattice")
    return draw_lattice(to_pil(load_rgba(image)), grid, colour, width)


__all__ = [
    "FolderItem", "PixelParams", "PixelResult", "pixelate", "pixelate_file", "pixelate_folder", "pixelate_frames",
    "upscale_nearest", "shared_palette", "palette_from_images", "preview_path", "list_images", "lattice_overlay",
]
