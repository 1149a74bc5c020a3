"""SDXL LoRA training on diffusers + peft (UNet, optionally both text encoders) with SDXL's real conditioning.

SDXL conditions on both text encoders' penultimate hidden states (concatenated), the pooled embedding of
text_encoder_2, and six `time_ids` (original size, crop top-left, target size). `pipe.encode_prompt` gives the
first two exactly as inference sees them, so what is trained is what is sampled.

Noise is added with a `DDPMScheduler` built from the pipeline's scheduler config, not with the pipeline's own
(Euler) scheduler: Euler's `add_noise` returns `x0 + sigma * noise`, unscaled, which is not the input the UNet
sees at inference, and it only knows the timesteps of the last `set_timesteps` (a sample render changes them).

`LoraTrainer` owns everything a resumable run must save (adapter weights, optimizer, lr schedule, RNG, step),
so `training.runner` can checkpoint and resume with an identical loss curve. `train_lora` is the simple
one-call form on top of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # CLIP attention, kohya's te1/te2 modules
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
LR_SCHEDULERS = ("constant", "cosine")
OPTIMIZERS = ("adamw", "adamw8bit")
PRECISIONS = ("no", "bf16")


@dataclass(frozen=True)
class LoraTrainConfig:
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    steps: int = 500
    batch_size: int = 1
    seed: int = 0
    adapter_name: str = "default"
    caption_dropout: float = 0.0  # probability a caption is replaced by "" (keeps the LoRA usable unprompted)
    min_snr_gamma: float | None = None  # min-SNR-gamma loss weighting (Hang et al. 2023); 5.0 is usual
    noise_offset: float = 0.0  # per-channel offset noise: lets the model learn very dark/bright images
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None  # gradient clipping; None = off
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # "bf16": frozen weights and compute in bf16 (CUDA only), LoRA params in fp32
    optimizer: str = "adamw"
    train_text_encoder: bool = False  # LoRA on both CLIP encoders too (their embeddings are then never cached)
    text_encoder_lr: float | None = None  # None: learning_rate

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 256:
            raise ValueError(f"rank must be 1..256, got {self.rank}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be between 0 and 1, got {self.learning_rate}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.text_encoder_lr is not None and not 0 < self.text_encoder_lr < 1:
            raise ValueError(f"text_encoder_lr must be between 0 and 1, got {self.text_encoder_lr}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")


def add_lora(model, cfg: LoraTrainConfig, targets: Sequence[str] = LORA_TARGETS) -> list:
    """Attach a fresh LoRA adapter to `model`'s attention projections; returns the trainable parameters.

    The UNet goes through diffusers' `add_adapter` (which also enables its adapter switches); the CLIP
    encoders through peft's `inject_adapter_in_model` directly, because transformers' `add_adapter` refuses
    peft < 0.22, the newest the package index has. Both leave `model.peft_config[name]` for saving."""
    from diffusers import ModelMixin
    from peft import LoraConfig, inject_adapter_in_model

    model.requires_grad_(False)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, init_lora_weights="gaussian", target_modules=list(targets))
    if isinstance(model, ModelMixin):
        model.add_adapter(config, adapter_name=cfg.adapter_name)
    else:
        inject_adapter_in_model(config, model, adapter_name=cfg.adapter_name)
    return [p for p in model.parameters() if p.requires_grad]


def _time_ids(size: tuple[int, int], device, dtype):
    import torch

    w, h = size
    return torch.tensor([[h, w, 0, 0, h, w]], device=device, dtype=dtype)


def _to_tensor(image: Image.Image, device, dtype):
    import numpy as np
    import torch

    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1)
    return x.permute(2, 0, 1)[None].to(device, dtype)


def make_optimizer(groups: list[dict], cfg: LoraTrainConfig, log: Callable[[str], None] = print):
    """AdamW, or bitsandbytes' 8-bit AdamW when asked for and installed (it is not on CPU-only boxes).

    groups: torch parameter groups (the UNet's, and the text encoders' with their own lr)."""
    import torch

    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, lr=cfg.learning_rate)
        except ImportError:
            log("note: optimizer adamw8bit needs bitsandbytes, which is not installed; using torch AdamW")
    # fused: one kernel for all the small LoRA tensors instead of a Python loop over them (CPU and CUDA alike)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)


class LoraTrainer:
    """A UNet LoRA being trained on a fixed set of (image, caption) pairs, one `train_step()` at a time.

    Every random draw (batch, caption dropout, VAE sample, noise, timestep) comes from one CPU generator whose
    state is part of `state_dict()`, so a run restored from a checkpoint continues with exactly the draws an
    uninterrupted run would make. With `cache=True` latents and text embeddings are computed once up front
    (from a separate generator seeded from `seed`, so a resumed run rebuilds the same cache); with
    `cache=False` the VAE and both text encoders run on every step (slower; kept for the benchmark). With
    `train_text_encoder` both CLIP encoders get a LoRA too and run, with gradients, on every step.
    Images of different sizes are batched only with images of the same size (their bucket).
    """

    def __init__(self, pipe, images: Sequence[Image.Image], captions: Sequence[str], cfg: LoraTrainConfig, *,
                 time_ids: Sequence[Sequence[int]] | None = None, cache: bool = True,
                 log: Callable[[str], None] = print) -> None:
        import torch
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        if len(images) != len(captions) or not images:
            raise ValueError("need one caption per image, and at least one image")
        self.pipe, self.cfg, self.cache = pipe, cfg, cache
        self.images, self.captions = list(images), list(captions)
        self.device = pipe.unet.device
        self.bf16 = cfg.mixed_precision == "bf16"
        if self.bf16 and self.device.type != "cuda":
            raise ValueError("mixed_precision bf16 needs a CUDA device")
        self.cond = [tuple(int(v) for v in t) for t in time_ids] if time_ids else \
            [(im.height, im.width, 0, 0, im.height, im.width) for im in self.images]
        if self.bf16:  # frozen weights in bf16; the VAE stays fp32 (SDXL's VAE overflows in half precision)
            for module in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
                module.to(torch.bfloat16)
        pipe.vae.requires_grad_(False)
        for name in TEXT_ENCODERS:
            getattr(pipe, name).requires_grad_(False)
        with torch.random.fork_rng(devices=[]):  # peft draws the gaussian lora_A init from the global RNG:
            torch.manual_seed(cfg.seed)  # seed it for reproducible runs, without changing the caller's RNG
            groups = [{"params": add_lora(pipe.unet, cfg)}]
            if cfg.train_text_encoder:
                te_params = [p for name in TEXT_ENCODERS for p in add_lora(getattr(pipe, name), cfg, TEXT_LORA_TARGETS)]
                groups.append({"params": te_params, "lr": cfg.text_encoder_lr or cfg.learning_rate})
        self.params = [p for g in groups for p in g["params"]]
        for p in self.params:  # trainable LoRA weights in fp32 whatever the base dtype
            p.data = p.data.float()
        if cfg.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                for name in TEXT_ENCODERS:
                    getattr(pipe, name).gradient_checkpointing_enable()
        self.optimizer = make_optimizer(groups, cfg, log)
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                          num_training_steps=cfg.steps)
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.step = 0
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(self.images):
            buckets.setdefault(im.size, []).append(i)
        self.bucket_of = [buckets[im.size] for im in self.images]
        self._cached = self._encode_all() if cache else None

    # --- encoding -------------------------------------------------------------------------------------------
    def _encode_latent(self, i: int, gen):
        vae = self.pipe.vae
        x = _to_tensor(self.images[i], self.device, vae.dtype)
        return vae.encode(x).latent_dist.sample(gen) * vae.config.scaling_factor

    def _encode_text(self, caption: str):
        pe, _, pooled, _ = self.pipe.encode_prompt(caption, device=self.device,
                                                   do_classifier_free_guidance=False)
        return pe, pooled

    def _encode_all(self) -> dict:
        import torch

        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed + 1)
        with torch.no_grad():
            latents = [self._encode_latent(i, gen) for i in range(len(self.images))]
            texts = {} if self.cfg.train_text_encoder else \
                {c: self._encode_text(c) for c in [*dict.fromkeys(self.captions), ""]}
        return {"latents": latents, "texts": texts}

    def _batch(self, idx: list[int], captions: list[str], gen=None):
        """(latents, text hidden states, pooled embeds, time_ids); the text part carries gradients when the
        text encoders are being trained (and grad mode is on)."""
        import torch

        with torch.no_grad():
            if self._cached is not None:
                lat = torch.cat([self._cached["latents"][i] for i in idx])
            else:
                lat = torch.cat([self._encode_latent(i, self.generator if gen is None else gen) for i in idx])
        if self._cached is not None and not self.cfg.train_text_encoder:
            texts = [self._cached["texts"][c] for c in captions]
        else:
            with torch.set_grad_enabled(self.cfg.train_text_encoder and torch.is_grad_enabled()):
                texts = [self._encode_text(c) for c in captions]
        embeds = torch.cat([t[0] for t in texts])
        pooled = torch.cat([t[1] for t in texts])
        time_ids = torch.tensor([self.cond[i] for i in idx], device=self.device, dtype=embeds.dtype)
        return lat.float(), embeds, pooled, time_ids

    # --- one step ----------------------------------------------------------------------------------------
    def _draw_batch(self) -> tuple[list[int], list[str]]:
        import torch

        gen, n = self.generator, len(self.images)
        first = int(torch.randint(0, n, (1,), generator=gen))
        bucket = self.bucket_of[first]
        rest = torch.randint(0, len(bucket), (self.cfg.batch_size - 1,), generator=gen).tolist()
        idx = [first] + [bucket[j] for j in rest]
        captions = [self.captions[i] for i in idx]
        if self.cfg.caption_dropout > 0:
            drop = (torch.rand(len(idx), generator=gen) < self.cfg.caption_dropout).tolist()
            captions = ["" if d else c for c, d in zip(captions, drop, strict=True)]
        return idx, captions

    def train_step(self) -> float:
        """One optimizer step; returns the (unweighted-mean) loss of the batch."""
        import torch
        import torch.nn.functional as F

        cfg, gen, sched = self.cfg, self.generator, self.noise_scheduler
        idx, captions = self._draw_batch()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:  # (the text encoders run here too when they are trained)
            lat, embeds, pooled, time_ids = self._batch(idx, captions)
        noise = torch.randn(lat.shape, generator=gen)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn((lat.shape[0], lat.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (lat.shape[0],), generator=gen)
        noise, t = noise.to(self.device), t.to(self.device)
        noisy = sched.add_noise(lat, noise, t)
        v_pred = sched.config.prediction_type == "v_prediction"
        target = sched.get_velocity(lat, noise, t) if v_pred else noise
        self.pipe.unet.train()
        with autocast:
            dtype = self.pipe.unet.dtype
            pred = self.pipe.unet(
                noisy.to(dtype), t, encoder_hidden_states=embeds.to(dtype),
                added_cond_kwargs={"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(dtype)},
            ).sample
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if cfg.min_snr_gamma is not None:
            per_sample = per_sample * self._snr_weights(t)
        loss = per_sample.mean()
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach())

    def _snr_weights(self, t):
        """min(SNR, gamma) / SNR for epsilon targets (/(SNR + 1) for v): stops the easy, low-noise steps
        dominating the gradient."""
        import torch

        ac = self.noise_scheduler.alphas_cumprod.to(t.device)[t].float()
        snr = ac / (1 - ac)
        clipped = torch.minimum(snr, torch.full_like(snr, float(self.cfg.min_snr_gamma)))
        v = self.noise_scheduler.config.prediction_type == "v_prediction"
        return clipped / (snr + 1) if v else clipped / snr

    def validation_loss(self, seed: int = 1234, samples: int = 8) -> float:
        """Mean loss over a fixed set of (image, noise, timestep) draws from `seed`, without training.

        The training loss jumps with each step's random timestep; this one is comparable between two states
        of the weights (e.g. adapter on vs off), which makes "did it learn?" a paired question."""
        import torch
        import torch.nn.functional as F

        gen, sched = torch.Generator(device="cpu").manual_seed(seed), self.noise_scheduler
        was_training = self.pipe.unet.training
        self.pipe.unet.eval()
        losses = []
        with torch.no_grad():
            for k in range(samples):
                i = k % len(self.images)
                lat, embeds, pooled, time_ids = self._batch([i], [self.captions[i]], gen)
                noise = torch.randn(lat.shape, generator=gen).to(self.device)
                t = torch.randint(0, sched.config.num_train_timesteps, (1,), generator=gen).to(self.device)
                noisy = sched.add_noise(lat, noise, t)
                target = sched.get_velocity(lat, noise, t) if sched.config.prediction_type == "v_prediction" \
                    else noise
                dtype = self.pipe.unet.dtype
                pred = self.pipe.unet(noisy.to(dtype), t, encoder_hidden_states=embeds.to(dtype),
                                      added_cond_kwargs={"text_embeds": pooled.to(dtype),
                                                         "time_ids": time_ids.to(dtype)}).sample
                losses.append(float(F.mse_loss(pred.float(), target.float())))
        self.pipe.unet.train(was_training)
        return sum(losses) / len(losses)

    @property
    def lr(self) -> float:
        return float(self.lr_scheduler.get_last_lr()[0])

    # --- checkpoint state --------------------------------------------------------------------------------
    def _lora_models(self) -> dict[str, object]:
        """Key prefix -> model with this run's adapter: the UNet's keys are unprefixed (as in checkpoints
        written before text-encoder training existed), the encoders' are `text_encoder.` / `text_encoder_2.`."""
        names = TEXT_ENCODERS if self.cfg.train_text_encoder else ()
        return {"": self.pipe.unet, **{f"{n}.": getattr(self.pipe, n) for n in names}}

    def lora_state(self) -> dict:
        from peft.utils import get_peft_model_state_dict

        return {prefix + k: v.detach().cpu().contiguous()
                for prefix, model in self._lora_models().items()
                for k, v in get_peft_model_state_dict(model, adapter_name=self.cfg.adapter_name).items()}

    def load_lora_state(self, state: dict) -> None:
        from peft.utils import set_peft_model_state_dict

        models = self._lora_models()
        parts: dict[str, dict] = {prefix: {} for prefix in models}
        for key, value in state.items():
            prefix = next((p for p in TEXT_ENCODERS if key.startswith(p + ".")), None)
            prefix = f"{prefix}." if prefix else ""
            if prefix not in parts:
                raise ValueError(f"checkpoint has text-encoder LoRA weights ({key}) but this run trains none")
            parts[prefix][key[len(prefix):]] = value
        for prefix, model in models.items():
            if not parts[prefix]:
                raise ValueError(f"checkpoint has no LoRA weights for {prefix.rstrip('.') or 'unet'}")
            result = set_peft_model_state_dict(model, parts[prefix], adapter_name=self.cfg.adapter_name)
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"checkpoint has LoRA keys this model lacks: {result.unexpected_keys[:3]}")

    def state_dict(self) -> dict:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.generator.set_state(state["generator"])


def train_lora(
    pipe,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    cfg: LoraTrainConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train a LoRA in place on `pipe` (its UNet, and its text encoders if cfg says so); returns the loss
    per step."""
    trainer = LoraTrainer(pipe, images, captions, cfg)
    losses: list[float] = []
    for _ in range(cfg.steps):
        losses.append(trainer.train_step())
        if on_step is not None:
            on_step(trainer.step, losses[-1])
    pipe.unet.eval()
    return losses


def save_lora(pipe, path: Path, cfg: LoraTrainConfig, metadata: dict[str, str] | None = None) -> Path:
    """Save in diffusers/peft form (UNet, plus both text encoders when they were trained), with each part's
    adapter config so alpha != rank reloads at the right scale."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = {}
    for name in ("unet", *(TEXT_ENCODERS if cfg.train_text_encoder else ())):
        model = getattr(pipe, name)
        state = get_peft_model_state_dict(model, adapter_name=cfg.adapter_name)
        parts[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(state)
        parts[f"{name}_lora_adapter_metadata"] = model.peft_config[cfg.adapter_name].to_dict()
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(path.parent), weight_name=path.name, safe_serialization=True, **parts
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
