"""The dataset feature on REAL pixel art: pyxel's MIT-licensed example sprites (pyxel is a test dependency,
its wheel ships `pyxel/examples/assets/*.png`), plus planted problems and hostile input.

Sprites are cut from pyxel's `urban_rpg.png` sheet (16x16 cells, magenta made transparent) and its
`cat_16x16.png`, enlarged by integer nearest factors as a user's art would be. Nothing is downloaded at
run time; without pyxel installed the module is skipped.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from studio.features.dataset_library import statistics_figures
from training.captioning import StructuredCaptioner
from training.dataset import (
    NEAR_DUPLICATE_BITS,
    Dataset,
    auto_caption,
    hamming,
    phash,
    prepare,
    prepare_image,
    tag_frequencies,
)


def _assets() -> Path:
    try:
        root = importlib.resources.files("pyxel") / "examples" / "assets"
    except ModuleNotFoundError:
        pytest.skip("pyxel (a test dependency: pip install -e '.[test]') is not installed", allow_module_level=True)
    path = Path(str(root))
    if not (path / "urban_rpg.png").is_file():
        pytest.skip(f"pyxel's example assets are not in {path}", allow_module_level=True)
    return path


ASSETS = _assets()
TRIGGER = "pyx"


def rgba_of(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA")).copy()


def keyed(a: np.ndarray, key=(255, 0, 255)) -> np.ndarray:
    """pyxel's sheets use magenta as the transparent colour: make it real transparency (RGB 0)."""
    a = a.copy()
    a[(a[..., :3] == key).all(-1)] = 0
    return a


def upscaled(a: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(a, k, 0), k, 1)


def save(path: Path, a: np.ndarray, fmt: str = "PNG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(a)).save(path, fmt, **kw)
    return path


def pick_sprites(n: int = 8) -> list[tuple[str, np.ndarray]]:
    """The cat plus 16x16 cells of urban_rpg with at least 6 colours and 30 % opaque, chosen greedily so
    that no two look alike (native phash over 2x the near-duplicate threshold apart)."""
    chosen = [("cat", rgba_of(ASSETS / "cat_16x16.png"))]
    sheet = keyed(rgba_of(ASSETS / "urban_rpg.png"))
    h, w = sheet.shape[:2]
    for y in range(0, h - 15, 16):
        for x in range(0, w - 15, 16):
            c = np.ascontiguousarray(sheet[y:y + 16, x:x + 16])
            vis = c[..., 3] > 0
            if vis.mean() < 0.3 or len(np.unique(c[vis][:, :3], axis=0)) < 6:
                continue
            if all(hamming(phash(c), phash(o)) > 2 * NEAR_DUPLICATE_BITS for _, o in chosen):
                chosen.append((f"urban_x{x}_y{y}", c))
            if len(chosen) == n:
                return chosen
    return chosen


SPRITES = pick_sprites()


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    """One imported dataset: clean sprites (a_*) + planted problems (z_*), imported from a folder."""
    base = tmp_path_factory.mktemp("real")
    src = base / "art"
    clean = {}
    for i, (name, a) in enumerate(SPRITES):
        k = (4, 8)[i % 2]
        save(src / f"a{i}_{name}_x{k}.png", upscaled(a, k))
        clean[f"a{i}_{name}_x{k}.png"] = (a, k)
    rng = np.random.default_rng(7)
    blurred = Image.fromarray(upscaled(SPRITES[1][1], 8)).convert("RGB").filter(ImageFilter.GaussianBlur(1.5))
    blurred.save(src / "z_blurred.jpg", "JPEG", quality=60)
    save(src / "z_exact_copy.png", upscaled(SPRITES[0][1], 4))  # same pixels as a0 (other name)
    near = SPRITES[2][1].copy()
    near[7, 7, :3] = 255 - near[7, 7, :3]
    near[8, 3, :3] = 255 - near[8, 3, :3]
    save(src / "z_near_pixels.png", upscaled(near, 8))  # a2 with two pixels changed
    save(src / "z_near_scale.png", upscaled(SPRITES[3][1], 6))  # a3 at another integer scale
    save(src / "z_tiny.png", rng.integers(0, 256, (4, 4, 4), dtype=np.uint8) | np.uint8(0), "PNG")
    yy, xx = np.mgrid[0:256, 0:256]
    photo = np.stack([xx, yy, (xx + yy) // 2], -1) + rng.normal(0, 6, (256, 256, 3))
    save(src / "z_photo.png", np.clip(photo, 0, 255).astype(np.uint8))
    ds = Dataset.create(base / "sets", "pyxel_real", trigger=TRIGGER, class_word="sprite")
    t = time.perf_counter()
    report = ds.import_folder(src)
    return {"ds": ds, "report": report, "clean": clean, "seconds": time.perf_counter() - t, "base": base}


def by_source(ds: Dataset) -> dict:
    return {r.source: r for r in ds.records}


# ----------------------------------------------------------------------------------------
# 1. checks: every planted problem found, nothing flagged on the clean sprites
# ----------------------------------------------------------------------------------------
def test_real_sprites_are_distinct_and_colourful() -> None:
    assert len(SPRITES) == 8
    assert len({a.tobytes() for _, a in SPRITES}) == 8
    assert all(a.shape == (16, 16, 4) for _, a in SPRITES)


def test_clean_real_sprites_have_no_problems_and_exact_natives(real) -> None:
    ds, clean = real["ds"], real["clean"]
    recs = by_source(ds)
    for src, (sprite, k) in clean.items():
        r = recs[src]
        assert r.problems == (), (src, r.problems)
        assert r.native_size == (16, 16) and r.native_scale == k and (r.width, r.height) == (16 * k, 16 * k)
        # the stored native sprite IS the pyxel sprite, bit for bit
        assert np.array_equal(np.asarray(ds.native_image(r.file)), sprite), src
    assert real["seconds"] < 20


def test_every_planted_problem_is_found(real) -> None:
    ds, report = real["ds"], real["report"]
    recs = by_source(ds)
    a = sorted(real["clean"])
    expected = {
        "z_blurred.jpg": {"jpeg-source"},
        "z_near_pixels.png": {"near-duplicate"},
        "z_near_scale.png": {"near-duplicate"},
        "z_tiny.png": {"too-small"},
        "z_photo.png": {"not-pixel-art"},
    }
    for src, codes in expected.items():
        assert codes <= set(recs[src].problem_codes), (src, recs[src].problems)
    near_pixels = next(p for p in recs["z_near_pixels.png"].problems if p.startswith("near-duplicate"))
    assert recs[a[2]].file in near_pixels
    near_scale = next(p for p in recs["z_near_scale.png"].problems if p.startswith("near-duplicate"))
    assert recs[a[3]].file in near_scale
    # the exact copy is refused at import, naming the original, and reported as an exact group
    assert "z_exact_copy.png" not in recs
    skipped = {s.name: s.reason for s in report.skipped}
    assert skipped["z_exact_copy.png"] == f"exact duplicate of {recs[a[0]].file}"
    assert any(g.kind == "exact" and g.files == (recs[a[0]].file, "z_exact_copy.png") for g in report.duplicates)
    near_groups = [set(g.files) for g in report.duplicates if g.kind == "near"]
    assert {recs[a[2]].file, recs["z_near_pixels.png"].file} in near_groups
    assert {recs[a[3]].file, recs["z_near_scale.png"].file} in near_groups
    assert len(ds.records) == len(a) + 5 and len(report.skipped) == 1


# ----------------------------------------------------------------------------------------
# 2. prepared images are exact integer nearest upscales of the native sprite
# ----------------------------------------------------------------------------------------
def test_prepared_images_downscale_to_the_native_sprite_bit_for_bit(real, tmp_path) -> None:
    ds, clean = real["ds"], real["clean"]
    recs = by_source(ds)
    for src in clean:
        ds.set_include(recs[src].file, True)
    for r in ds.records:
        if r.source not in clean:
            ds.set_include(r.file, False)
    rep = prepare(ds, tmp_path / "out", background="transparent")
    assert len(rep.items) == len(clean) and not rep.skipped
    for item in rep.items:
        r = ds.record(item.file)
        sprite = clean[r.source][0]
        p = prepare_image(ds.native_image(r.file), background="transparent")
        written = rgba_of(rep.folder / item.image)
        assert np.array_equal(written, np.asarray(p.image)) and p.scale == item.scale >= 2
        (ox, oy), k = p.offset, p.scale
        region = written[oy:oy + 16 * k, ox:ox + 16 * k]
        assert np.array_equal(region[::k, ::k], sprite), r.source  # every k-th pixel = the sprite
        assert np.array_equal(upscaled(sprite, k), region)  # and every k x k block is one colour
        back = Image.fromarray(region).resize((16, 16), Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(back), sprite)
        outside = written.copy()
        outside[oy:oy + 16 * k, ox:ox + 16 * k] = 0
        assert not outside.any()  # nothing but transparency around it
    for r in ds.records:
        ds.set_include(r.file, True)


# ----------------------------------------------------------------------------------------
# 3. the built-in captioner captions every real image, trigger first
# ----------------------------------------------------------------------------------------
def test_structured_captioner_captions_every_real_image(real) -> None:
    ds = real["ds"]
    auto_caption(ds, StructuredCaptioner(), overwrite=True)
    for r in ds.records:
        tags = [t.strip() for t in r.caption.split(",")]
        assert tags[0] == TRIGGER and len(tags) >= 3 and all(tags), (r.file, r.caption)
        assert (ds.path / "images" / f"{r.stem}.txt").read_text("utf-8") == r.caption
    freq = tag_frequencies(ds)
    assert freq[TRIGGER] == len(ds.records)


# ----------------------------------------------------------------------------------------
# 5. statistics figures for the Dataset tab
# ----------------------------------------------------------------------------------------
def _counts(fig) -> dict:
    bar = fig.data[0]
    return {str(x): int(y) for x, y in zip(bar.x, bar.y, strict=True)}


def test_statistics_figures_on_the_real_set(real) -> None:
    ds = real["ds"]
    auto_caption(ds, StructuredCaptioner(), overwrite=True)
    figs = statistics_figures(ds)
    assert set(figs) == {"native_size", "palette", "caption_length", "tags"}
    n = len(ds.records)
    sizes = _counts(figs["native_size"])
    assert sum(sizes.values()) == n and sizes["16x16"] >= len(real["clean"]) + 3  # + near dups and JPEG
    want_sizes: dict[str, int] = {}
    for r in ds.records:
        key = f"{r.native_size[0]}x{r.native_size[1]}"
        want_sizes[key] = want_sizes.get(key, 0) + 1
    assert sizes == want_sizes and list(sizes)[0] == "16x16"  # most common first
    palette = _counts(figs["palette"])
    assert sum(palette.values()) == n
    for r in ds.records:
        assert palette[str(r.n_colours)] >= 1
    words = _counts(figs["caption_length"])
    want: dict[str, int] = {}
    for r in ds.records:
        key = str(len(r.caption.replace(",", " ").split()))
        want[key] = want.get(key, 0) + 1
    assert words == want
    tags = figs["tags"].data[0]
    freq = tag_frequencies(ds)
    assert list(tags.y)[0] == TRIGGER and int(tags.x[0]) == n
    assert {str(t): int(c) for t, c in zip(tags.y, tags.x, strict=True)} == dict(list(freq.items())[:30])
    empty = Dataset.create(real["base"] / "sets", "empty_stats")
    assert set(statistics_figures(empty)) == set(figs)


# ----------------------------------------------------------------------------------------
# 4. hostile and broken input
# ----------------------------------------------------------------------------------------
def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and skip not in p.parents}


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "PNG")
    return buf.getvalue()


def zip_bomb(path: Path, name: str, mib: int, lie_about_size: bool = False) -> None:
    """A small zip whose one entry inflates to `mib` MiB of zeros (written in 1 MiB chunks). With
    lie_about_size, the central directory claims 1000 bytes (the real stream is still `mib` MiB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z, z.open(name, "w") as f:
        chunk = bytes(1 << 20)
        for _ in range(mib):
            f.write(chunk)
    if lie_about_size:
        data = bytearray(path.read_bytes())
        cd = data.rindex(b"PK\x01\x02")
        assert int.from_bytes(data[cd + 24:cd + 28], "little") == mib << 20
        data[cd + 24:cd + 28] = (1000).to_bytes(4, "little")
        path.write_bytes(bytes(data))


def test_hostile_input_is_reported_and_nothing_escapes(tmp_path) -> None:
    good = [upscaled(a, 4) for _, a in SPRITES[:3]]
    folder = tmp_path / "upload"
    save(folder / "good0.png", good[0])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "truncated.png").write_bytes(png(good[1])[:60])
    (folder / "readme.pdf").write_bytes(b"%PDF-1.4 not an image")
    save(folder / "wide.png", np.zeros((20, 20000, 3), np.uint8) + np.uint8(90))
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("../../evil.png", png(good[1]))
        z.writestr("/abs/evil2.png", png(good[1]))
        z.writestr("sub/ok1.png", png(good[1]))
        z.writestr("sub/junk.png", b"not a png at all")
    bomb, liar = tmp_path / "bomb.zip", tmp_path / "liar.zip"
    zip_bomb(bomb, "bomb.png", 320)
    zip_bomb(liar, "liar.png", 320, lie_about_size=True)
    assert bomb.stat().st_size < 2 << 20 and liar.stat().st_size < 2 << 20

    ds = Dataset.create(tmp_path / "sets", "hostile", trigger=TRIGGER)
    before = snapshot(tmp_path, ds.path)
    rep_folder = ds.import_folder(folder)
    t = time.perf_counter()
    rep_zip = ds.import_files([zpath, bomb, liar, folder / "good0.png"])
    zip_seconds = time.perf_counter() - t
    save(folder / "good2.png", good[2])  # the rest still works afterwards
    rep_more = ds.import_folder(folder)

    reasons = {s.name: s.reason for rep in (rep_folder, rep_zip, rep_more) for s in rep.skipped}
    assert "PNG" in reasons["corrupt.png"] or "image" in reasons["corrupt.png"].lower(), reasons["corrupt.png"]
    assert reasons["truncated.png"]
    assert "not a supported image type (.pdf)" in reasons["readme.pdf"]
    assert "20000" in reasons["wide.png"], reasons["wide.png"]
    assert "outside the archive" in reasons["../../evil.png"]
    assert "outside the archive" in reasons["/abs/evil2.png"]
    assert reasons["sub/junk.png"]
    assert "larger than 64 MiB" in reasons["bomb.png"]  # refused by its declared size, never inflated
    assert "damaged" in reasons["liar.png"] or "larger than" in reasons["liar.png"], reasons["liar.png"]
    assert zip_seconds < 10  # neither bomb was inflated in full
    assert "exact duplicate" in reasons["good0.png"]

    sources = sorted(r.source for r in ds.records)
    assert sources == ["good0.png", "good2.png", "sub/ok1.png"]
    assert all(r.problems == () for r in ds.records)
    after = snapshot(tmp_path, ds.path)
    written = {k: v for k, v in after.items() if before.get(k) != v}
    assert set(written) == {"upload/good2.png"}  # only the test's own file; nothing from the zips
    assert not list(tmp_path.parent.glob("evil*.png")) and not list(tmp_path.glob("**/evil*.png"))
    assert not Path("/abs/evil2.png").exists()
    inside = sorted(p.relative_to(ds.path).as_posix() for p in ds.path.rglob("*") if p.is_file())
    assert all(p.split("/")[0] in ("images", "native") or "/" not in p for p in inside)
    reopened = Dataset.open(tmp_path / "sets", "hostile")
    assert sorted(r.source for r in reopened.records) == sources


def test_statistics_over_the_api(live_studio, tmp_path) -> None:
    from gradio_client import Client

    from studio.features import dataset_library as datasets

    ds = datasets.create(live_studio.studio, "pyxel_stats", trigger=TRIGGER)
    for i, (_, a) in enumerate(SPRITES[:4]):
        save(tmp_path / f"s{i}.png", upscaled(a, 4 + 4 * (i % 2)))
    ds.import_folder(tmp_path)
    auto_caption(ds, StructuredCaptioner())
    c = Client(live_studio.url, verbose=False)
    plots = c.predict("pyxel_stats", api_name="/dataset_stats")
    assert len(plots) == 4
    text = [json.dumps(p) for p in plots]
    assert "16x16" in text[0] and "Native sprite sizes" in text[0]
    assert "Palette sizes" in text[1] and "Caption lengths" in text[2]
    assert TRIGGER in text[3] and "Most used caption tags" in text[3]
    with pytest.raises(Exception, match="choose or create a dataset first"):  # noqa: B017 - AppError
        c.predict("", api_name="/dataset_stats")


def test_exact_upscale_reads_back_cropped_and_offset_real_sprites() -> None:
    from pipelines.pixel.native import exact_upscale
    from training.dataset import detect_native

    for _, sprite in SPRITES:
        for k, (dx, dy) in ((4, (1, 2)), (3, (0, 1)), (7, (5, 0))):
            img = upscaled(sprite, k)[dy:, dx:]  # a crop that cuts the first cells
            res = detect_native(img)
            assert res.info.get("exact") and res.cell == (k, k)
            assert np.array_equal(np.asarray(res.image), sprite)
            assert res.info["phase"] == ((k - dx) % k, (k - dy) % k)
    rng = np.random.default_rng(3)
    noisy = upscaled(SPRITES[1][1], 4).astype(np.int16) + rng.integers(-3, 4, (64, 64, 4))
    noisy[..., 3] = 255
    assert exact_upscale(np.clip(noisy, 0, 255).astype(np.uint8)) is None  # noise: not exact, engine's job
    assert exact_upscale(SPRITES[1][1]) is None  # native art is k = 1
    assert exact_upscale(np.zeros((32, 32, 4), np.uint8)) is None  # one flat colour
