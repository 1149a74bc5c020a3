"""Training as a game developer meets it (issue 15), without a browser: the `fast` preset trains at the base
model's native size, the end of a run is seconds and says what it does, the log reads as text, the lr axis fits
the lr, and a trained LoRA is one entry with both of its export formats."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
from PIL import Image

from studio.features import dataset_library as datasets
from studio.features import training_runs
from studio.params import GenerateParams, LoraRef
from training.config import config_from_preset, native_resolution


def blobs(studio, tmp_path, name: str, n: int = 2):
    ds = datasets.create(studio, name, trigger="blb")
    paths = []
    for i in range(n):
        art = np.full((12, 12, 3), 255, dtype=np.uint8)
        art[3:9, 3:9] = [(200, 40, 40), (40, 40, 200), (40, 160, 60)][i % 3]
        paths.append(tmp_path / f"{name}_{i}.png")
        Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(paths[-1])
    ds.import_files(paths)
    return ds


def test_presets_train_at_the_base_models_native_size(demo_model, tmp_path):
    assert native_resolution(demo_model) == 128  # UNet sample_size 16 x VAE scale factor 8
    need = dict(base_model=str(demo_model), dataset_dir=str(tmp_path), output_name="x")
    for preset in ("fast", "balanced", "quality"):  # the presets say 1024: SDXL's native size, not the demo's
        assert config_from_preset(preset, **need).resolution == 128
    assert config_from_preset("fast", resolution=64, **need).resolution == 64  # what the user sets wins
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    assert native_resolution(not_a_model) is None
    assert config_from_preset("fast", **{**need, "base_model": str(not_a_model)}).resolution == 1024


def test_the_end_of_a_fast_run_on_the_demo_model_is_seconds_and_logged(studio, tmp_path):
    """The `fast` preset as a user starts it (no resolution given): after the last step it samples, saves a
    checkpoint and exports, each logged with its time, and the LoRA is exported within 10 s of the last step
    (it was ~3 minutes: a 25-step sample rendered at 1024 px on a 128 px model)."""
    blobs(studio, tmp_path, "ends")
    h = training_runs.start(studio, "ends", "fast", steps=2, rank=2)
    status = h.wait(300)
    log = training_runs.log_tail(studio, h.run_dir.name, lines=200)
    assert status["state"] == "done", (status, log)
    assert json.loads((h.run_dir / "config.json").read_text())["resolution"] == 128
    rows = training_runs.loss_curve(studio, h.run_dir.name)
    assert [r["step"] for r in rows] == [1, 2]
    last_step = json.loads((h.run_dir / "metrics.jsonl").read_text().splitlines()[-1])["time"]
    after = status["updated"] - last_step  # the done status is written right after the export
    assert after <= 10, (after, log)
    for phase in ("sampling at step 2: 1 image(s), 25 steps at 128x128 px in",
                  "checkpoint step 2 saved in", "LoRA exported in"):
        assert phase in log, (phase, log)
    raw = (h.run_dir / "log.txt").read_text()
    assert "\r" not in raw and "\x1b" not in raw  # no progress bars at the source


def test_log_shown_without_escape_codes_or_progress_bars():
    raw = ("2026-01-01 10:00:00 device cpu\n"
           "\rLoading pipeline components...:   0%|          | 0/7 [00:00<?, ?it/s]\n"
           "\rLoading weights:   0%|          | 0/85 [00:00<?, ?it/s]\x1b[A\rLoading weights: 100%|██████████| "
           "85/85 [00:00<00:00, 22412.51it/s]\n"
           "\x1b[32mgreen note\x1b[0m\r\n"
           "half a line\rthe whole line\n"
           "2026-01-01 10:00:09 LoRA exported in 0.2 s\n")
    assert training_runs.clean_log(raw).splitlines() == [
        "2026-01-01 10:00:00 device cpu", "green note", "the whole line", "2026-01-01 10:00:09 LoRA exported in 0.2 s"]


def test_status_numbers_are_rounded_for_people():
    assert [training_runs.human_duration(s) for s in (4.4, 90, 725, 7260)] == ["4 s", "1 min 30 s", "12 min",
                                                                               "2 h 1 min"]
    text = training_runs.describe("run-1", {"state": "running", "step": 10, "total": 10, "phase": "sampling",
                                            "eta_s": 95.123}, [{"step": 10, "loss": 0.123456789, "lr": 1e-4}])
    assert text == "**run-1** · running · step 10/10 · sampling · loss 0.123 · about 1 min 35 s left"


def test_lr_has_its_own_axis_scaled_to_its_values():
    from tabs.train import curve_figure

    fig = curve_figure([{"step": s, "loss": 1 / s, "lr": 1e-4} for s in range(1, 4)])
    low, high = fig.layout.yaxis2.range
    assert low == 0 and 1e-4 < high < 2e-4


def test_a_trained_lora_is_one_entry_with_both_formats(studio, lora_files):
    for name in ("slime", "slime_kohya", "knight_te_kohya"):  # a kohya file without its twin stays itself
        shutil.copy(lora_files[name], studio.settings.loras_dir / f"{name}.safetensors")
    loras = {lo["name"]: lo for lo in studio.loras()}
    assert set(loras) == {"slime", "knight_te_kohya"}
    assert {k: v.rsplit("/", 1)[-1] for k, v in loras["slime"]["formats"].items()} == {
        "diffusers": "slime.safetensors", "kohya": "slime_kohya.safetensors"}
    assert loras["slime"]["path"].endswith("/slime.safetensors") and loras["slime"]["trigger_words"] == ["slm"]
    assert studio.registry.lora("slime_kohya").path.name == "slime_kohya.safetensors"  # old names still load
    t = time.perf_counter()
    res = studio.generate(GenerateParams(prompt="slm", seed=1, steps=2, width=64, height=64,
                                         loras=(LoraRef("slime", 1.0),)))
    assert res.images and time.perf_counter() - t < 120
    assert studio.manager.lora_loads == 1
