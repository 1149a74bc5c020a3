"""The clean-up panel (inside the Generate tab): any image, from any generator, to its exact native sprite.

Layout and wiring only: `Studio.clean_up` does the work. The panel has its own settings (they are not the
Generate form's), shows the sprite enlarged by a whole number (the page script, tabs/look.py) beside the
input, and offers the native PNG for download under a name that says what it is. "Try a sample" loads one of
the renders in `tabs/samples/`, so a newcomer on the demo model sees the engine work at once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from studio.frontends.assemble import App
from tabs.common import PixelFields, owner

SAMPLES = Path(__file__).with_name("samples")


def samples() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SAMPLES.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")}


def build(app: App) -> None:
    studio = app.studio
    with gr.Accordion("Clean up an image (any generator, no GPU needed)", open=False, elem_id="cleanup"):
        with gr.Row():
            with gr.Column():
                upload = gr.Image(label="Image", type="filepath", format="png", elem_id="cleanup-in", height=384)
                with gr.Row():
                    sample = gr.Dropdown(list(samples()), value=next(iter(samples()), None), label="Sample render",
                                         scale=2)
                    try_sample = gr.Button("Try a sample", elem_id="cleanup-sample", scale=1)
            with gr.Column(elem_classes=["pixelated"]):
                cleaned = gr.Image(label="Sprite, enlarged for viewing", type="filepath", format="png", height=384,
                                   elem_id="cleanup-out", interactive=False, buttons=["fullscreen"])
                download = gr.File(label="The sprite at its native size", elem_id="cleanup-file")
        gr.Markdown("Settings of this clean-up (0 = detect, blank = none):")
        fields = PixelFields.build("cleanup")
        with gr.Row():
            cell = gr.Textbox(label="Force the cell size (input px per pixel, e.g. 32 or 31.5x32)", value="",
                              elem_id="cleanup-cell")
            offset = gr.Textbox(label="and a cell boundary at X,Y (with a cell size)", value="",
                                elem_id="cleanup-offset")
        with gr.Row():
            cleanup_btn = gr.Button("Clean up", variant="primary", elem_id="cleanup-btn")
        info = gr.Markdown("", elem_id="cleanup-info")
        lattice = gr.Image(label="The grid it found, drawn over the input (a wrong grid shows here)", type="filepath",
                           format="png", height=384, interactive=False, elem_id="cleanup-lattice", visible=False)

    def clean_up(path, cell_, offset_, *values, request: gr.Request = None):
        if not path:
            raise gr.Error("upload an image first, or press 'Try a sample'")
        try:
            params = dataclasses.replace(PixelFields.params(*values), cell=cell_.strip() or None,
                                         offset=offset_.strip() or None)
            out, res = studio.clean_up(path, params, "ui", owner(request))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        w, h = res.image.size
        text = (f"**{w}x{h} px** sprite, {len(res.palette)} colours, one pixel was ≈ {res.cell[0]:.1f}x"
                f"{res.cell[1]:.1f} px of the input · `{out.name}`")
        if res.note:
            text += f"\n\n⚠ **{res.note}**: check the grid below; force the size above, or the cell size."
        overlay = out.with_name("lattice.png")
        shown = gr.update(value=str(overlay), visible=True) if overlay.is_file() else gr.update(visible=False)
        return str(out), str(out), text, shown

    inputs = [upload, cell, offset, *fields.inputs]
    outputs = [cleaned, download, info, lattice]
    cleanup_btn.click(clean_up, inputs, outputs, api_name="pixelate")

    def load_sample(name: str | None):
        found = samples()
        if name not in found:
            raise gr.Error("choose a sample")
        return str(found[name])

    try_sample.click(load_sample, sample, upload, api_name="sample").then(
        clean_up, inputs, outputs, api_visibility="private")
