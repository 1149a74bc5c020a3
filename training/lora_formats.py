"""LoRA file formats: diffusers/peft <-> kohya (the form ComfyUI, A1111 and Forge load).

Those tools expect the original SGM block names (`lora_unet_input_blocks_4_1_…`), `lora_down`/`lora_up` and a
per-module `.alpha`. diffusers' own kohya converter keeps diffusers block names, which ComfyUI ignores, so the
block renaming comes from `studio.sdxl.sgm_keys`, the same map single-file checkpoints are written with. The text
encoders keep their transformers module paths under `lora_te1_` / `lora_te2_` (kohya's SDXL names:
`lora_te1_text_model_encoder_layers_0_self_attn_q_proj`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from studio.sdxl.sgm_keys import unet_block_map, unet_module_to_sgm

# peft names (lora_A/B) and diffusers' own (lora.down/up; lora_linear_layer.down/up for text encoders) -> kohya's
_DOWN_UP = {".lora_A": "lora_down", ".lora_B": "lora_up", ".lora.down": "lora_down", ".lora.up": "lora_up",
            ".lora_linear_layer.down": "lora_down", ".lora_linear_layer.up": "lora_up"}
_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


def diffusers_to_kohya(state: Mapping, unet_config: Mapping, alpha: float | Mapping[str, float],
                       rank: int | None = None) -> dict:
    """`<component>.<module>.lora_A.weight` / `lora_B.weight` -> `lora_<unet|te1|te2>_<module>.lora_down/
    lora_up/alpha`, UNet modules renamed to their SGM blocks. alpha: one value, or one per component."""
    import torch

    blocks = unet_block_map(unet_config)
    out: dict = {}
    for key, value in state.items():
        component, _, body = key.partition(".")
        if component not in _KOHYA_PREFIX or not body:
            raise ValueError(f"unexpected LoRA key {key!r} (expected unet., text_encoder. or text_encoder_2.)")
        body = body.removesuffix(".weight")
        suffix = next((sfx for sfx in _DOWN_UP if body.endswith(sfx)), None)
        if suffix is None:
            raise ValueError(f"unexpected LoRA key {key!r}")
        module, kind = body[: -len(suffix)], _DOWN_UP[suffix]
        if component == "unet":
            module = unet_module_to_sgm(module, unet_config, blocks)
        elif not module.startswith("text_model."):  # transformers 5 dropped CLIP's text_model level;
            module = "text_model." + module  # kohya, ComfyUI and A1111 name the modules with it
        name = _KOHYA_PREFIX[component] + module.replace(".", "_")
        out[f"{name}.{kind}.weight"] = value.contiguous()
        if kind == "lora_down":
            a = alpha[component] if isinstance(alpha, Mapping) else alpha
            out[f"{name}.alpha"] = torch.tensor(float(a))
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
    components = sorted({k.partition(".")[0] for k in state})
    if any(peft_cfg.get(f"{c}.alpha_pattern") or peft_cfg.get(f"{c}.rank_pattern") for c in components):
        raise ValueError("per-module ranks/alphas are not supported by this exporter yet")
    rank = int(peft_cfg.get("unet.r") or next(v.shape[0] for k, v in state.items() if "lora_A" in k or ".down." in k))
    alphas = {c: float(peft_cfg.get(f"{c}.lora_alpha") or peft_cfg.get(f"{c}.r") or rank) for c in components}
    alpha = alphas.get("unet", rank)
    kohya = diffusers_to_kohya(state, unet_config, alphas, rank)
    out_md = {k: v for k, v in md.items() if k.startswith("dgxp.")}
    out_md.update({"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
                   "ss_base_model_version": "sdxl_base_v1-0"})
    out_md.update(metadata or {})
    dst = Path(dst)
    tmp = dst.with_suffix(".tmp")
    save_file(kohya, str(tmp), metadata=out_md)
    tmp.replace(dst)
    return dst
