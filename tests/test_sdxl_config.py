"""The built-in SDXL config folder: single-file SDXL checkpoints load with no network.

What can be checked without SDXL's 7 GB of weights: the tokenizers give CLIP's real token ids, every component
config builds SDXL base's exact network (on "meta"), and the registry picks the folder for an SDXL file and
refuses SD 1.x and refiner files by name.
"""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from studio.registry import HashCache, ModelError, Registry  # noqa: E402
from studio.sdxl.builtin_config import write_sdxl_config  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_sdxl_config(tmp_path_factory.mktemp("cfg") / "sdxl-base-builtin")


def test_tokenizers_are_clips(folder):
    from transformers import CLIPTokenizer

    tok, tok2 = (CLIPTokenizer.from_pretrained(folder / n) for n in ("tokenizer", "tokenizer_2"))
    assert len(tok) == 49408
    # CLIP's ids for this sentence (start 49406, end 49407), as every CLIP/SD tokenizer gives them
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = tok("a cat", padding="max_length", max_length=8).input_ids
    padded2 = tok2("a cat", padding="max_length", max_length=8).input_ids
    assert padded == [49406, 320, 2368, 49407, 49407, 49407, 49407, 49407]  # SDXL's tokenizer pads with end
    assert padded2 == [49406, 320, 2368, 49407, 0, 0, 0, 0]  # and tokenizer_2 with "!" (id 0)


def test_component_configs_build_sdxl_base(folder):
    from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    index = DiffusionPipeline.load_config(folder)
    assert index["_class_name"] == "StableDiffusionXLPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert [count(m) for m in (unet, vae, te, te2)] == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    assert vae.config.scaling_factor == 0.13025
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "EulerDiscreteScheduler" and sched["timestep_spacing"] == "leading"


def _header_only_file(path, keys: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with the names and shapes of a checkpoint's telling tensors (zeros, tiny)."""
    save_file({k: torch.zeros(shape, dtype=torch.float16) for k, shape in keys.items()}, str(path))


def test_registry_uses_the_builtin_folder_and_refuses_other_families(tmp_path):
    ckpts = tmp_path / "models" / "checkpoints"
    ckpts.mkdir(parents=True)
    unet_in = "model.diffusion_model.input_blocks.0.0.weight"
    _header_only_file(ckpts / "sdxl.safetensors", {unet_in: (320, 4, 3, 3),
                                                    "conditioner.embedders.1.model.ln_final.weight": (1280,)})
    _header_only_file(ckpts / "sd15.safetensors", {unet_in: (320, 4, 3, 3),
                                                    "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)})
    _header_only_file(ckpts / "refiner.safetensors", {unet_in: (384, 4, 3, 3),
                                                       "conditioner.embedders.0.model.ln_final.weight": (1280,)})
    reg = Registry(tmp_path / "models", HashCache(tmp_path / "hashes.json"))
    entries = {m.name: m for m in reg.checkpoints()}
    config = reg.single_file_config(entries["sdxl"])
    assert config == str(tmp_path / "models" / "configs" / "sdxl-base-builtin")
    assert (tmp_path / "models" / "configs" / "sdxl-base-builtin" / "tokenizer_2" / "tokenizer_config.json").is_file()
    with pytest.raises(ModelError, match="SD 1.x/2.x"):
        reg.single_file_config(entries["sd15"])
    with pytest.raises(ModelError, match="refiner"):
        reg.single_file_config(entries["refiner"])
    user = tmp_path / "models" / "configs" / "sdxl-base"  # the user's own copy of SDXL's folder wins
    write_sdxl_config(user)
    assert reg.single_file_config(entries["sdxl"]) == str(user)


# Kohya names of SDXL base's attention LoRA modules, as ComfyUI, A1111 and Forge look them up: the SGM block
# (input_blocks_<n>_1, middle_block_1, output_blocks_<n>_1), its width in channels, and how many transformer
# blocks it holds (SDXL's transformer_layers_per_block 1, 2, 10). Written out from SDXL's published layout.
SDXL_KOHYA_BLOCKS = {
    "input_blocks_4_1": (640, 2), "input_blocks_5_1": (640, 2),
    "input_blocks_7_1": (1280, 10), "input_blocks_8_1": (1280, 10),
    "middle_block_1": (1280, 10),
    "output_blocks_0_1": (1280, 10), "output_blocks_1_1": (1280, 10), "output_blocks_2_1": (1280, 10),
    "output_blocks_3_1": (640, 2), "output_blocks_4_1": (640, 2), "output_blocks_5_1": (640, 2),
}
SDXL_KOHYA_SAMPLE = [
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k",
    "lora_unet_input_blocks_5_1_transformer_blocks_0_attn1_to_out_0",
    "lora_unet_input_blocks_7_1_transformer_blocks_9_attn2_to_v",
    "lora_unet_input_blocks_8_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_out_0",
    "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_k",
    "lora_unet_output_blocks_2_1_transformer_blocks_9_attn2_to_q",
    "lora_unet_output_blocks_3_1_transformer_blocks_1_attn1_to_v",
    "lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_out_0",
]


def test_kohya_export_names_full_size_sdxl_blocks():
    """The trainer's LoRA on SDXL base's full UNet (built on "meta") exported to kohya: every module has the SGM
    name ComfyUI/A1111 expect, with down/up/alpha and the shapes of that block."""
    from diffusers import UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from studio.sdxl.demo import SDXL_UNET
    from training.lora import LoraTrainConfig, add_lora
    from training.lora_formats import diffusers_to_kohya

    rank = 4
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
        add_lora(unet, LoraTrainConfig(rank=rank, alpha=8))
    state = {f"unet.{k}": v for k, v in convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)).items()}
    kohya = diffusers_to_kohya(state, unet.config, 8.0, rank)
    modules = {f"lora_unet_{block}_transformer_blocks_{i}_{attn}_{proj}"
               for block, (_, n) in SDXL_KOHYA_BLOCKS.items() for i in range(n)
               for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out_0")}
    assert len(modules) == 560 and set(SDXL_KOHYA_SAMPLE) <= modules
    assert set(kohya) == {f"{m}.{part}" for m in modules for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    for block, (width, n) in SDXL_KOHYA_BLOCKS.items():
        for i in range(n):
            name = f"lora_unet_{block}_transformer_blocks_{i}"
            assert kohya[f"{name}_attn1_to_q.lora_down.weight"].shape == (rank, width), name
            assert kohya[f"{name}_attn2_to_k.lora_down.weight"].shape == (rank, 2048), name  # the text states
            assert kohya[f"{name}_attn2_to_out_0.lora_up.weight"].shape == (width, rank), name
    assert float(kohya[f"{SDXL_KOHYA_SAMPLE[0]}.alpha"]) == 8.0


def test_single_file_loads_through_the_builtin_folder(tmp_path, monkeypatch):
    """The path a real SDXL file takes (no sidecar, no demo model, no user folder: the built-in folder, written
    and used by the registry and pipeline manager), at tiny size: the folder's writer is given the tiny UNet,
    VAE and encoders, everything else (model index, CLIP tokenizers, token ids, scheduler) is SDXL's."""
    from studio.manager import PipelineManager
    from studio.params import GenerateParams
    from studio.sdxl import builtin_config
    from studio.sdxl.demo import (
        SDXL_VOCAB,
        TINY_CLIP,
        TINY_CLIP_2,
        TINY_UNET,
        TINY_VAE,
        build_random_pipeline,
    )
    from studio.sdxl.sgm_keys import pipeline_to_single_file

    for name, arch in (("SDXL_UNET", TINY_UNET), ("SDXL_VAE", TINY_VAE), ("SDXL_CLIP", TINY_CLIP),
                       ("SDXL_CLIP_2", TINY_CLIP_2)):
        monkeypatch.setattr(builtin_config, name, arch)
    source = build_random_pipeline(TINY_UNET, TINY_VAE, TINY_CLIP, TINY_CLIP_2, seed=5, vocab_size=SDXL_VOCAB)
    ckpts = tmp_path / "models" / "checkpoints"
    ckpts.mkdir(parents=True)
    save_file(pipeline_to_single_file(source), str(ckpts / "tiny-sdxl.safetensors"))
    reg = Registry(tmp_path / "models", HashCache(tmp_path / "hashes.json"))
    (entry,) = reg.checkpoints()
    builtin = tmp_path / "models" / "configs" / "sdxl-base-builtin"
    assert entry.kind == "single_file" and reg.single_file_config(entry) == str(builtin)
    pipe = PipelineManager(reg, device="cpu").pipeline("tiny-sdxl")
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(source, part).state_dict(), getattr(pipe, part).state_dict()
        assert {k for k in want if "position_ids" not in k} <= set(got), part
        assert all(torch.equal(v, got[k]) for k, v in want.items() if "position_ids" not in k), part
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.tokenizer_2("a cat", padding="max_length", max_length=6).input_ids == [49406, 320, 2368, 49407, 0, 0]
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "leading"
    from pipelines.render import render

    (image,) = render(pipe, GenerateParams(prompt="a red slime", seed=1, steps=2, width=64, height=64))
    assert image.size == (64, 64) and len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 1
