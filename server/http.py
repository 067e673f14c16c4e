"""The MCP server over streamable HTTP: Host and Origin checked against DNS rebinding, a bearer token when one is
configured, and idle sessions ended."""

from __future__ import annotations

import hmac
import logging

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from specmem.indexer.config import Config

log = logging.getLogger("specmem.server")
LOCAL = ("127.0.0.1", "localhost", "::1")
# Each open session holds about 40 KB; abandoned ones end after `http_session_idle`, and this bounds them
# meanwhile (a new session beyond it is answered 503 until one ends). A few clients use a session each.
MAX_SESSIONS = 1000


def http_app(
    server: MCPServer,
    host: str,
    port: int,
    token: str | None,
    origins: tuple[str, ...] = (),
    session_idle: float = 1800.0,
) -> ASGIApp:
    """The streamable HTTP app: Host and Origin checked against DNS rebinding, and a bearer token if set."""
    local = ["127.0.0.1", "localhost", "[::1]"]
    names = local if host in LOCAL else [*local, host]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:{port}" for n in names] + names,
        allowed_origins=[f"http://{n}:{port}" for n in names] + list(origins),
    )
    app: ASGIApp = server.streamable_http_app(
        transport_security=security, host=host, session_idle_timeout=session_idle, max_sessions=MAX_SESSIONS
    )
    return BearerToken(app, token) if token else app


class BearerToken:
    """Refuse every HTTP request that does not carry `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = Headers(scope=scope).get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                response = PlainTextResponse(
                    "missing or wrong bearer token: send Authorization: Bearer <SPECMEM_HTTP_TOKEN>",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def run(server: MCPServer, config: Config, host: str, port: int) -> None:
    """Serve until the process is stopped."""
    import uvicorn

    if host not in LOCAL and not config.http_token:
        log.warning(
            "serving on %s without SPECMEM_HTTP_TOKEN: anyone who can reach it can read the memories", host
        )
    app = http_app(server, host, port, config.http_token, config.http_origins, config.http_session_idle)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
