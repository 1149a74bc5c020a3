"""The web studio: one FastAPI app with the Gradio UI at `/`, MCP at `/mcp/`, the jobs API at `/api/v1/`,
Prometheus metrics at `/metrics` and health at `/api/health`, all over one assembled `App` (so one queue, one
set of resident models, one DuckDB).

The one module outside `tabs/` that imports Gradio and the tabs. Binds 127.0.0.1 unless LAN mode is asked for,
and LAN mode refuses to start without a password.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from starlette.routing import Mount, Route

from studio import limits
from studio.frontends.assemble import App
from studio.frontends.auth import BearerAuth, required_token, token_file
from studio.frontends.guards import LoginThrottle, McpWithoutSlash, ServeOnlyFromCache
from studio.frontends.mcp import build_mcp, mcp_asgi_app
from studio.frontends.rest import rest_app
from studio.settings import Settings
from tabs import compare as compare_tab
from tabs import dataset as dataset_tab
from tabs import generate as generate_tab
from tabs import metrics as metrics_tab
from tabs import train as train_tab
from tabs.look import CSS, JS

log = logging.getLogger(__name__)

DEMO_BANNER = """**Demo model: generated pictures are noise.** Real now: *Clean up an image* (try a sample), datasets,
Compare, Bevy export and every control; for real sprites put an SDXL checkpoint in `{checkpoints}` (LoRAs in
`{loras}`) and restart."""


def build_ui(app: App) -> gr.Blocks:
    """The tabs. No secret goes into the UI: its config is served to every browser that can log in."""
    studio = app.studio
    with gr.Blocks(title="DGX-Pixels Studio") as ui:
        gr.Markdown("# DGX-Pixels Studio")
        if studio.using_demo_model:
            gr.Markdown(
                DEMO_BANNER.format(checkpoints=studio.settings.checkpoints_dir.resolve(),
                                   loras=studio.settings.loras_dir.resolve()),
                elem_id="demo-banner",
            )
        with gr.Tabs():
            for title, tab in (("Generate", generate_tab), ("Compare", compare_tab), ("Dataset", dataset_tab),
                               ("Train", train_tab), ("Metrics", metrics_tab)):
                with gr.Tab(title, id=title.lower()) as page:
                    tab.build(app, page)
    return ui


def check_bind(settings: Settings) -> None:
    if settings.lan and not settings.password:
        raise ValueError("LAN mode needs a password: set DGXP_PASSWORD or `password` in studio.toml")


def create_app(app: App) -> FastAPI:
    """The whole web studio as one ASGI app (what `serve` runs and the tests drive)."""
    settings = app.settings
    check_bind(settings)
    mcp_app, new_token = mcp_asgi_app(app)
    # no /docs, /redoc or /openapi.json on the outer app: they would answer without the UI's login
    web = FastAPI(title="DGX-Pixels Studio", lifespan=mcp_app.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    web.router.routes.append(Mount("/mcp", app=mcp_app))  # before Gradio's catch-all mount at /
    token = required_token(settings)[0]
    web.router.routes.append(Mount("/api/v1", app=rest_app(app, token)))
    metrics = app.prometheus.asgi()  # the same bearer token as the jobs API and MCP, when one is needed
    web.router.routes.append(Route("/metrics", BearerAuth(metrics, token) if token else metrics,
                                   methods=["GET", "HEAD"]))
    app.benchmarks.mcp = build_mcp  # the MCP overhead benchmark measures this studio's own tools
    web.add_middleware(ServeOnlyFromCache, roots=[Path(get_upload_folder())])
    web.add_middleware(LoginThrottle)
    web.add_middleware(McpWithoutSlash)
    if new_token:
        log.warning("MCP bearer token created (shown once; kept in %s; `dgx-pixels config --show-token` prints "
                    "it): %s", token_file(settings), new_token)
    studio = app.studio

    @web.get("/api/health")
    def health() -> dict:
        return {"ok": True, "demo_model": studio.using_demo_model, "queued": len(studio.queue.active())}

    ui = build_ui(app).queue(default_concurrency_limit=None)
    auth = (settings.username, settings.password) if settings.password else None
    return gr.mount_gradio_app(
        web,
        ui,
        path="",
        auth=auth,
        allowed_paths=[str(settings.data_dir.resolve())],  # what handlers may return (then copied to the cache)
        max_file_size=limits.MAX_UPLOAD_BYTES,
        app_kwargs={"docs_url": None, "redoc_url": None, "openapi_url": None},  # Gradio's own is behind the login
        css=CSS,
        js=JS,
        footer_links=["api"],
    )


def serve(settings: Settings) -> int:
    check_bind(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with App(settings) as app:
        if app.studio.using_demo_model:
            log.warning("no SDXL checkpoint found in %s: running the tiny DEMO model (output is noise)",
                        settings.checkpoints_dir)
        web = create_app(app)
        where = f"http://{'<this-machine>' if settings.lan else settings.host}:{settings.port}/"
        log.info("DGX-Pixels Studio on %s", where)
        uvicorn.run(web, host=settings.bind_host, port=settings.port, log_level="warning")
    return 0
