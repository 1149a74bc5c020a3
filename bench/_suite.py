"""What the scripts in bench/ share: they run benchmarks of the studio's own suites (`dgx-pixels bench` and the
Metrics tab run the same code, `studio.features.benchmarks`), print the figures, and keep a JSON copy in
bench/results/ as the repository's record of figures. The studio itself only reads its DuckDB file, where
every run also lands (table `benchmarks`).

    --data DIR    the studio data folder whose DuckDB gets the rows (default: the studio's settings)
    --model NAME  a checkpoint of the studio (default: its default model; the gpu suite: random weights)
    --lora N:W    a LoRA to measure with (repeatable)
    --tiny        a 1-2 step smoke run
    --threads N   torch CPU threads (default 1: figures comparable on a shared machine)
    --out FILE    the JSON copy (default: bench/results/<script>.json, or <script>_tiny.json with --tiny)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                      ("GRADIO_ANALYTICS_ENABLED", "False")):
    os.environ.setdefault(_name, _value)


def main(name: str, doc: str, suite: str, only: tuple[str, ...] = (), argv: list[str] | None = None,
         extra: dict[str, dict] | None = None) -> int:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="studio data folder (default: from studio.toml / DGXP_*)")
    ap.add_argument("--model", help="checkpoint name")
    ap.add_argument("--lora", action="append", metavar="NAME:W")
    ap.add_argument("--tiny", action="store_true", help="a smoke run (1-2 steps, one repeat)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    for flag, kw in (extra or {}).items():
        ap.add_argument(flag, **kw)
    args = ap.parse_args(argv)

    import torch

    from studio.features.benchmarks.run import BenchSpec, report
    from studio.frontends.assemble import App
    from studio.frontends.mcp import build_mcp
    from studio.params import parse_loras
    from studio.settings import load_settings

    torch.set_num_threads(args.threads)
    picked = tuple(getattr(args, "only", None) or only)
    spec = BenchSpec(suite, args.model, parse_loras(args.lora or []), args.tiny, picked)
    settings = load_settings(data_dir=args.data)
    with App(settings) as app:
        app.benchmarks.mcp = build_mcp
        result = app.benchmarks.run(spec, source="bench-script")
    out = args.out or ROOT / "bench" / "results" / f"{name}{'_tiny' if args.tiny else ''}.json"
    record = to_json(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(report(result, settings.db_path))
    print(f"JSON copy: {out}")
    return 1 if result.errors else 0


def to_json(result) -> dict:
    """{run_id, suite, context, phases: {benchmark: {figure: value}}, goals, errors, notes}."""
    context_keys = ("studio_version", "git_commit", "model", "model_hash", "loras", "device", "dtype", "torch",
                    "cuda", "diffusers", "cpu", "gpu", "threads", "host", "settings")
    first = result.rows[0] if result.rows else {}
    phases: dict[str, dict] = {}
    goals: dict[str, str] = {}
    for r in result.rows:
        phases.setdefault(r["benchmark"], {})[r["metric"]] = r["value"] if r["metric"] != "error" else r["note"]
        if r["goal"] is not None:
            goals[f"{r['benchmark']}.{r['metric']}"] = f"{'<=' if r['better'] == 'lower' else '>='} {r['goal']:g}"
    context = {k: first.get(k) for k in context_keys}
    context["settings"] = json.loads(context["settings"]) if context.get("settings") else None
    return {"run_id": result.run_id, "suite": result.suite, "context": context, "phases": phases, "goals": goals,
            "errors": result.errors, "notes": result.notes}

