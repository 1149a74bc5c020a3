"""Settings precedence and parameter validation: the contract every front end shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.params import GenerateParams, LoraRef, ParamsError
from studio.settings import load_settings


def test_settings_env_over_file_over_defaults(tmp_path: Path):
    cfg = tmp_path / "studio.toml"
    cfg.write_text('[studio]\nport = 9000\nhost = "127.0.0.2"\ndata_dir = "/srv/pixels"\n')
    s = load_settings(cfg, env={})
    assert (s.port, s.host, s.data_dir) == (9000, "127.0.0.2", Path("/srv/pixels"))
    assert s.device == "auto"  # untouched default
    s = load_settings(cfg, env={"DGXP_PORT": "9100", "DGXP_DEVICE": "cpu", "DGXP_PASSWORD": "pw"})
    assert (s.port, s.host, s.device, s.password) == (9100, "127.0.0.2", "cpu", "pw")
    s = load_settings(cfg, env={"DGXP_PORT": "9100"}, port=9200)  # CLI flags win
    assert s.port == 9200


def test_settings_errors_name_the_field(tmp_path: Path):
    cfg = tmp_path / "studio.toml"
    cfg.write_text("colour = 3\n")
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        load_settings(cfg, env={})
    with pytest.raises(ValueError, match="port"):
        load_settings(tmp_path / "none.toml", env={"DGXP_PORT": "eighty"})
    with pytest.raises(ValueError, match="device"):
        load_settings(tmp_path / "none.toml", env={"DGXP_DEVICE": "tpu"})


def test_settings_describe_masks_secrets(tmp_path: Path):
    s = load_settings(tmp_path / "none.toml", env={"DGXP_PASSWORD": "hunter2"})
    d = s.describe()
    assert d["password"] == "(set)" and "hunter2" not in json.dumps(d)


def test_params_json_round_trip():
    from pipelines.pixel import PixelParams

    p = GenerateParams(
        prompt="red slime", negative="blurry", loras=(LoraRef("a", 0.5), LoraRef("b")), seed=7, steps=12,
        guidance=4.5, width=512, height=768, count=3, pixel=PixelParams(size=(32, 32), colors=12),
    )
    back = GenerateParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p
    assert p.seeds() == [7, 8, 9]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"prompt": "  "}, "prompt must not be empty"),
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"width": 500}, "multiple of 8"),
        ({"height": 8192}, "multiple of 8 from 64"),
        ({"count": 0}, "count"),
        ({"guidance": 99}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"loras": (LoraRef("a"), LoraRef("a", 0.3))}, "only once"),
    ],
)
def test_params_reject_bad_values(kw, message):
    base = {"prompt": "slime"}
    with pytest.raises(ParamsError, match=message):
        GenerateParams(**{**base, **kw})


def test_params_from_dict_rejects_unknown_keys():
    with pytest.raises(ParamsError, match="unknown parameter"):
        GenerateParams.from_dict({"prompt": "x", "hires_fix": True})


def test_lora_ref_parse():
    assert LoraRef.parse("pixel-art-xl:0.8") == LoraRef("pixel-art-xl", 0.8)
    assert LoraRef.parse("plain") == LoraRef("plain", 1.0)
    with pytest.raises(ParamsError, match="NAME:WEIGHT"):
        LoraRef.parse("x:heavy")
