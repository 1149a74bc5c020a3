"""SDXL base 1.0's diffusers config folder, written from the repo: single-file checkpoints load offline.

`from_single_file` needs the pipeline's layout (model_index.json, each component's config, both tokenizers,
the scheduler) besides the weights; without a folder it fetches stabilityai/stable-diffusion-xl-base-1.0's
from the hub. This writes the same folder from what the repo has: the architecture constants in
`studio.sdxl.demo` (whose parameter counts tests/test_demo_model.py checks) and CLIP's byte-pair merges in
`studio/sdxl/data/` (the tokenizer both SDXL text encoders use; tokenizer_2 pads with "!" as SDXL's does).
The text encoders keep the hub configs' legacy token ids (bos 0, eos 2, pad 1): transformers then pools
at the highest token id, the end-of-text token, as SDXL was trained.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from studio.sdxl.demo import (
    SDXL_CLIP,
    SDXL_CLIP_2,
    SDXL_SCHEDULER,
    SDXL_UNET,
    SDXL_VAE,
    SDXL_VOCAB,
    bytes_to_unicode,
)

BPE_FILE = Path(__file__).with_name("data") / "clip_bpe_simple_vocab_16e6.txt.gz"
COMPONENTS = {
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary, built as CLIP builds it: 256 byte characters, the same with `</w>`, one token per
    merge (the first 48,894 of the file), then the two specials: 49,408 ids."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_sdxl_config(folder: Path) -> Path:
    """Write the config folder at `folder` (atomically: a folder that exists is complete)."""
    import diffusers
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTokenizer

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    version = diffusers.__version__
    _write_json(tmp / "model_index.json", {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": version,
                                           "force_zeros_for_empty_prompt": True, **COMPONENTS})
    for name, cls, arch in (("unet", "UNet2DConditionModel", SDXL_UNET), ("vae", "AutoencoderKL", SDXL_VAE)):
        _write_json(tmp / name / "config.json", {"_class_name": cls, "_diffusers_version": version,
                                                 **json.loads(json.dumps(arch))})
    legacy_ids = dict(vocab_size=SDXL_VOCAB, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    for name, arch, cls in (("text_encoder", SDXL_CLIP, "CLIPTextModel"),
                            ("text_encoder_2", SDXL_CLIP_2, "CLIPTextModelWithProjection")):
        CLIPTextConfig(**arch, **legacy_ids, architectures=[cls]).save_pretrained(tmp / name)
    vocab, merges = clip_vocab_and_merges()
    _write_json(tmp / "vocab.json", vocab)
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"), pad_token=pad,
                      model_max_length=77).save_pretrained(tmp / name)
    (tmp / "vocab.json").unlink()
    (tmp / "merges.txt").unlink()
    EulerDiscreteScheduler(**SDXL_SCHEDULER).save_config(tmp / "scheduler")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder
