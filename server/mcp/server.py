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
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.subscriptions import InMemorySubscriptionBus

from specmem import DISTRIBUTION
from specmem.api import Memories
from specmem.indexer.config import Config
from specmem.server.mcp import tools, write_tools
from specmem.server.mcp.arguments import CheckedTool, closed
from specmem.server.mcp.protocol import Protocol
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
    config: Config,
    *,
    load_model: bool = True,
    watch: bool = False,
    shared: bool = False,
    client_roots: bool = False,
) -> MCPServer:
    """The specmem MCP server for one index; `shared` when many clients use one process (HTTP);
    `client_roots` when it was started outside any project and should serve the client's first root."""

    bus = InMemorySubscriptionBus()
    notifier = Notifier(bus)
    running: list[App] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        from specmem.indexer.watch import WatchHost

        hosts: list[WatchHost] = []

        def open_project(cfg: Config) -> Memories:
            memories = Memories(cfg, background=True, load_model=load_model)
            if watch:
                host = WatchHost(cfg, memories.embedder)
                host.start()  # in its own thread: the protocol never waits for the lock, the reconcile or a scan
                hosts.append(host)
            return memories

        def adopt(folder: Path) -> None:
            """Serve the project at `folder` (the client's root) instead of the one resolved at start."""
            from specmem.indexer import config as configmod

            cfg = configmod.resolve(cwd=folder, model=config.model)
            old, state.memories = state.memories, open_project(cfg)
            log.warning("serving %s (index %s): the client's root", cfg.project, cfg.db_path)
            while len(hosts) > 1:
                hosts.pop(0).stop()
            old.close()

        state = App(
            memories=open_project(config),
            watching=lambda: bool(hosts) and hosts[-1].watching,
            settling=lambda: bool(hosts) and hosts[-1].settling,
            rules_pending=not shared,
            ask_roots=adopt if client_roots else None,
        )
        running.append(state)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(notifier.run, state)
                yield state
                tasks.cancel_scope.cancel()
        finally:
            running.remove(state)
            for host in hosts:
                host.stop()
            state.memories.close()

    server = MCPServer(
        "specmem",
        version=version(DISTRIBUTION),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        tools=[lean(registered(t)) for t in TOOLS],
        subscriptions=bus,
    )
    register(server, lambda: running[-1])
    server.middleware.append(Protocol(notifier))
    return server


def serve(
    config: Config,
    *,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 8765,
    outside_project: bool = False,
) -> None:
    """Run the server until the client disconnects (stdio) or the process is stopped (HTTP). A stdio server
    `outside_project` serves the client's first root once the client lists it."""
    started = time.perf_counter()
    client_roots = outside_project and not http
    server = build_server(config, watch=config.watch, shared=http, client_roots=client_roots)
    log.info(
        "specmem serving %s over %s (built in %.0f ms)",
        config.index_name,
        "http" if http else "stdio",
        1000 * (time.perf_counter() - started),
    )
    if outside_project:
        log.warning(
            "started outside any project (%s): %s",
            Path.cwd(),
            "the client's first root will be served"
            if client_roots
            else f"serving {config.db_path}; start it in the project or pass --project",
        )
    if http:
        from specmem.server.mcp import http as http_transport

        http_transport.run(server, config, host, port)
    else:
        from specmem.server.mcp import stdio

        stdio.run(server)  # the SDK's transport, but every request line gets an answer


def lean(marked: Registered) -> Tool:
    """A tool as listed to clients: its title, dedented description, output schema only where asked for, and
    arguments checked by name (arguments.py). Every session pays for `tools/list` in its context."""
    listed = CheckedTool.from_function(
        marked.fn,
        title=marked.title,
        description=inspect.cleandoc(marked.fn.__doc__ or ""),
        annotations=marked.annotations,
        structured_output=marked.output_schema,
    )
    _lean_schema(listed.parameters)
    closed(listed.parameters)
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
