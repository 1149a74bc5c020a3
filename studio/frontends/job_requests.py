"""A job or a training run described as JSON (a REST body, the CLI's request to a running studio), checked
and started through the same core calls as everywhere else.

Why one module: the jobs API and the CLI both take these bodies; validating them here, field by field and
through the params dataclasses, is what turns a wrong type or an unknown field into a clear 400 naming it
instead of a 500 with a traceback.

    {"kind": "generate", "params": {...GenerateParams...}}
    {"kind": "variation", "params": {...}, "init": "PATH or image id", "strength": 0.5}
    {"kind": "workflow", "name": "walk_cycle", "values": {...}, "generate": {...}}
    {"dataset": NAME, "preset": "fast" | {...settings...}, "model": ..., "name": ..., "overrides": {...}}
    {"resume": RUN_ID}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from studio import limits
from studio.core import GenerateResult, NotFound
from studio.features import training_runs
from studio.features.workflows import run_workflow
from studio.frontends.assemble import App
from studio.jobs import Job
from studio.params import GenerateParams, ParamsError
from studio.values import parse_float
from training.config import TrainConfig
from training.runs import RunHandle, resume_run

KINDS = ("generate", "variation", "workflow")
_JOB_FIELDS = {"generate": {"kind", "params"}, "variation": {"kind", "params", "init", "strength"},
               "workflow": {"kind", "name", "values", "generate"}}
_TRAIN_FIELDS = {"dataset", "preset", "model", "name", "overrides"}


def _only(body: dict, allowed: set[str], what: str) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ParamsError(f"unknown field(s) in {what}: {', '.join(sorted(map(repr, unknown)))} "
                          f"(allowed: {', '.join(sorted(allowed))})")


def _object(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"{what} must be an object, got {value!r}")
    return value


def submit_job(app: App, body: Any, source: str = "api") -> Job:
    """The job a request describes, queued; ValueError (a clear message) for anything malformed."""
    if not isinstance(body, dict) or body.get("kind") not in KINDS:
        raise ParamsError(f"kind must be one of {', '.join(KINDS)}")
    kind = body["kind"]
    _only(body, _JOB_FIELDS[kind], f"a {kind} job")
    if kind == "workflow":
        values, generate = _object(body.get("values"), "values"), _object(body.get("generate"), "generate")
        if not isinstance(body.get("name"), str):
            raise ParamsError("a workflow job needs name: the workflow's name")
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values.values()):
            raise ParamsError("workflow values must be text or numbers")
        return run_workflow(app.studio, body["name"], {str(k): str(v) for k, v in values.items()}, source=source,
                            generate=generate)
    if not isinstance(body.get("params"), dict):
        raise ParamsError("params must be an object of generation settings")
    params = GenerateParams.from_dict(body["params"])
    if kind == "variation":
        init = body.get("init")
        if not isinstance(init, str) or not init:
            raise ParamsError("a variation needs init: an image path or an image id")
        strength = parse_float(body.get("strength", 0.5), "strength", limits.MIN_STRENGTH, limits.MAX_STRENGTH)
        return app.studio.submit_variation(params, init, strength, source)
    return app.studio.submit_generate(params, source=source)


def start_training(app: App, body: Any) -> RunHandle:
    """Start (or resume) the LoRA run a request describes; ValueError for anything malformed."""
    if not isinstance(body, dict):
        raise ParamsError("a training request is an object")
    if "resume" in body:
        _only(body, {"resume"}, "a resume request")
        return resume_run(training_runs.handle(app.studio, body["resume"]).run_dir)
    _only(body, _TRAIN_FIELDS, "a training request")
    if not isinstance(body.get("dataset"), str) or not body["dataset"]:
        raise ParamsError("train needs a dataset name (or resume: RUN)")
    overrides = _object(body.get("overrides"), "overrides")
    settings = {f.name for f in dataclasses.fields(TrainConfig)} - training_runs.STUDIO_SET
    unknown = set(overrides) - settings - training_runs.STUDIO_SET
    if unknown:  # named here: as keyword arguments they could also collide with start()'s own parameters
        raise ParamsError(f"unknown training setting(s): {', '.join(sorted(map(repr, unknown)))}")
    text = {k: body.get(k) for k in ("model", "name")}
    if any(v is not None and not isinstance(v, str) for v in text.values()):
        raise ParamsError("model and name must be text")
    preset = body.get("preset") or "balanced"
    if not isinstance(preset, str | dict):
        raise ParamsError("preset must be a preset's name or an object of its settings")
    return training_runs.start(app.studio, body["dataset"], preset, text["model"], text["name"], **overrides)


def result_dict(result: GenerateResult) -> dict[str, Any]:
    """A finished job's files and seeds (paths on this machine)."""
    return {
        "job_id": result.job_id,
        "params": result.params.to_dict(),
        "images": [{"id": im.id, "path": str(im.path), "raw_path": str(im.raw_path), "seed": im.seed,
                    "width": im.width, "height": im.height} for im in result.images],
        "extras": {name: str(path) for name, path in result.extras.items()},
    }


def job_state(app: App, job_id: str) -> dict[str, Any]:
    """Status, progress and (once done) the result of a job; NotFound for an unknown id."""
    live = app.studio.queue.get(job_id)
    if live is None:
        row = app.studio.job(job_id)  # NotFound
        return {"id": job_id, "status": row["status"], "error": row.get("error"), "step": 0, "total": 0}
    state = live.summary()
    if live.status == "done":
        state["result"] = result_dict(live.result)
    return state


__all__ = ["KINDS", "NotFound", "job_state", "result_dict", "start_training", "submit_job"]
