"""Command line for the pixel engine alone (the app's CLI wraps the same functions).

    python -m pipelines.pixel IN OUT [--size WxH] [--exact] [--colors N|auto]
        [--palette NAME|FILE] [--background auto|keep|#hex] [--outline #hex]
        [--preview-scale K] [--shared-palette]

IN and OUT may be files or folders (folder -> folder). Exit status 0 on success, 1 when
any image failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .engine import PixelParams, pixelate_file, pixelate_folder
from .io import PixelImageError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipelines.pixel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="input image or folder")
    ap.add_argument("dst", help="output PNG or folder")
    ap.add_argument("--size", help="target native size WxH (a hint unless --exact)")
    ap.add_argument("--exact", action="store_true", help="force exactly --size cells")
    ap.add_argument("--colors", default="auto", help="number of colours (2-256) or 'auto'")
    ap.add_argument("--palette", help="palette name (pico-8, gameboy, ...) or .hex/.gpl/.pal file")
    ap.add_argument("--background", default="auto", help="auto | keep | #rrggbb")
    ap.add_argument("--fill-holes", action="store_true", help="also clear enclosed background regions")
    ap.add_argument("--dither", default="none", choices=["none", "bayer"])
    ap.add_argument("--keep-strays", action="store_true", help="do not remove stray pixels")
    ap.add_argument("--outline", help="1-px outline colour #rrggbb")
    ap.add_argument("--crop", action="store_true", help="crop to the sprite")
    ap.add_argument("--canvas", help="pad to this canvas WxH (after --crop)")
    ap.add_argument("--preview-scale", type=int, help="also write <stem>.preview.png enlarged K times")
    ap.add_argument("--shared-palette", action="store_true", help="folders: one palette for all images")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        params = PixelParams(
            size=args.size, size_mode="exact" if args.exact else "hint",
            colors=None if args.colors == "auto" else args.colors, palette=args.palette,
            background=args.background, keep_holes=not args.fill_holes, dither=args.dither,
            remove_strays=not args.keep_strays, outline=args.outline, crop=args.crop, canvas=args.canvas,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    src = Path(args.src)
    try:
        if src.is_dir():
            items = pixelate_folder(src, args.dst, params, args.shared_palette, args.preview_scale)
            bad = [it for it in items if it.error]
            for it in bad:
                print(f"{it.src.name}: {it.error}", file=sys.stderr)
            return 1 if bad else 0
        res = pixelate_file(src, args.dst, params, args.preview_scale)
        w, h = res.image.size
        print(f"{src.name}: {w}x{h}, cell {res.cell[0]:.2f}x{res.cell[1]:.2f}, {len(res.palette)} colours")
        return 0
    except (PixelImageError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
