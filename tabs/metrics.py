"""Metrics tab: jobs and training runs, real use per model, and benchmark runs (run one, history, compare two
runs, export). Layout only; the numbers come from studio.features.metrics, the runs from `app.benchmarks`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from studio.core import JobFailed
from studio.features import metrics
from studio.features.benchmarks.run import BenchSpec
from studio.features.benchmarks.suites import SUITES
from studio.frontends.assemble import App
from tabs.common import on_show, owner

SUITE_HELP = ("quick: studio vs diffusers, LoRA switch, pixel engine, MCP (under 2 minutes on a CPU) · standard: "
              "plus batches of 1/4/8, battle vs singles, training steps · gpu: full-size SDXL (random weights "
              "unless a model is picked; needs CUDA) · tiny: a 1-2 step smoke run of the suite")
PREFERRED_SERIES = "generation / studio_over_direct"


def build(app: App, page: gr.Tab | None = None) -> None:
    """Everything is re-read when the tab is opened (`page`) and on Refresh."""
    studio, store = app.studio, app.studio.store
    refresh = gr.Button("Refresh", elem_id="metrics-refresh")
    with gr.Tabs():
        with gr.Tab("Activity", id="metrics-activity"):
            with gr.Row():
                times = gr.Plot(label="Seconds per job", elem_id="metrics-times")
                outcomes = gr.Plot(label="Jobs by outcome", elem_id="metrics-outcomes")
            goals = gr.Plot(label="Last benchmark run vs goals", elem_id="metrics-goals")
            table = gr.Dataframe(label="Recent jobs and training runs (newest first)", interactive=False,
                                 elem_id="metrics-table", wrap=True)
        with gr.Tab("Real use", id="metrics-production") as production_page:
            window = gr.Radio(list(metrics.WINDOWS), value="last week", label="Jobs of", elem_id="prod-window")
            production_plot = gr.Plot(label="Latency per model", elem_id="prod-plot")
            production_table = gr.Dataframe(label="Per model: job latency p50/p95, sprites per minute of GPU time "
                                            "(sprites / the jobs' seconds), steps/s, peak memory",
                                            interactive=False, elem_id="prod-table")
        with gr.Tab("Benchmarks", id="metrics-benchmarks") as bench_page:
            gr.Markdown(f"Benchmarks measure this machine, with its models, and land in the studio's DuckDB "
                        f"file (table `benchmarks`). {SUITE_HELP}.")
            with gr.Row():
                suite = gr.Dropdown(list(SUITES), value="quick", label="Suite", elem_id="bench-suite", scale=1)
                model = gr.Dropdown([""], value="", label="Model (blank: the studio's default)",
                                    allow_custom_value=True, elem_id="bench-model", scale=2)
                loras = gr.Textbox(label="LoRAs (NAME:WEIGHT, ...)", elem_id="bench-loras", scale=2)
                tiny = gr.Checkbox(label="tiny (smoke run)", value=False, elem_id="bench-tiny", scale=1)
            with gr.Row():
                run_btn = gr.Button("Run benchmarks", variant="primary", elem_id="bench-run")
                cancel = gr.Button("Cancel", variant="secondary", elem_id="bench-cancel")
            status = gr.Markdown("", elem_id="bench-status")
            series = gr.Dropdown([], label="Benchmark / figure", elem_id="bench-series")
            history = gr.Plot(label="History (one point per run)", elem_id="bench-history")
            last = gr.Dataframe(label="Last run", interactive=False, elem_id="bench-last", wrap=True)
            with gr.Row():
                run_a = gr.Dropdown([], label="Run A (before)", elem_id="bench-run-a")
                run_b = gr.Dropdown([], label="Run B (after)", elem_id="bench-run-b")
            compared = gr.Dataframe(label="Run A vs run B", interactive=False, elem_id="bench-compare", wrap=True)
            with gr.Row():
                export_fmt = gr.Radio(["csv", "parquet"], value="csv", label="Export every benchmark row as")
                export_btn = gr.Button("Export", elem_id="bench-export")
            export_file = gr.File(label="Benchmarks file", visible=False, elem_id="bench-file")

    def show():
        jobs = metrics.activity_frame(studio)
        return (metrics.job_time_figure(jobs), metrics.outcome_figure(jobs),
                metrics.goals_figure(app.benchmarks.rows()), metrics.table_for_people(jobs))

    outputs = [times, outcomes, goals, table]
    refresh.click(show, None, outputs, api_name="metrics")
    if page is not None:  # drawn when the tab is opened (it is never the tab a page load shows)
        page.select(show, None, outputs, api_visibility="private", show_progress="hidden")
    else:
        on_show(None, show, outputs)

    def show_production(win):
        frame = metrics.production_frame(store, metrics.WINDOWS.get(win, 7.0))
        return metrics.production_figure(frame, win), metrics.production_for_people(frame)

    production_outputs = [production_plot, production_table]
    window.change(show_production, window, production_outputs, api_name="production")
    production_page.select(show_production, window, production_outputs, api_visibility="private",
                           show_progress="hidden")
    refresh.click(show_production, window, production_outputs, api_visibility="private", show_progress="hidden")

    def show_bench(picked, a, b):
        """The pickers (what exists now), the history of the picked figure, the last run, the comparison."""
        choices = metrics.bench_series(store)
        picked = picked if picked in choices else (PREFERRED_SERIES if PREFERRED_SERIES in choices
                                                   else (choices[0] if choices else None))
        runs = metrics.bench_runs(store)
        ids = list(runs["run_id"])
        b = b if b in ids else (ids[0] if ids else None)
        a = a if a in ids else (ids[1] if len(ids) > 1 else b)
        names = [m["name"] for m in studio.models() if not m["error"]]
        return (gr.update(choices=choices, value=picked),
                metrics.history_figure(metrics.bench_history(store, picked or ""), picked or ""),
                metrics.run_table(store),
                gr.update(choices=metrics.run_choices(runs), value=a),
                gr.update(choices=metrics.run_choices(runs), value=b),
                metrics.compare_runs(store, a, b) if a and b else None,
                gr.update(choices=["", *names]))

    bench_outputs = [series, history, last, run_a, run_b, compared, model]
    bench_page.select(show_bench, [series, run_a, run_b], bench_outputs, api_visibility="private",
                      show_progress="hidden")
    refresh.click(show_bench, [series, run_a, run_b], bench_outputs, api_visibility="private",
                  show_progress="hidden")
    series.input(lambda s: metrics.history_figure(metrics.bench_history(store, s or ""), s or ""), series, history,
                 api_visibility="private", show_progress="hidden")

    def compare(a, b):
        return metrics.compare_runs(store, a, b) if a and b else None

    for picker in (run_a, run_b):
        picker.input(compare, [run_a, run_b], compared, api_visibility="private", show_progress="hidden")

    def run_bench(suite_, model_, loras_, tiny_, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        try:
            spec = BenchSpec(suite_ or "quick", model_ or None, loras_ or "", bool(tiny_))
            job = app.benchmarks.submit(spec, source="ui", owner=owner(request))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        progress(0, desc="queued")
        while not job.finished.wait(0.2):
            if job.status == "running" and job.total:
                progress(job.step / job.total, desc=job.stage or "benchmarks")
            elif job.error:
                progress(0, desc=job.error)  # waiting: why
        if job.status == "cancelled":
            return "Cancelled. The figures measured before the cancel are kept."
        try:
            result = studio.result(job)
        except JobFailed as exc:
            raise gr.Error(str(exc)) from None
        figures = sum(1 for r in result.rows if r["metric"] != "error")
        text = (f"Run `{result.run_id}` ({spec.prompt}): {figures} figures stored in "
                f"{job.figures.seconds:.0f} s." if job.figures else f"Run `{result.run_id}`: {figures} figures.")
        if result.errors:
            text += " Failed: " + "; ".join(f"{name}: {why}" for name, why in result.errors.items())
        if result.notes:
            text += " Notes: " + "; ".join(result.notes)
        return text

    run_btn.click(run_bench, [suite, model, loras, tiny], status, api_name="run_benchmarks").then(
        show_bench, [series, run_a, run_b], bench_outputs, api_visibility="private", show_progress="hidden")

    def cancel_runs(request: gr.Request):
        who = owner(request)
        n = sum(studio.queue.cancel(j.id) for j in studio.queue.active() if j.kind == "bench" and j.owner == who)
        gr.Info("Cancelling the benchmark run…" if n else "No benchmark run of yours to cancel.")

    cancel.click(cancel_runs, None, None, api_name="cancel_benchmarks")

    def export(fmt):
        out = Path(tempfile.mkdtemp(prefix="dgxp-bench-")) / f"benchmarks.{fmt}"
        return gr.File(value=str(metrics.export_benchmarks(store, out)), visible=True)

    export_btn.click(export, export_fmt, export_file, api_name="export_benchmarks")
