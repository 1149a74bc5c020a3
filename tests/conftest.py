"""Shared fixtures: the real tiny SDXL (built once per session), a fresh studio per test, a trained LoRA.

Nothing here mocks a pipeline: the demo model is a real `StableDiffusionXLPipeline` saved with
`save_pretrained` and loaded back through the studio's own loading code.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # a 2-core box with a busy neighbour is 10x slower with 2 threads


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    from studio.sdxl.demo import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.mktemp("demo") / "demo-tiny")


def make_settings(root: Path, demo_model: Path, **kw):
    from studio.settings import Settings

    models = root / "models"
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "loras").mkdir(parents=True, exist_ok=True)
    link = models / "checkpoints" / "demo-tiny"
    if not link.exists():
        link.symlink_to(demo_model, target_is_directory=True)
    return Settings(data_dir=root / "data", models_dir=models, **kw)


def fresh_tiny_pipe():
    """A new in-memory tiny SDXL pipeline with progress bars off: for tests that add adapters or switch
    padding on it, so each module gets its own."""
    from studio.sdxl.demo import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def settings(tmp_path, demo_model):
    return make_settings(tmp_path, demo_model)


@pytest.fixture
def app(settings):
    """The studio as the front ends get it: the core plus its features (Compare's job kinds registered)."""
    from studio.frontends.assemble import App

    with App(settings) as a:
        yield a


@pytest.fixture
def studio(app):
    return app.studio


@pytest.fixture(scope="session")
def lora_files(tmp_path_factory, demo_model) -> dict[str, Path]:
    """LoRAs trained for a few real steps on the tiny model, in diffusers and kohya form (UNet only, and UNet +
    both text encoders), plus one made for a differently shaped UNet (as an SD1.5 LoRA is for SDXL)."""
    import numpy as np
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from PIL import Image

    from studio.sdxl.demo import TINY_UNET
    from training.lora import LoraTrainConfig, save_lora, train_lora
    from training.lora_formats import save_kohya

    out = tmp_path_factory.mktemp("loras")
    pipe = StableDiffusionXLPipeline.from_pretrained(demo_model)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    cfg = LoraTrainConfig(rank=4, alpha=8, learning_rate=1e-2, steps=4)
    train_lora(pipe, images, ["slm red slime", "slm blue slime"], cfg)
    diffusers_file = save_lora(pipe, out / "slime.safetensors", cfg, {"dgxp.trigger_word": "slm"})
    kohya_file = save_kohya(diffusers_file, out / "slime_kohya.safetensors", pipe.unet.config)
    # one with both CLIP encoders trained too, as many community LoRAs are
    pipe = StableDiffusionXLPipeline.from_pretrained(demo_model)
    te_cfg = LoraTrainConfig(rank=4, alpha=4, learning_rate=1e-2, steps=4, train_text_encoder=True)
    train_lora(pipe, images, ["kni knight", "kni archer"], te_cfg)
    te_file = save_lora(pipe, out / "knight_te.safetensors", te_cfg)
    te_kohya = save_kohya(te_file, out / "knight_te_kohya.safetensors", pipe.unet.config)

    other = UNet2DConditionModel(**{**TINY_UNET, "cross_attention_dim": 64})
    other.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k", "to_v"]))
    from diffusers.utils import convert_state_dict_to_diffusers

    StableDiffusionXLPipeline.save_lora_weights(
        str(out), weight_name="other_arch.safetensors",
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(other)),
    )
    return {"slime": diffusers_file, "slime_kohya": kohya_file, "other_arch": out / "other_arch.safetensors",
            "knight_te": te_file, "knight_te_kohya": te_kohya}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real FastAPI + Gradio app under uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, app):
        import uvicorn

        from studio.frontends.server import create_app

        self.app = app
        self.studio = app.studio
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(create_app(app), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1)  # open event streams would hold shutdown for 10 s
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import httpx

        self.thread.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("studio server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def live_studio(tmp_path_factory, demo_model, lora_files):
    """One studio + server per test module (starting Gradio costs seconds)."""
    import shutil

    from studio.frontends.assemble import App

    root = tmp_path_factory.mktemp("live")
    settings = make_settings(root, demo_model)
    shutil.copy(lora_files["slime"], settings.loras_dir / "slime.safetensors")
    with App(settings) as st, LiveServer(st) as server:
        yield server


# -- the browser (headless Chromium driven by Playwright), for the tests marked `browser` --------------------------
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("DGXP_REQUIRE_BROWSER"):
            raise RuntimeError("Chromium is required for the browser tests (DGXP_REQUIRE_BROWSER is set)")
        pytest.skip("no Chromium on this machine (scripts/run-tests.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_studio(browser, url: str, width: int = 1400, height: int = 1000):
    """A new browser page on the studio, once its Generate tab has rendered."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    pg = ctx.new_page()
    pg.goto(url)
    pg.wait_for_selector("#prompt textarea", timeout=30_000)
    return pg


@pytest.fixture
def page(browser, live_studio):
    pg = open_studio(browser, live_studio.url)
    yield pg
    pg.context.close()


# What makes a test slow here: a real server (uvicorn + Gradio), Chromium, a LoRA training child process, or a
# second Python interpreter. Such tests are marked `slow` by these rules, so `pytest -m "not slow"` is the quick
# check while editing (under a minute) and the README's command still runs everything.
SLOW_MODULES = {"test_browser", "test_browser_generate", "test_browser_compare_metrics", "test_browser_dataset_train", "test_hardening",
                "test_fuzz", "test_training", "test_train_ui", "test_lora_trainer", "test_rest", "test_bench",
                "test_mcp", "test_server", "test_browser_benchmarks", "test_prometheus"}
SLOW_FIXTURES = {"live_studio"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

