"""Training sets: import (folder, zip, uploads, sheets), checks, duplicates, captions, prepare and export.

Every image is synthetic with a known answer (pipelines.pixel.synth), so sizes, scales and problems are
asserted exactly; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pixel_synth import make_sprite, render
from training.dataset import (
    SDXL_BUCKETS,
    Dataset,
    DatasetError,
    ImageRecord,
    caption_append,
    caption_ensure_trigger,
    caption_find_replace,
    caption_prepend,
    caption_replace_all,
    check_image,
    choose_bucket,
    dataset_warnings,
    detect_native,
    export_diffusers,
    export_kohya,
    find_duplicates,
    list_datasets,
    prepare,
    prepare_image,
    preview_prepared,
    tag_frequencies,
    undo_last,
)


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "PNG")
    return buf.getvalue()


def save(path: Path, a: np.ndarray, fmt: str = "PNG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(a)).save(path, fmt, **kw)
    return path


def upscaled(sprite: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(sprite, k, 0), k, 1)


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def ds(tmp_path: Path) -> Dataset:
    return Dataset.create(tmp_path / "sets", "slimes", trigger="slm", class_word="sprite")


# ----------------------------------------------------------------------------------------
# create / open
# ----------------------------------------------------------------------------------------
def test_create_open_list_and_names(tmp_path: Path) -> None:
    root = tmp_path / "sets"
    d = Dataset.create(root, "knights_2", trigger="knt", class_word="character", notes='say "hi"\nthere')
    assert (d.path / "dataset.toml").is_file() and (d.path / "images").is_dir() and (d.path / "native").is_dir()
    again = Dataset.open(root, "knights_2")
    assert again.meta == d.meta and again.meta.notes == 'say "hi"\nthere'
    assert list_datasets(root) == ["knights_2"]
    for bad in ("../escape", "Upper", "", "a" * 65, "a/b", ".hidden", "-x"):
        with pytest.raises(DatasetError, match="not allowed"):
            Dataset.create(root, bad)
    with pytest.raises(DatasetError, match="already exists"):
        Dataset.create(root, "knights_2")
    with pytest.raises(DatasetError, match="no dataset named"):
        Dataset.open(root, "nope")
    with pytest.raises(DatasetError, match="trigger word"):
        Dataset.create(root, "x", trigger="a, b")
    d.update_meta(trigger="kn", notes="")
    assert Dataset.open(root, "knights_2").meta.trigger == "kn"
    with pytest.raises(DatasetError, match="only trigger"):
        d.update_meta(name="other")
    assert not (tmp_path / "escape").exists()


def test_record_validation() -> None:
    good = dict(file="a.png", sha256="0" * 64, width=8, height=8, n_colours=2, native_scale=1.0,
                native_size=(8, 8), has_alpha=True, opaque_fraction=0.5, phash="f" * 16)
    r = ImageRecord(**good)
    assert ImageRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    for k, v in (("file", "../a.png"), ("sha256", "xyz"), ("phash", "12"), ("opaque_fraction", 1.5),
                 ("native_size", (0, 8))):
        with pytest.raises(DatasetError):
            ImageRecord(**{**good, k: v})


# ----------------------------------------------------------------------------------------
# import
# ----------------------------------------------------------------------------------------
def test_import_folder_with_bad_files(ds: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "in"
    s1, s2 = make_sprite(16, 16, 5, seed=1), make_sprite(16, 16, 5, seed=2)
    save(src / "Red Slime_idle 01.png", upscaled(s1, 4))
    (src / "Red Slime_idle 01.txt").write_text("slm, red slime\n")
    save(src / "sub" / "blue.PNG", s2)
    (src / "sub" / "Blue.txt").write_text("blue one")
    (src / "notes.png").write_text("hello, I am text")
    full = png_bytes(upscaled(make_sprite(16, 16, 5, seed=3), 8))
    (src / "truncated.png").write_bytes(full[: len(full) // 2])
    (src / "readme.md").write_text("# hi")
    save(src / "dot.png", np.array([[[255, 0, 0, 255]]], np.uint8))

    rep = ds.import_folder(src)
    assert [r.source for r in rep.added] == ["Red Slime_idle 01.png", "sub/blue.PNG"]
    reasons = {s.name: s.reason for s in rep.skipped}
    assert set(reasons) == {"notes.png", "truncated.png", "readme.md", "dot.png"}
    assert "not an image" in reasons["notes.png"]
    assert "damaged or truncated" in reasons["truncated.png"]
    assert "not a supported image type (.md)" in reasons["readme.md"]
    assert "1x1" in reasons["dot.png"]
    first = ds.record("red_slime_idle_01.png")
    assert first.caption == "slm, red slime" and ds.record("blue.png").caption == "blue one"
    # exactly the added images, their captions and native sprites: nothing partial, no temp files
    assert all_files(ds.path) == sorted([
        "dataset.json", "dataset.toml", "images/blue.png", "images/blue.txt", "images/red_slime_idle_01.png",
        "images/red_slime_idle_01.txt", "native/blue.png", "native/red_slime_idle_01.png"])
    assert Dataset.open(ds.path.parent, ds.name).records == ds.records


def test_import_zip_is_safe(ds: Dataset, tmp_path: Path) -> None:
    z = tmp_path / "pack.zip"
    good = png_bytes(upscaled(make_sprite(16, 16, 4, seed=5), 4))
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("sprites/hero.png", good)
        zf.writestr("sprites/hero.txt", "hero, knight")
        zf.writestr("../evil.png", png_bytes(make_sprite(16, 16, 4, seed=6)))
        zf.writestr("/abs/evil2.png", png_bytes(make_sprite(16, 16, 4, seed=7)))
        zf.writestr("__MACOSX/sprites/._hero.png", b"junk")
        zf.writestr("sprites/broken.png", b"\x89PNG\r\n\x1a\nnot really")
        zf.writestr("sprites/list.csv", "a,b")
    rep = ds.import_zip(z)
    assert [r.file for r in rep.added] == ["hero.png"]
    assert ds.record("hero.png").caption == "hero, knight"
    reasons = {s.name: s.reason for s in rep.skipped}
    assert "unsafe path" in reasons["../evil.png"] and "unsafe path" in reasons["/abs/evil2.png"]
    assert "macOS" in reasons["__MACOSX/sprites/._hero.png"]
    assert "sprites/broken.png" in reasons and "sprites/list.csv" in reasons
    assert not (tmp_path / "evil.png").exists() and not (ds.path.parent / "evil.png").exists()
    assert sorted(p.name for p in (ds.path / "images").iterdir()) == ["hero.png", "hero.txt"]
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        ds.import_zip(tmp_path / "bad.zip")


def test_import_uploaded_paths_and_zip(ds: Dataset, tmp_path: Path) -> None:
    a = save(tmp_path / "up" / "frog.png", upscaled(make_sprite(16, 16, 4, seed=11), 2))
    b = save(tmp_path / "up" / "frog.webp", upscaled(make_sprite(16, 16, 4, seed=12), 2), "WEBP", lossless=True)
    z = tmp_path / "up" / "more.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("toad.png", png_bytes(make_sprite(16, 16, 4, seed=13)))
    rep = ds.import_files([a, b, z])
    assert sorted(r.file for r in rep.added) == ["frog-2.webp", "frog.png", "toad.png"]  # unique safe names
    assert not rep.skipped


def test_sheet_split_by_grid(ds: Dataset, tmp_path: Path) -> None:
    sheet = np.zeros((2 * 64, 4 * 64, 4), np.uint8)
    frames = [make_sprite(16, 16, 4, seed=20 + i) for i in range(6)]
    for i, f in enumerate(frames):  # cells (0,0)..(1,1) filled, the last two of row 1 empty
        r, c = divmod(i, 4)
        sheet[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = upscaled(f, 4)
    p = save(tmp_path / "walk.png", sheet)
    rep = ds.import_files([p], split=(4, 2))
    assert [r.file for r in rep.added] == ["walk_r0c0.png", "walk_r0c1.png", "walk_r0c2.png", "walk_r0c3.png",
                                           "walk_r1c0.png", "walk_r1c1.png"]
    for i, r in enumerate(rep.added):
        assert (r.width, r.height, r.native_size) == (64, 64, (16, 16)) and r.native_scale == pytest.approx(4.0, abs=0.01)
        assert np.array_equal(np.asarray(ds.native_image(r.file)), frames[i])
    other = Dataset.create(ds.path.parent, "by-cell")
    assert len(other.import_files([p], cell=(64, 64)).added) == 6
    bad = other.import_files([p], split=(3, 2))
    assert "does not divide" in bad.skipped[0].reason


def test_animated_gif_frames_and_progress(ds: Dataset, tmp_path: Path) -> None:
    frames = [make_sprite(16, 16, 4, seed=50 + i) for i in range(3)]
    ims = [Image.fromarray(upscaled(f, 4)) for f in frames]
    p = tmp_path / "bat_fly.gif"
    ims[0].save(p, save_all=True, append_images=[*ims[1:], ims[0]], duration=100, loop=0, disposal=2)
    calls: list[tuple[int, int, str]] = []
    rep = ds.import_files([p], progress=lambda done, total, name: calls.append((done, total, name)))
    assert [r.file for r in rep.added] == ["bat_fly_f0.png", "bat_fly_f1.png", "bat_fly_f2.png"]
    assert "exact duplicate of bat_fly_f0.png" in rep.skipped[0].reason  # the 4th frame repeats the 1st
    for r, f in zip(rep.added, frames, strict=True):
        assert r.native_size == (16, 16)
        assert np.array_equal(np.asarray(ds.native_image(r.file))[..., 3] > 0, f[..., 3] > 0)
    assert calls == [(1, 1, "bat_fly.gif")]
    assert len(Dataset.create(ds.path.parent, "still").import_files([p], frames=False).added) == 1


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------
def codes(problems: tuple[str, ...]) -> set[str]:
    return {p.split(":")[0] for p in problems}


def test_native_detection_of_an_8x_sprite(ds: Dataset, tmp_path: Path) -> None:
    sprite = make_sprite(24, 20, 6, seed=4)
    rep = ds.import_files([save(tmp_path / "big.png", upscaled(sprite, 8))])
    r = rep.added[0]
    assert (r.width, r.height) == (192, 160)
    assert r.native_scale == pytest.approx(8.0, abs=0.01) and r.native_size == (24, 20)
    assert np.array_equal(np.asarray(ds.native_image(r.file)), sprite)
    assert r.problems == () and r.has_alpha and r.n_colours == 6


def test_problems_on_synthetic_cases(tmp_path: Path) -> None:
    sprite = make_sprite(16, 16, 5, seed=1)
    assert check_image(upscaled(sprite, 8)) == ()
    # a blurry photo-like gradient: no pixel grid at all
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128]
    photo = np.dstack([xx * 2, yy * 2, 128 + 0 * xx]).astype(float) + rng.normal(0, 20, (128, 128, 3))
    from scipy import ndimage
    photo = np.clip(ndimage.gaussian_filter(photo, (2, 2, 0)), 0, 255).astype(np.uint8)
    photo = np.dstack([photo, np.full((128, 128), 255, np.uint8)])
    assert "not-pixel-art" in codes(check_image(photo))
    # JPEG damage: as a source file format, and as ringing inside the cells of a PNG
    jpg = render(sprite, 8, jpeg=60)
    jpg = np.dstack([jpg, np.full(jpg.shape[:2], 255, np.uint8)])
    assert "jpeg-artefacts" in codes(check_image(jpg))
    assert "jpeg-source" in codes(check_image(jpg, source_format="JPEG"))
    # mostly empty: a small sprite on a big transparent canvas
    empty = np.zeros((160, 160, 4), np.uint8)
    empty[:32, :32] = upscaled(sprite, 2)
    assert "mostly-empty" in codes(check_image(empty))
    # too small: a 6x6 sprite
    assert codes(check_image(make_sprite(6, 6, 3, seed=2))) == {"too-small"}


def test_jpeg_source_through_import(ds: Dataset, tmp_path: Path) -> None:
    sprite = make_sprite(16, 16, 5, seed=8)
    p = save(tmp_path / "hero.jpg", upscaled(sprite, 8)[..., :3], "JPEG", quality=70)
    r = ds.import_files([p]).added[0]
    assert r.file == "hero.jpg" and (ds.path / "images" / "hero.jpg").read_bytes() == p.read_bytes()
    assert "jpeg-source" in r.problem_codes


def test_exact_and_near_duplicates(ds: Dataset, tmp_path: Path) -> None:
    sprite = make_sprite(16, 16, 5, seed=9)
    a = save(tmp_path / "a.png", upscaled(sprite, 4))
    b = save(tmp_path / "b.png", upscaled(sprite, 8))  # re-saved at another scale
    noisy = render(sprite, 6, noise=3.0, background=None, seed=1)  # tiny noise
    c = save(tmp_path / "c.png", noisy)
    d = save(tmp_path / "d.png", make_sprite(16, 16, 5, seed=10))  # a different sprite
    rep = ds.import_files([a, b, c, d])
    assert len(rep.added) == 4
    near = [g for g in rep.duplicates if g.kind == "near"]
    assert len(near) == 1 and set(near[0].files) == {"a.png", "b.png", "c.png"}
    assert "near-duplicate" in ds.record("b.png").problem_codes
    assert "near-duplicate" not in ds.record("d.png").problem_codes
    # exact: the same pixels again (another file name, other PNG compression) is refused at import
    e = tmp_path / "copy.png"
    Image.fromarray(upscaled(sprite, 4)).save(e, "PNG", compress_level=1)
    rep2 = ds.import_files([e])
    assert not rep2.added and "exact duplicate of a.png" in rep2.skipped[0].reason
    assert rep2.duplicates[0].kind == "exact"
    # find_duplicates on records: an exact group where two records share pixels
    r = ds.record("a.png")
    twin = ImageRecord(**{**r.to_dict(), "file": "twin.png", "native_size": r.native_size})
    groups = find_duplicates([r, twin, ds.record("d.png")])
    assert [(g.kind, g.files) for g in groups] == [("exact", ("a.png", "twin.png"))]


def test_alpha_mix_warning(ds: Dataset, tmp_path: Path) -> None:
    ds.import_files([save(tmp_path / "s.png", make_sprite(16, 16, 4, seed=1))])
    assert ds.warnings() == []
    tile = make_sprite(16, 16, 4, seed=2, opaque=True)
    ds.import_files([save(tmp_path / "t.png", tile)])
    assert ds.warnings()[0].startswith("alpha-mix: 1 image(s) are fully opaque")
    ds.set_include("t.png", False)
    assert dataset_warnings(ds.records) == []


# ----------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------
def test_bucket_choice_by_aspect() -> None:
    assert choose_bucket((16, 16)) == (1024, 1024)
    assert choose_bucket((32, 16)) == (1344, 768)
    assert choose_bucket((16, 32)) == (768, 1344)
    assert choose_bucket((16, 24)) == (832, 1216)
    assert choose_bucket((40, 32)) == (1152, 896)


def test_prepare_image_is_exact_integer_nearest_and_centred() -> None:
    sprite = make_sprite(24, 32, 6, seed=3)
    p = prepare_image(Image.fromarray(sprite), background=(10, 200, 30))
    bw, bh = p.bucket
    assert p.bucket == (896, 1152) and p.image.size == (896, 1152) and p.image.mode == "RGB"
    k = p.scale
    assert k == int(min(896 * 0.875 // 24, 1152 * 0.875 // 32)) == 31
    ox, oy = p.offset
    assert (ox, oy) == ((bw - 24 * k) // 2, (bh - 32 * k) // 2)
    a = np.asarray(p.image)
    region = a[oy:oy + 32 * k, ox:ox + 24 * k].reshape(32, k, 24, k, 3)
    # every k x k block is one colour: the sprite's pixel, or the background where it is transparent
    assert np.all(region == region[:, :1, :, :1, :])
    expect = np.where(sprite[..., 3:] >= 128, sprite[..., :3], np.array([10, 200, 30], np.uint8))
    assert np.array_equal(region[:, 0, :, 0], expect)
    outside = a.copy()
    outside[oy:oy + 32 * k, ox:ox + 24 * k] = (10, 200, 30)
    assert np.all(outside == (10, 200, 30))
    t = prepare_image(Image.fromarray(sprite), background="transparent")
    ta = np.asarray(t.image)
    assert t.image.mode == "RGBA" and ta[0, 0, 3] == 0
    assert np.array_equal(ta[t.offset[1]:t.offset[1] + 32 * t.scale:t.scale,
                             t.offset[0]:t.offset[0] + 24 * t.scale:t.scale], sprite)


def test_prepare_and_preview(ds: Dataset, tmp_path: Path) -> None:
    wide = make_sprite(32, 16, 4, seed=5)
    ds.import_files([save(tmp_path / "wide.png", upscaled(wide, 3)),
                     save(tmp_path / "sq.png", make_sprite(16, 16, 4, seed=6))])
    ds.set_caption("wide.png", "slm, wide thing")
    ds.set_include("sq.png", False)
    rep = prepare(ds, tmp_path / "out", background="#ffffff")
    assert [(i.file, i.bucket) for i in rep.items] == [("wide.png", (1344, 768))]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["wide.png", "wide.txt"]
    assert (tmp_path / "out" / "wide.txt").read_text() == "slm, wide thing"
    with Image.open(tmp_path / "out" / "wide.png") as im:
        assert im.size == (1344, 768)
        assert np.array_equal(np.asarray(im), np.asarray(preview_prepared(ds, "wide.png").image))
    with pytest.raises(DatasetError, match="not empty"):
        prepare(ds, tmp_path / "out")
    assert prepare(ds, tmp_path / "out", overwrite=True).items


# ----------------------------------------------------------------------------------------
# captions, include flag, export
# ----------------------------------------------------------------------------------------
def _three(ds: Dataset, tmp_path: Path) -> None:
    for i, name in enumerate(("red_slime", "blue_slime", "bat")):
        save(tmp_path / "in" / f"{name}.png", make_sprite(16, 16, 4, seed=30 + i))
        (tmp_path / "in" / f"{name}.txt").write_text(f"{name.replace('_', ' ')}, monster")
    ds.import_folder(tmp_path / "in")


def test_caption_bulk_ops_and_undo_across_reopen(ds: Dataset, tmp_path: Path) -> None:
    _three(ds, tmp_path)
    before = {r.file: r.caption for r in ds.records}
    tok = caption_prepend(ds, "pixel art")
    assert ds.record("bat.png").caption == "pixel art, bat, monster"
    assert (ds.path / "images" / "bat.txt").read_text() == "pixel art, bat, monster"
    again = Dataset.open(ds.path.parent, ds.name)
    with pytest.raises(DatasetError, match="another caption edit"):
        undo_last(again, token="not-it")
    assert undo_last(again, token=tok) == 3
    assert {r.file: r.caption for r in Dataset.open(ds.path.parent, ds.name).records} == before
    with pytest.raises(DatasetError, match="no caption edit to undo"):
        undo_last(again)

    ds = Dataset.open(ds.path.parent, ds.name)
    caption_append(ds, "side view", files=["bat.png"])
    assert ds.record("bat.png").caption == "bat, monster, side view"
    caption_find_replace(ds, "monster", "enemy")
    assert ds.record("red_slime.png").caption == "red slime, enemy"
    caption_find_replace(ds, r"(\w+) slime", r"slime (\1)", regex=True)
    assert ds.record("blue_slime.png").caption == "slime (blue), enemy"
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        caption_find_replace(ds, "(", "x", regex=True)
    caption_replace_all(ds, "enemy, slm", files=["bat.png"])
    caption_ensure_trigger(ds)
    assert ds.record("bat.png").caption == "slm, enemy"
    assert all(r.caption.startswith("slm, ") for r in ds.records)
    assert undo_last(Dataset.open(ds.path.parent, ds.name)) == 3  # back to before ensure-trigger
    assert Dataset.open(ds.path.parent, ds.name).record("bat.png").caption == "enemy, slm"


def test_tag_frequencies(ds: Dataset, tmp_path: Path) -> None:
    _three(ds, tmp_path)
    assert tag_frequencies(ds) == {"monster": 3, "bat": 1, "blue slime": 1, "red slime": 1}
    ds.set_include("bat.png", False)
    assert tag_frequencies(ds, included_only=True) == {"monster": 2, "blue slime": 1, "red slime": 1}


def test_include_flag_and_hand_edited_caption_persist(ds: Dataset, tmp_path: Path) -> None:
    _three(ds, tmp_path)
    ds.set_include("bat.png", False)
    (ds.path / "images" / "red_slime.txt").write_text("edited by hand\n")
    again = Dataset.open(ds.path.parent, ds.name)
    assert again.record("bat.png").include is False and again.record("red_slime.png").include is True
    assert again.record("red_slime.png").caption == "edited by hand"
    (ds.path / "native" / "bat.png").unlink()  # deleted by hand: reported, and prepare skips it
    again = Dataset.open(ds.path.parent, ds.name)
    assert again.record("bat.png").problem_codes == ("missing-file",)
    again.set_include("bat.png", True)
    assert [s.name for s in prepare(again, tmp_path / "out").skipped] == ["bat.png"]
    again.remove("blue_slime.png")
    assert sorted(r.file for r in Dataset.open(ds.path.parent, ds.name).records) == ["bat.png", "red_slime.png"]
    assert not (ds.path / "images" / "blue_slime.png").exists()


def test_export_layouts(ds: Dataset, tmp_path: Path) -> None:
    _three(ds, tmp_path)
    ds.set_include("bat.png", False)
    rep = export_kohya(ds, tmp_path / "kohya")
    folder = tmp_path / "kohya" / "10_slm sprite"
    assert rep.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["blue_slime.png", "blue_slime.txt", "red_slime.png",
                                                        "red_slime.txt"]
    assert (folder / "red_slime.txt").read_text() == "red slime, monster"
    with Image.open(folder / "red_slime.png") as im:
        assert im.size in SDXL_BUCKETS
    assert export_kohya(ds, tmp_path / "k3", repeats=3).folder.name == "3_slm sprite"
    with pytest.raises(DatasetError, match="not empty"):
        export_kohya(ds, tmp_path / "kohya")
    export_kohya(ds, tmp_path / "kohya", repeats=4, overwrite=True)  # an old repeat folder would train too
    assert [p.name for p in (tmp_path / "kohya").iterdir()] == ["4_slm sprite"]

    rep = export_diffusers(ds, tmp_path / "hf")
    lines = [json.loads(x) for x in (tmp_path / "hf" / "metadata.jsonl").read_text().splitlines()]
    assert lines == [{"file_name": "blue_slime.png", "text": "blue slime, monster"},
                     {"file_name": "red_slime.png", "text": "red slime, monster"}]
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["blue_slime.png", "metadata.jsonl",
                                                                   "red_slime.png"]


def test_auto_caption_with_structured_captioner(ds: Dataset, tmp_path: Path) -> None:
    from training.captioning import StructuredCaptioner
    from training.dataset import auto_caption

    ds.import_files([save(tmp_path / "green_frog-jump_02.png", upscaled(make_sprite(16, 16, 4, seed=40), 4))])
    seen: list[tuple[int, int, str]] = []
    tok = auto_caption(ds, StructuredCaptioner(), progress=lambda *a: seen.append(a))
    assert seen == [(1, 1, "green_frog-jump_02.png")]
    cap = ds.record("green_frog-jump_02.png").caption
    assert cap.startswith("slm, green frog jump, pixel art sprite, 16x16, tiny, transparent background, 4 colours")
    assert undo_last(ds, tok) == 1 and ds.record("green_frog-jump_02.png").caption == ""


def test_detect_native_keeps_background(tmp_path: Path) -> None:
    tile = make_sprite(16, 16, 4, seed=2, opaque=True)
    res = detect_native(upscaled(tile, 4))
    assert np.array_equal(np.asarray(res.image), tile)  # an opaque tile stays opaque


def test_a_failed_write_leaves_nothing_behind(ds: Dataset, tmp_path: Path, monkeypatch) -> None:
    import training.dataset.records as records  # where import writes each file

    real = records.atomic_write_bytes

    def failing(dst: Path, data) -> None:
        if dst.parent.name == "native":
            raise OSError("disk full")
        real(dst, data)

    monkeypatch.setattr(records, "atomic_write_bytes", failing)
    rep = ds.import_files([save(tmp_path / "hero.png", upscaled(make_sprite(16, 16, 4, seed=60), 4))])
    assert not rep.added and rep.skipped[0].reason == "disk full"
    assert all_files(ds.path) == ["dataset.json", "dataset.toml"]
    assert Dataset.open(ds.path.parent, ds.name).records == ()


def test_corrupt_zip_entry_is_a_reason(ds: Dataset, tmp_path: Path) -> None:
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", png_bytes(upscaled(make_sprite(16, 16, 4, seed=70), 4)))
        zf.writestr("b.png", png_bytes(upscaled(make_sprite(16, 16, 4, seed=71), 4)))
    with zipfile.ZipFile(z) as zf:
        start = zf.getinfo("b.png").header_offset + 30 + len("b.png")  # b.png's compressed data
    data = bytearray(z.read_bytes())
    data[start + 10:start + 60] = b"\xff" * 50  # damaged in the archive: CRC or inflate error
    z.write_bytes(bytes(data))
    rep = ds.import_zip(z)
    assert [r.file for r in rep.added] == ["a.png"]
    assert rep.skipped[0].name == "b.png" and "zip entry is damaged" in rep.skipped[0].reason
