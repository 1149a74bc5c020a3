"""Samplers, schedules, few-step modes and A1111 prompt syntax, on the real tiny SDXL (issue 21)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.render import conditioning
from studio.params import GenerateParams, LoraRef, ParamsError
from studio.registry import ModelError
from studio.samplers import SAMPLERS, parse_sampler
from tests.conftest import fresh_tiny_pipe

EXPECTED = {  # name -> (class, config that must hold)
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "Lightning": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
}


def raw(result) -> np.ndarray:
    with Image.open(result.images[0].raw_path) as im:
        return np.asarray(im.convert("RGB"))


def job(**kw) -> GenerateParams:
    kw.setdefault("prompt", "a knight")
    return GenerateParams(seed=3, steps=kw.pop("steps", 4), pixel=None, **kw)


def test_every_sampler_uses_its_scheduler_and_switching_back_is_exact(studio):
    base = raw(studio.generate(job()))
    pipe = studio.manager.pipeline(studio.default_model)
    images = {}
    for name in EXPECTED:
        images[name] = raw(studio.generate(job(sampler=name)))
        cls, config = EXPECTED[name]
        assert type(pipe.scheduler).__name__ == cls, name
        assert all(pipe.scheduler.config[k] == v for k, v in config.items()), (name, dict(pipe.scheduler.config))
    assert not np.array_equal(images["Euler a"], images["DPM++ 2M Karras"])
    assert not np.array_equal(images["DPM++ 2M"], images["DPM++ 2M Karras"])  # the schedule matters
    assert np.array_equal(raw(studio.generate(job(sampler="DPM++ 2M Karras"))), images["DPM++ 2M Karras"])
    assert np.array_equal(raw(studio.generate(job())), base)  # back to the checkpoint's own, bit for bit
    assert studio.manager.loads == 1  # swapped by config on the resident pipeline, never reloaded
    assert set(EXPECTED) | {"default"} == set(SAMPLERS)


def test_default_is_exactly_the_checkpoint_as_it_came(studio):
    from pipelines.render import _OWN_SCHEDULER

    result = studio.generate(job(prompt="a plain prompt"))
    assert result.params.sampler == "Euler"  # the name of the demo checkpoint's own scheduler is recorded
    pipe = studio.manager.pipeline(studio.default_model)
    pipe.scheduler = _OWN_SCHEDULER[pipe]
    with torch.inference_mode():
        direct = pipe(prompt="a plain prompt", num_inference_steps=4, guidance_scale=6.0, width=128, height=128,
                      generator=[torch.Generator("cpu").manual_seed(3)]).images[0]
    assert np.array_equal(np.asarray(direct.convert("RGB")), raw(result))


@pytest.mark.parametrize("name, schedule, expected", [
    ("dpmpp_2m", "karras", ("DPM++ 2M", "karras")),
    ("euler_ancestral", "normal", ("Euler a", "automatic")),
    ("DPM++ 2M SDE Karras", "automatic", ("DPM++ 2M SDE", "karras")),
    ("euler", "sgm_uniform", ("Euler", "sgm_uniform")),
])
def test_sampler_names_people_paste(name, schedule, expected):
    assert parse_sampler(name, schedule) == expected


@pytest.mark.parametrize("kw, message", [
    ({"sampler": "Heun++ 9000"}, "unknown sampler"),
    ({"sampler": "DDIM", "schedule": "karras"}, "has no 'karras' schedule"),
    ({"schedule": "wobbly"}, "unknown schedule"),
    ({"clip_skip": 20}, "clip_skip"),
    ({"prompt": "a (knight:1.2"}, "never closed"),
    ({"prompt": "a knight]"}, "unbalanced"),
])
def test_bad_sampler_settings_are_refused(kw, message):
    with pytest.raises(ParamsError, match=message):
        job(**kw)


def test_lora_tags_set_the_lora_like_the_lora_field(studio, lora_files):
    shutil.copy(lora_files["slime"], studio.settings.loras_dir / "slime.safetensors")
    tagged = studio.generate(job(prompt="a knight, <lora:slime:0.5>"))
    fielded = studio.generate(job(prompt="a knight", loras=(LoraRef("slime", 0.5),)))
    assert tagged.params.prompt == "a knight" and tagged.params.loras == (LoraRef("slime", 0.5),)
    assert np.array_equal(raw(tagged), raw(fielded))
    assert not np.array_equal(raw(tagged), raw(studio.generate(job(prompt="a knight"))))
    with pytest.raises(ModelError, match="unknown LoRA 'no-such-style'"):
        studio.submit_generate(job(prompt="a knight <lora:no-such-style:1>"))


def _embeds(pipe, prompt: str) -> torch.Tensor:
    with torch.inference_mode():
        return conditioning(pipe, job(prompt=prompt, negative="x"))["prompt_embeds"][0]


def test_a_weighted_word_moves_the_conditioning_its_way():
    pipe = fresh_tiny_pipe()
    plain = conditioning(pipe, job(prompt="a red knight"))
    assert plain["prompt"] == "a red knight" and "prompt_embeds" not in plain  # plain text: today's path
    without = _embeds(pipe, "a (red:0) knight")
    distances = [float((_embeds(pipe, f"a (red:{w}) knight") - without).norm()) for w in (0.5, 1.0, 1.5)]
    assert distances[0] < distances[1] < distances[2], distances  # more weight, further from 'no red'
    assert float((_embeds(pipe, "a (red) knight") - _embeds(pipe, "a (red:1.1) knight")).norm()) < 1e-5


def test_the_tail_of_a_long_prompt_still_counts(studio):
    head = "a knight with " + ", ".join(f"detail number {i}" for i in range(40))
    assert len(studio.manager.pipeline(studio.default_model).tokenizer(head).input_ids) > 77
    one = raw(studio.generate(job(prompt=head + ", a red cape")))
    two = raw(studio.generate(job(prompt=head + ", a blue shield")))
    assert not np.array_equal(one, two)  # truncated at 77 tokens they would be the same picture


def test_fast_preview_applies_the_few_step_settings(studio, lora_files):
    shutil.copy(lora_files["slime"], studio.settings.loras_dir / "lcm-lora-sdxl.safetensors")
    result = studio.generate(job(loras=(LoraRef("lcm-lora-sdxl", 1.0),), fast=True, steps=30))
    p = result.params
    assert (p.sampler, p.steps, p.guidance) == ("LCM", 6, 1.5)
    assert "fast preview: LCM, 6 steps" in result.info["fast_preview"]
    with pytest.raises(ParamsError, match="few-step model"):
        studio.submit_generate(job(fast=True))


def test_a_sampler_sweep(app, studio):
    job = app.arena.submit_sweep(GenerateParams(prompt="a slime", seed=2, steps=3), "sampler",
                                 ["Euler", "DPM++ 2M Karras", "Lightning"])
    out = studio.result(studio.queue.wait(job, 120))
    assert out["labels"] == ["Euler", "DPM++ 2M Karras", "Lightning"]
    cells = [np.asarray(c) for c in out["cells"]]
    assert not np.array_equal(cells[0], cells[1]) or not np.array_equal(cells[1], cells[2])
