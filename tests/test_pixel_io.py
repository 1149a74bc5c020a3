"""Loading and saving: bad inputs fail clearly, unusual formats work, saves are atomic."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.pixel import PixelImageError, PixelParams, load_frames, load_rgba, pixelate, pixelate_file
from tests.pixel_synth import make_sprite, render


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose IHDR claims w x h but carries almost no data (no huge allocation)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, I am text")
    with pytest.raises(PixelImageError, match="not an image"):
        load_rgba(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PixelImageError, match="does not exist"):
        load_rgba(tmp_path / "nope.png")


def test_truncated_png(tmp_path: Path) -> None:
    src = tmp_path / "full.png"
    Image.fromarray(render(make_sprite(12, 12, 4, 1), cell=20)).save(src)
    data = src.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(PixelImageError, match="truncated|damaged"):
        load_rgba(bad)


@pytest.mark.parametrize("side", [30000, 9000])
def test_decompression_bomb_refused_from_header(tmp_path: Path, side: int) -> None:
    p = tmp_path / "bomb.png"
    _png_header_only(p, side, side)
    assert p.stat().st_size < 1000
    with pytest.raises(PixelImageError, match="megapixels"):
        load_rgba(p)


def test_too_small_and_fully_transparent() -> None:
    with pytest.raises(PixelImageError, match="1x1"):
        load_rgba(np.zeros((1, 1, 4), np.uint8) + 255)
    with pytest.raises(PixelImageError, match="fully transparent"):
        load_rgba(np.zeros((16, 16, 4), np.uint8))


def test_sixteen_bit_png(tmp_path: Path) -> None:
    s = make_sprite(10, 10, 4, seed=2, opaque=True)
    grey = (s[..., 0].astype(np.uint16) * 257)
    p = tmp_path / "g16.png"
    Image.fromarray(grey).save(p)  # I;16 greyscale
    assert Image.open(p).mode.startswith("I")
    a = load_rgba(p)
    assert a.dtype == np.uint8 and a.shape == (10, 10, 4)
    assert np.array_equal(a[..., 0], s[..., 0])
    assert np.array_equal(np.asarray(pixelate(p).image)[..., 0], s[..., 0])


def test_palette_mode_with_transparency_and_greyscale(tmp_path: Path) -> None:
    s = make_sprite(16, 16, 5, seed=4)
    im = Image.fromarray(s, "RGBA").quantize(colors=8, method=Image.Quantize.FASTOCTREE)
    p = tmp_path / "pal.png"
    Image.fromarray(s, "RGBA").convert("P", palette=Image.Palette.ADAPTIVE).save(p)
    im.save(tmp_path / "q.png")
    for path in (p, tmp_path / "q.png"):
        assert Image.open(path).mode == "P"
        a = load_rgba(path)
        assert a.shape == (16, 16, 4)
    # LA keeps its alpha
    la = Image.fromarray(np.dstack([s[..., 0], s[..., 3]]), "LA")
    la.save(tmp_path / "la.png")
    a = load_rgba(tmp_path / "la.png")
    assert np.array_equal(a[..., 3], s[..., 3])
    Image.fromarray(s[..., 1]).save(tmp_path / "l.png")
    assert load_rgba(tmp_path / "l.png").shape == (16, 16, 4)
    res = pixelate(tmp_path / "la.png")
    assert res.image.size == (16, 16)


def test_animated_gif_frames(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 120, 240)]
    frames[1].paste((0, 0, 255), (0, 0, 4, 4))
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    got = load_frames(p)
    assert len(got) == 3
    assert [int(f[7, 7, 0]) for f in got] == [10, 120, 240]
    first = load_rgba(p)  # the single-image loader takes the first frame
    assert np.array_equal(first, got[0])


def test_pixelate_file_leaves_no_partial_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dst = tmp_path / "out" / "sprite.png"
    with pytest.raises(PixelImageError):
        pixelate_file(bad, dst, preview_scale=4)
    assert not dst.exists() and not dst.with_name("sprite.preview.png").exists()
    # a failure after recovery (sprite larger than the canvas) leaves nothing either
    good = tmp_path / "good.png"
    Image.fromarray(render(make_sprite(16, 16, 4, 0), cell=20)).save(good)
    with pytest.raises(ValueError, match="canvas"):
        pixelate_file(good, dst, PixelParams(canvas=(8, 8)))
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.endswith(".tmp")] if dst.parent.exists() else True


def test_pixelate_file_writes_output_and_preview(tmp_path: Path) -> None:
    s = make_sprite(16, 12, 4, 0)
    src = tmp_path / "in.jpg"
    Image.fromarray(render(s, cell=25.5, jpeg=90)).save(src, quality=90)
    dst = tmp_path / "o" / "x.png"
    res = pixelate_file(src, dst, preview_scale=3)
    assert Image.open(dst).size == (16, 12)
    assert Image.open(tmp_path / "o" / "x.preview.png").size == (48, 36)
    assert res.image.mode == "RGBA"
    # overwriting an existing output replaces it whole
    res2 = pixelate_file(src, dst)
    assert Image.open(dst).size == res2.image.size


def test_sixteen_bit_rgba_png(tmp_path: Path) -> None:
    """A hand-written 16-bit RGBA PNG (colour type 6, depth 16) loads and converts."""
    s = make_sprite(10, 9, 4, seed=5)
    h, w = s.shape[:2]
    px16 = s.astype(">u2") * 257
    raw = b"".join(b"\0" + px16[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    p = tmp_path / "rgba16.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    a = load_rgba(p)
    assert np.array_equal(a, s)
    assert np.array_equal(np.asarray(pixelate(p).image), s)


def test_pixelate_frames_shares_grid_and_palette(tmp_path: Path) -> None:
    from pipelines.pixel import pixelate_frames

    s = make_sprite(14, 12, 4, seed=3)
    s2 = s.copy()
    s2[s2[..., 3] == 255] = np.roll(s2[s2[..., 3] == 255], 1, axis=0)  # same shape, shuffled colours
    frames = [Image.fromarray(render(sp, cell=21.5, seed=i)) for i, sp in enumerate((s, s2))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    res = pixelate_frames(p)
    assert len(res) == 2
    assert all(r.image.size == (14, 12) for r in res)
    assert res[0].cell == res[1].cell
    assert np.array_equal(np.asarray(res[0].image)[..., 3], s[..., 3])
    # one palette for all frames: a body colour that flickers between frames (two reds a render drew) becomes
    # one red in every frame, and the frames use the same 3 colours; frame by frame they would keep two reds
    def frame(body: tuple[int, int, int]) -> np.ndarray:
        a = np.zeros((12, 12, 4), np.uint8)
        a[2:10, 2:10] = (20, 20, 20, 255)
        a[3:9, 3:9, :3] = body
        a[4:6, 6:8, :3] = (40, 60, 220)
        return a

    flicker = [render(frame(body), cell=20, seed=i) for i, body in enumerate([(200, 30, 30), (222, 52, 40)])]
    three = PixelParams(colors=3)
    alone = [np.asarray(pixelate(f, three).image) for f in flicker]
    assert tuple(alone[0][5, 4, :3]) != tuple(alone[1][5, 4, :3])  # the flicker is real frame by frame
    shared = [np.asarray(r.image) for r in pixelate_frames(flicker, three)]
    assert tuple(shared[0][5, 4, :3]) == tuple(shared[1][5, 4, :3]) in {(200, 30, 30), (222, 52, 40)}
    colours = [{tuple(c) for c in out[out[..., 3] == 255][:, :3]} for out in shared]
    assert colours[0] == colours[1] and len(colours[0]) == 3
    assert np.array_equal(shared[0][..., 3], frame((0, 0, 0))[..., 3])
