"""The short content hashes that pin a training run: the base model's UNet weights and the dataset.

Why a module of its own: both sides need them (the studio pins the base when it starts a run and checks
it again on resume; the child checks it, hashes the dataset, and writes both into every checkpoint and
into the exported LoRA's metadata), and neither side should import the other for them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_SHORT = 12  # hex digits kept of a sha256
_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in this process: a real SDXL UNet is ~5 GB, and
    the studio asks again for every run it starts."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _sha256_uncached(path)
    return _HASHES[key]


def _sha256_uncached(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_model_hash(base_model: str | Path) -> str:
    """Short sha256 of the base's UNet weights: the part of the model a UNet LoRA is trained against."""
    base = Path(base_model)
    if base.is_file():
        return _sha256_file(base)[:_SHORT]
    unet = base / "unet"
    files = sorted(unet.glob("*.safetensors")) or sorted(unet.glob("*.bin"))
    if not files:
        raise ValueError(f"base model {base} has no unet weights (expected a diffusers folder with unet/)")
    h = hashlib.sha256()
    for f in files:
        h.update(_sha256_file(f).encode())
    return (_sha256_file(files[0]) if len(files) == 1 else h.hexdigest())[:_SHORT]


def dataset_hash(pairs: list[tuple[Path, str]]) -> str:
    """sha256 over the sorted (image sha256, caption) pairs: renaming files keeps it, editing one
    changes it."""
    items = sorted(f"{_sha256_file(p)}\0{caption}" for p, caption in pairs)
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:_SHORT]
