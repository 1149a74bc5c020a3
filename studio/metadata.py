"""PNG metadata: an A1111 `parameters` chunk that other tools and sites read, plus our full params as JSON.

The JSON chunk is the source of truth for restoring our own jobs (drop a PNG on the Generate tab, `dgx-pixels
info`). The `parameters` text is written as A1111 writes it (LoRA tags in the prompt, `Sampler`, `Schedule
type`, `Model hash`, `Lora hashes` ...), so Civitai and image viewers read our images right; and it is read
back from any A1111/Forge/Civitai PNG, models and LoRAs matched to local files by their hashes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from PIL import Image, PngImagePlugin

from studio.params import GenerateParams, LoraRef, ParamsError
from studio.registry import Registry
from studio.samplers import a1111_name, parse_sampler

JSON_KEY = "dgx-pixels"


class MetadataError(ValueError):
    pass


def a1111_text(params: GenerateParams, seed: int, model_hash: str | None = None,
               lora_hashes: dict[str, str] | None = None) -> str:
    tags = "".join(f" <lora:{lr.name}:{lr.weight:g}>" for lr in params.loras)
    lines = [params.prompt + tags]
    if params.negative:
        lines.append(f"Negative prompt: {params.negative}")
    sampler, schedule = a1111_name(params.sampler, params.schedule)
    fields = [f"Steps: {params.steps}", f"Sampler: {sampler}", f"Schedule type: {schedule}",
              f"CFG scale: {params.guidance:g}", f"Seed: {seed}", f"Size: {params.width}x{params.height}"]
    if model_hash:
        fields.append(f"Model hash: {model_hash}")
    fields.append(f"Model: {params.model}")
    if params.clip_skip:
        fields.append(f"Clip skip: {params.clip_skip}")
    if lora_hashes:
        fields.append('Lora hashes: "' + ", ".join(f"{n}: {h}" for n, h in lora_hashes.items()) + '"')
    fields.append("Version: dgx-pixels")
    lines.append(", ".join(fields))
    return "\n".join(lines)


_FIELD = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # A1111's own field pattern


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative, {field: value}) of an A1111 `parameters` text."""
    lines = text.strip().split("\n")
    fields: dict[str, str] = {}
    if lines and _FIELD.findall(lines[-1]) and lines[-1].lstrip().startswith("Steps:"):
        fields = {k.strip(): v.strip().strip('"') for k, v in _FIELD.findall(lines.pop())}
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), fields


def params_from_a1111(text: str, registry: Registry | None = None) -> tuple[GenerateParams, int | None, list[str]]:
    """The job an A1111/Forge/Civitai PNG describes, with models and LoRAs matched to this studio's files by
    hash (then by name), and a sentence for each that is not here. Returns (params, seed, notes)."""
    prompt, negative, f = parse_a1111(text)
    notes: list[str] = []
    kw: dict = {"prompt": prompt or "(no prompt)", "negative": negative}
    if "Steps" in f:
        kw["steps"] = int(f["Steps"])
    if "CFG scale" in f:
        kw["guidance"] = float(f["CFG scale"])
    if "Size" in f and "x" in f["Size"]:
        kw["width"], kw["height"] = (int(v) // 8 * 8 for v in f["Size"].split("x"))
    if "Clip skip" in f:
        kw["clip_skip"] = int(f["Clip skip"])
    if "Sampler" in f:
        try:
            kw["sampler"], kw["schedule"] = parse_sampler(f["Sampler"], f.get("Schedule type", "automatic"))
        except ParamsError as exc:
            notes.append(f"{exc}; the checkpoint's own sampler is used")
    params = GenerateParams(**kw)
    if registry is not None:
        params = _match_files(params, f, registry, notes)
    seed = int(f["Seed"]) if f.get("Seed", "").lstrip("-").isdigit() else None
    return params, seed, notes


def _match_files(params: GenerateParams, f: dict[str, str], registry: Registry,
                 notes: list[str]) -> GenerateParams:
    model = None
    if f.get("Model hash"):
        entry = registry.checkpoint_by_hash(f["Model hash"])
        model = entry.name if entry else None
    if model is None and f.get("Model"):
        names = {m.name for m in registry.checkpoints() if not m.error}
        model = f["Model"] if f["Model"] in names else None
        if model is None:
            notes.append(f"model {f['Model']!r} (hash {f.get('Model hash', '?')}) is not here; the default is used")
    hashes = dict(part.split(":", 1) for part in f.get("Lora hashes", "").split(",") if ":" in part)
    hashes = {k.strip(): v.strip() for k, v in hashes.items()}
    local = {lo.name for lo in registry.loras()}
    loras = []
    for ref in params.loras:
        match = registry.lora_by_hash(hashes[ref.name]) if ref.name in hashes else None
        name = match.name if match else (ref.name if ref.name in local else None)
        if name is None:
            notes.append(f"LoRA {ref.name!r} (hash {hashes.get(ref.name, '?')}) is not here; left out")
        elif name not in {lr.name for lr in loras}:
            loras.append(LoraRef(name, ref.weight))
    return dataclasses.replace(params, model=model, loras=tuple(loras))


def pnginfo(params: GenerateParams, seed: int, extra: dict | None = None, model_hash: str | None = None,
            lora_hashes: dict[str, str] | None = None):
    """`params` is the resolved job; `seed` is this image's own seed (job seed + index)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111_text(params, seed, model_hash, lora_hashes))
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


def params_from_png(path: Path | str, registry: Registry | None = None) -> tuple[GenerateParams, int]:
    """The params and this image's own seed, so the image can be made again exactly: from our JSON chunk, or
    from an A1111 `parameters` text (see `import_png` for the notes on what was not found)."""
    params, seed, _notes = import_png(path, registry)
    return params, seed


def import_png(path: Path | str, registry: Registry | None = None) -> tuple[GenerateParams, int, list[str]]:
    """(params, seed, notes) of any PNG with generation settings: ours, A1111's, Forge's, Civitai's."""
    meta = read_metadata(path)
    if "params" in meta:
        return GenerateParams.from_dict(meta["params"]), int(meta["seed"]), []
    if not meta.get("parameters"):
        raise MetadataError(f"{Path(path).name}: has no DGX-Pixels settings and no A1111 settings")
    try:
        params, seed, notes = params_from_a1111(meta["parameters"], registry)
    except (ValueError, KeyError) as exc:
        raise MetadataError(f"{Path(path).name}: its A1111 settings cannot be read ({exc})") from None
    return params, (seed if seed is not None else 0), notes
