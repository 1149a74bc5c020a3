"""Seamless tiles on the real tiny SDXL: circular padding makes the render a picture on a torus, the cut keeps
it so, one palette spans the set, and the convs are left exactly as they were, also after a cancel.

Why periodicity and not the seam check on the tiny model: its random weights draw pixel-scale noise (the mean
OKLab step between neighbours is the same as between pixels 32 px apart), so there is no continuity for a
seam to break, and the step-based check passes with padding on and off alike (seed 7, 8 tiles: ratios
0.55-0.73 on, 0.52-0.80 off; on the raw renders the plain wrap step is even the smaller, because zero padding
pulls both borders the same way). The property seamlessness rests
on is tested instead, exactly: with circular padding, rolling the start noise rolls the picture. The seam
check itself is tested on synthetic tiles whose texture does continue across neighbours.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.render import Cancelled, render  # noqa: E402
from pipelines.tiles import (  # noqa: E402
    TileSpec,
    generate_tileset,
    periodic_cells,
    repeat_preview,
    seam_report,
    seamless,
)
from studio.params import GenerateParams  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    from tests.conftest import fresh_tiny_pipe

    return fresh_tiny_pipe()


def conv_state(pipe) -> list[tuple]:
    """Everything about each conv that seamless() could touch."""
    convs = [m for model in (pipe.unet, pipe.vae) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return [(id(m), m.padding_mode, m.padding, sorted(m.__dict__), m.__dict__.get("_conv_forward")) for m in convs]


def job(seed=5, **kw) -> GenerateParams:
    return GenerateParams(prompt="grass tile", seed=seed, steps=kw.pop("steps", 2), width=64, height=64, **kw)


def from_noise(pipe, noise: torch.Tensor) -> np.ndarray:
    out = pipe(prompt="grass tile", num_inference_steps=2, latents=noise.clone(), width=64, height=64,
               output_type="np")
    return out.images[0]


# ---------------------------------------------------------------------------------------- seamless()
def test_circular_padding_makes_the_render_periodic(pipe):
    f = pipe.vae_scale_factor  # image px per latent px (8, as in SDXL)
    noise = torch.randn((1, 4, 64 // f, 64 // f), generator=torch.Generator().manual_seed(3))
    dy, dx = 2, 4  # even latent shifts: the UNet's stride-2 conv keeps its phase
    rolled = torch.roll(noise, (dy, dx), (2, 3))
    with seamless(pipe) as n:
        a, b = from_noise(pipe, noise), from_noise(pipe, rolled)
    assert n > 40
    assert np.abs(np.roll(a, (dy * f, dx * f), (0, 1)) - b).max() < 1e-4  # the picture rolled with the noise
    plain_a, plain_b = from_noise(pipe, noise), from_noise(pipe, rolled)
    assert np.abs(np.roll(plain_a, (dy * f, dx * f), (0, 1)) - plain_b).max() > 0.2  # zero padding: edges differ

    # the tile lattice closes on itself: rolling the render by whole cells rolls the tile by those cells
    to_img = [Image.fromarray(np.round(x * 255).astype(np.uint8)) for x in (a, b)]
    ta, tb = (periodic_cells(im, (16, 16), align=False) for im in to_img)
    assert ta.shape == (16, 16, 4)
    cells = (dy * f // 4, dx * f // 4)  # 4 px cells
    assert np.abs(np.roll(ta, cells, (0, 1)).astype(int) - tb).max() <= 1  # 1 level of rounding


def test_one_axis_wraps_only_that_axis(pipe):
    f = pipe.vae_scale_factor
    noise = torch.randn((1, 4, 64 // f, 64 // f), generator=torch.Generator().manual_seed(4))
    with seamless(pipe, "x"):
        a = from_noise(pipe, noise)
        bx = from_noise(pipe, torch.roll(noise, 2, 3))
        by = from_noise(pipe, torch.roll(noise, 2, 2))
    assert np.abs(np.roll(a, 2 * f, 1) - bx).max() < 1e-4
    assert np.abs(np.roll(a, 2 * f, 0) - by).max() > 0.2
    with pytest.raises(ValueError, match="axes"), seamless(pipe, "z"):
        pass


def test_state_is_restored_and_a_later_job_is_identical(pipe):
    before_state = conv_state(pipe)
    before = np.asarray(render(pipe, job(seed=9))[0])
    generate_tileset(pipe, job(seed=9), TileSpec(count=1))
    with seamless(pipe), seamless(pipe, "y"):  # nested: the inner one puts the outer one's state back
        pass
    assert conv_state(pipe) == before_state
    assert np.array_equal(np.asarray(render(pipe, job(seed=9))[0]), before)


def test_cancel_and_errors_restore_state(pipe):
    before_state = conv_state(pipe)
    seen = []

    def cancel_at_2(done, total):
        seen.append(done)
        if done == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        generate_tileset(pipe, job(steps=4), TileSpec(count=2), on_step=cancel_at_2)
    assert seen == [1, 2] and conv_state(pipe) == before_state
    with pytest.raises(RuntimeError), seamless(pipe):
        raise RuntimeError("boom")
    assert conv_state(pipe) == before_state


# ---------------------------------------------------------------------------------------- tilesets
def test_tileset_sizes_seeds_and_one_palette(pipe):
    spec = TileSpec(count=3, tile_size=(16, 8), colors=8)
    out = generate_tileset(pipe, job(seed=20, count=1), spec)
    assert out.seeds == [20, 21, 22] and out.seamless and len(out.raws) == 3 and len(out.reports) == 3
    assert all(t.size == (16, 8) and t.mode == "RGBA" for t in out.tiles)
    pixels = np.concatenate([np.asarray(t).reshape(-1, 4) for t in out.tiles])
    assert (pixels[:, 3] == 255).all()  # tiles are opaque
    used = {tuple(c) for c in pixels[:, :3]}
    assert len(used) <= 8 and used <= {tuple(c) for c in out.palette}
    assert len({tuple(c) for c in np.asarray(out.tiles[0]).reshape(-1, 4)[:, :3]}) > 1
    assert all(r.passes for r in out.reports)  # (so would the plain tiles: see the module docstring)
    plain = generate_tileset(pipe, job(seed=20), TileSpec(count=1, tile_size=(16, 8), seamless=False))
    assert not plain.seamless and not np.array_equal(np.asarray(plain.raws[0]), np.asarray(out.raws[0]))


def test_named_palette_is_used_as_is(pipe):
    from pipelines.pixel import load_palette, palette_names

    name = palette_names()[0]
    out = generate_tileset(pipe, job(), TileSpec(count=1, palette=name))
    allowed = {tuple(c) for c in load_palette(name)}
    assert {tuple(c) for c in np.asarray(out.tiles[0]).reshape(-1, 4)[:, :3]} <= allowed


def test_repeat_preview_size():
    tile = Image.new("RGBA", (16, 12), (10, 20, 30, 255))
    assert repeat_preview(tile).size == (16 * 3 * 8, 12 * 3 * 8)
    assert repeat_preview(tile, n=2, scale=1).size == (32, 24)
    with pytest.raises(ValueError):
        repeat_preview(tile, n=0)


# ---------------------------------------------------------------------------------------- seam check
def texture(n: int = 16, period: int = 16, seed: int = 0) -> np.ndarray:
    """A smooth colour texture, periodic with `period` px (a sum of a few low-frequency waves)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * (2 * np.pi / period)
    out = np.zeros((n, n, 3))
    for _ in range(4):
        fx, fy = rng.integers(0, 3, 2)
        out += rng.uniform(20, 40, 3) * np.sin(fx * x + fy * y + rng.uniform(0, 6.3))[..., None]
    return np.clip(128 + out, 0, 255).astype(np.uint8)


def quantise(a: np.ndarray, levels: int = 6) -> np.ndarray:
    step = 256 // levels
    return (a // step * step + step // 2).astype(np.uint8)


def test_periodic_textures_pass_and_a_seam_on_the_wrap_fails():
    seeds = range(40)
    periodic = [texture(seed=s) for s in seeds]
    cut = [texture(n=32, period=32, seed=s)[:16, :16] for s in seeds]  # a quarter: its edges don't meet
    rate = lambda tiles: np.mean([seam_report(t).passes for t in tiles])  # noqa: E731
    assert rate(periodic) >= 0.9 and rate([quantise(t) for t in periodic]) >= 0.9
    assert rate([np.roll(t, (5, 11), (0, 1)) for t in periodic]) >= 0.9  # rolling moves no seam
    assert rate(cut) <= 0.1 and rate([quantise(t) for t in cut]) <= 0.2
    assert np.median([seam_report(t).ratio for t in cut]) > 1.5


def test_seam_report_edge_cases():
    flat = np.full((8, 8, 3), 90, np.uint8)
    assert seam_report(flat) == seam_report(Image.fromarray(flat))
    assert seam_report(flat).passes and seam_report(flat).ratio == 0.0
    ramp = np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], 16, 0).repeat(3, 2)
    r = seam_report(ramp)  # a lighting gradient: smooth inside, one big jump where it wraps
    assert not r.passes and r.ratio > 10
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[:, ::2] = 255
    assert seam_report(stripes).passes  # every step the same size, the wrap included
    with pytest.raises(ValueError):
        seam_report(np.zeros((2, 8, 3), np.uint8))


# ---------------------------------------------------------------------------------------- spec
def test_tile_spec_round_trip_and_validation():
    spec = TileSpec(count=2, tile_size=(32, 16), seamless=False, colors=None)
    assert TileSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["tile_size"] == [32, 16]
    for kw, msg in [
        ({"count": 0}, "count"),
        ({"count": 17}, "count"),
        ({"count": 2.0}, "count"),
        ({"tile_size": (3, 16)}, "tile_size"),
        ({"tile_size": (16, 257)}, "tile_size"),
        ({"tile_size": "big"}, "tile_size"),
        ({"seamless": "yes"}, "seamless"),
        ({"colors": 1}, "colors"),
        ({"palette": "no-such-palette"}, "palette"),
    ]:
        with pytest.raises(ValueError, match=msg):
            TileSpec(**kw)
    with pytest.raises(ValueError, match="unknown"):
        TileSpec.from_dict({"count": 2, "size": 3})
    with pytest.raises(ValueError, match="larger than the render"):
        generate_tileset(None, job(), TileSpec(tile_size=(128, 16)))
