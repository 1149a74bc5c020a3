"""The `dgx-pixels` command line: the same core calls, from the shell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.frontends.cli import main
from studio.metadata import params_from_png
from tests.conftest import make_settings


@pytest.fixture
def config(tmp_path, demo_model, lora_files) -> Path:
    s = make_settings(tmp_path, demo_model)
    shutil.copy(lora_files["slime"], s.loras_dir / "slime.safetensors")
    cfg = tmp_path / "studio.toml"
    cfg.write_text(f'[studio]\ndata_dir = "{s.data_dir}"\nmodels_dir = "{s.models_dir}"\n')
    return cfg


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_with_lora_and_back(config, capsys, tmp_path):
    code, out, _ = run(capsys, "--config", config, "generate", "--prompt", "a red slime", "--seed", "3",
                       "--steps", "3", "--count", "2", "--out", tmp_path / "base", "--quiet", "--raw")
    assert code == 0
    base = out.split()
    assert [Path(p).name for p in base] == ["sprite-3.png", "sprite-4.png"]
    params, seed = params_from_png(base[1])
    assert (params.prompt, params.seed, seed, params.steps) == ("a red slime", 3, 4, 3)

    code, out, _ = run(capsys, "--config", config, "generate", "--prompt", "a red slime", "--seed", "3",
                       "--steps", "3", "--count", "2", "--lora", "slime:1.0", "--out", tmp_path / "lora", "--quiet",
                       "--raw")
    assert code == 0
    with_lora = out.split()[0]
    assert params_from_png(with_lora)[0].loras[0].name == "slime"
    assert not np.array_equal(np.asarray(Image.open(base[0])), np.asarray(Image.open(with_lora)))

    code, out, _ = run(capsys, "--config", config, "generate", "--prompt", "a red slime", "--seed", "3",
                       "--steps", "3", "--count", "2", "--out", tmp_path / "again", "--quiet", "--raw")
    assert np.array_equal(np.asarray(Image.open(base[0])), np.asarray(Image.open(out.split()[0])))


def test_generate_bad_input_exits_2_with_message(config, capsys, tmp_path):
    for args, message in [
        (["--size", "100x64"], "multiple of 8"),
        (["--steps", "0"], "steps"),
        (["--lora", "ghost"], "unknown LoRA 'ghost'"),
        (["--model", "nope"], "unknown model 'nope'"),
    ]:
        code, _, err = run(capsys, "--config", config, "generate", "--prompt", "x", "--out", tmp_path, "--quiet",
                           *args)
        assert code == 2 and message in err
    assert not list(tmp_path.glob("*.png"))


def test_info_models_config(config, capsys, tmp_path):
    code, out, _ = run(capsys, "--config", config, "generate", "--prompt", "an axe", "--seed", "1", "--steps", "2",
                       "--out", tmp_path / "o", "--quiet")
    png = out.split()[0]
    code, out, _ = run(capsys, "info", png)
    assert code == 0 and "an axe" in out and "Seed: 1" in out and '"seed": 1' in out
    code, _, err = run(capsys, "info", config)
    assert code == 2 and "not a readable image" in err

    code, out, _ = run(capsys, "--config", config, "models", "--json")
    listing = json.loads(out)
    assert [m["name"] for m in listing["checkpoints"]] == ["demo-tiny"]
    assert listing["loras"][0]["name"] == "slime" and listing["loras"][0]["trigger_words"] == ["slm"]
    assert len(listing["loras"][0]["hash"]) == 10

    code, out, _ = run(capsys, "--config", config, "config")
    assert json.loads(out)["port"] == 7860


def test_pixelate_file_and_bad_input(capsys, tmp_path):
    rng = np.random.default_rng(0)
    art = np.array([[255, 0, 0], [0, 0, 255], [0, 200, 0]], dtype=np.uint8)[rng.integers(0, 3, (16, 16))]
    src = tmp_path / "big.png"
    Image.fromarray(np.kron(art, np.ones((32, 32, 1), dtype=np.uint8))).save(src)
    code, out, _ = run(capsys, "pixelate", src, tmp_path / "out.png", "--preview-scale", "4", "--background", "keep")
    assert code == 0 and "16x16" in out
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), art)
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    code, _, err = run(capsys, "pixelate", tmp_path / "junk.png", tmp_path / "junk-out.png")
    assert code == 2 and "error:" in err and not (tmp_path / "junk-out.png").exists()


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("dgx-pixels")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "generate" in out.stdout and "pixelate" in out.stdout


@pytest.mark.parametrize("command", ["serve", "generate", "pixelate", "models", "workflows", "run-workflow", "export",
                                     "leaderboard", "info", "config", "mcp"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and "usage: dgx-pixels" in capsys.readouterr().out
