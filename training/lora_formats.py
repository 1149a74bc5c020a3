"""LoRA file formats: diffusers/peft <-> kohya (the form ComfyUI, A1111 and Forge load).

Those tools expect the original SGM block names (`lora_unet_input_blocks_4_1_…`), `lora_down`/`lora_up` and a
per-module `.alpha`. diffusers' own kohya converter keeps diffusers block names, which ComfyUI ignores, so the
block renaming comes from `studio.sgm_keys`, the same map single-file checkpoints are written with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from studio.sgm_keys import unet_block_map, unet_module_to_sgm

# peft names (lora_A/B) and diffusers' own (lora.down/up) -> kohya's
_DOWN_UP = {".lora_A": "lora_down", ".lora_B": "lora_up", ".lora.down": "lora_down", ".lora.up": "lora_up"}


def diffusers_to_kohya(state: Mapping, unet_config: Mapping, alpha: float, rank: int | None = None) -> dict:
    """`unet.<module>.lora_A.weight` / `lora_B.weight` -> `lora_unet_<sgm_module>.lora_down/lora_up/alpha`."""
    import torch

    blocks = unet_block_map(unet_config)
    out: dict = {}
    for key, value in state.items():
        if not key.startswith("unet."):
            raise ValueError(f"only UNet LoRAs can be exported to kohya form so far (got key {key!r})")
        body = key[len("unet."):].removesuffix(".weight")
        suffix = next((sfx for sfx in _DOWN_UP if body.endswith(sfx)), None)
        if suffix is None:
            raise ValueError(f"unexpected LoRA key {key!r}")
        module, kind = body[: -len(suffix)], _DOWN_UP[suffix]
        name = "lora_unet_" + unet_module_to_sgm(module, unet_config, blocks).replace(".", "_")
        out[f"{name}.{kind}.weight"] = value.contiguous()
        if kind == "lora_down":
            out[f"{name}.alpha"] = torch.tensor(float(alpha))
            if rank is not None and value.shape[0] != rank:
                raise ValueError(f"{key}: rank {value.shape[0]} != {rank}")
    return out


def save_kohya(diffusers_lora: Path, dst: Path, unet_config: Mapping, metadata: Mapping[str, str] | None = None) -> Path:
    """Convert a diffusers-format LoRA file into a kohya-format file beside the original metadata."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(diffusers_lora), "pt") as fh:
        md = dict(fh.metadata() or {})
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a mapping
    # diffusers stores the peft config flattened with a component prefix: {"unet.r": 4, "unet.lora_alpha": 8, ...}
    peft_cfg = json.loads(md.get("lora_adapter_metadata") or "{}")
    if peft_cfg.get("unet.alpha_pattern") or peft_cfg.get("unet.rank_pattern"):
        raise ValueError("per-module ranks/alphas are not supported by this exporter yet")
    rank = int(peft_cfg.get("unet.r") or next(v.shape[0] for k, v in state.items() if "lora_A" in k or "lora.down" in k))
    alpha = float(peft_cfg.get("unet.lora_alpha") or rank)
    kohya = diffusers_to_kohya(state, unet_config, alpha, rank)
    out_md = {k: v for k, v in md.items() if k.startswith("dgxp.")}
    out_md.update({"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
                   "ss_base_model_version": "sdxl_base_v1-0"})
    out_md.update(metadata or {})
    dst = Path(dst)
    tmp = dst.with_suffix(".tmp")
    save_file(kohya, str(tmp), metadata=out_md)
    tmp.replace(dst)
    return dst
