"""The benchmarks feature: a run of a suite is a `bench` job on the studio's GPU queue; its figures are rows of
the `benchmarks` table in the studio's DuckDB file, one row per measured figure with the run's context.

`Benchmarks.submit(BenchSpec(...))` is what the CLI (`dgx-pixels bench`), the Metrics tab's "Run benchmarks"
and the repository's bench scripts call. A run refuses while a LoRA training run holds the GPU (both would be
measured), and the gpu suite at full size refuses without a CUDA GPU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.render import Cancelled
from studio.core import Studio
from studio.features import training_runs
from studio.features.benchmarks.context import MemoryWatch, model_hash, run_context
from studio.features.benchmarks.measure import KNOBS, Figure, Run
from studio.features.benchmarks.suites import BENCHMARKS, SUITES
from studio.jobs import Job, Runner
from studio.params import LoraRef, ParamsError, parse_loras
from studio.settings import Settings
from studio.store import now

log = logging.getLogger(__name__)

COLUMNS = ["run_id", "created", "suite", "benchmark", "metric", "value", "unit", "goal", "better", "note",
           "settings", "studio_version", "git_commit", "model", "model_hash", "loras", "device", "dtype", "torch",
           "cuda", "diffusers", "cpu", "gpu", "threads", "host"]


@dataclass(frozen=True)
class BenchSpec:
    """What to run: a suite, on a model (None: the studio's default; for `gpu`, random SDXL weights) with LoRAs;
    `tiny` makes every benchmark a smoke run (1-2 steps, one repeat); `only` picks benchmarks of the suite."""

    suite: str = "quick"
    model: str | None = None
    loras: tuple[LoraRef, ...] = ()
    tiny: bool = False
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ParamsError(f"unknown benchmark suite {self.suite!r}; choose one of {', '.join(SUITES)}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ParamsError(f"model must be a model's name, got {self.model!r}")
        object.__setattr__(self, "model", self.model.strip() if self.model else None)
        object.__setattr__(self, "loras", parse_loras(self.loras))
        object.__setattr__(self, "tiny", bool(self.tiny))
        object.__setattr__(self, "only", tuple(self.only or ()))
        unknown = [b for b in self.only if b not in SUITES[self.suite]]
        if unknown:
            raise ParamsError(f"the {self.suite} suite has no benchmark {', '.join(unknown)}; it runs "
                              f"{', '.join(SUITES[self.suite])}")

    @property
    def benchmarks(self) -> tuple[str, ...]:
        """The benchmarks to run, in order (the gpu suite builds its random model first whatever `only` says)."""
        built = self.suite == "gpu" and self.model is None
        return tuple(b for b in SUITES[self.suite] if not self.only or b in self.only or (built and b == "build"))

    @property
    def prompt(self) -> str:  # what the jobs table shows for the run
        return f"{self.suite} benchmarks{' (tiny)' if self.tiny else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "model": self.model, "tiny": self.tiny, "only": list(self.only),
                "loras": [{"name": r.name, "weight": r.weight} for r in self.loras]}


@dataclass
class BenchResult:
    run_id: str
    suite: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # benchmark -> why it failed (the others ran)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "suite": self.suite, "errors": self.errors, "notes": self.notes,
                "rows": self.rows}


class Benchmarks:
    """The `bench` job kind over one studio; its rows go into that studio's DuckDB file.

    `open_app` (from the composition root) opens a scratch App on other settings; `mcp` (set by the front ends
    that serve MCP) builds the MCP server for an App, for the MCP overhead benchmark."""

    def __init__(self, studio: Studio, open_app: Callable[[Settings], Any]):
        self.studio = studio
        self.store = studio.store
        self.open_app = open_app
        self.mcp: Callable[[Any], Any] | None = None

    def runners(self) -> dict[str, Runner]:
        return {"bench": self._run}

    def refusal(self, spec: BenchSpec) -> str | None:
        """Why this run cannot start now, in words (None: it can)."""
        if training_runs.active(self.studio):
            return ("a LoRA training run has the GPU: benchmarks now would measure both. Run them when it has "
                    "finished (or stop it in the Train tab)")
        if spec.suite == "gpu" and not spec.tiny and self.studio.manager.device.type != "cuda":
            return "the gpu suite runs full-size SDXL and needs a CUDA GPU (hours on a CPU); tick tiny for a smoke run"
        return None

    def check(self, spec: BenchSpec) -> BenchSpec:
        """What can be checked before queueing: the GPU is free to measure, the model and LoRAs exist."""
        reason = self.refusal(spec)
        if reason:
            raise ValueError(reason)
        if spec.model:
            entry = self.studio.registry.checkpoint(spec.model)
            if entry.error:
                raise ValueError(f"model {entry.name!r} cannot be used: {entry.error}")
        for ref in spec.loras:
            self.studio.registry.lora(ref.name)
        return spec

    def submit(self, spec: BenchSpec, source: str = "python", owner: str | None = None) -> Job:
        return self.studio.queue.submit("bench", self.check(spec), source, owner)

    def run(self, spec: BenchSpec, source: str = "python", timeout: float | None = None) -> BenchResult:
        job = self.studio.queue.wait(self.submit(spec, source), timeout)
        return self.studio.result(job)

    # -- on the worker thread ------------------------------------------------------------------------------------

    def _run(self, job: Job) -> BenchResult:
        spec: BenchSpec = job.params
        reason = self.refusal(spec)  # a training run may have started while this waited in the queue
        if reason:
            raise ValueError(reason)
        model = spec.model or (None if spec.suite == "gpu" else self.studio.default_model)
        knobs = KNOBS[(spec.suite, spec.tiny)]
        run = Run(self.studio, job, spec.suite, model, spec.loras, knobs, self.open_app, self.mcp)
        result = BenchResult(job.id, spec.suite)
        settings = json.dumps({**knobs.to_dict(), "tiny": spec.tiny})
        context: dict | None = None
        names = spec.benchmarks
        try:
            for i, name in enumerate(names):
                title, measure = BENCHMARKS[name]
                run.begin(i, len(names), title)
                with MemoryWatch(run.cuda) as memory:
                    try:
                        figures = measure(run)
                    except Cancelled:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one benchmark failing leaves the others to run
                        log.exception("benchmark %s failed", name)
                        result.errors[name] = f"{type(exc).__name__}: {exc}"
                        figures = [Figure("error", None, "", note=result.errors[name][:500])]
                figures += _memory_figures(memory)
                if context is None and run.model is not None:  # the model is known once built (gpu suite)
                    context = run_context(self.studio, run.model, self._model_hash(run), spec.loras)
                rows = [self._row(job.id, spec.suite, name, f, settings, context or {}) for f in figures]
                self._insert(rows)
                result.rows += rows
        finally:
            result.notes = run.notes
            run.close()
        job.progress(len(names) * 100, len(names) * 100, "done")
        self._finish(job)
        return result

    def _model_hash(self, run: Run) -> str | None:
        """The measured model's hash; none for the random weights the gpu suite builds for itself."""
        known = {m.name for m in self.studio.registry.checkpoints()}
        return model_hash(self.studio, run.model) if run.model in known else None

    @staticmethod
    def _row(run_id: str, suite: str, benchmark: str, f: Figure, settings: str, context: dict) -> dict:
        value = None if f.value is None else float(f.value)
        return {"run_id": run_id, "created": now(), "suite": suite, "benchmark": benchmark, "metric": f.metric,
                "value": value, "unit": f.unit, "goal": f.goal, "better": f.better, "note": f.note,
                "settings": settings, **{c: context.get(c) for c in COLUMNS[11:]}}

    def _insert(self, rows: list[dict]) -> None:
        sql = f"INSERT INTO benchmarks ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with self.store.transaction() as con:
            con.executemany(sql, [[r[c] for c in COLUMNS] for r in rows])

    def _finish(self, job: Job) -> None:
        """The run's 'done' row (a generation job's runner writes it with its images; this one has none)."""
        self.store.finish_job(job.id, job.params.to_dict(), [])

    # -- reading back ----------------------------------------------------------------------------------------------

    def rows(self, run_id: str | None = None) -> list[dict]:
        """A run's rows (default: the newest run's), in the order they were measured."""
        if run_id is None:
            last = self.store.query("SELECT run_id FROM benchmarks ORDER BY created DESC LIMIT 1")
            if not last:
                return []
            run_id = last[0]["run_id"]
        return self.store.query("SELECT * FROM benchmarks WHERE run_id = ? ORDER BY created, benchmark, metric",
                                [run_id])


def _memory_figures(memory: MemoryWatch) -> list[Figure]:
    out = []
    if memory.peak_mb:
        out.append(Figure("peak_mem_mb", memory.peak_mb, "MB", better="lower", note=memory.kind))
    if memory.unified_peak_mb:
        out.append(Figure("unified_used_peak_mb", memory.unified_peak_mb, "MB", better="lower",
                          note="system memory in use (MemTotal - MemAvailable), sampled: GPU and CPU share it"))
    return out


def report(result: BenchResult, db_path: Path | None = None) -> str:
    """A run as a person reads it in a terminal: its context, one line per figure with its goal, notes, errors."""
    c = result.rows[0] if result.rows else {}
    lines = [f"{result.suite} suite on {c.get('model')} ({c.get('device')}, {c.get('dtype')}, {c.get('threads')} "
             f"thread(s)), studio {c.get('studio_version')} {c.get('git_commit') or ''}, run {result.run_id}",
             f"{'benchmark':14} {'figure':32} {'value':>12} {'unit':12} goal"]
    for r in result.rows:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        goal = "" if r["goal"] is None else f"{'<=' if r['better'] == 'lower' else '>='} {r['goal']:g}"
        if goal and r["value"] is not None:
            met = r["value"] <= r["goal"] if r["better"] == "lower" else r["value"] >= r["goal"]
            goal += "  met" if met else "  NOT met"
        lines.append(f"{r['benchmark']:14} {r['metric']:32} {value:>12} {r['unit'] or '':12} {goal}".rstrip())
    lines += [f"note: {n}" for n in result.notes] + [f"FAILED {b}: {why}" for b, why in result.errors.items()]
    if db_path is not None:
        lines.append(f"stored in {db_path} (table benchmarks, run_id '{result.run_id}')")
    return "\n".join(lines)
