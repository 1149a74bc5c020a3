"""The real web app over HTTP: Gradio mounted on FastAPI, driven with gradio_client like any API user."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from studio.metadata import params_from_png

# prompt, negative, model, loras, seed, reuse_seed, steps, guidance, width, height, count,
# sprite_w, sprite_h, colors, palette, background, outline, raw_only, sampler, schedule, clip_skip, fast
FORM = ["a red slime", "", "demo-tiny", "", "", False, 3, 6.0, 0, 0, 1, 0, 0, 0, "", "auto", "", False, "default",
        "automatic", 0, False]


def form(**kw) -> list:
    keys = ["prompt", "negative", "model", "loras", "seed", "reuse", "steps", "guidance", "width", "height", "count",
            "sprite_w", "sprite_h", "colors", "palette", "background", "outline", "raw", "sampler", "schedule",
            "clip_skip", "fast"]
    values = dict(zip(keys, FORM, strict=True))
    values.update(kw)
    return [values[k] for k in keys]


@pytest.fixture(scope="module")
def client(live_studio):
    from gradio_client import Client

    return Client(live_studio.url, verbose=False)


def test_health_says_demo(live_studio):
    import httpx

    assert httpx.get(live_studio.url + "api/health").json()["demo_model"] is True


def test_generate_api_returns_png_whose_metadata_round_trips(client, live_studio):
    sprites, raws, status, seed = client.predict(*form(seed="123", count=2), api_name="/generate")
    assert seed == "" and "seed(s) 123, 124" in status  # the box is cleared: the next run gets a new seed
    assert client.predict(*form(seed="123", reuse=True), api_name="/generate")[3] == "123"
    assert len(sprites) == 2
    for item, expected_seed in zip(sprites, (123, 124), strict=True):
        with Image.open(item["image"]) as im:
            assert im.format == "PNG" and im.mode == "RGBA"
        params, image_seed = params_from_png(item["image"])
        assert image_seed == expected_seed
        assert (params.prompt, params.steps, params.seed, params.count, params.model) == ("a red slime", 3, 123, 2,
                                                                                          "demo-tiny")
    # the job is in the studio's history, pointing at the same pixels
    rows = live_studio.studio.history("a red slime")
    stored = {r["seed"]: r["path"] for r in rows}
    a = np.asarray(Image.open(sprites[0]["image"]))
    assert np.array_equal(a, np.asarray(Image.open(stored[123])))


def test_same_seed_same_image_over_api(client):
    first = client.predict(*form(seed="77"), api_name="/generate")[1][0]["image"]
    second = client.predict(*form(seed="77"), api_name="/generate")[1][0]["image"]
    third = client.predict(*form(seed="78"), api_name="/generate")[1][0]["image"]
    load = lambda p: np.asarray(Image.open(p))  # noqa: E731
    assert np.array_equal(load(first), load(second))
    assert not np.array_equal(load(first), load(third))


def test_bad_input_is_a_clear_api_error(client, live_studio):
    from gradio_client.exceptions import AppError

    before = live_studio.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"]
    for kw, message in [
        ({"width": 100, "height": 64}, "multiple of 8"),
        ({"steps": 0}, "minimum value 1"),  # the slider refuses it before the core sees it
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"loras": "ghost:1.0"}, "unknown LoRA 'ghost'"),
        ({"seed": "abc"}, "seed must be a whole number"),
    ]:
        with pytest.raises(AppError, match=message):
            client.predict(*form(**kw), api_name="/generate")
    assert live_studio.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == before


def test_restore_from_png_and_refuse_non_png(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    sprites = client.predict(*form(seed="9", loras="slime:0.5", steps=4), api_name="/generate")[0]
    restored = client.predict(handle_file(sprites[0]["image"]), api_name="/restore")
    assert restored[0] == "a red slime" and restored[3] == "slime:0.5" and restored[4] == "9" and restored[5] == 4
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 16), "red").save(jpeg)
    with pytest.raises(AppError, match="png"):  # Gradio's own upload filter
        client.predict(handle_file(str(jpeg)), api_name="/restore")
    disguised = tmp_path / "photo.png"  # a JPEG with a .png name gets past the filter, not past the core
    Image.new("RGB", (16, 16), "red").save(disguised, format="JPEG")
    with pytest.raises(AppError, match="settings are only stored in PNG"):
        client.predict(handle_file(str(disguised)), api_name="/restore")
    plain = tmp_path / "plain.png"
    Image.new("RGB", (16, 16), "red").save(plain)
    with pytest.raises(AppError, match="no DGX-Pixels settings"):
        client.predict(handle_file(str(plain)), api_name="/restore")


def test_ten_jobs_from_two_clients_over_http(live_studio):
    from gradio_client import Client

    results: dict[str, list] = {"a": [], "b": []}

    def run(tag: str) -> None:
        c = Client(live_studio.url, verbose=False)
        for i in range(5):
            results[tag].append(c.predict(*form(prompt=f"{tag}-job-{i}", seed=str(i), steps=2), api_name="/generate"))

    threads = [threading.Thread(target=run, args=(t,)) for t in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(len(v) == 5 for v in results.values())
    rows = live_studio.studio.store.query(
        "SELECT prompt, status, started, finished FROM jobs WHERE prompt LIKE '%-job-%' ORDER BY seq"
    )
    assert len(rows) == 10 and all(r["status"] == "done" for r in rows)
    for tag in results:  # each client's jobs ran in the order it sent them
        mine = [r["prompt"] for r in rows if r["prompt"].startswith(tag)]
        assert mine == [f"{tag}-job-{i}" for i in range(5)]
    assert all(rows[i]["finished"] <= rows[i + 1]["started"] for i in range(9))


def test_lan_mode_refuses_to_start_without_password(settings):
    import dataclasses

    from studio.frontends.server import check_bind

    with pytest.raises(ValueError, match="LAN mode needs a password"):
        check_bind(dataclasses.replace(settings, lan=True))
    check_bind(dataclasses.replace(settings, lan=True, password="pw"))
    assert dataclasses.replace(settings, lan=True).bind_host == "0.0.0.0"
    assert settings.bind_host == "127.0.0.1"


def test_password_protects_the_ui_and_api(tmp_path, demo_model):
    import httpx
    from gradio_client import Client

    from studio.frontends.assemble import App
    from tests.conftest import LiveServer, make_settings

    settings = make_settings(tmp_path, demo_model, password="s3cret")
    with App(settings) as st, LiveServer(st) as server:
        assert httpx.get(server.url + "config").status_code == 401
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types across versions
            Client(server.url, verbose=False)
        c = Client(server.url, auth=("studio", "s3cret"), verbose=False)
        out = c.predict(*form(seed="1", steps=2), api_name="/generate")
        assert "seed(s) 1 " in out[2] and out[3] == ""


def test_metrics_endpoint_plots_job_history(client, live_studio):
    client.predict(*form(seed="3", steps=2), api_name="/generate")
    times, outcomes, goals, table = client.predict(api_name="/metrics")
    assert "Seconds per job" in json.dumps(times) and "generate" in json.dumps(outcomes)
    assert table["data"] and "generate" in json.dumps(table["data"])


def test_variations_endpoint(client, tmp_path):
    from gradio_client import handle_file

    src = tmp_path / "sprite.png"
    Image.fromarray(np.kron(np.array([[[200, 30, 30], [30, 30, 200]], [[30, 200, 30], [250, 250, 250]]],
                                     dtype=np.uint8), np.ones((8, 8, 1), dtype=np.uint8))).save(src)
    sprites, raws, status = client.predict(
        handle_file(str(src)), 0.5, "a gem", "", "demo-tiny", "", "21", 4, 6.0, 2, 0, 0, 0, "", "keep", "",
        api_name="/variations")
    assert len(sprites) == 2 and "2 variation(s) at strength 0.5" in status
