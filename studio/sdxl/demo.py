"""The tiny demo model: a real SDXL pipeline, ~11 MB, random weights, built offline.

It exists so the studio runs end to end on a box with no SDXL weights (and so tests exercise the real
diffusers classes instead of mocks). Its images are noise. The build is deterministic: the same code on any
machine gives the same weights, so the same seed gives the same picture.

It is shaped like SDXL where that decides where the time goes: the VAE has four levels, so latents are 1/8 of
the image side as in SDXL (the UNet works on 16x16 latents at the native 128 px, the VAE on all the pixels),
and the text encoders differ in width. Version 1 had a two-level VAE (latents at 1/2), which made the UNet
dominate every cost and rendered 128 px 13x slower.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

TINY_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=16,  # latents; x8 (the VAE) = 128 px native
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    transformer_layers_per_block=(1, 2),
    projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + text_encoder_2 projection_dim 32
    cross_attention_dim=80,  # 32 + 48 hidden states of the two text encoders
    norm_num_groups=32,
)
TINY_VAE = dict(
    block_out_channels=[32, 32, 64, 64],  # four levels, three 2x down/up steps: latents at 1/8, as in SDXL
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4,
    sample_size=128,
)
TINY_CLIP = dict(
    hidden_size=32,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=5,
    projection_dim=32,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
# text_encoder_2 is wider than text_encoder, as in real SDXL (768 vs 1280): single-file loading tells the two
# apart by that width, so equal widths would load encoder 1's weights into encoder 2.
TINY_CLIP_2 = {**TINY_CLIP, "hidden_size": 48}

# Full-size SDXL base 1.0 (the configs of stabilityai/stable-diffusion-xl-base-1.0), for GPU benchmarks with
# random weights (bench/sdxl_gpu.py). Parameter counts: UNet 2,567,463,684, VAE 83,653,863, CLIP ViT-L text
# 123,060,480, OpenCLIP bigG text + projection 694,659,840 (tests/test_demo_model.py checks them on "meta").
SDXL_UNET = dict(
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    transformer_layers_per_block=(1, 2, 10),
    projection_class_embeddings_input_dim=2816,  # 6 time ids x 256 + 1280 pooled
    cross_attention_dim=2048,  # 768 + 1280
    norm_num_groups=32,
)
SDXL_VAE = dict(
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4,
    sample_size=1024,
    scaling_factor=0.13025,
)
SDXL_CLIP = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                 projection_dim=768, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5)
SDXL_CLIP_2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                   projection_dim=1280, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5)
SDXL_VOCAB = 49408
SDXL_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    timestep_spacing="leading",
    prediction_type="epsilon",
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table, so a byte vocab can encode any text."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def byte_level_vocab() -> dict[str, int]:
    """256 byte characters, the same with `</w>`, then the two specials; end-of-text is the highest id
    because CLIP pools its sentence embedding at the end-of-text position."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def build_random_pipeline(unet: dict, vae: dict, clip: dict, clip_2: dict, seed: int = 0, device: str = "cpu",
                          vocab_size: int | None = None):
    """An SDXL pipeline of the given architecture with random weights, built on `device` (float32).

    The tokenizers are the byte-level ones whatever the size: random weights have no vocabulary to match.
    vocab_size sizes the embedding tables (49408 for SDXL's real parameter count); default: the tokenizer's."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = byte_level_vocab()
    ids = dict(vocab_size=vocab_size or len(vocab), bos_token_id=vocab["<|startoftext|>"],
               eos_token_id=vocab["<|endoftext|>"])
    with torch.device(device):
        torch.manual_seed(seed)
        unet_model = UNet2DConditionModel(**unet)
        torch.manual_seed(seed + 1)
        vae_model = AutoencoderKL(**vae)
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip, **ids))
        torch.manual_seed(seed + 3)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_2, **ids))
    return StableDiffusionXLPipeline(
        vae=vae_model,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        tokenizer_2=CLIPTokenizer(vocab=dict(vocab), merges=[], model_max_length=77),
        unet=unet_model,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )


def build_tiny_pipeline(seed: int = 0):
    """Construct the tiny SDXL pipeline in memory (float32, CPU)."""
    return build_random_pipeline(TINY_UNET, TINY_VAE, TINY_CLIP, TINY_CLIP_2, seed)


DEMO_VERSION = 2


def _is_outdated_demo(folder: Path) -> bool:
    """A demo this code built in an earlier version (its DEMO.json says so); anything else is left alone."""
    try:
        info = json.loads((folder / "DEMO.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("demo") is True and info.get("version", 1) != DEMO_VERSION


def ensure_demo_model(folder: Path) -> Path:
    """Build and save the demo model once; later starts load it from disk like any other checkpoint.

    A demo folder from an older version of this code is rebuilt; a folder without our DEMO.json marker is
    somebody's model and is never touched. Two studios starting at once on one checkout take turns (a lock on
    the models folder): the second finds the first one's model. The model is written to a hidden folder and renamed into
    place, so a half-written model is never listed; one left by a crash is removed here.
    """
    if (folder / "model_index.json").is_file() and not _is_outdated_demo(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder.parent, os.O_RDONLY)  # the models folder itself is the lock: no lock file left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, also if this process dies
        for stale in folder.parent.glob(f".{folder.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if (folder / "model_index.json").is_file():
            if not _is_outdated_demo(folder):
                return folder
            shutil.rmtree(folder)
        tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
        pipe = build_tiny_pipeline()
        pipe.save_pretrained(tmp, safe_serialization=True)
        info = {"demo": True, "version": DEMO_VERSION, "note": "random weights: output is noise"}
        (tmp / "DEMO.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        tmp.replace(folder)
    finally:
        os.close(lock)
    return folder
