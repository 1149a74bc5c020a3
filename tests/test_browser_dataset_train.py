"""The Dataset and Train tabs as a game developer meets them (issue 15), in headless Chromium at 1440x900.

Data is prepared through the core (datasets, a tiny training run) after the server started, as it is when a
person works in one tab and reloads another; what is tested is what the page shows.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from studio.features import dataset_library as datasets
from studio.features import training_runs
from tests.conftest import open_studio

pytestmark = pytest.mark.browser

RAW_BAR = ("\rLoading weights:   0%|          | 0/85 [00:00<?, ?it/s]\x1b[A\rLoading weights: 100%|##########| "
           "85/85 [00:00<00:00, 22412.51it/s]\n")


def make_dataset(studio, tmp_path, name: str, n: int = 3):
    ds = datasets.create(studio, name, trigger="ux")
    paths = []
    for i in range(n):
        art = np.full((10, 10, 3), 255, dtype=np.uint8)
        art[2:8, 2:8] = [(200, 30, 30), (30, 30, 200), (30, 160, 40)][i % 3]
        art[4, 4 + i % 3] = (240, 220, 60)  # no two alike: not a duplicate group
        paths.append(tmp_path / f"{name}_{i}.png")
        Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(paths[-1])
    ds.import_files(paths)
    datasets.sync(studio, ds)
    return ds


@pytest.fixture(scope="module")
def trained(live_studio, tmp_path_factory):
    """A dataset and a finished 2-step run, made through the core after the server started. A library's raw
    progress bar is added to its log, as one writes it (carriage returns, a cursor escape)."""
    studio = live_studio.studio
    make_dataset(studio, tmp_path_factory.mktemp("ux"), "ux-train", 2)
    h = training_runs.start(studio, "ux-train", "fast", steps=2, rank=2, resolution=64, sample_steps=2,
                            output_name="ux-lora")
    status = h.wait(240)
    assert status["state"] == "done", (status, training_runs.log_tail(studio, h.run_dir.name))
    with open(h.run_dir / "log.txt", "a", encoding="utf-8") as fh:
        fh.write(RAW_BAR)
    return h.run_dir.name


@pytest.fixture
def pg(browser, live_studio):
    page = open_studio(browser, live_studio.url, 1440, 900)
    yield page
    page.context.close()


def options(page, elem: str) -> list[str]:
    """The choices a dropdown offers (opened, read, closed)."""
    page.locator(f"{elem} input").click()
    page.wait_for_selector(f"{elem} ul.option-list li", timeout=10_000)
    found = [t.replace("✓", "").strip() for t in page.locator(f"{elem} ul.option-list li").all_inner_texts()]
    page.keyboard.press("Escape")
    return found


def choose(page, elem: str, value: str) -> None:
    box = page.locator(f"{elem} input")
    box.fill(value)
    box.press("Enter")


def current_file(page) -> str:
    return page.input_value("#ds-current input, #ds-current textarea")


def test_a_reload_fills_the_dataset_and_train_lists(pg, live_studio, trained):
    """Finding 1: lists were read once at server start; after a reload they were empty though the data
    existed."""
    pg.reload()
    pg.wait_for_selector("#prompt textarea", timeout=30_000)
    pg.get_by_role("tab", name="Dataset").click()
    pg.wait_for_selector("#ds-grid img", timeout=20_000)  # a dataset is chosen and its images are shown
    shown = pg.locator("#ds-name input").input_value()
    assert shown in datasets.names(live_studio.studio)
    n = len(datasets.open_dataset(live_studio.studio, shown).records)
    assert pg.locator("#ds-grid img").count() == n and f"{n} images" in pg.inner_text("#ds-summary")
    assert "ux-train" in options(pg, "#ds-name")
    pg.get_by_role("tab", name="Train").click()
    pg.wait_for_function("document.querySelector('#tr-run input').value !== ''", timeout=20_000)
    assert pg.locator("#tr-run input").input_value() == trained  # the newest run, with its status
    pg.wait_for_function(f"document.querySelector('#tr-status').innerText.includes('{trained}')", timeout=20_000)
    assert trained in options(pg, "#tr-run")
    assert "ux-train" in options(pg, "#tr-dataset")


def test_autocaption_and_next_image_keep_the_tab_in_one_state(pg, live_studio, tmp_path):
    """Finding 7: after Auto-caption the summary and the caption box were stale; after `j` the grid's preview
    showed one image while 'Selected image' named the next."""
    studio = live_studio.studio
    make_dataset(studio, tmp_path, "ux-captions", 3)
    pg.reload()
    pg.wait_for_selector("#prompt textarea", timeout=30_000)
    pg.get_by_role("tab", name="Dataset").click()
    choose(pg, "#ds-name", "ux-captions")
    pg.wait_for_function("document.querySelector('#ds-summary').innerText.includes('ux-captions')",
                         timeout=20_000)
    assert "3 without caption" in pg.inner_text("#ds-summary")
    pg.wait_for_selector("#ds-grid img", timeout=20_000)
    pg.locator("#ds-grid img").first.click()  # pick the first image in the grid
    pg.wait_for_function("document.querySelector('#ds-current input, #ds-current textarea').value !== ''",
                         timeout=20_000)
    first = current_file(pg)
    pg.locator("body").click(position={"x": 5, "y": 5})
    pg.keyboard.press("j")
    pg.wait_for_function(
        f"document.querySelector('#ds-current input, #ds-current textarea').value !== '{first}'", timeout=20_000)
    pg.wait_for_timeout(1000)  # let every output of the step land
    selected = current_file(pg)
    # every picture the grid singles out (an enlarged preview, a highlighted thumbnail) is the selected one
    singled_out = pg.evaluate("""() => Array.from(document.querySelectorAll(
        '#ds-grid .selected, #ds-grid .preview img, #ds-grid [aria-selected=true]'))
        .filter(el => el.offsetParent !== null)
        .map(el => (el.getAttribute('alt') || el.innerText || '').trim())""")
    assert singled_out and all(name.endswith(selected) for name in singled_out), (singled_out, selected)
    assert pg.locator("#ds-preview img").count() == 1  # the prepared preview of that image
    pg.get_by_text("Captions in bulk").click()
    pg.click("#ds-autocaption")
    pg.wait_for_function("document.querySelector('#ds-summary').innerText.includes('0 without caption')",
                         timeout=30_000)
    ds = datasets.open_dataset(studio, "ux-captions")
    written = {r.file: r.caption for r in ds.records}
    assert all(written.values())
    pg.wait_for_function("document.querySelector('#ds-caption textarea').value !== ''", timeout=10_000)
    assert pg.input_value("#ds-caption textarea") == written[selected]
    assert current_file(pg) == selected


def log_text(page) -> str:
    return page.get_by_label("Last log lines").input_value()


def lr_axis(page):
    """The range of the loss plot's learning-rate axis, as plotly drew it (None before it is drawn)."""
    return page.evaluate("""() => {
        const label = Array.from(document.querySelectorAll('label')).find(
            el => el.textContent.trim() === 'Loss and learning rate');
        const plot = label && label.closest('.block').querySelector('.js-plotly-plot');
        return plot && plot._fullLayout && plot._fullLayout.yaxis2 ? plot._fullLayout.yaxis2.range : null;
    }""")


def test_the_train_log_shows_each_end_phase_as_text(pg, live_studio, trained):
    """Findings 6 and 9: after the last step the log says what happens (sampling, checkpoint, export, with
    their times), and it shows no escape codes or carriage-return progress bars."""
    pg.get_by_role("tab", name="Train").click()
    choose(pg, "#tr-run", trained)
    pg.wait_for_function(f"document.querySelector('#tr-status').innerText.includes('{trained}')", timeout=20_000)
    pg.wait_for_timeout(1000)
    log = log_text(pg)
    problems = [f"no line for {phase!r}" for phase in (
        r"sampling at step 2: 1 image\(s\), 2 steps at 64x64 px in \d+\.\d s",
        r"checkpoint step 2 saved in \d+\.\d s",
        r"LoRA exported in \d+\.\d s \(\d+\.\d s after the last step\)") if not re.search(phase, log)]
    problems += [f"{what} in the log" for what, bad in (("an escape code", "\x1b"), ("a carriage return", "\r"),
                                                        ("a progress bar", "%|"), ("a progress bar", "it/s]"))
                 if bad in log]
    assert not problems, (problems, log)


def test_train_status_stays_readable(pg, live_studio, trained):
    """Finding 9: the Compare confirmation was overwritten by the 3-second refresh, the refresh flashed
    'queue: 1/1 | 0.4/0.5s' over the status, and the lr axis ran -1..1 with the lr a flat line at 0."""
    pg.get_by_role("tab", name="Train").click()
    choose(pg, "#tr-run", trained)
    pg.wait_for_function(f"document.querySelector('#tr-status').innerText.includes('{trained}')", timeout=20_000)
    pg.wait_for_function("document.querySelector('.js-plotly-plot') !== null", timeout=20_000)
    problems = []
    low, high = lr_axis(pg)
    lr = max(r["lr"] for r in training_runs.loss_curve(live_studio.studio, trained))
    if not (-lr <= low <= lr and lr <= high <= 4 * lr):
        problems.append(f"the lr axis runs {low:.3g}..{high:.3g} for an lr of {lr:.3g}")
    # what a person sees over the status: a progress overlay (Gradio's status tracker) that is not transparent
    pg.evaluate("""() => {
        window.statusTexts = [];
        const el = document.querySelector('#tr-status');
        new MutationObserver(() => {
            const overlay = el.querySelector('[data-testid=status-tracker]');
            if (overlay && overlay.innerText.trim() && parseFloat(getComputedStyle(overlay).opacity) > 0)
                window.statusTexts.push(overlay.innerText);
        }).observe(el, {childList: true, subtree: true, characterData: true, attributes: true});
    }""")
    pg.click("#tr-compare")
    pg.wait_for_function("document.body.innerText.includes('Saved contenders')", timeout=20_000)
    pg.wait_for_timeout(5_000)  # more than one refresh of the timer
    if "Saved contenders" not in pg.inner_text("body"):
        problems.append("the Compare confirmation is gone 5 s later")
    flashes = pg.evaluate("window.statusTexts")
    if flashes:  # e.g. "queue: 1/1 | 0.4/0.5s" every 3 s
        problems.append(f"progress overlays over the status: {sorted(set(flashes))[:3]}")
    if trained not in pg.inner_text("#tr-status"):
        problems.append("the status no longer names the run")
    assert not problems, problems
