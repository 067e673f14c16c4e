"""Memories as MCP resources, the `remember` and `recall` prompts, and change notifications.

Each memory is the resource `specmem://memory/{id}` (its file's markdown; title, tier, spec folder and the status
of the code it cites as metadata; a memory whose cited code is not as it was ends with a note saying so);
`specmem://path/{+path}` reads one by its path relative to a root. The list is read from the index on
each `resources/list`, so it is never stale.

Nobody polls memory files: a task in the server's lifespan stats `index.db-updated` (the signal every committed index
change replaces; on PostgreSQL it counts the change notices heard, from any machine) and, when it changed, diffs the memories' listing and content hashes. A changed listing sends
`resources/list_changed`; a changed file sends `resources/updated` for its URI. Events go to
`subscriptions/listen` streams (2026-07-28 clients) through the SDK's bus; on earlier protocol versions
`list_changed` goes to every initialized connection and `updated` to those that sent `resources/subscribe` for
the URI (protocol.py records both).

Completions: the `remember` prompt's `spec_folder` and the `specmem://path/{+path}` template's `path`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Annotations,
    Completion,
    CompletionArgument,
    ListResourcesResult,
    PaginatedRequestParams,
    PromptReference,
    Resource,
    ResourceTemplateReference,
)
from pydantic import Field

from specmem.api import Memories
from specmem.indexer.errors import DatabaseError, NotFound, SpecmemError
from specmem.server import citations
from specmem.server.context import DEFAULT_BUDGET, MAX_BUDGET, MIN_BUDGET, code_mark
from specmem.server.mcp.tools import App

if TYPE_CHECKING:
    from specmem.server.reads import MemoryRow

log = logging.getLogger("specmem.server")
SCHEME = "specmem://memory/"
MIME = "text/markdown"
PATH_TEMPLATE = "specmem://path/{+path}"
PAGE = 1_000  # resources per resources/list page
POLL_SECONDS = 0.2  # how often the signal file is stat'ed (a stat costs microseconds)
# A tier's resource priority (MCP annotations: 1 = most important).
# A connection's subscriptions (more URIs than any index has memories), the length of one URI, and the
# connections remembered (HTTP allows MAX_SESSIONS at once; a closed one is forgotten at its next notification,
# or here, oldest first): 300,000 URIs of any text took a server from 131 MB to 1.16 GB.
MAX_SUBSCRIPTIONS = 10_000
MAX_URI_CHARS = 2_048
MAX_CONNECTIONS = 2_048
PRIORITY = {"constitutional": 1.0, "critical": 0.9, "important": 0.7, "normal": 0.5, "temporary": 0.3}


def uri(memory_id: int) -> str:
    return f"{SCHEME}{memory_id}"


def _app(ctx: Any) -> App:
    lifespan = (
        ctx.lifespan_context
        if isinstance(ctx, ServerRequestContext)
        else ctx.request_context.lifespan_context
    )
    assert isinstance(lifespan, App), "resources are served inside the specmem server's lifespan"
    return lifespan


# -- listing and reading ----------------------------------------------------------------------------------------


def listed(mem: Memories) -> list[tuple[MemoryRow, str | None]]:
    """The memories served as resources (all but deprecated ones), most important first, each with the status
    of the code it cites (None: it cites none); [] without an index."""
    try:
        rows, codes = mem.served(), mem.code_statuses()
    except DatabaseError:
        return []
    return [(row, codes.get(row.id)) for row in rows]


def as_resource(row: MemoryRow, code: str | None = None) -> Resource:
    modified = dt.datetime.fromtimestamp(row.updated_at / 1000, dt.UTC).isoformat(timespec="seconds")
    meta = {"tier": row.tier, "spec_folder": row.spec_folder, "path": row.path}
    care = ""
    if code is not None:
        meta["code"] = code
        care = " · cited code changed: read with care" if code in citations.STALE else ""
    return Resource(
        uri=uri(row.id),
        name=row.rel_path,
        title=row.title,
        description=f"{row.tier} · {row.spec_folder or '-'}{care}",
        mime_type=MIME,
        annotations=Annotations(priority=PRIORITY.get(row.tier, 0.5), last_modified=modified),
        _meta=meta,
    )


async def list_resources(app: App, params: PaginatedRequestParams | None) -> ListResourcesResult:
    rows = await anyio.to_thread.run_sync(listed, app.memories)
    start = int(params.cursor) if params and params.cursor and params.cursor.isdigit() else 0
    page = rows[start : start + PAGE]
    following = str(start + PAGE) if start + PAGE < len(rows) else None
    return ListResourcesResult(resources=[as_resource(r, code) for r, code in page], next_cursor=following)


def _read(ctx: Context, id_or_path: str) -> str:
    """The memory file's markdown; when code it cites is not as it was, a closing note (after a rule) says so."""
    try:
        memory = _app(ctx).memories.get(id_or_path)
        mark = code_mark(memory.citations)
        return memory.content + (f"\n\n---\n{mark.lstrip()}\n" if mark else "")
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from None
    except SpecmemError as exc:
        raise ResourceError(str(exc)) from None


def read_memory(id: str, ctx: Context) -> str:  # noqa: A002 - the URI template's variable
    """A memory file's markdown, by id."""
    return _read(ctx, id)


def read_path(path: str, ctx: Context) -> str:
    """A memory file's markdown, by its path relative to a root (e.g. 003-auth/memory/jwt.md)."""
    return _read(ctx, path)


# -- prompts ----------------------------------------------------------------------------------------------------


def remember(
    ctx: Context,
    decision: Annotated[str, Field(description="What was decided or learned, and why")],
    spec_folder: Annotated[str | None, Field(description="Where it belongs, e.g. 003-auth")] = None,
) -> str:
    """Save a decision as a memory: the assistant writes it with a tier, trigger phrases and tags."""
    try:
        folders = spec_folders(_app(ctx).memories)
    except SpecmemError:  # no index yet: the prompt still works, without the list
        folders = []
    where = (
        f"in the spec folder {spec_folder}"
        if spec_folder
        else "in the spec folder it belongs to (existing: " + (", ".join(folders[:30]) or "none yet") + ")"
    )
    return (
        f"Save this as a project memory with the memory_write tool, {where}:\n\n{decision}\n\n"
        "- title: one line naming the decision.\n"
        "- content: the decision, then why (what it rules out, the measurement or incident behind it). A few "
        "short paragraphs; cite files as path:line.\n"
        "- tier: constitutional (a rule for every task), critical (breaking it breaks things), important, "
        "normal (default) or temporary (true for now).\n"
        "- trigger_phrases: 2-5 short phrases a future prompt about this would contain.\n"
        "- tags: 1-4 lowercase words.\n"
        "- context_type: decision, convention, context or incident.\n"
        "memory_write reports memories that already say the same thing; if it names one, update that one "
        '(on_duplicate: "update") rather than saving a second copy.'
    )


def recall(
    ctx: Context,
    task: Annotated[str, Field(description="The task or question at hand")],
    budget: Annotated[str, Field(description="Token budget for the memories")] = str(DEFAULT_BUDGET),
) -> str:
    """The project's memories for a task (memory_context), ready to work with."""
    # Refusals are MCPErrors: the SDK answers any other exception from a prompt as a bare "Internal server error".
    try:
        tokens = int(budget)
    except ValueError:
        shown = budget if len(budget) <= 40 else f"{budget[:40]}… ({len(budget)} characters)"
        raise MCPError(INVALID_PARAMS, f"budget must be a whole number of tokens, not {shown!r}") from None
    if not MIN_BUDGET <= tokens <= MAX_BUDGET:
        raise MCPError(INVALID_PARAMS, f"budget must be between {MIN_BUDGET} and {MAX_BUDGET} tokens")
    try:
        block = _app(ctx).memories.context(task, budget=tokens)
    except SpecmemError as exc:
        raise MCPError(INVALID_PARAMS, str(exc)) from None
    return (
        f"{block.text}\n"
        f"Task: {task}\n\n"
        "Work on the task with these memories: follow the rules, cite memories you rely on as path:lines, and "
        "fetch a left-out memory (memory_get) if it matters."
    )


def spec_folders(mem: Memories) -> list[str]:
    """The spec folders that hold memories, biggest first (memories outside any spec folder are not one)."""
    counts = mem.stats().by_spec_folder
    return sorted((f for f in counts if f), key=lambda f: (-counts[f], f))


# -- completions ------------------------------------------------------------------------------------------------

COMPLETIONS = 100  # the protocol's most values per answer


async def complete(app: App, ref: Any, argument: CompletionArgument) -> Completion | None:
    """Values for the `remember` prompt's spec_folder and the path template's path that start with what was
    typed (case-insensitive), most used folders first, paths in order."""
    typed = argument.value.lower()
    if isinstance(ref, PromptReference) and ref.name == "remember" and argument.name == "spec_folder":
        values = await anyio.to_thread.run_sync(spec_folders, app.memories)
    elif isinstance(ref, ResourceTemplateReference) and ref.uri == PATH_TEMPLATE and argument.name == "path":
        values = [r.rel_path for r, _ in await anyio.to_thread.run_sync(listed, app.memories)]
        values.sort()
    else:
        return None
    matching = [v for v in values if v.lower().startswith(typed)]
    return Completion(
        values=matching[:COMPLETIONS], total=len(matching), has_more=len(matching) > COMPLETIONS
    )


# -- notifications ----------------------------------------------------------------------------------------------


@dataclass
class Notifier:
    """Sends list_changed and updated notifications when the index changes (learned from `index.db-updated`)."""

    bus: SubscriptionBus
    # Connections on protocol versions before 2026-07-28: a session of each (any request's serves: they send on
    # the connection's own channel) and the URIs it subscribed to.
    legacy: dict[int, tuple[ServerSession, set[str]]] = field(default_factory=dict)

    def _entry(self, session: ServerSession) -> tuple[ServerSession, set[str]]:
        key = _connection_key(session)
        if key not in self.legacy and len(self.legacy) >= MAX_CONNECTIONS:
            del self.legacy[next(iter(self.legacy))]  # the oldest: most likely a connection that closed
        return self.legacy.setdefault(key, (session, set()))

    def connect(self, session: ServerSession) -> None:
        self._entry(session)

    def subscribe(self, session: ServerSession, wanted: str) -> None:
        if len(wanted) > MAX_URI_CHARS:
            raise MCPError(
                INVALID_PARAMS, f"the URI is too long ({len(wanted)} characters, at most {MAX_URI_CHARS})"
            )
        entry = self._entry(session)
        if wanted not in entry[1] and len(entry[1]) >= MAX_SUBSCRIPTIONS:
            raise MCPError(
                INVALID_PARAMS,
                f"this connection already has {MAX_SUBSCRIPTIONS} subscriptions; unsubscribe from some first, or "
                "listen to resources/list_changed",
            )
        entry[1].add(wanted)

    def unsubscribe(self, session: ServerSession, uri: str) -> None:
        entry = self.legacy.get(_connection_key(session))
        if entry is not None:
            entry[1].discard(uri)

    async def run(self, app: App, *, interval: float = POLL_SECONDS) -> None:
        """Watch the signal file's stamp until cancelled; diff the memories whenever it changes (the served
        project can change once, when a server started outside one adopts the client's root)."""
        seen: object = None
        before: dict[int, tuple[Any, ...]] | None = None
        while True:
            mem = app.memories
            config = mem.config
            current = (config.db_path, mem.reader.version())
            if current != seen:
                seen = current
                try:
                    after = await anyio.to_thread.run_sync(_snapshot, mem)
                except SpecmemError as exc:
                    log.warning("cannot read the index for change notifications: %s", exc)
                else:
                    if before is not None:
                        await self.publish(before, after)
                    before = after
            await anyio.sleep(interval)

    async def publish(self, before: dict[int, tuple[Any, ...]], after: dict[int, tuple[Any, ...]]) -> None:
        listing_changed = {k: v[:-1] for k, v in before.items()} != {k: v[:-1] for k, v in after.items()}
        if listing_changed:
            await self._send(ResourcesListChanged(), None)
        for mid in sorted(m for m in before if before[m] != after.get(m)):  # changed or removed
            await self._send(ResourceUpdated(uri=uri(mid)), uri(mid))

    async def _send(self, event: ResourcesListChanged | ResourceUpdated, target: str | None) -> None:
        """To listen streams through the bus; to handshake-era subscribers directly (`target`: their URI)."""
        await self.bus.publish(event)
        for key, (session, uris) in list(self.legacy.items()):
            if target is not None and target not in uris:
                continue
            try:
                if target is None:  # every connection: list_changed needs no subscription
                    await session.send_resource_list_changed()
                else:
                    await session.send_resource_updated(target)
            except Exception:  # noqa: BLE001 - a closed connection: forget it
                log.debug("dropping the subscriptions of a closed connection", exc_info=True)
                self.legacy.pop(key, None)


def _connection_key(session: ServerSession) -> int:
    # The SDK builds a ServerSession per request. All of one connection's return the connection's one record of
    # the client's `initialize` parameters (a public property), so its identity names the connection.
    return id(session.client_params)


def _snapshot(mem: Memories) -> dict[int, tuple[Any, ...]]:
    """id → (what resources/list shows, then the content hash). A change of code status is a change of both."""
    return {
        r.id: (r.path, r.rel_path, r.title, r.tier, r.spec_folder, code, r.content_hash)
        for r, code in listed(mem)
    }


def register(server: MCPServer, serving: Callable[[], App]) -> None:
    """Add the resource templates, the prompts and completions to `server`; `serving` gives the running App
    (the SDK hands a completion handler no request context)."""
    server.resource(f"{SCHEME}{{id}}", name="memory", mime_type=MIME)(read_memory)
    server.resource(PATH_TEMPLATE, name="memory-by-path", mime_type=MIME)(read_path)
    server.prompt(title="Remember a decision")(remember)
    server.prompt(title="Recall memories for a task")(recall)

    async def completion(ref: Any, argument: CompletionArgument, _: Any) -> Completion | None:
        return await complete(serving(), ref, argument)

    server.completion()(completion)
