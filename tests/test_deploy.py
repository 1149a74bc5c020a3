"""Exporting studio output into a Bevy project: job -> files that validate against the repo's schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from studio.features.deploy import deploy
from studio.features.export import ExportError
from studio.frontends.cli import main
from studio.params import GenerateParams

SCHEMAS = Path(__file__).resolve().parents[1] / "studio" / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate_export(files: list[Path]) -> dict:
    sheet = json.loads(files[1].read_text())
    jsonschema.validate(sheet, schema("sheet"))
    jsonschema.validate(json.loads(files[2].read_text()), schema("aseprite"))
    with Image.open(files[0]) as im:
        assert im.mode == "RGBA" and im.format == "PNG"
        assert im.size == (sheet["columns"] * sheet["tile_size"][0], sheet["rows"] * sheet["tile_size"][1])
    return sheet


def test_job_exports_as_sprite_and_sheet_with_manifest(studio, tmp_path):
    assets = tmp_path / "game" / "assets"
    assets.mkdir(parents=True)
    from pipelines.pixel import PixelParams

    one_size = PixelParams(size=(16, 16), size_mode="exact")  # frames of a sheet share one cell size
    res = studio.generate(GenerateParams(prompt="a coin", seed=4, steps=2, count=3, pixel=one_size))
    one = deploy(studio, res.job_id, assets, "coin")
    sheet = validate_export(one.files)
    assert sheet["kind"] == "sprite" and sheet["source_job"] == res.job_id and sheet["source_params"]["seed"] == 4
    assert np.array_equal(np.asarray(Image.open(one.files[0])), np.asarray(Image.open(res.images[0].path)))

    strip = deploy(studio, res.job_id, assets, "coin-spin", kind="sheet")
    sheet = validate_export(strip.files)
    assert (sheet["columns"], sheet["rows"]) == (3, 1) and sheet["animations"]["frames"][:2] == [0, 2]

    manifest = json.loads((assets / "sprites" / "manifest.json").read_text())
    jsonschema.validate(manifest, schema("manifest"))
    assert set(manifest["assets"]) == {"sprite:coin", "sheet:coin-spin"}
    assert manifest["assets"]["sprite:coin"]["image"] == "sprites/coin/coin.png"
    assert "default_nearest" in strip.bevy_snippet and "from_grid" in strip.bevy_snippet


def test_reexport_replaces_in_place(studio, tmp_path):
    assets = tmp_path / "assets"
    a = studio.generate(GenerateParams(prompt="a gem", seed=1, steps=2))
    b = studio.generate(GenerateParams(prompt="a gem", seed=2, steps=2))
    deploy(studio, a.job_id, assets, "gem")
    first = (assets / "sprites" / "gem" / "gem.png").read_bytes()
    deploy(studio, b.job_id, assets, "gem")
    second = (assets / "sprites" / "gem" / "gem.png").read_bytes()
    assert first != second
    assert np.array_equal(np.asarray(Image.open(assets / 'sprites' / 'gem' / 'gem.png')),
                          np.asarray(Image.open(b.images[0].path)))
    manifest = json.loads((assets / "sprites" / "manifest.json").read_text())
    assert list(manifest["assets"]) == ["sprite:gem"] and manifest["assets"]["sprite:gem"]["source_job"] == b.job_id
    assert not [p for p in assets.rglob("*") if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", "Bad Name", "x" * 80])
def test_path_escapes_are_rejected_and_leave_nothing(studio, tmp_path, name):
    assets = tmp_path / "assets"
    assets.mkdir()
    res = studio.generate(GenerateParams(prompt="a key", seed=1, steps=2))
    with pytest.raises(ExportError):
        deploy(studio, res.job_id, assets, name)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.relative_to(tmp_path).parts[0] != "data"]
    assert written == []


def test_symlink_leaving_the_root_is_rejected(studio, tmp_path):
    assets = tmp_path / "assets"
    outside = tmp_path / "outside"
    (assets).mkdir()
    outside.mkdir()
    (assets / "sprites").symlink_to(outside, target_is_directory=True)
    res = studio.generate(GenerateParams(prompt="a key", seed=1, steps=2))
    with pytest.raises(ExportError):
        deploy(studio, res.job_id, assets, "key")
    assert not list(outside.iterdir())


def test_allowed_roots_and_bad_sources(studio, tmp_path):
    res = studio.generate(GenerateParams(prompt="a key", seed=1, steps=2))
    with pytest.raises(ExportError):
        deploy(studio, res.job_id, tmp_path / "assets", "key", allowed_roots=(tmp_path / "games",))
    with pytest.raises(ExportError, match="neither a job id nor an image file"):
        deploy(studio, "nope", tmp_path / "assets", "key")
    with pytest.raises(ExportError, match="kind must be one of"):
        deploy(studio, res.job_id, tmp_path / "assets", "key", kind="atlas")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(ExportError, match="not a readable image"):
        deploy(studio, str(junk), tmp_path / "assets", "junk")
    assert not (tmp_path / "assets").exists() or not list((tmp_path / "assets").rglob("*.png"))


def test_export_command(studio, tmp_path, capsys):
    res = studio.generate(GenerateParams(prompt="a shield", seed=3, steps=2))
    studio.close()
    cfg = tmp_path / "studio.toml"
    cfg.write_text(f'data_dir = "{studio.settings.data_dir}"\nmodels_dir = "{studio.settings.models_dir}"\n')
    assets = tmp_path / "assets"
    assert main(["--config", str(cfg), "export", res.job_id, "--assets", str(assets), "--name", "shield"]) == 0
    out, err = capsys.readouterr()
    assert str(assets.resolve() / "sprites" / "shield" / "shield.png") in out and "default_nearest" in err
    code = main(["--config", str(cfg), "export", res.job_id, "--assets", str(assets), "--name", "../up"])
    assert code == 2 and "error:" in capsys.readouterr().err
