"""A small JSON API for scripts on the studio's own machine: queue a job, follow it, cancel it.

Why it exists: DuckDB lets one process write the database, so while the studio runs, `dgx-pixels generate`
and `run-workflow` cannot open it themselves; they send the job here instead and it runs on the studio's
queue, models and history like any other. The jobs are built by the same core functions as everywhere else
(`Studio.submit_generate`, `submit_variation`, `workflows.run_workflow`).

Who may call it: only this machine (loopback clients), and in LAN mode only with the studio's bearer token
(the MCP one, in the data folder), because a job may name a local image file to start from.

    POST /api/v1/jobs              {"kind": "generate", "params": {...GenerateParams...}}
                                   {"kind": "variation", "params": {...}, "init": "PATH or sprite id", "strength": 0.5}
                                   {"kind": "workflow", "name": "walk_cycle", "values": {...}, "generate": {...}}
    GET  /api/v1/jobs/{id}         status, step/total, error; the result's files once done
    POST /api/v1/jobs/{id}/cancel
    POST /api/v1/train             {"dataset": NAME, "preset": "fast", "model": ..., "name": ..., "overrides": {...}}
                                   {"resume": RUN_ID}
                                   -> the run's id and folder; its progress is in the folder's files
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from studio.core import Studio
from studio.params import GenerateParams

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
KINDS = ("generate", "variation", "workflow")


def result_dict(result) -> dict[str, Any]:
    """A finished job's files and seeds (paths on this machine)."""
    return {
        "job_id": result.job_id,
        "params": result.params.to_dict(),
        "images": [{"id": im.id, "path": str(im.path), "raw_path": str(im.raw_path), "seed": im.seed,
                    "width": im.width, "height": im.height} for im in result.images],
        "extras": {name: str(path) for name, path in result.extras.items()},
    }


def submit(studio: Studio, body: dict[str, Any], source: str = "api"):
    """The job a request describes, queued; ValueError (a clear message) for anything malformed."""
    from studio.features.workflows import run_workflow

    if not isinstance(body, dict) or body.get("kind") not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    kind = body["kind"]
    if kind == "workflow":
        values, generate = body.get("values") or {}, body.get("generate") or {}
        if not isinstance(body.get("name"), str) or not isinstance(values, dict) or not isinstance(generate, dict):
            raise ValueError("a workflow job needs name (text), values and generate (objects)")
        return run_workflow(studio, body["name"], {str(k): str(v) for k, v in values.items()}, source=source,
                            generate=generate)
    if not isinstance(body.get("params"), dict):
        raise ValueError("params must be an object of generation settings")
    params = GenerateParams.from_dict(body["params"])
    if kind == "variation":
        init, strength = body.get("init"), body.get("strength", 0.5)
        if not isinstance(init, str) or not init:
            raise ValueError("a variation needs init: an image path or a sprite id")
        if isinstance(strength, bool) or not isinstance(strength, int | float):
            raise ValueError(f"strength must be a number, got {strength!r}")
        return studio.submit_variation(params, init, float(strength), source)
    return studio.submit_generate(params, source=source)


def start_training(studio: Studio, body: dict[str, Any]):
    """Start (or resume) the LoRA run a request describes; its RunHandle. ValueError for anything malformed."""
    from studio.features import training_runs
    from training.runs import resume_run

    if not isinstance(body, dict):
        raise ValueError("a training request is an object")
    if body.get("resume"):
        return resume_run(training_runs.handle(studio, str(body["resume"])).run_dir)
    overrides = body.get("overrides") or {}
    if not isinstance(body.get("dataset"), str) or not body["dataset"]:
        raise ValueError("train needs a dataset name (or resume: RUN)")
    if not isinstance(overrides, dict):
        raise ValueError("overrides must be an object of training settings")
    text = {k: body.get(k) for k in ("preset", "model", "name")}
    if any(v is not None and not isinstance(v, str) for v in text.values()):
        raise ValueError("preset, model and name must be text")
    return training_runs.start(studio, body["dataset"], text["preset"] or "balanced", text["model"],
                               text["name"], **overrides)


def job_state(studio: Studio, job_id: str) -> dict[str, Any]:
    from studio.core import NotFound

    live = studio.queue.get(job_id)
    if live is None:
        try:
            row = studio.job(job_id)
        except NotFound:
            raise HTTPException(404, f"no job {job_id!r}") from None
        return {"id": job_id, "status": row["status"], "error": row.get("error"), "step": 0, "total": 0}
    state = live.summary()
    if live.status == "done":
        state["result"] = result_dict(live.result)
    return state


def rest_app(studio: Studio, token: str | None) -> FastAPI:
    """The API as an app to mount at /api/v1 (behind BearerAuth when a token is set)."""
    from studio.frontends.mcp import BearerAuth

    app = FastAPI(title="DGX-Pixels Studio jobs API")
    if token:
        app.add_middleware(BearerAuth, token=token)

    @app.middleware("http")
    async def local_only(request: Request, call_next):
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            return JSONResponse({"detail": "the jobs API answers only this machine; use MCP on the LAN"}, 403)
        return await call_next(request)

    @app.post("/jobs", status_code=202)
    def post_job(body: dict[str, Any]) -> dict[str, Any]:
        source = "cli" if body.get("source") == "cli" else "api"  # how the history labels it
        try:
            job = submit(studio, {k: v for k, v in body.items() if k != "source"}, source)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"job_id": job.id, "status": job.status}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_state(studio, job_id)

    @app.post("/train", status_code=202)
    def post_train(body: dict[str, Any]) -> dict[str, Any]:
        try:
            handle = start_training(studio, body)
        except (ValueError, OSError) as exc:
            raise HTTPException(400, str(exc)) from None
        return {"run_id": handle.run_dir.name, "run_dir": str(handle.run_dir)}

    @app.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        return {"cancelled": studio.queue.cancel(job_id)}

    return app
