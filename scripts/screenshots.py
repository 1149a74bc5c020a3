"""Screenshots of every tab for the README, from a real studio on the demo model, in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]      (or ./scripts/screenshots.sh)

A throwaway studio is filled the way a first afternoon would fill it (a few sprites, a clean-up of a sample,
a dataset, a short training run, two contenders and a vote) and each tab is captured at 1280x800. The demo
model draws noise, so the pictures show the studio's layout and what each tab offers, not art; the clean-up
before/after strip is real, since the pixel engine needs no weights.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.pixel import PixelParams, load_rgba, pixelate  # noqa: E402
from studio.features import dataset_library, training_runs  # noqa: E402
from studio.features.compare import BattleSettings, Contender  # noqa: E402
from studio.frontends.assemble import App  # noqa: E402
from studio.frontends.server import create_app  # noqa: E402
from studio.params import GenerateParams  # noqa: E402
from studio.settings import Settings  # noqa: E402
from tabs.cleanup import samples  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def fill(app: App, work: Path) -> None:
    """A first afternoon's worth of data, made through the core (as the UI would)."""
    studio = app.studio
    studio.generate(GenerateParams(prompt="a red slime, pixel art", seed=7, steps=4, count=4))
    studio.clean_up(samples()["tree"], PixelParams())
    art = work / "art"
    art.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        native = (rng.integers(0, 4, (12, 10, 1)) * np.array([[[60, 40, 20]]])).astype(np.uint8)
        Image.fromarray(np.repeat(np.repeat(native, 8, 0), 8, 1)).save(art / f"blob-{i}.png")
    ds = dataset_library.create(studio, "blobs", trigger="blb")
    ds.import_folder(art)
    dataset_library.sync(studio, ds)
    run = training_runs.start(studio, "blobs", "fast", steps=4, rank=4, sample_every=2, checkpoint_every=0)
    run.wait(600)
    app.arena.save_contender(Contender("base"))
    app.arena.save_contender(Contender("base @ 10 steps", steps=10))
    job = app.arena.submit_battle(["base", "base @ 10 steps"], "a blue knight", settings=BattleSettings(steps=3))
    battle = studio.queue.wait(job, 300).result
    app.arena.vote(battle, "A", "screenshots")


def serve(app: App) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            if httpx.get(url + "api/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the studio did not start")


def capture(url: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(url)
        page.wait_for_selector("#prompt textarea", timeout=60_000)
        page.fill("#prompt textarea", "a red slime, pixel art")
        page.locator("#steps input[type=number]").fill("4")
        page.click("#generate-btn")
        page.wait_for_selector("#sprites img", timeout=120_000)
        time.sleep(1)
        page.screenshot(path=str(out / "generate.png"))
        page.click("text=Clean up an image (any generator")
        page.click("#cleanup-sample")
        page.wait_for_function("document.querySelector('#cleanup-info').innerText.includes('px')", timeout=60_000)
        page.locator("#cleanup-btn").scroll_into_view_if_needed()
        time.sleep(1)
        page.screenshot(path=str(out / "cleanup.png"))
        for tab in ("Compare", "Dataset", "Train", "Metrics"):
            page.evaluate("window.scrollTo(0, 0)")
            page.get_by_role("tab", name=tab).click()
            time.sleep(3)  # lists and plots fill in when the tab opens
            page.screenshot(path=str(out / f"{tab.lower()}.png"))
        browser.close()


def before_after(out: Path, height: int = 256) -> None:
    """Each sample render beside its clean-up, the sprite enlarged by a whole number to the same height."""
    tiles = []
    for path in samples().values():
        render = Image.open(path).convert("RGBA")
        render = render.resize((render.width * height // render.height, height), Image.Resampling.LANCZOS)
        sprite = pixelate(load_rgba(path), PixelParams()).image
        k = max(1, height // sprite.height)
        tiles += [render, sprite.resize((sprite.width * k, sprite.height * k), Image.Resampling.NEAREST)]
    strip = Image.new("RGBA", (sum(t.width for t in tiles) + 16 * len(tiles), height), (255, 255, 255, 255))
    x = 0
    for tile in tiles:
        strip.alpha_composite(tile, (x, (height - tile.height) // 2))
        x += tile.width + 16
    strip.save(out / "cleanup-before-after.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="dgxp-shots-") as tmp:
        work = Path(tmp)
        with App(Settings(data_dir=work / "data", models_dir=work / "models")) as app:
            fill(app, work)
            server, url = serve(app)
            try:
                capture(url, out, chromium)
            finally:
                server.should_exit = True
    before_after(out)
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
