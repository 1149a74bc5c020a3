"""Metrics: how the studio has been doing, from DuckDB's job history and the benchmark results on disk.

Plain functions returning pandas frames and plotly figures, so the Metrics tab only lays them out and a
notebook can call the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from studio.store import Store

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def jobs_frame(store: Store, limit: int = 5000) -> pd.DataFrame:
    rows = store.query(
        "SELECT seq, kind, source, status, created, seconds, "
        "(SELECT count(*) FROM images i WHERE i.job_id = j.id) AS images FROM jobs j ORDER BY seq DESC LIMIT ?",
        [limit],
    )
    return pd.DataFrame(rows, columns=["seq", "kind", "source", "status", "created", "seconds", "images"])


def job_time_figure(jobs: pd.DataFrame) -> go.Figure:
    """Seconds per finished job over time, by kind: slowdowns (a bigger model, a busy GPU) show at a glance."""
    done = jobs[jobs["status"] == "done"].dropna(subset=["seconds"])
    if done.empty:
        return _empty("No finished jobs yet")
    fig = px.scatter(done, x="created", y="seconds", color="kind", symbol="source",
                     hover_data=["seq", "images"], title="Seconds per job")
    fig.update_layout(height=360, margin=dict(l=40, r=20, t=50, b=40))
    return fig


def outcome_figure(jobs: pd.DataFrame) -> go.Figure:
    """Jobs by kind and outcome (done, failed, cancelled, interrupted)."""
    if jobs.empty:
        return _empty("No jobs yet")
    counts = jobs.groupby(["kind", "status"]).size().reset_index(name="jobs")
    fig = px.bar(counts, x="kind", y="jobs", color="status", title="Jobs by kind and outcome")
    fig.update_layout(height=360, margin=dict(l=40, r=20, t=50, b=40))
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
        return _empty("No benchmark results in bench/results/")
    frame = pd.DataFrame(rows, columns=["benchmark", "share of budget"])
    fig = px.bar(frame, x="share of budget", y="benchmark", orientation="h", title="Benchmarks vs goals")
    fig.add_vline(x=1.0, line_dash="dash", annotation_text="goal")
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=50, b=40))
    return fig


def _empty(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=240, xaxis_visible=False, yaxis_visible=False)
    return fig
