"""The scripts in bench/ are thin wrappers over the studio's benchmarks (studio.features.benchmarks); these check
that they still run, land in the studio's DuckDB file, and that the Metrics tab reads the figures back.

The full-size GPU suite runs on the rare sessions that get a GPU, so its every phase is run here on the tiny
architecture: a suite that rotted between GPU sessions would waste the GPU time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from studio.store import Store

ROOT = Path(__file__).resolve().parents[1]


def test_sdxl_gpu_benchmark_runs_every_phase_on_the_tiny_architecture(tmp_path, demo_model):
    out = tmp_path / "sdxl_gpu_tiny.json"
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "demo-tiny").symlink_to(demo_model, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sdxl_gpu.py"), "--tiny", "--data", str(tmp_path / "data"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "DGXP_MODELS_DIR": str(models), "DGXP_CONFIG": "/nonexistent"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    phases = record["phases"]
    assert list(phases) == ["build", "cold", "generation", "lora_switch", "tiles", "training"]
    assert not record["errors"], record["errors"]
    assert phases["build"]["params_unet"] > 0 and phases["lora_switch"]["switch_ms"] > 0
    assert phases["training"]["cached_steps_per_s"] > 0
    assert all(p["peak_mem_mb"] > 0 for p in phases.values())  # every phase measured its memory
    assert record["context"]["model"] == "tiny-random" and record["context"]["settings"]["tiny"] is True
    with closing(Store(tmp_path / "data" / "studio.duckdb")) as store:  # and the run is in the studio's DuckDB
        rows = store.query("SELECT DISTINCT run_id, suite FROM benchmarks")
    assert rows == [{"run_id": record["run_id"], "suite": "gpu"}]


def test_metrics_tab_plots_every_goal():
    from studio.features.metrics import goals_figure

    rows = [{"benchmark": "generation", "metric": "studio_over_direct", "value": 1.0, "goal": 1.05, "better": "lower"},
            {"benchmark": "lora_switch", "metric": "switch_speedup", "value": 40.0, "goal": 20.0, "better": "higher"},
            {"benchmark": "mcp", "metric": "generate_sprite_overhead_ms", "value": 20.0, "goal": 50.0,
             "better": "lower"},
            {"benchmark": "battle", "metric": "battle_over_singles", "value": 1.0, "goal": 1.1, "better": "lower"},
            {"benchmark": "training", "metric": "cached_speedup", "value": 1.6, "goal": 1.5, "better": "higher"},
            {"benchmark": "generation", "metric": "studio_s", "value": 0.8, "goal": None, "better": "lower"}]
    bars = goals_figure(rows).data[0]
    shares = dict(zip(bars.y, bars.x, strict=True))
    assert len(shares) == 5  # the figure without a goal is not a bar
    assert shares["training cached_speedup (>= 1.5)"] == 1.5 / 1.6  # below 1: goal met
    assert shares["generation studio_over_direct (<= 1.05)"] == 1.0 / 1.05
