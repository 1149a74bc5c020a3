"""Metrics: how the studio has been doing, from DuckDB (the job history with what each job measured, the
benchmark runs) and the training run folders.

Plain functions returning pandas frames and plotly figures, so the Metrics tab only lays them out and a
notebook can call the same ones. `activity_frame` is every job (generation, battles, sweeps, clean-ups) and
every training run as rows of one shape; `table_for_people` rounds it for reading. `production_frame` is real
use per model (latency p50/p95, sprites per minute, steps/s, peak memory); the `bench_*` functions read the
`benchmarks` table: runs, one figure's history, two runs side by side, an export.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from PIL import Image

from studio.core import RECIPES, Studio
from studio.features import training_runs
from studio.store import Store, now

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


# -- production: what real use measured, per model ------------------------------------------------------------

WINDOWS = {"last day": 1.0, "last week": 7.0, "last 30 days": 30.0, "all time": None}
PRODUCTION_COLUMNS = ["model", "jobs", "sprites", "p50_s", "p95_s", "sprites_per_min", "steps_per_s",
                      "peak_mem_mb", "device"]


def production_frame(store: Store, days: float | None = 7.0) -> pd.DataFrame:
    """Finished generation jobs of the last `days` (None: all), per model: job latency p50/p95 (seconds of the
    run), sprites made, sprites per minute of GPU time (sprites / the jobs' seconds), median steps/s, the
    highest peak memory, the devices. From the rows every job records, not from benchmark runs."""
    since = None if days is None else now() - timedelta(days=days)
    kinds = list(RECIPES)
    rows = store.query(
        "SELECT coalesce(json_extract_string(j.params, '$.model'), '?') AS model, count(*) AS jobs, "
        "sum(coalesce(i.n, 0)) AS sprites, quantile_cont(j.seconds, 0.5) AS p50_s, "
        "quantile_cont(j.seconds, 0.95) AS p95_s, "
        "60.0 * sum(coalesce(i.n, 0)) / nullif(sum(j.seconds), 0) AS sprites_per_min, "
        "median(j.steps_per_s) AS steps_per_s, max(j.peak_mem_mb) AS peak_mem_mb, "
        "string_agg(DISTINCT j.device, ', ' ORDER BY j.device) AS device "
        "FROM jobs j LEFT JOIN (SELECT job_id, count(*) AS n FROM images GROUP BY job_id) i ON i.job_id = j.id "
        f"WHERE j.status = 'done' AND j.seconds IS NOT NULL AND j.kind IN ({', '.join('?' * len(kinds))}) "
        "AND (?::TIMESTAMP IS NULL OR j.created >= ?::TIMESTAMP) "
        "GROUP BY 1 ORDER BY sprites DESC, model",
        [*kinds, since, since],
    )
    return pd.DataFrame(rows, columns=PRODUCTION_COLUMNS)


def production_for_people(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": frame["model"].astype(str),
        "jobs": [str(int(n)) for n in frame["jobs"]],
        "sprites": [str(int(n)) for n in frame["sprites"]],
        "latency p50 (s)": [_num(v) for v in frame["p50_s"]],
        "latency p95 (s)": [_num(v) for v in frame["p95_s"]],
        "sprites/min": [_num(v) for v in frame["sprites_per_min"]],
        "steps/s": [_num(v) for v in frame["steps_per_s"]],
        "peak memory (MB)": [f"{v:.0f}" if pd.notna(v) else "—" for v in frame["peak_mem_mb"]],
        "device": frame["device"].fillna("—").astype(str),
    })


def production_figure(frame: pd.DataFrame, window: str = "") -> go.Figure:
    """Latency p50 and p95 per model, with sprites per minute on each bar."""
    if frame.empty:
        return _empty(f"No finished generation jobs {window or 'yet'}: generate sprites and their times show here")
    fig = go.Figure()
    for col, name, colour in (("p50_s", "p50", "#3182ce"), ("p95_s", "p95", "#90cdf4")):
        fig.add_bar(x=frame["model"], y=frame[col].astype(float).round(2), name=f"latency {name}",
                    marker_color=colour)
    fig.update_traces(selector=dict(name="latency p50"),
                      text=[f"{v:.1f} sprites/min" if pd.notna(v) else "" for v in frame["sprites_per_min"]],
                      textposition="outside")
    fig.update_layout(height=340, margin=dict(l=60, r=20, t=50, b=50), template="plotly_white", barmode="group",
                      title=f"Job latency per model{f' ({window})' if window else ''}", xaxis_title="model",
                      yaxis_title="seconds per job", legend_title_text="")
    fig.update_yaxes(rangemode="tozero")
    return fig


# -- benchmark runs (the `benchmarks` table) ---------------------------------------------------------------------

RUN_COLUMNS = ["run_id", "created", "suite", "model", "device", "loras", "studio_version", "git_commit", "tiny",
               "figures", "errors"]


def bench_runs(store: Store, limit: int = 200) -> pd.DataFrame:
    """One row per run, newest first."""
    rows = store.query(
        "SELECT run_id, min(created) AS created, any_value(suite) AS suite, any_value(model) AS model, "
        "any_value(device) AS device, any_value(loras) AS loras, any_value(studio_version) AS studio_version, "
        "any_value(git_commit) AS git_commit, "
        "bool_or(coalesce(json_extract(settings, '$.tiny')::BOOLEAN, false)) AS tiny, "
        "count(*) FILTER (WHERE metric <> 'error') AS figures, count(*) FILTER (WHERE metric = 'error') AS errors "
        "FROM benchmarks GROUP BY run_id ORDER BY created DESC LIMIT ?", [limit])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_label(row) -> str:
    version = row["studio_version"] or "?"
    commit = f"@{str(row['git_commit'])[:8]}" if row["git_commit"] else ""
    loras = f" + {row['loras']}" if row["loras"] else ""
    return (f"{_when(row['created'])[:16]} · {row['suite']}{' (tiny)' if row['tiny'] else ''} · {row['model']}"
            f"{loras} · {row['device']} · {version}{commit} · {row['run_id']}")


def run_choices(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, run id) for a dropdown, newest first."""
    return [(run_label(r), r["run_id"]) for _, r in runs.iterrows()]


def bench_series(store: Store) -> list[str]:
    """Every `benchmark / metric` measured, for the history picker (errors left out)."""
    rows = store.query("SELECT DISTINCT benchmark, metric FROM benchmarks WHERE metric <> 'error' "
                       "ORDER BY benchmark, metric")
    return [f"{r['benchmark']} / {r['metric']}" for r in rows]


def bench_history(store: Store, series: str) -> pd.DataFrame:
    """One point per run of `benchmark / metric`: its value, unit, goal and the run's context."""
    benchmark, _, metric = (series or "").partition(" / ")
    rows = store.query(
        "SELECT run_id, min(created) AS created, avg(value) AS value, any_value(unit) AS unit, "
        "any_value(goal) AS goal, any_value(better) AS better, any_value(suite) AS suite, "
        "any_value(model) AS model, any_value(device) AS device, any_value(loras) AS loras, "
        "any_value(studio_version) AS studio_version, any_value(git_commit) AS git_commit, "
        "bool_or(coalesce(json_extract(settings, '$.tiny')::BOOLEAN, false)) AS tiny "
        "FROM benchmarks WHERE benchmark = ? AND metric = ? AND value IS NOT NULL "
        "GROUP BY run_id ORDER BY created", [benchmark, metric])
    return pd.DataFrame(rows, columns=["run_id", "created", "value", "unit", "goal", "better", "suite", "model",
                                       "device", "loras", "studio_version", "git_commit", "tiny"])


def history_figure(history: pd.DataFrame, series: str = "") -> go.Figure:
    """The figure over time, one point per run, coloured by studio version, shaped by model and device; the
    goal as a dashed line."""
    if history.empty:
        return _empty("No benchmark runs yet: press Run benchmarks (or `dgx-pixels bench`) and each run is a "
                      "point here")
    h = history.assign(
        version=[f"{v or '?'}{f'@{str(c)[:8]}' if c else ''}" for v, c in zip(history["studio_version"],
                                                                               history["git_commit"], strict=True)],
        setup=[f"{m} on {d}{' (tiny)' if t else ''}" for m, d, t in zip(history["model"], history["device"],
                                                                          history["tiny"], strict=True)],
        value=history["value"].astype(float))
    unit = str(h["unit"].iloc[-1] or "")
    fig = px.line(h, x="created", y="value", color="version", symbol="setup", markers=True,
                  hover_data={"run_id": True, "suite": True, "loras": True, "value": ":.4g"},
                  title=f"{series or 'benchmark'}: history")
    goal = h["goal"].dropna()
    if not goal.empty:
        better = h["better"].dropna()
        fig.add_hline(y=float(goal.iloc[-1]), line_dash="dash",
                      annotation_text=f"goal ({'at most' if better.empty or better.iloc[-1] == 'lower' else 'at least'}"
                                      f" {float(goal.iloc[-1]):g})")
    fig.update_layout(height=380, margin=dict(l=60, r=20, t=50, b=50), template="plotly_white",
                      xaxis_title="run (UTC)", yaxis_title=unit or "value", legend_title_text="version, setup")
    return fig


def compare_runs(store: Store, run_a: str, run_b: str) -> pd.DataFrame:
    """Two runs side by side (before/after an update, base vs fine-tune): every figure either measured, the
    change from A to B, and whether it is better or worse (by the figure's `better`)."""
    rows = store.query(
        "SELECT coalesce(a.benchmark, b.benchmark) AS benchmark, coalesce(a.metric, b.metric) AS metric, "
        "coalesce(a.unit, b.unit) AS unit, a.value AS a, b.value AS b, coalesce(a.goal, b.goal) AS goal, "
        "coalesce(a.better, b.better) AS better "
        "FROM (SELECT * FROM benchmarks WHERE run_id = ? AND metric <> 'error') a "
        "FULL OUTER JOIN (SELECT * FROM benchmarks WHERE run_id = ? AND metric <> 'error') b "
        "ON a.benchmark = b.benchmark AND a.metric = b.metric ORDER BY 1, 2", [run_a, run_b])
    out = []
    for r in rows:
        a, b = r["a"], r["b"]
        change, verdict = "—", ""
        if a is not None and b is not None and a != 0:
            pct = (b - a) / abs(a) * 100
            change = f"{pct:+.1f}%"
            if r["better"] and abs(pct) >= 1:
                verdict = "better" if (pct < 0) == (r["better"] == "lower") else "worse"
        out.append({"benchmark": r["benchmark"], "metric": r["metric"], "unit": r["unit"] or "",
                    "run A": _num(a), "run B": _num(b), "change": change, "B vs A": verdict,
                    "goal": _goal(r["goal"], r["better"])})
    return pd.DataFrame(out, columns=["benchmark", "metric", "unit", "run A", "run B", "change", "B vs A", "goal"])


def run_table(store: Store, run_id: str | None = None) -> pd.DataFrame:
    """A run's figures as people read them (default: the newest run), goal met or not."""
    if run_id is None:
        runs = bench_runs(store, limit=1)
        if runs.empty:
            return pd.DataFrame(columns=["benchmark", "metric", "value", "unit", "goal", "met", "note"])
        run_id = runs.iloc[0]["run_id"]
    rows = store.query("SELECT benchmark, metric, value, unit, goal, better, note FROM benchmarks "
                       "WHERE run_id = ? ORDER BY created, benchmark, metric", [run_id])
    return pd.DataFrame([{"benchmark": r["benchmark"], "metric": r["metric"], "value": _num(r["value"]),
                          "unit": r["unit"] or "", "goal": _goal(r["goal"], r["better"]),
                          "met": _met(r["value"], r["goal"], r["better"]), "note": r["note"] or ""} for r in rows],
                        columns=["benchmark", "metric", "value", "unit", "goal", "met", "note"])


def export_benchmarks(store: Store, path: Path) -> Path:
    """Every benchmark row as CSV or Parquet (by the file's suffix), via DuckDB's COPY."""
    path = Path(path)
    fmt = {".csv": "CSV, HEADER", ".parquet": "PARQUET"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError("export to a .csv or .parquet file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with store.transaction() as con:
        con.execute(f"COPY (SELECT * FROM benchmarks ORDER BY created, run_id) TO '{tmp.as_posix()}' (FORMAT {fmt})")
    tmp.replace(path)
    return path


def goals_figure(rows: pd.DataFrame | list[dict]) -> go.Figure:
    """A run's figures that have a goal, as the share of the goal's budget (below 1 = goal met)."""
    frame = pd.DataFrame(rows)
    if frame.empty or "goal" not in frame or frame["goal"].isna().all():
        return _empty("No benchmark run yet: press Run benchmarks and its figures are measured against their goals")
    frame = frame.dropna(subset=["goal", "value"])
    frame = frame[frame["value"].astype(float) > 0]
    shares = [(f"{r.benchmark} {r.metric} ({'<=' if r.better == 'lower' else '>='} {r.goal:g})",
               r.value / r.goal if r.better == "lower" else r.goal / r.value) for r in frame.itertuples()]
    data = pd.DataFrame(shares, columns=["benchmark", "share of budget"])
    fig = px.bar(data, x="share of budget", y="benchmark", orientation="h", title="Last run vs goals",
                 text=[f"{v:.2f}" for v in data["share of budget"]])
    fig.add_vline(x=1.0, line_dash="dash", annotation_text="goal")
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=50, b=50), template="plotly_white",
                      xaxis_title="share of the goal's budget (below 1 = goal met)", yaxis_title="")
    return fig


def _num(v) -> str:
    if v is None or pd.isna(v):
        return "—"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 10_000 else f"{v:,.0f}"


def _goal(goal, better) -> str:
    return "" if goal is None or pd.isna(goal) else f"{'<=' if better == 'lower' else '>='} {float(goal):g}"


def _met(value, goal, better) -> str:
    if value is None or goal is None or pd.isna(value) or pd.isna(goal):
        return ""
    ok = value <= goal if better == "lower" else value >= goal
    return "yes" if ok else "NO"

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
