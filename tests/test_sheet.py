"""Animation sheets on the real tiny SDXL: both strategies give uniform native frames on one palette, a sheet
whose cells are the frames, a GIF with the right frames and timing, progress over the whole sheet, cancel."""

from __future__ import annotations

import io
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.render import Cancelled, img2img_pipeline, img2img_steps  # noqa: E402
from pipelines.sheet import (  # noqa: E402
    SheetSpec,
    generate_sheet,
    gif_duration_ms,
    make_gif,
    pose_prompts,
    strip_frame_size,
)
from studio.params import GenerateParams  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    from tests.conftest import fresh_tiny_pipe

    return fresh_tiny_pipe()


def job(**kw) -> GenerateParams:
    return GenerateParams(prompt="a knight", seed=kw.pop("seed", 3), steps=kw.pop("steps", 3), width=64,
                          height=64, **kw)


def colours(images) -> set[tuple[int, int, int]]:
    px = np.concatenate([np.asarray(im.convert("RGBA")).reshape(-1, 4) for im in images])
    return {tuple(c) for c in px[px[:, 3] >= 128][:, :3]}


@pytest.mark.parametrize("strategy", ["strip", "img2img"])
def test_walk_sheet(pipe, strategy):
    spec = SheetSpec(animation="walk", frames=4, frame_size=(16, 24), strategy=strategy, colors=8, fps=8)
    progress: list[tuple[int, int]] = []
    out = generate_sheet(pipe, job(), spec, on_step=lambda d, n: progress.append((d, n)))

    assert out.strategy == strategy and out.animation == "walk" and out.fps == 8 and out.seeds == [3] * 4
    assert len(out.frames) == len(out.raws) == 4
    assert all(f.size == (16, 24) and f.mode == "RGBA" for f in out.frames)
    assert out.sheet.size == (4 * 16, 24)
    sheet = np.asarray(out.sheet)
    for i, frame in enumerate(out.frames):
        assert np.array_equal(sheet[:, i * 16 : (i + 1) * 16], np.asarray(frame))
    used = colours(out.frames)
    assert 1 < len(used) <= 8 and used <= {tuple(c) for c in out.palette}
    assert len({np.asarray(f).tobytes() for f in out.frames}) > 1  # the frames differ

    gif = Image.open(io.BytesIO(out.gif))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["loop"] == 0
    assert gif.info["duration"] == gif_duration_ms(8) == 120 and gif.size == (4 * 16, 4 * 24)

    totals = {n for _, n in progress}
    assert len(totals) == 1
    done = [d for d, _ in progress]
    assert done == sorted(done) and done[-1] == totals.pop()
    if strategy == "img2img":
        assert len(done) == 3 + 3 * img2img_steps(3, 0.45)[1] and done == list(range(1, len(done) + 1))
        assert [p.split(", ")[-1] for p in out.prompts] == ["left foot forward", "passing pose",
                                                           "right foot forward", "passing pose"]
        assert out.raws[0].size == out.raws[1].size == (64, 64)
    else:
        assert done == [1, 2, 3] and "sprite sheet, 4 frames, walk cycle" in out.prompts[0]


@pytest.mark.parametrize("strategy", ["strip", "img2img"])
def test_cancel_mid_sheet(pipe, strategy):
    seen = []

    def cancel(done, total):
        seen.append((done, total))
        if done == total - 1:  # img2img: inside the last frame; strip: inside the one render
            raise Cancelled()

    with pytest.raises(Cancelled):
        generate_sheet(pipe, job(), SheetSpec(strategy=strategy), on_step=cancel)
    done, total = seen[-1]
    assert done == total - 1 and len(seen) == total - 1  # it stopped there: no further step was reported


def test_img2img_shares_the_resident_modules(pipe):
    i2i = img2img_pipeline(pipe)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler", "tokenizer"):
        assert getattr(i2i, name) is getattr(pipe, name)
    assert pipe.unet.dtype == torch.float32


def test_same_seed_same_sheet(pipe):
    spec = SheetSpec(frames=2, frame_size=(16, 16), strength=0.5)
    a, b = generate_sheet(pipe, job(steps=2), spec), generate_sheet(pipe, job(steps=2), spec)
    assert np.array_equal(np.asarray(a.sheet), np.asarray(b.sheet))


def test_unresolved_params_are_refused(pipe):
    with pytest.raises(ValueError, match="resolved"):
        generate_sheet(pipe, GenerateParams(prompt="x"), SheetSpec())


# ---------------------------------------------------------------------------------------- pure parts
def test_pose_prompts():
    assert pose_prompts("walk", 4) == ["left foot forward", "passing pose", "right foot forward", "passing pose"]
    assert pose_prompts("walk", 8)[4:] == pose_prompts("walk", 4)
    assert pose_prompts("walk", 2) == ["left foot forward", "right foot forward"]
    death = pose_prompts("death", 2)
    assert death == ["staggering", "lying on the ground"]  # a one-shot keeps its first and last pose
    assert pose_prompts("Attack", 6)[0] == "ready stance" and pose_prompts("attack", 6)[-1] == "follow-through"
    assert pose_prompts("dance", 3) == ["dance frame 1 of 3", "dance frame 2 of 3", "dance frame 3 of 3"]


def test_img2img_steps_and_strip_size():
    assert img2img_steps(30, 0.45) == (30, 13)
    assert img2img_steps(2, 0.45) == (3, 1)  # diffusers refuses zero denoising steps
    assert strip_frame_size(64, 64, 4) == (64, 64)
    assert strip_frame_size(1024, 1024, 4) == (1024, 1024)
    w, h = strip_frame_size(1024, 768, 8)
    assert 8 * w <= 4096 and w % 8 == 0 and h % 8 == 0 and abs(w / h - 1024 / 768) < 0.05


def test_gif_keeps_exact_colours_and_transparency():
    frames = []
    for i in range(3):
        a = np.zeros((8, 8, 4), np.uint8)
        a[2:6, i : i + 3] = (200, 30 + i * 50, 40, 255)
        frames.append(Image.fromarray(a, "RGBA"))
    gif = Image.open(io.BytesIO(make_gif(frames, fps=10, scale=2)))
    assert gif.n_frames == 3 and gif.info["duration"] == 100
    for i, frame in enumerate(frames):
        gif.seek(i)
        got = np.asarray(gif.convert("RGBA"))
        want = np.asarray(frame.resize((16, 16), Image.Resampling.NEAREST))
        assert np.array_equal(got[..., 3] > 0, want[..., 3] > 0)  # no trail of the previous frame
        assert np.array_equal(got[want[..., 3] > 0], want[want[..., 3] > 0])


def test_sheet_spec_round_trip_and_validation():
    spec = SheetSpec(animation="attack", frames=6, frame_size=(48, 32), strategy="strip", strength=0.3,
                     fps=12, colors=None)
    assert SheetSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["frame_size"] == [48, 32]
    assert SheetSpec(animation="dance").animation == "dance"
    for kw, msg in [
        ({"frames": 1}, "frames"),
        ({"frames": 9}, "frames"),
        ({"frames": 4.0}, "frames"),
        ({"strategy": "video"}, "strategy"),
        ({"strength": 0.01}, "strength"),
        ({"strength": 0.99}, "strength"),
        ({"strength": True}, "strength"),
        ({"animation": ""}, "animation"),
        ({"animation": "walk cycle"}, "animation"),
        ({"frame_size": (2, 32)}, "frame_size"),
        ({"frame_size": "32"}, "frame_size"),
        ({"fps": 0}, "fps"),
        ({"colors": 1}, "colors"),
        ({"palette": "no-such-palette"}, "palette"),
    ]:
        with pytest.raises(ValueError, match=msg):
            SheetSpec(**kw)
    with pytest.raises(ValueError, match="unknown"):
        SheetSpec.from_dict({"frames": 4, "speed": 2})
