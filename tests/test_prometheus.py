"""/metrics in the Prometheus text format (issue 20, must show 5): it parses with prometheus_client's own parser,
its counters and histograms move when a job runs, two studios in one process keep their own, and in LAN mode it
wants the studio's bearer token like the jobs API and MCP."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from studio.frontends.assemble import App
from studio.frontends.auth import read_token
from studio.frontends.server import create_app
from studio.params import GenerateParams
from tests.conftest import make_settings

pytestmark = pytest.mark.slow  # each test builds the whole web app (Gradio included)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample: str, **labels) -> float:
    """A sample's value (0 when it is not there yet)."""
    for s in fams[family].samples if family in fams else []:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def scrape(client: TestClient, **kw) -> dict:
    reply = client.get("/metrics", **kw)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return families(reply.text)


def test_metrics_parse_and_move_when_a_job_runs(app):
    client = TestClient(create_app(app))
    before = scrape(client)  # loopback without a configured token: no credentials needed
    assert value(before, "dgxp_jobs", "dgxp_jobs_total", kind="generate", outcome="done") == 0
    assert value(before, "dgxp_queue_jobs", "dgxp_queue_jobs", status="queued") == 0
    app.studio.generate(GenerateParams(prompt="a counted gem", seed=1, steps=3))
    after = scrape(client)
    assert value(after, "dgxp_jobs", "dgxp_jobs_total", kind="generate", outcome="done") == 1
    assert value(after, "dgxp_job_seconds", "dgxp_job_seconds_count", kind="generate") == 1
    assert value(after, "dgxp_job_seconds", "dgxp_job_seconds_sum", kind="generate") > 0
    assert value(after, "dgxp_step_seconds", "dgxp_step_seconds_count", device="cpu") == 2  # 3 steps, first left out
    assert value(after, "dgxp_denoising_steps", "dgxp_denoising_steps_total", device="cpu") == 3
    assert value(after, "dgxp_resident_model_bytes", "dgxp_resident_model_bytes", model="demo-tiny") > 0
    assert value(after, "dgxp_memory_bytes", "dgxp_memory_bytes", kind="process_resident") > 0
    assert value(after, "dgxp_memory_bytes", "dgxp_memory_bytes", kind="system_total") > 0
    assert "dgxp_training_runs" in after and "dgxp_studio_info" in after
    job = app.studio.submit_generate(GenerateParams(prompt="a cancelled gem", seed=1, steps=50))
    app.studio.queue.cancel(job.id)
    app.studio.queue.wait(job, 60)
    assert value(scrape(client), "dgxp_jobs", "dgxp_jobs_total", kind="generate", outcome="cancelled") == 1
    assert client.post("/metrics").status_code != 200  # GET (and HEAD) only


def test_two_studios_in_one_process_keep_their_own_counters(tmp_path, demo_model):
    with App(make_settings(tmp_path / "one", demo_model)) as one, \
            App(make_settings(tmp_path / "two", demo_model)) as two:
        assert one.prometheus.registry is not two.prometheus.registry
        one.studio.generate(GenerateParams(prompt="only here", seed=1, steps=2))
        mine, theirs = families(one.prometheus.render().decode()), families(two.prometheus.render().decode())
        assert value(mine, "dgxp_jobs", "dgxp_jobs_total", kind="generate", outcome="done") == 1
        assert value(theirs, "dgxp_jobs", "dgxp_jobs_total", kind="generate", outcome="done") == 0


def test_lan_mode_wants_the_studio_token(tmp_path, demo_model):
    settings = make_settings(tmp_path, demo_model, lan=True, password="s3cret")
    with App(settings) as app:
        client = TestClient(create_app(app))
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", auth=("studio", "s3cret")).status_code == 401  # the UI's login is not it
        token = read_token(settings)
        fams = scrape(client, headers={"Authorization": f"Bearer {token}"})
        assert "dgxp_jobs" in fams and "dgxp_queue_jobs" in fams
