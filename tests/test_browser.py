"""The Generate tab's main flows in a real browser (headless Chromium driven by Playwright)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from studio.params import GenerateParams

pytestmark = pytest.mark.browser


def test_generate_a_sprite(page, live_studio, tmp_path):
    assert "Demo model" in page.inner_text("#demo-banner")
    page.fill("#prompt textarea", "a blue knight, pixel art")
    page.fill("#seed textarea, #seed input", "31")
    page.locator("#steps input[type=number]").fill("3")
    page.click("#generate-btn")
    page.wait_for_selector("#sprites img", timeout=60_000)
    status = page.inner_text("#gen-status")
    assert "seed(s) 31" in status
    # the gallery shows the stored native PNG, enlarged by the browser with nearest-neighbour
    rendering = page.eval_on_selector("#sprites img", "el => getComputedStyle(el).imageRendering")
    assert rendering in {"pixelated", "crisp-edges"}
    rows = live_studio.studio.history("a blue knight")
    assert rows and rows[0]["seed"] == 31
    page.screenshot(path=str(tmp_path / "generate.png"))


def test_cancel_a_long_job(page, live_studio):
    page.fill("#prompt textarea", "cancel me please")
    page.locator("#steps input[type=number]").fill("100")
    page.click("#generate-btn")
    queue = live_studio.studio.queue
    deadline = time.time() + 30
    while not any(j.status == "running" and j.step >= 2 for j in queue.active()) and time.time() < deadline:
        time.sleep(0.05)
    page.click("#cancel-btn")
    page.wait_for_function("document.querySelector('#gen-status').innerText.includes('Cancelled')",
                           timeout=30_000)
    row = live_studio.studio.store.query("SELECT status FROM jobs WHERE prompt = 'cancel me please'")[0]
    assert row["status"] == "cancelled"


def test_clean_up_an_uploaded_image(page, tmp_path):
    # a 12x10 sprite with a white border, drawn at 16 px per pixel: what a generator outputs
    rng = np.random.default_rng(3)
    colours = np.array([[200, 30, 30], [30, 30, 200], [20, 160, 40]], dtype=np.uint8)
    art = colours[rng.integers(0, 3, size=(10, 12))]
    art[0, :] = art[-1, :] = art[:, 0] = art[:, -1] = 255
    big = np.kron(art, np.ones((16, 16, 1), dtype=np.uint8))
    src = tmp_path / "fake-pixel-art.png"
    Image.fromarray(big).save(src)
    page.click("text=Clean up an image (any generator")
    page.set_input_files("#cleanup-in input[type=file]", str(src))
    page.wait_for_selector("#cleanup-in img", timeout=30_000)
    page.click("#cleanup-btn")
    page.wait_for_selector("#cleanup-out img", timeout=60_000)
    page.wait_for_function("document.body.innerText.includes('12x10 px')", timeout=10_000)
    page.wait_for_function("document.querySelector('#cleanup-out img').dataset.scale", timeout=10_000)
    size = page.eval_on_selector("#cleanup-out img", "el => [el.naturalWidth, el.naturalHeight]")
    assert size == [12, 10]  # the native sprite itself, enlarged only in the browser


def test_drop_png_restores_settings(page, live_studio):
    from studio.params import GenerateParams

    res = live_studio.studio.generate(GenerateParams(prompt="restore me", negative="ugly", seed=4242, steps=5))
    page.set_input_files("#load-png input[type=file]", str(res.images[0].path))
    page.wait_for_function("document.querySelector('#prompt textarea').value === 'restore me'", timeout=30_000)
    assert page.input_value("#seed textarea, #seed input") == "4242"
    assert page.locator("#steps input[type=number]").input_value() == "5"


def test_blind_battle_and_keyboard_vote(page, live_studio):
    from studio.features.compare import Contender
    from studio.params import LoraRef

    arena = live_studio.app.arena
    arena.save_contender(Contender("plain-base"))
    arena.save_contender(Contender("hidden-style", loras=(LoraRef("slime", 0.8),)))
    page.reload()
    page.get_by_role("tab", name="Compare").click()
    picks = page.locator("#picks input")
    for name in ("plain-base", "hidden-style"):
        picks.fill(name)
        picks.press("Enter")
    page.locator("#battle-steps input[type=number]").fill("2")
    page.click("#fight")
    page.wait_for_selector("#battle-images img", timeout=60_000)
    page.wait_for_function("document.querySelector('#battle-info').innerText.includes('vote to reveal')",
                           timeout=30_000)
    area = page.inner_text("#battle-area")
    assert "plain-base" not in area and "hidden-style" not in area
    page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a text box
    page.keyboard.press("1")
    page.wait_for_function("document.querySelector('#battle-info').innerText.includes('hidden-style')",
                           timeout=30_000)
    assert arena.store.query("SELECT choice FROM votes")[-1]["choice"] == "A"
    # opening the tab draws the leaderboard with that vote in it, no Refresh needed
    page.reload()
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#board-ratings .main-svg", timeout=20_000)
    assert "hidden-style" in page.inner_text("#board-ratings")


def test_workflow_picker_fills_the_form_and_runs(page, live_studio):
    page.click("text=Workflow")
    box = page.locator("#workflow input")
    box.fill("walk_cycle")
    box.press("Enter")
    page.wait_for_function("document.querySelector('#prompt textarea').value.includes('walking')",
                           timeout=30_000)
    assert "subject=a knight" in page.input_value("#wf-values textarea")
    page.fill("#wf-values textarea", "subject=a red slime\nstyle=8-bit")
    page.locator("#steps input[type=number]").fill("2")
    page.click("#wf-run")
    page.wait_for_function("document.querySelector('#gen-status').innerText.includes('workflow walk_cycle')",
                           timeout=120_000)
    assert page.locator("#sprites img").count() >= 1
    row = live_studio.studio.store.query("SELECT kind, prompt FROM jobs ORDER BY seq DESC LIMIT 1")[0]
    assert row["kind"] == "sheet" and "a red slime" in row["prompt"]


def test_dataset_import_caption_and_keyboard(page, live_studio, tmp_path):
    files = []
    for i in range(3):
        art = np.full((10, 10, 3), 255, dtype=np.uint8)
        art[2:8, 2:8] = [(200, 30, 30), (30, 30, 200), (30, 160, 40)][i]
        files.append(tmp_path / f"gem_{i}.png")
        Image.fromarray(np.kron(art, np.ones((16, 16, 1), dtype=np.uint8))).save(files[-1])
    page.get_by_role("tab", name="Dataset").click()
    page.fill("#ds-new-name textarea, #ds-new-name input", "gems")
    page.fill("#ds-new-trigger textarea, #ds-new-trigger input", "gm")
    page.click("#ds-create")
    page.wait_for_function("document.querySelector('#ds-summary').innerText.includes('gems')", timeout=30_000)
    page.set_input_files("#ds-uploads input[type=file]", [str(f) for f in files])
    page.wait_for_timeout(1000)
    page.click("#ds-import")
    page.wait_for_function("document.querySelector('#ds-import-report').innerText.includes('added 3')",
                           timeout=60_000)
    page.wait_for_selector("#ds-grid img", timeout=30_000)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")  # nothing selected yet: j shows the first image
    page.wait_for_function("document.querySelector('#ds-current input, #ds-current textarea').value !== ''",
                           timeout=30_000)
    first = page.input_value("#ds-current input, #ds-current textarea")
    page.fill("#ds-caption textarea", "gm, a shiny gem")
    page.locator("body").click(position={"x": 5, "y": 5})  # leaving the box saves the caption
    page.wait_for_function("document.querySelector('#ds-summary').innerText.includes('2 without caption')",
                           timeout=30_000)
    page.keyboard.press("j")  # next image
    page.wait_for_function(
        f"document.querySelector('#ds-current input, #ds-current textarea').value !== '{first}'", timeout=30_000)
    rows = live_studio.studio.store.query("SELECT file, caption FROM dataset_images WHERE dataset = 'gems'")
    assert {r["file"]: r["caption"] for r in rows}[first] == "gm, a shiny gem"


def test_train_a_lora_and_watch_it(page, live_studio, tmp_path):
    from studio.features import dataset_library as datasets

    ds = datasets.create(live_studio.studio, "browser-blobs", trigger="bb")
    paths = []
    for i in range(2):
        art = np.full((10, 10, 3), 255, dtype=np.uint8)
        art[2:8, 2:8] = [(200, 30, 30), (30, 30, 200)][i]
        paths.append(tmp_path / f"b{i}.png")
        Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(paths[-1])
    ds.import_files(paths)
    page.reload()
    page.get_by_role("tab", name="Train").click()
    assert page.locator("#tr-rank input").input_value() == "32"  # the form opens filled from 'balanced'
    for elem, value in (("#tr-dataset", "browser-blobs"), ("#tr-preset", "fast")):
        box = page.locator(f"{elem} input")
        box.fill(value)
        box.press("Enter")
    page.wait_for_function("document.querySelector('#tr-rank input').value === '16'", timeout=10_000)  # 'fast'
    page.locator("#tr-steps input").fill("3")
    page.locator("#tr-resolution input").fill("64")
    page.fill("#tr-name textarea, #tr-name input", "browser-lora")
    page.click("#tr-start")
    page.wait_for_function("document.querySelector('#tr-status').innerText.includes('done')", timeout=180_000)
    assert "step 3/3" in page.inner_text("#tr-status")
    assert "browser-lora" in {lo["name"] for lo in live_studio.studio.loras()}


def test_metrics_tab_plots_on_opening(page, live_studio):
    """No Refresh click needed: opening the tab draws the job and benchmark charts (plotly SVGs)."""
    live_studio.studio.generate(GenerateParams(prompt="for the metrics", steps=2, width=64, height=64))
    page.get_by_role("tab", name="Metrics").click()
    for elem in ("#metrics-times", "#metrics-outcomes", "#metrics-goals"):
        page.wait_for_selector(f"{elem} .main-svg", timeout=20_000)
    assert "goal" in page.inner_text("#metrics-goals")
