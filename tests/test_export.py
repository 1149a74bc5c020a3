"""Bevy export: layout, exact pixels, JSON contents, path safety and all-or-nothing writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import studio.features.export as export
from studio import limits
from studio.features.export import (
    Animation,
    ExportError,
    bevy_snippet,
    build_sheet,
    export_sheet,
    export_sprite,
    export_tileset,
    safe_asset_dir,
)

TILE_W, TILE_H = 12, 16  # not square, so a swapped width/height shows up


def frame(seed: int, size: tuple[int, int] = (TILE_W, TILE_H)) -> Image.Image:
    """A frame whose every pixel differs from other frames', with some fully transparent pixels."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    px[..., 3] = np.where(rng.random((size[1], size[0])) < 0.3, 0, 255)
    return Image.fromarray(px, "RGBA")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (folders map to None), to prove nothing else was written."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def cell(sheet: Image.Image, column: int, row: int) -> bytes:
    return sheet.crop((column * TILE_W, row * TILE_H, (column + 1) * TILE_W, (row + 1) * TILE_H)).tobytes()


@pytest.fixture
def assets(tmp_path) -> Path:
    root = tmp_path / "game" / "assets"
    root.mkdir(parents=True)
    return root


def two_animations() -> list[Animation]:
    return [
        Animation("walk", [frame(i) for i in range(4)], fps=8),
        Animation("attack", [frame(10 + i) for i in range(4)], fps=12.5),
    ]


# ------------------------------------------------------------------------------------------------ layout


def test_sprite_is_a_one_by_one_sheet(assets):
    img = frame(1)
    result = export_sprite(img, assets, "slime", source_job="job-42")

    folder = assets / "sprites" / "slime"
    assert result.kind == "sprite"
    assert result.files == [folder / "slime.png", folder / "slime.sheet.json", folder / "slime.aseprite.json"]
    assert sorted(os.listdir(folder)) == ["slime.aseprite.json", "slime.png", "slime.sheet.json"]
    assert result.asset_path == "sprites/slime/slime.png"

    with Image.open(folder / "slime.png") as png:
        assert png.mode == "RGBA" and png.size == (TILE_W, TILE_H)
        assert png.tobytes() == img.tobytes()

    sheet = load_json(folder / "slime.sheet.json")
    assert sheet == result.sheet_json
    assert sheet["kind"] == "sprite" and sheet["name"] == "slime" and sheet["image"] == "slime.png"
    assert sheet["tile_size"] == [TILE_W, TILE_H]
    assert (sheet["columns"], sheet["rows"]) == (1, 1)
    assert sheet["animations"] == {}
    assert sheet["source_job"] == "job-42"
    opaque = {f"#{r:02x}{g:02x}{b:02x}" for r, g, b, a in np.asarray(img).reshape(-1, 4) if a > 0}
    assert set(sheet["palette"]) == opaque and len(sheet["palette"]) == len(opaque)

    ase = load_json(folder / "slime.aseprite.json")
    assert len(ase["frames"]) == 1
    assert ase["frames"][0]["frame"] == {"x": 0, "y": 0, "w": TILE_W, "h": TILE_H}
    assert ase["meta"]["image"] == "slime.png"
    assert ase["meta"]["size"] == {"w": TILE_W, "h": TILE_H}
    assert ase["meta"]["format"] == "RGBA8888" and ase["meta"]["scale"] == "1"
    assert ase["meta"]["frameTags"] == []

    assert "ImagePlugin::default_nearest()" in result.bevy_snippet
    assert 'asset_server.load("sprites/slime/slime.png")' in result.bevy_snippet


def test_sheet_cells_are_the_exact_source_frames(assets):
    anims = two_animations()
    result = export_sheet(anims, assets, "hero")

    with Image.open(assets / "sprites" / "hero" / "hero.png") as png:
        png.load()
        assert png.mode == "RGBA"
        assert png.size == (4 * TILE_W, 2 * TILE_H)
        for row, anim in enumerate(anims):
            for column, src in enumerate(anim.frames):
                assert cell(png, column, row) == src.tobytes(), (row, column)

    sheet = load_json(result.files[1])
    assert sheet["kind"] == "sheet"
    assert sheet["tile_size"] == [TILE_W, TILE_H]
    assert (sheet["columns"], sheet["rows"]) == (4, 2)
    assert sheet["animations"] == {"walk": [0, 3, 8.0], "attack": [4, 7, 12.5]}


def test_sheet_aseprite_json_frames_and_tags(assets):
    result = export_sheet(two_animations(), assets, "hero")
    ase = load_json(result.files[2])

    frames = ase["frames"]
    assert len(frames) == 8
    for i, f in enumerate(frames):
        row, column = divmod(i, 4)
        assert f["frame"] == {"x": column * TILE_W, "y": row * TILE_H, "w": TILE_W, "h": TILE_H}
        assert f["rotated"] is False and f["trimmed"] is False
        assert f["spriteSourceSize"] == {"x": 0, "y": 0, "w": TILE_W, "h": TILE_H}
        assert f["sourceSize"] == {"w": TILE_W, "h": TILE_H}
        assert f["duration"] == (125 if row == 0 else 80)
    assert len({f["filename"] for f in frames}) == 8
    assert ase["meta"]["frameTags"] == [
        {"name": "walk", "from": 0, "to": 3, "direction": "forward"},
        {"name": "attack", "from": 4, "to": 7, "direction": "forward"},
    ]
    assert ase["meta"]["size"] == {"w": 4 * TILE_W, "h": 2 * TILE_H}
    assert ase["meta"]["image"] == "hero.png" and ase["meta"]["format"] == "RGBA8888"


def test_ragged_rows_keep_row_major_atlas_indices(assets):
    anims = [
        Animation("idle", [frame(1), frame(2)]),
        Animation("run", [frame(i) for i in range(3, 7)]),
        Animation("hurt", [frame(9)], fps=4),
    ]
    result = export_sheet(anims, assets, "bat")

    assert result.sheet_json["animations"] == {"idle": [0, 1, 8.0], "run": [4, 7, 8.0], "hurt": [8, 8, 4.0]}
    ase = load_json(result.files[2])
    assert len(ase["frames"]) == 7  # only real frames; tags count frames as Aseprite does
    assert [(t["from"], t["to"]) for t in ase["meta"]["frameTags"]] == [(0, 1), (2, 5), (6, 6)]
    assert ase["frames"][2]["frame"]["y"] == TILE_H and ase["frames"][2]["frame"]["x"] == 0
    assert ase["frames"][6]["frame"]["y"] == 2 * TILE_H and ase["frames"][6]["duration"] == 250
    with Image.open(result.files[0]) as png:
        assert png.size == (4 * TILE_W, 3 * TILE_H)
        assert cell(png, 0, 2) == frame(9).tobytes()
        empty = np.asarray(png.crop((2 * TILE_W, 0, 4 * TILE_W, TILE_H)))
        assert (empty == 0).all()


def test_tileset_grid_and_names(assets):
    tiles = [frame(100 + i) for i in range(5)]
    names = ["grass", "dirt", "water", "sand", "rock"]
    result = export_tileset(tiles, assets, "overworld", columns=3, tile_names=names, source_job=7)

    folder = assets / "tilesets" / "overworld"
    assert result.kind == "tileset"
    assert result.files[0] == folder / "overworld.png"
    assert not (assets / "sprites").exists()
    with Image.open(result.files[0]) as png:
        assert png.size == (3 * TILE_W, 2 * TILE_H)
        for i, tile in enumerate(tiles):
            assert cell(png, i % 3, i // 3) == tile.tobytes()
    sheet = load_json(result.files[1])
    assert sheet["tiles"] == {"count": 5, "names": names}
    assert "animations" not in sheet
    assert (sheet["columns"], sheet["rows"], sheet["source_job"]) == (3, 2, 7)
    ase = load_json(result.files[2])
    assert [f["filename"] for f in ase["frames"]] == names
    assert ase["frames"][4]["frame"] == {"x": TILE_W, "y": TILE_H, "w": TILE_W, "h": TILE_H}
    assert 'asset_server.load("tilesets/overworld/overworld.png")' in result.bevy_snippet
    assert f"TextureAtlasLayout::from_grid(UVec2::new({TILE_W}, {TILE_H}), 3, 2, None, None)" in result.bevy_snippet


def test_tileset_default_grid_is_squarish_and_unnamed(assets):
    result = export_tileset([frame(i) for i in range(10)], assets, "dungeon")
    assert (result.sheet_json["columns"], result.sheet_json["rows"]) == (4, 3)
    assert result.sheet_json["tiles"] == {"count": 10}


def test_tileset_size_mismatch_names_the_tile(assets):
    tiles = [frame(0), frame(1), frame(2, size=(TILE_W + 1, TILE_H))]
    with pytest.raises(ExportError, match=r"tile 2 is 13x16"):
        export_tileset(tiles, assets, "bad", columns=2)
    assert tree(assets) == {}


def test_palette_given_is_normalised_and_derived_skips_transparent(assets):
    result = export_sprite(frame(1), assets, "a", palette=["#FF0000", "0f0", (0, 0, 255)])
    assert result.sheet_json["palette"] == ["#ff0000", "#00ff00", "#0000ff"]

    img = Image.new("RGBA", (4, 4), (9, 9, 9, 0))  # transparent pixels carry no colour
    img.putpixel((0, 0), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 255))
    img.putpixel((2, 0), (0, 0, 255, 255))
    img.putpixel((3, 0), (0, 255, 0, 128))
    derived = export_sprite(img, assets, "b").sheet_json["palette"]
    assert derived == ["#0000ff", "#00ff00", "#ff0000"]  # most frequent first, then by value

    with pytest.raises(ExportError, match="palette colour 1"):
        export_sprite(frame(1), assets, "c", palette=["#000000", "not-a-colour"])
    assert not (assets / "sprites" / "c").exists()


def test_palette_is_capped(assets):
    px = np.zeros((32, 32, 3), np.uint8)
    px[..., 0], px[..., 1] = np.mgrid[0:32, 0:32] * 8  # 1024 distinct colours
    px[0, :8] = (1, 2, 3)  # the most frequent colour comes first
    palette = export_sprite(Image.fromarray(px, "RGB"), assets, "noisy").sheet_json["palette"]
    assert len(palette) == limits.MAX_COLORS == 256
    assert palette[0] == "#010203"


def test_non_rgba_modes_are_exported_as_exact_rgba(assets):
    img = frame(3).convert("RGB").quantize(16)  # P mode
    result = export_sprite(img, assets, "paletted")
    with Image.open(result.files[0]) as png:
        assert png.mode == "RGBA"
        assert png.tobytes() == img.convert("RGBA").tobytes()


def test_animation_from_sheet_round_trips(assets):
    first = export_sheet(two_animations(), assets, "hero")
    with Image.open(first.files[0]) as png:
        png.load()
        walk = Animation.from_sheet("walk", png, TILE_W, TILE_H, row=0)
        attack = Animation.from_sheet("attack", png, TILE_W, TILE_H, row=1, count=2, fps=4)
    assert [f.tobytes() for f in walk.frames] == [f.tobytes() for f in two_animations()[0].frames]
    assert len(attack.frames) == 2 and attack.fps == 4.0
    with pytest.raises(ExportError, match="not a grid"):
        Animation.from_sheet("x", Image.new("RGBA", (10, 10)), 3, 3)


def test_build_sheet_copies_pixels_without_blending():
    half = Image.new("RGBA", (2, 2), (200, 10, 10, 100))
    sheet = build_sheet([[half, half], [half]])
    assert sheet.mode == "RGBA" and sheet.size == (4, 4)
    assert sheet.getpixel((0, 0)) == (200, 10, 10, 100)
    assert sheet.getpixel((3, 3)) == (0, 0, 0, 0)


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [Animation("walk", [])], "has no frames"),
        (lambda: [], "no animations"),
        (lambda: [Animation("walk", [frame(0), frame(1, size=(TILE_W, TILE_H + 2))])], r"'walk' frame 1 is 12x18"),
        (lambda: [Animation("walk", [frame(0)] * 65)], "65 frames; the limit is 64"),
        (lambda: [Animation("walk", [frame(0), "not an image"])], "frame 1 is not an image"),
        (lambda: [Animation("walk", [Image.new("I;16", (4, 4))])], "mode 'I;16'"),
        (lambda: [Animation("walk", [frame(0, size=(4097, 1))])], "limit is 4096"),
        (lambda: [Animation("a", [frame(0)]), Animation("a", [frame(1)])], "used twice"),
        (lambda: ["walk"], "not an Animation"),
    ],
)
def test_bad_sheet_input_is_refused_and_writes_nothing(assets, make, message):
    with pytest.raises(ExportError, match=message):
        export_sheet(make(), assets, "hero")
    assert tree(assets) == {}


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), "8", True])
def test_bad_fps_is_refused(fps):
    with pytest.raises(ExportError, match="fps"):
        Animation("walk", [frame(0)], fps=fps)


@pytest.mark.parametrize("name", ["walk left", "wälk", "", "a" * 65, "-x", "x\n// injected"])
def test_bad_animation_names_are_refused(name):
    with pytest.raises(ExportError, match="animation name"):
        Animation(name, [frame(0)])


def test_non_image_sprite_and_overwrite_off(assets):
    with pytest.raises(ExportError, match="not an image"):
        export_sprite(np.zeros((4, 4, 4), np.uint8), assets, "x")
    export_sprite(frame(1), assets, "keep")
    before = tree(assets)
    with pytest.raises(ExportError, match="already exists"):
        export_sprite(frame(2), assets, "keep", overwrite=False)
    assert tree(assets) == before


# --------------------------------------------------------------------------------------------- path safety

BAD_NAMES = [
    "../x", "..", ".", "a/b", "a\\b", "/etc/passwd", "/tmp/x", "", "with space", "héro", "Hero",
    ".hidden", "x" * 65, "con", "lpt1", "sprite.png", "a\x00b", None, 5,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused_and_nothing_is_written(tmp_path, assets, name):
    before = tree(tmp_path)
    with pytest.raises(ExportError, match="invalid asset name"):
        export_sprite(frame(0), assets, name)
    with pytest.raises(ExportError, match="invalid asset name"):
        export_sheet(two_animations(), assets, name)
    with pytest.raises(ExportError, match="invalid asset name"):
        safe_asset_dir(assets, "tileset", name)
    assert tree(tmp_path) == before


def test_good_names_are_accepted(assets):
    for name in ["a", "slime_01", "big-boss", "x" * 64]:
        assert safe_asset_dir(assets, "sheet", name) == (assets / "sprites" / name).resolve()
    assert not (assets / "sprites").exists()  # checking creates nothing


def test_unknown_kind_is_refused(assets):
    with pytest.raises(ExportError, match="unknown export kind"):
        safe_asset_dir(assets, "music", "theme")


@pytest.mark.parametrize("link_at", ["sprites", "sprites/hero"])
def test_symlink_inside_assets_pointing_outside_is_refused(tmp_path, assets, link_at):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = assets / link_at
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    before = tree(tmp_path)

    with pytest.raises(ExportError, match="outside the assets root"):
        export_sheet(two_animations(), assets, "hero")
    assert tree(tmp_path) == before
    assert list(outside.iterdir()) == []


def test_symlink_that_stays_inside_assets_is_allowed(assets):
    (assets / "art").mkdir()
    (assets / "sprites").symlink_to(assets / "art", target_is_directory=True)
    result = export_sprite(frame(0), assets, "ok")
    assert (assets / "art" / "ok" / "ok.png").is_file()
    assert result.files[0] == assets / "art" / "ok" / "ok.png"


def test_assets_root_must_be_inside_allowed_roots(tmp_path, assets):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = tree(tmp_path)
    for allowed in ([elsewhere], [], [assets / "sprites"]):
        with pytest.raises(ExportError, match="outside the allowed project folders"):
            export_sprite(frame(0), assets, "x", allowed_roots=allowed)
    escape = elsewhere / "assets"  # inside the allowed root by name, outside it once resolved
    escape.symlink_to(assets, target_is_directory=True)
    with pytest.raises(ExportError, match="outside the allowed project folders"):
        export_sprite(frame(0), escape, "x", allowed_roots=[elsewhere])
    escape.unlink()
    assert tree(tmp_path) == before

    result = export_sprite(frame(0), assets, "x", allowed_roots=[tmp_path / "game"])
    assert result.files[0].is_file()


def test_missing_assets_root_is_created_one_level_only(tmp_path):
    result = export_sprite(frame(0), tmp_path / "assets", "x")
    assert result.files[0].is_file()
    with pytest.raises(ExportError, match="could not create"):
        export_sprite(frame(0), tmp_path / "no" / "such" / "assets", "x")
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------------------------------------- atomic writes


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_failing_commit_restores_previous_export(monkeypatch, assets):
    first = export_sheet(two_animations(), assets, "hero")
    before = tree(assets)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "hero.sheet.json":  # the PNG has been replaced already
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    changed = [Animation("walk", [frame(50 + i) for i in range(2)])]
    with pytest.raises(ExportError, match="No space left on device"):
        export_sheet(changed, assets, "hero")
    monkeypatch.undo()

    assert tree(assets) == before
    assert no_temp_files(assets)
    with Image.open(first.files[0]) as png:
        assert png.size == (4 * TILE_W, 2 * TILE_H)


def test_failing_staging_write_leaves_previous_export(monkeypatch, assets):
    export_sprite(frame(1), assets, "slime")
    before = tree(assets)
    calls = []
    real = export.atomic_write_bytes

    def failing(path, data):
        calls.append(path)
        if len(calls) == 2:  # the second file written by this export (the PNG went through save_png)
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(export, "atomic_write_bytes", failing)
    with pytest.raises(ExportError, match="No space left on device"):
        export_sprite(frame(2), assets, "slime")
    assert len(calls) == 2
    assert tree(assets) == before
    assert no_temp_files(assets)


def test_failing_first_export_removes_everything_it_created(monkeypatch, assets):
    def failing_png(image, path, pnginfo=None):
        Path(path).write_bytes(b"half a png")  # as if the disk filled mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "save_png", failing_png)
    with pytest.raises(ExportError, match="No space left on device"):
        export_sheet(two_animations(), assets, "hero")
    assert tree(assets) == {}


def test_overwrite_replaces_files_not_their_contents_in_place(assets):
    first = export_sheet(two_animations(), assets, "hero")
    old_png = first.files[0].read_bytes()
    with open(first.files[0], "rb") as reader:  # a reader holding the old file keeps a complete old file
        new = [Animation("walk", [frame(70 + i) for i in range(3)], fps=6)]
        second = export_sheet(new, assets, "hero")
        assert reader.read() == old_png
    assert second.files == first.files
    with Image.open(second.files[0]) as png:
        assert png.size == (3 * TILE_W, TILE_H)
        assert cell(png, 2, 0) == frame(72).tobytes()
    assert load_json(second.files[1])["animations"] == {"walk": [0, 2, 6.0]}
    assert len(load_json(second.files[2])["frames"]) == 3
    assert no_temp_files(assets)


# ------------------------------------------------------------------------------------------------- snippet


def test_snippet_has_nearest_sampling_grid_and_ranges(assets):
    result = export_sheet(two_animations(), assets, "hero")
    code = result.bevy_snippet
    assert "DefaultPlugins.set(ImagePlugin::default_nearest())" in code
    assert f"TextureAtlasLayout::from_grid(UVec2::new({TILE_W}, {TILE_H}), 4, 2, None, None)" in code
    assert 'asset_server.load("sprites/hero/hero.png")' in code
    assert "Sprite::from_atlas_image(texture, TextureAtlas { layout, index: 0 })" in code
    assert "walk: 0..=3 at 8 fps" in code and "attack: 4..=7 at 12.5 fps" in code
    assert "AnimationIndices { first: 0, last: 3 }" in code
    assert code.count("{") == code.count("}")  # balanced braces: nothing half-formatted
    assert bevy_snippet("sheet", "hero", result.sheet_json) == code


def test_snippet_refuses_unsafe_names():
    sheet = {"tile_size": [8, 8], "columns": 1, "rows": 1, "animations": {"a\n}": [0, 0, 8.0]}}
    with pytest.raises(ExportError):
        bevy_snippet("sheet", "hero", sheet)
    with pytest.raises(ExportError):
        bevy_snippet("sheet", 'x"); evil(); ("', {**sheet, "animations": {}})
