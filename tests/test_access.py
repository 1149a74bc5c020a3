"""Who may call the machine APIs: the jobs API answers this machine only, and the LAN token is compared in
constant time. Requests go through the real ASGI apps with httpx, the client's address chosen per request."""

from __future__ import annotations

import asyncio
import hmac
import secrets

import httpx
import pytest

TOKEN = "s3cret-token-for-tests"


def call(asgi, method: str, path: str, client: str, headers: dict | None = None, json=None) -> httpx.Response:
    """One request to an ASGI app as if it came from the address `client`."""

    async def go():
        transport = httpx.ASGITransport(app=asgi, client=(client, 40123))
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as c:
            return await c.request(method, path, headers=headers, json=json)

    return asyncio.run(go())


@pytest.mark.parametrize("token", [None, TOKEN])
def test_jobs_api_answers_only_loopback(app, token):
    from studio.frontends.rest import rest_app

    api = rest_app(app, token)
    auth = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    body = {"kind": "generate", "params": {"prompt": "x", "steps": 1}}
    for lan in ("192.168.1.20", "10.0.0.7", "203.0.113.9"):  # with the right token too: the API is local only
        for method, path, js in (("GET", "/jobs/nope", None), ("POST", "/jobs", body), ("POST", "/jobs/x/cancel", None),
                                 ("POST", "/train", {"dataset": "x"})):
            reply = call(api, method, path, lan, auth, js)
            assert reply.status_code == 403, (lan, method, path, reply.text)
            assert "only this machine" in reply.json()["detail"]
    assert app.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == 0  # nothing was queued
    for here in ("127.0.0.1", "::1"):
        assert call(api, "GET", "/jobs/nope", here, auth).status_code == 404  # answered: no such job
    if token:
        assert call(api, "GET", "/jobs/nope", "127.0.0.1").status_code == 401  # loopback still needs the token


def test_token_is_compared_in_constant_time(monkeypatch):
    """Every request's Authorization header goes through hmac.compare_digest (never ==), right or wrong,
    whatever its length; only the exact `Bearer <token>` passes."""
    from studio.frontends.auth import BearerAuth

    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    guarded = BearerAuth(ok, TOKEN)
    cases = {f"Bearer {TOKEN}": 200, f"Bearer {TOKEN}x": 401, f"Bearer {TOKEN[:-1]}": 401, "Bearer ": 401,
             f"bearer {TOKEN}": 401, TOKEN: 401, f"Bearer {TOKEN[:-1]}X": 401}
    for header, status in cases.items():
        seen.clear()
        reply = call(guarded, "GET", "/", "192.168.1.20", {"Authorization": header})
        assert reply.status_code == status, header
        assert seen == [(header.encode(), f"Bearer {TOKEN}".encode())], header  # one constant-time comparison
    seen.clear()
    assert call(guarded, "GET", "/", "192.168.1.20").status_code == 401  # no header at all
    assert seen == [(b"", f"Bearer {TOKEN}".encode())]
