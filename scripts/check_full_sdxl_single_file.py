"""Check, at full size: SDXL base's architecture (random weights) -> our SGM single file -> loaded by the
studio's registry and pipeline manager with no network (the built-in config folder) -> the same weights, and a
denoising step runs.

Too heavy for the test suite (about 16 GB of RAM, 2-3 minutes on 2 cores, 6.5 GB of disk in a temp folder);
the tests check the same path on the tiny model and the configs on "meta".

    .venv/bin/python scripts/check_full_sdxl_single_file.py
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def probes(pipe) -> dict:
    """A few weights from every component, the text projection included (single files store it transposed)."""
    return {
        "unet.conv_in": pipe.unet.conv_in.weight,
        "unet.mid.attn2.to_q": pipe.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_q.weight,
        "vae.decoder.conv_out": pipe.vae.decoder.conv_out.weight,
        "te1.layer11.fc1": pipe.text_encoder.encoder.layers[11].mlp.fc1.weight,
        "te2.layer31.q_proj": pipe.text_encoder_2.text_model.encoder.layers[31].self_attn.q_proj.weight,
        "te2.text_projection": pipe.text_encoder_2.text_projection.weight,
    }


def main() -> int:
    import torch
    from safetensors.torch import save_file

    from studio.manager import PipelineManager
    from studio.registry import HashCache, Registry
    from studio.sdxl.demo import (
        SDXL_CLIP,
        SDXL_CLIP_2,
        SDXL_UNET,
        SDXL_VAE,
        SDXL_VOCAB,
        build_random_pipeline,
    )
    from studio.sdxl.sgm_keys import pipeline_to_single_file

    t = time.time()
    root = Path(tempfile.mkdtemp(prefix="full-sdxl-"))
    try:
        pipe = build_random_pipeline(SDXL_UNET, SDXL_VAE, SDXL_CLIP, SDXL_CLIP_2, vocab_size=SDXL_VOCAB)
        pipe.to(torch.bfloat16)
        ref = {k: v.detach().float().clone() for k, v in probes(pipe).items()}
        state = pipeline_to_single_file(pipe)
        del pipe
        gc.collect()
        (root / "models" / "checkpoints").mkdir(parents=True)
        path = root / "models" / "checkpoints" / "sdxl-random.safetensors"
        save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(path))
        del state
        gc.collect()
        print(f"built and saved in {time.time() - t:.0f} s: {path.stat().st_size / 2**30:.2f} GiB", flush=True)

        manager = PipelineManager(Registry(root / "models", HashCache(root / "hashes.json")), "cpu", 64 * 2**30)
        loaded = manager.pipeline("sdxl-random")
        print(f"loaded offline in {time.time() - t:.0f} s", flush=True)
        worst = 0.0
        for name, weight in probes(loaded).items():
            diff = float((weight.detach().float() - ref[name]).abs().max())
            worst = max(worst, diff)
            print(f"{name:24} max |diff| {diff:.2e}")
        ids = loaded.tokenizer("a photo of a cat").input_ids
        print("tokenizer ids", ids)
        with torch.inference_mode():
            image = loaded("a photo of a cat", num_inference_steps=1, width=256, height=256, guidance_scale=1.0,
                           output_type="np").images[0]
        ok = worst < 1e-6 and ids == [49406, 320, 1125, 539, 320, 2368, 49407] and image.shape == (256, 256, 3)
        print(f"one step at 256 px: {image.shape}; {'OK' if ok else 'FAILED'} after {time.time() - t:.0f} s")
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
