"""Generate tab: prompt -> sprites, history, settings restored from a dropped PNG, and image clean-up.

Layout and event wiring only: every action is one call into the studio core. The prompt and the Generate
button sit at the top of the form and the results column stays on screen while the form scrolls, so what you
press and what you wait for share the screen. Sprites are shown from their stored native PNGs, enlarged by a
whole number in the browser (tabs/look.py), so what is on screen is exactly what is on disk.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import limits
from studio.core import GenerateResult
from studio.features.deploy import deploy
from studio.features.workflows import run_workflow, workflows_for
from studio.frontends.assemble import App
from studio.metadata import MetadataError, import_png
from studio.params import GenerateParams, parse_loras
from studio.samplers import SAMPLERS, SCHEDULES
from tabs import cleanup
from tabs.common import PixelFields, on_show, owner, submit_and_wait, wait_for


def _seed(text) -> int | None:
    text = str(text).strip() if text is not None else ""
    if not text or text == "-1":
        return None
    try:
        return int(float(text))
    except ValueError:
        raise gr.Error(f"seed must be a whole number or blank, got {text!r}") from None


def _sizes(result: GenerateResult) -> str:
    """Every distinct sprite size of a job, in order: '32x32' or '32x32, 24x32'."""
    return ", ".join(dict.fromkeys(f"{im.width}x{im.height}" for im in result.images))


def _gallery(result: GenerateResult, raw: bool = False) -> list[tuple[str, str]]:
    return [(str(im.raw_path if raw else im.path), f"seed {im.seed} · {im.width}x{im.height}")
            for im in result.images]


def build(app: App, page: gr.Tab | None = None) -> None:
    studio = app.studio
    problems: list[str] = []
    flows = workflows_for(studio, problems)
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a red slime monster, pixel art, game sprite",
                                elem_id="prompt")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                cancel = gr.Button("Cancel", variant="secondary", elem_id="cancel-btn", scale=1)
            negative = gr.Textbox(label="Negative prompt", lines=1, value="blurry, text, watermark")
            with gr.Row():
                model = gr.Dropdown([studio.default_model], value=studio.default_model, label="Model",
                                    elem_id="model", allow_custom_value=True)
                loras = gr.Textbox(label="LoRAs (name:weight, comma separated)", placeholder="pixel-art-xl:1.0",
                                   elem_id="loras")
                lora_pick = gr.Dropdown([], label="Add LoRA", value=None, elem_id="lora-pick")
                rescan = gr.Button("↻ models", size="sm", scale=0, min_width=90)
            with gr.Row():
                seed = gr.Textbox(label="Seed (blank = random)", value="", elem_id="seed")
                reuse_seed = gr.Checkbox(label="Reuse seed", value=False, elem_id="reuse-seed",
                                         info="keep the seed for the next run")
                steps = gr.Slider(1, limits.MAX_STEPS, value=30, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(0, limits.MAX_GUIDANCE, value=6.0, step=0.5, label="Guidance")
            with gr.Row():
                sampler = gr.Dropdown(list(SAMPLERS), value="default", label="Sampler", elem_id="sampler",
                                      info="default: the checkpoint's own")
                schedule = gr.Dropdown(list(SCHEDULES), value="automatic", label="Schedule", elem_id="schedule")
                clip_skip = gr.Number(label="Clip skip (0 = model's)", value=0, precision=0, minimum=0, maximum=12,
                                      elem_id="clip-skip")
                fast = gr.Checkbox(label="Fast preview", value=False, elem_id="fast",
                                   info="the few-step settings of an LCM, Lightning or Turbo model")
            with gr.Row():
                width = gr.Number(label="Render width (0 = model native)", value=0, precision=0, elem_id="width",
                                  minimum=0, maximum=studio.settings.max_side)
                height = gr.Number(label="Render height (0 = model native)", value=0, precision=0, elem_id="height",
                                   minimum=0, maximum=studio.settings.max_side)
                count = gr.Slider(1, studio.settings.max_count, value=1, step=1, label="Batch count")
            with gr.Accordion("Sprite clean-up of these renders", open=True):
                pixel = PixelFields.build("gen")
                raw_only = gr.Checkbox(label="Keep the raw render (no clean-up)", value=False)
            with gr.Accordion("Workflow", open=False):
                with gr.Row():
                    workflow = gr.Dropdown(["", *flows], value="", label="Workflow template", elem_id="workflow",
                                           allow_custom_value=True)
                    wf_values = gr.Textbox(label="Values (key=value, one per line)", lines=2, elem_id="wf-values")
                wf_info = gr.Markdown("")
                gr.Markdown("\n".join(f"⚠ skipped: {p}" for p in problems), visible=bool(problems),
                            elem_id="wf-problems")
                wf_run = gr.Button("Run workflow", elem_id="wf-run")
            with gr.Accordion("Variations (img2img of a sprite)", open=False):
                with gr.Row():
                    var_source = gr.Image(label="Sprite to vary (blank = the last job's first sprite)",
                                          type="filepath", format="png", elem_id="var-source")
                    var_strength = gr.Slider(limits.MIN_STRENGTH, limits.MAX_STRENGTH, value=0.5, step=0.05,
                                             label="Strength (how far from it)")
                var_btn = gr.Button("Make variations", elem_id="var-btn")
            load_png = gr.File(label="Drop a PNG to restore its settings", file_types=[".png"], elem_id="load-png")
        with gr.Column(scale=3, elem_classes=["sticky-results"]):
            status = gr.Markdown("Press **Generate**: the sprites appear here.", elem_id="gen-status")
            sprites = gr.Gallery(label="Sprites (native PNGs, enlarged by a whole number)", columns=4, height=420,
                                 object_fit="contain", format="png", elem_id="sprites", elem_classes=["pixelated"],
                                 preview=False)
            with gr.Accordion("Raw renders", open=False):
                raws = gr.Gallery(label="Raw renders", columns=4, height=240, object_fit="contain", format="png",
                                  elem_id="raws")
            with gr.Accordion("Send to Bevy", open=False):
                last_job = gr.State("")
                with gr.Row():
                    bevy_assets = gr.Textbox(label="Game assets folder", placeholder="/home/me/games/slime-quest/assets",
                                             elem_id="bevy-assets")
                    bevy_name = gr.Textbox(label="Asset name", placeholder="red_slime", elem_id="bevy-name")
                    bevy_kind = gr.Dropdown(["auto", "sprite", "sheet", "tileset"], value="auto", label="As")
                bevy_create = gr.Checkbox(label="Create the assets folder if it does not exist", value=False,
                                          elem_id="bevy-create")
                bevy_btn = gr.Button("Send the last job to Bevy", elem_id="bevy-btn")
                bevy_files = gr.Markdown("", elem_id="bevy-files")
                bevy_code = gr.Code(language=None, label="Bevy snippet (Rust)", interactive=False)
            with gr.Accordion("History", open=False):
                search = gr.Textbox(label="Search prompts", value="")
                refresh = gr.Button("Refresh history")
                history = gr.Gallery(label="History", columns=8, height=300, object_fit="contain", format="png",
                                     elem_id="history", elem_classes=["pixelated"], preview=False)

    cleanup.build(app)
    pixel_inputs = pixel.inputs
    busy = {"show_progress_on": [sprites]}  # one progress overlay, on the results

    def generate(prompt_, negative_, model_, loras_, seed_, reuse_, steps_, guidance_, w_, h_, count_, sw, sh, col,
                 pal, bg, ol, raw_, sampler_, schedule_, clip_skip_, fast_, request: gr.Request,
                 progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        try:
            params = GenerateParams(
                sampler=sampler_ or "default", schedule=schedule_ or "automatic", clip_skip=int(clip_skip_ or 0) or None,
                fast=bool(fast_),
                prompt=prompt_ or "", negative=negative_ or "", model=model_ or None, loras=parse_loras(loras_),
                seed=_seed(seed_), steps=int(steps_), guidance=float(guidance_), width=int(w_) or None,
                height=int(h_) or None, count=int(count_),
                pixel=None if raw_ else PixelFields.params(sw, sh, col, pal, bg, ol),
            )
            job = studio.submit_generate(params, source="ui", owner=owner(request))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        result = wait_for(studio, job, progress)
        if result is None:
            return [], [], "Cancelled.", gr.update(), gr.update()
        p = result.params
        seeds = ", ".join(str(im.seed) for im in result.images)
        msg = (f"**Job {result.job_id}** · model `{p.model}` · {p.sampler}"
               f"{'' if p.schedule == 'automatic' else ' ' + p.schedule}, {p.steps} steps · seed(s) {seeds} · "
               f"render {p.width}x{p.height} → sprite {_sizes(result)}")
        if "fast_preview" in result.info:
            msg += f" · {result.info['fast_preview']}"
        # the seed box keeps a seed only when asked to: otherwise the next Generate would repeat these images
        return _gallery(result), _gallery(result, raw=True), msg, str(p.seed) if reuse_ else "", result.job_id

    gen_event = run.click(
        generate,
        [prompt, negative, model, loras, seed, reuse_seed, steps, guidance, width, height, count, *pixel_inputs,
         raw_only, sampler, schedule, clip_skip, fast],
        [sprites, raws, status, seed, last_job],
        api_name="generate",
        concurrency_limit=None,  # the studio's own queue serialises GPU work; waiting here costs nothing
        **busy,
    )

    def pick_workflow(name: str):
        """Fill the form from a template: its filled prompt and its generate / pixel settings."""
        flows_now = workflows_for(studio)
        if not name or name not in flows_now:
            return [gr.update()] * 10
        wf = flows_now[name]
        try:
            kind, p, extra = wf.build()
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        px = p.pixel
        size = px.size if px and px.size else (0, 0)
        values = "\n".join(f"{k}={wf.values.get(k, '')}" for k in wf.placeholders)
        items = f"\n\nItems: {', '.join(wf.items)} (override with `items=a, b, c`)" if wf.items else ""
        info = f"**{wf.name}** ({kind}) — {wf.description}{items}"
        prompt_text = extra[0] if kind == "batch" else p.prompt
        return (prompt_text, p.negative, p.steps, p.guidance, p.count, size[0], size[1],
                (px.colors or 0) if px else 0, values, info)

    workflow.change(pick_workflow, workflow,
                    [prompt, negative, steps, guidance, count, pixel.width, pixel.height, pixel.colors, wf_values,
                     wf_info],
                    api_name="pick_workflow")

    def run_flow(name, values_text, seed_, steps_, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        values = dict(line.split("=", 1) for line in (values_text or "").splitlines() if "=" in line)
        values = {k.strip(): v.strip() for k, v in values.items()}
        overrides = {"steps": int(steps_)} | ({"seed": _seed(seed_)} if _seed(seed_) is not None else {})
        result = submit_and_wait(studio, lambda: run_workflow(
            studio, name or "", values, source="ui", generate=overrides, owner=owner(request)), progress)
        if result is None:
            return [], [], "Cancelled.", gr.update()
        extras = [(str(p), n) for n, p in result.extras.items()]
        msg = f"**Job {result.job_id}** · workflow `{name}` · {len(result.images)} image(s) · {_sizes(result)}"
        if "seams" in result.info:
            ok = sum(r["passes"] for r in result.info["seams"])
            msg += f" · seamless check: {ok}/{len(result.info['seams'])} tiles pass"
        if "strategy" in result.info:
            msg += f" · strategy {result.info['strategy']}"
        return _gallery(result), extras, msg, result.job_id

    wf_run.click(run_flow, [workflow, wf_values, seed, steps], [sprites, raws, status, last_job],
                 api_name="run_workflow", **busy)

    def variations(source, strength, last, prompt_, negative_, model_, loras_, seed_, steps_, guidance_, count_, sw,
                   sh, col, pal, bg, ol, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        def submit():
            src = source or (studio.job(last)["images"][0]["path"] if last else None)
            if not src:
                raise ValueError("upload a sprite, or generate one first")
            params = GenerateParams(
                prompt=prompt_ or "", negative=negative_ or "", model=model_ or None, loras=parse_loras(loras_),
                seed=_seed(seed_), steps=int(steps_), guidance=float(guidance_), count=int(count_),
                pixel=PixelFields.params(sw, sh, col, pal, bg, ol),
            )
            return studio.submit_variation(params, src, float(strength), "ui", owner=owner(request))

        result = submit_and_wait(studio, submit, progress)
        if result is None:
            return [], [], "Cancelled.", gr.update()
        return (_gallery(result), _gallery(result, raw=True),
                f"**Job {result.job_id}** · {len(result.images)} variation(s) at strength {strength:g}",
                result.job_id)

    var_btn.click(variations, [var_source, var_strength, last_job, prompt, negative, model, loras, seed, steps,
                               guidance, count, *pixel_inputs], [sprites, raws, status, last_job],
                  api_name="variations", **busy)

    def cancel_jobs(request: gr.Request):
        # Feedback comes from the cancelled job's own "Cancelled." (writing the status here would race it).
        n = studio.queue.cancel_owner(request.session_hash) if request else 0
        gr.Info(f"Cancelling {n} job(s)…" if n else "Nothing to cancel.")

    cancel.click(cancel_jobs, None, None, api_name="cancel")

    def add_lora(current: str, name: str | None):
        if not name:
            return current
        names = [r.name for r in parse_loras(current)]
        return current if name in names else ", ".join(filter(None, [current.strip(", "), f"{name}:1.0"]))

    lora_pick.change(add_lora, [loras, lora_pick], loras, api_name="add_lora")

    def rescan_models(current: str | None):
        """What is on disk now: checkpoints (usable ones) and LoRAs."""
        names = [m["name"] for m in studio.models() if not m.get("error")]
        return (gr.update(choices=names, value=current if current in names else studio.default_model),
                gr.update(choices=[lo["name"] for lo in studio.loras()]))

    rescan.click(rescan_models, model, [model, lora_pick], api_name="rescan_models")
    on_show(page, rescan_models, [model, lora_pick], [model])

    def restore(file):
        """Fill the form from a PNG: ours, or one from A1111, Forge or Civitai (models and LoRAs matched to the
        files here by hash, and the status says which are missing)."""
        if file is None:
            return [gr.update()] * 17
        try:
            p, image_seed, notes = import_png(file if isinstance(file, str) else file.name, studio.registry)
        except (MetadataError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        px = p.pixel
        said = f"Settings restored (seed {image_seed})." + "".join(f"\n- ⚠ {n}" for n in notes)
        return [
            p.prompt, p.negative, p.model or studio.default_model, ", ".join(f"{r.name}:{r.weight:g}" for r in p.loras),
            str(image_seed), p.steps, p.guidance, p.width or 0, p.height or 0,
            (px.size[0] if px and px.size else 0), (px.size[1] if px and px.size else 0),
            (px.colors or 0) if px else 0, p.pixel is None, p.sampler, p.schedule, p.clip_skip or 0, said,
        ]

    load_png.upload(
        restore, load_png,
        [prompt, negative, model, loras, seed, steps, guidance, width, height, pixel.width, pixel.height,
         pixel.colors, raw_only, sampler, schedule, clip_skip, status],
        api_name="restore",
    )

    def send_to_bevy(job_id: str, assets: str, name: str, kind: str, create: bool):
        if not job_id:
            raise gr.Error("generate something first")
        roots = studio.settings.project_roots or (() if studio.settings.lan else None)
        folder = Path((assets or "").strip()).expanduser()
        if not folder.is_dir() and not create:
            raise gr.Error(f"{folder} does not exist: tick 'Create the assets folder' to make it")
        try:
            res = deploy(studio, job_id, folder, (name or "").strip(), kind, allowed_roots=roots, create=create)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return "Written:\n" + "\n".join(f"- `{f}`" for f in res.files), res.bevy_snippet

    bevy_btn.click(send_to_bevy, [last_job, bevy_assets, bevy_name, bevy_kind, bevy_create], [bevy_files, bevy_code],
                   api_name="send_to_bevy")

    def show_history(text: str):
        rows = studio.history(text or "", 64)
        return [(r["path"], f"{r['prompt'][:40]} · {r['width']}x{r['height']}") for r in rows]

    refresh.click(show_history, search, history, api_name="history")
    gen_event.then(show_history, search, history, api_visibility="private")
    search.submit(show_history, search, history, api_name="search_history")
    on_show(page, show_history, [history], [search])
