"""The MCP tools that read and index: module-level functions over the `Memories` of the server's lifespan.

Each tool checks `index.db-updated` first (through the API's reader), so a change committed by any process is seen by
the next call. Errors the library raises on purpose (`SpecmemError`) become a tool error with their one-line
message; anything else is a bug, logged with its traceback by the SDK.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio.from_thread
import pydantic_core
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from specmem.api import Memories, Validation
from specmem.indexer import signal
from specmem.indexer.errors import SpecmemError
from specmem.indexer.lock import WatcherInfo
from specmem.indexer.scan import ScanReport
from specmem.indexer.tiers import Tier
from specmem.server.citations import StaleList
from specmem.server.context import DEFAULT_BUDGET, MAX_BUDGET, MIN_BUDGET, ContextBlock
from specmem.server.memories import FileWarnings, Memory, MemoryList, Stats, TriggerMatch
from specmem.server.search import Filters, Mode, SearchResult

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("specmem.server.calls")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
INDEXES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
VOTES = ToolAnnotations(read_only_hint=False, idempotent_hint=False, open_world_hint=False)


@dataclass
class App:
    """What the server's lifespan holds: the project's memory and whether this process watches it."""

    memories: Memories
    watching: Callable[[], bool] = field(default=lambda: False)
    settling: Callable[[], bool] = field(default=lambda: False)  # this server is about to build the index
    # Over stdio a server process has one client: its first search shows every rule, later ones the few that
    # matter most (SPECMEM_SURFACE). Over HTTP clients share the process and cannot be told apart.
    rules_pending: bool = False
    # A stdio server started outside any project: serve the project of a folder (the client's first root) once
    # the client has said which; protocol.py calls it before the first request that needs the index.
    ask_roots: Callable[[Path], None] | None = None

    def first_search(self) -> bool:
        first, self.rules_pending = self.rules_pending, False
        return first


@dataclass(frozen=True)
class Registered:
    fn: Callable[..., Any]
    title: str
    annotations: ToolAnnotations
    output_schema: bool


def result(value: Any, text: str | None = None) -> CallToolResult:
    """A tool result: the structured value, and as text compact JSON (or `text`), which is what most clients put
    in the model's context."""
    data = pydantic_core.to_jsonable_python(value)
    structured = data if isinstance(data, dict) else {"result": data}
    if text is None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def tool(
    title: str,
    annotations: ToolAnnotations,
    *,
    output_schema: bool = False,
    text: Callable[[Any], str] | None = None,
) -> Callable[[F], F]:
    """Mark a module-level function as a tool with a human-readable `title` (server.py lists the tools the
    server offers); `SpecmemError` becomes a one-line tool error.

    Results keep their structured content either way; only tools whose clients gain from it publish an output
    schema (every schema is paid for in each session's context by `tools/list`). `text` renders the result's
    text content (default: compact JSON)."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                value = fn(*args, **kwargs)
            except SpecmemError as exc:
                log.info(
                    "%s failed after %.0f ms: %s", fn.__name__, 1000 * (time.perf_counter() - started), exc
                )
                raise ToolError(str(exc)) from None
            # Names and timings only: arguments and answers hold memory text, which does not belong in logs.
            log.info("%s answered in %.0f ms", fn.__name__, 1000 * (time.perf_counter() - started))
            return result(value, text(value) if text else None)

        fn.registered = Registered(call, title, annotations, output_schema)  # type: ignore[attr-defined]
        return fn

    return register


def registered(fn: Callable[..., Any]) -> Registered:
    """The tool that `@tool` made of `fn`."""
    found = getattr(fn, "registered", None)
    assert isinstance(found, Registered), f"{fn.__name__} is not marked with @tool"
    return found


def app(ctx: Context) -> App:
    lifespan = ctx.request_context.lifespan_context
    assert isinstance(lifespan, App), "tools run inside the specmem server's lifespan"
    return lifespan


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
    files_with_warnings: list[FileWarnings]
    watcher: WatcherInfo | None
    signal_generation: int | None
    last_indexed_ms: int | None
    reloads: int = Field(description="Times this server reopened its connection after a change")
    watching: bool = Field(description="Whether this server process is the one keeping the index live")


class SkippedFolder(BaseModel):
    path: str
    markdown_files: int


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
    warnings: list[FileWarnings]
    problems: list[FileWarnings]
    skipped: list[SkippedFolder] = Field(
        description="Hidden folders holding markdown that were left out; `include` in specmem.toml takes them"
    )


def index_state(mem: Memories) -> IndexState:
    sig = signal.read(mem.config.signal_path)
    return IndexState(
        pending_embeddings=mem.pending(),
        last_indexed_ms=sig.committed_ms if sig else None,
        model_state=mem.reader.model_state,  # type: ignore[arg-type]
    )


# Other projects of a shared (PostgreSQL) index a read includes; None: those the server was started with.
Projects = Annotated[
    list[Annotated[str, Field(max_length=200)]] | None,
    Field(description="Other projects of a shared index to include too ('*': all)", max_length=100),
]


@tool("Search memories", READ_ONLY)
def memory_search(
    ctx: Context,
    query: Annotated[str, Field(max_length=10_000)],
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
    mode: Mode = "hybrid",
    filters: Filters | None = None,
    include_deprecated: bool = False,
    include_constitutional: Annotated[
        bool, Field(description="Rank constitutional rules with the results (a third of limit at most)")
    ] = True,
    projects: Projects = None,
) -> SearchAnswer:
    """Search the project's memories (decisions, conventions, context) by keywords and meaning.

    Results carry path:start-end, title, tier, score and snippet. A session's first search also lists every
    constitutional rule. While the model loads, answers are keyword-only and say so; while the index is first
    built, it waits a few seconds, then says how far indexing got."""
    state = app(ctx)
    mem = state.memories
    building = mem.wait_for_index(mem.config.search_wait, settling=state.settling)
    if building is not None and not mem.config.db_path.exists():
        return SearchAnswer(
            query=query,
            mode_requested=mode,
            mode_used="keyword",
            keyword_only=True,
            results=[],
            total_memories=0,
            notes=[f"{building.describe()}; nothing is searchable yet: search again in a few seconds"],
            index=IndexState(pending_embeddings=0, last_indexed_ms=None, model_state=mem.reader.model_state),  # type: ignore[arg-type]
        )
    response = mem.search(
        query,
        limit=limit,
        mode=mode,
        filters=filters,
        include_deprecated=include_deprecated,
        include_constitutional=include_constitutional,
        all_rules=include_constitutional and state.first_search(),
        projects=projects,
    )
    notes = list(response.notes)
    reader = mem.reader
    if reader.ready_embedder() is None and mode != "keyword":
        notes = [n for n in notes if not n.startswith("embedding model not loaded")]
        notes.append(
            f"embedding model {reader.model_state}"
            + (f" ({reader.model_error})" if reader.model_error else "")
            + ": answered in keyword mode"
        )
    if building is not None:
        notes.append(f"{building.describe()}; these results may be incomplete: search again in a few seconds")
    return SearchAnswer(
        query=response.query,
        mode_requested=response.mode_requested,
        mode_used=response.mode_used,
        keyword_only=response.keyword_only,
        results=response.results,
        total_memories=response.total_memories,
        notes=notes,
        index=index_state(mem),
    )


@tool("Memories for a task", READ_ONLY, output_schema=True, text=lambda block: block.text)
def memory_context(
    ctx: Context,
    task: Annotated[str, Field(description="The task or the user's prompt", max_length=100_000)],
    budget: Annotated[int, Field(ge=MIN_BUDGET, le=MAX_BUDGET, description="Tokens")] = DEFAULT_BUDGET,
    projects: Projects = None,
) -> ContextBlock:
    """The memories for a task as one block to paste, within a token budget: rules, then memories the task
    triggers, then the best search results, each cited path:start-end. Lists what did not fit. Call it first."""
    return app(ctx).memories.context(task, budget=budget, projects=projects)


@tool("Match trigger phrases", READ_ONLY)
def memory_match_triggers(
    ctx: Context,
    prompt: Annotated[str, Field(max_length=100_000)],
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
) -> list[TriggerMatch]:
    """Memories whose trigger phrases occur in the prompt (whole words, any case). Cheap: no embeddings."""
    return app(ctx).memories.triggers(prompt, limit=limit)


@tool("Read a memory", READ_ONLY)
def memory_get(
    ctx: Context,
    id_or_path: Annotated[
        str, Field(description="A memory id, or its path (absolute or relative to a root)")
    ],
    anchor: Annotated[str | None, Field(description="Only the section marked <!-- ANCHOR:name -->")] = None,
    start_line: Annotated[int | None, Field(ge=1)] = None,
    end_line: Annotated[int | None, Field(ge=1)] = None,
) -> Memory:
    """One memory's content and metadata; optionally only an anchored section or a line range."""
    return app(ctx).memories.get(id_or_path, anchor=anchor, start_line=start_line, end_line=end_line)


@tool("List memories", READ_ONLY)
def memory_list(
    ctx: Context,
    offset: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
    spec_folder: str | None = None,
    tier: Tier | None = None,
    sort: Literal["updated", "title", "path", "tier"] = "updated",
    projects: Projects = None,
) -> MemoryList:
    """A page of memories: ids, paths, titles, tiers, spec folders, projects."""
    return app(ctx).memories.list(
        offset=offset, limit=limit, spec_folder=spec_folder, tier=tier, sort=sort, projects=projects
    )


@tool("Stale memories", READ_ONLY)
def memory_stale(ctx: Context, limit: Annotated[int, Field(ge=1, le=500)] = 50) -> StaleList:
    """Memories whose cited code changed, oldest first, with diffs. One that holds: memory_update
    confirm_citations."""
    return app(ctx).memories.stale(limit=limit)


@tool("Memory statistics", READ_ONLY)
def memory_stats(ctx: Context) -> Stats:
    """Counts by tier, spec folder, context type and embedding status; files with warnings."""
    return app(ctx).memories.stats()


@tool("Server health", READ_ONLY)
def memory_health(ctx: Context) -> Health:
    """Whether everything works: model, versions, database, pending embeddings, file warnings, watcher."""
    state = app(ctx)
    mem = state.memories
    reader = mem.reader
    stats = mem.stats()
    sig = signal.read(mem.config.signal_path)
    return Health(
        pid=os.getpid(),
        database=mem.config.index_name,
        schema_version=stats.schema_version,
        sqlite_vec_version=mem.vector_version(),
        model=mem.config.model,
        model_state=reader.model_state,  # type: ignore[arg-type]
        model_error=reader.model_error,
        index_model=stats.model,
        pending_embeddings=mem.pending(),
        memories=stats.memories,
        files_with_warnings=stats.warnings,
        watcher=stats.watcher,
        signal_generation=sig.generation if sig else None,
        last_indexed_ms=sig.committed_ms if sig else None,
        reloads=reader.reloads,
        watching=state.watching(),
    )


def summary(report: ScanReport, scope: tuple[Path, ...] | list[Path]) -> ScanSummary:
    def grouped(pairs: list[tuple[str, str]]) -> list[FileWarnings]:
        by_path: dict[str, list[str]] = {}
        for path, message in pairs:
            by_path.setdefault(path, []).append(message)
        return [FileWarnings(path=p, messages=m) for p, m in by_path.items()]

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
        skipped=[SkippedFolder(path=p, markdown_files=n) for p, n in report.skipped],
    )


@tool("Index the memory files", INDEXES)
def memory_index_scan(
    ctx: Context,
    spec_folder: Annotated[str | None, Field(description="Only this spec folder, e.g. 003-auth")] = None,
    path_prefix: Annotated[
        str | None, Field(description="Only this folder or file (absolute, or relative to a root)")
    ] = None,
    force: Annotated[bool, Field(description="Re-index even unchanged files")] = False,
) -> ScanSummary:
    """Bring the index in line with the files now (everything, one spec folder or one path). Keyword search
    sees the result at once; embeddings follow in the background."""
    mem = app(ctx).memories
    paths = [path_prefix] if path_prefix else None
    scope = mem.scopes(paths, spec_folder) or mem.config.roots
    return summary(mem.scan(paths, spec_folder=spec_folder, force=force, progress=Progress(ctx)), scope)


class Progress:
    """A scan's progress as MCP progress notifications (sent only when the client gave a progress token).

    A scan has phases (walking, checking, indexing, ...), each counting from 0; the protocol wants a value that
    only grows, so the value is the work done over all phases so far, and the message names the phase. The tool
    runs in a worker thread: each notification is handed to the event loop, at most one per percent of a phase."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.finished = 0  # work of the phases before this one
        self.phase: str | None = None
        self.done = 0
        self.sent = -1  # the last value sent

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self.finished += self.done
            self.phase = phase
        self.done = done
        value = self.finished + done
        if value <= self.sent or (value - self.sent < max(total // 100, 1) and done < total):
            return
        self.sent = value
        message = f"{phase}: {done}/{total}" if total else f"{phase}…"
        anyio.from_thread.run(self.ctx.report_progress, float(value), None, message)


@tool("Index one memory file", INDEXES)
def memory_save(
    ctx: Context,
    path: Annotated[
        str, Field(description="A memory file inside the roots (absolute, or relative to a root)")
    ],
) -> ScanSummary:
    """Index one file now, after you wrote or edited it."""
    mem = app(ctx).memories
    report = mem.save(path)
    return summary(report, [mem.resolve_path(path)])


@tool("Rate a memory", VOTES)
def memory_validate(
    ctx: Context,
    id: Annotated[int, Field(description="The memory's id")],
    useful: Annotated[bool, Field(description="Whether the memory helped")],
) -> Validation:
    """Tell whether a memory was useful; its ranking follows."""
    return app(ctx).memories.validate(id, useful)
