"""The public Python API: one object opened on a project's memory, with methods named after what users do.

    import specmem
    with specmem.open("specs") as mem:
        mem.scan()
        for hit in mem.search("why apsw", limit=5).results:
            print(hit.citation, hit.title)

Connections (read-only for reading, short-lived writers for writing), the embedding model and the write lock are
handled inside. The CLI and the MCP tools are thin layers over this class.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specmem.indexer import config, db
from specmem.indexer.errors import NotFound, SearchError, SpecmemError, WriteError
from specmem.server.state import ReadState

# Everything else is imported by the method that needs it: a CLI keyword search must not pay for numpy, pydantic,
# yaml, watchdog and the write path (specs/003-cli/memory/lazy-imports.md).
if TYPE_CHECKING:
    import apsw

    from specmem.indexer.checkpoints import CheckpointInfo, RestoreReport
    from specmem.indexer.config import Config
    from specmem.indexer.draft import Draft, OnDuplicate
    from specmem.indexer.embed import Embedder
    from specmem.indexer.project import InitPlan
    from specmem.indexer.remembered import Scan
    from specmem.indexer.scan import Progress, ScanReport
    from specmem.indexer.scanstate import ScanState
    from specmem.indexer.watch import Watcher
    from specmem.results import Deleted, Validation, Written
    from specmem.server.citations import StaleList
    from specmem.server.context import ContextBlock
    from specmem.server.memories import Memory, MemoryList, Stats, TriggerMatch
    from specmem.server.reads import MemoryRow
    from specmem.server.search import Filters, Mode, SearchResponse

log = logging.getLogger("specmem")
WAIT_POLL = 0.05
EXIT_EMBED_WAIT = 60.0  # a background host finishes its writes' embeddings for up to this long when it closes
EMBED_LOCK_TIMEOUT = 600.0
REBASE_LOCK_TIMEOUT = 30.0


class Memories:
    """A project's memory: the markdown files under its roots and the index derived from them.

    `background=True` is for long-running hosts (the MCP server): the model loads in a thread (unless
    `load_model=False`), searches never wait for it (they answer in keyword mode and say so), and embeddings
    after a write are computed in a thread. Otherwise the model loads when first needed and writes embed before
    they return."""

    def __init__(
        self,
        config: Config,
        *,
        embedder: Embedder | None = None,
        background: bool = False,
        load_model: bool = True,
        memory_vectors: bool | None = None,
    ) -> None:
        self.config = config
        self.background = background
        if config.db_url:  # the PostgreSQL engine behind the storage seam, reads and writes alike
            from specmem.server import pg_reads

            pg_reads.plug()
        # A long-running host keeps the vectors in memory (1.5 KB a chunk with the default model) for semantic
        # search without a scan of the table; `memory_vectors=False` keeps them on disk only.
        self._reader = ReadState(
            config,
            load_model=background and load_model,
            embedder=embedder,
            memory_vectors=background if memory_vectors is None else memory_vectors,
            on_first_open=self._follow_a_move,
        )
        self._own_embedder = embedder is not None
        # A background host's embedding worker (see _embed_soon): started by the first write, or at once to
        # embed what an earlier process left pending.
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._embed_wanted = threading.Event()
        self._embed_busy = False
        self._wrote = False  # this process wrote memories whose embeddings it owes
        self._closing = threading.Event()
        if background and load_model:
            self._start_worker(sweep=True)

    # -- life cycle -------------------------------------------------------------------------------------------

    def close(self, *, embed_wait: float = EXIT_EMBED_WAIT) -> None:
        """Close the read connections (writers are closed after each write). A background host first finishes
        the embeddings of what it wrote, for up to `embed_wait` seconds (the next process finishes the rest)."""
        if self._worker is not None and self._wrote:
            deadline = time.monotonic() + embed_wait
            if self._embed_wanted.is_set() or self._embed_busy:
                log.info("finishing the embeddings of the memories written here before closing")
            # Only while the worker runs: without a model it has ended, and nothing would clear what is wanted.
            while (
                self._worker.is_alive()
                and (self._embed_wanted.is_set() or self._embed_busy)
                and time.monotonic() < deadline
            ):
                time.sleep(WAIT_POLL)
        self._closing.set()
        self._embed_wanted.set()  # wakes the worker, which then ends
        self._reader.close()

    def __enter__(self) -> Memories:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Memories {', '.join(str(r) for r in self.config.roots)} → {self.config.index_name}>"

    @property
    def embedder(self) -> Embedder:
        return self._reader.embedder

    def _follow_a_move(self, conn: apsw.Connection) -> None:
        """Before the first read: an index whose project was moved or renamed is rebased onto the new roots (one
        short write; a scan would do the same), so that a search right after the move finds everything."""
        from specmem.indexer import moved
        from specmem.indexer.lock import FileLock

        if not moved.moves(conn, self.config):
            return
        try:
            with self.writer() as writer, FileLock(self.config.write_lock_path, "rebase") as lock:
                lock.acquire(REBASE_LOCK_TIMEOUT)
                moved.rebase(writer, self.config)
        except SpecmemError as exc:
            log.warning(
                "the project moved, and its index could not be brought along here (%s): run `specmem scan` "
                "where the index can be written",
                exc,
            )

    @property
    def reader(self) -> ReadState:
        """The read side: a read-only connection per thread, reopened when the index changes on disk."""
        return self._reader

    @contextmanager
    def writer(self) -> Iterator[apsw.Connection]:
        """A short-lived writing connection (creates the index and applies migrations when needed)."""
        conn = db.open_writer(self.config)
        try:
            yield conn
        finally:
            conn.close()

    # -- reading ----------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        include_deprecated: bool = False,
        include_constitutional: bool = True,
        all_rules: bool = False,
        now: dt.datetime | None = None,
        projects: Sequence[str] | None = None,
    ) -> SearchResponse:
        """Memories for `query`, best first, with citations, score parts and snippets; each result names its
        project.

        Constitutional memories are ranked by relevance and hold at most `config.surface_constitutional`
        (SPECMEM_SURFACE) and a third of `limit`; `all_rules` puts every one of them on top, matched or not.
        `projects`: other projects of a shared (PostgreSQL) index searched too, by name ("*": every project);
        default those of `config.projects` (SPECMEM_PROJECTS), none unless set."""
        if not query.strip():
            raise SearchError('the query is empty: give words to search for, e.g. "token expiry"')
        from specmem.server.search import search

        others = self.config.projects if projects is None else projects
        conn = self._reader.scoped(others)
        response = search(
            conn,
            query,
            limit=limit,
            mode=mode,
            filters=filters,
            embedder=self._query_embedder(conn, mode),
            include_deprecated=include_deprecated,
            include_constitutional=include_constitutional,
            surface=None if all_rules else self.config.surface_constitutional,
            now=now,
            vectors=None if mode == "keyword" or others else self._reader.vectors(conn),
        )
        self._name_projects(conn, response.results)
        if response.pending_embeddings and mode != "keyword":
            response.notes.append(self._who_embeds())
        return response

    def _who_embeds(self) -> str:
        """Who is computing the missing embeddings, or what to run: said with every search that lacks some."""
        from specmem.indexer import scanstate
        from specmem.indexer.lock import watcher_holder

        state = scanstate.read(self.config.scan_state_path)
        if state is not None and state.alive:
            return f"a scan (pid {state.pid}) is computing them: {state.describe()}"
        holder = watcher_holder(self.config)
        if holder is not None:
            return f"the {holder.describe()} that keeps this index live is computing them"
        if self.background:
            return "this server computes them once its model is loaded"
        return "run `specmem scan` to compute them"

    def _query_embedder(self, conn: apsw.Connection, mode: Mode) -> Embedder | None:
        if mode == "keyword":
            return None
        if self.background:
            return self._reader.ready_embedder()
        if db.get_config(conn, "model") is None:
            return None
        if self._own_embedder:
            return self._reader.embedder
        # A one-shot search embeds its query with ONNX Runtime when it can: no torch import, under a second.
        from specmem.indexer.onnx_embed import get_query_embedder

        return get_query_embedder(self.config.model)

    def get(
        self,
        id_or_path: str | int,
        *,
        anchor: str | None = None,
        start_line: int | None = None,
        end_line: int | None = None,
    ) -> Memory:
        """One memory with its content read from its file (which must lie inside the roots). On a shared index an
        id may be any project's (search results across projects name theirs); a path is this project's."""
        from specmem.server import memories

        by_id = self.config.db_url is not None and str(id_or_path).strip().isdigit()
        conn = self._reader.conn_for(["*"]) if by_id else self._reader.conn()
        found = memories.get(
            conn,
            self._reader.config_of(conn),
            id_or_path,
            anchor=anchor,
            start_line=start_line,
            end_line=end_line,
        )
        self._name_projects(conn, [found])
        return found

    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        spec_folder: str | None = None,
        tier: str | None = None,
        sort: str = "updated",
        projects: Sequence[str] | None = None,
    ) -> MemoryList:
        """A page of memories (newest first by default); `projects` as `search` takes them, each item naming
        its project."""
        from specmem.server import memories

        conn = self._reader.scoped(projects)
        found = memories.list_memories(
            conn, offset=offset, limit=limit, spec_folder=spec_folder, tier=tier, sort=sort
        )
        self._name_projects(conn, found.items)
        return found

    def _name_projects(self, conn: apsw.Connection, items: Sequence[Any]) -> None:
        """Set `project` on each item (anything with an `id`): its project's name in a shared index, else this
        project's."""
        names = self._reader.project_names(conn, [item.id for item in items])
        for item in items:
            item.project = names.get(item.id, self.config.index_project)

    def triggers(
        self, prompt: str, *, limit: int = 10, projects: Sequence[str] | None = None
    ) -> builtins.list[TriggerMatch]:
        """Memories whose trigger phrases occur in `prompt` as whole words (`projects` as `search` takes them)."""
        from specmem.server import memories

        conn = self._reader.scoped(projects)
        seen = getattr(conn, "projects", ())
        index = self._reader.cached(f"triggers {seen}", lambda _: memories.trigger_index(conn))
        return memories.match_triggers(index, prompt, limit)

    def context(
        self, task: str, *, budget: int | None = None, projects: Sequence[str] | None = None
    ) -> ContextBlock:
        """One ready-to-paste block of memories for `task` within `budget` tokens: constitutional rules, then
        memories whose trigger phrases the task contains, then the best search results, each with its citation;
        what did not fit is listed. `budget` defaults to `context.DEFAULT_BUDGET` (2,000 tokens). `projects` as
        `search` takes them: the rules, triggers and results of those projects too."""
        from specmem.server.context import DEFAULT_BUDGET, SEARCH_CANDIDATES, assemble

        found = self.search(task, limit=SEARCH_CANDIDATES, all_rules=True, projects=projects)
        triggered = self.triggers(task, limit=100, projects=projects)
        conn = self._reader.scoped(projects)
        block = assemble(
            conn,
            self._reader.config_of(conn),
            self.embedder.count_tokens,
            task,
            found,
            triggered,
            budget=DEFAULT_BUDGET if budget is None else budget,
        )
        self._name_projects(conn, [*block.items, *block.left_out])
        return block

    def stale(self, *, limit: int = 50, offset: int = 0) -> StaleList:
        """Memories whose cited code changed or is gone since they were written, the longest unreviewed first,
        each with those citations (and their diffs). Confirm one with `update(..., confirm_citations=True)`."""
        from specmem.server import citations

        return citations.stale(self._reader.conn(), limit=limit, offset=offset)

    def served(self, projects: Sequence[str] | None = None) -> builtins.list[MemoryRow]:
        """Every memory but deprecated ones, most important first (what the MCP server lists as resources);
        `projects` as `search` takes them."""
        from specmem.server import reads

        return reads.served(self._reader.scoped(projects))

    def vector_version(self) -> str:
        """The version of the vector search extension the index uses."""
        from specmem.server import reads

        return reads.vector_version(self._reader.conn())

    def code_statuses(self, projects: Sequence[str] | None = None) -> dict[int, str]:
        """Each memory's code status (its worst citation's), for the memories that cite code."""
        from specmem.server import citations

        return citations.worst(self._reader.scoped(projects))

    def stats(self) -> Stats:
        """Counts by tier, folder, context type and embedding status; files with warnings; the watcher."""
        from specmem.server import memories

        return self._reader.cached("stats", lambda conn: memories.stats(conn, self.config))

    def wait_for_index(
        self, timeout: float, *, settling: Callable[[], bool] = lambda: False
    ) -> ScanState | None:
        """Wait up to `timeout` seconds while a full scan's keyword phase runs (in any process), or while
        `settling` says the index is about to be built; None once the index is complete for keyword search,
        else the scan's state (what to tell the user)."""
        from specmem.indexer import scanstate

        deadline = time.monotonic() + timeout
        while True:
            state = scanstate.read(self.config.scan_state_path)
            building = state is not None and state.keyword and state.alive
            if not building and not settling():
                return None
            if time.monotonic() >= deadline:
                return state if building else scanstate.ScanState(os.getpid(), "", "walking", 0, 0, 0, 0)
            time.sleep(WAIT_POLL)  # another process's progress: a file to poll, no event to wait on

    def pending(self) -> int:
        """Memories whose embeddings are not computed yet."""
        return self._reader.cached("pending", db.pending_count)

    # -- indexing ---------------------------------------------------------------------------------------------

    def scan(
        self,
        paths: Sequence[str | os.PathLike[str]] | None = None,
        *,
        spec_folder: str | None = None,
        force: bool = False,
        embed: bool | None = None,
        progress: Progress | None = None,
    ) -> ScanReport:
        """Bring the index in line with the files: every root, some `paths` inside them, or one spec folder.

        Keyword rows are committed before embeddings are computed; `embed=False` leaves those for later
        (a background host embeds them in a thread)."""
        from specmem.indexer.scan import scan

        scopes = self.scopes(paths, spec_folder)
        if embed is None:
            embed = not self.background
        with self.writer() as conn:
            report = scan(
                conn, self.config, self.embedder, scopes=scopes, force=force, embed=embed, progress=progress
            )
        if scopes is None and self.config.searches_project:
            # The scan searched the project for the conventions' places: read what it found from now on.
            self.config = config.with_remembered_places(self.config)
            self._reader.config = self.config
        if not embed:
            self._embed_soon()
        return report

    def save(self, path: str | os.PathLike[str]) -> ScanReport:
        """Index one memory file now (after writing or editing it)."""
        from specmem.indexer import files

        target = self.resolve_path(path)
        if target.is_dir() or not files.Policy.of(self.config).is_memory_file(target):
            raise NotFound(f"{path} is not a memory file: give one *.md file (scan does folders)")
        from specmem.server import reads

        if not target.exists() and reads.memory_by_path(self._reader.conn(), str(target)) is None:
            raise NotFound(f"{target} does not exist and is not indexed; give the path of a memory file")
        report = self.scan([target])  # a file deleted since it was indexed leaves the index
        if report.files_seen == 0 and target.exists():
            why = files.skip_reason(target, self.config.roots, files.Policy.of(self.config))
            why = why or "it is not a memory file"
            raise NotFound(f"{target} is not indexed: {why}")
        return report

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        """A path named by a user, resolved against the roots (or the current folder); refused outside them."""
        from specmem.indexer import files

        text = os.fspath(path)
        candidates = files.user_paths(text, self.config.project, self.config.roots)
        raw = Path(text).expanduser()
        inside = [c for c in candidates if files.inside_roots(c, self.config.roots)]
        if inside and inside[0] == candidates[0] and inside[0].exists():
            return Path(os.path.abspath(inside[0]))  # from here (or absolute): one file
        existing = list(dict.fromkeys(Path(os.path.abspath(c)) for c in inside if c.exists()))
        if len(existing) > 1:  # relative to the project and the roots, it names a file in several of them
            from specmem.server import memories

            raise NotFound(memories.ambiguous(text, [(str(p), None) for p in existing]))
        if existing:
            return existing[0]
        if inside and raw.is_absolute():
            return Path(os.path.abspath(inside[0]))
        roots = ", ".join(str(r) for r in self.config.roots)
        if inside:
            raise NotFound(f"{text} does not exist under the memory roots ({roots})")
        raise NotFound(f"{text} is outside the memory roots ({roots}); give a path inside them")

    def scopes(
        self, paths: Sequence[str | os.PathLike[str]] | None = None, spec_folder: str | None = None
    ) -> tuple[Path, ...] | None:
        """The folders or files a scan of `paths` or of `spec_folder` covers (None: every root)."""
        from specmem.indexer import files

        if paths and spec_folder:
            raise WriteError("give paths or a spec folder, not both")
        if paths:
            return tuple(self.resolve_path(p) for p in paths)
        if spec_folder:
            return tuple(folder for _, folder in files.spec_folder_dirs(self.config.roots, spec_folder))
        return None

    def embed(self) -> int:
        """Compute every missing embedding now; returns how many chunks were embedded."""
        from specmem.indexer.embed import embed_pending

        with self.writer() as conn:
            embedded, _ = embed_pending(conn, self.embedder, self.config.signal_path)
        return embedded

    def _embed_soon(self) -> None:
        """In a background host, have the embedding worker embed what a write left pending: at once, or as soon
        as the model has loaded. Wanted again while a pass runs, it runs once more (nothing written meanwhile is
        left behind)."""
        if not self.background:
            return
        self._wrote = True
        self._embed_wanted.set()
        self._start_worker(sweep=False)

    def _start_worker(self, *, sweep: bool) -> None:
        with self._worker_lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._embed_worker, args=(sweep,), name="specmem-embed", daemon=True
                )
                self._worker.start()

    def _embed_worker(self, sweep: bool) -> None:
        """Embeds pending chunks whenever wanted, after the model has loaded. `sweep`: first embed what earlier
        processes left pending (a server that exited before its writes were embedded), unless a watcher keeps
        this index live (it embeds them) or the index cannot be written here."""
        from specmem.indexer.embed import background_thread

        background_thread()
        if not self._reader.wait_model():
            self._embed_wanted.clear()
            return  # no model: searches answer in keyword mode, and nothing can be embedded here
        if sweep and not self._closing.is_set() and self._sweep_wanted():
            self._embed_wanted.set()
        while True:
            self._embed_wanted.wait()
            if self._closing.is_set():
                return
            self._embed_busy = True
            self._embed_wanted.clear()
            try:
                self._embed_pass()
            except Exception:  # noqa: BLE001 - logged with its traceback; the next write retries
                log.exception("background embedding failed")
            finally:
                self._embed_busy = False

    def _sweep_wanted(self) -> bool:
        """Whether earlier processes left chunks to embed; a check that fails (the index closed or dropped under
        a server that is ending) is no sweep, never an exception in this thread."""
        try:
            return self._left_pending()
        except Exception:  # noqa: BLE001 - best effort: said unless closing, and the next write embeds anyway
            if not self._closing.is_set():
                log.exception("could not check for embeddings left pending")
            return False

    def _left_pending(self) -> bool:
        from specmem.indexer.lock import watcher_holder

        if watcher_holder(self.config) is not None:
            return False
        if not os.access(self.config.db_path, os.W_OK) or not os.access(self.config.db_path.parent, os.W_OK):
            return False
        try:
            return self.pending() > 0
        except SpecmemError:
            return False  # no index yet

    def _embed_pass(self) -> None:
        """One `embed()` at a time per index among the servers: several starting together would each compute the
        same vectors. One that waits here finds little or nothing left when its turn comes."""
        from specmem.indexer.lock import FileLock

        with FileLock(self.config.embed_lock_path, "embed") as lock:
            lock.acquire(EMBED_LOCK_TIMEOUT)
            self.embed()

    def watch(self, **options: Any) -> Watcher:
        """Start keeping the index live (see `Watcher`); call `.stop()` on the result, or use it in `with`."""
        from specmem.indexer.watch import Watcher

        watcher = Watcher(self.config, self.embedder, **options)
        watcher.start()
        return watcher

    # -- writing ----------------------------------------------------------------------------------------------

    def _after_write(self, conn: apsw.Connection) -> None:
        if self.background:
            self._embed_soon()
        else:
            from specmem.indexer.embed import embed_pending

            embed_pending(conn, self.embedder, self.config.signal_path)

    def write(
        self,
        title: str | Draft,
        content: str = "",
        spec_folder: str = "",
        *,
        tier: str = "normal",
        context_type: str | None = None,
        trigger_phrases: Sequence[str] = (),
        tags: Sequence[str] = (),
        on_duplicate: OnDuplicate | None = None,
    ) -> Written:
        """Save a new memory file (`<spec_folder>/memory/<date>-<slug>.md`, never overwriting one) and index it.

        `title` may be a whole `Draft` (the edges build one), whose fields then replace the others. Memories of
        the spec folder that already say the same (same content, same title, or similar meaning) are returned in
        `duplicates`; `on_duplicate` decides: "write" anyway, "skip" (return the existing one), or "update" it
        (after a checkpoint). By default an exact duplicate is skipped and anything else written with a warning."""
        from specmem.indexer.draft import Draft
        from specmem.indexer.write import save
        from specmem.results import Written
        from specmem.server.duplicates import find

        draft = (
            title
            if isinstance(title, Draft)
            else Draft(title, content, spec_folder, tier, context_type, tuple(trigger_phrases), tuple(tags))
        )
        with self.writer() as conn:
            outcome = save(
                conn,
                self.config,
                self.embedder,
                draft,
                lambda: find(conn, self._similarity_embedder(conn), draft, self.config.roots),
                on_duplicate,
            )
            if outcome.action != "skipped":
                self._after_write(conn)
        return Written(**vars(outcome))

    def _similarity_embedder(self, conn: apsw.Connection) -> Embedder | None:
        """The embedder for duplicate checks: only when its model is ready and the index holds its vectors."""
        embedder = self._reader.ready_embedder() if self.background else self.embedder
        if embedder is None or db.get_config(conn, "model") != embedder.model_id:
            return None
        return embedder

    def update(
        self,
        id_or_path: str | int,
        *,
        title: str | None = None,
        tier: str | None = None,
        context_type: str | None = None,
        trigger_phrases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        confirm_citations: bool = False,
    ) -> Written:
        """Change frontmatter keys of one memory; only the lines of the keys that change are rewritten.

        `confirm_citations`: the memory still holds for the code as it is now. Its citations are baselined anew:
        line anchors of moved or changed code are rewritten to where those lines are now, and `cites_checked`
        in the frontmatter records when (so the confirmation travels with the file, and a rebuild keeps it)."""
        from specmem.indexer.write import rewrite_memory, update_memory
        from specmem.results import Written
        from specmem.server import memories

        changes = {
            "title": title,
            "importance_tier": tier,
            "context_type": context_type,
            "trigger_phrases": list(trigger_phrases) if trigger_phrases is not None else None,
            "tags": list(tags) if tags is not None else None,
        }
        with self.writer() as conn:
            row, path = memories.find_served(conn, self.config, id_or_path)
            changed = update_memory(conn, self.config, self.embedder, path, changes)
            if confirm_citations:
                from specmem.indexer import citations

                cited = citations.memory_rows(conn, row.id)
                if not cited:
                    raise WriteError(
                        f"memory {row.id} cites no code (no links with lines, no `cites:`): nothing to confirm"
                    )
                when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                changed += rewrite_memory(
                    conn, self.config, self.embedder, path, citations.confirming(cited, when)
                )
            if changed:
                self._after_write(conn)  # a new title changes the text its chunks are embedded with
        return Written(id=row.id, path=str(path), changed=changed)

    def delete(
        self, id_or_path: str | int | None = None, *, spec_folder: str | None = None, confirm: bool = False
    ) -> Deleted:
        """Delete one memory, or every memory of a spec folder (`confirm=True`), after an automatic checkpoint."""
        from specmem.indexer.write import delete_memory, delete_spec_folder
        from specmem.results import Deleted
        from specmem.server import memories

        if (id_or_path is None) == (spec_folder is None):
            raise WriteError("give a memory (id or path) or a spec folder, one of them")
        with self.writer() as conn:
            if id_or_path is not None:
                _, path = memories.find_served(conn, self.config, id_or_path)
                targets, name = delete_memory(conn, self.config, self.embedder, path)
            else:
                assert spec_folder is not None
                if not confirm:
                    raise WriteError(f"deleting every memory of {spec_folder!r} needs confirm")
                targets, name = delete_spec_folder(conn, self.config, self.embedder, spec_folder)
        return Deleted(deleted=[str(p) for p in targets], checkpoint=name)

    def validate(self, memory_id: int, useful: bool) -> Validation:
        """Record whether a memory helped: its confidence moves toward 1 or 0 and weighs its ranking."""
        from specmem.indexer.feedback import validate
        from specmem.results import Validation

        with self.writer() as conn:
            before, after = validate(conn, self.config, memory_id, useful)
        return Validation(id=memory_id, useful=useful, confidence_before=before, confidence_after=after)

    # -- checkpoints ------------------------------------------------------------------------------------------

    def checkpoint(self, name: str, *, spec_folder: str | None = None) -> CheckpointInfo:
        """Save the content of every memory file (all, or one spec folder) with their validation scores."""
        from specmem.indexer import checkpoints

        with self.writer() as conn:
            return checkpoints.create(conn, self.config, name, spec_folder=spec_folder)

    def checkpoints(self) -> builtins.list[CheckpointInfo]:
        """Checkpoints, newest first."""
        from specmem.indexer import checkpoints

        return checkpoints.list_all(self._reader.conn())

    def restore(self, name: str, *, clear_newer: bool = False) -> RestoreReport:
        """Rewrite the memory files to their content in a checkpoint and re-index them."""
        from specmem.indexer import checkpoints

        with self.writer() as conn:
            report = checkpoints.restore(conn, self.config, self.embedder, name, clear_newer=clear_newer)
            self._after_write(conn)
        return report

    def delete_checkpoint(self, name: str) -> None:
        """Delete one checkpoint."""
        from specmem.indexer import checkpoints

        with self.writer() as conn:
            checkpoints.delete(conn, name)


def init(
    folder: str | os.PathLike[str] = ".",
    *,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    dry_run: bool = False,
    examples: bool = False,
) -> InitPlan:
    """Set a project up: `specmem.toml`, an example rule and memory (only where the project keeps no memory yet,
    or with `examples`), `.specmem/` kept out of git, and `.mcp.json` for Claude Code. Never overwrites a file;
    the plan says what was created and kept, which memory the project keeps (the roots and the assistants'
    conventions' places, found anywhere in it) and which markdown is not read."""
    from specmem.indexer import project

    plan = project.plan(Path(folder), [os.fspath(r) for r in roots] if roots else None, examples=examples)
    if not dry_run:
        project.apply(plan)
    return plan


def forget(
    folder: str | os.PathLike[str] | None = None, *, everything: bool = False
) -> tuple[builtins.list[Scan], builtins.list[Path]]:
    """Forget the scan remembered for `folder` (default: the current one; the one commands run there use), or
    `everything`; an index specmem made for it in the user data folder is deleted too. Returns the scans forgotten
    and the index files deleted."""
    from specmem.indexer import remembered

    where = Path(folder or ".").expanduser().resolve()
    if everything:
        scans = remembered.load()
    else:
        found = remembered.remembered_for(where)
        scans = [found] if found is not None else []
    if not scans:
        known = remembered.load()
        listed = "; ".join(s.describe() for s in known[-5:]) if known else "none"
        raise NotFound(
            f"no scan is remembered for {where}; remembered: {listed}"
            + (" (run `specmem forget` in a folder above, or `specmem forget --all`)" if known else "")
        )
    return scans, remembered.forget(scans)


def open(  # noqa: A001 - specmem.open(...), like sqlite3.connect or io.open
    roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    model: str | None = None,
    embedder: Embedder | None = None,
    background: bool = False,
) -> Memories:
    """Open a project's memory: `roots` (a folder or several; default the project's `specs/`), its index `db`
    (default `<project>/.specmem/index.db`), and the embedding `model`. Settings not given resolve from the
    SPECMEM_* environment and `specmem.toml`, as the CLI does."""
    if roots is None:
        root_list = None
    elif isinstance(roots, str | os.PathLike):
        root_list = [roots]
    else:
        root_list = list(roots)
    cfg = config.resolve(db=db, roots=root_list, model=model)
    return Memories(cfg, embedder=embedder, background=background)


def __getattr__(name: str) -> Any:
    # The write results live in specmem.results (pydantic); `from specmem.api import Written` still works.
    if name in ("Written", "Deleted", "Validation"):
        from specmem import results

        return getattr(results, name)
    raise AttributeError(f"module 'specmem.api' has no attribute {name!r}")
