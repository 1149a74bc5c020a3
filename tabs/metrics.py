"""Metrics tab: job history and benchmark results, plotted. Layout only; the numbers come from studio.features.metrics."""

from __future__ import annotations

import gradio as gr

from studio.features import metrics
from studio.frontends.assemble import App


def build(app: App, page: gr.Tab | None = None) -> None:
    """The plots fill in when the tab is opened (`page`), and again on Refresh."""
    studio = app.studio
    refresh = gr.Button("Refresh", elem_id="metrics-refresh")
    with gr.Row():
        times = gr.Plot(label="Seconds per job", elem_id="metrics-times")
        outcomes = gr.Plot(label="Jobs by outcome", elem_id="metrics-outcomes")
    goals = gr.Plot(label="Benchmarks vs goals", elem_id="metrics-goals")
    table = gr.Dataframe(label="Recent jobs", interactive=False)

    def show():
        jobs = metrics.jobs_frame(studio.store)
        return (metrics.job_time_figure(jobs), metrics.outcome_figure(jobs),
                metrics.goals_figure(metrics.bench_results()), jobs.head(50))

    outputs = [times, outcomes, goals, table]
    refresh.click(show, None, outputs, api_name="metrics")
    if page is not None:
        page.select(show, None, outputs, api_visibility="private")
