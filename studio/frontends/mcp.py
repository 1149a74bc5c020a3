"""The MCP server: AI assistants generate, clean up and deploy sprites through the running studio.

Tools call the same core functions as the UI and CLI, on the same resident models, queue and DuckDB file: the
server is mounted inside the studio's FastAPI app at `/mcp/` (streamable HTTP), never run as a second copy.
Long tools report MCP progress per denoising step and return only after the job finished, with real paths.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.types import Image as McpImage
from pydantic import Field

from pipelines.pixel import PixelParams
from pipelines.sheet import SheetSpec
from pipelines.tiles import TileSpec
from studio import limits as L
from studio.core import JobFailed, NotFound
from studio.features.deploy import deploy
from studio.features.export import ExportError
from studio.features.workflows import run_workflow as queue_workflow
from studio.features.workflows import workflows_for
from studio.files import is_file
from studio.frontends.assemble import App
from studio.frontends.auth import BearerAuth, required_token
from studio.params import GenerateParams, parse_loras

INSTRUCTIONS = """DGX-Pixels Studio makes pixel-art game sprites on the user's own GPU.
Typical flow: list_models / list_loras -> generate_sprite (returns the PNG and its path) -> deploy_to_bevy
(writes it into the game's assets folder). pixelate_image cleans up any existing image into an exact sprite."""


def _png_content(path: Path) -> McpImage:
    return McpImage(data=Path(path).read_bytes(), format="png")


def build_mcp(app: App) -> FastMCP:
    """The tools, resources and prompt, over `app`; argument bounds come from `studio.limits`."""
    studio = app.studio
    mcp = FastMCP("DGX-Pixels Studio", instructions=INSTRUCTIONS)

    async def wait_with_progress(job, ctx: Context | None) -> None:
        last = -1
        try:
            while not job.finished.is_set():
                if ctx is not None and job.step != last and job.total:
                    last = job.step
                    await ctx.report_progress(job.step, job.total, f"step {job.step}/{job.total}")
                await asyncio.to_thread(job.finished.wait, 0.05)  # wakes the moment the job ends
        except asyncio.CancelledError:  # the client went away: don't leave its job holding the GPU
            studio.queue.cancel(job.id)
            raise
        if ctx is not None and job.total:
            await ctx.report_progress(job.total, job.total, job.status)

    @mcp.tool
    async def generate_sprite(
        prompt: Annotated[str, Field(description="What to draw, e.g. 'red slime monster, game sprite'")],
        size: Annotated[str, Field(description="Native sprite size WxH, e.g. 32x32")] = "32x32",
        model: Annotated[str | None, Field(description="Checkpoint name (list_models); default: the studio's")] = None,
        loras: Annotated[dict[str, float] | None, Field(description="LoRA name -> weight (list_loras)")] = None,
        seed: Annotated[int | None, Field(description="Seed; omit for random (the one used is returned)")] = None,
        colors: Annotated[int | None, Field(description="Palette size; omit for automatic", ge=L.MIN_COLORS,
                                            le=L.MAX_COLORS)] = None,
        palette: Annotated[str | None, Field(description="Named palette (pico-8, gameboy, endesga-32 ...)")] = None,
        transparent: Annotated[bool, Field(description="Make the background transparent")] = True,
        count: Annotated[int, Field(description="How many sprites (seeds seed..seed+count-1); the studio's "
                                                "own cap (max_count) may be lower", ge=1, le=L.MAX_COUNT)] = 1,
        steps: Annotated[int, Field(description="Denoising steps", ge=1, le=L.MAX_STEPS)] = 30,
        negative: Annotated[str, Field(description="What to avoid")] = "blurry, text, watermark",
        sampler: Annotated[str, Field(description="default, Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, "
                                                  "DPM++ SDE Karras, DDIM, UniPC, LCM or Lightning")] = "default",
        schedule: Annotated[str, Field(description="automatic, karras, exponential, sgm_uniform, trailing")]
        = "automatic",
        fast: Annotated[bool, Field(description="Fast preview: the few-step settings of an LCM/Lightning/Turbo "
                                                "LoRA or checkpoint")] = False,
        ctx: Context | None = None,
    ) -> ToolResult:
        """Generate pixel-art sprite(s) on the studio's GPU. Returns the PNGs, their file paths, the seeds used
        and the job id, only after the job has finished."""
        try:
            params = GenerateParams(
                prompt=prompt, negative=negative, model=model, seed=seed, steps=steps, count=count,
                loras=parse_loras(loras), sampler=sampler, schedule=schedule, fast=fast,
                pixel=PixelParams.from_user(size, colors, palette, "auto" if transparent else "keep",
                                            size_mode="exact"),
            )
            job = studio.submit_generate(params, source="mcp")
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return await finish(job, ctx)

    async def finish(job, ctx: Context | None) -> ToolResult:
        """Wait for the job with progress; return its images as MCP image content plus a JSON summary."""
        await wait_with_progress(job, ctx)
        try:
            result = studio.result(job)
        except JobFailed as exc:
            raise ToolError(f"job {job.id} {job.status}: {exc}") from None
        info = {
            "job_id": result.job_id,
            "kind": job.kind,
            "model": result.params.model,
            "images": [{"path": str(im.path), "seed": im.seed, "width": im.width, "height": im.height}
                       for im in result.images],
            "files": {name: str(path) for name, path in result.extras.items()},
            **_jsonable(result.info),
        }
        pngs = [im.path for im in result.images]
        if "sheet.png" in result.extras:
            pngs = [result.extras["sheet.png"]]
        return ToolResult(content=[*(_png_content(p) for p in pngs[:16]), json.dumps(info)],
                          structured_content=info)

    @mcp.tool
    async def generate_sprite_sheet(
        prompt: Annotated[str, Field(description="The character, e.g. 'a knight in silver armour, side view'")],
        animation: Annotated[str, Field(description="idle, walk, run, attack, jump, hurt, death, or any word")] = "walk",
        frames: Annotated[int, Field(description="Frames in the animation", ge=L.MIN_FRAMES, le=L.MAX_FRAMES)] = 4,
        size: Annotated[str, Field(description="Native frame size WxH")] = "32x32",
        strategy: Annotated[str, Field(description="img2img (frame 0, then poses) or strip (one render)")] = "img2img",
        fps: Annotated[float, Field(ge=L.MIN_FPS, le=L.MAX_FPS)] = 8.0,
        colors: Annotated[int | None, Field(ge=L.MIN_COLORS, le=L.MAX_COLORS)] = 16,
        seed: int | None = None,
        steps: Annotated[int, Field(ge=1, le=L.MAX_STEPS)] = 30,
        ctx: Context | None = None,
    ) -> ToolResult:
        """An animation as frames sharing identity, size and ONE palette: returns the sheet PNG (frames in one
        row), the frame paths, a GIF preview path and the job id."""
        try:
            spec = SheetSpec(animation=animation, frames=frames, frame_size=size, strategy=strategy,
                             fps=fps, colors=colors)
            job = studio.submit_sheet(GenerateParams(prompt=prompt, seed=seed, steps=steps), spec, source="mcp")
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return await finish(job, ctx)

    @mcp.tool
    async def generate_tileset(
        prompt: Annotated[str, Field(description="The terrain, e.g. 'grass with small flowers, top-down'")],
        tiles: Annotated[int, Field(description="How many variants", ge=1, le=L.MAX_TILE_VARIANTS)] = 4,
        size: Annotated[str, Field(description="Native tile size WxH")] = "16x16",
        seamless: Annotated[bool, Field(description="Tiles wrap around without seams")] = True,
        colors: Annotated[int | None, Field(ge=L.MIN_COLORS, le=L.MAX_COLORS)] = 16,
        seed: int | None = None,
        steps: Annotated[int, Field(ge=1, le=L.MAX_STEPS)] = 30,
        ctx: Context | None = None,
    ) -> ToolResult:
        """Seamless tile variants in one palette, with a per-tile seam check; returns the tiles and job id."""
        try:
            spec = TileSpec(count=tiles, tile_size=size, seamless=seamless, colors=colors)
            job = studio.submit_tileset(GenerateParams(prompt=prompt, seed=seed, steps=steps), spec, source="mcp")
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return await finish(job, ctx)

    @mcp.tool
    def list_workflows() -> list[dict]:
        """Workflow templates (built in and the user's own) with their placeholders and defaults; a broken
        template file is listed with its error instead."""
        problems: list[str] = []
        flows = workflows_for(studio, problems)
        return [*({"name": w.name, "kind": w.kind, "description": w.description,
                   "values": {k: w.values.get(k) for k in w.placeholders}, "items": list(w.items)}
                  for w in flows.values()),
                *({"name": p.split(":", 1)[0].removesuffix(".toml"), "error": p} for p in problems)]

    @mcp.tool
    async def run_workflow(
        name: Annotated[str, Field(description="A workflow from list_workflows")],
        values: Annotated[dict[str, str] | None, Field(description="Placeholder values, e.g. {'subject': 'a bat'}")]
        = None,
        seed: int | None = None,
        ctx: Context | None = None,
    ) -> ToolResult:
        """Run a workflow template (sprite, item batch, animation sheet or tileset) and return its output."""
        try:
            job = queue_workflow(studio, name, values or {}, source="mcp", generate={"seed": seed} if seed is not None else None)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return await finish(job, ctx)

    @mcp.tool
    def pixelate_image(
        image: Annotated[str, Field(description="Path to an image on the studio machine, or base64 PNG/JPEG data")],
        size: Annotated[str | None, Field(description="Target size WxH; omit to detect the pixel grid")] = None,
        colors: Annotated[int | None, Field(description="Palette size; omit for automatic", ge=L.MIN_COLORS,
                                            le=L.MAX_COLORS)] = None,
        palette: Annotated[str | None, Field(description="Named palette or palette file")] = None,
        cell: Annotated[str | None, Field(description="Force the cell size in input px, e.g. '32' or '31.5x32'")]
        = None,
        offset: Annotated[str | None, Field(description="With cell: a cell boundary at 'X,Y' input px")] = None,
    ) -> ToolResult:
        """Clean up any image (from any generator) into an exact native-resolution sprite. The answer says how
        sure the grid is (`confidence` 0..1, and a `note` when it is not: then force `size` or `cell`)."""
        with tempfile.TemporaryDirectory() as tmp:
            src = _image_input(image, Path(tmp))
            try:
                params = PixelParams.from_user(size, colors, palette, cell=cell, offset=offset)
                out, res = studio.clean_up(src, params, source_label="mcp")
            except ValueError as exc:
                raise ToolError(str(exc)) from None
        w, h = res.image.size
        info = {"path": str(out), "width": w, "height": h, "colors": len(res.palette),
                "cell": list(res.cell), "confidence": round(res.confidence, 3), "note": res.note}
        return ToolResult(content=[_png_content(out), json.dumps(info)], structured_content=info)

    @mcp.tool
    def deploy_to_bevy(
        source: Annotated[str, Field(description="A job id, or the path of a sprite PNG on the studio machine")],
        assets_dir: Annotated[str, Field(description="The game's assets/ folder (must be inside a project root)")],
        name: Annotated[str, Field(description="Asset name: lowercase letters, digits, - and _")],
        kind: Annotated[str, Field(description="auto (from the job), sprite, sheet or tileset")] = "auto",
    ) -> dict:
        """Write a sprite, sheet or tileset into a Bevy project's assets folder (atomically), record it in
        assets/sprites/manifest.json, and return the files written and a Rust snippet that loads it."""
        roots = studio.settings.project_roots
        if not roots:
            raise ToolError("no project roots are configured: set project_roots in studio.toml "
                            "(or DGXP_PROJECT_ROOTS) to the folders that hold your games")
        try:
            res = deploy(studio, source, Path(assets_dir), name, kind, allowed_roots=roots)
        except ExportError as exc:
            raise ToolError(str(exc)) from None
        return {"files": [str(f) for f in res.files], "asset_path": res.asset_path,
                "bevy_snippet": res.bevy_snippet}

    @mcp.tool
    def list_models() -> list[dict]:
        """SDXL checkpoints the studio can use (diffusers folders and single .safetensors files)."""
        return studio.models()

    @mcp.tool
    def list_loras() -> list[dict]:
        """LoRAs in the studio's loras folder, with trigger words from their metadata."""
        return studio.loras()

    @mcp.tool
    def get_job(job_id: str) -> dict:
        """Status, progress, params and images of one job."""
        try:
            return _jsonable(studio.job(job_id))
        except NotFound as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool
    def cancel_job(job_id: str) -> dict:
        """Cancel a queued or running job (a running one stops at its next denoising step)."""
        job = studio.queue.get(job_id)
        if job is None:
            raise ToolError(f"no active job {job_id!r}")
        cancelled = studio.queue.cancel(job_id)
        return {"job_id": job_id, "cancel_requested": cancelled, "status": job.status}

    @mcp.tool
    def search_history(
        text: Annotated[str, Field(description="Words of the prompt; empty for the newest")] = "",
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> list[dict]:
        """Past sprites, newest first: prompt, seed, path, size and job id."""
        return [
            {"job_id": r["job_id"], "prompt": r["prompt"], "seed": r["seed"], "path": r["path"],
             "width": r["width"], "height": r["height"]}
            for r in studio.history(text, limit)
        ]

    @mcp.resource("studio://models", mime_type="application/json")
    def models_resource() -> str:
        """Checkpoints and LoRAs available in the studio."""
        return json.dumps({"checkpoints": studio.models(), "loras": studio.loras()}, indent=2)

    @mcp.resource("studio://history/{job_id}", mime_type="application/json")
    def job_resource(job_id: str) -> str:
        """One job: params, status and image paths."""
        try:
            return json.dumps(_jsonable(studio.job(job_id)), indent=2)
        except NotFound as exc:
            raise ToolError(str(exc)) from None

    @mcp.prompt
    def make_a_game_sprite(subject: str, size: str = "32x32", style: str = "16-bit SNES") -> str:
        """A prompt for asking the assistant to make and deploy a sprite."""
        return (
            f"Make a {size} pixel-art game sprite of {subject} in a {style} style with DGX-Pixels Studio. "
            f"Call generate_sprite with a concise visual prompt (subject, pose, colours, 'pixel art, game sprite'), "
            f"size='{size}', transparent=True and count=4, show me the results, and when I pick one, "
            f"call deploy_to_bevy with a snake_case name."
        )

    return mcp


def _image_input(value: str, tmp: Path) -> Path:
    """A path on this machine, or base64 data (optionally a data: URL) written to a temp file."""
    if is_file(value):  # else it is data (a name too long for a file, NUL bytes ... are not files)
        return Path(value).expanduser()
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(data) > L.MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise ToolError(f"image is larger than {L.MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError("image is neither an existing file path nor valid base64 data") from None
    path = tmp / "upload"
    path.write_bytes(raw)
    return path


def _jsonable(row: dict) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))


def mcp_asgi_app(app: App):
    """The MCP ASGI app to mount at /mcp, and a newly created token to show once (else None)."""
    from starlette.middleware import Middleware

    token, created = required_token(app.settings)
    middleware = [Middleware(BearerAuth, token=token)] if token else None
    return build_mcp(app).http_app(path="/", middleware=middleware), (token if created else None)
