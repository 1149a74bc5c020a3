"""The LAN studio serves only what it should, and no input crashes it (issue 13, one test per finding).

Each test names the finding it pins; each failed on the code before the fix.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastmcp import Client
from PIL import Image

from studio.frontends.cli import main
from studio.params import GenerateParams
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _sprite_png(path: Path, cell: int = 8) -> Path:
    rng = np.random.default_rng(1)
    native = rng.integers(0, 4, (6, 5)) * 60
    img = np.repeat(np.repeat(native, cell, 0), cell, 1).astype(np.uint8)
    Image.fromarray(np.dstack([img, img // 2, 255 - img])).save(path)
    return path


def _png_declaring(path: Path, w: int, h: int) -> Path:
    """A ~1 KB PNG whose header declares w x h (the pixel data is a small zlib stream of zeros)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def lan(tmp_path_factory, demo_model):
    """A studio in LAN mode (password + token), served on 127.0.0.1, with an assets root for deploys."""
    from studio.frontends.assemble import App

    root = tmp_path_factory.mktemp("lan")
    games = root / "games"
    (games / "quest" / "assets").mkdir(parents=True)
    settings = dataclasses.replace(make_settings(root, demo_model, project_roots=(games,)), lan=True,
                                   password="pw", mcp_token=TOKEN)
    with App(settings) as app, LiveServer(app) as server:
        server.games = games
        yield server


def _login(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    assert client.post("login", data={"username": "studio", "password": "pw"}).status_code == 200
    return client


# 1. the file routes serve only Gradio's cache, never the data folder; no token in /config
@pytest.mark.parametrize("mode", ["local", "lan"])
def test_no_file_route_serves_the_data_folder(mode, lan, live_studio, tmp_path):
    server = lan if mode == "lan" else live_studio
    studio = server.studio
    studio.generate(GenerateParams(prompt="a key", seed=1, steps=1))
    (studio.settings.data_dir / "mcp_token").write_text("secret-token-file")
    client = _login(server) if mode == "lan" else httpx.Client(base_url=server.url, timeout=30)
    files = [p for p in studio.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "studio.duckdb" for p in files) and len(files) > 3
    served = []
    for path in files:
        urls = [f"gradio_api/file={path}", f"file={path}", f"gradio_api/file={path.as_uri()}"]
        if path.is_relative_to(Path.cwd()):
            urls.append(f"gradio_api/file={path.relative_to(Path.cwd())}")
        for url in urls:
            r = client.get(url)
            if r.status_code == 200:
                served.append(url)
    assert served == []
    config = client.get("config").text
    assert TOKEN not in config and "secret-token-file" not in config


# 2. `dgx-pixels pixelate DIR OUT` crashed after the first file (progress callback)
def test_pixelate_a_folder(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _sprite_png(src / f"s{i}.png")
    assert main(["pixelate", str(src), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png", "s1.png", "s2.png"]


# 3. preview scales, sizes and upscales have upper limits
def test_preview_scale_and_sizes_are_bounded(tmp_path, capsys):
    src = _sprite_png(tmp_path / "s.png")
    started = time.perf_counter()
    assert main(["pixelate", str(src), str(tmp_path / "o.png"), "--preview-scale", "100000"]) == 2
    assert time.perf_counter() - started < 10 and "preview scale" in capsys.readouterr().err
    assert main(["pixelate", str(src), str(tmp_path / "o.png"), "--size", "1024x1024", "--exact-size",
                 "--preview-scale", "64"]) == 2
    assert "preview limit" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert main(["pixelate", str(src), str(tmp_path / "o.png"), "--size", "5000x5000"]) == 2
    assert "sprite size must be between" in capsys.readouterr().err


# 4. malformed REST bodies are 400 naming the problem, never 500; nothing silently accepted
@pytest.mark.parametrize("body, words", [
    ({"kind": "generate", "params": {"prompt": "x", "loras": [123]}}, "LoRA"),
    ({"kind": "generate", "params": {"prompt": "x", "loras": [[]]}}, "LoRA"),
    ({"kind": "generate", "params": {"prompt": "x", "loras": [{"bogus": 1}]}}, "LoRA"),
    ({"kind": "generate", "params": {"prompt": "x", "pixel": 5}}, "pixel"),
    ({"kind": "generate", "params": {"prompt": "x", "pixel": {"size": 5}}}, "size"),
    ({"kind": "generate", "params": {"prompt": "x", "pixel": {"canvas": 7}}}, "canvas"),
    ({"kind": "generate", "params": {"prompt": "x", "steps": True}}, "steps"),
    ({"kind": "generate", "params": {"prompt": "x", "count": 2.7}}, "count"),
    ({"kind": "generate", "params": {"prompt": "x"}, "priority": 1}, "unknown field"),
    ({"kind": "generate", "params": {"prompt": "x", "hires_fix": True}}, "unknown parameter"),
    ({"kind": "variation", "params": {"prompt": "x"}, "init": "nope.png", "strength": "lots"}, "strength"),
    ([1, 2], "kind"),
    ("text", "kind"),
])
def test_malformed_job_bodies_are_400(lan, body, words):
    r = httpx.post(lan.url + "api/v1/jobs", json=body, headers=AUTH)
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("body, words", [
    ({"dataset": "d", "overrides": {"export_dir": "/tmp/x"}}, "set by the studio"),
    ({"dataset": "d", "overrides": {"base_model": "/x"}}, "set by the studio"),
    ({"dataset": "d", "overrides": "rank=4"}, "overrides"),
    ({"dataset": "d", "preset": "/etc/passwd"}, "unknown preset"),
    ({"dataset": "d", "preset": 5}, "preset"),
    ({"resume": "../../x"}, "unknown training run"),
    ({"resume": "/etc"}, "unknown training run"),
    ({"resume": 5}, "unknown training run"),
    ({"resume": "x", "dataset": "d"}, "unknown field"),
])
def test_malformed_training_bodies_are_400(lan, body, words):  # 9 is here too: paths stay inside the studio
    r = httpx.post(lan.url + "api/v1/train", json=body, headers=AUTH)
    assert r.status_code == 400 and words in r.json()["detail"], r.text


def test_pixelate_refuses_a_non_png_output_name(tmp_path, capsys):
    assert main(["pixelate", str(_sprite_png(tmp_path / "s.png")), str(tmp_path / "out.jpg")]) == 2
    assert ".png" in capsys.readouterr().err and not (tmp_path / "out.jpg").exists()


# 5. MCP pixelate_image with a small base64 PNG was tried as a file name first
def test_mcp_pixelate_small_base64(lan, tmp_path):
    for seed in range(500):  # base64 whose longest '/'-free run is too long for a file name, as in the report
        rng = np.random.default_rng(seed)
        native = rng.integers(0, 8, (12, 10, 3)).astype(np.uint8) * 36
        buf = io.BytesIO()
        Image.fromarray(np.repeat(np.repeat(native, 8, 0), 8, 1)).save(buf, "PNG")
        data = base64.b64encode(buf.getvalue()).decode()
        if max(len(part) for part in data.split("/")) > 255:
            break
    assert 256 <= len(data) < 4096 and max(len(part) for part in data.split("/")) > 255

    async def go():
        async with Client(lan.url + "mcp/", auth=TOKEN) as c:
            return await c.call_tool("pixelate_image", {"image": data})

    res = asyncio.run(go())
    assert not res.is_error and Path(res.structured_content["path"]).is_file()
    assert res.structured_content["width"] >= 1


# 6. two studios starting at the same moment on one fresh checkout
def test_two_studios_start_at_once(tmp_path):
    models = tmp_path / "models"
    code = ("import sys; from pathlib import Path; from studio.core import Studio; from studio.settings import Settings\n"
            f"s = Studio(Settings(data_dir=Path(sys.argv[1]), models_dir=Path({str(models)!r})))\n"
            "print([m['name'] for m in s.models()]); s.close()")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"data{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(out.strip() == "['demo-tiny']" for out, _ in outs), outs
    assert sorted(p.name for p in (models / "checkpoints").iterdir()) == ["demo-tiny"]


def test_a_half_built_model_is_never_listed(tmp_path):
    from studio.registry import HashCache, Registry

    partial = tmp_path / "models" / "checkpoints" / ".demo-tiny.partial-123"
    partial.mkdir(parents=True)
    (partial / "model_index.json").write_text("{}")
    (tmp_path / "models" / "checkpoints" / "old.partial").mkdir()
    assert Registry(tmp_path / "models", HashCache(tmp_path / "h.json")).checkpoints() == []


# 7. a 1.2 KB PNG declaring 8000x8000 is refused from its header, in little memory
def test_lying_png_is_refused_within_memory(tmp_path):
    bomb = _png_declaring(tmp_path / "bomb.png", 8000, 8000)
    assert bomb.stat().st_size < 2000
    code = ("from studio.frontends.cli import main\n"  # VmHWM: this process's peak (ru_maxrss counts the fork)
            f"rc = main(['pixelate', {str(bomb)!r}, {str(tmp_path / 'o.png')!r}])\n"
            "peak = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]\n"
            "print(rc, int(peak) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    rc, peak_mb = (int(v) for v in out.stdout.split())
    assert rc == 2 and "megapixels" in out.stderr and peak_mb <= 300, (out.stdout, out.stderr)


# 8. failed logins are slowed down, then refused
def test_failed_logins_are_throttled():
    from studio.frontends.guards import LoginThrottle

    async def app(scope, receive, send):
        ok = scope["headers"] == [(b"x", b"good")]
        await send({"type": "http.response.start", "status": 200 if ok else 400, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    throttle = LoginThrottle(app, limit=3, window=60, delay=0.2)

    async def post(good: bool) -> tuple[int, float]:
        sent: list[int] = []

        async def send(message):
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        scope = {"type": "http", "method": "POST", "path": "/login", "client": ("10.0.0.7", 1),
                 "headers": [(b"x", b"good" if good else b"bad")]}
        t = time.perf_counter()
        await throttle(scope, None, send)
        return sent[0], time.perf_counter() - t

    results = [asyncio.run(post(False)) for _ in range(4)]
    assert [s for s, _ in results] == [400, 400, 400, 429]
    assert all(dt >= 0.2 for _, dt in results[:3]) and results[3][1] < 0.1
    assert asyncio.run(post(True))[0] == 429  # locked out, even with the right password, for the window


def test_the_server_throttles_its_login(lan):
    client = httpx.Client(base_url=lan.url, timeout=30)
    t = time.perf_counter()
    assert client.post("login", data={"username": "studio", "password": "wrong"}).status_code != 200
    assert time.perf_counter() - t >= 0.5


# 10. deploy_to_bevy never reads or writes through a symlink planted in the assets root
def test_deploy_refuses_a_planted_manifest_symlink(tmp_path, app):
    from studio.features.deploy import deploy
    from studio.features.export import ExportError

    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    assets = tmp_path / "assets"
    (assets / "sprites").mkdir(parents=True)
    (assets / "sprites" / "manifest.json").symlink_to(secret)
    job = app.studio.generate(GenerateParams(prompt="a gem", seed=1, steps=1))
    with pytest.raises(ExportError, match="symbolic link"):
        deploy(app.studio, job.job_id, assets, "gem")
    assert sorted(p.name for p in (assets / "sprites").iterdir()) == ["manifest.json"]
    assert secret.read_text() == "not yours"


# 11. a dataset with no captions and no trigger word trains, samples and exports
def test_training_without_captions_or_trigger_keeps_its_weights(app, tmp_path):
    from studio.features import dataset_library as datasets
    from studio.features import training_runs

    src = tmp_path / "art"
    src.mkdir()
    for i in range(2):
        _sprite_png(src / f"blob{i}.png")
    ds = datasets.create(app.studio, "probe")
    ds.import_folder(src)
    h = training_runs.start(app.studio, "probe", "fast", steps=2, rank=2, resolution=64, sample_every=1,
                            checkpoint_every=0)
    status = h.wait(300)
    assert status["state"] == "done", (status, training_runs.log_tail(app.studio, h.run_dir.name))
    assert len(status["exports"]) == 2 and all(Path(f).is_file() for f in status["exports"])
    assert list((h.run_dir / "samples").glob("*.png"))


def test_sample_prompts_always_exist():
    from training.config import TrainConfig
    from training.runner import sample_prompts

    cfg = TrainConfig(base_model="b", dataset_dir="d", output_name="o")
    assert sample_prompts(cfg, ["", " "]) == ["pixel art sprite"]
    assert sample_prompts(dataclasses.replace(cfg, trigger_word="slm"), [""]) == ["slm, pixel art sprite"]
    assert sample_prompts(cfg, ["a", "a", "b", "c"]) == ["a", "b"]


# 12. /mcp without the trailing slash
def test_mcp_without_a_trailing_slash(lan):
    async def go():
        async with Client(lan.url + "mcp", auth=TOKEN) as c:
            return [t.name for t in await c.list_tools()]

    assert "generate_sprite" in asyncio.run(go())


# 13. one bad user file never takes the studio (or the other files) down
def test_bad_user_files_are_reported_and_skipped(tmp_path, demo_model, capsys):
    from studio.frontends.assemble import App
    from studio.frontends.mcp import build_mcp
    from studio.frontends.server import create_app

    settings = make_settings(tmp_path, demo_model)
    (settings.data_dir / "workflows").mkdir(parents=True)
    (settings.data_dir / "workflows" / "broken.toml").write_text('kind = "spaceship"\nprompt = "x"\n')
    (settings.data_dir / "prompt_sets").mkdir()
    (settings.data_dir / "prompt_sets" / "bad.toml").write_text("prompts = [1]\n")
    header = json.dumps({"a": 1}).encode()
    (settings.loras_dir / "weird.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (settings.checkpoints_dir / "broken-model.safetensors").write_bytes(os.urandom(3000))
    with App(settings) as app:
        create_app(app)  # builds every tab: a bad file must not stop it
        models = {m["name"]: m for m in app.studio.models()}
        assert models["broken-model"]["error"] and app.studio.default_model == "demo-tiny"
        assert {lo["name"] for lo in app.studio.loras()} == {"weird"}

        async def go():
            async with Client(build_mcp(app)) as c:
                return (await c.call_tool("list_workflows", {})).structured_content["result"]

        listed = asyncio.run(go())
        assert any(w.get("name") == "broken" and "kind" in w.get("error", "") for w in listed)
        assert any(w.get("name") == "walk_cycle" for w in listed)
        assert set(app.arena.prompt_sets([])) >= {"game-sprites"}
    toml = tmp_path / "studio.toml"
    toml.write_text(f'data_dir = "{settings.data_dir}"\nmodels_dir = "{settings.models_dir}"\n')
    assert main(["--config", str(toml), "workflows"]) == 0
    out = capsys.readouterr()
    assert "walk_cycle" in out.out and "broken.toml" in out.err
    assert main(["--config", str(toml), "models"]) == 0


# 14. no API docs without login, an upload limit, readable files, no zombie children
def test_docs_need_the_login_and_uploads_are_limited(lan):
    for path in ("docs", "openapi.json", "redoc", "api/v1/docs", "api/v1/openapi.json"):
        r = httpx.get(lan.url + path, headers=AUTH)
        assert r.status_code in (401, 403, 404) or "swagger" not in r.text.lower(), path
        assert "openapi" not in r.text[:200], path
    from studio import limits

    big = io.BytesIO(os.urandom(limits.MAX_UPLOAD_BYTES + 1024))
    r = _login(lan).post("gradio_api/upload", files={"files": ("big.png", big, "image/png")})
    assert r.status_code in (400, 413), r.status_code


def test_written_files_follow_the_umask(tmp_path):
    from studio.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_finished_training_children_are_reaped(tmp_path):
    from training.runs import RunHandle, _spawn

    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text("{}")
    handle = _spawn(run)  # no config.json: the child fails at once and exits
    assert isinstance(handle, RunHandle)
    deadline = time.time() + 60
    while time.time() < deadline and handle.process.returncode is None:
        time.sleep(0.2)
    status = Path(f"/proc/{handle.process.pid}/status")
    assert handle.process.returncode is not None and not status.exists()
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime >= 0
