"""Metrics: how the studio has been doing, from DuckDB's job history, the training run folders and the
benchmark results on disk.

Plain functions returning pandas frames and plotly figures, so the Metrics tab only lays them out and a
notebook can call the same ones. `activity_frame` is every job (generation, battles, sweeps, clean-ups) and
every training run as rows of one shape; `table_for_people` rounds it for reading.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from PIL import Image

from studio.core import Studio
from studio.features import training_runs
from studio.store import Store

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
COLUMNS = ["seq", "kind", "source", "status", "created", "seconds", "images", "sizes", "what"]
OUTCOME_COLOURS = {"done": "#2f855a", "failed": "#c53030", "cancelled": "#718096", "interrupted": "#dd6b20",
                   "stopped": "#d69e2e", "running": "#3182ce", "queued": "#90cdf4"}
PEOPLE_COLUMNS = ["when (UTC)", "job", "kind", "what", "status", "seconds", "images", "sprite sizes"]


def jobs_frame(store: Store, limit: int = 5000) -> pd.DataFrame:
    """The newest jobs. `images`: what the job made (a generation's sprites, a battle's one per contender, a
    sweep's cells); `sizes`: every distinct sprite size among them, in the order they were made."""
    rows = store.query(
        "SELECT j.id, j.seq, j.kind, j.source, j.status, j.created, j.seconds, j.prompt, j.params, "
        "i.sizes, coalesce(i.n, 0) AS gen_images, b.paths AS battle_paths "
        "FROM jobs j "
        "LEFT JOIN (SELECT job_id, count(*) AS n, list(width || 'x' || height ORDER BY idx) AS sizes "
        "           FROM images GROUP BY job_id) i ON i.job_id = j.id "
        "LEFT JOIN (SELECT t.job_id, list(bi.path ORDER BY bi.slot) AS paths FROM battles t "
        "           JOIN battle_images bi ON bi.battle_id = t.id GROUP BY t.job_id) b ON b.job_id = j.id "
        "ORDER BY j.seq DESC LIMIT ?",
        [limit],
    )
    out = []
    for r in rows:
        sizes, images = list(r["sizes"] or []), int(r["gen_images"])
        if r["battle_paths"]:
            images += len(r["battle_paths"])
            sizes += [s for s in map(_png_size, r["battle_paths"]) if s]
        elif r["kind"] == "sweep" and r["status"] == "done":
            images += len(_params(r["params"]).get("values") or [])
        out.append({"seq": r["seq"], "kind": r["kind"], "source": r["source"], "status": r["status"],
                    "created": r["created"], "seconds": r["seconds"], "images": images,
                    "sizes": ", ".join(dict.fromkeys(sizes)), "what": _short(r["prompt"])})
    return _frame(out)


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """Training runs (`training.runs.list_runs` rows) as job-like rows: kind 'training', the run's state as its
    status, its wall time in seconds (still growing while it runs), the run folder's name as `what`."""
    out = []
    for r in runs:
        started = r.get("started")
        if not isinstance(started, int | float):
            continue
        end = time.time() if r.get("state") == "running" else r.get("updated", started)
        step = f" (step {r.get('step', 0)}/{r['total']})" if r.get("total") else ""
        out.append({"seq": None, "kind": "training", "source": "train", "status": r.get("state") or "unknown",
                    "created": datetime.fromtimestamp(started, UTC).replace(tzinfo=None),
                    "seconds": max(float(end) - float(started), 0.0), "images": 0, "sizes": "",
                    "what": f"{r.get('run_id', '')}{step}"})
    return _frame(out)


def activity_frame(studio: Studio, limit: int = 5000) -> pd.DataFrame:
    """Jobs and training runs together, newest first."""
    frames = [f for f in (jobs_frame(studio.store, limit), runs_frame(training_runs.runs(studio))) if not f.empty]
    if not frames:
        return _frame([])
    both = pd.concat(frames, ignore_index=True).sort_values("created", ascending=False, kind="stable")
    return both.head(limit).reset_index(drop=True)


def table_for_people(frame: pd.DataFrame, rows: int = 50) -> pd.DataFrame:
    """The newest rows as people read them: times to the second, seconds to a tenth, whole image counts."""
    head = frame.head(rows)
    out = pd.DataFrame({
        "when (UTC)": [_when(t) for t in head["created"]],
        "job": [f"#{int(s)}" if pd.notna(s) else "run" for s in head["seq"]],
        "kind": head["kind"].astype(str),
        "what": head["what"].fillna("").astype(str),
        "status": head["status"].astype(str),
        "seconds": [f"{s:.1f}" if pd.notna(s) else "—" for s in head["seconds"]],
        "images": [str(int(n)) for n in head["images"]],
        "sprite sizes": head["sizes"].fillna("").astype(str),
    }, columns=PEOPLE_COLUMNS)
    return out


def job_time_figure(jobs: pd.DataFrame) -> go.Figure:
    """Seconds per finished job over time, by kind: slowdowns (a bigger model, a busy GPU) show at a glance."""
    done = jobs[jobs["status"] == "done"].dropna(subset=["seconds"])
    if done.empty:
        return _empty("No finished jobs yet: generate a sprite or run a battle, and its time shows here")
    done = done.assign(seconds=done["seconds"].astype(float).round(1), job=done["what"].fillna(""))
    fig = px.scatter(done, x="created", y="seconds", color="kind", symbol="source",
                     hover_data={"job": True, "images": True, "seconds": ":.1f"}, title="Seconds per job")
    fig.update_layout(height=360, margin=dict(l=60, r=20, t=50, b=50), template="plotly_white",
                      xaxis_title="started (UTC)", yaxis_title="wall time (seconds)", legend_title_text="kind")
    fig.update_yaxes(rangemode="tozero")
    return fig


def outcome_figure(jobs: pd.DataFrame) -> go.Figure:
    """Jobs by kind and outcome (done, failed, cancelled, interrupted)."""
    if jobs.empty:
        return _empty("No jobs yet: generate a sprite and it is counted here")
    counts = jobs.groupby(["kind", "status"]).size().reset_index(name="jobs")
    fig = px.bar(counts, x="kind", y="jobs", color="status", title="Jobs by kind and outcome",
                 color_discrete_map=OUTCOME_COLOURS)
    fig.update_layout(height=360, margin=dict(l=60, r=20, t=50, b=50), template="plotly_white",
                      xaxis_title="kind of job", yaxis_title="jobs (count)", legend_title_text="outcome")
    fig.update_yaxes(tickformat="d", rangemode="tozero")
    return fig


def bench_results(folder: Path = BENCH_RESULTS) -> dict[str, dict]:
    out = {}
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
    return out


def goals_figure(results: dict[str, dict]) -> go.Figure:
    """Each benchmark's headline number against its goal, as a ratio (below 1 = goal met)."""
    rows = []
    r = results.get("studio_overhead", {})
    if "generation" in r:
        rows.append(("studio / direct diffusers (<= 1.05)", r["generation"]["ratio"] / 1.05))
        rows.append(("LoRA switch speed-up (>= 20x)", 20 / r["lora_switch"]["speedup"]))
    r = results.get("mcp_overhead", {})
    if "generate_sprite" in r:
        rows.append(("MCP overhead ms (<= 50)", r["generate_sprite"]["overhead_ms"] / 50))
    r = results.get("compare_overhead", {})
    if "ratio" in r:
        rows.append(("4-way battle / 4 singles (<= 1.1)", r["ratio"] / 1.1))
    r = results.get("training_cache", {})
    if "speedup" in r:
        rows.append(("training steps/s, cached / encoded (>= 1.5x)", 1.5 / r["speedup"]))
    if not rows:
        return _empty("No benchmark results in bench/results/ yet (the bench/ scripts write them)")
    frame = pd.DataFrame(rows, columns=["benchmark", "share of budget"])
    fig = px.bar(frame, x="share of budget", y="benchmark", orientation="h", title="Benchmarks vs goals",
                 text=[f"{v:.2f}" for v in frame["share of budget"]])
    fig.add_vline(x=1.0, line_dash="dash", annotation_text="goal")
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=50, b=50), template="plotly_white",
                      xaxis_title="share of the goal's budget (below 1 = goal met)", yaxis_title="")
    return fig


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["images"] = frame["images"].fillna(0).astype(int)
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce")
    frame["created"] = pd.to_datetime(frame["created"])
    return frame


def _params(raw) -> dict:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _png_size(path: str) -> str | None:
    """A stored sprite's size from its file header (battle images are not in the images table)."""
    try:
        with Image.open(path) as im:
            return f"{im.width}x{im.height}"
    except OSError:
        return None


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(t) -> str:
    return "—" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _empty(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=240, xaxis_visible=False, yaxis_visible=False, template="plotly_white")
    return fig
