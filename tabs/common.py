"""What several tabs share: lists that are re-read whenever a tab is shown, and waiting for a queued job while
driving Gradio's progress bar."""

from __future__ import annotations

import gradio as gr
from gradio.context import Context

from studio.core import JobFailed, Studio


def submit_and_wait(studio: Studio, submit, progress: gr.Progress, what: str = "step"):
    """`submit()` queues a job (bad input raises ValueError -> shown as a gr.Error); then `wait_for` it."""
    try:
        job = submit()
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    return wait_for(studio, job, progress, what)


def wait_for(studio: Studio, job, progress: gr.Progress, what: str = "step"):
    """Block this event (not the GPU worker) until the job ends; its result, or a gr.Error with the reason.

    A cancelled job returns None so the caller can say so quietly instead of showing an error.
    """
    progress(0, desc="queued")
    while not job.finished.wait(0.1):
        if job.status == "running" and job.total:
            progress((job.step, job.total), desc=f"{what} {job.step}/{job.total}")
    try:
        return studio.result(job)
    except JobFailed as exc:
        if job.status == "cancelled":
            return None
        raise gr.Error(str(exc)) from None


def on_show(page: gr.Tab | None, fn, outputs: list, inputs: list | None = None) -> None:
    """Run `fn` when the page loads (a browser reload included) and whenever `page` (a tab) is opened, so
    pickers and lists show what exists now, not what existed when the server started."""
    Context.root_block.load(fn, inputs or [], outputs, show_progress="hidden", queue=False)  # the Blocks being built
    if page is not None:
        page.select(fn, inputs or [], outputs, show_progress="hidden", queue=False)

