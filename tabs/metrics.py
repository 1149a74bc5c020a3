"""Metrics tab: jobs, training runs and benchmark results, plotted. Layout only; the numbers come from
studio.features.metrics."""

from __future__ import annotations

import gradio as gr

from studio.features import metrics
from studio.frontends.assemble import App
from tabs.common import on_show


def build(app: App, page: gr.Tab | None = None) -> None:
    """Everything is re-read when the tab is opened (`page`) and on Refresh."""
    studio = app.studio
    refresh = gr.Button("Refresh", elem_id="metrics-refresh")
    with gr.Row():
        times = gr.Plot(label="Seconds per job", elem_id="metrics-times")
        outcomes = gr.Plot(label="Jobs by outcome", elem_id="metrics-outcomes")
    goals = gr.Plot(label="Benchmarks vs goals", elem_id="metrics-goals")
    table = gr.Dataframe(label="Recent jobs and training runs (newest first)", interactive=False,
                         elem_id="metrics-table", wrap=True)

    def show():
        jobs = metrics.activity_frame(studio)
        return (metrics.job_time_figure(jobs), metrics.outcome_figure(jobs),
                metrics.goals_figure(metrics.bench_results()), metrics.table_for_people(jobs))

    outputs = [times, outcomes, goals, table]
    refresh.click(show, None, outputs, api_name="metrics")
    if page is not None:  # drawn when the tab is opened (it is never the tab a page load shows)
        page.select(show, None, outputs, api_visibility="private", show_progress="hidden")
    else:
        on_show(None, show, outputs)
