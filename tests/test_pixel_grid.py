"""Grid recovery on synthetic fake pixel art with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.pixel import PixelParams, pixelate
from pipelines.pixel.grid import detect_grid, is_native
from tests.pixel_synth import make_sprite, render


def _match(out: np.ndarray, truth: np.ndarray, tol: int = 0) -> float:
    """Share of truth pixels reproduced: same alpha class and RGB within tol (opaque)."""
    assert out.shape == truth.shape
    to, oo = truth[..., 3] >= 128, out[..., 3] >= 128
    close = np.abs(out[..., :3].astype(int) - truth[..., :3].astype(int)).max(-1) <= tol
    return float(np.mean(np.where(to, oo & close, ~oo)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cell", [16, 32, 45])
def test_integer_scale_exact(seed: int, cell: int) -> None:
    s = make_sprite(16, 14, 5, seed)
    res = pixelate(render(s, cell=cell, seed=seed))
    out = np.asarray(res.image)
    assert out.shape == s.shape
    assert _match(out, s) == 1.0
    assert res.cell == pytest.approx((cell, cell), abs=0.05)


@pytest.mark.parametrize("cell", [(27.3, 31.7), (19.4, 19.4), (52.6, 47.1)])
def test_non_integer_non_square_cells_with_offset(cell: tuple[float, float]) -> None:
    s = make_sprite(18, 15, 6, seed=3)
    im = render(s, cell=cell, offset=(0.4 * cell[0], 0.3 * cell[1]), pad=3, seed=3)
    res = pixelate(im)
    out = np.asarray(res.image)
    assert out.shape == s.shape
    assert _match(out, s) == 1.0
    assert res.cell[0] == pytest.approx(cell[0], rel=0.01)
    assert res.cell[1] == pytest.approx(cell[1], rel=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_drift_cells_of_varying_width(seed: int) -> None:
    s = make_sprite(16, 16, 5, seed)
    im = render(s, cell=30.0, drift=0.05, seed=seed)
    out = np.asarray(pixelate(im).image)
    assert out.shape == s.shape
    assert _match(out, s) >= 0.98


@pytest.mark.parametrize("seed", [0, 1])
def test_blur_jpeg_noise_smooth(seed: int) -> None:
    s = make_sprite(16, 16, 5, seed)
    im = render(s, cell=24.6, blur=1.5, noise=4.0, jpeg=75, smooth=True, seed=seed)
    out = np.asarray(pixelate(im).image)
    assert out.shape == s.shape
    assert _match(out, s, tol=24) >= 0.97


def test_small_cells_region() -> None:
    s = make_sprite(64, 48, 6, seed=5, opaque=True)
    im = render(s, cell=(9.3, 9.3), blur=1.0, jpeg=85, seed=5)
    out = np.asarray(pixelate(im).image)
    assert out.shape == s.shape
    assert _match(out, s, tol=24) >= 0.97


def test_transparent_input_keeps_transparency() -> None:
    s = make_sprite(12, 12, 4, seed=7)
    im = render(s, cell=(33.3, 33.3), background=None, smooth=True, seed=7)
    assert im.shape[2] == 4
    out = np.asarray(pixelate(im).image)
    assert out.shape == s.shape
    assert np.array_equal(out[..., 3] >= 128, s[..., 3] >= 128)
    assert set(np.unique(out[..., 3])) <= {0, 255}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identity_on_clean_native_sprite(seed: int) -> None:
    s = make_sprite(24, 20, 7, seed)
    assert is_native(s)
    res = pixelate(s)
    assert np.array_equal(np.asarray(res.image), s)
    assert res.native_input and res.cell == (1.0, 1.0)


def test_identity_on_opaque_native_tile() -> None:
    t = make_sprite(16, 16, 5, seed=4, opaque=True)
    # a native tile with single-pixel detail (dither-like speckle)
    t[::2, ::3, :3] = t[::2, ::3, :3] // 2
    res = pixelate(t)
    assert np.array_equal(np.asarray(res.image), t)


def test_upscaled_clean_image_is_not_native() -> None:
    s = make_sprite(12, 12, 4, seed=1)
    up = np.kron(s, np.ones((4, 4, 1), np.uint8))
    assert not is_native(up)
    assert np.asarray(pixelate(up).image).shape == s.shape


def test_size_hint_and_exact() -> None:
    s = make_sprite(20, 16, 5, seed=2)
    im = render(s, cell=40.0, seed=2)
    # a hint close to the truth settles on the truth
    assert pixelate(im, PixelParams(size=(20, 16))).image.size == (20, 16)
    # exact forces the count even when it is not what the image shows
    g = detect_grid(np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]), size=(10, 8), exact=True)
    assert g.size == (10, 8)
    res = pixelate(im, PixelParams(size=(25, 20), size_mode="exact"))
    assert res.image.size == (25, 20)


def test_huge_render_is_detected_on_a_reduced_copy() -> None:
    s = make_sprite(26, 24, 5, seed=9)
    im = render(s, cell=(80.7, 80.7), jpeg=90, seed=9)  # ~2100 px: reduced 2x for detection
    assert max(im.shape) > 2048
    res = pixelate(im)
    out = np.asarray(res.image)
    assert out.shape == s.shape
    assert _match(out, s, tol=24) == 1.0
    assert res.cell[0] == pytest.approx(80.7, rel=0.005)


def test_images_without_edges_do_not_invent_a_grid() -> None:
    solid = np.full((120, 90, 3), 70, np.uint8)
    assert pixelate(solid).image.size == (1, 1)
    assert pixelate(solid, PixelParams(size=(16, 12))).image.size == (16, 12)
    grad = np.dstack([np.tile(np.linspace(0, 255, 200), (100, 1))] * 3).astype(np.uint8)
    assert pixelate(grad, PixelParams(size=(10, 5))).image.size == (10, 5)
