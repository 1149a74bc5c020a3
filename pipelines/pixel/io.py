"""Safe image input/output for the pixel engine.

Why: the engine is fed user uploads and whole folders. Every way an input can be bad
(not an image, truncated, a decompression bomb, too small, nothing visible) must end in
one exception type with a sentence a person can act on, and every legal-but-unusual
format (16-bit, palette, greyscale, animated) must simply work.

All loaders return RGBA uint8 numpy arrays of shape (h, w, 4).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from studio import limits

# Refuse larger images from the header, before a single pixel is decoded; Pillow's own decompression-bomb
# check (which every other decoder in the process, Gradio's uploads included, goes through) uses the same bound.
Image.MAX_IMAGE_PIXELS = limits.MAX_IMAGE_PIXELS
MIN_SIDE = 2

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


class PixelImageError(ValueError):
    """An input image that cannot be processed; str(e) is a human-readable reason."""


def _name(src: object) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"'{Path(src).name}'"
    return "the image"


def _open(src: str | os.PathLike | bytes) -> Image.Image:
    """Open lazily (header only) and check the pixel count before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            fp = io.BytesIO(src) if isinstance(src, bytes) else src
            im = Image.open(fp)
    except FileNotFoundError:
        raise PixelImageError(f"{_name(src)} does not exist") from None
    except IsADirectoryError:
        raise PixelImageError(f"{_name(src)} is a folder, not an image") from None
    except UnidentifiedImageError:
        raise PixelImageError(f"{_name(src)} is not an image (or not a format Pillow can read)") from None
    except Image.DecompressionBombError:
        raise PixelImageError(
            f"{_name(src)} is too large to process safely (over {limits.MAX_IMAGE_PIXELS / 1e6:.1f} megapixels)"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: a path with a NUL byte, an unusable stream
        raise PixelImageError(f"{_name(src)} could not be read: {e}") from None
    w, h = im.size
    if w * h > limits.MAX_IMAGE_PIXELS:
        im.close()
        raise PixelImageError(
            f"{_name(src)} is {w}x{h} px; images over {limits.MAX_IMAGE_PIXELS / 1e6:.1f} megapixels are refused"
        )
    return im


def _decode(im: Image.Image, what: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on hostile input (IndexError ...)
        raise PixelImageError(f"{what} is damaged or truncated and cannot be decoded ({e})") from None


def pil_to_rgba(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGBA uint8. 16-bit and 32-bit greyscale are scaled to 8 bits,
    palette and greyscale modes keep their transparency (tRNS / LA)."""
    mode = im.mode
    if im.width < MIN_SIDE or im.height < MIN_SIDE:
        raise PixelImageError(f"the image is {im.width}x{im.height} px; it must be at least {MIN_SIDE}x{MIN_SIDE}")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        grey = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        grey = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if mode != "RGBA":
        if mode == "P" and "transparency" in im.info:
            im = im.convert("PA")
        im = im.convert("RGBA")
    return np.array(im, dtype=np.uint8)


def array_to_rgba(a: np.ndarray) -> np.ndarray:
    """A numpy image (h, w), (h, w, 1|2|3|4); uint8, uint16, bool or float 0..1 -> RGBA uint8."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise PixelImageError(f"an image array must be (h, w) or (h, w, 1..4), got shape {a.shape}")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        raise PixelImageError(f"the image is {a.shape[1]}x{a.shape[0]} px; it must be at least {MIN_SIDE}x{MIN_SIDE}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = np.round(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.round(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    c = a.shape[2]
    if c == 1:
        a = np.concatenate([a, a, a, np.full_like(a, 255)], axis=2)
    elif c == 2:
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:]], axis=2)
    elif c == 3:
        a = np.concatenate([a, np.full_like(a[..., :1], 255)], axis=2)
    return np.ascontiguousarray(a)


def validate_rgba(a: np.ndarray, what: str = "the image") -> np.ndarray:
    """Refuse images the engine cannot work on: too small or with nothing visible."""
    h, w = a.shape[:2]
    if w < MIN_SIDE or h < MIN_SIDE:
        raise PixelImageError(f"{what} is {w}x{h} px; it must be at least {MIN_SIDE}x{MIN_SIDE}")
    if w * h > limits.MAX_IMAGE_PIXELS:
        raise PixelImageError(f"{what} is {w}x{h} px; images over {limits.MAX_IMAGE_PIXELS / 1e6:.1f} megapixels are refused")
    if not np.any(a[..., 3]):
        raise PixelImageError(f"{what} is fully transparent: there is nothing to convert")
    return a


def load_rgba(src: ImageSource) -> np.ndarray:
    """Load one image as RGBA uint8.

    Accepts a path, bytes, a PIL image or a numpy array. An animated image (GIF, APNG,
    WebP) gives its FIRST frame; use `load_frames` for all of them. EXIF orientation is
    applied. Raises PixelImageError with a readable reason for anything unusable.
    """
    if isinstance(src, np.ndarray):
        return validate_rgba(array_to_rgba(src))
    if isinstance(src, Image.Image):
        im = src
        with contextlib.suppress(EOFError, AttributeError, ValueError):
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
        _decode(im, "the image")
        return validate_rgba(pil_to_rgba(im))
    im = _open(src)
    try:
        what = _name(src)
        _decode(im, what)  # the first frame
        with contextlib.suppress(Exception):
            im = ImageOps.exif_transpose(im)
        return validate_rgba(pil_to_rgba(im), what)
    finally:
        im.close()


def load_frames(src: ImageSource, max_frames: int = 1000) -> list[np.ndarray]:
    """All frames of an animated image as RGBA uint8 (a still image gives one frame)."""
    if isinstance(src, np.ndarray):
        return [load_rgba(src)]
    im = src if isinstance(src, Image.Image) else _open(src)
    what = _name(src)
    frames: list[np.ndarray] = []
    try:
        for i, frame in enumerate(ImageSequence.Iterator(im)):
            if i >= max_frames:
                break
            _decode(frame, f"frame {i} of {what}")
            frames.append(validate_rgba(pil_to_rgba(frame.copy()), f"frame {i} of {what}"))
    except PixelImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow's frame seeking raises IndexError, struct.error ... on damage
        raise PixelImageError(f"{what} is damaged or truncated and cannot be decoded ({e})") from None
    finally:
        if not isinstance(src, Image.Image):
            im.close()
    return frames


def to_pil(rgba: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), "RGBA")
