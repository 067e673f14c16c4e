"""The MCP server: specmem's tools over stdio or streamable HTTP, built by `build_server(config)`.

The tools are module-level functions (tools.py reads and indexes, write_tools.py writes) over the `Memories`
held by the server's lifespan. The model loads in the background, and with `watch` the server hosts the
database's watcher whenever no other process does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from specmem.api import Memories
from specmem.indexer.config import Config
from specmem.server import write_tools  # noqa: F401 - registers the write tools
from specmem.server.tools import TOOLS, App

log = logging.getLogger("specmem.server")
INSTRUCTIONS = (
    "Long-term project memory kept as markdown files. Search before answering questions about this project's "
    "decisions, conventions and context; memory_match_triggers is a cheap first look at a prompt."
)


def build_server(
    config: Config, *, load_model: bool = True, watch: bool = False, shared: bool = False
) -> MCPServer:
    """The specmem MCP server for one index; `shared` when many clients use one process (HTTP)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        from specmem.indexer.watch import WatchHost

        memories = Memories(config, background=True, load_model=load_model)
        host = WatchHost(config, memories.embedder) if watch else None
        if host is not None:
            host.start()  # in its own thread: the protocol never waits for the lock, the reconcile or a scan
        try:
            yield App(
                memories=memories,
                watching=lambda: host is not None and host.watching,
                rules_pending=not shared,
            )
        finally:
            if host is not None:
                host.stop()
            memories.close()

    server = MCPServer("specmem", instructions=INSTRUCTIONS, lifespan=lifespan)
    for fn, hints in TOOLS:
        server.add_tool(fn, annotations=hints)
    return server


def serve(config: Config, *, http: bool = False, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the server until the client disconnects (stdio) or the process is stopped (HTTP)."""
    started = time.perf_counter()
    server = build_server(config, watch=config.watch, shared=http)
    log.info(
        "specmem serving %s over %s (built in %.0f ms)",
        config.db_path,
        "http" if http else "stdio",
        1000 * (time.perf_counter() - started),
    )
    if http:
        from specmem.server import http as http_transport

        http_transport.run(server, config, host, port)
    else:
        server.run("stdio")
