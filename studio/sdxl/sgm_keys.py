"""Key names of the original Stability (SGM/LDM) single-file SDXL layout, from diffusers names.

diffusers converts single-file checkpoints *into* its layout when loading; we need the other direction twice:
to write a tiny model as a community-style `.safetensors` (so single-file loading is tested on real bytes)
and to export LoRAs with the `lora_unet_input_blocks_…` names ComfyUI, A1111 and Forge expect.
Both use the module map below, derived from the UNet's config rather than hard-coded for SDXL's sizes.
"""

from __future__ import annotations

from collections.abc import Mapping

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def unet_block_map(config: Mapping) -> dict[str, str]:
    """diffusers block prefix -> SGM block prefix, e.g. `down_blocks.1.attentions.0` -> `input_blocks.4.1`."""
    layers = config["layers_per_block"]
    n_blocks = len(config["block_out_channels"])
    mapping: dict[str, str] = {}
    idx = 1
    for i, kind in enumerate(config["down_block_types"]):
        for j in range(layers):
            mapping[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{idx}.0"
            if "CrossAttn" in kind:
                mapping[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{idx}.1"
            idx += 1
        if i < n_blocks - 1:
            mapping[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{idx}.0.op"
            idx += 1
    mapping["mid_block.resnets.0"] = "middle_block.0"
    mapping["mid_block.attentions.0"] = "middle_block.1"
    mapping["mid_block.resnets.1"] = "middle_block.2"
    idx = 0
    for i, kind in enumerate(config["up_block_types"]):
        has_attn = "CrossAttn" in kind
        for j in range(layers + 1):
            mapping[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{idx}.0"
            if has_attn:
                mapping[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{idx}.1"
            idx += 1
        if i < n_blocks - 1:
            mapping[f"up_blocks.{i}.upsamplers.0"] = f"output_blocks.{idx - 1}.{2 if has_attn else 1}"
    return mapping


def unet_module_to_sgm(name: str, config: Mapping, block_map: Mapping[str, str] | None = None) -> str:
    """Rename one UNet module or parameter path (without the `model.diffusion_model.` prefix)."""
    block_map = block_map or unet_block_map(config)
    for old, new in _UNET_TOP.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in block_map:
            rest = parts[cut:]
            if ".resnets." in head and rest and rest[0] in _UNET_RESNET:
                rest = _UNET_RESNET[rest[0]].split(".") + rest[1:]
            return ".".join([block_map[head], *rest])
    raise KeyError(f"no SGM name for UNet module {name!r}")


def _vae_to_ldm(name: str, n_blocks: int) -> str:
    parts = name.split(".")
    side = parts[0]  # encoder | decoder | quant_conv | post_quant_conv
    if side not in {"encoder", "decoder"}:
        return name
    rest = parts[1:]
    if rest[0] == "conv_norm_out":
        rest = ["norm_out", *rest[1:]]
    elif rest[0] in {"down_blocks", "up_blocks"}:
        i = int(rest[1])
        level = i if rest[0] == "down_blocks" else n_blocks - 1 - i
        head = ["down" if rest[0] == "down_blocks" else "up", str(level)]
        if rest[2] == "resnets":
            rest = [*head, "block", rest[3], *rest[4:]]
        else:  # downsamplers.0 / upsamplers.0
            rest = [*head, "downsample" if rest[0] == "down_blocks" else "upsample", *rest[4:]]
    elif rest[0] == "mid_block":
        if rest[1] == "resnets":
            rest = ["mid", f"block_{int(rest[2]) + 1}", *rest[3:]]
        else:
            attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
            tail = rest[3:]
            if tail[0] == "to_out":
                tail = tail[:1] + tail[2:]  # to_out.0.weight -> proj_out.weight
            rest = ["mid", "attn_1", attn[tail[0]], *tail[1:]]
    if "conv_shortcut" in rest:
        rest[rest.index("conv_shortcut")] = "nin_shortcut"
    return ".".join([side, *rest])


def _open_clip_state(sd: Mapping) -> dict:
    """text_encoder_2 (CLIPTextModelWithProjection) -> OpenCLIP names, q/k/v packed into in_proj."""
    import torch

    out = {}
    qkv: dict[str, dict[str, object]] = {}
    for key, value in sd.items():
        k = key.removeprefix("text_model.")
        if k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif k == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif k.startswith("final_layer_norm."):
            out["ln_final." + k.split(".", 1)[1]] = value
        elif k == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif k.startswith("encoder.layers."):
            _, _, layer, *rest = k.split(".")
            base = f"transformer.resblocks.{layer}."
            sub = ".".join(rest)
            if sub.startswith("self_attn.") and sub.split(".")[1] in {"q_proj", "k_proj", "v_proj"}:
                kind = sub.rsplit(".", 1)[1]  # weight | bias
                qkv.setdefault(base + "attn.in_proj_" + kind, {})[sub.split(".")[1]] = value
                continue
            for old, new in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                             ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                sub = sub.replace(old, new)
            out[base + sub] = value
        elif k.endswith("position_ids"):
            continue
        else:
            raise KeyError(f"no OpenCLIP name for text_encoder_2 key {key!r}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


def pipeline_to_single_file(pipe) -> dict:
    """Whole SDXL pipeline -> one state dict in the original single-file layout (the inverse of
    diffusers' `from_single_file` conversion)."""
    sd: dict = {}
    unet_cfg = pipe.unet.config
    blocks = unet_block_map(unet_cfg)
    for key, value in pipe.unet.state_dict().items():
        sd[UNET_PREFIX + unet_module_to_sgm(key, unet_cfg, blocks)] = value
    n_vae = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        new = _vae_to_ldm(key, n_vae)
        if ".mid.attn_1." in new and value.ndim == 2:
            value = value[:, :, None, None]  # LDM stores the attention projections as 1x1 convs
        sd[VAE_PREFIX + new] = value
    for key, value in pipe.text_encoder.state_dict().items():
        if key.endswith("position_ids"):
            continue
        k = key if key.startswith("text_model.") else "text_model." + key
        sd[TE1_PREFIX + k] = value
    for key, value in _open_clip_state(pipe.text_encoder_2.state_dict()).items():
        sd[TE2_PREFIX + key] = value
    return {k: v.detach().contiguous() for k, v in sd.items()}
