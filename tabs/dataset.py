"""Dataset tab: import, check, caption and prepare a LoRA training set. Layout and wiring only.

Every edit is saved as it is made (the dataset folder is the truth) and mirrored into DuckDB. Keys on this
tab: `j` next image, `k` previous image (ignored while typing).

One view, one state: the selected image (`Selected image`) decides the highlighted thumbnail, the page of the
grid, the prepared preview and the caption box, and every operation that changes the dataset redraws the
summary, the grid and the selected image's fields from the folder (`view`), so nothing shows what was true
before it.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd
import plotly.express as px

from studio.core import Studio
from studio.features import dataset_library as datasets
from studio.frontends.assemble import App
from tabs.common import on_show
from training import dataset as dset
from training.captioning import find_captioners

PAGE = 24
NO_DATASETS = "No datasets yet: create one above (a name and a trigger word), then import images."
NO_IMAGES = "No images in **{name}** yet: import PNGs, a zip or a sprite sheet above."


def build(app: App, page: gr.Tab | None = None) -> None:
    studio = app.studio
    with gr.Row():
        ds_name = gr.Dropdown(datasets.names(studio), value=None, label="Dataset", allow_custom_value=True,
                              elem_id="ds-name")
        new_name = gr.Textbox(label="New dataset name", placeholder="slime-sprites", elem_id="ds-new-name")
        new_trigger = gr.Textbox(label="Trigger word", placeholder="slm", elem_id="ds-new-trigger")
        new_class = gr.Textbox(label="Class word", value="sprite")
        create = gr.Button("Create", elem_id="ds-create")
    summary = gr.Markdown("" if datasets.names(studio) else NO_DATASETS, elem_id="ds-summary")
    with gr.Accordion("Import", open=True):
        with gr.Row():
            uploads = gr.File(label="Images or a zip (PNG, JPEG, WebP, GIF, BMP)", file_count="multiple",
                              elem_id="ds-uploads")
            split = gr.Textbox(label="Split sheets into a grid COLSxROWS (blank = no)", placeholder="4x2")
        do_import = gr.Button("Import", elem_id="ds-import")
        import_report = gr.Markdown("", elem_id="ds-import-report")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                which = gr.Dropdown(list(datasets.FILTERS), value="all", label="Show", elem_id="ds-which")
                page_no = gr.Number(value=1, precision=0, label="Page", minimum=1, elem_id="ds-page")
            # no enlarged preview inside the grid: the prepared image on the right is the one preview, so the
            # grid and the selected image can never show two different pictures
            grid = gr.Gallery(columns=6, height=420, object_fit="contain", format="png", elem_id="ds-grid",
                              elem_classes=["pixelated"], label="Images (native sprites): click one to edit it",
                              allow_preview=False)
        with gr.Column(scale=2):
            current = gr.Textbox(label="Selected image", interactive=False, elem_id="ds-current")
            preview = gr.Image(label="Prepared for SDXL (integer nearest scaling)", type="pil", format="png",
                               elem_classes=["pixelated"], height=260, elem_id="ds-preview")
            caption = gr.Textbox(label="Caption (saved as you leave the box)", lines=3, elem_id="ds-caption")
            include = gr.Checkbox(label="Include in training", value=True, elem_id="ds-include")
            problems = gr.Markdown("", elem_id="ds-problems")
            with gr.Row():
                prev_btn = gr.Button("◀ Previous [k]", elem_id="ds-prev")
                next_btn = gr.Button("Next [j] ▶", elem_id="ds-next")
    with gr.Accordion("Duplicates: compare side by side, keep one", open=False):
        with gr.Row():
            dup_group = gr.Dropdown([], label="Duplicate group", elem_id="ds-dup-group")
            dup_find = gr.Button("Find duplicates", elem_id="ds-dup-find")
        dup_images = gr.Gallery(columns=4, height=240, object_fit="contain", format="png", elem_classes=["pixelated"],
                                label="Side by side (native sprites)")
        with gr.Row():
            dup_keep = gr.Dropdown([], label="Keep", elem_id="ds-dup-keep")
            dup_apply = gr.Button("Keep it, exclude the others", elem_id="ds-dup-apply")
        dup_report = gr.Markdown("")
    with gr.Accordion("Captions in bulk", open=False):
        with gr.Row():
            bulk_op = gr.Dropdown(["prepend", "append", "replace all", "find and replace", "ensure trigger first"],
                                  value="prepend", label="Operation")
            bulk_text = gr.Textbox(label="Text")
            bulk_find = gr.Textbox(label="Find (for find and replace)")
            bulk_regex = gr.Checkbox(label="Regex", value=False)
            bulk_run = gr.Button("Apply to the shown images")
        with gr.Row():
            captioner = gr.Dropdown(list(find_captioners(studio.settings.models_dir)), value="structured",
                                    label="Captioner")
            overwrite = gr.Checkbox(label="Overwrite existing captions", value=False)
            auto_btn = gr.Button("Auto-caption", elem_id="ds-autocaption")
            undo_btn = gr.Button("Undo last bulk edit", elem_id="ds-undo")
        bulk_report = gr.Markdown("", elem_id="ds-bulk-report")
        tags_plot = gr.Plot(label="Tag frequency")
    with gr.Accordion("Statistics", open=False):
        stats_btn = gr.Button("Refresh statistics", elem_id="ds-stats")
        with gr.Row():
            stat_sizes = gr.Plot(label="Native sprite sizes", elem_id="ds-stat-sizes")
            stat_palette = gr.Plot(label="Palette sizes", elem_id="ds-stat-palette")
        with gr.Row():
            stat_words = gr.Plot(label="Caption lengths (words)", elem_id="ds-stat-words")
            stat_tags = gr.Plot(label="Most used tags", elem_id="ds-stat-tags")
    with gr.Accordion("Export for training", open=False):
        with gr.Row():
            fmt = gr.Radio(["kohya", "diffusers"], value="kohya", label="Layout")
            repeats = gr.Number(value=10, precision=0, label="Repeats (kohya)")
            export_btn = gr.Button("Prepare and export", elem_id="ds-export")
        export_report = gr.Markdown("")

    def describe(ds: dset.Dataset) -> str:
        recs = ds.records
        if not recs:
            return NO_IMAGES.format(name=ds.name)
        warn = "".join(f"\n- ⚠ {w}" for w in ds.warnings())
        return (f"**{ds.name}** · trigger `{ds.meta.trigger or '—'}` · class `{ds.meta.class_word}` · "
                f"{len(recs)} images, {sum(r.include for r in recs)} included, "
                f"{sum(bool(r.problems) for r in recs)} with problems, "
                f"{sum(not r.caption.strip() for r in recs)} without caption{warn}")

    def view(name, which_, page_, file=None):
        """Everything the tab shows of a dataset, read from its folder now: [grid, summary, page, selected
        image, prepared preview, caption, include, problems]. The selected image (if it is still in the
        dataset) stays selected: its page is shown and its thumbnail highlighted."""
        if not name:
            empty = "" if datasets.names(studio) else NO_DATASETS
            return [gr.Gallery(value=[], selected_index=None), empty, gr.Number(value=1, maximum=1),
                    "", None, "", True, ""]
        ds = _open(studio, name)
        files = [r.file for r in datasets.filtered(ds, which_)]
        pages = max(1, -(-len(files) // PAGE))
        page_ = min(pages, max(1, int(page_ or 1)))
        if file in files:
            page_ = files.index(file) // PAGE + 1
        start = (page_ - 1) * PAGE
        shown = files[start:start + PAGE]
        problems_of = {r.file: bool(r.problems) for r in ds.records}
        items = [(str(ds.native_path(f)), ("⚠ " if problems_of[f] else "") + f) for f in shown]
        grid_ = gr.Gallery(value=items, selected_index=shown.index(file) if file in shown else None)
        return [grid_, describe(ds), gr.Number(value=page_, maximum=pages), *record_fields(ds, file)]

    def record_fields(ds: dset.Dataset, file) -> list:
        """[selected image, prepared preview, caption, include, problems] of one image (blank for none)."""
        if not file or file not in {r.file for r in ds.records}:
            return ["", None, "", True, ""]
        r = ds.record(file)
        prepared = dset.preview_prepared(ds, r.file)
        probs = "\n".join(f"- {p}" for p in r.problems) or "No problems found."
        info = (f"{r.width}x{r.height} px → native {r.native_size[0]}x{r.native_size[1]} "
                f"(cell {r.native_scale:.1f} px), {r.n_colours} colours\n\n{probs}")
        return [r.file, prepared.image, r.caption, r.include, info]

    def select_image(name, which_, page_, evt: gr.SelectData):
        files = [r.file for r in datasets.filtered(_open(studio, name), which_)]
        index = (max(1, int(page_ or 1)) - 1) * PAGE + evt.index
        if not 0 <= index < len(files):
            return view(name, which_, page_)
        return view(name, which_, page_, files[index])

    def step(name, which_, page_, file, delta):
        files = [r.file for r in datasets.filtered(_open(studio, name), which_)]
        if not files:
            raise gr.Error("no images to show")
        i = files.index(file) + delta if file in files else 0
        return view(name, which_, page_, files[i % len(files)])

    def on_open(name, which_, page_, file):
        """Page load and tab open: the dataset list as it is now; the chosen dataset (else the first) shown."""
        names = datasets.names(studio)
        name = name if name in names else (names[0] if names else None)
        return [gr.Dropdown(choices=names, value=name), *view(name, which_, page_, file)]

    def save_caption(name, file, text):
        if not (name and file):
            return gr.update()
        ds = _open(studio, name)
        _call(lambda: ds.set_caption(file, text or ""))
        datasets.sync(studio, ds)
        return describe(ds)

    def save_include(name, file, value):
        if not (name and file):
            return gr.update()
        ds = _open(studio, name)
        _call(lambda: ds.set_include(file, bool(value)))
        datasets.sync(studio, ds)
        return describe(ds)

    def create_ds(name, trigger, class_word):
        ds = _call(lambda: datasets.create(studio, (name or "").strip(), (trigger or "").strip(),
                                           (class_word or "sprite").strip()))
        return gr.Dropdown(choices=datasets.names(studio), value=ds.name), describe(ds)

    def import_files(name, files, split_text, progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        ds = _open(studio, name)
        if not files:
            raise gr.Error("choose files to import")
        grid_split = _split(split_text)
        progress(0, desc="importing")
        report = _call(lambda: ds.import_files([f if isinstance(f, str) else f.name for f in files], grid_split))
        datasets.sync(studio, ds)
        lines = [f"**{report.summary()}**"]
        lines += [f"- skipped `{s.name}`: {s.reason}" for s in report.skipped]
        lines += [f"- {g.kind} duplicates: {', '.join(g.files)}" for g in report.duplicates]
        return "\n".join(lines), describe(ds)

    def bulk(name, which_, page_, op, text, find, regex):
        ds = _open(studio, name)
        files = [r.file for r in datasets.filtered(ds, which_)]
        ops = {
            "prepend": lambda: dset.caption_prepend(ds, text, files),
            "append": lambda: dset.caption_append(ds, text, files),
            "replace all": lambda: dset.caption_replace_all(ds, text, files),
            "find and replace": lambda: dset.caption_find_replace(ds, find, text, bool(regex), files),
            "ensure trigger first": lambda: dset.caption_ensure_trigger(ds, text or None, files),
        }
        _call(ops[op])
        datasets.sync(studio, ds)
        return f"{op}: applied to {len(files)} image(s). Undo is available.", tag_figure(ds)

    def auto(name, which_, captioner_name, overwrite_, progress=gr.Progress()):  # noqa: B008
        ds = _open(studio, name)
        capts = find_captioners(studio.settings.models_dir)
        if captioner_name not in capts:
            raise gr.Error(f"unknown captioner {captioner_name!r}")
        files = [r.file for r in datasets.filtered(ds, which_)]
        todo = sum(1 for r in datasets.filtered(ds, which_) if overwrite_ or not r.caption)
        progress(0, desc=f"captioning {todo} image(s)")
        _call(lambda: dset.auto_caption(ds, capts[captioner_name], files, bool(overwrite_)))
        datasets.sync(studio, ds)
        kept = "" if overwrite_ else " (existing captions kept)"
        return (f"Auto-captioned {todo} image(s) with `{captioner_name}`{kept}. Undo is available.",
                tag_figure(ds))

    def undo(name):
        ds = _open(studio, name)
        n = _call(lambda: dset.undo_last(ds))
        datasets.sync(studio, ds)
        return f"restored {n} caption(s)", tag_figure(ds)

    def statistics(name):
        figs = datasets.statistics_figures(_open(studio, name))
        return figs["native_size"], figs["palette"], figs["caption_length"], figs["tags"]

    def export(name, fmt_, repeats_):
        ds = _open(studio, name)
        out = studio.settings.data_dir / "exports" / f"{ds.name}-{fmt_}"
        if fmt_ == "kohya":
            rep = _call(lambda: dset.export_kohya(ds, out, int(repeats_), overwrite=True))
        else:
            rep = _call(lambda: dset.export_diffusers(ds, out, overwrite=True))
        skipped = "".join(f"\n- skipped {s.name}: {s.reason}" for s in rep.skipped)
        return f"{len(rep.items)} image(s) written to `{rep.folder}`{skipped}"

    listing = [ds_name, which, page_no]
    shown = [ds_name, which, page_no, current]  # what `view` needs to redraw the tab as it is
    views = [grid, summary, page_no, current, preview, caption, include, problems]
    on_show(page, on_open, [ds_name, *views], shown)
    # a new dataset starts on its first page with nothing selected; a new filter or page keeps the selection
    ds_name.change(lambda n, w: view(n, w, 1), [ds_name, which], views, api_visibility="private",
                   show_progress="hidden")
    which.input(lambda n, w, f: view(n, w, 1, f), [ds_name, which, current], views, api_visibility="private",
                show_progress="hidden")
    page_no.input(lambda n, w, p: view(n, w, p), listing, views, api_visibility="private", show_progress="hidden")
    create.click(create_ds, [new_name, new_trigger, new_class], [ds_name, summary], api_name="dataset_create")
    do_import.click(import_files, [ds_name, uploads, split], [import_report, summary],
                    api_name="dataset_import").success(view, shown, views, api_visibility="private")
    grid.select(select_image, listing, views, api_visibility="private", show_progress="hidden")
    prev_btn.click(lambda n, w, p, f: step(n, w, p, f, -1), shown, views, api_name="dataset_prev",
                   show_progress="hidden")
    next_btn.click(lambda n, w, p, f: step(n, w, p, f, 1), shown, views, api_name="dataset_next",
                   show_progress="hidden")
    caption.blur(save_caption, [ds_name, current, caption], summary, api_name="dataset_caption")
    include.input(save_include, [ds_name, current, include], summary, api_name="dataset_include")
    # every operation that changes captions redraws summary, grid and the selected image's caption box
    bulk_run.click(bulk, [ds_name, which, page_no, bulk_op, bulk_text, bulk_find, bulk_regex], [bulk_report, tags_plot],
                   api_name="dataset_bulk").success(view, shown, views, api_visibility="private")
    auto_btn.click(auto, [ds_name, which, captioner, overwrite], [bulk_report, tags_plot],
                   api_name="dataset_autocaption").success(view, shown, views, api_visibility="private")
    undo_btn.click(undo, ds_name, [bulk_report, tags_plot], api_name="dataset_undo").success(
        view, shown, views, api_visibility="private")
    export_btn.click(export, [ds_name, fmt, repeats], export_report, api_name="dataset_export")

    def find_dups(name):
        groups = _open(studio, name).duplicates()
        labels = [f"{i + 1}: {g.kind}: {', '.join(g.files)}" for i, g in enumerate(groups)]
        note = f"{len(groups)} duplicate group(s)" if groups else "No duplicates."
        return gr.update(choices=labels, value=labels[0] if labels else None), note

    def show_group(name, label):
        if not label:
            return [], gr.update(choices=[], value=None)
        ds = _open(studio, name)
        files = label.split(": ", 2)[2].split(", ")
        return ([(str(ds.native_path(f)), f) for f in files], gr.update(choices=files, value=files[0]))

    def keep_one(name, label, keep):
        if not (label and keep):
            raise gr.Error("choose a group and the image to keep")
        ds = _open(studio, name)
        others = [f for f in label.split(": ", 2)[2].split(", ") if f != keep]
        for f in [keep, *others]:
            _call(lambda f=f: ds.set_include(f, f == keep))
        datasets.sync(studio, ds)
        return f"Kept `{keep}`; excluded {', '.join(f'`{f}`' for f in others)}.", describe(ds)

    dup_find.click(find_dups, ds_name, [dup_group, dup_report], api_name="dataset_duplicates")
    dup_group.change(show_group, [ds_name, dup_group], [dup_images, dup_keep], api_name="dataset_duplicate_group")
    dup_apply.click(keep_one, [ds_name, dup_group, dup_keep], [dup_report, summary], api_name="dataset_keep_one").success(
        view, shown, views, api_visibility="private")
    stats_btn.click(statistics, ds_name, [stat_sizes, stat_palette, stat_words, stat_tags], api_name="dataset_stats")


def tag_figure(ds: dset.Dataset):
    freq = dset.tag_frequencies(ds)
    if not freq:
        return None
    frame = pd.DataFrame(list(freq.items())[:30], columns=["tag", "captions"])
    fig = px.bar(frame, x="captions", y="tag", orientation="h", title="Most used caption tags")
    fig.update_layout(height=max(240, 22 * len(frame)), yaxis={"autorange": "reversed"})
    return fig


def _open(studio: Studio, name: str) -> dset.Dataset:
    return _call(lambda: datasets.open_dataset(studio, name))


def _call(fn):
    """Run a dataset operation; its clear ValueError becomes the UI's error message."""
    try:
        return fn()
    except (ValueError, KeyError, OSError) as exc:
        raise gr.Error(str(exc)) from None


def _split(text: str | None) -> tuple[int, int] | None:
    text = (text or "").strip().lower()
    if not text:
        return None
    try:
        cols, rows = (int(v) for v in text.split("x"))
    except ValueError:
        raise gr.Error(f"split must look like 4x2, got {text!r}") from None
    return cols, rows
