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


def clean_log(text: str) -> str:
    """A log as a person reads it: no terminal escape codes, no progress bars. A line redrawn with carriage
    returns keeps only what a terminal would show last, and a line that is only a progress bar is dropped
    (the run's progress is its status and loss curve)."""
    out = []
    for line in ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        parts = [part for part in line.split("\r") if part.strip()]
        line = parts[-1] if parts else ""
        if line.strip() and not PROGRESS_BAR.search(line):
            out.append(line.rstrip())
    return "\n".join(out)


def log_tail(studio: Studio, run_id: str, lines: int = 20) -> str:
    """The last `lines` lines of the run's log, cleaned (`clean_log`)."""
    path = handle(studio, run_id).run_dir / "log.txt"
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:  # the end is enough: a long run's log can grow
        fh.seek(max(0, path.stat().st_size - 256 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(clean_log(text).splitlines()[-lines:])


def describe(run_id: str, status: dict[str, Any], rows: list[dict] | None = None) -> str:
    """One line about a run for people (Markdown): state, step, what it is doing after its last step, the
    latest loss and the time left, numbers rounded."""
    state = status.get("state") or "unknown"
    parts = [f"**{run_id}**", state, f"step {status.get('step', 0)}/{status.get('total', '?')}"]
    if state == "running" and status.get("phase"):
        parts.append(str(status["phase"]))
    if rows:
        parts.append(f"loss {rows[-1]['loss']:.3g}")
    if state == "running" and status.get("eta_s"):
        parts.append(f"about {human_duration(float(status['eta_s']))} left")
    if state == "done" and status.get("exports"):
        parts.append(f"LoRA **{Path(status['exports'][0]).stem}** is in the LoRA lists")
    text = " · ".join(parts)
    return text + (f"\n\n**Error:** {status['error']}" if status.get("error") else "")


def human_duration(seconds: float) -> str:
    """90 -> '1 min 30 s', 7260 -> '2 h 1 min', 4.2 -> '4 s'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s < 600 and s % 60 else f"{round(s / 60)} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


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
