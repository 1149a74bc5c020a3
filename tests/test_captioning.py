"""Captioners: the structured (weight-free) caption, and a real transformers model loaded from a local folder.

The transformers test builds a tiny random-weight BLIP with its real classes, saves it with
`save_pretrained` and loads it back through `TransformersCaptioner` (offline): the caption is gibberish,
but it is produced by the real model through the real loading code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from tests.pixel_synth import make_sprite  # noqa: E402
from training.captioning import (  # noqa: E402
    Captioner,
    CaptionerError,
    StructuredCaptioner,
    TransformersCaptioner,
    colour_name,
    find_captioners,
    name_words,
    size_class,
)


def red_slime() -> np.ndarray:
    """A 32x32 red blob with a dark red shade, black outline and a white eye on transparency."""
    a = np.zeros((32, 32, 4), np.uint8)
    yy, xx = np.mgrid[0:32, 0:32]
    body = ((xx - 15.5) / 13) ** 2 + ((yy - 18) / 11) ** 2 <= 1
    edge = body & ~(((xx - 15.5) / 12) ** 2 + ((yy - 18) / 10) ** 2 <= 1)
    a[body] = (220, 30, 30, 255)
    a[body & (yy > 22)] = (130, 15, 20, 255)
    a[edge] = (0, 0, 0, 255)
    a[14:17, 10:13] = (255, 255, 255, 255)
    return a


def test_structured_caption_of_a_red_sprite() -> None:
    cap = StructuredCaptioner(trigger="slm").caption(Image.fromarray(red_slime()), name="red_slime-idle_01.png")
    assert cap == ("slm, red slime idle, pixel art sprite, 32x32, small, transparent background, "
                   "4 colours: red, dark red, black, white")
    assert isinstance(StructuredCaptioner(), Captioner)


def test_structured_caption_measures_the_native_sprite() -> None:
    up = np.repeat(np.repeat(red_slime(), 8, 0), 8, 1)  # 256x256 fake pixel art
    cap = StructuredCaptioner().caption(Image.fromarray(up))
    assert cap.startswith("pixel art sprite, 32x32, small, transparent background, 4 colours: red")


def test_sprite_on_a_flat_background_names_it() -> None:
    a = red_slime()
    a[a[..., 3] == 0] = (40, 80, 220, 255)  # blue backdrop
    cap = StructuredCaptioner().caption(Image.fromarray(a))
    assert cap == "pixel art sprite, 32x32, small, blue background, 4 colours: red, dark red, black, white"


def test_kind_guess_tile_and_sheet() -> None:
    tile = make_sprite(16, 16, 4, seed=2, opaque=True)
    assert "pixel art tile, 16x16, tiny, opaque background" in StructuredCaptioner().caption(Image.fromarray(tile))
    sheet = np.zeros((32, 64, 4), np.uint8)
    for r in range(2):
        for c in range(4):
            sheet[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = make_sprite(16, 16, 3, seed=r * 4 + c)
    assert "pixel art sheet, 64x32, medium, transparent background" in StructuredCaptioner().caption(Image.fromarray(sheet))


def test_names_colours_sizes() -> None:
    assert name_words("red_slime-idle_01.png") == "red slime idle"
    assert name_words("enemies/BlueBat_v2 (copy).PNG") == "blue bat"
    assert name_words("sheet.png#r0c3") == "sheet"
    assert [colour_name(c) for c in ((255, 0, 0), (120, 10, 10), (0, 0, 0), (255, 255, 255), (0, 0, 120),
                                     (0, 128, 128), (128, 128, 128), (240, 140, 20))] == [
        "red", "dark red", "black", "white", "navy", "teal", "grey", "orange"]
    assert [size_class(s, s) for s in (16, 32, 64, 128)] == ["tiny", "small", "medium", "large"]


def test_bad_captioner_folders_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(CaptionerError, match="nope"):
        TransformersCaptioner(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionerError, match=r"empty has no config.json"):
        TransformersCaptioner(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(CaptionerError, match="broken"):
        TransformersCaptioner(tmp_path / "broken")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"model_type": "blip"}))
    cap = TransformersCaptioner(tmp_path / "noweights")  # the folder looks fine until it is loaded
    with pytest.raises(CaptionerError, match="could not load the captioner in .*noweights"):
        cap.caption(Image.fromarray(red_slime()))


def _tiny_blip(dst: Path, work: Path) -> None:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers import BlipImageProcessorPil as BlipImageProcessor  # PIL backend: no torchvision here

    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "red", "slime", "sprite"]
    (work / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(work / "vocab.txt"))
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                         pad_token_id=0, encoder_hidden_size=32),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    BlipForConditionalGeneration(cfg).save_pretrained(dst)
    proc.save_pretrained(dst)


def test_tiny_blip_round_trip_through_find_captioners(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _tiny_blip(models / "captioners" / "tiny-blip", tmp_path)
    (models / "captioners" / "not-a-model").mkdir()
    errors: list[str] = []
    found = find_captioners(models, errors)
    assert sorted(found) == ["structured", "tiny-blip"]
    assert "not-a-model" in errors[0]
    cap = found["tiny-blip"]
    assert isinstance(cap, TransformersCaptioner) and cap.name == "tiny-blip" and isinstance(cap, Captioner)
    text = cap.caption(Image.fromarray(red_slime()))
    assert isinstance(text, str) and text and text == cap.caption(Image.fromarray(red_slime()))
    assert type(cap._model).__name__ == "BlipForConditionalGeneration"


def test_find_captioners_without_folder(tmp_path: Path) -> None:
    assert list(find_captioners(tmp_path)) == ["structured"]


def test_tiny_vision_encoder_decoder_round_trip(tmp_path: Path) -> None:
    """A ViT encoder + GPT-2 decoder (the VisionEncoderDecoderModel captioners) with a word-level tokenizer
    built here, without the hub."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )
    from transformers import ViTImageProcessorPil as ViTImageProcessor  # PIL backend: no torchvision here

    torch.manual_seed(0)
    words = ["<pad>", "<s>", "</s>", "<unk>", "red", "slime", "sprite", "pixel", "art"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    enc = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                    image_size=32, patch_size=8)
    dec = GPT2Config(vocab_size=len(words), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                     add_cross_attention=True, is_decoder=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 1, 0, 2
    model = VisionEncoderDecoderModel(cfg)
    # random weights may stop at once or repeat a special token; both are settings real models ship
    model.generation_config.min_new_tokens = 3
    model.generation_config.suppress_tokens = [0, 1, 3]
    dst = tmp_path / "captioners" / "tiny-ved"
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(dst)

    cap = find_captioners(tmp_path)["tiny-ved"]
    text = cap.caption(Image.fromarray(red_slime()))
    assert type(cap._model).__name__ == "VisionEncoderDecoderModel"
    assert isinstance(text, str) and len(text.split()) >= 3
    assert set(text.split()) <= set(words[4:])
