"""PNG metadata: an A1111-style `parameters` chunk that other tools and sites read, plus our full params as JSON.

The JSON chunk is the source of truth for restoring a job (drop a PNG on the Generate tab, `dgx-pixels info`);
the `parameters` text is for the rest of the ecosystem.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from studio.params import GenerateParams

JSON_KEY = "dgx-pixels"


class MetadataError(ValueError):
    pass


def a1111_text(params: GenerateParams, seed: int, model_hash: str | None = None) -> str:
    lines = [params.prompt]
    if params.negative:
        lines.append(f"Negative prompt: {params.negative}")
    fields = [
        f"Steps: {params.steps}",
        "Sampler: Euler",
        f"CFG scale: {params.guidance:g}",
        f"Seed: {seed}",
        f"Size: {params.width}x{params.height}",
    ]
    if model_hash:
        fields.append(f"Model hash: {model_hash}")
    fields.append(f"Model: {params.model}")
    if params.loras:
        fields.append("Lora weights: \"" + ", ".join(f"{lr.name}: {lr.weight:g}" for lr in params.loras) + "\"")
    fields.append("Version: dgx-pixels")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def pnginfo(params: GenerateParams, seed: int, extra: dict | None = None, model_hash: str | None = None):
    """`params` is the resolved job; `seed` is this image's own seed (job seed + index)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111_text(params, seed, model_hash))
    payload = {"params": params.to_dict(), "seed": seed, **(extra or {})}
    info.add_text(JSON_KEY, json.dumps(payload, sort_keys=True))
    return info


def read_metadata(path: Path | str) -> dict:
    """Both chunks of a PNG; a non-PNG or a PNG without our chunk is a clear error."""
    try:
        with Image.open(path) as im:
            fmt = im.format
            text = dict(getattr(im, "text", {}) or im.info)
    except (OSError, Image.DecompressionBombError) as exc:
        raise MetadataError(f"{Path(path).name}: not a readable image ({exc})") from exc
    if fmt != "PNG":
        raise MetadataError(f"{Path(path).name}: is {fmt or 'not an image'}, settings are only stored in PNG files")
    out: dict = {"parameters": text.get("parameters")}
    if JSON_KEY in text:
        try:
            out.update(json.loads(text[JSON_KEY]))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{Path(path).name}: damaged {JSON_KEY} metadata ({exc})") from exc
    return out


def params_from_png(path: Path | str) -> tuple[GenerateParams, int]:
    """The params and this image's own seed, so the image can be made again exactly."""
    meta = read_metadata(path)
    if "params" not in meta:
        raise MetadataError(f"{Path(path).name}: has no DGX-Pixels settings (was it made by another tool?)")
    params = GenerateParams.from_dict(meta["params"])
    return params, int(meta["seed"])
