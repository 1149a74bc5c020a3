"""Train tab: start a LoRA run from a dataset and a preset, watch it live, stop / resume, compare the result.

Layout and wiring only: runs are started and read through `studio.features.training_runs`. A timer refreshes the
selected run's status, loss/lr plot, samples and log every few seconds, quietly (no progress overlay) and only
when something changed, so nothing flickers and a message below the status is never overwritten.
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
from tabs.common import on_show
from training.config import TrainConfig, list_presets, load_preset, native_resolution
from training.runs import resume_run

# (TrainConfig field, label, kind): int/float numbers, "float?" where 0 or blank means off (None), "native" where
# 0 or blank means the base model's own value (not set), bool, or a tuple of choices
MAIN_FIELDS = [("rank", "Rank", int), ("alpha", "Alpha", float), ("learning_rate", "Learning rate", float),
               ("steps", "Steps", int), ("batch_size", "Batch", int), ("resolution", "Resolution", "native"),
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
NO_RUNS = "No training runs yet: choose a dataset and a preset above, then **Start training**."
NO_DATASETS = "No datasets yet: create one in the **Dataset** tab and import images, then come back here."


def _setting_input(key: str, label: str, kind, value):
    """The form control for one TrainConfig field, showing `value` (the default preset's)."""
    if kind is bool:
        return gr.Checkbox(value=bool(value), label=label, elem_id=f"tr-{key}", min_width=120)
    if isinstance(kind, tuple):
        return gr.Dropdown(list(kind), value=value, label=label, elem_id=f"tr-{key}", min_width=120)
    if kind == "native":
        return gr.Number(value=0, label=_resolution_label(None), precision=0, minimum=0, elem_id=f"tr-{key}",
                         min_width=110)
    return gr.Number(value=value, label=label, precision=0 if kind is int else None, elem_id=f"tr-{key}",
                     min_width=110)


def _preset_values(name: str | None) -> dict:
    """Every form field's value for a preset: its own settings over TrainConfig's defaults. Resolution shows
    0 (= native): a run trains at its base model's native size unless the user types a size in."""
    return {**CONFIG_DEFAULTS, **(load_preset(name) if name else {}), "resolution": 0}


def _resolution_label(base: str | None) -> str:
    side = native_resolution(base) if base else None
    return f"Resolution (0 = native, {side} px)" if side else "Resolution (0 = the base's native size)"


def form_overrides(specs: list, values: tuple) -> dict:
    """The form's values as TrainConfig overrides: a blank number keeps the preset's value, except where
    0 or blank means off (min-SNR, clipping, a separate text-encoder lr) or native (resolution: not set, so
    the run trains at its base model's native size)."""
    out = {}
    for (key, _, kind), v in zip(specs, values, strict=True):
        if kind == "float?" and v in (None, "", 0):
            out[key] = None
            continue
        if v is None or v == "" or (kind == "native" and v == 0):
            continue
        if kind in (int, "native"):
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
                            value=studio.default_model, label="Base model", allow_custom_value=True,
                            elem_id="tr-model")
        first = "balanced" if "balanced" in presets else None
        initial = _preset_values(first)  # the form opens filled in, not with zeros
        preset = gr.Dropdown(presets, value=first, label="Preset",
                             elem_id="tr-preset")
        name = gr.Textbox(label="LoRA name (blank = <dataset>-lora)", elem_id="tr-name")
    with gr.Row():
        main = {key: _setting_input(key, label, kind, initial.get(key)) for key, label, kind in MAIN_FIELDS}
    datasets_note = gr.Markdown("" if datasets.names(studio) else NO_DATASETS, elem_id="tr-datasets-note")
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
    status = gr.Markdown("" if training_runs.runs(studio) else NO_RUNS, elem_id="tr-status")
    note = gr.Markdown("", elem_id="tr-note")  # answers to Stop / Resume / Compare: the timer never touches it
    with gr.Row():
        curve = gr.Plot(label="Loss and learning rate", elem_id="tr-curve")
        sample_grid = gr.Gallery(label="Samples over time", columns=4, height=320, format="png",
                                 elem_classes=["pixelated"], elem_id="tr-samples")
    log = gr.Textbox(label="Last log lines", lines=8, interactive=False, elem_id="tr-log")
    shown_key = gr.State(None)  # what the outputs show now, so the timer redraws only when it changed
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

    def read(run):
        """(key, [status, curve, samples, log]) of a run as it is now; the key changes when any of it does."""
        if not run:
            return None, ["" if training_runs.runs(studio) else NO_RUNS, None, [], ""]
        try:
            st = training_runs.handle(studio, run).status()
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        rows = training_runs.loss_curve(studio, run)
        shots = [(str(p), p.stem) for p in training_runs.samples(studio, run)[-16:]]
        log_text = training_runs.log_tail(studio, run)
        key = (run, st.get("state"), st.get("step"), st.get("phase"), st.get("error"), len(rows), len(shots),
               log_text)
        return key, [training_runs.describe(run, st, rows), curve_figure(rows), shots, log_text]

    def show(run):
        return read(run)[1]

    def tick(run, key):
        """The timer: redraw only what changed (an unchanged plot or gallery is not sent again)."""
        new_key, values = read(run)
        if new_key == key:
            return [gr.skip()] * (len(values) + 1)
        return [*values, new_key]

    outputs = [status, curve, sample_grid, log]
    run_id.change(show, run_id, outputs, api_name="train_status", show_progress="hidden").then(
        lambda: "", None, note, api_visibility="private", show_progress="hidden")
    timer.tick(tick, [run_id, shown_key], [*outputs, shown_key], api_visibility="private", show_progress="hidden")

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

    stop.click(lambda r: act(r, "stop"), run_id, outputs, api_name="train_stop").success(
        lambda: "Asked the run to stop: it saves a checkpoint at the end of this step, then exits.", None, note,
        api_visibility="private", show_progress="hidden")
    resume.click(lambda r: act(r, "resume"), run_id, outputs, api_name="train_resume").success(
        lambda: "Resumed from the last checkpoint.", None, note, api_visibility="private", show_progress="hidden")

    def compare_against_base(run):
        try:
            base, mine, prompt_set = training_runs.compare_against_base(studio, app.arena, run or "")
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return (f"Saved contenders **{base}** and **{mine}** and prompt set **{prompt_set}**: "
                "open the Compare tab and battle them.")

    compare.click(compare_against_base, run_id, note, api_name="train_compare")

    def on_open(ds, run, model_):
        """Page load and tab open: datasets, runs and base models as they are now; the chosen dataset and run
        kept (else the only dataset, and the newest run, so a reload shows where things stand)."""
        names = datasets.names(studio)
        ds = ds if ds in names else (names[0] if len(names) == 1 else None)
        run_ids = [r["run_id"] for r in training_runs.runs(studio)]  # newest first
        run = run if run in run_ids else (run_ids[0] if run_ids else None)
        models = studio.models()
        bases = [m["name"] for m in models if m["kind"] == "diffusers"]
        model_ = model_ if model_ in bases else studio.default_model
        base_dir = next((m["path"] for m in models if m["name"] == model_), None)
        return (gr.Dropdown(choices=names, value=ds), gr.Dropdown(choices=run_ids, value=run),
                gr.Dropdown(choices=bases, value=model_), gr.Number(label=_resolution_label(base_dir)),
                "" if names else NO_DATASETS)

    on_show(page, on_open, [dataset, run_id, model, main["resolution"], datasets_note], [dataset, run_id, model])

    def model_changed(model_):
        base_dir = next((m["path"] for m in studio.models() if m["name"] == model_), None)
        return gr.Number(label=_resolution_label(base_dir))

    model.change(model_changed, model, main["resolution"], api_visibility="private", show_progress="hidden")


def curve_figure(rows: list[dict]):
    """Loss on the left axis, the learning rate on its own right axis scaled to its values (0 to a little over
    its largest: a constant 1e-4 is a flat line near the top, not a line at 0 on a -1..1 axis)."""
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=frame["step"], y=frame["loss"], name="loss", mode="lines+markers" if len(frame) < 30
                             else "lines", hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>"),
                  secondary_y=False)
    if len(frame) >= 10:
        smooth = frame["loss"].rolling(max(3, len(frame) // 20), min_periods=1).mean()
        fig.add_trace(go.Scatter(x=frame["step"], y=smooth, name="loss (smoothed)", mode="lines",
                                 hovertemplate="step %{x}: smoothed loss %{y:.4f}<extra></extra>"),
                      secondary_y=False)
    fig.add_trace(go.Scatter(x=frame["step"], y=frame["lr"], name="learning rate", mode="lines",
                             line={"dash": "dot"}, hovertemplate="step %{x}: lr %{y:.2e}<extra></extra>"),
                  secondary_y=True)
    top = float(frame["lr"].max()) if frame["lr"].notna().any() else 0.0
    top = top if top > 0 else 1e-4
    fig.update_layout(height=320, margin=dict(l=50, r=60, t=30, b=40), legend={"orientation": "h"})
    fig.update_xaxes(title_text="step", tickformat="d", dtick=1 if frame["step"].max() <= 12 else None)
    fig.update_yaxes(title_text="loss", secondary_y=False, tickformat=".3~g")
    fig.update_yaxes(title_text="learning rate", secondary_y=True, range=[0, top * 1.15], tickformat=".1e",
                     showgrid=False)
    return fig
