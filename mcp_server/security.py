"""HTTP guards for every route (MCP, REST, dashboard): bearer token and Host-header allowlist.

The SDK's transport security protects only its own MCP endpoints; this middleware applies
the same DNS-rebinding rule and an optional shared token to the REST routes and dashboard too.
``/health`` stays open so container health checks need no secret.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
OPEN_PATHS = frozenset({"/health"})


def local_host_patterns() -> list[str]:
    return [f"{h}:*" for h in LOCAL_HOSTS] + list(LOCAL_HOSTS)


def host_allowed(host: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.endswith(":*"):
            base = p[:-2]
            if host == base or (host.startswith(base + ":") and host[len(base) + 1:].isdigit()):
                return True
        elif host == p:
            return True
    return False


class GuardMiddleware:
    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: list[str] | None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts  # None = any Host (bound to a public interface on purpose)

    async def _reject(self, send: Send, status: int, detail: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and not host_allowed(headers.get("host", ""), self.allowed_hosts):
            await self._reject(send, 421, "Host header not allowed (DNS-rebinding protection)")
            return
        if self.token and scope.get("path") not in OPEN_PATHS:
            given = headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else ""
            if not given:  # the dashboard's <img> tags cannot send headers
                given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await self._reject(send, 401, "missing or wrong bearer token",
                                   [(b"www-authenticate", b'Bearer realm="adgen"')])
                return
        await self.app(scope, receive, send)
