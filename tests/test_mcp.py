"""The MCP server, driven by a real MCP client (fastmcp.Client) over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from PIL import Image

from tests.conftest import LiveServer, make_settings


@pytest.fixture(scope="module")
def mcp_studio(tmp_path_factory, demo_model):
    from studio.frontends.assemble import App

    root = tmp_path_factory.mktemp("mcp")
    games = root / "games"
    (games / "slime-quest" / "assets").mkdir(parents=True)
    settings = make_settings(root, demo_model, project_roots=(games,))
    with App(settings) as st, LiveServer(st) as server:
        server.games = games
        yield server


def run(coro):
    return asyncio.run(coro)


async def call(url: str, tool: str, args: dict, **kw):
    async with Client(url + "mcp/", **kw) as c:
        return await c.call_tool(tool, args)


def test_tools_resources_and_prompts_are_listed(mcp_studio):
    async def go():
        async with Client(mcp_studio.url + "mcp/") as c:
            tools = {t.name: t for t in await c.list_tools()}
            resources = [str(r.uri) for r in await c.list_resources()]
            templates = [t.uri_template for t in await c.list_resource_templates()]
            prompts = [p.name for p in await c.list_prompts()]
            return tools, resources, templates, prompts

    tools, resources, templates, prompts = run(go())
    for name in ("generate_sprite", "pixelate_image", "deploy_to_bevy", "list_models", "list_loras", "get_job",
                 "cancel_job", "search_history"):
        assert name in tools
    schema = tools["generate_sprite"].input_schema["properties"]
    assert schema["size"]["default"] == "32x32" and "description" in schema["prompt"]
    assert "studio://models" in resources and "studio://history/{job_id}" in templates
    assert "make_a_game_sprite" in prompts


def test_generate_sprite_returns_png_and_lands_in_history(mcp_studio, tmp_path):
    progress: list[tuple[float, float | None]] = []

    async def on_progress(p, total, message):
        progress.append((p, total))

    async def go():
        async with Client(mcp_studio.url + "mcp/") as c:
            res = await c.call_tool("generate_sprite", {"prompt": "a green slime", "size": "16x16", "seed": 8,
                                                        "steps": 5, "count": 2}, progress_handler=on_progress)
            job = json.loads((await c.read_resource(f"studio://history/{res.structured_content['job_id']}"))[0].text)
            return res, job

    res, job = run(go())
    info = res.structured_content
    assert [im["seed"] for im in info["images"]] == [8, 9]
    images = [b for b in res.content if b.type == "image"]
    assert len(images) == 2 and images[0].mime_type == "image/png"
    png = tmp_path / "from-mcp.png"
    png.write_bytes(base64.b64decode(images[0].data))
    with Image.open(png) as im:
        assert im.size == (16, 16) and im.mode == "RGBA"
    assert Path(info["images"][0]["path"]).read_bytes() == png.read_bytes()
    assert job["status"] == "done" and job["source"] == "mcp" and job["params"]["seed"] == 8
    assert any(r["job_id"] == info["job_id"] for r in mcp_studio.studio.history("green slime"))
    steps = [p for p, total in progress if total == 5]
    assert steps[-1] == 5 and len(set(steps)) >= 3  # per-step progress notifications


def test_deploy_to_bevy_writes_into_allowed_project(mcp_studio):
    assets = mcp_studio.games / "slime-quest" / "assets"
    job = run(call(mcp_studio.url, "generate_sprite", {"prompt": "a sword", "size": "16x16", "steps": 3}))
    res = run(call(mcp_studio.url, "deploy_to_bevy", {"source": job.structured_content["job_id"],
                                                      "assets_dir": str(assets), "name": "sword"}))
    files = [Path(f) for f in res.structured_content["files"]]
    assert assets / "sprites" / "sword" / "sword.png" in files
    assert all(f.is_file() and assets in f.parents for f in files)
    assert "default_nearest" in res.structured_content["bevy_snippet"]


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("generate_sprite", {"prompt": "x", "size": "50000x32"}, "sprite size"),
        ("generate_sprite", {"prompt": "x", "count": 10000}, "count"),
        ("generate_sprite", {"prompt": "x", "model": "nope"}, "unknown model"),
        ("generate_sprite", {"prompt": "x", "loras": {"ghost": 1.0}}, "unknown LoRA"),
        ("get_job", {"job_id": "nope"}, "no job"),
        ("pixelate_image", {"image": "not base64 !!"}, "neither an existing file path nor valid base64"),
    ],
)
def test_bad_tool_input_is_a_clear_error(mcp_studio, tool, args, message):
    before = mcp_studio.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"]
    with pytest.raises(ToolError, match=message):
        run(call(mcp_studio.url, tool, args))
    assert mcp_studio.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == before


def test_deploy_refuses_paths_outside_projects_and_traversal(mcp_studio, tmp_path):
    job = run(call(mcp_studio.url, "generate_sprite", {"prompt": "a shield", "size": "16x16", "steps": 2}))
    job_id = job.structured_content["job_id"]
    outside = tmp_path / "elsewhere" / "assets"
    outside.mkdir(parents=True)
    assets = mcp_studio.games / "slime-quest" / "assets"
    before = sorted(p for p in mcp_studio.games.rglob("*"))
    for args in (
        {"source": job_id, "assets_dir": str(outside), "name": "shield"},
        {"source": job_id, "assets_dir": str(assets), "name": "../../../escape"},
        {"source": job_id, "assets_dir": str(assets), "name": "a/b"},
        {"source": job_id, "assets_dir": str(assets / ".." / ".." / ".."), "name": "shield"},
    ):
        with pytest.raises(ToolError):
            run(call(mcp_studio.url, "deploy_to_bevy", args))
    assert not list(outside.iterdir())
    assert sorted(p for p in mcp_studio.games.rglob("*")) == before


def test_pixelate_image_from_base64(mcp_studio, tmp_path):
    import io

    import numpy as np

    rng = np.random.default_rng(1)
    art = np.array([[220, 40, 40], [40, 40, 220], [30, 180, 60]], dtype=np.uint8)[rng.integers(0, 3, (12, 12))]
    buf = io.BytesIO()
    Image.fromarray(np.kron(art, np.ones((24, 24, 1), dtype=np.uint8))).save(buf, format="PNG")
    res = run(call(mcp_studio.url, "pixelate_image", {"image": base64.b64encode(buf.getvalue()).decode()}))
    assert (res.structured_content["width"], res.structured_content["height"]) == (12, 12)


def test_cancel_a_long_job(mcp_studio):
    studio = mcp_studio.studio

    async def go():
        async with Client(mcp_studio.url + "mcp/") as c:
            task = asyncio.create_task(c.call_tool("generate_sprite", {"prompt": "long one", "steps": 150},
                                                   raise_on_error=False))
            for _ in range(600):
                running = [j for j in studio.queue.active() if j.status == "running" and j.step >= 2]
                if running:
                    break
                await asyncio.sleep(0.05)
            cancelled = await c.call_tool("cancel_job", {"job_id": running[0].id})
            result = await task
            return running[0], cancelled, result

    job, cancelled, result = run(go())
    assert cancelled.structured_content["cancel_requested"] is True
    assert result.is_error and "cancelled" in result.content[0].text
    assert job.status == "cancelled" and job.step < 150


def test_twenty_concurrent_calls_from_two_clients(mcp_studio):
    studio = mcp_studio.studio
    before = studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"]

    async def client(tag: str):
        async with Client(mcp_studio.url + "mcp/") as c:
            calls = [c.call_tool("generate_sprite", {"prompt": f"{tag} item {i}", "size": "8x8", "steps": 2,
                                                     "seed": i}) for i in range(10)]
            return await asyncio.gather(*calls)

    async def go():
        return await asyncio.gather(client("alpha"), client("beta"))

    results = run(go())
    job_ids = {r.structured_content["job_id"] for batch in results for r in batch}
    assert len(job_ids) == 20
    for batch, tag in zip(results, ("alpha", "beta"), strict=True):
        for i, r in enumerate(batch):
            assert r.structured_content["images"][0]["seed"] == i
            assert Path(r.structured_content["images"][0]["path"]).is_file()
            assert studio.job(r.structured_content["job_id"])["prompt"] == f"{tag} item {i}"
    rows = studio.store.query("SELECT status, started, finished FROM jobs ORDER BY seq")[before:]
    assert len(rows) == 20 and all(r["status"] == "done" for r in rows)
    assert all(rows[i]["finished"] <= rows[i + 1]["started"] for i in range(19))  # serialised on one worker


def test_lan_mode_requires_the_token(tmp_path, demo_model):
    from studio.frontends.assemble import App

    settings = dataclasses.replace(make_settings(tmp_path, demo_model), lan=True, password="pw")
    with App(settings) as st, LiveServer(st) as server:
        token = (settings.data_dir / "mcp_token").read_text().strip()
        assert len(token) >= 32
        r = httpx.post(server.url + "mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       headers={"Accept": "application/json, text/event-stream"})
        assert r.status_code == 401
        r = httpx.post(server.url + "mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       headers={"Authorization": "Bearer wrong", "Accept": "application/json, text/event-stream"})
        assert r.status_code == 401
        with pytest.raises(Exception):  # noqa: B017 - the client surfaces the 401 as an HTTP error
            run(call(server.url, "list_models", {}))
        assert st.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == 0
        res = run(call(server.url, "list_models", {}, auth=token))
        assert res.structured_content["result"][0]["name"] == "demo-tiny"


def _stdio_client(url: str | None, data_dir: Path):
    import sys

    from fastmcp.client.transports import StdioTransport

    exe = str(Path(sys.executable).with_name("dgx-pixels"))
    args = ["mcp", "--stdio"] + (["--url", url] if url else [])
    env = {"DGXP_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return Client(StdioTransport(command=exe, args=args, env=env))


def test_stdio_proxy_reaches_the_running_studio(mcp_studio):
    async def go():
        async with _stdio_client(mcp_studio.url, mcp_studio.studio.settings.data_dir) as c:
            names = [t.name for t in await c.list_tools()]
            models = await c.call_tool("list_models", {})
            return names, models

    names, models = run(go())
    assert "generate_sprite" in names
    assert models.structured_content["result"][0]["name"] == "demo-tiny"


def test_stdio_proxy_without_a_studio_says_so(tmp_path):
    import subprocess
    import sys

    from tests.conftest import free_port

    exe = str(Path(sys.executable).with_name("dgx-pixels"))
    url = f"http://127.0.0.1:{free_port()}/"
    out = subprocess.run([exe, "mcp", "--stdio", "--url", url], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, env={"DGXP_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "no DGX-Pixels Studio is running" in out.stderr


def test_sheet_tileset_and_workflow_tools(mcp_studio):
    async def go():
        async with Client(mcp_studio.url + "mcp/") as c:
            sheet = await c.call_tool("generate_sprite_sheet", {"prompt": "a bat", "frames": 3, "steps": 2,
                                                                "strategy": "strip", "seed": 1})
            tiles = await c.call_tool("generate_tileset", {"prompt": "sand", "tiles": 2, "steps": 2, "seed": 1})
            flows = await c.call_tool("list_workflows", {})
            run_ = await c.call_tool("run_workflow", {"name": "single_sprite", "values": {"subject": "a frog"},
                                                      "seed": 3})
            return sheet, tiles, flows, run_

    sheet, tiles, flows, run_ = run(go())
    s = sheet.structured_content
    assert s["kind"] == "sheet" and len(s["images"]) == 3 and s["strategy"] == "strip"
    assert Path(s["files"]["preview.gif"]).is_file()
    images = [b for b in sheet.content if b.type == "image"]
    assert len(images) == 1  # the sheet itself
    t = tiles.structured_content
    assert t["kind"] == "tileset" and len(t["images"]) == 2 and len(t["seams"]) == 2
    names = {w["name"] for w in flows.structured_content["result"]}
    assert {"walk_cycle", "tileset", "item_batch"} <= names
    assert "a frog" in mcp_studio.studio.job(run_.structured_content["job_id"])["prompt"]
