"""What makes two benchmark figures comparable, recorded on every row of a run: the studio's version and
commit, the model and LoRAs with their hashes, the device and dtype, the library versions, the machine.

And `MemoryWatch`: the peak memory of one benchmark (torch's peak allocation on CUDA, the process's peak
resident set on a CPU; on DGX-Spark's unified memory also the system's peak use, read from /proc/meminfo, since
NVML reports no memory there).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import threading
from pathlib import Path

from studio.core import Studio
from studio.jobs import MB, PeakMemory, meminfo, unified_memory
from studio.params import LoraRef
from studio.registry import ModelError

SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout, when the studio runs from one


def studio_version() -> str | None:
    try:
        return importlib.metadata.version("dgx-pixels")
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = SOURCE_ROOT) -> str | None:
    """The checkout's commit (`-dirty` with local changes), or None outside a git checkout."""
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_model() -> str:
    """The CPU's name (/proc/cpuinfo on x86; the implementer and part on Arm, as DGX-Spark's Grace has no name
    there), with its logical core count."""
    name = None
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if found:
            name = found.group(1).strip()
        else:
            part = re.search(r"^CPU part\s*:\s*(\S+)", text, re.M)
            impl = re.search(r"^CPU implementer\s*:\s*(\S+)", text, re.M)
            if part:
                name = f"{platform.machine()} (implementer {impl.group(1) if impl else '?'}, part {part.group(1)})"
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} threads"


def libraries() -> dict[str, str | None]:
    import diffusers
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "diffusers": diffusers.__version__}


def gpu_model() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return f"{name} (unified memory)" if unified_memory() else name


def model_hash(studio: Studio, name: str) -> str | None:
    """A single file's A1111 hash; a diffusers folder's: its UNet weights' (hashed once, then cached)."""
    try:
        entry = studio.registry.checkpoint(name)
    except ModelError:
        return None
    if entry.kind == "single_file":
        return studio.registry.hashes.short_hash(entry.path)
    weights = sorted((entry.path / "unet").glob("*.safetensors"))
    if not weights:
        return None
    return "+".join(studio.registry.hashes.short_hash(w) for w in weights)[:32]


def lora_label(studio: Studio, loras: tuple[LoraRef, ...]) -> str:
    """`name:weight#hash, ...` (the hash of its tensors, as A1111's `Lora hashes`)."""
    out = []
    for ref in loras:
        try:
            digest = studio.registry.hashes.addnet_hash(studio.registry.lora(ref.name).path)
        except (ModelError, OSError):
            digest = "?"
        out.append(f"{ref.name}:{ref.weight:g}#{digest}")
    return ", ".join(out)


def run_context(studio: Studio, model: str, model_digest: str | None, loras: tuple[LoraRef, ...]) -> dict:
    """The context columns of the `benchmarks` table for one run."""
    import torch

    device, dtype = studio.manager.device, studio.manager.dtype
    return {"studio_version": studio_version(), "git_commit": git_commit(), "model": model,
            "model_hash": model_digest, "loras": lora_label(studio, loras), "device": studio.queue.device_name,
            "dtype": str(dtype).removeprefix("torch."), **libraries(), "cpu": cpu_model(),
            "gpu": gpu_model() if device.type == "cuda" else None, "threads": torch.get_num_threads(),
            "host": platform.node()}


class MemoryWatch:
    """Peak memory over a `with` block, in MB: `peak_mb` (torch's peak allocation on CUDA, the process's peak
    resident set elsewhere) and, on unified memory, `unified_peak_mb` (the system's peak use, sampled)."""

    def __init__(self, cuda: bool, every_s: float = 0.1):
        self.meter = PeakMemory(cuda)
        self.kind = self.meter.kind
        self.unified = cuda and unified_memory()
        self.every_s = every_s
        self.peak_mb: float | None = None
        self.unified_peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            info = meminfo()
            used = (info.get("MemTotal", 0) - info.get("MemAvailable", 0)) / MB
            self.unified_peak_mb = max(self.unified_peak_mb or 0.0, used)
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> MemoryWatch:
        self.meter.start()
        if self.unified:
            self._thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = self.meter.stop()
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self.unified_peak_mb = round(self.unified_peak_mb or 0.0, 1) or None

