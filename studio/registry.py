"""What models are on disk: SDXL checkpoints (diffusers folders or single `.safetensors` files) and LoRAs.

Scanning only reads safetensors headers (names, shapes, `__metadata__`), never the weights, so a folder of
7 GB checkpoints lists instantly. Short sha256 hashes (A1111's 10-hex "AutoV2" form) are cached by path, size
and mtime, so a file is hashed once, not at every start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from studio.files import atomic_write_bytes
from studio.sdxl.builtin_config import write_sdxl_config

TINY_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
SDXL_SECOND_ENCODER = "conditioner.embedders.1."  # OpenCLIP bigG: SDXL base has it, SD 1.x/2.x and the refiner not


class ModelError(ValueError):
    """A model or LoRA is missing, unreadable, or does not fit; the message says which file and why."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    kind: str  # "diffusers" | "single_file"
    demo: bool = False
    size_bytes: int = 0
    error: str | None = None  # why this file cannot be used (listed so a person sees it; never the default)


KOHYA_SUFFIX = "_kohya"  # the trainer exports `<name>.safetensors` and its kohya twin `<name>_kohya.safetensors`


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA. `path` is the file the pipeline manager loads (the diffusers/peft form when there is one);
    `formats` maps each form on disk ("diffusers", "kohya") to its file: a trained LoRA is one entry with both
    of its exports, not two entries."""

    name: str
    path: Path
    size_bytes: int
    metadata: dict = field(default_factory=dict)
    formats: dict = field(default_factory=dict)

    @property
    def trigger_words(self) -> list[str]:
        md = self.metadata
        for key in ("dgxp.trigger_word", "trigger_word", "ss_trigger_word"):
            if md.get(key):
                return [w.strip() for w in str(md[key]).split(",") if w.strip()]
        freq = md.get("ss_tag_frequency")
        if freq:
            try:
                tags: dict[str, int] = {}
                for folder in json.loads(freq).values():
                    for tag, n in folder.items():
                        tags[tag.strip()] = tags.get(tag.strip(), 0) + n
                return [t for t, _ in sorted(tags.items(), key=lambda kv: -kv[1])[:3]]
            except (ValueError, AttributeError):
                return []
        return []


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file: tensor names -> dtype/shape, plus `__metadata__`.

    Reading it ourselves (8-byte length + JSON) lets a corrupt or truncated file fail with a clear message
    before any weights are touched.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ModelError(f"{path.name}: too short to be a .safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n <= 1 or n > 100_000_000:
                raise ModelError(f"{path.name}: not a .safetensors file (header length {n})")
            header = json.loads(fh.read(n))
            size = path.stat().st_size
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{path.name}: corrupt .safetensors header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path.name}: corrupt .safetensors header")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        meta = header.get("__metadata__", {})
        if not isinstance(meta, dict) or not all(isinstance(v, dict) and isinstance(v.get("shape"), list)
                                                 for k, v in header.items() if k != "__metadata__"):
            raise TypeError("tensor entries without a shape")
    except (TypeError, KeyError, IndexError, ValueError, OverflowError) as exc:
        raise ModelError(f"{path.name}: corrupt .safetensors header (not tensor names -> dtype, shape, "
                         f"offsets: {exc})") from None
    if 8 + n + end > size:
        raise ModelError(f"{path.name}: file is truncated ({size} bytes, header promises {8 + n + end})")
    return header


class HashCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}

    def short_hash(self, file: Path) -> str:
        """A1111's "Model hash" (AutoV2): the first 10 hex digits of the whole file's sha256."""
        return self._cached(file, "", lambda fh: fh, 10)

    def addnet_hash(self, file: Path) -> str:
        """A1111's "Lora hashes" entry: the first 12 hex digits of the sha256 of a .safetensors file's tensor
        data (the header, where metadata lives, left out, so editing a LoRA's metadata keeps its hash)."""

        def skip_header(fh):
            (n,) = struct.unpack("<Q", fh.read(8))
            fh.seek(8 + n)
            return fh

        return self._cached(file, "addnet|", skip_header, 12)

    def _cached(self, file: Path, kind: str, start, digits: int) -> str:
        file = Path(file).resolve()
        st = file.stat()
        key = f"{kind}{file}|{st.st_size}|{st.st_mtime_ns}"
        with self._lock:
            if key in self._data:
                return self._data[key]
        h = hashlib.sha256()
        with file.open("rb") as fh:
            fh = start(fh)
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        value = h.hexdigest()[:digits]
        with self._lock:
            self._data[key] = value
            atomic_write_bytes(self.path, json.dumps(self._data, indent=0).encode())
        return value


class Registry:
    """Scans the models folder on demand (cheap), so files dropped in appear without a restart."""

    def __init__(self, models_dir: Path, hash_cache: HashCache):
        self.models_dir = Path(models_dir)
        self.hashes = hash_cache

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "checkpoints"

    @property
    def loras_dir(self) -> Path:
        return self.models_dir / "loras"

    def checkpoints(self) -> list[ModelEntry]:
        out: list[ModelEntry] = []
        if not self.checkpoints_dir.is_dir():
            return out
        for p in sorted(self.checkpoints_dir.iterdir()):
            if p.name.startswith(".") or p.name.endswith(".partial"):
                continue  # a model being written (or left half-written by a crash) is not a model
            if p.is_dir() and (p / "model_index.json").is_file():
                size = sum(f.stat().st_size for f in p.rglob("*.safetensors"))
                out.append(ModelEntry(p.name, p, "diffusers", (p / "DEMO.json").is_file(), size))
            elif p.suffix == ".safetensors" and p.is_file():
                error = None
                try:
                    read_safetensors_header(p)
                except ModelError as exc:
                    error = str(exc)
                out.append(ModelEntry(p.stem, p, "single_file", False, p.stat().st_size, error))
        return out

    def lora_files(self) -> list[LoraEntry]:
        """Every LoRA file on its own (a kohya twin too), named by its file name."""
        out: list[LoraEntry] = []
        if not self.loras_dir.is_dir():
            return out
        for p in sorted(self.loras_dir.rglob("*.safetensors")):
            try:
                md = read_safetensors_header(p).get("__metadata__") or {}
            except ModelError:
                md = {"error": "unreadable header"}
            kind = "kohya" if p.stem.endswith(KOHYA_SUFFIX) or "ss_network_module" in md else "diffusers"
            out.append(LoraEntry(p.stem, p, p.stat().st_size, dict(md), {kind: p}))
        return out

    def loras(self) -> list[LoraEntry]:
        """The LoRAs as a person sees them: `<name>.safetensors` and its kohya twin `<name>_kohya.safetensors`
        (in the same folder) are one entry named `<name>`, with both files in `formats`, loaded from the first.
        A kohya file without its twin stays an entry of its own."""
        files = self.lora_files()
        by_path = {lo.path: lo for lo in files}
        twins = {}  # the diffusers file's path -> its kohya twin
        for lo in files:
            base = by_path.get(lo.path.with_name(lo.name.removesuffix(KOHYA_SUFFIX) + ".safetensors"))
            if lo.name.endswith(KOHYA_SUFFIX) and base is not None and "diffusers" in base.formats:
                twins[base.path] = lo
        grouped = {twin.path for twin in twins.values()}
        return [dataclasses.replace(lo, formats={**lo.formats, "kohya": twins[lo.path].path}) if lo.path in twins
                else lo for lo in files if lo.path not in grouped]

    def checkpoint(self, name: str) -> ModelEntry:
        for m in self.checkpoints():
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.checkpoints()) or "none"
        raise ModelError(f"unknown model {name!r} (available: {known}); put SDXL checkpoints in {self.checkpoints_dir}")

    def checkpoint_by_hash(self, short_hash: str) -> ModelEntry | None:
        """The single-file checkpoint with this A1111 model hash (a diffusers folder has none)."""
        want = short_hash.strip().lower()
        return next((m for m in self.checkpoints() if m.kind == "single_file" and not m.error
                     and self.hashes.short_hash(m.path) == want[:10]), None)

    def lora_by_hash(self, addnet_hash: str) -> LoraEntry | None:
        """The LoRA whose file (either format) has this A1111 `Lora hashes` value."""
        want = addnet_hash.strip().lower()
        for lo in self.loras():
            for path in lo.formats.values() or [lo.path]:
                try:
                    if self.hashes.addnet_hash(path) == want[:12]:
                        return lo
                except (OSError, struct.error):
                    continue
        return None

    def lora(self, name: str) -> LoraEntry:
        """A LoRA by its name; `<name>_kohya` (one export format by its file name, as older settings and PNGs
        name it) still finds that file."""
        for lo in self.loras():
            if lo.name == name:
                return lo
        for lo in self.lora_files():
            if lo.name == name:
                return lo
        known = ", ".join(lo.name for lo in self.loras()) or "none"
        raise ModelError(f"unknown LoRA {name!r} (available: {known}); put LoRA .safetensors files in {self.loras_dir}")

    def single_file_config(self, entry: ModelEntry) -> str | None:
        """The local diffusers config folder that lets `from_single_file` work offline.

        Order: a `<name>.config/` folder beside the file; the demo model's folder when the file has the demo's
        tiny architecture; `models/configs/sdxl-base/` if the user put SDXL's configs there; else the built-in
        SDXL base 1.0 folder, written once to `models/configs/sdxl-base-builtin/` (`studio.sdxl.builtin_config`), so no
        network is ever needed. A file that is not SDXL (SD 1.x/2.x, a refiner) is refused by name here.
        """
        sidecar = entry.path.with_suffix(".config")
        if (sidecar / "model_index.json").is_file():
            return str(sidecar)
        header = read_safetensors_header(entry.path)
        if TINY_CONV_IN not in header:
            raise ModelError(f"{entry.path.name}: not an SDXL checkpoint (no UNet weights in the SGM layout)")
        if not any(k.startswith(SDXL_SECOND_ENCODER) for k in header):
            kind = "an SD 1.x/2.x checkpoint" if any(k.startswith("cond_stage_model.") for k in header) else \
                "an SDXL refiner or another model with one text encoder"
            raise ModelError(f"{entry.path.name}: this is {kind}; the studio runs SDXL base models")
        if header[TINY_CONV_IN]["shape"][0] < 320:
            for m in self.checkpoints():
                if m.demo:
                    return str(m.path)
        shared = self.models_dir / "configs" / "sdxl-base"
        if (shared / "model_index.json").is_file():
            return str(shared)
        builtin = self.models_dir / "configs" / "sdxl-base-builtin"
        if not (builtin / "model_index.json").is_file():
            write_sdxl_config(builtin)
        return str(builtin)
