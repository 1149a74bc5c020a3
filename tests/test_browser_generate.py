"""The Generate tab as a newcomer meets it (issue 15), in headless Chromium at laptop sizes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from studio.params import GenerateParams
from tests.conftest import open_studio

pytestmark = pytest.mark.browser

SCALE_JS = """el => [el.naturalWidth, el.naturalHeight, el.getBoundingClientRect().width,
                     el.getBoundingClientRect().height, getComputedStyle(el).imageRendering,
                     getComputedStyle(el).objectFit]"""


def _whole_number_scale(info) -> float:
    nat_w, nat_h, shown_w, shown_h, rendering, fit = info
    assert rendering in {"pixelated", "crisp-edges"} and fit == "fill"  # the picture fills its enlarged box
    k = shown_w / nat_w
    assert abs(k - round(k)) < 1e-3 and abs(shown_h / nat_h - k) < 1e-3, info
    return round(k)


def test_lists_are_read_again_on_reload(browser, live_studio):
    """Finding 1: 'Add LoRA' was empty until '↻ models' was clicked, for LoRAs added after the server started."""
    shutil.copy(live_studio.studio.registry.lora("slime").path,
                live_studio.studio.settings.loras_dir / "late-arrival.safetensors")
    page = open_studio(browser, live_studio.url)
    page.click("#lora-pick input")
    page.wait_for_selector("ul[role=listbox] li", timeout=10_000)
    options = page.locator("ul[role=listbox] li").all_inner_texts()
    assert "late-arrival" in " ".join(options) and "slime" in " ".join(options)
    page.context.close()


def test_button_and_result_share_a_laptop_screen(browser, live_studio):
    """Finding 2: at 1280x720 the Generate button and the result it makes are on screen together."""
    page = open_studio(browser, live_studio.url, 1280, 720)
    page.fill("#prompt textarea", "a green potion")
    page.locator("#steps input[type=number]").fill("2")
    page.click("#generate-btn")
    page.wait_for_selector("#sprites img", timeout=60_000)
    for selector in ("#generate-btn", "#sprites img"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280, selector
    page.context.close()


def test_seed_box_is_blank_after_a_run_unless_reused(page, live_studio):
    """Finding 4: the seed just used stayed in the box, so the next Generate repeated the same images."""
    page.fill("#prompt textarea", "a red gem")
    page.locator("#steps input[type=number]").fill("2")
    page.fill("#seed textarea, #seed input", "77")
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#gen-status').innerText.includes('seed(s) 77')",
                           timeout=60_000)
    assert page.input_value("#seed textarea, #seed input") == ""
    page.click("#reuse-seed input")
    page.click("#generate-btn")
    page.wait_for_function("document.querySelector('#gen-status').innerText.includes('seed(s)')"
                           " && !document.querySelector('#gen-status').innerText.includes('seed(s) 77')",
                           timeout=60_000)
    used = page.inner_text("#gen-status").split("seed(s) ")[1].split(" ")[0]
    assert page.input_value("#seed textarea, #seed input") == used


def test_sprites_are_shown_whole_at_a_whole_number_scale(page, live_studio):
    """Finding 5: a single result was a 700 px square with the sprite as a band; thumbnails cut tall sprites."""
    page.fill("#prompt textarea", "a tall tower")
    page.locator("#steps input[type=number]").fill("2")
    page.fill("#gen-sprite-w input", "8")
    page.fill("#gen-sprite-h input", "20")
    page.click("#generate-btn")
    page.wait_for_selector("#sprites img", timeout=60_000)
    page.wait_for_function("document.querySelector('#sprites img').dataset.scale", timeout=10_000)
    info = page.eval_on_selector("#sprites img", SCALE_JS)
    assert info[:2] == [8, 20] and _whole_number_scale(info) >= 4
    shown = page.eval_on_selector("#sprites img", "el => el.getBoundingClientRect()")
    visible = page.eval_on_selector("#sprites .grid-wrap", "el => el.getBoundingClientRect()")  # the scroll box
    assert visible["top"] - 0.5 <= shown["top"] and shown["bottom"] <= visible["bottom"] + 0.5  # whole, not cut
    assert visible["left"] - 0.5 <= shown["left"] and shown["right"] <= visible["right"] + 0.5


def test_clean_up_a_sample_shows_it_large_and_names_the_download(page):
    """Finding 3 and 'first five minutes': a sample at a click, the sprite at >= 6x, a named native download."""
    page.click("text=Clean up an image (any generator")
    page.click("#cleanup-sample")
    page.wait_for_function("document.querySelector('#cleanup-info').innerText.includes('px')", timeout=60_000)
    page.wait_for_function("document.querySelector('#cleanup-out img') &&"
                           " document.querySelector('#cleanup-out img').dataset.scale", timeout=10_000)
    info = page.eval_on_selector("#cleanup-out img", SCALE_JS)
    assert _whole_number_scale(info) >= 6
    name = page.inner_text("#cleanup-file").replace("\n", "")
    assert "-sprite-" in name and f"{info[0]}x{info[1]}" in name
    page.wait_for_selector("#cleanup-lattice img", timeout=10_000)  # the grid it found, over the input


def test_clean_up_an_upload_at_a_whole_number_scale(page, tmp_path):
    rng = np.random.default_rng(3)
    colours = np.array([[200, 30, 30], [30, 30, 200], [20, 160, 40]], dtype=np.uint8)
    art = colours[rng.integers(0, 3, size=(10, 12))]
    art[0, :] = art[-1, :] = art[:, 0] = art[:, -1] = 255
    src = tmp_path / "fake-pixel-art.png"
    Image.fromarray(np.kron(art, np.ones((16, 16, 1), dtype=np.uint8))).save(src)
    page.click("text=Clean up an image (any generator")
    page.set_input_files("#cleanup-in input[type=file]", str(src))
    page.wait_for_selector("#cleanup-in img", timeout=30_000)
    page.click("#cleanup-btn")
    page.wait_for_function("document.querySelector('#cleanup-info').innerText.includes('12x10 px')",
                           timeout=60_000)
    page.wait_for_function("document.querySelector('#cleanup-out img').dataset.scale", timeout=10_000)
    info = page.eval_on_selector("#cleanup-out img", SCALE_JS)
    assert info[:2] == [12, 10] and _whole_number_scale(info) >= 6
    assert "fake-pixel-art-sprite-12x10.png" in page.inner_text("#cleanup-file").replace("\n", "")


def test_cancel_is_quiet_while_nothing_runs(page):
    """Smaller finding: Cancel was bright red while nothing ran."""
    colour = page.eval_on_selector("#cancel-btn", "el => getComputedStyle(el).backgroundColor")
    primary = page.eval_on_selector("#generate-btn", "el => getComputedStyle(el).backgroundColor")
    r, g, b = (int(v) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])
    assert not (r > 180 and g < 90 and b < 90) and colour != primary


def test_history_shows_earlier_sprites_after_a_reload(browser, live_studio):
    live_studio.studio.generate(GenerateParams(prompt="a remembered shield", seed=3, steps=1))
    page = open_studio(browser, live_studio.url)
    page.click("text=History")
    page.wait_for_selector("#history img", timeout=10_000)
    assert "a remembered shield" in page.inner_text("#history")
    page.context.close()
