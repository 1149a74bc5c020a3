"""The Compare and Metrics tabs as a game developer meets them (issue 15), in Chromium at 1440x900.

Data is prepared through the core (contenders, battles and votes through `app.arena`, clean-ups and training
runs through the studio) wherever the UI is not what is tested; every battle renders 1 step on the tiny model.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pipelines.pixel import PixelParams
from studio.features import dataset_library as datasets
from studio.features import training_runs
from studio.features.compare import BattleSettings, Contender
from tests.conftest import open_studio

pytestmark = pytest.mark.browser

W, H = 1440, 900

# A Gradio Dataframe as {header: cell text} rows (it draws a header table and a virtual list of grid rows).
GRID_ROWS = """(grid) => {
  const heads = Array.from(grid.querySelectorAll('th[role=columnheader]'))
    .map((th) => th.getAttribute('title') || th.innerText.trim());
  return Array.from(grid.querySelectorAll('[role=row].virtual-row')).map((row) => {
    const cells = Array.from(row.querySelectorAll('[role=gridcell]')).map((c) => c.innerText.trim());
    return Object.fromEntries(heads.map((h, i) => [h, cells[i]]));
  });
}"""


@pytest.fixture
def wide(browser, live_studio):
    pg = open_studio(browser, live_studio.url, W, H)
    yield pg
    pg.context.close()


def _contenders(arena, *names: str) -> None:
    for name in names:
        arena.save_contender(Contender(name))


def _battle(arena, studio, names, prompt="a small gem", vote: str | None = None) -> str:
    job = arena.submit_battle(list(names), prompt, seed=1, settings=BattleSettings(steps=1))
    bid = studio.result(studio.queue.wait(job, 180))
    if vote:
        arena.vote(bid, vote)
    return bid


def _open_compare(page, names, steps: int = 1) -> None:
    page.reload()
    page.wait_for_selector("#prompt textarea", timeout=30_000)
    page.get_by_role("tab", name="Compare").click()
    picks = page.locator("#picks input")
    for name in names:
        picks.fill(name)
        picks.press("Enter")
    page.locator("#battle-steps input[type=number]").fill(str(steps))


def _number(text: str | None) -> float:
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return 0.0


def test_reload_fills_the_contender_picker(wide, live_studio):
    """Finding 1: contenders saved after the server started are in the picker after a reload."""
    _contenders(live_studio.app.arena, "picker-one", "picker-two")
    wide.reload()
    wide.wait_for_selector("#prompt textarea", timeout=30_000)
    wide.get_by_role("tab", name="Compare").click()
    wide.locator("#picks input").click()
    wide.wait_for_timeout(500)
    options = [t.strip() for t in wide.locator("#picks ul.option-list li").all_inner_texts()]
    assert {"picker-one", "picker-two"} <= set(options), options


def test_blind_battle_slots_are_labelled_on_screen(wide, live_studio):
    """Finding 5: in blind mode each picture has its slot letter on screen, the sprite is shown whole."""
    _contenders(live_studio.app.arena, "label-left", "label-right")
    _open_compare(wide, ["label-left", "label-right"])
    assert wide.locator("#blind input").is_checked()
    wide.click("#fight")
    wide.wait_for_selector("#battle-images img", timeout=120_000)
    wide.wait_for_function("document.querySelector('#battle-info').innerText.includes('vote to reveal')",
                           timeout=30_000)
    labels = wide.locator("#battle-area [id^=slot-label-]:visible")
    assert [t.strip() for t in labels.all_inner_texts()] == ["A", "B"]
    for letter in "AB":
        label = wide.locator(f"#slot-label-{letter.lower()}")
        slot = wide.locator(f"#slot-{letter.lower()}")
        slot.scroll_into_view_if_needed()
        wide.wait_for_timeout(300)
        box = label.bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= W and box["y"] + box["height"] <= H
        # the letter is drawn, not covered: the element at its centre is the label (or inside it)
        shown = wide.evaluate(
            "([x, y, id]) => { const el = document.elementFromPoint(x, y); return !!el && !!el.closest('#' + id); }",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, f"slot-label-{letter.lower()}"])
        assert shown, f"label {letter} is covered"
        # its sprite sits under it, whole (enlarged by a whole number, not cut by its frame)
        img = slot.locator("img")
        fit = img.evaluate("el => [el.naturalWidth, el.naturalHeight, el.getBoundingClientRect().width, "
                           "el.getBoundingClientRect().height, Number(el.dataset.scale || 0)]")
        nw, nh, rw, rh, k = fit
        assert k >= 1 and (rw, rh) == (nw * k, nh * k), fit
        img_box, slot_box = img.bounding_box(), slot.bounding_box()
        assert img_box["y"] >= box["y"] + box["height"] - 1
        assert slot_box["x"] - 1 <= img_box["x"] and img_box["x"] + img_box["width"] <= slot_box["x"] + slot_box["width"] + 1
        assert img_box["y"] + img_box["height"] <= H
    assert "label-left" not in wide.inner_text("#battle-area")
    wide.screenshot(path=str(live_studio.studio.settings.data_dir / "compare-slots.png"))


def test_leaderboard_changes_after_a_vote(wide, live_studio):
    """Finding 8: the leaderboard (plot and table) is redrawn after every vote, numbers rounded for people."""
    arena, studio = live_studio.app.arena, live_studio.studio
    _contenders(arena, "board-x", "board-y")
    _battle(arena, studio, ["board-x", "board-y"], vote="A")  # a board to start from
    _open_compare(wide, ["board-x", "board-y"])
    wide.wait_for_selector("#board-ratings .main-svg", timeout=30_000)
    before = wide.inner_text("#board-ratings")
    votes_before = len(arena.store.query("SELECT * FROM votes"))
    wide.click("#fight")
    wide.wait_for_selector("#battle-images img", timeout=120_000)
    wide.wait_for_function("document.querySelector('#battle-info').innerText.includes('vote to reveal')",
                           timeout=30_000)
    wide.locator("body").click(position={"x": 5, "y": 5})  # the page has focus, not a text box
    wide.keyboard.press("1")
    wide.wait_for_function("document.querySelector('#battle-info').innerText.includes('board-')", timeout=30_000)
    assert len(arena.store.query("SELECT * FROM votes")) == votes_before + 1
    with contextlib.suppress(PlaywrightTimeout):  # the assertion below says what did not happen
        wide.wait_for_function("(b) => { const t = document.querySelector('#board-ratings').innerText; "
                               "return t !== b && !/processing|pending|queue/.test(t); }", arg=before,
                               timeout=20_000)
    after = wide.inner_text("#board-ratings")
    assert after != before, "the leaderboard did not change after the vote"
    # the table as people read it: whole Elo points, percent win rates, ranks or a dash, words for status
    table = wide.inner_text("#board-table")
    assert not re.search(r"\d+\.\d{3,}", table), table
    assert "%" in table and "—" in table and "provisional" in table
    assert re.search(r"\b\d{3,4}–\d{3,4}\b", table), table
    assert "Rank —" in wide.inner_text("#board-note")
    # and the slots now carry the contenders' names
    wide.wait_for_function("document.querySelector('#slot-label-a').innerText.includes('board-')", timeout=10_000)


def test_next_battle_uses_the_typed_prompt(wide, live_studio):
    """Finding 8: "Next battle" renders the prompt in the box, not a random one from the set."""
    arena = live_studio.app.arena
    _contenders(arena, "next-one", "next-two")
    _open_compare(wide, ["next-one", "next-two"])
    typed = "a purple mushroom knight"
    wide.fill("#battle-prompt textarea", typed)
    before = {r["id"] for r in arena.store.query("SELECT id FROM battles")}
    wide.locator("body").click(position={"x": 5, "y": 5})
    wide.click("#next-battle")
    wide.wait_for_selector("#battle-images img", timeout=120_000)
    wide.wait_for_function("document.querySelector('#battle-info').innerText.includes('vote to reveal')",
                           timeout=30_000)
    new = [r for r in arena.store.query("SELECT id, prompt, prompt_set FROM battles") if r["id"] not in before]
    assert len(new) == 1
    assert new[0]["prompt"] == typed
    assert new[0]["prompt_set"] is None


def test_metrics_shows_battles_cleanups_and_training_runs(wide, live_studio, tmp_path):
    """Finding 10: a battle with its seconds and 2 images, a clean-up and a training run are rows."""
    arena, studio = live_studio.app.arena, live_studio.studio
    _contenders(arena, "metric-a", "metric-b")
    _battle(arena, studio, ["metric-a", "metric-b"], prompt="a metrics gem")
    art = np.full((10, 10, 3), 255, dtype=np.uint8)
    art[2:8, 2:8] = (200, 30, 30)
    src = tmp_path / "gem.png"
    Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(src)
    studio.clean_up(src, PixelParams())
    folder = tmp_path / "ds"
    folder.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        art[2:8, 2:8] = colour
        Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(folder / f"blob{i}.png")
    ds = datasets.create(studio, "metrics-blobs", trigger="mb")
    ds.import_folder(folder)
    run = training_runs.start(studio, ds.name, "fast", steps=2, rank=2, resolution=64, sample_every=0,
                              checkpoint_every=0)
    assert run.wait(300).get("state") == "done", run.status()

    wide.reload()
    wide.wait_for_selector("#prompt textarea", timeout=30_000)
    wide.get_by_role("tab", name="Metrics").click()
    grid = wide.locator("[role=grid]:visible")
    grid.locator("[role=row].virtual-row").first.wait_for(timeout=30_000)
    wide.wait_for_timeout(500)
    rows = grid.evaluate(GRID_ROWS)
    battles = [r for r in rows if r.get("kind") == "battle" and r.get("status") == "done"]
    assert battles, rows
    assert all(_number(r.get("seconds")) > 0 for r in battles), battles
    assert all(r.get("images") == "2" for r in battles), battles
    cleanups = [r for r in rows if r.get("kind") == "cleanup"]
    assert cleanups and cleanups[0]["status"] == "done" and cleanups[0]["images"] == "1", rows
    runs = [r for r in rows if r.get("kind") == "training"]
    assert runs and runs[0]["status"] == "done" and _number(runs[0]["seconds"]) > 0, rows
    # every number rounded for people: no 0.795236-style floats anywhere in the table
    assert not any(re.search(r"\d+\.\d{3,}", str(v)) for r in rows for v in r.values()), rows
