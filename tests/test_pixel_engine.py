"""Public API: parameters, batch processing, and a few real dev-set cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.pixel import PixelParams, pixelate, pixelate_folder, upscale_nearest
from tests.pixel_synth import make_sprite, render

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench" / "pixel-dev"


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"colors": 1}, "colors must be between 2 and 256"),
        ({"colors": 300}, "colors must be between 2 and 256"),
        ({"colors": "many"}, "colors must be an integer or 'auto'"),
        ({"size": (0, 5)}, "size must be between"),
        ({"size": "32by32"}, "size must be WxH"),
        ({"size_mode": "exact"}, "needs a size"),
        ({"size_mode": "maybe"}, "size_mode must be"),
        ({"background": "transparent"}, "background must be 'auto', 'keep'"),
        ({"dither": "floyd"}, "dither must be"),
        ({"outline": "black"}, "outline must be a colour"),
        ({"palette": "nope"}, "unknown palette"),
        ({"keep_holes": "yes"}, "keep_holes must be true or false"),
    ],
)
def test_params_validation(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        PixelParams(**kw)


def test_params_roundtrip() -> None:
    p = PixelParams(size=(32, 24), size_mode="exact", colors=12, palette="pico-8", background="#ffffff",
                    keep_holes=False, dither="bayer", remove_strays=False, outline="#000000", crop=True,
                    canvas=(40, 40))
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d and d["size"] == [32, 24]
    assert PixelParams.from_dict(d) == p
    assert PixelParams.from_dict(PixelParams().to_dict()) == PixelParams()
    assert PixelParams(size="32x24").size == (32, 24) and PixelParams(colors="auto").colors is None
    with pytest.raises(ValueError, match="unknown pixel parameter"):
        PixelParams.from_dict({"colours": 4})


def test_upscale_nearest() -> None:
    a = make_sprite(8, 6, 3, seed=1)
    up = upscale_nearest(a, 5)
    assert up.size == (40, 30)
    assert np.array_equal(np.asarray(up)[::5, ::5], a)
    with pytest.raises(ValueError):
        upscale_nearest(a, 0)


def test_folder_batch_with_shared_palette_and_bad_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sprites = [make_sprite(12, 12, 4, seed=s) for s in (1, 2, 3)]
    for i, s in enumerate(sprites):
        Image.fromarray(render(s, cell=22 + i, seed=i)).save(src / f"s{i}.png")
    (src / "broken.png").write_bytes(b"not a png")
    seen: list[int] = []
    items = pixelate_folder(src, dst, PixelParams(colors=6), shared_palette=True, preview_scale=2,
                            progress=lambda done, total, path: seen.append(done))
    assert seen == [1, 2, 3, 4]
    bad = [it for it in items if it.error]
    assert len(bad) == 1 and bad[0].src.name == "broken.png" and "not an image" in bad[0].error
    good = [it for it in items if not it.error]
    pals = [{tuple(c) for c in it.result.palette} for it in good]
    union = set().union(*pals)
    assert len(union) <= 6
    for it, s in zip(good, sprites, strict=True):
        out = np.asarray(Image.open(it.dst))
        assert out.shape == s.shape
        assert (dst / f"{it.src.stem}.preview.png").exists()
    assert not (dst / "broken.png").exists()


# Dev-set cases spread over kinds, cell sizes and degradations (chosen by id stride, not by
# result): sprites, opaque tiles and small-cell regions.
DEV_CASES = ["d000", "d039", "d078", "d117", "d130", "d150", "d166", "d183", "d200"]


@pytest.mark.skipif(not (DEV / "manifest.json").is_file(), reason="dev set not available")
def test_dev_set_cases_exact_size() -> None:
    manifest = {c["id"]: c for c in json.loads((DEV / "manifest.json").read_text())["cases"]}
    wrong = []
    for cid in DEV_CASES:
        c = manifest[cid]
        res = pixelate(Image.open(DEV / c["input"]))
        if res.image.size != (c["width"], c["height"]):
            wrong.append((cid, res.image.size, (c["width"], c["height"])))
    assert len(wrong) <= 1, wrong
