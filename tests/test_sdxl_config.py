"""The built-in SDXL config folder: single-file SDXL checkpoints load with no network.

What can be checked without SDXL's 7 GB of weights: the tokenizers give CLIP's real token ids, every component
config builds SDXL base's exact network (on "meta"), and the registry picks the folder for an SDXL file and
refuses SD 1.x and refiner files by name.
"""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

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
