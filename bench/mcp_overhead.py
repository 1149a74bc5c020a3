"""Benchmark: what an MCP tool call costs on top of the same core call (goal: <= 50 ms).

    .venv/bin/python bench/mcp_overhead.py [--tiny] [--data DIR]

The quick suite's `mcp` benchmark (studio.features.benchmarks): `generate_sprite` and `list_models` through a
fastmcp client on the studio's own MCP tools (in memory: the protocol and tool layer, not the HTTP hop) vs the
same core calls, interleaved.
"""

from __future__ import annotations

import sys

from _suite import main

if __name__ == "__main__":
    sys.exit(main("mcp_overhead", __doc__, "quick", ("mcp",)))
