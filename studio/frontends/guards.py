"""ASGI guards around the web studio: what it serves, how fast one may guess a password, and `/mcp`.

Why here and not in Gradio: the studio is opened from other machines on a LAN, and Gradio's file route serves
everything under `allowed_paths` (the data folder, so the DuckDB file, the token, run folders, datasets). Every
picture the UI shows is a copy Gradio made in its own cache, so the file route is narrowed to that cache; the
data folder itself is never served by path.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from pathlib import Path
from urllib.parse import unquote

FORBIDDEN = b'{"detail": "file not allowed"}'
TOO_MANY = b'{"detail": "too many failed logins from this address; wait a few minutes"}'


async def _reply(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ServeOnlyFromCache:
    """Gradio's file routes (`/gradio_api/file=…`, `/file=…`) answer only for files inside `roots` (Gradio's
    upload/cache folder), whatever else Gradio would allow."""

    def __init__(self, app, roots: list[Path]):
        self.app = app
        self.roots = [Path(r).resolve() for r in roots]

    def _allowed(self, raw: str) -> bool:
        try:
            path = Path(unquote(raw)).resolve()
        except (OSError, ValueError):
            return False
        return any(path.is_relative_to(root) for root in self.roots)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "file=" in scope["path"]:
            raw = scope["path"].split("file=", 1)[1]
            if raw.startswith(("http://", "https://")) or not self._allowed(raw):
                await _reply(send, 403, FORBIDDEN)
                return
        await self.app(scope, receive, send)


class LoginThrottle:
    """Failed logins (`POST …/login` answered with anything but 200) from one address are slowed down, then
    refused: each failure waits `delay` seconds before its answer, and `limit` failures within `window` seconds
    lock that address out (429) until the window has passed."""

    def __init__(self, app, limit: int = 10, window: float = 300.0, delay: float = 0.5):
        self.app, self.limit, self.window, self.delay = app, limit, window, delay
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        seen = self.failures[client]
        while seen and seen[0] < time.monotonic() - self.window:
            seen.popleft()
        return seen

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        if len(self._recent(client)) >= self.limit:
            await _reply(send, 429, TOO_MANY, [(b"retry-after", str(int(self.window)).encode())])
            return
        status: list[int] = []

        async def watch(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] != 200:
                    self._recent(client).append(time.monotonic())
                    await asyncio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, watch)


class McpWithoutSlash:
    """`/mcp` (the address most MCP clients are given) is answered as `/mcp/`, instead of a 404 or a redirect
    that some clients do not follow for POST."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/mcp":
            scope = {**scope, "path": "/mcp/", "raw_path": b"/mcp/"}
        await self.app(scope, receive, send)
