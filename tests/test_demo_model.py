"""The demo model and the full-size architecture the GPU benchmark builds.

The full SDXL configs are checked on the "meta" device (no memory, no time): the parameter counts must be
SDXL base 1.0's exactly, or a GPU timing with random weights would time some other network.
"""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

from studio.sdxl.demo import (  # noqa: E402
    DEMO_VERSION,
    SDXL_CLIP,
    SDXL_CLIP_2,
    SDXL_UNET,
    SDXL_VAE,
    SDXL_VOCAB,
    build_random_pipeline,
    ensure_demo_model,
)


def test_full_size_configs_are_sdxl_base():
    pipe = build_random_pipeline(SDXL_UNET, SDXL_VAE, SDXL_CLIP, SDXL_CLIP_2, device="meta", vocab_size=SDXL_VOCAB)
    counts = {n: sum(p.numel() for p in getattr(pipe, n).parameters())
              for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
    assert counts == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                      "text_encoder_2": 694_659_840}
    assert pipe.vae_scale_factor == 8 and pipe.default_sample_size * pipe.vae_scale_factor == 1024


def test_demo_is_rebuilt_when_outdated_and_other_folders_are_left_alone(demo_model, tmp_path):
    import shutil

    old = tmp_path / "old-demo"
    shutil.copytree(demo_model, old)
    (old / "DEMO.json").write_text(json.dumps({"demo": True, "note": "version 1 had no version field"}))
    (old / "stale.txt").write_text("from the old build")
    assert ensure_demo_model(old) == old
    assert json.loads((old / "DEMO.json").read_text())["version"] == DEMO_VERSION
    assert not (old / "stale.txt").exists()  # rebuilt from scratch

    theirs = tmp_path / "demo-tiny"  # the demo's name, but no DEMO.json of ours: somebody's own model
    shutil.copytree(demo_model, theirs)
    (theirs / "DEMO.json").unlink()
    (theirs / "notes.txt").write_text("mine")
    assert ensure_demo_model(theirs) == theirs
    assert (theirs / "notes.txt").read_text() == "mine" and not (theirs / "DEMO.json").exists()
