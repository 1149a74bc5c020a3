"""Train tab: start a LoRA run from a dataset and a preset, watch it live, stop / resume, compare the result.

Layout and wiring only: runs are started and read through `studio.features.training_runs`. A timer refreshes the
selected run's loss/lr plot, samples and log every few seconds.
"""

from __future__ import annotations

import dataclasses

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.features import dataset_library as datasets
from studio.features import training_runs
from studio.frontends.assemble import App
from training.config import TrainConfig, list_presets, load_preset
from training.runs import resume_run

# (TrainConfig field, label, kind): int/float numbers, "float?" where 0 or blank means off (None), bool, or a
# tuple of choices
MAIN_FIELDS = [("rank", "Rank", int), ("alpha", "Alpha", float), ("learning_rate", "Learning rate", float),
               ("steps", "Steps", int), ("batch_size", "Batch", int), ("resolution", "Resolution", int),
               ("sample_every", "Sample every", int), ("checkpoint_every", "Checkpoint every", int)]
ADVANCED_FIELDS = [
    ("lr_scheduler", "LR schedule", ("constant", "cosine")), ("warmup_steps", "Warmup steps", int),
    ("optimizer", "Optimizer", ("adamw", "adamw8bit")), ("mixed_precision", "Mixed precision", ("no", "bf16")),
    ("caption_dropout", "Caption dropout", float), ("min_snr_gamma", "Min-SNR gamma (0 = off)", "float?"),
    ("noise_offset", "Noise offset", float), ("max_grad_norm", "Max grad norm (0 = off)", "float?"),
    ("gradient_checkpointing", "Gradient checkpointing", bool), ("cache_latents", "Cache latents", bool),
    ("train_text_encoder", "Train text encoders", bool), ("text_encoder_lr", "Text encoder LR (0 = LR)", "float?"),
    ("seed", "Seed", int), ("sample_steps", "Sample steps", int), ("keep_checkpoints", "Keep checkpoints", int),
]
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                   if f.default is not dataclasses.MISSING}


def _setting_input(key: str, label: str, kind, value):
    """The form control for one TrainConfig field, showing `value` (the default preset's)."""
    if kind is bool:
        return gr.Checkbox(value=bool(value), label=label, elem_id=f"tr-{key}", min_width=120)
    if isinstance(kind, tuple):
        return gr.Dropdown(list(kind), value=value, label=label, elem_id=f"tr-{key}", min_width=120)
    return gr.Number(value=value, label=label, precision=0 if kind is int else None, elem_id=f"tr-{key}",
                     min_width=110)


def _preset_values(name: str | None) -> dict:
    """Every form field's value for a preset: its own settings over TrainConfig's defaults."""
    return {**CONFIG_DEFAULTS, **(load_preset(name) if name else {})}


def form_overrides(specs: list, values: tuple) -> dict:
    """The form's values as TrainConfig overrides: a blank number keeps the preset's value, except where
    0 or blank means off (min-SNR, clipping, a separate text-encoder lr)."""
    out = {}
    for (key, _, kind), v in zip(specs, values, strict=True):
        if kind == "float?" and v in (None, "", 0):
            out[key] = None
            continue
        if v is None or v == "":
            continue
        if kind is int:
            out[key] = int(v)
        elif kind in (float, "float?"):
            out[key] = float(v)
        else:  # checkbox (bool) or dropdown (str)
            out[key] = v
    return out


def build(app: App, page: gr.Tab | None = None) -> None:
    studio = app.studio
    presets = list_presets()
    with gr.Row():
        dataset = gr.Dropdown(datasets.names(studio), label="Dataset", allow_custom_value=True, elem_id="tr-dataset")
        model = gr.Dropdown([m["name"] for m in studio.models() if m["kind"] == "diffusers"],
                            value=studio.default_model, label="Base model", allow_custom_value=True)
        first = "balanced" if "balanced" in presets else None
        initial = _preset_values(first)  # the form opens filled in, not with zeros
        preset = gr.Dropdown(presets, value=first, label="Preset",
                             elem_id="tr-preset")
        name = gr.Textbox(label="LoRA name (blank = <dataset>-lora)", elem_id="tr-name")
    with gr.Row():
        main = {key: _setting_input(key, label, kind, initial.get(key)) for key, label, kind in MAIN_FIELDS}
    with gr.Accordion("Advanced settings (filled from the preset)", open=False):
        with gr.Row():
            advanced = {key: _setting_input(key, label, kind, initial.get(key)) for key, label, kind in ADVANCED_FIELDS[:8]}
        with gr.Row():
            advanced |= {key: _setting_input(key, label, kind, initial.get(key)) for key, label, kind in ADVANCED_FIELDS[8:]}
    start = gr.Button("Start training", variant="primary", elem_id="tr-start")
    with gr.Row():
        run_id = gr.Dropdown([r["run_id"] for r in training_runs.runs(studio)], label="Run", allow_custom_value=True,
                             elem_id="tr-run")
        stop = gr.Button("Stop (checkpoint, then exit)", elem_id="tr-stop")
        resume = gr.Button("Resume from the last checkpoint", elem_id="tr-resume")
        compare = gr.Button("Compare against base", elem_id="tr-compare")
    status = gr.Markdown("", elem_id="tr-status")
    with gr.Row():
        curve = gr.Plot(label="Loss and learning rate")
        sample_grid = gr.Gallery(label="Samples over time", columns=4, height=320, format="png",
                                 elem_classes=["pixelated"])
    log = gr.Textbox(label="Last log lines", lines=8, interactive=False)
    timer = gr.Timer(3.0)

    specs = MAIN_FIELDS + ADVANCED_FIELDS
    fields = [*main.values(), *advanced.values()]

    def fill(preset_name):
        try:
            values = _preset_values(preset_name)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return [values.get(key) for key, _, _ in specs]

    preset.change(fill, preset, fields, api_name="train_preset")

    def start_run(ds, model_, preset_, name_, *values):
        try:
            overrides = form_overrides(specs, values)
            h = training_runs.start(studio, ds or "", preset_ or "balanced", model_ or None, name_ or None,
                                    **overrides)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        return gr.Dropdown(choices=[r["run_id"] for r in training_runs.runs(studio)], value=h.run_dir.name)

    start.click(start_run, [dataset, model, preset, name, *fields], run_id, api_name="train_start")

    def show(run):
        if not run:
            return "", None, [], ""
        try:
            st = training_runs.handle(studio, run).status()
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        eta = f" · ETA {st['eta_s'] / 60:.1f} min" if st.get("eta_s") else ""
        err = f"\n\n**Error:** {st['error']}" if st.get("error") else ""
        text = f"**{run}** · {st.get('state')} · step {st.get('step', 0)}/{st.get('total', '?')}{eta}{err}"
        rows = training_runs.loss_curve(studio, run)
        shots = [(str(p), p.stem) for p in training_runs.samples(studio, run)[-16:]]
        return text, curve_figure(rows), shots, training_runs.log_tail(studio, run)

    outputs = [status, curve, sample_grid, log]
    run_id.change(show, run_id, outputs, api_name="train_status")
    timer.tick(show, run_id, outputs, api_visibility="private")

    def act(run, what):
        try:
            h = training_runs.handle(studio, run or "")
            if what == "stop":
                h.stop()
            else:
                resume_run(h.run_dir)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return show(run)

    stop.click(lambda r: act(r, "stop"), run_id, outputs, api_name="train_stop")
    resume.click(lambda r: act(r, "resume"), run_id, outputs, api_name="train_resume")

    def compare_against_base(run):
        try:
            base, mine, prompt_set = training_runs.compare_against_base(studio, app.arena, run or "")
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return (f"Saved contenders **{base}** and **{mine}** and prompt set **{prompt_set}**: "
                "open the Compare tab and battle them.")

    compare.click(compare_against_base, run_id, status, api_name="train_compare")


def curve_figure(rows: list[dict]):
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=frame["step"], y=frame["loss"], name="loss", mode="lines"), secondary_y=False)
    if len(frame) >= 10:
        smooth = frame["loss"].rolling(max(3, len(frame) // 20), min_periods=1).mean()
        fig.add_trace(go.Scatter(x=frame["step"], y=smooth, name="loss (smoothed)", mode="lines"),
                      secondary_y=False)
    fig.add_trace(go.Scatter(x=frame["step"], y=frame["lr"], name="lr", mode="lines", line={"dash": "dot"}),
                  secondary_y=True)
    fig.update_layout(height=320, margin=dict(l=40, r=40, t=30, b=40), legend={"orientation": "h"})
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="learning rate", secondary_y=True)
    return fig
