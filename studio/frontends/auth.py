"""Who may call the studio's machine APIs (MCP at /mcp/, the jobs API at /api/v1/): the bearer token.

The token is made once, kept in the data folder (mode 0600) and compared in constant time. It is needed in
LAN mode, or whenever one is configured; on loopback alone none is needed, as anything that can reach
127.0.0.1 already runs on this machine.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from studio.settings import Settings

UNAUTHORISED = b'{"error": "missing or wrong studio token (Authorization: Bearer ...)"}'


def token_file(settings: Settings) -> Path:
    return settings.data_dir / "mcp_token"


def read_token(settings: Settings) -> str | None:
    """The configured token, else the one in the data folder, else None (what a client of the studio sends)."""
    path = token_file(settings)
    return settings.mcp_token or (path.read_text(encoding="utf-8").strip() if path.is_file() else None)


def load_or_create_token(settings: Settings) -> tuple[str, bool]:
    """The studio's token, created on first use; (token, created now)."""
    token = read_token(settings)
    if token:
        return token, False
    path = token_file(settings)
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token, encoding="utf-8")
    return token, True


def required_token(settings: Settings) -> tuple[str | None, bool]:
    """(the token requests must carry, or None when none is needed; whether it was created just now)."""
    if settings.lan or settings.mcp_token:
        return load_or_create_token(settings)
    return None, False


class BearerAuth:
    """ASGI middleware: every request to the app it wraps needs `Authorization: Bearer <token>`."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": UNAUTHORISED})
                return
        await self.app(scope, receive, send)
