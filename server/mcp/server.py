"""The MCP server: specmem's tools over stdio or streamable HTTP, built by `build_server(config)`.

The tools are module-level functions (tools.py reads and indexes, write_tools.py writes) over the `Memories`
held by the server's lifespan, listed in `TOOLS`; resources.py serves the memories as resources, the two prompts and the change
notifications. The model loads in the background, and with `watch` the server hosts the database's watcher
whenever no other process does.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.subscriptions import InMemorySubscriptionBus

from specmem.api import Memories
from specmem.indexer.config import Config
from specmem.server.mcp import tools, write_tools
from specmem.server.mcp.resources import Notifier, register
from specmem.server.mcp.tools import App, Registered, registered

log = logging.getLogger("specmem.server")
# The tools the server offers, in the order `tools/list` shows them.
TOOLS = (
    tools.memory_search,
    tools.memory_context,
    tools.memory_match_triggers,
    tools.memory_get,
    tools.memory_list,
    tools.memory_stale,
    tools.memory_stats,
    tools.memory_health,
    tools.memory_index_scan,
    tools.memory_save,
    tools.memory_validate,
    write_tools.memory_write,
    write_tools.memory_update,
    write_tools.memory_delete,
    write_tools.checkpoint_create,
    write_tools.checkpoint_list,
    write_tools.checkpoint_restore,
    write_tools.checkpoint_delete,
)
INSTRUCTIONS = (
    "Long-term project memory kept as markdown files. At the start of a task call memory_context with the task: "
    "it returns the project's rules and the relevant memories, cited. Search before answering questions about "
    "this project's decisions, conventions and context; save decisions with memory_write."
)


def build_server(
    config: Config, *, load_model: bool = True, watch: bool = False, shared: bool = False
) -> MCPServer:
    """The specmem MCP server for one index; `shared` when many clients use one process (HTTP)."""

    bus = InMemorySubscriptionBus()
    notifier = Notifier(bus)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        from specmem.indexer.watch import WatchHost

        memories = Memories(config, background=True, load_model=load_model)
        host = WatchHost(config, memories.embedder) if watch else None
        if host is not None:
            host.start()  # in its own thread: the protocol never waits for the lock, the reconcile or a scan
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(notifier.run, memories)
                yield App(
                    memories=memories,
                    watching=lambda: host is not None and host.watching,
                    settling=lambda: host is not None and host.settling,
                    rules_pending=not shared,
                )
                tasks.cancel_scope.cancel()
        finally:
            if host is not None:
                host.stop()
            memories.close()

    server = MCPServer(
        "specmem",
        version=version("specmem"),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        tools=[lean(registered(t)) for t in TOOLS],
        subscriptions=bus,
    )
    register(server, notifier)
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
        from specmem.server.mcp import http as http_transport

        http_transport.run(server, config, host, port)
    else:
        from specmem.server.mcp import stdio

        stdio.run(server)  # the SDK's transport, but every request line gets an answer


def lean(marked: Registered) -> Tool:
    """A tool as listed to clients: dedented description and output schema only where asked for. Every
    session pays for `tools/list` in its context."""
    listed = Tool.from_function(
        marked.fn,
        description=inspect.cleandoc(marked.fn.__doc__ or ""),
        annotations=marked.annotations,
        structured_output=marked.output_schema,
    )
    _lean_schema(listed.parameters)
    if listed.output_schema is not None:
        _lean_schema(listed.output_schema)
    return listed


def _lean_schema(schema: object) -> None:
    """In place: drop `title` annotations (pydantic's prettified key names), and list an optional parameter
    (`X | None = None`) as plain X: leaving it out means None, and the server still accepts an explicit null."""
    if isinstance(schema, dict):
        if isinstance(schema.get("title"), str):  # a property named title maps to a schema, never to a string
            del schema["title"]
        options = schema.get("anyOf")
        if "default" in schema and schema["default"] is None and isinstance(options, list):
            kept = [o for o in options if o != {"type": "null"}]
            if len(kept) == 1 and isinstance(kept[0], dict):
                del schema["anyOf"], schema["default"]
                schema.update(kept[0])
        for value in schema.values():
            _lean_schema(value)
    elif isinstance(schema, list):
        for value in schema:
            _lean_schema(value)
