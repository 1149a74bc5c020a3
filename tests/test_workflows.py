"""Workflow templates and the sheet / tileset / item-batch jobs they queue, through core and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.features.deploy import deploy
from studio.features.workflows import BUILTIN_DIR, WorkflowError, load_workflows, run_workflow
from studio.frontends.cli import main

FAST = {"steps": 2, "seed": 11}


def test_builtin_templates_load_and_build():
    flows = load_workflows(BUILTIN_DIR)
    assert {"single_sprite", "item_batch", "walk_cycle", "idle_animation", "tileset", "icon_set"} <= set(flows)
    kind, params, spec = flows["walk_cycle"].build({"subject": "a red slime"})
    assert kind == "sheet" and "a red slime" in params.prompt and spec.frames == 4
    kind, params, items = flows["item_batch"].build({"items": "axe, bow"})
    assert kind == "batch" and len(items) == 2 and "axe" in items[0] and "bow" in items[1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind = 'sprite'\nprompt = 'x'\nsteps = 3\n", r"unknown field\(s\) steps"),
        ("kind = 'movie'\nprompt = 'x'\n", "field 'kind'"),
        ("kind = 'sprite'\n", "field 'prompt'"),
        ("prompt = 'x'\n[generate]\nsteps = 0\n", r"\[generate\] steps"),
        ("prompt = 'x'\nkind = 'sheet'\n[sheet]\nframes = 12\n", r"\[sheet\] frames"),
        ("prompt = 'x'\n[pixel]\ncolors = 1\n", r"\[pixel\]"),
        ("prompt = '{subject}'\n", "needs a value for 'subject'"),
        ("prompt = [broken\n", "not valid TOML"),
    ],
)
def test_malformed_template_names_file_and_field(tmp_path, text, message):
    (tmp_path / "mine.toml").write_text(text)
    with pytest.raises(WorkflowError, match=message) as err:
        load_workflows(tmp_path)
    assert "mine.toml" in str(err.value)


def test_user_template_appears_without_code(studio):
    from studio.features.workflows import workflows_for

    folder = studio.settings.data_dir / "workflows"
    folder.mkdir()
    (folder / "boss.toml").write_text('name = "boss"\nprompt = "a giant {monster}, pixel art"\n'
                                      '[values]\nmonster = "crab"\n[generate]\nsteps = 2\n')
    assert "boss" in workflows_for(studio)
    res = studio.result(studio.queue.wait(run_workflow(studio, "boss", {"monster": "snail"}), 60))
    assert res.params.prompt == "a giant snail, pixel art"
    with pytest.raises(WorkflowError, match="no placeholder colour"):
        run_workflow(studio, "boss", {"colour": "red"})
    with pytest.raises(WorkflowError, match="unknown workflow"):
        run_workflow(studio, "nope")


def test_walk_cycle_sheet_job_one_palette_one_cell_size(studio, tmp_path):
    job = run_workflow(studio, "walk_cycle", {"subject": "a knight"}, generate=FAST)
    res = studio.result(studio.queue.wait(job, 120))
    frames = [Image.open(im.path) for im in res.images]
    assert len(frames) == 4 and {f.size for f in frames} == {(32, 32)}
    colours = {tuple(c) for f in frames for c in np.asarray(f.convert("RGBA")).reshape(-1, 4) if c[3] == 255}
    assert len({c[:3] for c in colours}) <= 16  # one palette across all frames, within the requested count
    sheet = Image.open(res.extras["sheet.png"])
    assert sheet.size == (4 * 32, 32)
    gif = Image.open(res.extras["preview.gif"])
    assert gif.format == "GIF" and gif.n_frames >= 2
    assert res.info["strategy"] == "img2img"
    row = studio.job(res.job_id)
    assert row["kind"] == "sheet" and row["params"]["sheet"]["animation"] == "walk"
    # and it deploys as a sheet by itself
    out = deploy(studio, res.job_id, tmp_path / "assets", "knight")
    sj = json.loads(out.files[1].read_text())
    assert sj["kind"] == "sheet" and sj["animations"]["walk"] == [0, 3, 8.0]


def test_tileset_job_reports_seams(studio):
    res = studio.result(studio.queue.wait(run_workflow(studio, "tileset", generate=FAST), 120))
    assert len(res.images) == 4 and {(im.width, im.height) for im in res.images} == {(16, 16)}
    assert len(res.info["seams"]) == 4 and all("passes" in r for r in res.info["seams"])
    assert Image.open(res.extras["repeat-0.png"]).size == (3 * 16 * 8, 3 * 16 * 8)
    colours = {tuple(c) for im in res.images for c in np.asarray(Image.open(im.path).convert("RGB")).reshape(-1, 3)}
    assert len(colours) <= 16


def test_item_batch_shares_one_palette(studio):
    res = studio.result(studio.queue.wait(
        run_workflow(studio, "item_batch", {"items": "axe, bow, ring"}, generate=FAST), 120))
    assert [im.seed for im in res.images] == [11, 12, 13]
    assert {(im.width, im.height) for im in res.images} == {(24, 24)}
    palettes = [{tuple(c[:3]) for c in np.asarray(Image.open(im.path)).reshape(-1, 4) if c[3] == 255}
                for im in res.images]
    union = set().union(*palettes)
    assert len(union) <= 24
    assert studio.job(res.job_id)["params"]["items"]["prompts"][1].startswith("bow")


def test_run_workflow_command(studio, tmp_path, capsys):
    studio.close()
    cfg = tmp_path / "studio.toml"
    cfg.write_text(f'data_dir = "{studio.settings.data_dir}"\nmodels_dir = "{studio.settings.models_dir}"\n')
    code = main(["--config", str(cfg), "run-workflow", "idle_animation", "--set", "subject=red slime",
                 "--steps", "2", "--seed", "5", "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out.split()
    assert code == 0
    names = sorted(Path(p).name for p in out)
    assert "idle_animation-sheet.png" in names and "idle_animation-preview.gif" in names
    assert sum(n.endswith("-5.png") for n in names) == 4
    code = main(["--config", str(cfg), "run-workflow", "idle_animation", "--set", "colour=red", "--out",
                 str(tmp_path / "x")])
    assert code == 2 and "no placeholder colour" in capsys.readouterr().err
    assert main(["--config", str(cfg), "workflows"]) == 0
    assert "walk_cycle" in capsys.readouterr().out


def test_variations_of_a_sprite(studio):
    from pipelines.pixel import PixelImageError, PixelParams
    from studio.params import GenerateParams

    keep = PixelParams(size=(16, 16), size_mode="exact", background="keep")  # the demo model draws noise
    base = studio.generate(GenerateParams(prompt="a potion", seed=1, steps=2, pixel=keep))
    src = base.images[0].path
    job = studio.submit_variation(GenerateParams(prompt="a potion, blue", seed=5, steps=4, count=2, pixel=keep),
                                  src, 0.5)
    res = studio.result(studio.queue.wait(job, 120))
    assert [im.seed for im in res.images] == [5, 6]
    size = Image.open(src).size
    assert all((im.width, im.height) == size for im in res.images)  # drops in where the original was
    row = studio.job(res.job_id)
    assert row["kind"] == "variation" and row["params"]["variation"]["strength"] == 0.5
    assert Path(row["params"]["variation"]["source"]).is_file()
    # each raw render is img2img of the source sprite (enlarged nearest-neighbour by hand, centred on white) at
    # the image's seed, and a render from a blank start would differ: the variation really starts from the source
    from pipelines.render import img2img, img2img_pipeline

    params = GenerateParams.from_dict({k: v for k, v in row["params"].items() if k != "variation"})
    w, h = params.width, params.height
    sprite = np.asarray(Image.open(src).convert("RGBA")).astype(float)
    k = min(w // sprite.shape[1], h // sprite.shape[0])
    big = np.kron(sprite, np.ones((k, k, 1)))
    start = np.full((h, w, 3), 255.0)
    y0, x0 = (h - big.shape[0]) // 2, (w - big.shape[1]) // 2
    alpha = big[..., 3:] / 255
    start[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big[..., :3] * alpha + 255 * (1 - alpha)
    start = Image.fromarray(np.round(start).astype(np.uint8))
    i2i = img2img_pipeline(studio.manager.pipeline(params.model))
    for im in res.images:
        want = np.asarray(img2img(i2i, params, start, 0.5, im.seed)).astype(int)
        assert np.abs(np.asarray(Image.open(im.raw_path)).astype(int) - want).max() <= 1
    blank = np.asarray(img2img(i2i, params, Image.new("RGB", (w, h), "white"), 0.5, 5)).astype(int)
    assert np.abs(blank - np.asarray(Image.open(res.images[0].raw_path)).astype(int)).max() > 8
    with pytest.raises(ValueError, match="strength"):
        studio.submit_variation(GenerateParams(prompt="x"), src, 1.5)
    bad = studio.settings.data_dir / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(PixelImageError):
        studio.submit_variation(GenerateParams(prompt="x"), bad, 0.5)
