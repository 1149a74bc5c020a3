"""DGX-Pixels pixel engine: turn a "pixel art" render into the exact native sprite.

Only numpy, Pillow and scipy are used, so importing this package is cheap.

    from pipelines.pixel import PixelParams, pixelate
    result = pixelate(img, PixelParams(colors=16))
    result.image  # RGBA PIL image at native resolution, alpha 0/255
"""

from .engine import (
    FolderItem,
    PixelParams,
    PixelResult,
    lattice_overlay,
    list_images,
    pixelate,
    pixelate_file,
    pixelate_folder,
    pixelate_frames,
    preview_path,
    shared_palette,
    upscale_nearest,
)
from .io import PixelImageError, load_frames, load_rgba
from .palette import apply_palette, build_palette, load_palette, palette_from_images, palette_names

__all__ = [
    "FolderItem",
    "PixelImageError",
    "PixelParams",
    "PixelResult",
    "apply_palette",
    "build_palette",
    "lattice_overlay",
    "list_images",
    "load_frames",
    "load_palette",
    "load_rgba",
    "palette_from_images",
    "palette_names",
    "pixelate",
    "pixelate_file",
    "pixelate_folder",
    "pixelate_frames",
    "preview_path",
    "shared_palette",
    "upscale_nearest",
]
