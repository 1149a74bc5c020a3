"""A small JSON API for scripts on the studio's own machine: queue a job, follow it, cancel it, start training.

Why it exists: DuckDB lets one process write the database, so while the studio runs, `dgx-pixels generate`,
`run-workflow` and `train` cannot open it themselves; they send the work here instead and it runs on the
studio's queue, models and history like any other. Bodies are checked by `job_requests` (the same checks the
CLI makes in-process), so a malformed body is a 400 that names the field, never a 500.

Who may call it: only this machine (loopback clients), and in LAN mode only with the studio's bearer token,
because a job may name a local image file to start from.

    POST /api/v1/jobs              a job body (see studio.frontends.job_requests)
    GET  /api/v1/jobs/{id}         status, step/total, error; the result's files once done
    POST /api/v1/jobs/{id}/cancel
    POST /api/v1/train             a training body -> the run's id and folder (progress is in its files)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from studio.frontends.assemble import App
from studio.frontends.auth import BearerAuth
from studio.frontends.job_requests import NotFound, job_state, start_training, submit_job

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise HTTPException(400, "the body must be JSON (UTF-8, nested less than a few hundred levels)") from None


def _refused(exc: Exception) -> HTTPException:
    """A 400 whose message survives any text the client sent (a lone surrogate cannot be encoded as UTF-8)."""
    return HTTPException(400, str(exc).encode("utf-8", "backslashreplace").decode("utf-8"))


def rest_app(app: App, token: str | None) -> FastAPI:
    """The API as an ASGI app to mount at /api/v1 (behind BearerAuth when a token is set)."""
    api = FastAPI(title="DGX-Pixels Studio jobs API", docs_url=None, redoc_url=None, openapi_url=None)
    if token:
        api.add_middleware(BearerAuth, token=token)

    @api.middleware("http")
    async def local_only(request: Request, call_next):
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            return JSONResponse({"detail": "the jobs API answers only this machine; use MCP on the LAN"}, 403)
        return await call_next(request)

    @api.post("/jobs", status_code=202)
    async def post_job(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        source = "api"
        if isinstance(body, dict) and "source" in body:  # how the history labels it (the CLI says "cli")
            source = "cli" if body.pop("source") == "cli" else "api"
        try:
            job = submit_job(app, body, source)
        except ValueError as exc:
            raise _refused(exc) from None
        return {"job_id": job.id, "status": job.status}

    @api.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        try:
            return job_state(app, job_id)
        except NotFound:
            raise HTTPException(404, f"no job {job_id!r}") from None

    @api.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        return {"cancelled": app.studio.queue.cancel(job_id)}

    @api.post("/train", status_code=202)
    async def post_train(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        try:
            handle = start_training(app, body)
        except (ValueError, OSError) as exc:
            raise _refused(exc) from None
        return {"run_id": handle.run_dir.name, "run_dir": str(handle.run_dir)}

    return api
