"""The pipeline manager: base models loaded once and kept resident, LoRAs as named peft adapters.

Switching style is `set_adapters` on the resident pipeline (milliseconds), never a reload. Several bases are
kept in an LRU bounded by bytes. Device and dtype are chosen once: CUDA gets bf16 (fp16 where bf16 is not
supported), SDPA attention (diffusers' default on torch 2) and channels-last; CPU gets float32.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from studio.params import LoraRef
from studio.registry import ModelEntry, ModelError, Registry, read_safetensors_header

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto"):
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    if requested == "mps" or (requested == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps"), torch.float16
    return torch.device("cpu"), torch.float32


@dataclass
class Resident:
    entry: ModelEntry
    pipe: object
    nbytes: int
    adapters: dict[str, str]  # adapter name -> LoRA file path it was loaded from


class PipelineManager:
    def __init__(self, registry: Registry, device: str = "auto", cache_bytes: int = 40 * 2**30):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()  # progress is the job queue's to report, per denoising step
        transformers_logging.disable_progress_bar()
        self.registry = registry
        self.device, self.dtype = pick_device(device)
        self.cache_bytes = cache_bytes
        self._resident: OrderedDict[str, Resident] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # base pipelines loaded from disk, for tests and benchmarks
        self.lora_loads = 0

    # -- bases --------------------------------------------------------------------------------------------

    def pipeline(self, name: str):
        """The resident pipeline for `name`, loading it (and evicting the least recently used) if needed."""
        with self._lock:
            if name in self._resident:
                self._resident.move_to_end(name)
                return self._resident[name].pipe
            entry = self.registry.checkpoint(name)
            pipe = self._load(entry)
            nbytes = sum(
                p.numel() * p.element_size()
                for m in pipe.components.values()
                if hasattr(m, "parameters")
                for p in m.parameters()
            )
            self._resident[name] = Resident(entry, pipe, nbytes, {})
            self.loads += 1
            self._evict(keep=name)
            return pipe

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._resident)

    def _evict(self, keep: str) -> None:
        while sum(r.nbytes for r in self._resident.values()) > self.cache_bytes and len(self._resident) > 1:
            name = next(n for n in self._resident if n != keep)
            log.info("evicting %s from the model cache", name)
            del self._resident[name]
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _load(self, entry: ModelEntry):
        import torch
        from diffusers import StableDiffusionXLPipeline

        log.info("loading %s (%s) on %s/%s", entry.name, entry.kind, self.device, self.dtype)
        try:
            if entry.kind == "diffusers":
                pipe = StableDiffusionXLPipeline.from_pretrained(entry.path, dtype=self.dtype)
            else:
                config = self.registry.single_file_config(entry)
                pipe = StableDiffusionXLPipeline.from_single_file(
                    str(entry.path), config=config, dtype=self.dtype, local_files_only=config is not None
                )
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {entry.name!r} from {entry.path}: {exc}") from exc
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        if self.device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
            if self.dtype == torch.float16 and pipe.vae.config.get("force_upcast", True):
                pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16 unless it is the fp16-fix VAE
        return pipe

    # -- LoRAs --------------------------------------------------------------------------------------------

    def activate(self, name: str, loras: tuple[LoraRef, ...]):
        """Resident pipeline for `name` with exactly `loras` active at their weights."""
        with self._lock:
            pipe = self.pipeline(name)
            res = self._resident[name]
            for ref in loras:
                if ref.name not in res.adapters:
                    self._load_lora(res, ref.name)
            if loras:
                pipe.enable_lora()
                pipe.set_adapters([r.name for r in loras], adapter_weights=[float(r.weight) for r in loras])
            elif res.adapters:
                pipe.disable_lora()
            return pipe

    def _load_lora(self, res: Resident, name: str) -> None:
        lora = self.registry.lora(name)
        read_safetensors_header(lora.path)  # corrupt or truncated files fail here, before peft sees them
        pipe = res.pipe
        before = {n for names in pipe.get_list_adapters().values() for n in names}
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=name)
        except Exception as exc:  # diffusers raises several types for a mismatched state dict
            self._drop_adapter(pipe, name, before)
            raise ModelError(f"LoRA {name!r} does not fit model {res.entry.name!r}: {_first_line(exc)}") from exc
        attached = {n for names in pipe.get_list_adapters().values() for n in names}
        if name not in attached:
            self._drop_adapter(pipe, name, before)
            raise ModelError(f"LoRA {name!r} does not fit model {res.entry.name!r}: none of its layers match")
        res.adapters[name] = str(lora.path)
        self.lora_loads += 1

    @staticmethod
    def _drop_adapter(pipe, name: str, before: set[str]) -> None:
        """Undo a half-done adapter load so the base stays exactly as it was."""
        if name in before:
            return
        try:
            pipe.delete_adapters(name)
        except Exception:  # noqa: BLE001 - nothing was attached; there is nothing to undo
            log.debug("no adapter %s to delete", name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
