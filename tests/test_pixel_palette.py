"""Palettes: named, files, automatic / fixed count, shared across images, dithering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.pixel import PixelParams, apply_palette, build_palette, load_palette, pixelate, shared_palette
from pipelines.pixel.palette import NAMED_PALETTES, palette_names
from tests.pixel_synth import make_sprite, render


def test_named_palettes_have_the_published_values() -> None:
    assert len(load_palette("pico-8")) == 16
    assert tuple(load_palette("PICO8")[8]) == (0xFF, 0x00, 0x4D)
    gb = load_palette("gameboy")
    assert gb.shape == (4, 3) and tuple(gb[0]) == (0x0F, 0x38, 0x0F)
    assert len(load_palette("endesga-32")) == 32 and len(load_palette("dawnbringer_32")) == 32
    assert len(load_palette("dawnbringer-16")) == 16 and tuple(load_palette("db16")[15]) == (0xDE, 0xEE, 0xD6)
    for name in palette_names():
        pal = NAMED_PALETTES[name]
        assert len(np.unique(pal, axis=0)) == len(pal), name
    with pytest.raises(ValueError, match="unknown palette"):
        load_palette("no-such-palette")


def test_palette_files(tmp_path: Path) -> None:
    (tmp_path / "a.hex").write_text("ff0000\n#00ff00\n\n0000FF\n")
    (tmp_path / "b.gpl").write_text("GIMP Palette\nName: test\nColumns: 4\n#\n255   0   0\tRed\n  0 255   0 Green\n"
                                    "0 0 255\n")
    (tmp_path / "c.pal").write_text("JASC-PAL\r\n0100\r\n3\r\n255 0 0\r\n0 255 0\r\n0 0 255\r\n")
    want = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    for name in ("a.hex", "b.gpl", "c.pal"):
        assert np.array_equal(load_palette(str(tmp_path / name)), want), name
    (tmp_path / "bad.pal").write_text("JASC-PAL\n0100\n3\n255 0 0\n")
    with pytest.raises(ValueError, match="says 3 colours"):
        load_palette(str(tmp_path / "bad.pal"))
    (tmp_path / "bad.hex").write_text("ff0000\nzzzzzz\n")
    with pytest.raises(ValueError, match="line 2"):
        load_palette(str(tmp_path / "bad.hex"))


def near_palette_sprite(entries: list[int], pal: np.ndarray, seed: int, nudge: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A sprite whose colours are the palette entries `entries`, each nudged a few levels off, and the same sprite
    in the exact entries: the answer a nearest-colour mapping must give, known without computing any distance."""
    s = make_sprite(16, 16, len(entries), seed=seed)
    opaque = s[..., 3] == 255
    cols = [tuple(c) for c in np.unique(s[opaque][:, :3], axis=0)]
    assert len(cols) == len(entries)
    rng = np.random.default_rng(seed)
    nudged, exact = s.copy(), s.copy()
    for c, k in zip(cols, entries, strict=True):
        where = opaque & np.all(s[..., :3] == c, axis=-1)
        exact[where, :3] = pal[k]
        nudged[where, :3] = np.clip(pal[k].astype(int) + rng.integers(-nudge, nudge + 1, 3), 0, 255)
    return nudged, exact


def test_named_palette_mapping_is_exact() -> None:
    pico = load_palette("pico-8")
    s, want = near_palette_sprite([0, 8, 11, 12, 7], pico, seed=1)  # black, red, green, blue, white, nudged
    res = pixelate(render(s, cell=24, jpeg=85, seed=1), PixelParams(palette="pico-8"))
    out = np.asarray(res.image)
    used = {tuple(c) for c in out[out[..., 3] == 255][:, :3]}
    assert used and used <= {tuple(c) for c in pico}
    # each cell got the pico-8 colour its true colour was nudged from
    assert np.array_equal(out, want)


def test_palette_from_file_used_by_params(tmp_path: Path) -> None:
    (tmp_path / "two.hex").write_text("000000\nffffff\n")
    s = make_sprite(12, 12, 3, seed=2)
    out = np.asarray(pixelate(render(s, cell=20), PixelParams(palette=str(tmp_path / "two.hex"))).image)
    assert {tuple(c) for c in out[out[..., 3] == 255][:, :3]} <= {(0, 0, 0), (255, 255, 255)}


def test_build_palette_auto_and_fixed_snap_to_real_colours() -> None:
    rng = np.random.default_rng(0)
    base = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [240, 240, 240]], np.uint8)
    cols = np.concatenate([np.clip(b.astype(int) + rng.integers(-3, 4, (50, 3)), 0, 255) for b in base]).astype(np.uint8)
    auto = build_palette(cols)
    assert len(auto) == 4
    real = {tuple(c) for c in cols}
    assert all(tuple(c) in real for c in auto)
    two = build_palette(cols, n_colors=2)
    assert len(two) == 2 and all(tuple(c) in real for c in two)
    assert np.array_equal(build_palette(cols), auto)  # deterministic


def test_fixed_colour_count_in_pixelate() -> None:
    s = make_sprite(16, 16, 6, seed=3)
    res = pixelate(render(s, cell=22, seed=3), PixelParams(colors=3))
    out = np.asarray(res.image)
    assert len(np.unique(out[out[..., 3] == 255][:, :3], axis=0)) <= 3


def test_shared_palette_across_images() -> None:
    sprites = [make_sprite(12, 12, 4, seed=s) for s in (1, 2)]
    imgs = [render(sp, cell=25, seed=i) for i, sp in enumerate(sprites)]
    pal = shared_palette(imgs)
    all_truth = {tuple(c) for sp in sprites for c in sp[sp[..., 3] == 255][:, :3]}
    assert {tuple(c) for c in pal} == all_truth
    for im, sp in zip(imgs, sprites, strict=True):
        res = pixelate(im, palette=pal)
        out = np.asarray(res.image)
        assert np.array_equal(out, sp)
        assert {tuple(c) for c in out[out[..., 3] == 255][:, :3]} <= {tuple(c) for c in pal}


def test_bayer_dither_only_when_asked() -> None:
    # a smooth gradient native image mapped to a 2-colour palette
    g = np.linspace(0, 255, 32).astype(np.uint8)
    img = np.zeros((16, 32, 4), np.uint8)
    img[..., :3] = g[None, :, None]
    img[..., 3] = 255
    pal = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    plain = apply_palette(img, pal)
    dith = apply_palette(img, pal, "bayer")
    # without dithering each column is a single colour, with Bayer the mid tones mix
    assert all(len(np.unique(plain[:, x, 0])) == 1 for x in range(32))
    assert sum(len(np.unique(dith[:, x, 0])) > 1 for x in range(32)) >= 8
    with pytest.raises(ValueError, match="dither"):
        apply_palette(img, pal, "floyd")
    # the engine: default output has no dither pattern on flat areas
    s, want = near_palette_sprite([0, 1, 2, 3], load_palette("gameboy"), seed=6, nudge=2)
    out = np.asarray(pixelate(render(s, cell=20), PixelParams(palette="gameboy")).image)
    assert np.array_equal(out, want)


# the 4x4 Bayer matrix as published (Bayer 1973), thresholds (m + 0.5) / 16 - 0.5
BAYER = (np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]) + 0.5) / 16 - 0.5


def test_engine_dithers_with_the_bayer_pattern(tmp_path: Path) -> None:
    """dither="bayer" in the engine: flat grey bands against a black/white palette give Bayer's ordered pattern,
    computed here by hand: grey g plus its threshold times the palette spacing (black to white: 255*sqrt(3)) is
    white when it is lighter than mid-grey in OKLab (L = 0.5, i.e. linear light 0.125 for a grey)."""
    (tmp_path / "bw.hex").write_text("000000\nffffff\n")
    levels = [40, 70, 100, 130, 170, 210]
    img = np.zeros((8, 4 * len(levels), 4), np.uint8)
    img[..., 3] = 255
    for i, g in enumerate(levels):
        img[:, 4 * i : 4 * i + 4, :3] = g
    params = dict(size=(img.shape[1], 8), size_mode="exact", palette=str(tmp_path / "bw.hex"), background="keep",
                  remove_strays=False)
    out = np.asarray(pixelate(img, PixelParams(**params, dither="bayer")).image)
    yy, xx = np.mgrid[0:8, 0 : img.shape[1]]
    v = np.clip(np.round(img[..., 0] + BAYER[yy % 4, xx % 4] * 255 * np.sqrt(3)), 0, 255) / 255
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    want = np.where(linear > 0.125, 255, 0)
    assert np.all(out[..., :3] == want[..., None]) and np.all(out[..., 3] == 255)
    white = [float(np.mean(out[:, 4 * i : 4 * i + 4, 0] == 255)) for i in range(len(levels))]
    assert white == sorted(white) and white[1] > 0 and white[-2] < 1  # mid tones mix, lighter = more white
    plain = np.asarray(pixelate(img, PixelParams(**params)).image)  # undithered: one colour per band
    assert all(len(np.unique(plain[:, 4 * i : 4 * i + 4, 0])) == 1 for i in range(len(levels)))
    # the nearest colour is OKLab's: grey 100 is lighter than OKLab's mid-grey (sRGB 99), so it becomes white,
    # though in RGB it is nearer black
    assert [int(plain[0, 4 * i, 0]) for i in range(len(levels))] == [0, 0, 255, 255, 255, 255]
