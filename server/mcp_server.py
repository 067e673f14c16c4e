"""The MCP server: specmem's tools over stdio or streamable HTTP, built by `build_server(config)`.

Every tool call starts by checking `.db-updated` (ReadState.conn), so a change committed by any process is seen by
the next call. Read-only tools carry the read-only hint. Errors are raised as ToolError with a message that says
what to do; any other exception becomes an error result for that call, never the end of the server.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import apsw
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from specmem.indexer import db, files, signal
from specmem.indexer.config import Config
from specmem.indexer.embed import background_thread, embed_pending
from specmem.indexer.errors import (
    SpecmemError,
)
from specmem.indexer.lock import WatcherInfo
from specmem.indexer.scan import ScanReport, scan
from specmem.indexer.store import pending_count
from specmem.indexer.tiers import Tier
from specmem.indexer.watch import WatchHost
from specmem.server import memories, write_tools
from specmem.server.search import Filters, Mode, SearchResult, search
from specmem.server.state import ReadState

log = logging.getLogger("specmem.server")
T = TypeVar("T")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
_EMBEDDING = threading.Lock()  # one background embedding pass at a time per process


class IndexState(BaseModel):
    pending_embeddings: int = Field(description="Memories whose embeddings are not computed yet")
    last_indexed_ms: int | None = Field(description="When the index last changed (ms since the epoch)")
    model_state: Literal["ready", "loading", "unavailable"]


class SearchAnswer(BaseModel):
    query: str
    mode_requested: Mode
    mode_used: Mode
    keyword_only: bool = Field(description="True when no embeddings took part in this answer")
    results: list[SearchResult]
    total_memories: int
    notes: list[str]
    index: IndexState


class Health(BaseModel):
    pid: int = Field(description="This server's process id")
    database: str
    schema_version: int
    sqlite_vec_version: str
    model: str
    model_state: Literal["ready", "loading", "unavailable"]
    model_error: str | None
    index_model: str | None
    pending_embeddings: int
    memories: int
    files_with_warnings: list[memories.FileWarnings]
    watcher: WatcherInfo | None
    signal_generation: int | None
    last_indexed_ms: int | None
    reloads: int = Field(description="Times this server reopened its connection after a change")
    watching: bool = Field(description="Whether this server process is the one keeping the index live")


class ScanSummary(BaseModel):
    scope: list[str]
    added: int
    updated: int
    unchanged: int
    moved: int
    removed: int
    files_seen: int
    pending_embeddings: int
    seconds: float
    warnings: list[memories.FileWarnings]
    problems: list[memories.FileWarnings]


class Validation(BaseModel):
    id: int
    useful: bool
    confidence_before: float
    confidence_after: float


def build_server(config: Config, *, load_model: bool = True, watch: bool = False) -> MCPServer:
    """The specmem MCP server for one index. When it starts, the model begins loading in the background and,
    with `watch`, the server hosts the database's watcher whenever no other process does."""
    holder: dict[str, ReadState] = {}
    hosts: list[WatchHost] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        holder["state"] = ReadState(config, load_model=load_model)
        if watch:
            hosts.append(WatchHost(config, holder["state"].embedder))
            hosts[
                0
            ].start()  # in its own thread: the protocol never waits for the lock, the reconcile or a scan
        try:
            yield
        finally:
            for host in hosts:
                host.stop()
            hosts.clear()
            holder.pop("state").close()

    server = MCPServer(
        "specmem",
        instructions=(
            "Long-term project memory kept as markdown files. Search before answering questions about this "
            "project's decisions, conventions and context; match_triggers is a cheap first look at a prompt."
        ),
        lifespan=lifespan,
    )

    def state() -> ReadState:
        if "state" not in holder:  # the lifespan has not run (e.g. a direct in-process call)
            holder["state"] = ReadState(config, load_model=load_model)
        return holder["state"]

    def guarded(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except SpecmemError as exc:
            raise ToolError(str(exc)) from None

    def index_state(st: ReadState) -> IndexState:
        def build(conn: apsw.Connection) -> tuple[int, int | None]:
            sig = signal.read(config.signal_path)
            return pending_count(conn), sig.committed_ms if sig else None

        # Counted once per index generation, not on every search.
        pending, last = st.cached("index_state", build)
        return IndexState(
            pending_embeddings=pending,
            last_indexed_ms=last,
            model_state=st.model_state,  # type: ignore[arg-type]
        )

    @server.tool(annotations=READ_ONLY)
    def memory_search(
        query: Annotated[str, Field(description="What to look for, in plain words", max_length=10_000)],
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        include_deprecated: bool = False,
        include_constitutional: Annotated[
            bool, Field(description="Put constitutional memories first, whatever the query")
        ] = True,
    ) -> SearchAnswer:
        """Search the project's memories (decisions, context, conventions) by keywords and meaning.

        Results carry path:start-end, title, tier, spec folder, score parts and a snippet. While the embedding
        model loads, the answer comes at once in keyword mode and says so (keyword_only, notes)."""

        def run() -> SearchAnswer:
            st = state()
            conn = st.conn()
            embedder = st.ready_embedder()
            response = search(
                conn,
                query,
                limit=limit,
                mode=mode,
                filters=filters,
                embedder=embedder,
                include_deprecated=include_deprecated,
                include_constitutional=include_constitutional,
            )
            notes = list(response.notes)
            if embedder is None and mode != "keyword":
                notes = [n for n in notes if not n.startswith("embedding model not loaded")]
                notes.append(
                    f"embedding model {st.model_state}"
                    + (f" ({st.model_error})" if st.model_error else "")
                    + ": answered in keyword mode"
                )
            return SearchAnswer(
                **response.model_dump(exclude={"notes", "pending_embeddings"}),
                notes=notes,
                index=index_state(st),
            )

        return guarded(run)

    @server.tool(annotations=READ_ONLY)
    def memory_match_triggers(
        prompt: Annotated[str, Field(max_length=100_000)], limit: Annotated[int, Field(ge=1, le=100)] = 10
    ) -> list[memories.TriggerMatch]:
        """Memories whose trigger phrases occur in the prompt, as whole words, ignoring case and accents.

        Cheap (no embeddings): call it on a user's prompt to see which memories it should bring to mind."""

        def run() -> list[memories.TriggerMatch]:
            st = state()
            return memories.match_triggers(st.cached("triggers", memories.trigger_index), prompt, limit)

        return guarded(run)

    @server.tool(annotations=READ_ONLY)
    def memory_get(
        id_or_path: Annotated[
            str, Field(description="A memory id, or its path (absolute or relative to a root)")
        ],
        anchor: Annotated[
            str | None, Field(description="Only the section marked <!-- ANCHOR:name -->")
        ] = None,
        start_line: Annotated[int | None, Field(ge=1)] = None,
        end_line: Annotated[int | None, Field(ge=1)] = None,
    ) -> memories.Memory:
        """One memory's content and metadata; optionally one anchored section or a 1-based line range.

        Only files inside the configured roots are served."""
        return guarded(
            lambda: memories.get(
                state().conn(), config, id_or_path, anchor=anchor, start_line=start_line, end_line=end_line
            )
        )

    @server.tool(annotations=READ_ONLY)
    def memory_list(
        offset: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        spec_folder: str | None = None,
        tier: Tier | None = None,
        sort: Literal["updated", "title", "path", "tier"] = "updated",
    ) -> memories.MemoryList:
        """A page of memories with their ids, paths, titles, tiers and spec folders (newest first by default)."""
        return guarded(
            lambda: memories.list_memories(
                state().conn(), offset=offset, limit=limit, spec_folder=spec_folder, tier=tier, sort=sort
            )
        )

    @server.tool(annotations=READ_ONLY)
    def memory_stats() -> memories.Stats:
        """Counts by tier, spec folder, context type and embedding status; index size; files with warnings."""

        def run() -> memories.Stats:
            st = state()
            return st.cached("stats", lambda conn: memories.stats(conn, config))

        return guarded(run)

    @server.tool(annotations=READ_ONLY)
    def memory_health() -> Health:
        """Whether everything works: model state, sqlite-vec and schema versions, database path, pending
        embeddings, files that did not parse cleanly, and which process (if any) keeps the index live."""

        def run() -> Health:
            st = state()
            conn = st.conn()
            stats = memories.stats(conn, config)
            sig = signal.read(config.signal_path)
            return Health(
                pid=os.getpid(),
                database=str(config.db_path),
                schema_version=db.schema_version(conn),
                sqlite_vec_version=conn.execute("SELECT vec_version()").fetchall()[0][0],
                model=config.model,
                model_state=st.model_state,  # type: ignore[arg-type]
                model_error=st.model_error,
                index_model=db.get_config(conn, "model"),
                pending_embeddings=pending_count(conn),
                memories=stats.memories,
                files_with_warnings=stats.warnings,
                watcher=stats.watcher,
                signal_generation=sig.generation if sig else None,
                last_indexed_ms=sig.committed_ms if sig else None,
                reloads=st.reloads,
                watching=bool(hosts) and hosts[0].watching,
            )

        return guarded(run)

    def write_scan(scopes: tuple[Path, ...] | None, force: bool) -> ScanSummary:
        st = state()
        conn = db.connect(config.db_path)
        try:
            report = scan(conn, config, st.embedder, scopes=scopes, force=force, embed=False)
        finally:
            conn.close()
        embed_soon()
        return _summary(report, scopes or config.roots)

    @server.tool(annotations=WRITES)
    def memory_index_scan(
        spec_folder: Annotated[str | None, Field(description="Only this spec folder, e.g. 003-auth")] = None,
        path_prefix: Annotated[
            str | None, Field(description="Only this folder or file (absolute, or relative to a root)")
        ] = None,
        force: Annotated[bool, Field(description="Re-index even unchanged files")] = False,
    ) -> ScanSummary:
        """Bring the index in line with the files now (all roots, one spec folder, or one path).

        Keyword rows are committed before this returns; embeddings follow in the background (see
        pending_embeddings). Serialised with the watcher and other scans: never 'database is locked'."""
        return guarded(lambda: write_scan(_scopes(config, spec_folder, path_prefix), force))

    @server.tool(annotations=WRITES)
    def memory_save(
        path: Annotated[
            str, Field(description="A memory file inside the roots (absolute, or relative to a root)")
        ],
    ) -> ScanSummary:
        """Index one file now (after you wrote or edited it), without waiting for the watcher."""

        def run() -> ScanSummary:
            target = _inside(config, path)
            if target.is_dir() or not files.is_memory_name(target.name):
                raise ToolError(
                    f"{path} is not a memory file: give one *.md file (memory_index_scan does folders)"
                )
            return write_scan((target,), False)

        return guarded(run)

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=False, open_world_hint=False)
    )
    def memory_validate(
        id: Annotated[int, Field(description="The memory's id")],
        useful: Annotated[bool, Field(description="Whether the memory helped")],
    ) -> Validation:
        """Tell the index whether a memory was useful. Its confidence moves toward 1 or 0 and weighs its ranking."""
        from specmem.indexer.feedback import validate

        def run() -> Validation:
            conn = db.connect(config.db_path)
            try:
                before, after = validate(conn, config, id, useful)
            finally:
                conn.close()
            return Validation(id=id, useful=useful, confidence_before=before, confidence_after=after)

        return guarded(run)

    def embed_soon() -> None:
        if state().ready_embedder() is not None:
            _embed_in_background(config, state())

    write_tools.register(server, config, lambda: state().embedder, embed_soon)
    return server


def _inside(config: Config, text: str) -> Path:
    """A path named by a client, resolved against the roots; refused if it leaves them."""
    if "\x00" in text:
        raise ToolError("a path cannot contain a NUL character")
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [root / raw for root in config.roots]
    for candidate in candidates:
        if memories.inside_roots(candidate, config) and (candidate.exists() or len(candidates) == 1):
            return candidate.absolute()
    roots = ", ".join(str(r) for r in config.roots)
    raise ToolError(f"{text} is outside the memory roots ({roots}); give a path inside them")


def _scopes(config: Config, spec_folder: str | None, path_prefix: str | None) -> tuple[Path, ...] | None:
    if spec_folder and path_prefix:
        raise ToolError("give spec_folder or path_prefix, not both")
    if path_prefix:
        return (_inside(config, path_prefix),)
    if spec_folder:
        return tuple(folder for _, folder in files.spec_folder_dirs(config.roots, spec_folder))
    return None


def _summary(report: ScanReport, scope: tuple[Path, ...]) -> ScanSummary:
    def grouped(pairs: list[tuple[str, str]]) -> list[memories.FileWarnings]:
        by_path: dict[str, list[str]] = {}
        for path, message in pairs:
            by_path.setdefault(path, []).append(message)
        return [memories.FileWarnings(path=p, messages=m) for p, m in by_path.items()]

    return ScanSummary(
        scope=[str(p) for p in scope],
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        moved=report.moved,
        removed=report.removed,
        files_seen=report.files_seen,
        pending_embeddings=report.pending_embeddings,
        seconds=round(report.seconds, 3),
        warnings=grouped(report.warnings),
        problems=grouped(report.problems),
    )


def _embed_in_background(config: Config, st: ReadState) -> None:
    """Embed what a scan left pending, off the tool call (one pass at a time per process)."""
    if not _EMBEDDING.acquire(blocking=False):
        return

    def run() -> None:
        background_thread(idle=False)
        try:
            conn = db.connect(config.db_path)
            try:
                embed_pending(conn, st.embedder, config.signal_path)
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - logged; the next scan retries
            log.exception("background embedding failed")
        finally:
            _EMBEDDING.release()

    threading.Thread(target=run, name="specmem-embed", daemon=True).start()


def http_app(server: MCPServer, host: str, port: int, token: str | None, origins: list[str]) -> ASGIApp:
    """The streamable HTTP app: Host and Origin checked against DNS rebinding, and a bearer token if set."""
    local = ["127.0.0.1", "localhost", "[::1]"]
    names = local if host in ("127.0.0.1", "localhost", "::1") else [*local, host]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:{port}" for n in names] + names,
        allowed_origins=[f"http://{n}:{port}" for n in names] + origins,
    )
    app: ASGIApp = server.streamable_http_app(transport_security=security, host=host)
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


def serve(
    config: Config, *, http: bool = False, host: str = "127.0.0.1", port: int = 8765, watch: bool = True
) -> None:
    """Run the server until the client disconnects (stdio) or the process is stopped (HTTP)."""
    started = time.perf_counter()
    # One torch thread per search: a short query embeds as fast on one core, and several servers on one machine
    # then do not fight over every core (with two threads, four paced servers and a writing watcher had a p95 of
    # 359 ms instead of 54: tests/bench/concurrency.py). Read by torch when the model loads, later, in a thread;
    # OMP_NUM_THREADS set by the user wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    server = build_server(config, watch=watch)
    log.info(
        "specmem serving %s over %s (built in %.0f ms)",
        config.db_path,
        "http" if http else "stdio",
        1000 * (time.perf_counter() - started),
    )
    if not http:
        server.run("stdio")
        return
    import uvicorn

    token = os.environ.get("SPECMEM_HTTP_TOKEN") or None
    origins = [o.strip() for o in os.environ.get("SPECMEM_HTTP_ORIGINS", "").split(",") if o.strip()]
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        log.warning(
            "serving on %s without SPECMEM_HTTP_TOKEN: anyone who can reach it can read the memories", host
        )
    app = http_app(server, host, port, token, origins)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
