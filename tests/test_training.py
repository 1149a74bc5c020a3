"""The LoRA training runner on the real tiny SDXL: learning, samples, stop/kill/resume, export, bad input.

One in-process run (`reference`) is shared: it is the loss curve the interrupted child-process runs must
reproduce exactly, which is what proves that optimizer, lr schedule and RNG are restored on resume.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig, config_from_preset, list_presets, load_preset
from training.runner import load_checkpoint, run_training
from training.runs import (
    list_checkpoints,
    list_runs,
    prepare_run,
    read_metrics,
    read_status,
    resume_run,
    start_run,
)

STEPS = 30
LR = 3e-2  # high for a LoRA, so that 30 steps (batch 2, at the demo's native 128 px) show a clear drop


def _make_dataset(folder: Path, n: int = 3) -> Path:
    """n blocky 64x64 'sprites' (8x8 cells of flat colour) with a caption each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        cells = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(np.kron(cells, np.ones((8, 8, 1), dtype=np.uint8))).save(folder / f"sprite_{i}.png")
        (folder / f"sprite_{i}.txt").write_text(f"pixel sprite number {i}", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("ds") / "sprites")


def _cfg(demo_model, dataset, **kw) -> TrainConfig:
    base = dict(base_model=demo_model, dataset_dir=dataset, output_name="slimes", rank=4, alpha=4.0,
                learning_rate=LR, batch_size=2, steps=STEPS, resolution=128, sample_every=15, sample_steps=2,
                sample_prompts=("zq slime", "zq knight"), checkpoint_every=5, keep_checkpoints=2,
                trigger_word="zq")
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_model, dataset):
    """One uninterrupted in-process run (30 steps) with an export folder."""
    root = tmp_path_factory.mktemp("ref")
    cfg = _cfg(demo_model, dataset, export_dir=root / "loras")
    run_dir = prepare_run(cfg, root / "runs")
    result = run_training(run_dir)
    return run_dir, cfg, result


def _wait_for(pred, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _losses(run_dir: Path) -> list[float]:
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]


def test_training_lowers_loss_and_writes_run_folder(reference):
    run_dir, cfg, result = reference
    assert result.status["state"] == "done" and read_status(run_dir)["state"] == "done"
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one line per step
    assert all(r["mem_mb"] > 0 and r["sec_per_step"] > 0 and r["lr"] == pytest.approx(LR) for r in rows)
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.01, losses
    # paired check on fixed (image, noise, timestep) draws: the same draws with the adapter off vs on
    trained = result.trainer.validation_loss(seed=3, samples=9)
    result.pipe.unet.disable_adapters()
    untrained = result.trainer.validation_loss(seed=3, samples=9)
    result.pipe.unet.enable_adapters()
    assert trained < untrained - 0.01, (trained, untrained)
    samples = sorted(p.name for p in (run_dir / "samples").iterdir())
    assert samples == ["step_15_0.png", "step_15_1.png", "step_30_0.png", "step_30_1.png"]
    assert [s for s, _ in list_checkpoints(run_dir)] == [25, 30]  # keep_checkpoints=2; the end is one too
    assert json.loads((run_dir / "config.json").read_text())["base_model_hash"]
    assert [r["run_id"] for r in list_runs(run_dir.parent)] == [run_dir.name]


def _render(pipe) -> np.ndarray:
    import torch

    return pipe("zq slime", num_inference_steps=3, guidance_scale=5.0, width=64, height=64, output_type="np",
                generator=torch.Generator("cpu").manual_seed(11)).images[0]


def test_exported_lora_reloads_from_both_formats(reference, demo_model):
    from diffusers import StableDiffusionXLPipeline
    from safetensors import safe_open

    run_dir, cfg, result = reference
    export = Path(cfg.export_dir)
    assert sorted(p.name for p in export.iterdir()) == ["slimes.safetensors", "slimes_kohya.safetensors"]
    result.pipe.unet.eval()
    trained = _render(result.pipe)
    fresh = StableDiffusionXLPipeline.from_pretrained(demo_model)
    fresh.set_progress_bar_config(disable=True)
    base = _render(fresh)
    assert np.abs(trained - base).max() > 1e-3  # the LoRA does something, so the check below means something
    for name in ("slimes.safetensors", "slimes_kohya.safetensors"):
        with safe_open(str(export / name), "pt") as fh:
            md = fh.metadata()
        assert md["dgxp.rank"] == "4" and md["dgxp.trigger_word"] == "zq" and md["dgxp.steps"] == str(STEPS)
        pinned = json.loads((run_dir / "config.json").read_text())["base_model_hash"]
        assert md["dgxp.base_model_hash"] == pinned
        assert len(md["dgxp.dataset_hash"]) == 12 and md["dgxp.preset"] == "custom"
        fresh.load_lora_weights(str(export), weight_name=name, adapter_name=name.split(".")[0])
        fresh.set_adapters([name.split(".")[0]])
        assert np.abs(_render(fresh) - trained).max() < 1e-4, name


def test_text_encoder_lora_exports_and_reloads_from_both_formats(demo_model, dataset, tmp_path):
    """train_text_encoder: the exported files carry UNet + both CLIP encoders, the kohya file under the names
    ComfyUI/A1111 use (lora_te1_text_model_…, lora_te2_…), and both reload to the trained model's image."""
    from diffusers import StableDiffusionXLPipeline
    from safetensors import safe_open

    cfg = _cfg(demo_model, dataset, output_name="te", steps=6, sample_every=0, checkpoint_every=0,
               train_text_encoder=True, text_encoder_lr=1e-2, export_dir=tmp_path / "loras")
    result = run_training(prepare_run(cfg, tmp_path / "runs"))
    assert result.status["state"] == "done"
    result.pipe.unet.eval()
    trained = _render(result.pipe)
    with safe_open(str(tmp_path / "loras" / "te_kohya.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
    assert "lora_te2_text_model_encoder_layers_4_self_attn_out_proj.alpha" in keys
    assert any(k.startswith("lora_unet_output_blocks_") for k in keys)
    with safe_open(str(tmp_path / "loras" / "te.safetensors"), "pt") as fh:
        assert {k.split(".")[0] for k in fh.keys()} == {"unet", "text_encoder", "text_encoder_2"}  # noqa: SIM118
    fresh = StableDiffusionXLPipeline.from_pretrained(demo_model)
    fresh.set_progress_bar_config(disable=True)
    for name in ("te.safetensors", "te_kohya.safetensors"):
        adapter = name.split(".")[0]
        fresh.load_lora_weights(str(tmp_path / "loras"), weight_name=name, adapter_name=adapter)
        fresh.set_adapters([adapter])
        assert np.abs(_render(fresh) - trained).max() < 1e-4, name
    # and the text encoders' part matters: the same adapter with them at weight 0 draws another image
    fresh.set_adapters(["te"], adapter_weights=[{"unet": 1.0, "text_encoder": 0.0, "text_encoder_2": 0.0}])
    assert np.abs(_render(fresh) - trained).max() > 1e-3


def test_stop_resume_kill_resume_gives_the_uninterrupted_curve(reference, demo_model, dataset, tmp_path):
    """Child processes through start_run/resume_run: STOP at step ~8, resume, SIGKILL after the next
    checkpoint, resume again (in this process, to save a third child's start-up). The loss curve must equal
    the reference run's step for step: optimizer, lr schedule and RNG all came back. (One scenario, two child
    start-ups: each costs ~10-15 s of imports on this box.)"""
    handle = start_run(_cfg(demo_model, dataset), tmp_path / "runs")
    run_dir = handle.run_dir
    _wait_for(lambda: len(read_metrics(run_dir)) >= 8 or not handle.is_alive(), what="8 steps")
    handle.stop()
    status = handle.wait(120)
    assert status["state"] == "stopped", (status, (run_dir / "log.txt").read_text())
    stopped_at = status["step"]
    assert 8 <= stopped_at < STEPS - 10 and list_checkpoints(run_dir)[-1][0] == stopped_at
    assert len(read_metrics(run_dir)) == stopped_at and not (run_dir / "STOP").exists()

    handle = resume_run(run_dir)
    next_ckpt = (stopped_at // 5 + 1) * 5
    _wait_for(lambda: len(read_metrics(run_dir)) >= next_ckpt + 2 or not handle.is_alive(),
              what="a checkpoint")
    handle.kill()
    status = handle.status()
    assert status["state"] == "failed" and "killed" in status["error"], status
    rows = read_metrics(run_dir)  # the resumed child appended from stopped_at + 1
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) > next_ckpt
    ckpts = list_checkpoints(run_dir)
    assert ckpts[-1][0] == next_ckpt and len(ckpts) <= 2
    for step, path in ckpts:  # every complete checkpoint loads
        lora, state, meta = load_checkpoint(path)
        assert state["step"] == meta["step"] == step and any("lora_A" in k for k in lora)

    run_training(run_dir)  # resume from the newest checkpoint; metrics after it are dropped and redone
    assert read_status(run_dir)["state"] == "done"
    losses = _losses(run_dir)
    assert len(losses) == STEPS
    np.testing.assert_allclose(losses, _losses(reference[0]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="already finished"):
        resume_run(run_dir)


def test_config_validation_and_presets(demo_model, dataset):
    assert list_presets() == ["balanced", "fast", "quality"]
    for name in list_presets():
        p = load_preset(name)
        assert 16 <= p["rank"] <= 32 and p["alpha"] == p["rank"] and p["learning_rate"] == 1e-4
        assert 1 <= p["batch_size"] <= 4 and p["resolution"] == 1024
        cfg = config_from_preset(name, base_model=demo_model, dataset_dir=dataset, output_name="x")
        assert cfg.preset == name and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    need = dict(base_model=demo_model, dataset_dir=dataset, output_name="x")
    assert config_from_preset("balanced", steps=60, **need).warmup_steps == 3  # 75 of 1500 -> 3 of 60
    with pytest.raises(ValueError, match="warmup_steps must be from 0 to steps"):
        config_from_preset("balanced", steps=60, warmup_steps=61, **need)
    with pytest.raises(ValueError, match="rank must be"):
        config_from_preset("fast", rank=0, **need)
    with pytest.raises(ValueError, match="learning_rate must be between 0 and 1"):
        config_from_preset("fast", learning_rate=0, **need)
    with pytest.raises(ValueError, match="learning_rate"):
        config_from_preset("balanced", learning_rate=-1e-4, **need)
    with pytest.raises(ValueError, match="alpha must be greater than 0"):
        TrainConfig(alpha=0, **need)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        TrainConfig(steps=0, **need)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0, **need)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(ValueError, match="unknown training setting.*bogus"):
        TrainConfig.from_dict({**need, "bogus": 1})
    with pytest.raises(ValueError, match="output_name"):
        TrainConfig(**{**need, "output_name": "../evil"})


def test_preset_on_cpu_falls_back_and_uses_every_option(demo_model, dataset, tmp_path):
    """'balanced' asks for bf16 + 8-bit AdamW (not on this CPU box: logged, not fatal) and turns on min-SNR,
    noise offset, caption dropout, cosine warmup, gradient checkpointing and batch 2."""
    cfg = config_from_preset("balanced", base_model=demo_model, dataset_dir=dataset, output_name="bal",
                             resolution=64, steps=4, warmup_steps=2, sample_every=0, checkpoint_every=0)
    run_dir = prepare_run(cfg, tmp_path / "runs")
    result = run_training(run_dir)
    log = (run_dir / "log.txt").read_text()
    assert "bf16 needs CUDA" in log and "adamw8bit needs bitsandbytes" in log
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows)
    lrs = [r["lr"] for r in rows]  # linear warmup over 2 steps, then cosine decay
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-4) and lrs[3] < lrs[2]
    assert result.status["state"] == "done" and (run_dir / "final" / "bal_kohya.safetensors").is_file()


def test_bad_datasets_fail_clearly(demo_model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no images"):
        start_run(TrainConfig(base_model=demo_model, dataset_dir=empty, output_name="x"), tmp_path / "runs")
    ds = _make_dataset(tmp_path / "ds")
    (ds / "sprite_1.txt").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) have no caption file.*sprite_1.png"):
        start_run(TrainConfig(base_model=demo_model, dataset_dir=ds, output_name="x"), tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # a dataset that breaks after the run was created fails in the child with the same message, recorded
    (ds / "sprite_1.txt").write_text("back", encoding="utf-8")
    run_dir = prepare_run(TrainConfig(base_model=demo_model, dataset_dir=ds, output_name="x", resolution=64),
                          tmp_path / "runs")
    (ds / "sprite_0.txt").unlink()
    with pytest.raises(ValueError, match="no caption file"):
        run_training(run_dir)
    assert read_status(run_dir)["state"] == "failed" and "no caption" in read_status(run_dir)["error"]


def test_resume_refuses_a_changed_base_model(demo_model, dataset, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(demo_model, base)
    run_dir = prepare_run(_cfg(base, dataset, steps=2, sample_every=0), tmp_path / "runs")
    unet = base / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(unet.read_bytes()[:-4] + b"\0\0\0\0")  # someone replaced the base with other weights
    with pytest.raises(ValueError, match="base model .* changed since this run started"):
        run_training(run_dir)
    assert read_status(run_dir)["state"] == "failed"
    with pytest.raises(ValueError, match="changed since this run started"):
        resume_run(run_dir)


def test_full_disk_keeps_previous_checkpoint_and_publishes_nothing(demo_model, dataset, tmp_path,
                                                                   monkeypatch):
    import torch

    export = tmp_path / "loras"
    cfg = _cfg(demo_model, dataset, steps=12, sample_every=0, export_dir=export)
    run_dir = prepare_run(cfg, tmp_path / "runs")
    real_save, calls = torch.save, []

    def full_disk_save(obj, f, *a, **kw):
        calls.append(f)
        if len(calls) == 1:
            return real_save(obj, f, *a, **kw)
        Path(f).write_bytes(b"half a file")  # the disk fills up mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(OSError):
        run_training(run_dir)
    status = read_status(run_dir)
    assert status["state"] == "failed" and "disk full" in status["error"]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_5"]  # no temp folder left
    load_checkpoint(run_dir / "checkpoints" / "step_5")
    assert not export.exists() or not any(export.iterdir())
    monkeypatch.undo()

    # resume; now the disk fills while publishing the second LoRA file: nothing appears in export_dir
    real_copy, copies = shutil.copyfile, []

    def full_disk_copy(src, dst, *a, **kw):
        copies.append(dst)
        if len(copies) == 1:
            return real_copy(src, dst, *a, **kw)
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk_copy)
    with pytest.raises(OSError):
        run_training(run_dir)
    assert list(export.iterdir()) == []
    monkeypatch.undo()
    run_training(run_dir)
    assert sorted(p.name for p in export.iterdir()) == ["slimes.safetensors", "slimes_kohya.safetensors"]
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 13))
