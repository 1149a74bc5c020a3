"""`dgx-pixels`: the studio from the shell. Each command is a thin wrapper over the same core call the UI makes.

Why the commands import their rooms inside their bodies (the one place in the project that does so for its own
modules): a command loads only what it needs, so `--help`, `config`, `info` and `pixelate` start in a fraction
of a second without DuckDB, torch, diffusers or Gradio, and `pixelate` imports nothing but the pixel engine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from studio import limits
from studio.settings import Settings, load_settings
from studio.values import ParamsError, parse_size


def _size(text: str) -> tuple[int, int]:
    """argparse's type for WxH values: `studio.values.parse_size`, its error shown as argparse's."""
    try:
        return parse_size(text, "size")
    except ParamsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings(args: argparse.Namespace, **overrides) -> Settings:
    return load_settings(Path(args.config) if args.config else None, **overrides)


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def _open_app(args: argparse.Namespace):
    """The studio on this data folder, or exit code 2 with the reason (bad settings, studio already running)."""
    from studio.frontends.assemble import App
    from studio.store import StoreLockedError

    try:
        return App(_settings(args))
    except (ValueError, StoreLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_config(args: argparse.Namespace) -> int:
    from studio.frontends.auth import read_token, token_file

    settings = _settings(args)
    described = settings.describe()
    path = token_file(settings)
    described["mcp_token_file"] = str(path.resolve()) if path.is_file() else None
    if args.show_token:
        described["mcp_token"] = read_token(settings)
    print(json.dumps(described, indent=2))
    return 0


def _run_job(args: argparse.Namespace, body: dict) -> dict | int:
    """The job `body` describes (see `job_requests`), run in this process, or on the running studio when that
    holds the database. Its files as `job_requests.result_dict` gives them, or an exit code."""
    from studio.frontends.assemble import App
    from studio.frontends.client import StudioClient, StudioUnreachable
    from studio.frontends.job_requests import result_dict, submit_job
    from studio.store import StoreLockedError

    try:
        app = App(_settings(args))
    except StoreLockedError:
        try:
            return StudioClient(_settings(args)).run_job(body, args.quiet)
        except (ValueError, StudioUnreachable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    with app:
        try:
            job = submit_job(app, body, source="cli")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        result = _finish(app, job, args.quiet)
    return result if isinstance(result, int) else result_dict(result)


def cmd_mcp(args: argparse.Namespace) -> int:
    """stdio MCP for desktop clients: a thin proxy to the running studio's /mcp/, never a second studio."""
    import httpx
    from fastmcp import Client
    from fastmcp.server import create_proxy

    from studio.frontends.auth import read_token
    from studio.frontends.client import StudioClient

    settings = _settings(args)
    base = args.url or StudioClient(settings).url
    try:
        httpx.get(base.rstrip("/") + "/api/health", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"error: no DGX-Pixels Studio is running at {base} ({exc}); start it first with "
              "./scripts/run-studio.sh (or dgx-pixels serve)", file=sys.stderr)
        return 2
    token = read_token(settings)
    client = Client(base.rstrip("/") + "/mcp/", auth=token) if token else Client(base.rstrip("/") + "/mcp/")
    create_proxy(client, name="DGX-Pixels Studio").run(transport="stdio", show_banner=False)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from studio.frontends.server import serve

    settings = _settings(args, host=args.host, port=args.port, lan=True if args.lan else None)
    return serve(settings)


def cmd_models(args: argparse.Namespace) -> int:
    from studio.registry import HashCache, Registry

    s = _settings(args)
    reg = Registry(s.models_dir, HashCache(s.data_dir / "hashes.json"))
    models = [
        {"name": m.name, "kind": m.kind, "demo": m.demo, "path": str(m.path),
         "hash": reg.hashes.short_hash(m.path) if m.kind == "single_file" else None}
        for m in reg.checkpoints()
    ]
    loras = [
        {"name": lo.name, "path": str(lo.path), "hash": reg.hashes.short_hash(lo.path), "trigger_words": lo.trigger_words}
        for lo in reg.loras()
    ]
    if args.json:
        print(json.dumps({"checkpoints": models, "loras": loras}, indent=2))
        return 0
    print(f"checkpoints in {reg.checkpoints_dir}:")
    for m in models or [{"name": "(none: the studio will build the demo model)", "kind": "", "demo": False}]:
        print(f"  {m['name']:32} {m['kind']:12} {'DEMO (noise)' if m['demo'] else ''}")
    print(f"LoRAs in {reg.loras_dir}:")
    for lo in loras or [{"name": "(none)", "hash": "", "trigger_words": []}]:
        print(f"  {lo['name']:32} {lo['hash'] or '':12} {', '.join(lo['trigger_words'])}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """The settings stored in a PNG; with --import, the studio job they describe (any A1111/Forge/Civitai PNG,
    its model and LoRAs matched to the files here by hash), as JSON `generate` and the jobs API take."""
    from studio.metadata import MetadataError, import_png, read_metadata
    from studio.registry import HashCache, Registry

    try:
        if args.import_:
            s = _settings(args)
            registry = Registry(s.models_dir, HashCache(s.data_dir / "hashes.json"))
            params, seed, notes = import_png(args.image, registry)
            print(json.dumps({"params": {**params.to_dict(), "seed": seed}, "notes": notes}, indent=2))
            for note in notes:
                print(f"warning: {note}", file=sys.stderr)
            return 0
        meta = read_metadata(args.image)
    except MetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if meta.get("parameters"):
        print(meta["parameters"])
        print()
    extra = {k: v for k, v in meta.items() if k != "parameters"}
    print(json.dumps(extra, indent=2) if extra else "(no DGX-Pixels settings in this PNG)")
    return 0


def _pixel_params(args: argparse.Namespace):
    from pipelines.pixel import PixelParams

    return PixelParams.from_user(
        args.size, args.colors, args.palette, args.background, args.outline,
        size_mode="exact" if args.exact_size else "hint", dither=args.dither, keep_holes=not args.fill_holes,
        remove_strays=not args.keep_strays, crop=args.crop, canvas=args.canvas, cell=args.cell, offset=args.offset,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    _quiet_libraries()
    import shutil

    from studio.params import GenerateParams, parse_loras

    try:
        w, h = args.render_size or (None, None)
        params = GenerateParams(
            prompt=args.prompt,
            negative=args.negative,
            model=args.model,
            loras=parse_loras(args.lora),
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            width=w,
            height=h,
            count=args.count,
            pixel=None if args.raw else _pixel_params(args),
            sampler=args.sampler,
            schedule=args.schedule,
            clip_skip=args.clip_skip,
            fast=args.fast,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    body: dict = {"kind": "generate", "params": params.to_dict()}
    if args.init:  # a file here (made absolute: a running studio has another working folder) or a sprite id
        init = Path(args.init)
        body = {**body, "kind": "variation", "strength": args.strength,
                "init": str(init.resolve()) if init.exists() else args.init}
    result = _run_job(args, body)
    if isinstance(result, int):
        return result
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for im in result["images"]:
        dst = out / f"{args.name or 'sprite'}-{im['seed']}.png"
        shutil.copyfile(im["path"], dst)  # the stored PNG, metadata and all
        print(dst)
    return 0


def cmd_pixelate(args: argparse.Namespace) -> int:
    """One file, or a folder into a folder. Exit 0 on success, 1 when any image of a folder failed, 2 for bad
    arguments or an unusable single image."""
    from pipelines.pixel import pixelate_file, pixelate_folder

    try:
        params = _pixel_params(args)
        src, dst = Path(args.input), Path(args.output)
        if not src.is_dir():
            res = pixelate_file(src, dst, params, preview_scale=args.preview_scale)
            w, h = res.image.size
            print(f"{dst}: {w}x{h}, {len(res.palette)} colours, cell {res.cell[0]:.2f}x{res.cell[1]:.2f} px")
            if res.note:  # said plainly: the user can force the size or the cell
                print(f"warning: {res.note} (force it with --size WxH --exact-size, or --cell W[xH])",
                      file=sys.stderr)
            return 0
        from tqdm import tqdm

        with tqdm(unit="img", disable=args.quiet, file=sys.stderr) as bar:

            def progress(done: int, total: int, _path: Path) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            items = pixelate_folder(src, dst, params, shared_palette=args.shared_palette,
                                    preview_scale=args.preview_scale, progress=progress)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = [it for it in items if it.error]
    for it in bad:
        print(f"{it.src.name}: {it.error}", file=sys.stderr)
    print(f"{len(items) - len(bad)} sprite(s) written to {dst}" + (f", {len(bad)} failed" if bad else ""))
    return 1 if bad else 0


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def _finish(app, job, quiet: bool):
    """Show the job's progress (tqdm); Ctrl-C cancels it. The result, or an exit code."""
    from tqdm import tqdm

    from studio.core import JobFailed

    studio = app.studio
    try:
        with tqdm(total=job.total or None, unit="step", disable=quiet, file=sys.stderr) as bar:
            while not job.finished.wait(0.1):
                bar.total = job.total or bar.total
                bar.n = job.step
                bar.refresh()
    except KeyboardInterrupt:
        studio.queue.cancel(job.id)
        studio.queue.wait(job, 30)
        print("cancelled", file=sys.stderr)
        return 130
    try:
        return studio.result(job)
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_workflows(args: argparse.Namespace) -> int:
    from studio.features.workflows import BUILTIN_DIR, load_workflows

    settings = _settings(args)
    problems: list[str] = []
    flows = load_workflows(BUILTIN_DIR, settings.data_dir / "workflows", problems=problems)
    for problem in problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    for wf in flows.values():
        values = ", ".join(f"{k}={wf.values.get(k, '?')!r}" for k in wf.placeholders)
        print(f"{wf.name:18} {wf.kind:8} {wf.description}\n{'':27}values: {values or '-'}")
    return 0


def cmd_run_workflow(args: argparse.Namespace) -> int:
    _quiet_libraries()
    import shutil

    try:
        values = _parse_sets(args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("seed", args.seed), ("steps", args.steps)) if v is not None}
    result = _run_job(args, {"kind": "workflow", "name": args.name, "values": values, "generate": overrides})
    if isinstance(result, int):
        return result
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(result["images"]):
        dst = out / f"{args.name}-{i}-{im['seed']}.png"
        shutil.copyfile(im["path"], dst)
        print(dst)
    for name, path in result["extras"].items():
        dst = out / f"{args.name}-{name}"
        shutil.copyfile(path, dst)
        print(dst)
    print(f"job {result['job_id']}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from studio.features.deploy import deploy
    from studio.features.export import ExportError

    app = _open_app(args)
    if isinstance(app, int):
        return app
    with app:
        try:
            res = deploy(app.studio, args.source, Path(args.assets), args.name, args.kind)
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for f in res.files:
        print(f)
    if not args.quiet:
        print("\n" + res.bevy_snippet, file=sys.stderr)
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    """create / import / check / caption / export: the Dataset tab's operations from the shell."""
    from studio.features import dataset_library as datasets
    from training import dataset as dset
    from training.captioning import find_captioners

    app = _open_app(args)
    if isinstance(app, int):
        return app
    studio = app.studio
    try:
        with app:
            if args.action == "create":
                ds = datasets.create(studio, args.name, args.trigger or "", args.class_word)
                print(f"created {ds.path}")
                return 0
            ds = datasets.open_dataset(studio, args.name)
            if args.action == "import":
                split = args.split
                report = ds.import_files(args.paths, split) if not (len(args.paths) == 1
                                                                    and Path(args.paths[0]).is_dir()) \
                    else ds.import_folder(args.paths[0], split)
                print(report.summary())
                for s in report.skipped:
                    print(f"  skipped {s.name}: {s.reason}")
            elif args.action == "check":
                for r in ds.records:
                    for p in r.problems:
                        print(f"{r.file}: {p}")
                for g in ds.duplicates():
                    print(f"{g.kind} duplicates: {', '.join(g.files)}")
                for w in ds.warnings():
                    print(f"warning: {w}")
            elif args.action == "caption":
                capts = find_captioners(studio.settings.models_dir)
                if args.captioner not in capts:
                    raise dset.DatasetError(f"unknown captioner {args.captioner!r} (have: {', '.join(capts)})")
                dset.auto_caption(ds, capts[args.captioner], overwrite=args.overwrite)
                print(f"captioned {len(ds.records)} image(s) with {args.captioner}")
            elif args.action == "export":
                if not args.out:
                    raise dset.DatasetError("export needs --out DIR")
                rep = (dset.export_kohya(ds, args.out, args.repeats, overwrite=True) if args.format == "kohya"
                       else dset.export_diffusers(ds, args.out, overwrite=True))
                print(f"{len(rep.items)} image(s) written to {rep.folder}")
            datasets.sync(studio, ds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _start_training(args: argparse.Namespace, body: dict):
    """Start the run here, or through the running studio when that holds the database (its child process
    then belongs to the studio; this command follows the run's files either way). A RunHandle or exit code."""
    from studio.frontends.assemble import App
    from studio.frontends.client import StudioClient, StudioUnreachable
    from studio.frontends.job_requests import start_training
    from studio.store import StoreLockedError
    from training.runs import RunHandle

    settings = _settings(args)
    try:
        app = App(settings)
    except StoreLockedError:
        try:
            reply = StudioClient(settings).post("api/v1/train", body)
        except StudioUnreachable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return RunHandle(Path(reply["run_dir"]))
    with app:
        return start_training(app, body)


def cmd_train(args: argparse.Namespace) -> int:
    """Start (or resume) a LoRA run in its child process and follow it; Ctrl-C asks it to checkpoint and stop."""
    import time

    from tqdm import tqdm

    from training.config import coerce_setting, load_preset

    try:
        if args.resume:
            body: dict = {"resume": args.resume}
        else:
            overrides = {k: getattr(args, k) for k in ("steps", "rank", "resolution", "learning_rate")
                         if getattr(args, k) is not None}
            for item in args.set or []:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
                overrides[key.strip()] = coerce_setting(key.strip(), value)
            preset = args.preset
            if Path(preset).suffix == ".toml":  # your own preset file: read here, its settings sent
                preset = load_preset(preset)
            body = {"dataset": args.dataset, "preset": preset, "model": args.model, "name": args.name,
                    "overrides": overrides}
        handle = _start_training(args, body)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(handle, int):
        return handle
    print(f"run {handle.run_dir}", file=sys.stderr)
    status = handle.status()
    try:
        with tqdm(total=status.get("total"), unit="step", disable=args.quiet, file=sys.stderr) as bar:
            while status.get("state") == "running":
                time.sleep(1)
                status = handle.status()
                bar.total, bar.n = status.get("total") or bar.total, status.get("step", 0)
                bar.refresh()
    except KeyboardInterrupt:
        handle.stop()
        print("stopping: the run saves a checkpoint and exits; resume it with --resume "
              f"{handle.run_dir.name}", file=sys.stderr)
        return 130
    if status.get("state") != "done":
        print(f"error: run {handle.run_dir.name} {status.get('state')}: {status.get('error')}", file=sys.stderr)
        return 1
    print(handle.run_dir)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    _quiet_libraries()

    app = _open_app(args)
    if isinstance(app, int):
        return app
    with app:
        board = app.arena.leaderboard(args.prompt_set, rounds=args.rounds, min_votes=args.min_votes)
    rows = board.to_rows()
    if args.json:
        print(json.dumps({"n_votes": board.n_votes, "n_battles": board.n_battles, "ratings": rows}, indent=2))
        return 0
    print(f"{board.n_votes} pairwise votes from {board.n_battles} battles"
          + (f" (prompt set {args.prompt_set})" if args.prompt_set else ""))
    print(f"{'rank':>4}  {'contender':32} {'elo':>6} {'95% interval':>15} {'votes':>6}  W-L-T")
    for r in rows:
        interval = f"{r['elo_lo']:.0f}..{r['elo_hi']:.0f}" if r["elo_lo"] is not None else "-"
        rank = "-" if r["rank"] is None else str(r["rank"])
        flag = "  provisional" if r["provisional"] else ""
        print(f"{rank:>4}  {r['name']:32} {r['elo']:>6.0f} {interval:>15} {r['votes']:>6}  "
              f"{r['wins']}-{r['losses']}-{r['ties']}{flag}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """A benchmark suite on this machine, as a job of the studio (stopped: opened here); every figure is a row of
    the `benchmarks` table in its DuckDB file. Ctrl-C cancels (what was measured is kept)."""
    _quiet_libraries()
    from studio.features.benchmarks.run import BenchSpec, report
    from studio.frontends.mcp import build_mcp

    app = _open_app(args)
    if isinstance(app, int):
        return app
    with app:
        app.benchmarks.mcp = build_mcp  # the MCP overhead benchmark measures the studio's own tools
        try:
            job = app.benchmarks.submit(BenchSpec(args.suite, args.model, args.lora or (), args.tiny), "cli")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        result = _finish(app, job, args.quiet)
    if isinstance(result, int):
        return result
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else report(result, app.settings.db_path))
    return 1 if result.errors else 0


def _add_pixel_flags(p: argparse.ArgumentParser, size_flag: str = "--size") -> None:
    p.add_argument(size_flag, dest="size", type=_size,
                   help="target sprite size WxH (a hint; --exact-size makes it binding)")
    p.add_argument("--exact-size", "--exact", dest="exact_size", action="store_true",
                   help="force the sprite to exactly --size")
    p.add_argument("--colors", default=None, help=f"palette size {limits.MIN_COLORS}..{limits.MAX_COLORS}, or auto")
    p.add_argument("--palette", help="named palette (pico-8, gameboy, endesga-32, ...) or a .hex/.gpl/.pal file")
    p.add_argument("--background", default="auto", help="auto | keep | #rrggbb (made transparent)")
    p.add_argument("--fill-holes", action="store_true", help="also clear enclosed background regions")
    p.add_argument("--keep-strays", action="store_true", help="do not remove stray pixels")
    p.add_argument("--dither", default="none", choices=["none", "bayer"], help="ordered dithering to the palette")
    p.add_argument("--outline", help="add a 1-px outline in this colour (#rrggbb)")
    p.add_argument("--crop", action="store_true", help="crop to the sprite")
    p.add_argument("--canvas", type=_size, help="pad to this canvas WxH (after --crop)")
    p.add_argument("--cell", help="force the cell size in input px: W or WxH (decimals allowed)")
    p.add_argument("--offset", help="with --cell: a cell boundary at X,Y input px")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgx-pixels", description="DGX-Pixels Studio: pixel-art sprites from SDXL.")
    parser.add_argument("--config", help="path to studio.toml (default: ./studio.toml or $DGXP_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web studio (same as python app.py)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--lan", action="store_true", help="listen on all interfaces (needs a password)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", help="prompt -> sprite PNGs")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--model")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--sampler", default="default", help="Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DPM++ SDE Karras, "
                   "DDIM, UniPC, LCM, Lightning (or ComfyUI's names)")
    p.add_argument("--schedule", default="automatic", help="automatic | karras | exponential | sgm_uniform | trailing")
    p.add_argument("--clip-skip", type=int, help="A1111's clip skip (2 = SDXL's own)")
    p.add_argument("--fast", action="store_true", help="fast preview: the few-step settings of an LCM/Lightning/Turbo "
                   "LoRA or checkpoint")
    p.add_argument("--size", dest="render_size", type=_size,
                   help="SDXL render size WxH (default: the model's native size)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--raw", action="store_true", help="keep the raw render (no pixel clean-up)")
    p.add_argument("--init", help="make img2img variations of this image instead of text-to-image")
    p.add_argument("--strength", type=float, default=0.5, help="with --init: 0.05 (close) .. 0.95 (far)")
    p.add_argument("--name", help="file name stem (default: sprite)")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    _add_pixel_flags(p, "--sprite-size")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("pixelate", help="clean up any image (or a folder) into an exact sprite")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--preview-scale", type=int,
                   help=f"also write <name>.preview.png enlarged K times (1..{limits.MAX_PREVIEW_SCALE})")
    p.add_argument("--shared-palette", action="store_true", help="folders: one palette for every image")
    p.add_argument("--quiet", action="store_true")
    _add_pixel_flags(p)
    p.set_defaults(func=cmd_pixelate)

    p = sub.add_parser("models", help="list checkpoints and LoRAs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("workflows", help="list the workflow templates (built in and yours)")
    p.set_defaults(func=cmd_workflows)

    p = sub.add_parser("run-workflow", help="run a workflow template, e.g. walk_cycle --set subject='a knight'")
    p.add_argument("name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fill a {placeholder}")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_run_workflow)

    p = sub.add_parser("export", help="write a job's sprite/sheet/tileset (or a PNG) into a Bevy assets folder")
    p.add_argument("source", help="a job id or an image file")
    p.add_argument("--assets", required=True, help="the game's assets/ folder")
    p.add_argument("--name", required=True, help="asset name: lowercase letters, digits, - and _")
    p.add_argument("--kind", default="auto", choices=["auto", "sprite", "sheet", "tileset"])
    p.add_argument("--quiet", action="store_true", help="do not print the Bevy snippet")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("dataset", help="LoRA training sets: create, import, check, caption, export")
    p.add_argument("action", choices=["create", "import", "check", "caption", "export"])
    p.add_argument("name")
    p.add_argument("paths", nargs="*", help="import: image files, zips or one folder")
    p.add_argument("--trigger", help="create: the trigger word")
    p.add_argument("--class-word", default="sprite", help="create: the class word")
    p.add_argument("--split", type=_size, help="import: split sheets into a grid COLSxROWS")
    p.add_argument("--captioner", default="structured", help="caption: structured or a models/captioners/ folder")
    p.add_argument("--overwrite", action="store_true", help="caption: replace existing captions")
    p.add_argument("--format", choices=["kohya", "diffusers"], default="kohya", help="export layout")
    p.add_argument("--repeats", type=int, default=10, help="export: kohya repeats")
    p.add_argument("--out", help="export: the folder to write")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train", help="train a LoRA on a dataset in a child process (or --resume a run)")
    p.add_argument("--dataset", help="a dataset made with `dgx-pixels dataset` or the Dataset tab")
    p.add_argument("--preset", default="balanced", help="fast | balanced | quality, or a preset .toml file")
    p.add_argument("--model", help="the base: a diffusers checkpoint folder in models/checkpoints/")
    p.add_argument("--name", help="the LoRA's name (default: <dataset>-lora)")
    p.add_argument("--steps", type=int)
    p.add_argument("--rank", type=int)
    p.add_argument("--resolution", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other preset setting, e.g. --set train_text_encoder=true --set min_snr_gamma=off")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped or killed run from its last checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("leaderboard", help="the Compare leaderboard (Bradley-Terry with 95%% intervals)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prompt-set")
    p.add_argument("--rounds", type=int, default=200, help="bootstrap rounds for the intervals")
    p.add_argument("--min-votes", type=int, default=20, help="fewer votes than this: provisional")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("bench", help="benchmark this machine; the figures go into the studio's DuckDB file")
    p.add_argument("--suite", choices=("quick", "standard", "gpu"), default="quick")
    p.add_argument("--model", help="checkpoint (default: the studio's; --suite gpu: random SDXL weights)")
    p.add_argument("--lora", action="append", metavar="NAME:W", help="a LoRA to measure with (repeatable)")
    p.add_argument("--tiny", action="store_true", help="a smoke run: 1-2 steps, one repeat of each benchmark")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("info", help="print the generation settings stored in a PNG")
    p.add_argument("image")
    p.add_argument("--import", dest="import_", action="store_true",
                   help="print the job it describes (A1111/Forge/Civitai PNGs too), models matched by hash")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("config", help="print the effective settings")
    p.add_argument("--show-token", action="store_true", help="also print the MCP bearer token")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("mcp", help="MCP over stdio for desktop AI clients (proxies to the running studio)")
    p.add_argument("--stdio", action="store_true", default=True, help="speak MCP on stdin/stdout (the default)")
    p.add_argument("--url", help="studio URL (default: from settings, http://127.0.0.1:7860/)")
    p.set_defaults(func=cmd_mcp)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # settings errors and the like: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
