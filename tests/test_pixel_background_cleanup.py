"""Transparency decisions and clean-up passes."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.pixel import PixelParams, pixelate
from pipelines.pixel.background import detect_background, handle_background, remove_background
from pipelines.pixel.cleanup import add_outline, crop_to_content, pad_to_canvas, remove_strays
from tests.pixel_synth import make_sprite, render


def _ring_sprite() -> np.ndarray:
    """A 12x12 sprite on white: a red ring with a white hole (uneven widths, so that the
    art has no 2x or 3x structure a grid could mistake for bigger cells)."""
    a = np.zeros((12, 12, 4), np.uint8)
    a[...] = (255, 255, 255, 255)
    a[1:10, 2:11] = (200, 20, 20, 255)
    a[4:6, 4:7] = (255, 255, 255, 255)
    for y, x in ((1, 2), (9, 10), (3, 8), (7, 3), (2, 5)):  # some detail inside the ring
        a[y, x] = (60, 10, 10, 255)
    return a


def test_flat_background_becomes_transparent() -> None:
    s = make_sprite(16, 16, 5, seed=1)
    res = pixelate(render(s, cell=25, background=(40, 160, 90), noise=2.0, jpeg=85, seed=1))
    out = np.asarray(res.image)
    assert np.array_equal(out[..., 3] == 255, s[..., 3] == 255)
    assert set(np.unique(out[..., 3])) <= {0, 255}
    # the colour made transparent is the one the render was drawn on (within the noise and JPEG's error)
    assert res.background is not None and np.abs(np.subtract(res.background, (40, 160, 90))).max() <= 4


def test_opaque_tile_stays_opaque() -> None:
    t = make_sprite(16, 16, 5, seed=2, opaque=True)
    res = pixelate(render(t, cell=30, jpeg=85, seed=2))
    out = np.asarray(res.image)
    assert out.shape == t.shape
    assert np.all(out[..., 3] == 255)
    assert res.background is None


def test_keep_holes_vs_clear_enclosed() -> None:
    a = _ring_sprite()
    kept, col = handle_background(a, "auto", keep_holes=True)
    assert col == (255, 255, 255)
    assert np.all(kept[4:6, 4:7, 3] == 255)  # the hole is not connected to the border
    assert np.all(kept[0, :, 3] == 0)
    cleared, _ = handle_background(a, "auto", keep_holes=False)
    assert np.all(cleared[4:6, 4:7, 3] == 0)
    assert np.all(cleared[1:4, 2:11, 3] == 255)
    # the same through pixelate
    out = np.asarray(pixelate(np.kron(a, np.ones((20, 20, 1), np.uint8)), PixelParams(keep_holes=False)).image)
    assert out.shape == a.shape and np.all(out[4:6, 4:7, 3] == 0) and np.all(out[1:4, 2:11, 3] == 255)


def test_background_keep_and_hex() -> None:
    a = _ring_sprite()
    kept, col = handle_background(a, "keep")
    assert col is None and np.array_equal(kept, a)
    red_gone, col = handle_background(a, "#c81414")  # the ring's colour, not connected to border
    assert col == (200, 20, 20) and np.all(red_gone[1:10, 2:11, 3][red_gone[1:10, 2:11, 0] == 200] == 255)
    red_all = remove_background(a, (200, 20, 20), keep_holes=False)
    assert not np.any((red_all[..., 3] == 255) & (red_all[..., 0] == 200))


def test_auto_detects_no_background_on_varied_border() -> None:
    t = make_sprite(16, 16, 6, seed=8, opaque=True)
    assert detect_background(t) is None


def test_remove_strays() -> None:
    a = np.zeros((7, 7, 4), np.uint8)
    a[...] = (100, 100, 100, 255)
    a[3, 3] = (104, 100, 98, 255)  # a split shade: noise
    a[1, 1] = (250, 20, 20, 255)  # an "eye": a deliberate, clearly different pixel
    out = remove_strays(a)
    assert tuple(out[3, 3]) == (100, 100, 100, 255)
    assert tuple(out[1, 1]) == (250, 20, 20, 255)
    b = np.zeros((7, 7, 4), np.uint8)
    b[3, 3] = (10, 200, 10, 255)  # floating speck
    b[0:2, 5:7] = (10, 200, 10, 255)  # a 2x2 block touching the edge is kept
    outb = remove_strays(b)
    assert outb[3, 3, 3] == 0 and np.all(outb[0:2, 5:7, 3] == 255)


def test_outline_crop_canvas() -> None:
    a = np.zeros((10, 10, 4), np.uint8)
    a[3:6, 4:7] = (200, 100, 50, 255)
    o = add_outline(a, "#000000")
    ring = (o[..., 3] == 255) & (o[..., 0] == 0)
    assert ring.sum() == 12  # 4-neighbours of a 3x3 block
    assert tuple(o[2, 5]) == (0, 0, 0, 255) and o[2, 3, 3] == 0  # no diagonal corners
    c = crop_to_content(a)
    assert c.shape == (3, 3, 4)
    assert crop_to_content(a, padding=2).shape == (7, 7, 4)
    p = pad_to_canvas(c, (8, 6))
    assert p.shape == (6, 8, 4) and p[..., 3].sum() == 9 * 255
    with pytest.raises(ValueError, match="does not fit"):
        pad_to_canvas(c, (2, 2))
    s = make_sprite(14, 12, 4, seed=3, margin=3)
    res = pixelate(render(s, cell=24, seed=3), PixelParams(crop=True, canvas=(16, 16), outline="#101010"))
    out = np.asarray(res.image)
    assert out.shape == (16, 16, 4)
    assert (out[..., 3] == 255).sum() > (s[..., 3] == 255).sum()
