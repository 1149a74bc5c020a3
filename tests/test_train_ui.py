"""Training from the studio: dataset -> child-process run -> LoRA in models/loras -> Generate and Compare."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from PIL import Image

from studio.features import dataset_library as datasets
from studio.features import training_runs
from studio.params import GenerateParams, LoraRef

TINY = {"steps": 6, "resolution": 64, "rank": 4, "alpha": 4.0, "learning_rate": 1e-3, "batch_size": 1,
        "sample_every": 3, "checkpoint_every": 3}


def make_dataset(studio, tmp_path, name="blobs"):
    ds = datasets.create(studio, name, trigger="blb")
    paths = []
    for i in range(3):
        art = np.full((12, 12, 3), 255, dtype=np.uint8)
        art[3:9, 3:9] = [(200, 40, 40), (40, 40, 200), (40, 160, 60)][i]
        paths.append(tmp_path / f"blob_{i}.png")
        Image.fromarray(np.kron(art, np.ones((8, 8, 1), dtype=np.uint8))).save(paths[-1])
    ds.import_files(paths)
    ds.set_caption(ds.records[0].file, "blb, red blob")
    return ds


def plot_values(data) -> list:
    """A plotly trace's x or y: a plain list, or plotly's typed-array form {"dtype": ..., "bdata": base64}."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def assert_samples(run_dir, names: list[str], steps: tuple[int, ...]) -> None:
    """Samples named step_<step>_<prompt>: one set per sampling step, the same prompts each time, every file a
    readable image in the run's samples folder."""
    by_step: dict[int, list[str]] = {}
    for name in names:
        _, step, prompt = name.split("_")
        by_step.setdefault(int(step), []).append(prompt)
    assert tuple(sorted(by_step)) == steps
    first = sorted(by_step[steps[0]])
    assert first and all(sorted(p) == first for p in by_step.values())
    for name in names:
        with Image.open(run_dir / "samples" / f"{name}.png") as im:
            im.load()  # (the demo model draws noise, so the sprite's size says nothing)


def wait_done(handle, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = handle.status()
        if st.get("state") in {"done", "failed", "stopped"}:
            return st
        time.sleep(0.5)
    raise TimeoutError(handle.status())


def test_train_from_a_dataset_and_use_the_lora(app, studio, tmp_path):
    make_dataset(studio, tmp_path)
    h = training_runs.start(studio, "blobs", "fast", output_name="blobs-lora", **TINY)
    st = wait_done(h)
    assert st["state"] == "done", st
    rows = training_runs.loss_curve(studio, h.run_dir.name)  # DuckDB reading metrics.jsonl in place
    metrics = [json.loads(line) for line in (h.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(m["step"], m["loss"]) for m in metrics]
    assert [r["step"] for r in rows] == list(range(1, 7)) and all(r["loss"] > 0 for r in rows)
    assert_samples(h.run_dir, [p.stem for p in training_runs.samples(studio, h.run_dir.name)], steps=(3, 6))
    loras = {lo["name"]: lo for lo in studio.loras()}
    assert set(loras["blobs-lora"]["formats"]) == {"diffusers", "kohya"}  # both formats land in models/loras,
    assert "blobs-lora_kohya" not in loras  # listed as one LoRA (issue 15)
    base = studio.generate(GenerateParams(prompt="blb, red blob", seed=1, steps=3))
    tuned = studio.generate(GenerateParams(prompt="blb, red blob", seed=1, steps=3,
                                           loras=(LoraRef("blobs-lora", 1.0),)))
    kohya = studio.generate(GenerateParams(prompt="blb, red blob", seed=1, steps=3,
                                           loras=(LoraRef("blobs-lora_kohya", 1.0),)))
    a, b, c = (np.asarray(Image.open(r.images[0].raw_path)).astype(int) for r in (base, tuned, kohya))
    assert np.abs(a - b).max() > 0 and np.abs(b - c).max() <= 1
    base_name, mine, prompt_set = training_runs.compare_against_base(studio, app.arena, h.run_dir.name)
    assert {c.name for c in app.arena.contenders()} == {base_name, mine}
    assert prompt_set in app.arena.prompt_sets()


def test_training_bad_input(studio, tmp_path):
    datasets.create(studio, "empty")
    with pytest.raises(ValueError, match="no included images"):
        training_runs.start(studio, "empty", "fast", **TINY)
    make_dataset(studio, tmp_path, "ok")
    with pytest.raises(ValueError, match="rank"):
        training_runs.start(studio, "ok", "fast", **{**TINY, "rank": 0})
    with pytest.raises(ValueError, match="learning_rate"):
        training_runs.start(studio, "ok", "fast", **{**TINY, "learning_rate": 0.0})
    with pytest.raises(ValueError, match="unknown preset"):
        training_runs.start(studio, "ok", "nope", **TINY)
    assert not any(p.suffix == ".safetensors" for p in studio.settings.loras_dir.iterdir())


def test_train_tab_over_the_api(live_studio, tmp_path):
    from gradio_client import Client

    make_dataset(live_studio.studio, tmp_path, "apiblobs")
    c = Client(live_studio.url, verbose=False)
    from tabs.train import ADVANCED_FIELDS, MAIN_FIELDS

    preset = c.predict("fast", api_name="/train_preset")
    keys = [k for k, _, _ in MAIN_FIELDS + ADVANCED_FIELDS]
    filled = dict(zip(keys, preset, strict=True))  # every preset field is in the form, filled from the preset
    assert filled["rank"] == 16 and filled["steps"] == 800 and filled["min_snr_gamma"] == 5.0
    assert filled["optimizer"] == "adamw8bit" and filled["gradient_checkpointing"] is True
    assert filled["train_text_encoder"] is False and filled["text_encoder_lr"] is None
    form = {**filled, "rank": 4, "alpha": 4.0, "learning_rate": 1e-3, "steps": 4, "batch_size": 1,
            "resolution": 64, "sample_every": 2, "checkpoint_every": 2, "min_snr_gamma": 0,  # 0 = off, as the form says
            "train_text_encoder": True, "sample_steps": 2}
    run = c.predict("apiblobs", "demo-tiny", "fast", "api-lora", *form.values(), api_name="/train_start")
    run = run["value"]  # the run picker is updated with the new run selected
    h = training_runs.handle(live_studio.studio, run)
    assert wait_done(h)["state"] == "done"
    status, curve, shots, log = c.predict(run, api_name="/train_status")
    assert "done" in status and "step 4/4" in status
    # the curve shows the run's losses, as the child wrote them to metrics.jsonl, step by step
    metrics = [json.loads(line) for line in (h.run_dir / "metrics.jsonl").read_text().splitlines()]
    (loss,) = [t for t in json.loads(curve["plot"])["data"] if t.get("name") == "loss"]
    assert plot_values(loss["x"]) == [1, 2, 3, 4] == [m["step"] for m in metrics]
    assert plot_values(loss["y"]) == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    # and the samples are the run's, every 2 steps, the same prompts each time
    assert_samples(h.run_dir, [shot["caption"] for shot in shots], steps=(2, 4))
    for shot in shots:
        sent = np.asarray(Image.open(shot["image"]))
        assert np.array_equal(sent, np.asarray(Image.open(h.run_dir / "samples" / f"{shot['caption']}.png")))
    used = json.loads((h.run_dir / "config.json").read_text())  # the advanced fields reached the run
    assert used["train_text_encoder"] is True and used["min_snr_gamma"] is None and used["sample_steps"] == 2


def test_train_command_and_resume_refusal(studio, tmp_path, capsys):
    from studio.frontends.cli import main

    make_dataset(studio, tmp_path, "cliblobs")
    studio.close()
    cfg = tmp_path / "studio.toml"
    cfg.write_text(f'data_dir = "{studio.settings.data_dir}"\nmodels_dir = "{studio.settings.models_dir}"\n')
    assert main(["--config", str(cfg), "train", "--dataset", "cliblobs", "--set", "rnak=4"]) == 2
    assert "unknown training setting 'rnak'" in capsys.readouterr().err
    assert main(["--config", str(cfg), "train", "--dataset", "cliblobs", "--set", "warmup_steps=soon"]) == 2
    assert "warmup_steps must be int" in capsys.readouterr().err
    code = main(["--config", str(cfg), "train", "--dataset", "cliblobs", "--preset", "fast", "--steps", "3",
                 "--resolution", "64", "--rank", "4", "--quiet", "--set", "train_text_encoder=true",
                 "--set", "min_snr_gamma=off", "--set", "lr_scheduler=cosine"])
    assert code == 0
    run_dir = capsys.readouterr().out.strip().splitlines()[-1]
    from pathlib import Path

    assert '"state": "done"' in Path(run_dir, "status.json").read_text().replace("'", '"')
    used = json.loads(Path(run_dir, "config.json").read_text())
    assert used["train_text_encoder"] is True and used["min_snr_gamma"] is None and used["lr_scheduler"] == "cosine"
    code = main(["--config", str(cfg), "train", "--resume", run_dir.rsplit("/", 1)[-1]])
    assert code == 2 and "already finished" in capsys.readouterr().err
    assert main(["--config", str(cfg), "train"]) == 2


def test_generation_can_wait_for_training(tmp_path, demo_model):
    import dataclasses

    from studio.frontends.assemble import App
    from tests.conftest import make_settings

    settings = dataclasses.replace(make_settings(tmp_path, demo_model), pause_generation_while_training=True)
    with App(settings) as app:
        studio = app.studio
        make_dataset(studio, tmp_path)
        h = training_runs.start(studio, "blobs", "fast", **{**TINY, "steps": 500, "sample_every": 0,
                                                             "checkpoint_every": 0})
        deadline = time.time() + 120
        while h.status().get("step", 0) < 1 and time.time() < deadline:
            time.sleep(0.2)
        job = studio.submit_generate(GenerateParams(prompt="x", seed=1, steps=2))
        time.sleep(2.5)
        assert job.status == "queued" and "training" in (job.error or "")
        h.stop()
        studio.queue.wait(job, 120)
        assert job.status == "done"
        assert wait_done(h)["state"] == "stopped"
