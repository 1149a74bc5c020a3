"""Metrics tab: job history and benchmark results, plotted. Layout only; the numbers come from studio.metrics."""

from __future__ import annotations

import gradio as gr

from studio import metrics
from studio.core import Studio


def build(studio: Studio) -> None:
    refresh = gr.Button("Refresh", elem_id="metrics-refresh")
    with gr.Row():
        times = gr.Plot(label="Seconds per job")
        outcomes = gr.Plot(label="Jobs by outcome")
    goals = gr.Plot(label="Benchmarks vs goals")
    table = gr.Dataframe(label="Recent jobs", interactive=False)

    def show():
        jobs = metrics.jobs_frame(studio.store)
        return (metrics.job_time_figure(jobs), metrics.outcome_figure(jobs),
                metrics.goals_figure(metrics.bench_results()), jobs.head(50))

    refresh.click(show, None, [times, outcomes, goals, table], api_name="metrics")
