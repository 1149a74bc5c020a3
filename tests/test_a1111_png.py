"""PNGs from A1111, Forge and Civitai restore their settings, and ours are written the way A1111 writes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.frontends.cli import main
from studio.metadata import import_png, parse_a1111, read_metadata
from studio.params import GenerateParams, LoraRef

FIXTURE = Path(__file__).with_name("data") / "a1111-knight.png"


def test_every_field_of_an_a1111_png_is_read(studio):
    params, seed, notes = import_png(FIXTURE, studio.registry)
    assert params.prompt == "pixel art, a knight in silver armour, game sprite"
    assert params.negative == "blurry, text, watermark"
    assert (params.steps, params.sampler, params.schedule, params.guidance) == (25, "DPM++ 2M", "karras", 7.0)
    assert (seed, params.width, params.height, params.clip_skip) == (1234567, 1024, 1024, 2)
    assert params.model is None and params.loras == ()  # neither is here ...
    assert any("sd_xl_base_1.0" in n and "31e35c80fc" in n for n in notes)  # ... and the notes say so
    assert any("pixel-art-xl" in n and "7b0f1d2c4a5e" in n for n in notes)


def test_models_and_loras_are_matched_by_hash(studio, lora_files, tmp_path):
    from safetensors.torch import save_file

    from studio.sdxl.sgm_keys import pipeline_to_single_file

    shutil.copy(lora_files["slime"], studio.settings.loras_dir / "slime.safetensors")
    single = studio.settings.checkpoints_dir / "my-model.safetensors"
    save_file(pipeline_to_single_file(studio.manager.pipeline("demo-tiny")), str(single))
    model_hash = studio.registry.hashes.short_hash(single)
    lora_hash = studio.registry.hashes.addnet_hash(studio.settings.loras_dir / "slime.safetensors")
    text = (f"a slime <lora:pixelslime_v2:0.7>\nSteps: 4, Sampler: Euler a, CFG scale: 5, Seed: 9, Size: 128x128, "
            f'Model hash: {model_hash}, Model: renamed-on-civitai, Lora hashes: "pixelslime_v2: {lora_hash}", '
            "Version: v1.10.1")
    png = tmp_path / "civitai.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    params, seed, notes = import_png(png, studio.registry)
    assert (params.model, params.loras, params.sampler, seed, notes) == (
        "my-model", (LoraRef("slime", 0.7),), "Euler a", 9, [])
    assert studio.generate(GenerateParams.from_dict({**params.to_dict(), "steps": 2, "seed": seed})).images


def test_our_pngs_are_written_as_a1111_writes_them(studio, lora_files):
    shutil.copy(lora_files["slime"], studio.settings.loras_dir / "slime.safetensors")
    result = studio.generate(GenerateParams(prompt="a gem", seed=5, steps=2, sampler="DPM++ 2M Karras",
                                            clip_skip=2, loras=(LoraRef("slime", 0.5),)))
    prompt, negative, fields = parse_a1111(read_metadata(result.images[0].path)["parameters"])
    assert prompt == "a gem <lora:slime:0.5>"
    assert (fields["Sampler"], fields["Schedule type"], fields["Clip skip"], fields["Seed"]) == (
        "DPM++ 2M Karras", "Automatic", "2", "5")
    hash_ = studio.registry.hashes.addnet_hash(studio.settings.loras_dir / "slime.safetensors")
    assert fields["Lora hashes"] == f"slime: {hash_}"
    # and an A1111 reader (ours, without the JSON chunk) gets the same job back
    again = import_png_text(read_metadata(result.images[0].path)["parameters"], studio)
    assert (again.prompt, again.loras, again.sampler, again.clip_skip) == ("a gem", (LoraRef("slime", 0.5),),
                                                                          "DPM++ 2M Karras", 2)


def import_png_text(text: str, studio) -> GenerateParams:
    from studio.metadata import params_from_a1111

    return params_from_a1111(text, studio.registry)[0]


def test_cli_imports_an_a1111_png(settings, capsys):
    toml = settings.data_dir.parent / "studio.toml"
    toml.write_text(f'data_dir = "{settings.data_dir}"\nmodels_dir = "{settings.models_dir}"\n')
    assert main(["--config", str(toml), "info", str(FIXTURE), "--import"]) == 0
    out = capsys.readouterr()
    job = json.loads(out.out)["params"]
    assert (job["prompt"], job["sampler"], job["schedule"], job["seed"], job["clip_skip"]) == (
        "pixel art, a knight in silver armour, game sprite", "DPM++ 2M", "karras", 1234567, 2)
    assert "pixel-art-xl" in out.err


@pytest.mark.browser
@pytest.mark.slow
def test_dropping_an_a1111_png_fills_the_form(page):
    page.set_input_files("#load-png input[type=file]", str(FIXTURE))
    page.wait_for_function("document.querySelector('#prompt textarea').value.includes('silver armour')",
                           timeout=30_000)
    assert page.input_value("#seed textarea, #seed input") == "1234567"
    assert page.locator("#steps input[type=number]").input_value() == "25"
    assert page.input_value("#sampler input") == "DPM++ 2M"
    assert page.input_value("#schedule input") == "karras"
    assert page.locator("#clip-skip input").input_value() == "2"
    assert page.locator("#width input").input_value() == "1024"
    status = page.inner_text("#gen-status")
    assert "pixel-art-xl" in status and "not here" in status
