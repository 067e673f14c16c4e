"""What MCPServer leaves to us, as one middleware on its public `middleware` list.

- Capabilities, handshake era (protocol versions up to 2025-11-25): `resources.subscribe` and
  `resources.listChanged` are advertised, since both are sent (MCPServer would say false). The 2026-07-28 era
  derives them from `subscriptions/listen`, which the SDK serves.
- `resources/list` follows the index, a page at a time (MCPServer lists a fixed set); the SDK's reply keeps its
  envelope and gets our resources.
- `resources/subscribe` and `resources/unsubscribe` (handshake era), and every initialized connection, are
  recorded with the Notifier: `list_changed` goes to every connection, `updated` to a URI's subscribers.
- A server started outside any project asks the client for its workspace `roots` before the first call, and
  serves the project of the first one that is a folder.

The SDK marks the middleware interface provisional within 2.x: pyproject.toml pins mcp to one minor version.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import PaginatedRequestParams, SubscribeRequestParams, UnsubscribeRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from specmem.server.mcp.resources import Notifier, list_resources
from specmem.server.mcp.tools import App

log = logging.getLogger("specmem.server")
ROOTS_TIMEOUT = 10.0  # seconds a client gets to answer roots/list
ASKS_ROOTS_FIRST = ("tools/call", "resources/list", "resources/read", "prompts/get", "completion/complete")


class Protocol:
    """The middleware (see the module's docstring)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        method, legacy = ctx.method, ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS
        if method == "initialize":
            result = await call_next(ctx)
            if isinstance(result, dict) and isinstance(result.get("capabilities"), dict):
                result["capabilities"]["resources"] = {"subscribe": True, "listChanged": True}
            return result
        if method == "notifications/initialized" and legacy:
            self.notifier.connect(ctx.session)
            return await call_next(ctx)
        if method in ("resources/subscribe", "resources/unsubscribe") and legacy:
            if method == "resources/subscribe":
                uri = SubscribeRequestParams.model_validate(ctx.params or {}, by_name=False).uri
                self.notifier.subscribe(ctx.session, str(uri))
            else:
                uri = UnsubscribeRequestParams.model_validate(ctx.params or {}, by_name=False).uri
                self.notifier.unsubscribe(ctx.session, str(uri))
            return {}
        app = ctx.lifespan_context
        if method in ASKS_ROOTS_FIRST and isinstance(app, App) and app.ask_roots is not None:
            await self._use_client_roots(ctx, app)
        if method == "resources/list":
            result = await call_next(ctx)
            params = PaginatedRequestParams.model_validate(ctx.params or {}, by_name=False)
            page = (await list_resources(app, params)).model_dump(
                by_alias=True, mode="json", exclude_none=True
            )
            if isinstance(result, dict):
                result.pop("nextCursor", None)
                result.update(page)
                return result
            return page
        return await call_next(ctx)

    async def _use_client_roots(self, ctx: ServerRequestContext[Any, Any], app: App) -> None:
        """Once: ask the client for its roots and serve the project of the first folder among them."""
        switch, app.ask_roots = app.ask_roots, None
        assert switch is not None
        capabilities = ctx.session.client_capabilities
        if capabilities is None or capabilities.roots is None:
            log.warning("the client declares no roots; serving %s", app.memories.config.db_path)
            return
        try:
            # Roots are deprecated from 2026-07-28 on (SEP-2577); handshake-era clients, the ones that start a
            # server over stdio today, still send them, and the SDK's warning would only reach our stderr.
            with anyio.fail_after(ROOTS_TIMEOUT), warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                roots = (await ctx.session.list_roots()).roots
        except Exception as exc:  # noqa: BLE001 - a client that cannot list roots keeps the default
            log.warning(
                "the client did not list its roots (%s); serving %s", exc, app.memories.config.db_path
            )
            return
        for root in roots:
            parsed = urlparse(str(root.uri))
            folder = Path(unquote(parsed.path))
            if parsed.scheme == "file" and folder.is_dir():
                await anyio.to_thread.run_sync(switch, folder)
                return
        log.warning("none of the client's roots is a local folder; serving %s", app.memories.config.db_path)
