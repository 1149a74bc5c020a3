"""Captioners for training sets: an honest structured caption by default, a local transformers model if present.

Why: a LoRA learns what its captions leave unsaid. The default `StructuredCaptioner` needs no weights and
states only facts it measured (size, palette, colour names, background, kind, the file's own name), so
the trigger word ends up carrying the *style*. A real image-to-text model can be dropped into
`models/captioners/<name>/`; it is loaded from that folder only (never downloaded) and lazily, because
importing torch + transformers costs seconds that the structured captioner and the CLI help should not pay.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image
from scipy import ndimage

from pipelines.pixel import load_rgba, upscale_nearest
from pipelines.pixel.color import nearest_index, rgb_to_oklab
from pipelines.pixel.native import native_sprite


class CaptionerError(ValueError):
    """A captioner that cannot be used; the message names the folder."""


@runtime_checkable
class Captioner(Protocol):
    """Anything with a `name` and `caption(image) -> str` can caption a dataset."""

    name: str

    def caption(self, image: Image.Image) -> str: ...


# A small named colour table (sRGB anchors); a colour gets the name of its nearest anchor in OKLab.
COLOUR_NAMES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 30, 30)), ("dark red", (120, 15, 20)), ("orange", (240, 130, 30)),
    ("yellow", (245, 220, 50)), ("lime", (160, 230, 60)), ("green", (50, 170, 60)),
    ("dark green", (25, 85, 35)), ("teal", (20, 128, 128)), ("cyan", (60, 220, 230)),
    ("light blue", (130, 180, 240)), ("blue", (40, 80, 220)), ("navy", (20, 30, 100)),
    ("purple", (130, 50, 170)), ("magenta", (220, 50, 200)), ("pink", (245, 150, 190)),
    ("brown", (120, 70, 35)), ("beige", (225, 205, 165)), ("white", (255, 255, 255)),
    ("light grey", (192, 192, 192)), ("grey", (128, 128, 128)), ("dark grey", (64, 64, 64)),
    ("black", (10, 10, 10)),
)
_NAME_LAB = rgb_to_oklab(np.array([c for _, c in COLOUR_NAMES], np.uint8))


def colour_name(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """The table name nearest to an sRGB colour in OKLab."""
    lab = rgb_to_oklab(np.asarray(rgb, np.uint8).reshape(1, 3))
    return COLOUR_NAMES[int(nearest_index(lab, _NAME_LAB)[0])][0]


_GENERIC_WORDS = {"img", "image", "sprite", "sprites", "frame", "copy", "final", "new", "png", "untitled"}


def name_words(name: str) -> str:
    """File name -> words: 'red_slime-idle_01.png' -> 'red slime idle', 'RedSlime' -> 'red slime'.
    Numbers and filler words (img, copy, frame ...) are dropped: they carry no meaning for the model."""
    stem = PurePosixPath(name.replace("\\", "/").split("#", 1)[0]).stem
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", stem.lower()) if w]
    return " ".join(w for w in words if not w.isdigit() and w not in _GENERIC_WORDS
                    and not re.fullmatch(r"[a-z]?\d+[a-z]?", w))


def size_class(w: int, h: int) -> str:
    side = max(w, h)
    return "tiny" if side <= 16 else "small" if side <= 32 else "medium" if side <= 64 else "large"


def _kind(rgba: np.ndarray) -> str:
    """tile: a fully opaque square (not a flat backdrop); sheet: several similar separate shapes on a grid;
    else sprite."""
    h, w = rgba.shape[:2]
    mask = rgba[..., 3] >= 128
    if mask.all():  # a sprite on a flat backdrop is not a tile
        return "tile" if w == h and _flat_border(rgba) is None else "sprite"
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n < 4:
        return "sprite"
    boxes = [s for s in ndimage.find_objects(labels) if s is not None]
    sizes = np.array([(s[1].stop - s[1].start, s[0].stop - s[0].start) for s in boxes], np.float64)
    big = sizes.prod(1) >= max(4.0, 0.25 * np.median(sizes.prod(1)))
    if big.sum() < 4:
        return "sprite"
    sizes = sizes[big]
    centres = np.array([((s[1].start + s[1].stop) / 2, (s[0].start + s[0].stop) / 2)
                        for s, b in zip(boxes, big, strict=True) if b])
    med = np.median(sizes, 0)
    similar = np.all((sizes > 0.5 * med) & (sizes < 2.0 * med), axis=1).mean() >= 0.75
    rows = len(np.unique(np.round(centres[:, 1] / max(med[1], 1))))
    cols = len(np.unique(np.round(centres[:, 0] / max(med[0], 1))))
    on_grid = rows * cols <= 1.5 * len(centres)
    return "sheet" if similar and on_grid else "sprite"


def _flat_border(rgba: np.ndarray) -> np.ndarray | None:
    """The colour of an opaque border ring that is (at least 90 %) one colour, else None."""
    ring = np.concatenate([rgba[0], rgba[-1], rgba[1:-1, 0], rgba[1:-1, -1]])
    if not np.all(ring[:, 3] >= 128):
        return None
    colours, counts = np.unique(ring[:, :3], axis=0, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < 0.9 * len(ring) or np.all(rgba[..., :3] == colours[top]):
        return None
    return colours[top]


@dataclass(frozen=True)
class StructuredCaptioner:
    """A caption built from measured facts. Needs no weights; deterministic.

    'slm, red slime idle, pixel art sprite, 32x32, small, transparent background, 6 colours: red, dark red,
    black, white'. An image that is not native pixel art is first reduced with the pixel engine, so the
    size is the sprite's, not the upscale's.
    """

    trigger: str = ""
    max_colour_names: int = 4
    name: str = "structured"

    def __post_init__(self) -> None:
        if not 1 <= self.max_colour_names <= len(COLOUR_NAMES):
            raise ValueError(f"max_colour_names must be 1..{len(COLOUR_NAMES)}, got {self.max_colour_names}")

    def caption(self, image: Image.Image | np.ndarray, name: str | None = None) -> str:
        # the native sprite is only believed when enlarging it back reproduces the input: a sprite with
        # large flat areas can look like an upscale, and its caption must not claim a size it does not have
        rgba = load_rgba(image)
        found = native_sprite(rgba)
        rgba = np.asarray(found.image) if found.info["reproduces"] else rgba
        h, w = rgba.shape[:2]
        opaque = rgba[..., 3] >= 128
        kind = _kind(rgba)
        tags = [self.trigger.strip()] if self.trigger.strip() else []
        src = name or (getattr(image, "filename", "") if isinstance(image, Image.Image) else "")
        words = name_words(src) if src else ""
        if words:
            tags.append(words)
        tags += [f"pixel art {kind}", f"{w}x{h}", size_class(w, h)]
        border = np.concatenate([opaque[0], opaque[-1], opaque[:, 0], opaque[:, -1]])
        bg = _flat_border(rgba)
        if (~opaque).any() and border.mean() < 0.5:
            tags.append("transparent background")
        elif bg is not None:  # a sprite on a flat colour: name it, and leave it out of the sprite's colours
            tags.append(f"{colour_name(bg)} background")
            opaque &= np.any(rgba[..., :3] != bg, axis=-1)
        else:
            tags.append("opaque background")
        cols = rgba[opaque][:, :3]
        if len(cols):
            packed = (cols[:, 0].astype(np.uint32) << 16) | (cols[:, 1].astype(np.uint32) << 8) | cols[:, 2]
            uniq, counts = np.unique(packed, return_counts=True)
            rgb = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], -1).astype(np.uint8)
            names = [COLOUR_NAMES[i][0] for i in nearest_index(rgb_to_oklab(rgb), _NAME_LAB)]
            cover: dict[str, int] = {}
            for n, c in zip(names, counts, strict=True):
                cover[n] = cover.get(n, 0) + int(c)
            top = sorted(cover, key=lambda n: -cover[n])[: self.max_colour_names]
            count = f"{len(uniq)} colours" if len(uniq) <= 64 else "many colours"
            tags.append(f"{count}: {', '.join(top)}")
        return ", ".join(tags)


class TransformersCaptioner:
    """Any local transformers image-to-text model (BLIP, GIT, Florence-2, a VisionEncoderDecoderModel ...).

    Loaded from `model_dir` only (local_files_only, HF_HUB_OFFLINE respected), on the first caption. The
    sprite is enlarged with nearest neighbour to about `min_side` px and put on white: captioning models
    were trained on photos of a few hundred px, not 16x16 RGBA.
    """

    def __init__(self, model_dir: str | os.PathLike, max_new_tokens: int = 30, prompt: str | None = None,
                 min_side: int = 384):
        d = Path(model_dir)
        if not d.is_dir():
            raise CaptionerError(f"captioner folder {d} does not exist")
        cfg = d / "config.json"
        if not cfg.is_file():
            raise CaptionerError(f"captioner folder {d} has no config.json: it is not a transformers model")
        try:
            self.config = json.loads(cfg.read_text("utf-8"))
            self.model_type = str(self.config.get("model_type", ""))
        except (json.JSONDecodeError, OSError, AttributeError) as e:
            raise CaptionerError(f"captioner folder {d}: config.json cannot be read ({e})") from None
        if not self.model_type:
            raise CaptionerError(f"captioner folder {d}: config.json names no model_type")
        self.model_dir, self.name = d, d.name
        self.max_new_tokens, self.min_side = int(max_new_tokens), int(min_side)
        self.prompt = prompt if prompt is not None else ("<CAPTION>" if "florence" in self.model_type else None)
        self._model = self._processor = self._tokenizer = None
        self._lock = threading.Lock()

    def load(self) -> TransformersCaptioner:
        """Load model and processor now (otherwise done by the first caption)."""
        with self._lock:
            if self._model is None:
                try:
                    self._load()
                except Exception as e:  # any failure inside transformers: say which folder
                    raise CaptionerError(f"could not load the captioner in {self.model_dir}: {e}") from e
        return self

    def _load(self) -> None:
        import transformers as tf

        kw = {"local_files_only": True}
        if self.model_type == "vision-encoder-decoder":
            self._model = tf.VisionEncoderDecoderModel.from_pretrained(self.model_dir, **kw)
            self._processor = tf.AutoImageProcessor.from_pretrained(self.model_dir, **kw)
            self._tokenizer = tf.AutoTokenizer.from_pretrained(self.model_dir, **kw)
        else:
            # image-text-to-text covers BLIP, BLIP-2, GIT, Florence-2 ... in transformers 5; the others are
            # where older releases or some architectures register their captioning heads
            error: Exception | None = None
            for auto in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
                cls = getattr(tf, auto, None)
                if cls is None:
                    continue
                try:
                    self._model = cls.from_pretrained(self.model_dir, **kw)
                    break
                except ValueError as e:  # "Unrecognized configuration class ... for this kind of AutoModel"
                    error = e
            if self._model is None:
                raise error or RuntimeError("no transformers auto class for image-to-text is available")
            self._processor = tf.AutoProcessor.from_pretrained(self.model_dir, **kw)
        self._model.eval()

    def _rgb(self, image: Image.Image) -> Image.Image:
        im = image.convert("RGBA")
        k = max(1, self.min_side // max(1, min(im.size)))
        im = upscale_nearest(im, k) if k > 1 else im
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(im, mask=im.getchannel("A"))
        return out

    def caption(self, image: Image.Image) -> str:
        import torch

        self.load()
        img = self._rgb(image)
        with torch.inference_mode():
            if self._tokenizer is not None:
                pix = self._processor(images=img, return_tensors="pt").pixel_values
                ids = self._model.generate(pixel_values=pix, max_new_tokens=self.max_new_tokens)
                text = self._tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
            else:
                kw = {"text": self.prompt} if self.prompt else {}
                inputs = self._processor(images=img, return_tensors="pt", **kw)
                ids = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens)
                text = self._processor.batch_decode(ids, skip_special_tokens=True)[0]
        if self.prompt:
            text = text.replace(self.prompt, "")
        return re.sub(r"\s+", " ", text).strip()


def find_captioners(models_dir: str | os.PathLike, errors: list[str] | None = None) -> dict[str, Captioner]:
    """{'structured': StructuredCaptioner(), <folder name>: TransformersCaptioner, ...} for every model
    folder in `<models_dir>/captioners/`. Nothing is loaded yet. Folders that are not models are left out;
    their reasons are appended to `errors` if given."""
    found: dict[str, Captioner] = {"structured": StructuredCaptioner()}
    base = Path(models_dir) / "captioners"
    if not base.is_dir():
        return found
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found[d.name] = TransformersCaptioner(d)
        except CaptionerError as e:
            if errors is not None:
                errors.append(str(e))
    return found


__all__ = ["COLOUR_NAMES", "Captioner", "CaptionerError", "StructuredCaptioner", "TransformersCaptioner",
           "colour_name", "find_captioners", "name_words", "size_class"]
