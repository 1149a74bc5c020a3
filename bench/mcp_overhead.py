"""Benchmark: what an MCP tool call costs on top of the same core call (goal: <= 50 ms).

    .venv/bin/python bench/mcp_overhead.py [--repeats 15]

Starts the real studio app (FastAPI + Gradio + MCP at /mcp/) under uvicorn on 127.0.0.1, then times the same
work two ways, interleaved: `generate_sprite` through a fastmcp Client over streamable HTTP vs
`Studio.generate` directly; and `list_models` both ways. Uses the tiny demo model on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mcp_overhead.json")
    args = ap.parse_args()

    import httpx
    import torch
    import uvicorn
    from fastmcp import Client

    from pipelines.pixel import PixelParams
    from studio.frontends.assemble import App
    from studio.frontends.server import create_app
    from studio.params import GenerateParams
    from studio.settings import Settings

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="dgxp-mcp-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = App(Settings(data_dir=work / "data", models_dir=work / "models", port=port))
    studio = app.studio
    server = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            httpx.get(url + "api/health", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.1)

    params = GenerateParams(prompt="a red slime", seed=1, steps=2, pixel=PixelParams(size=(8, 8), size_mode="exact"))
    tool_args = {"prompt": "a red slime", "seed": 1, "steps": 2, "size": "8x8", "negative": ""}

    async def run() -> dict:
        async with Client(url + "mcp/") as c:
            await c.call_tool("generate_sprite", tool_args)  # warm: model load, first requests
            studio.generate(params)
            gen_mcp, gen_core, list_mcp, list_core = [], [], [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                await c.call_tool("generate_sprite", tool_args)
                gen_mcp.append(time.perf_counter() - t)
                t = time.perf_counter()
                studio.generate(params)
                gen_core.append(time.perf_counter() - t)
                t = time.perf_counter()
                await c.call_tool("list_models", {})
                list_mcp.append(time.perf_counter() - t)
                t = time.perf_counter()
                studio.models()
                list_core.append(time.perf_counter() - t)
        med = statistics.median
        return {
            "repeats": args.repeats,
            "generate_sprite": {"mcp_s": med(gen_mcp), "core_s": med(gen_core),
                                "overhead_ms": (med(gen_mcp) - med(gen_core)) * 1000},
            "list_models": {"mcp_s": med(list_mcp), "core_s": med(list_core),
                            "overhead_ms": (med(list_mcp) - med(list_core)) * 1000},
        }

    res = asyncio.run(run())
    server.should_exit = True
    studio.close()
    g, lm = res["generate_sprite"], res["list_models"]
    print(f"median of {args.repeats}, tiny demo model on CPU, 2 steps, one thread")
    print(f"{'tool':18} {'via MCP':>10} {'core call':>10} {'overhead':>10}  goal")
    print(f"{'generate_sprite':18} {g['mcp_s'] * 1000:>8.1f}ms {g['core_s'] * 1000:>8.1f}ms {g['overhead_ms']:>8.1f}ms  <= 50 ms")
    print(f"{'list_models':18} {lm['mcp_s'] * 1000:>8.1f}ms {lm['core_s'] * 1000:>8.1f}ms {lm['overhead_ms']:>8.1f}ms  <= 50 ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
