"""The grid's confidence and the user's override, as the CLI, MCP and the core give them (issue 14)."""

from __future__ import annotations

import asyncio

import numpy as np
from fastmcp import Client
from PIL import Image
from scipy import ndimage

from studio.frontends.cli import main
from studio.frontends.mcp import build_mcp
from tests.pixel_synth import make_sprite, render


def smooth_noise(path):
    """A photo-like image: no pixel grid anywhere."""
    rng = np.random.default_rng(5)
    field = ndimage.gaussian_filter(rng.random((256, 256, 3)), (6, 6, 0))
    Image.fromarray((255 * (field - field.min()) / np.ptp(field)).astype(np.uint8)).save(path)
    return path


def test_cli_says_when_the_grid_is_uncertain_and_takes_a_cell(tmp_path, capsys):
    assert main(["pixelate", str(smooth_noise(tmp_path / "photo.png")), str(tmp_path / "o.png")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "--cell" in err
    sprite = tmp_path / "sprite.png"
    Image.fromarray(render(make_sprite(12, 10, 4, 1), cell=12.0)).save(sprite)
    assert main(["pixelate", str(sprite), str(tmp_path / "forced.png"), "--cell", "24"]) == 0
    assert Image.open(tmp_path / "forced.png").size[0] < 12  # a cell twice the real one halves the sprite
    assert main(["pixelate", str(sprite), str(tmp_path / "x.png"), "--offset", "3,0"]) == 2
    assert "offset needs a cell size" in capsys.readouterr().err


def test_mcp_reports_confidence_and_takes_a_cell(app, tmp_path):
    photo = smooth_noise(tmp_path / "photo.png")
    sprite = tmp_path / "sprite.png"
    Image.fromarray(render(make_sprite(12, 10, 4, 1), cell=12.0)).save(sprite)

    async def go():
        async with Client(build_mcp(app)) as c:
            unsure = (await c.call_tool("pixelate_image", {"image": str(photo)})).structured_content
            sure = (await c.call_tool("pixelate_image", {"image": str(sprite)})).structured_content
            forced = (await c.call_tool("pixelate_image", {"image": str(sprite), "cell": "12"})).structured_content
            return unsure, sure, forced

    unsure, sure, forced = asyncio.run(go())
    assert unsure["note"] and unsure["confidence"] < sure["confidence"]
    assert sure["note"] is None and (sure["width"], sure["height"]) == (12, 10)
    assert forced["cell"] == [12.0, 12.0] and (forced["width"], forced["height"]) == (12, 10)


def test_a_clean_up_keeps_the_lattice_it_found_drawn_over_the_input(studio, tmp_path):
    from pipelines.pixel import PixelParams

    sprite = tmp_path / "knight.png"
    Image.fromarray(render(make_sprite(12, 10, 4, 1), cell=12.0)).save(sprite)
    out, res = studio.clean_up(sprite, PixelParams())
    overlay = Image.open(out.with_name("lattice.png")).convert("RGBA")
    assert overlay.size == Image.open(sprite).size
    rgb = np.asarray(overlay)[..., :3].astype(int)
    magenta = (rgb[..., 0] > 180) & (rgb[..., 1] < 100) & (rgb[..., 2] > 180)
    assert magenta.mean() > 0.01  # the grid lines are drawn (magenta, half transparent)
