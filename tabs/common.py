"""What several tabs share: the pixel clean-up fields, lists that are re-read whenever a tab is shown, and
waiting for a queued job while driving Gradio's progress bar."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.context import Context

from pipelines.pixel import PixelParams, palette_names
from studio import limits
from studio.core import JobFailed, Studio

BACKGROUNDS = ["auto", "keep"]


@dataclass
class PixelFields:
    """The clean-up settings as form fields (0 = detect / automatic, blank = none)."""

    width: gr.Number
    height: gr.Number
    colors: gr.Number
    palette: gr.Dropdown
    background: gr.Dropdown
    outline: gr.Textbox

    @classmethod
    def build(cls, prefix: str) -> PixelFields:
        with gr.Row():
            fields = cls(
                gr.Number(label="Sprite width (0 = detect)", value=0, precision=0, minimum=0,
                          maximum=limits.MAX_SPRITE_SIDE, elem_id=f"{prefix}-sprite-w"),
                gr.Number(label="Sprite height (0 = detect)", value=0, precision=0, minimum=0,
                          maximum=limits.MAX_SPRITE_SIDE, elem_id=f"{prefix}-sprite-h"),
                gr.Number(label="Colours (0 = auto)", value=0, precision=0, minimum=0, maximum=limits.MAX_COLORS,
                          elem_id=f"{prefix}-colors"),
                gr.Dropdown(["", *palette_names()], value="", label="Palette", allow_custom_value=True),
                gr.Dropdown(BACKGROUNDS, value="auto", label="Background", allow_custom_value=True,
                            info="auto, keep, or a #rrggbb colour to make transparent"),
                gr.Textbox(label="Outline (#rrggbb, blank = none)", value=""),
            )
        return fields

    @property
    def inputs(self) -> list:
        return [self.width, self.height, self.colors, self.palette, self.background, self.outline]

    @staticmethod
    def params(width, height, colors, palette, background, outline) -> PixelParams:
        return PixelParams.from_user((width or 0, height or 0), colors, palette, background, outline)


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


def owner(request: gr.Request | None) -> str | None:
    """Jobs are tagged with the browser session, so Cancel stops this tab's jobs and no one else's."""
    return request.session_hash if request else None

