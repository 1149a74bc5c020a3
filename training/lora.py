"""SDXL UNet LoRA training on diffusers + peft: the training step with SDXL's real conditioning.

SDXL conditions on both text encoders' penultimate hidden states (concatenated), the pooled embedding of
text_encoder_2, and six `time_ids` (original size, crop top-left, target size). `pipe.encode_prompt` gives the
first two exactly as inference sees them, so what is trained is what is sampled.

This module is the core loop; the child-process runner, run folders, resume and presets build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass(frozen=True)
class LoraTrainConfig:
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    steps: int = 500
    batch_size: int = 1
    seed: int = 0
    adapter_name: str = "default"

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 256:
            raise ValueError(f"rank must be 1..256, got {self.rank}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be between 0 and 1, got {self.learning_rate}")


def add_unet_lora(unet, cfg: LoraTrainConfig) -> list:
    """Attach a fresh LoRA adapter to the UNet's attention projections; returns the trainable parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS)),
        adapter_name=cfg.adapter_name,
    )
    return [p for p in unet.parameters() if p.requires_grad]


def _time_ids(size: tuple[int, int], device, dtype):
    import torch

    w, h = size
    return torch.tensor([[h, w, 0, 0, h, w]], device=device, dtype=dtype)


def train_unet_lora(
    pipe,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    cfg: LoraTrainConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train a UNet LoRA in place on `pipe.unet`; returns the loss per step."""
    import torch
    import torch.nn.functional as F

    if len(images) != len(captions) or not images:
        raise ValueError("need one caption per image, and at least one image")
    device, dtype = pipe.unet.device, pipe.unet.dtype
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    params = add_unet_lora(pipe.unet, cfg)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate)
    sched = pipe.scheduler
    vae = pipe.vae
    with torch.no_grad():
        latents, embeds, pooled, time_ids = [], [], [], []
        for image, caption in zip(images, captions, strict=True):
            x = torch.from_numpy(__import__("numpy").asarray(image.convert("RGB"), dtype="float32") / 127.5 - 1)
            x = x.permute(2, 0, 1)[None].to(device, vae.dtype)
            latents.append(vae.encode(x).latent_dist.sample(gen) * vae.config.scaling_factor)
            pe, _, pp, _ = pipe.encode_prompt(caption, device=device, do_classifier_free_guidance=False)
            embeds.append(pe)
            pooled.append(pp)
            time_ids.append(_time_ids(image.size, device, pe.dtype))
    losses: list[float] = []
    pipe.unet.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen).tolist()
        lat = torch.cat([latents[i] for i in idx]).to(dtype)
        noise = torch.randn(lat.shape, generator=gen).to(device, dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (lat.shape[0],), generator=gen).to(device)
        noisy = sched.add_noise(lat, noise, t)
        if sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(lat, noise, t)
        else:
            target = noise
        pred = pipe.unet(
            noisy,
            t,
            encoder_hidden_states=torch.cat([embeds[i] for i in idx]),
            added_cond_kwargs={"text_embeds": torch.cat([pooled[i] for i in idx]),
                               "time_ids": torch.cat([time_ids[i] for i in idx])},
        ).sample
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, losses[-1])
    pipe.unet.eval()
    return losses


def save_unet_lora(pipe, path: Path, cfg: LoraTrainConfig, metadata: dict[str, str] | None = None) -> Path:
    """Save in diffusers/peft form, with the adapter config so alpha != rank reloads at the right scale."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name=cfg.adapter_name))
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(path.parent),
        weight_name=path.name,
        unet_lora_layers=state,
        unet_lora_adapter_metadata=pipe.unet.peft_config[cfg.adapter_name].to_dict(),
        safe_serialization=True,
    )
    if metadata:
        _add_metadata(path, {**{f"dgxp.{k}": str(v) for k, v in asdict(cfg).items()}, **metadata})
    return path


def _add_metadata(path: Path, extra: dict[str, str]) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as fh:
        md = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a mapping
    md.update(extra)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=md)
    tmp.replace(path)
