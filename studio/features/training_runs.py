"""LoRA training from the studio: a dataset + a preset -> a child-process run whose LoRA lands in models/loras/.

Glue between the Dataset folders, `training.runner` (which owns the run folder and the child process) and
the studio: which base model, where runs live, what the Train tab and `dgx-pixels train` show. The run folder
is the truth; DuckDB reads its metrics.jsonl in place for plots.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from studio.core import Studio
from studio.features import dataset_library as datasets
from studio.features.compare import Arena, Contender
from studio.params import LoraRef
from training.config import config_from_preset, list_presets
from training.dataset import prepare
from training.runs import RunHandle, list_runs, start_run

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# terminal control sequences: CSI (colours, cursor moves such as tqdm's "\x1b[A"), OSC, and single-character ones
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# a tqdm bar: "Loading weights:  14%|█▍        | 1/7 [00:00<00:00,  8.33it/s]"
PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?\s*\[")
STUDIO_SET = frozenset({"base_model", "base_model_hash", "dataset_dir", "output_name", "preset", "trigger_word",
                        "export_dir"})


def runs_root(studio: Studio) -> Path:
    return studio.settings.data_dir / "runs"


def base_folder(studio: Studio, model: str | None) -> Path:
    entry = studio.registry.checkpoint(model or studio.default_model)
    if entry.kind != "diffusers":
        raise ValueError(f"training needs a diffusers folder as the base; {entry.name!r} is a single file "
                         "(save it once with save_pretrained, or use the folder it came from)")
    return entry.path.resolve()


def start(studio: Studio, dataset: str, preset: str | dict[str, Any] = "balanced", model: str | None = None,
          output_name: str | None = None, **overrides: Any) -> RunHandle:
    """Prepare the dataset's included images at SDXL buckets (nearest-neighbour), then start the run.

    `preset`: a preset's name (the studio reads only its own presets folder) or its settings as a dict (a
    client's own preset file, read by the client). Where the run reads and writes is the studio's to say,
    never an override's."""
    fixed = set(overrides) & STUDIO_SET
    if fixed:
        raise ValueError(f"{', '.join(sorted(fixed))}: set by the studio, not by a training request")
    if isinstance(preset, str) and preset not in list_presets():
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(list_presets())}")
    ds = datasets.open_dataset(studio, dataset)
    if not any(r.include for r in ds.records):
        raise ValueError(f"dataset {dataset!r} has no included images")
    prepared = studio.settings.data_dir / "prepared" / f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid4().hex[:6]}"
    cfg = config_from_preset(  # bad settings fail here, before anything is written
        preset,
        base_model=str(base_folder(studio, model)),
        dataset_dir=str(prepared),
        output_name=output_name or f"{ds.name}-lora",
        trigger_word=ds.meta.trigger,
        export_dir=str(studio.settings.loras_dir.resolve()),
        **overrides,  # None clears an optional setting (min_snr_gamma=None: off)
    )
    report = prepare(ds, prepared)
    if not report.items:
        raise ValueError(f"dataset {dataset!r}: no image could be prepared for training")
    return start_run(cfg, runs_root(studio))


def handle(studio: Studio, run_id: str) -> RunHandle:
    """A run of this studio by its id (a folder name in the runs folder, never a path)."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ValueError(f"unknown training run {run_id!r}")
    run_dir = runs_root(studio) / run_id
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"unknown training run {run_id!r}")
    return RunHandle(run_dir)


def runs(studio: Studio) -> list[dict]:
    return list_runs(runs_root(studio))


def active(studio: Studio) -> bool:
    return any(r.get("state") == "running" for r in runs(studio))


def hold_reason(studio: Studio) -> str | None:
    """The queue's hold: with `pause_generation_while_training`, generation waits while a run is alive."""
    if studio.settings.pause_generation_while_training and active(studio):
        return "a LoRA training run has the GPU"
    return None


def loss_curve(studio: Studio, run_id: str) -> list[dict]:
    """metrics.jsonl read by DuckDB in place (lines the child is still writing are skipped)."""
    path = handle(studio, run_id).run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return studio.store.query(
        "SELECT step, loss, lr, sec_per_step, mem_mb FROM read_json_auto(?, format='newline_delimited', "
        "ignore_errors=true) WHERE step IS NOT NULL ORDER BY step", [str(path)])


def samples(studio: Studio, run_id: str) -> list[Path]:
    folder = handle(studio, run_id).run_dir / "samples"
    return sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []


def log_tail(studio: Studio, run_id: str, lines: int = 20) -> str:
    path = handle(studio, run_id).run_dir / "log.txt"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def compare_against_base(studio: Studio, arena: Arena, run_id: str) -> tuple[str, str, str]:
    """Save 'base' and 'base + this run's LoRA' as contenders and the run's sample prompts as a prompt set,
    so the Compare tab can battle them at once. Returns (base contender, LoRA contender, prompt set)."""
    cfg = json.loads((handle(studio, run_id).run_dir / "config.json").read_text(encoding="utf-8"))
    try:
        lora = studio.registry.lora(cfg["output_name"])
    except ValueError as exc:
        raise ValueError(f"{exc} (has the run finished?)") from None
    base = arena.save_contender(Contender(f"base {studio.default_model}"))
    mine = arena.save_contender(Contender(f"{lora.name}@1.0", loras=(LoraRef(lora.name, 1.0),)))
    trigger = cfg.get("trigger_word") or ""
    prompts = list(cfg.get("sample_prompts") or []) or [f"{trigger}, pixel art game sprite".strip(", ")]
    folder = studio.settings.data_dir / "prompt_sets"
    folder.mkdir(parents=True, exist_ok=True)
    body = "prompts = [\n" + "".join(f"    {json.dumps(p)},\n" for p in prompts) + "]\n"
    (folder / f"{lora.name}.toml").write_text(body, encoding="utf-8")
    return base.name, mine.name, lora.name
