"""The jobs API, and the CLI using it while a studio holds the database.

DuckDB lets one process write the file, so `dgx-pixels generate` / `run-workflow` run in a separate process
(as they would from a shell) against a real studio served by uvicorn; their jobs must land on the studio's
queue and in its history, and their files in --out. The studio here has a token configured, so the API's
bearer check is exercised on every call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import LiveServer, make_settings

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model):
    from studio.frontends.assemble import App

    root = tmp_path_factory.mktemp("rest")
    settings = make_settings(root, demo_model, mcp_token=TOKEN)
    with App(settings) as st, LiveServer(st) as srv:
        toml = root / "studio.toml"
        toml.write_text(f'data_dir = "{settings.data_dir}"\nmodels_dir = "{settings.models_dir}"\n'
                        f'port = {srv.port}\nmcp_token = "{TOKEN}"\n', encoding="utf-8")
        srv.config_file = toml
        yield srv


def jobs_url(server) -> str:
    return server.url + "api/v1/jobs"


def wait(server, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = httpx.get(f"{jobs_url(server)}/{job_id}", headers=AUTH, timeout=10).json()
        if state["status"] in ("done", "failed", "cancelled"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def cli(server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "studio.frontends.cli", "--config", str(server.config_file), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[1])


def test_submit_follow_and_fetch_a_job(server):
    params = {"prompt": "a red slime", "steps": 2, "seed": 4, "count": 2, "width": 64, "height": 64}
    reply = httpx.post(jobs_url(server), json={"kind": "generate", "params": params}, headers=AUTH)
    assert reply.status_code == 202
    state = wait(server, reply.json()["job_id"])
    assert state["status"] == "done" and state["total"] == 2
    images = state["result"]["images"]
    assert [im["seed"] for im in images] == [4, 5] and all(Path(im["path"]).is_file() for im in images)
    row = server.studio.job(reply.json()["job_id"])
    assert row["source"] == "api" and row["status"] == "done"  # in the studio's own history


def test_bad_requests_get_clear_errors(server):
    def post(body):
        return httpx.post(jobs_url(server), json=body, headers=AUTH)

    cases = [({"kind": "paint"}, "kind must be one of"),
             ({"kind": "generate", "params": {"prompt": "x", "steps": 0}}, "steps"),
             ({"kind": "generate", "params": {"prompt": "x", "stpes": 3}}, "stpes"),
             ({"kind": "variation", "params": {"prompt": "x"}}, "init"),
             ({"kind": "variation", "params": {"prompt": "x"}, "init": "/nonexistent/a.png"}, "does not exist"),
             ({"kind": "workflow", "name": "no_such_flow"}, "unknown workflow")]
    for body, message in cases:
        reply = post(body)
        assert reply.status_code == 400, (body, reply.text)
        assert message in reply.json()["detail"], (body, reply.json())
    assert httpx.get(f"{jobs_url(server)}/nope", headers=AUTH).status_code == 404
    assert httpx.post(jobs_url(server), json={"kind": "generate", "params": {"prompt": "x"}}).status_code == 401
    assert httpx.get(f"{jobs_url(server)}/nope").status_code == 401  # the token guards reading too


def test_cancel_stops_a_running_and_a_queued_job(server):
    slow = {"prompt": "x", "steps": 150, "width": 64, "height": 64}
    first = httpx.post(jobs_url(server), json={"kind": "generate", "params": slow}, headers=AUTH).json()
    second = httpx.post(jobs_url(server), json={"kind": "generate", "params": slow}, headers=AUTH).json()
    deadline = time.time() + 60
    while httpx.get(f"{jobs_url(server)}/{first['job_id']}", headers=AUTH).json()["step"] < 1:  # it is running
        assert time.time() < deadline, "the first job never started"
        time.sleep(0.05)
    for job in (second, first):
        assert httpx.post(f"{jobs_url(server)}/{job['job_id']}/cancel", headers=AUTH).json() == {"cancelled": True}
    queued = wait(server, second["job_id"])
    assert queued["status"] == "cancelled" and queued["step"] == 0  # never ran
    running = wait(server, first["job_id"])
    assert running["status"] == "cancelled" and 1 <= running["step"] < 150  # stopped mid-way, not "done"
    for job in (first, second):
        row = server.studio.job(job["job_id"])
        assert row["status"] == "cancelled" and row["images"] == []


def test_cli_generate_runs_on_the_running_studio(server, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.kron(np.arange(64, dtype=np.uint8).reshape(8, 8), np.ones((8, 8), np.uint8))).save(init)
    out = cli(server, "generate", "--prompt", "a blue slime", "--steps", "2", "--seed", "11", "--size", "64x64",
              "--out", str(tmp_path / "out"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "is running: job" in out.stderr
    (written,) = [Path(line) for line in out.stdout.split()]
    assert written.name == "sprite-11.png" and written.is_file()
    job_id = out.stderr.split("job ")[1].split()[0]
    row = server.studio.job(job_id)
    assert row["source"] == "cli" and row["params"]["prompt"] == "a blue slime"
    # an img2img variation from a file given relative to the CLI's folder
    var = cli(server, "generate", "--prompt", "a blue slime", "--steps", "2", "--seed", "3", "--init", os.path.relpath(init),
              "--out", str(tmp_path / "var"), "--quiet")
    assert var.returncode == 0, var.stderr
    assert (tmp_path / "var" / "sprite-3.png").is_file()
    # and errors come back as the studio words them
    bad = cli(server, "generate", "--prompt", "x", "--steps", "2", "--lora", "no_such_lora", "--out", str(tmp_path), "--quiet")
    assert bad.returncode != 0 and "no_such_lora" in bad.stderr


def test_cli_run_workflow_on_the_running_studio(server, tmp_path):
    out = cli(server, "run-workflow", "single_sprite", "--set", "subject=red slime", "--steps", "2",
              "--out", str(tmp_path), "--quiet")
    assert out.returncode == 0, out.stderr
    files = [Path(line) for line in out.stdout.split()]
    assert files and all(f.is_file() and f.parent == tmp_path for f in files)


def test_cli_train_runs_through_the_running_studio(server, tmp_path):
    """`dgx-pixels train` while the studio holds the database: the studio starts the run (it reads the dataset),
    the command follows the run's files to the end, and the LoRA lands in the studio's LoRA folder."""
    from tests.test_train_ui import make_dataset

    make_dataset(server.studio, tmp_path, "restblobs")
    out = cli(server, "train", "--dataset", "restblobs", "--preset", "fast", "--steps", "2", "--resolution", "64",
              "--rank", "4", "--name", "rest-lora", "--quiet", "--set", "sample_every=0",
              "--set", "checkpoint_every=0")
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.split()[-1])
    assert (run_dir / "final" / "rest-lora.safetensors").is_file()
    assert "rest-lora" in {lo["name"] for lo in server.studio.loras()}
    again = cli(server, "train", "--resume", run_dir.name)  # the studio answers for its runs too
    assert again.returncode == 2 and "already finished" in again.stderr
    bad = httpx.post(server.url + "api/v1/train", json={"dataset": "no-such-set"}, headers=AUTH)
    assert bad.status_code == 400 and "no-such-set" in bad.json()["detail"]
