"""The Dataset tab and `dgx-pixels dataset`: the same training.dataset calls, from the UI and the shell."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.frontends.cli import main


def sprite(tmp_path, name: str, seed: int, scale: int = 8):
    rng = np.random.default_rng(seed)
    art = np.zeros((12, 12, 4), dtype=np.uint8)
    art[2:10, 2:10, :3] = rng.choice(np.array([[200, 40, 40], [40, 40, 200], [240, 220, 60]], dtype=np.uint8),
                                     size=(8, 8))
    art[2:10, 2:10, 3] = 255
    path = tmp_path / name
    Image.fromarray(np.kron(art, np.ones((scale, scale, 1), dtype=np.uint8))).save(path)
    return path


def test_dataset_cli_round_trip(tmp_path, settings, capsys):
    cfg = tmp_path / "studio.toml"
    cfg.write_text(f'data_dir = "{settings.data_dir}"\nmodels_dir = "{settings.models_dir}"\n')
    run = lambda *a: main(["--config", str(cfg), "dataset", *map(str, a)])  # noqa: E731
    assert run("create", "slimes", "--trigger", "slm") == 0
    files = [sprite(tmp_path, f"red_slime_{i}.png", i) for i in range(3)]
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert run("import", "slimes", *files, tmp_path / "junk.png") == 0
    out = capsys.readouterr().out
    assert "added 3" in out and "skipped junk.png" in out
    assert run("caption", "slimes") == 0
    assert run("check", "slimes") == 0
    assert run("export", "slimes", "--out", tmp_path / "kohya", "--repeats", "5") == 0
    folder = tmp_path / "kohya" / "5_slm sprite"
    captions = sorted(p.read_text() for p in folder.glob("*.txt"))
    assert len(captions) == 3 and all(c.startswith("slm, ") and "red slime" in c for c in captions)
    assert run("caption", "slimes", "--captioner", "nope") == 2 and "unknown captioner" in capsys.readouterr().err
    from studio.store import Store

    store = Store(settings.db_path)
    rows = store.query("SELECT name, images, included FROM datasets")
    store.close()
    assert rows == [{"name": "slimes", "images": 3, "included": 3}]


def test_dataset_tab_over_the_api(live_studio, tmp_path):
    from gradio_client import Client, handle_file

    c = Client(live_studio.url, verbose=False)
    c.predict("knights", "kn", "sprite", api_name="/dataset_create")
    files = [handle_file(str(sprite(tmp_path, f"knight_{i}.png", 10 + i))) for i in range(2)]
    report, summary = c.predict("knights", files, "", api_name="/dataset_import")
    assert "added 2" in report and "2 images" in summary
    first = live_studio.studio.store.query(
        "SELECT file FROM dataset_images WHERE dataset = 'knights' ORDER BY file")[0]["file"]
    summary = c.predict("knights", first, "kn, a knight, pixel art", api_name="/dataset_caption")
    assert "1 without caption" in summary
    note, _plot = c.predict("knights", "all", 1, "prepend", "hero", "", False, api_name="/dataset_bulk")
    assert "applied to 2" in note
    rows = live_studio.studio.store.query("SELECT caption FROM dataset_images WHERE dataset = 'knights' ORDER BY file")
    assert [r["caption"] for r in rows] == ["hero, kn, a knight, pixel art", "hero"]  # the second had no caption
    note, _plot = c.predict("knights", api_name="/dataset_undo")
    assert "restored 2" in note
    rows = live_studio.studio.store.query("SELECT caption FROM dataset_images WHERE dataset = 'knights' ORDER BY file")
    assert rows[0]["caption"] == "kn, a knight, pixel art"
    with pytest.raises(Exception, match="choose or create a dataset first"):  # noqa: B017 - AppError
        c.predict("", files, "", api_name="/dataset_import")
    done = c.predict("knights", "diffusers", 10, api_name="/dataset_export")
    assert "2 image(s) written" in done


def test_duplicates_side_by_side_keep_one(live_studio, tmp_path):
    from gradio_client import Client, handle_file

    c = Client(live_studio.url, verbose=False)
    c.predict("twins", "tw", "sprite", api_name="/dataset_create")
    a = sprite(tmp_path, "twin_a.png", 5, scale=8)
    b = sprite(tmp_path, "twin_b.png", 5, scale=6)  # the same sprite at another scale: a near duplicate
    other = sprite(tmp_path, "other.png", 99)
    c.predict("twins", [handle_file(str(p)) for p in (a, b, other)], "", api_name="/dataset_import")
    groups, note = c.predict("twins", api_name="/dataset_duplicates")
    assert "1 duplicate group" in note
    label = groups["value"] if isinstance(groups, dict) else groups
    images, keep = c.predict("twins", label, api_name="/dataset_duplicate_group")
    assert len(images) == 2
    kept = keep["value"] if isinstance(keep, dict) else keep
    report, summary = c.predict("twins", label, kept, api_name="/dataset_keep_one")
    assert "excluded" in report and "2 included" in summary
    rows = live_studio.studio.store.query("SELECT file, include FROM dataset_images WHERE dataset = 'twins'")
    assert sum(r["include"] for r in rows) == 2 and {r["file"]: r["include"] for r in rows}[kept]
