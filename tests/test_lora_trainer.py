"""`LoraTrainer` on the real tiny SDXL: what the UNet is fed and what its loss is measured against.

The UNet's real forward is watched with a forward hook (inputs and output), and each property is recomputed
from first principles: SDXL's conditioning equals what inference builds, the target is the noise for
epsilon bases and the velocity for v-prediction bases, min-SNR weights the loss by min(SNR, gamma) / SNR,
and gradient checkpointing changes memory, not the numbers.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from training.lora import LoraTrainConfig, LoraTrainer  # noqa: E402

torch.set_num_threads(1)


def sprites(n: int = 2, size: tuple[int, int] = (64, 48)) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    w, h = size
    return [Image.fromarray(np.kron(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8),
                                    np.ones((8, 8, 1), np.uint8))) for _ in range(n)]


def tiny_pipe(prediction_type: str = "epsilon"):
    from tests.conftest import fresh_tiny_pipe

    pipe = fresh_tiny_pipe()
    if prediction_type != "epsilon":
        pipe.scheduler.register_to_config(prediction_type=prediction_type)
    return pipe


class UnetCalls:
    """Records every UNet forward: the noisy latents, timesteps, conditioning kwargs and the prediction."""

    def __init__(self, unet) -> None:
        self.calls: list[dict] = []
        self.handle = unet.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        sample, t = args[:2]  # the trainer calls unet(noisy, t, encoder_hidden_states=..., added_cond_kwargs=...)
        self.calls.append({"sample": sample.detach().clone(), "t": torch.as_tensor(t).detach().clone(),
                           "hidden": kwargs["encoder_hidden_states"].detach().clone(),
                           "added": {k: v.detach().clone() for k, v in kwargs["added_cond_kwargs"].items()},
                           "pred": output.sample.detach().clone()})


def test_conditioning_is_what_inference_builds():
    pipe = tiny_pipe()
    images, captions = sprites(), ["pixel knight", "pixel slime"]
    trainer = LoraTrainer(pipe, images, captions, LoraTrainConfig(steps=3, seed=1), log=lambda _m: None)
    calls = UnetCalls(pipe.unet)
    trainer.train_step()
    (call,) = calls.calls
    i = [k for k, c in enumerate(captions) if torch.equal(
        call["hidden"], trainer._cached["texts"][c][0])]
    assert len(i) == 1, "the hidden states are one caption's cached encoding"
    with torch.no_grad():
        pe, _, pooled, _ = pipe.encode_prompt(captions[i[0]], device="cpu", do_classifier_free_guidance=False)
    assert call["hidden"].shape == (1, 77, 32 + 48)  # both encoders' penultimate states, concatenated
    assert torch.allclose(call["hidden"], pe) and torch.allclose(call["added"]["text_embeds"], pooled)
    assert call["added"]["time_ids"].tolist() == [[48.0, 64.0, 0.0, 0.0, 48.0, 64.0]]  # (h, w) orig, crop, target
    assert call["sample"].shape == (1, 4, 48 // pipe.vae_scale_factor, 64 // pipe.vae_scale_factor)


def test_bucket_time_ids_are_passed_through():
    pipe = tiny_pipe()
    trainer = LoraTrainer(pipe, sprites(1), ["x"], LoraTrainConfig(steps=2), log=lambda _m: None,
                          time_ids=[(300, 400, 12, 0, 48, 64)])
    calls = UnetCalls(pipe.unet)
    trainer.train_step()
    assert calls.calls[0]["added"]["time_ids"].tolist() == [[300.0, 400.0, 12.0, 0.0, 48.0, 64.0]]


def _recomputed_loss(trainer: LoraTrainer, call: dict, latent: torch.Tensor) -> tuple[float, float]:
    """(loss against the noise, loss against the velocity), from the recorded noisy input alone."""
    ac = trainer.noise_scheduler.alphas_cumprod[call["t"].long()].float().view(-1, 1, 1, 1)
    noise = (call["sample"] - ac.sqrt() * latent) / (1 - ac).sqrt()
    velocity = ac.sqrt() * noise - (1 - ac).sqrt() * latent
    mse = lambda target: float(((call["pred"] - target) ** 2).mean())  # noqa: E731
    return mse(noise), mse(velocity)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_target_follows_the_base_prediction_type(prediction_type):
    pipe = tiny_pipe(prediction_type)
    trainer = LoraTrainer(pipe, sprites(1), ["pixel knight"], LoraTrainConfig(steps=4, seed=2),
                          log=lambda _m: None)
    calls = UnetCalls(pipe.unet)
    losses = [trainer.train_step() for _ in range(3)]
    latent = trainer._cached["latents"][0]
    for loss, call in zip(losses, calls.calls, strict=True):
        eps_loss, v_loss = _recomputed_loss(trainer, call, latent)
        expected, other = (eps_loss, v_loss) if prediction_type == "epsilon" else (v_loss, eps_loss)
        assert loss == pytest.approx(expected, rel=1e-4)
        assert abs(loss - other) > 1e-3 * loss  # and it is not the other target's loss


def test_min_snr_weights_the_loss():
    gamma = 5.0
    pipe = tiny_pipe()
    trainer = LoraTrainer(pipe, sprites(1), ["pixel knight"],
                          LoraTrainConfig(steps=20, seed=4, min_snr_gamma=gamma), log=lambda _m: None)
    calls = UnetCalls(pipe.unet)
    losses = [trainer.train_step() for _ in range(20)]
    latent = trainer._cached["latents"][0]
    weights = []
    for loss, call in zip(losses, calls.calls, strict=True):
        ac = float(trainer.noise_scheduler.alphas_cumprod[int(call["t"])])
        snr = ac / (1 - ac)
        weights.append(min(snr, gamma) / snr)
        assert loss == pytest.approx(_recomputed_loss(trainer, call, latent)[0] * weights[-1], rel=1e-4)
    assert min(weights) < 1 and max(weights) == 1  # both kinds drawn: damped low-noise steps (SNR > gamma)


def test_gradient_checkpointing_gives_the_same_training():
    runs = []
    for checkpointing in (False, True):
        pipe = tiny_pipe()
        cfg = LoraTrainConfig(steps=3, seed=5, learning_rate=1e-3, gradient_checkpointing=checkpointing)
        trainer = LoraTrainer(pipe, sprites(2), ["a", "b"], cfg, log=lambda _m: None)
        assert pipe.unet.is_gradient_checkpointing == checkpointing
        runs.append(([trainer.train_step() for _ in range(3)], trainer.lora_state()))
    (loss_a, state_a), (loss_b, state_b) = runs
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert state_a.keys() == state_b.keys()
    moved = max(float((state_a[k] - state_b[k]).abs().max()) for k in state_a)
    assert moved < 1e-5


def test_uncached_training_encodes_every_step_and_learns_the_same_thing():
    """cache=False runs the VAE and both text encoders each step: the conditioning is identical, and the
    latent differs from the cached one only by the VAE posterior's sampling noise."""
    pipe = tiny_pipe()
    trainer = LoraTrainer(pipe, sprites(1), ["pixel knight"], LoraTrainConfig(steps=3, seed=6), cache=False,
                          log=lambda _m: None)
    assert trainer._cached is None
    encodes = []
    handle = pipe.vae.encoder.register_forward_hook(lambda *_: encodes.append(1))
    calls = UnetCalls(pipe.unet)
    trainer.train_step()
    trainer.train_step()
    handle.remove()
    assert len(encodes) == 2
    with torch.no_grad():
        pe, _, pooled, _ = pipe.encode_prompt("pixel knight", device="cpu", do_classifier_free_guidance=False)
    assert torch.allclose(calls.calls[0]["hidden"], pe) and torch.allclose(calls.calls[1]["added"]["text_embeds"],
                                                                           pooled)


def test_text_encoder_lora_trains_and_resumes_exactly():
    """train_text_encoder: both CLIP encoders get an adapter that learns (their output moves), the checkpoint
    state holds all three parts, and a trainer restored from it continues with the uninterrupted losses."""
    cfg = LoraTrainConfig(steps=6, seed=7, learning_rate=1e-2, text_encoder_lr=5e-3, train_text_encoder=True)
    images, captions = sprites(2), ["pixel knight", "pixel slime"]

    def trainer():
        return LoraTrainer(tiny_pipe(), images, captions, cfg, log=lambda _m: None)

    full = trainer()
    with torch.no_grad():
        before = full.pipe.encode_prompt("pixel knight", device="cpu", do_classifier_free_guidance=False)[0]
    assert [g["lr"] for g in full.optimizer.param_groups] == [1e-2, 5e-3]
    losses = [full.train_step() for _ in range(4)]
    with torch.no_grad():
        after = full.pipe.encode_prompt("pixel knight", device="cpu", do_classifier_free_guidance=False)[0]
    assert (after - before).abs().max() > 1e-4  # the text encoders' LoRA learned something
    state = full.lora_state()
    parts = {k.split(".")[0] if k.startswith("text_encoder") else "unet" for k in state}
    assert parts == {"unet", "text_encoder", "text_encoder_2"}

    half = trainer()
    half.train_step(), half.train_step()
    saved_lora, saved_state = half.lora_state(), half.state_dict()
    resumed = trainer()
    resumed.load_lora_state(saved_lora)
    resumed.load_state_dict(saved_state)
    assert [resumed.train_step() for _ in range(2)] == pytest.approx(losses[2:], rel=1e-6)

    unet_only = LoraTrainer(tiny_pipe(), images, captions, LoraTrainConfig(steps=2), log=lambda _m: None)
    with pytest.raises(ValueError, match="text-encoder"):  # a checkpoint from another kind of run
        unet_only.load_lora_state(saved_lora)


class NoiseDraws:
    """Records the noise the trainer hands its noise scheduler (the noise the UNet must predict)."""

    def __init__(self, trainer: LoraTrainer) -> None:
        self.noise: list[torch.Tensor] = []
        real = trainer.noise_scheduler.add_noise

        def add_noise(latents, noise, t):
            self.noise.append(noise.detach().clone())
            return real(latents, noise, t)

        trainer.noise_scheduler.add_noise = add_noise


def test_noise_offset_adds_one_draw_per_channel():
    """noise_offset c: the noise is the plain draw plus c times one N(0, 1) draw per (image, channel), constant
    over the latent's pixels. Runs with the same seed and offsets 0, c and 3c differ by exactly that."""
    drawn = []
    for offset in (0.0, 0.1, 0.3):
        cfg = LoraTrainConfig(steps=1, seed=11, noise_offset=offset, batch_size=2)
        trainer = LoraTrainer(tiny_pipe(), sprites(2, (32, 32)), ["a", "b"], cfg, log=lambda _m: None)
        rec = NoiseDraws(trainer)
        trainer.train_step()
        drawn.append(rec.noise[0])
    plain, small, big = drawn
    assert plain.shape == (2, 4, 4, 4)
    step = small - plain  # the offset term alone: the plain draw comes first and is the same in all runs
    assert torch.allclose(step, step.mean(dim=(2, 3), keepdim=True).expand_as(step), atol=1e-6)
    per_channel = step[:, :, 0, 0] / 0.1
    assert per_channel.abs().min() > 1e-3 and 0.2 < float(per_channel.std()) < 3  # one N(0, 1) draw each
    assert torch.allclose(big - plain, 3 * step, atol=1e-5)  # proportional to noise_offset


def test_caption_dropout_trains_a_share_of_steps_on_the_empty_caption():
    """caption_dropout p replaces a caption by "" with probability p (drawn from the run's seed): with p = 1
    every step is conditioned on the empty prompt's encoding, with p = 0 none is, and p = 0.25 empties about
    a quarter of a fixed-seed run's captions."""
    captions = ["pixel knight", "pixel slime"]
    with torch.no_grad():
        empty = tiny_pipe().encode_prompt("", device="cpu", do_classifier_free_guidance=False)[0]
    for p in (1.0, 0.0):
        pipe = tiny_pipe()
        trainer = LoraTrainer(pipe, sprites(2, (32, 32)), captions, LoraTrainConfig(steps=2, seed=3,
                              caption_dropout=p), log=lambda _m: None)
        calls = UnetCalls(pipe.unet)
        trainer.train_step(), trainer.train_step()
        assert [torch.allclose(c["hidden"], empty) for c in calls.calls] == [p == 1.0] * 2
    trainer = LoraTrainer(tiny_pipe(), sprites(2, (32, 32)), captions,
                          LoraTrainConfig(steps=400, seed=3, caption_dropout=0.25), log=lambda _m: None)
    drawn = [trainer._draw_batch()[1][0] for _ in range(400)]  # the batch draw of 400 steps, without the UNet
    assert set(drawn) == {"", *captions}
    assert 0.18 < drawn.count("") / len(drawn) < 0.32
