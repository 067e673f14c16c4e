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
from specmem.indexer.errors import ConfigError

log = logging.getLogger("specmem.server")
LOCAL = ("127.0.0.1", "localhost", "::1")
EVERY_INTERFACE = ("0.0.0.0", "::")
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
    names = {"127.0.0.1", "localhost", "::1", host.strip("[]").lower()}
    allowed_origins = {f"http://[{n}]:{port}" if ":" in n else f"http://{n}:{port}" for n in names}
    allowed_origins |= set(origins)
    # The SDK's own check takes a fixed list of hosts; LocalHost also knows the address a request arrived at.
    app: ASGIApp = server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=host,
        session_idle_timeout=session_idle,
        max_sessions=MAX_SESSIONS,
    )
    app = LocalHost(app, names, port, allowed_origins)
    return BearerToken(app, token) if token else app


class LocalHost:
    """Refuse requests a browser could be tricked into sending (DNS rebinding): the Host header must name this
    server (a local name, the bound address, or the address of this machine the connection arrived at, which is
    how a client reaches a server bound to every interface), and an Origin, when present, must be allowed."""

    def __init__(self, app: ASGIApp, names: set[str], port: int, origins: set[str]) -> None:
        self.app, self.names, self.port, self.origins = app, names, port, origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            if not self._host_ok(headers.get("host", ""), scope):
                await PlainTextResponse(
                    "Invalid Host header: reach this server by 127.0.0.1, localhost or this machine's address",
                    status_code=421,
                )(scope, receive, send)
                return
            origin = headers.get("origin")
            if origin and origin not in self.origins:
                await PlainTextResponse(
                    "Invalid Origin header: list the origin in SPECMEM_HTTP_ORIGINS to allow it",
                    status_code=403,
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_ok(self, host: str, scope: Scope) -> bool:
        name, port = host.lower(), None
        if name.startswith("["):  # [::1]:8765
            name, _, rest = name[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif name.count(":") == 1:
            name, port = name.split(":")
        if port is not None and port != str(self.port):
            return False
        arrived_at = (scope.get("server") or ("",))[0]
        return name in self.names or (bool(name) and name == str(arrived_at).lower())


class BearerToken:
    """Refuse every HTTP request that does not carry `Authorization: Bearer <token>` (constant-time compare; the
    scheme is case-insensitive, RFC 9110)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
            matches = hmac.compare_digest(given.strip().encode(), self.expected)
            if scheme.lower() != "bearer" or not matches:
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

    if not host.strip():
        raise ConfigError(
            "--host is empty, which would listen on every interface; give 127.0.0.1 (this machine only) or "
            "0.0.0.0 (every interface) explicitly"
        )
    if host not in LOCAL and not config.http_token:
        where = "every interface" if host in EVERY_INTERFACE else host
        log.warning(
            "serving on %s without SPECMEM_HTTP_TOKEN: anyone who can reach it can read the memories", where
        )
    app = http_app(server, host, port, config.http_token, config.http_origins, config.http_session_idle)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
