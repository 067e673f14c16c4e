"""The `specmem` command: thin wrappers that parse arguments, call one library function and print the result."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from indexer import config as configmod
from indexer import db
from indexer.checkpoints import CheckpointError
from indexer.embed import get_embedder, resolve_model_path
from indexer.files import SpecFolderError
from indexer.index import ScanReport, scan
from indexer.lock import LockTimeout, WatcherBusy
from indexer.parse import TIERS
from indexer.write import WriteError
from server import memories
from server.search import Filters, SearchError, SearchResponse, search

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
KNOWN_ERRORS = (
    configmod.ConfigError,
    db.DatabaseError,
    SearchError,
    memories.MemoryNotFound,
    LockTimeout,
    WatcherBusy,
    WriteError,
    CheckpointError,
    SpecFolderError,
)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command shares: where the index is, which roots, which model."""

    @click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False),
        help="Index file [env SPECMEM_DB; default <project>/.specmem/index.db].",
    )
    @click.option(
        "--root",
        "roots",
        multiple=True,
        type=click.Path(file_okay=False),
        help="A folder of memory files; repeat for several [env SPECMEM_ROOTS; default <project>/specs].",
    )
    @click.option(
        "--model",
        help="Embedding model: a sentence-transformers folder or name [env SPECMEM_MODEL; "
        f"default {configmod.DEFAULT_MODEL}, shipped offline].",
    )
    @functools.wraps(fn)
    def wrapper(db_path: str | None, roots: tuple[str, ...], model: str | None, **kwargs: Any) -> Any:
        extra_roots = kwargs.pop("root_args", ()) or ()
        cfg = configmod.resolve(db=db_path, roots=[*roots, *extra_roots] or None, model=model)
        return fn(cfg, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="specmem")
def cli() -> None:
    """specmem: long-term memory for AI coding assistants, kept as markdown files in your repository.

    Memory files are *.md files under the roots (default: the project's specs/ folder), with YAML frontmatter
    giving each an importance tier. `specmem scan` indexes them into SQLite; `specmem search` finds them.
    Settings resolve as: option, then SPECMEM_* environment variable, then default (see `specmem paths`).
    """


def _progress_cb(progress: Progress) -> Callable[[str, int, int], None]:
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    return update


@cli.command("scan")
@click.argument("root_args", nargs=-1, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Re-read and re-index every file, even unchanged ones.")
@click.option(
    "--no-embed", is_flag=True, help="Keyword phase only; a later plain scan completes the embeddings."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@common
def scan_cmd(cfg: configmod.Config, force: bool, no_embed: bool, as_json: bool) -> None:
    """Index the memory files under ROOT... (default: the configured roots).

    Unchanged files are skipped by size and mtime, then by content hash; removed files leave the index; moved or
    renamed files keep their embeddings. Keyword search sees the changes before the embeddings are computed.
    """
    missing = [r for r in cfg.roots if not r.is_dir()]
    if missing:
        raise configmod.ConfigError(
            f"root folder {missing[0]} does not exist; create it, or pass an existing folder (specmem scan DIR)"
        )
    conn = db.connect(cfg.db_path)
    embedder = get_embedder(cfg.model)
    if err.is_terminal and not as_json:
        columns = (
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as progress:
            report = scan(
                conn, cfg, embedder, force=force, embed=not no_embed, progress=_progress_cb(progress)
            )
    else:
        report = scan(conn, cfg, embedder, force=force, embed=not no_embed)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report, cfg)


def _print_report(report: ScanReport, cfg: configmod.Config) -> None:
    out.print(
        f"scanned {report.files_seen} files in {', '.join(str(r) for r in cfg.roots)}: "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.moved} moved, "
        f"{report.removed} removed"
    )
    out.print(
        f"embeddings: {report.embedded_chunks} chunks embedded, {report.reused_chunks} reused from cache, "
        f"{report.pending_embeddings} memories pending; {report.seconds:.2f} s "
        f"(keyword phase {report.keyword_seconds:.2f} s)"
    )
    if report.embedding_error:
        out.print(f"[yellow]embeddings skipped:[/] {escape(report.embedding_error)}")
    for path, message in report.problems:
        out.print(f"[red]problem[/] {escape(path)}: {escape(message)}")
    for path, message in report.warnings:
        out.print(f"[yellow]warning[/] {escape(path)}: {escape(message)}")
    out.print(f"index: {cfg.db_path}")


@cli.command("watch")
@click.argument("root_args", nargs=-1, type=click.Path(file_okay=False))
@click.option(
    "--debounce",
    type=click.FloatRange(0.0, 10.0),
    default=0.15,
    show_default=True,
    help="Seconds of quiet after the last change before a batch is applied.",
)
@click.option(
    "--polling",
    is_flag=True,
    help="Poll the folders every second instead of native events (network drives, some containers).",
)
@click.option(
    "--no-embed", is_flag=True, help="Keep keyword rows live only; a later scan computes embeddings."
)
@click.option("-v", "--verbose", is_flag=True, help="Log every batch and event on stderr.")
@common
def watch_cmd(cfg: configmod.Config, debounce: float, polling: bool, no_embed: bool, verbose: bool) -> None:
    """Keep the index live: reconcile once, then apply every save, rename, delete and git checkout as it happens.

    Changes are coalesced for --debounce seconds and applied in one write batch; keyword search sees them at once,
    embeddings follow in the background. One watcher per database: a second one exits, naming the first.
    Stop with Ctrl-C (or SIGTERM): the batch in progress is finished first. Status lines go to stderr.
    """
    from indexer.watch import Watcher

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    for root in cfg.roots:
        if not root.is_dir():
            err.print(f"[yellow]warning:[/] root {escape(str(root))} does not exist yet; watching for it")
    ready = threading.Event()

    def on_batch(report: ScanReport) -> None:
        changed = report.added + report.updated + report.moved + report.removed
        if not ready.is_set():
            ready.set()
            err.print(
                f"{time.strftime('%H:%M:%S')} ready: {report.files_seen} memory files "
                f"({report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed "
                f"since last time); watching {', '.join(str(r) for r in cfg.roots)} (Ctrl-C to stop)"
            )
        elif changed or verbose:
            err.print(
                f"{time.strftime('%H:%M:%S')} indexed: {report.added} added, {report.updated} updated, "
                f"{report.moved} moved, {report.removed} removed in {report.keyword_seconds * 1000:.0f} ms"
                + (
                    f" · {report.pending_embeddings} waiting for embeddings"
                    if report.pending_embeddings
                    else ""
                )
            )

    def on_embedded(count: int) -> None:
        if verbose:
            err.print(f"{time.strftime('%H:%M:%S')} embedded {count} chunks")

    # A background daemon: the servers answering an assistant come first on a busy CPU. Lower priority, and
    # embeddings on one core (torch reads this when it loads, which happens later, in the embedding thread).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    watcher = Watcher(
        cfg,
        get_embedder(cfg.model),
        debounce=debounce,
        polling=polling,
        embed=not no_embed,
        on_batch=on_batch,
        on_embedded=on_embedded,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    watcher.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        err.print("stopping: finishing the batch in progress")
        watcher.stop()
    err.print(f"stopped after {watcher.status.batches} batches")


@cli.command("serve")
@click.option(
    "--http", is_flag=True, help="Serve over streamable HTTP (for several clients) instead of stdio."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP address to bind; keep it local.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="HTTP port.")
@click.option(
    "--watch/--no-watch",
    default=None,
    help="Host the live watcher when no other process does (default on) [env SPECMEM_WATCH=0 turns it off].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every tool call on stderr.")
@common
def serve_cmd(
    cfg: configmod.Config, http: bool, host: str, port: int, watch: bool | None, verbose: bool
) -> None:
    """Run the MCP server: memory_search, memory_get, memory_list and the other tools.

    Over stdio by default, which is how Claude Desktop, Claude Code and editors launch it; the protocol owns
    stdout and logs go to stderr. The embedding model loads in the background: until it is ready, searches
    answer at once in keyword mode and say so. Exactly one process watches a database: the first server (or
    `specmem watch`) to take its watcher lock; the others read, and take over within seconds if it exits.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s specmem %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from server.mcp_server import serve

    if watch is None:
        watch = os.environ.get("SPECMEM_WATCH", "1").strip().lower() not in ("0", "false", "no", "off")
    serve(cfg, http=http, host=host, port=port, watch=watch)


@cli.command("write")
@click.option("--title", required=True, help="One line; also names the file (date + slug).")
@click.option("--spec-folder", required=True, help="e.g. 003-auth; the file goes to <spec folder>/memory/.")
@click.option("--tier", type=click.Choice(TIERS), default="normal", show_default=True)
@click.option("--context-type", help="e.g. decision, context, convention.")
@click.option("--trigger", "triggers", multiple=True, help="A trigger phrase; repeatable.")
@click.option("--tag", "tags", multiple=True, help="A tag; repeatable.")
@click.argument("content", required=False)
@common
def write_cmd(
    cfg: configmod.Config,
    title: str,
    spec_folder: str,
    tier: str,
    context_type: str | None,
    triggers: tuple[str, ...],
    tags: tuple[str, ...],
    content: str | None,
) -> None:
    """Save a new memory file (CONTENT, or stdin when omitted) and index it at once. Never overwrites a file."""
    from indexer.write import write_memory

    if content is None:
        content = sys.stdin.read()
    conn = db.connect(cfg.db_path)
    mid, path = write_memory(
        conn,
        cfg,
        get_embedder(cfg.model),
        title=title,
        content=content,
        spec_folder=spec_folder,
        tier=tier,
        context_type=context_type,
        trigger_phrases=list(triggers),
        tags=list(tags),
    )
    out.print(f"memory {mid} written to {escape(str(path))}")


@cli.group("checkpoint")
def checkpoint_group() -> None:
    """Save and restore the memory files (with their validation scores) as they are now."""


@checkpoint_group.command("create")
@click.argument("name")
@click.option("--spec-folder", help="Only this spec folder (default: every memory file).")
@common
def checkpoint_create_cmd(cfg: configmod.Config, name: str, spec_folder: str | None) -> None:
    """Save a checkpoint called NAME."""
    from indexer import checkpoints

    info = checkpoints.create(db.connect(cfg.db_path), cfg, name, spec_folder=spec_folder)
    out.print(f"checkpoint {escape(name)}: {info.file_count} files, {info.size_bytes} bytes")


@checkpoint_group.command("list")
@common
def checkpoint_list_cmd(cfg: configmod.Config) -> None:
    """Checkpoints, newest first."""
    from indexer import checkpoints

    for c in checkpoints.list_all(db.connect(cfg.db_path)):
        where = f" · {c.git_branch}@{(c.git_commit or '')[:8]}" if c.git_branch else ""
        out.print(
            f"{escape(c.name)}  {_clock(c.created_at)}  scope {escape(c.scope or 'all')}  {c.file_count} files"
            f"{where}{' (automatic)' if c.automatic else ''}"
        )


@checkpoint_group.command("restore")
@click.argument("name")
@click.option("--clear-newer", is_flag=True, help="Also delete memory files created since the checkpoint.")
@common
def checkpoint_restore_cmd(cfg: configmod.Config, name: str, clear_newer: bool) -> None:
    """Rewrite the memory files to their content in checkpoint NAME and re-index them."""
    from indexer import checkpoints

    report = checkpoints.restore(
        db.connect(cfg.db_path), cfg, get_embedder(cfg.model), name, clear_newer=clear_newer
    )
    out.print(
        f"restored {len(report.restored)} files, {report.unchanged} unchanged, {len(report.removed)} removed"
    )
    for path in report.newer_kept:
        out.print(f"kept (created since; --clear-newer removes it): {escape(path)}")


@checkpoint_group.command("delete")
@click.argument("name")
@common
def checkpoint_delete_cmd(cfg: configmod.Config, name: str) -> None:
    """Delete checkpoint NAME."""
    from indexer import checkpoints

    checkpoints.delete(db.connect(cfg.db_path), name)
    out.print(f"deleted checkpoint {escape(name)}")


@cli.command("doctor")
@click.option("--no-model", is_flag=True, help="Skip loading the embedding model (a few seconds).")
@common
def doctor_cmd(cfg: configmod.Config, no_model: bool) -> None:
    """Check the install (apsw, FTS5, sqlite-vec, the model offline) and the index (integrity, schema, model,
    orphan rows, pending embeddings, watcher lock), and say what to do about each problem. Exit 1 on a failure."""
    from server import doctor

    checks = doctor.run(cfg, load_model=not no_model)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        out.print(f"[{colour[c.status]}]{c.status:>4}[/] {c.name:<11} {escape(c.detail)}")
        if c.fix:
            out.print(f"{'':17}→ {escape(c.fix)}")
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


def _parse_since(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM", param_hint="--since"
        ) from None


@cli.command("search")
@click.argument("query")
@click.option(
    "-n", "--limit", default=10, show_default=True, type=click.IntRange(1, 1000), help="Results to show."
)
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "keyword", "semantic"]),
    default="hybrid",
    show_default=True,
    help="Keyword (BM25), semantic (embeddings) or both fused.",
)
@click.option("--spec-folder", help="Only memories of this spec folder (and below), e.g. 003-auth.")
@click.option("--tier", "tiers", multiple=True, type=click.Choice(TIERS), help="Only this tier; repeatable.")
@click.option("--context-type", help="Only memories of this context type.")
@click.option(
    "--tag", "tags", multiple=True, help="Only memories carrying this tag; repeat to require several."
)
@click.option(
    "--path", "path_glob", help="Only paths matching this glob, relative to the root (e.g. '00*/*')."
)
@click.option("--since", help="Only memories modified since this date (YYYY-MM-DD).")
@click.option("--include-deprecated", is_flag=True, help="Show deprecated memories too.")
@click.option("--no-constitutional", is_flag=True, help="Do not put constitutional memories first.")
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@common
def search_cmd(
    cfg: configmod.Config,
    query: str,
    limit: int,
    mode: str,
    spec_folder: str | None,
    tiers: tuple[str, ...],
    context_type: str | None,
    tags: tuple[str, ...],
    path_glob: str | None,
    since: str | None,
    include_deprecated: bool,
    no_constitutional: bool,
    as_json: bool,
) -> None:
    """Search the memories for QUERY, best first. Constitutional memories lead; deprecated ones are hidden."""
    conn = db.connect(cfg.db_path, readonly=True)
    filters = Filters(
        spec_folder=spec_folder,
        tiers=list(tiers) or None,
        context_type=context_type,
        tags=list(tags) or None,
        path_glob=path_glob,
        since=_parse_since(since),
    )
    embedder = None
    if mode != "keyword" and db.get_config(conn, "model") is not None:
        from indexer.onnx_embed import get_query_embedder

        embedder = get_query_embedder(cfg.model)  # ONNX Runtime without torch when it can, else torch
    response = search(
        conn,
        query,
        limit=limit,
        mode=mode,
        filters=filters,
        embedder=embedder,  # type: ignore[arg-type]
        include_deprecated=include_deprecated,
        include_constitutional=not no_constitutional,
    )
    if as_json:
        out.print_json(response.model_dump_json())
    else:
        _print_results(response)


def _print_results(response: SearchResponse) -> None:
    for note in response.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    if not response.results:
        out.print(f"no memories match {response.query!r} ({response.total_memories} indexed)")
        return
    for rank, r in enumerate(response.results, 1):
        label = "★" if r.always_surfaced else f"{rank - sum(x.always_surfaced for x in response.results)}."
        folder = r.spec_folder or "-"
        out.print(
            f"[bold]{label} {escape(r.title)}[/]  [dim]{r.tier} · {escape(folder)} · score {r.score:.4f}[/]"
        )
        out.print(f"   [cyan]{escape(r.path)}:{r.start_line}-{r.end_line}[/]")
        snippet = escape(r.snippet).replace("**", "\x00")
        parts = snippet.split("\x00")
        rendered = "".join(f"[bold yellow]{p}[/]" if i % 2 else p for i, p in enumerate(parts))
        out.print(f"   {rendered}")
    out.print(f"[dim]{response.mode_used} search over {response.total_memories} memories[/]")


@cli.command("get")
@click.argument("path_or_id")
@click.option("--json", "as_json", is_flag=True, help="Print the memory and its metadata as JSON.")
@common
def get_cmd(cfg: configmod.Config, path_or_id: str, as_json: bool) -> None:
    """Print one memory by id or path (absolute, or relative to the current folder or a root)."""
    conn = db.connect(cfg.db_path, readonly=True)
    memory = memories.get(conn, cfg, path_or_id)
    if as_json:
        out.print_json(memory.model_dump_json())
        return
    err.print(
        f"[dim]#{memory.id} {escape(memory.path)} · {memory.tier} · {escape(memory.spec_folder or '-')}"
        f" · embeddings {memory.embedding_status}[/]"
    )
    for warning in memory.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    sys.stdout.write(memory.content if memory.content.endswith("\n") else memory.content + "\n")


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@common
def stats_cmd(cfg: configmod.Config, as_json: bool) -> None:
    """Counts by tier, spec folder, context type and embedding status; files with warnings."""
    conn = db.connect(cfg.db_path, readonly=True)
    stats = memories.stats(conn, cfg)
    if as_json:
        out.print_json(stats.model_dump_json())
        return
    out.print(
        f"[bold]{stats.memories} memories[/], {stats.chunks} chunks, index {stats.db_bytes / 1e6:.1f} MB "
        f"at {stats.db_path}"
    )
    out.print(
        f"model {stats.model or '(none yet)'} · dimension {stats.dim or '-'} · schema v{stats.schema_version}"
    )
    for name, counts in (
        ("tiers", stats.by_tier),
        ("embeddings", stats.by_embedding_status),
        ("context types", stats.by_context_type),
        ("spec folders", stats.by_spec_folder),
    ):
        shown = ", ".join(f"{escape(k or '-')} {v}" for k, v in counts.items()) or "-"
        out.print(f"{name}: {shown}")
    if stats.watcher:
        w = stats.watcher
        last = (
            f"last batch {_clock(w.last_batch_ms)} ({w.last_batch})"
            if w.last_batch_ms
            else "no batch applied yet"
        )
        out.print(
            f"watcher: pid {w.pid} on {escape(w.host)} since {_clock(w.since_ms)}; {w.batches} batches, {last}"
        )
    else:
        out.print("watcher: none (`specmem watch`, or any `specmem serve`, keeps the index live)")
    if stats.warnings:
        out.print(f"[yellow]{len(stats.warnings)} files with warnings:[/]")
        for w in stats.warnings:
            out.print(f"  {escape(w.path)}: {escape('; '.join(w.messages))}")


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


@cli.command("paths")
@common
def paths_cmd(cfg: configmod.Config) -> None:
    """Print every resolved setting (option, then SPECMEM_* variable, then default)."""
    model_path = resolve_model_path(cfg.model) if not cfg.model.startswith("hash:") else None
    rows = [
        ("project", str(cfg.project)),
        ("database", str(cfg.db_path)),
        ("signal", str(cfg.signal_path)),
        ("watcher lock", str(cfg.watcher_lock_path)),
        ("roots", ", ".join(str(r) for r in cfg.roots)),
        ("model", cfg.model + (f" ({model_path})" if model_path else "")),
        ("max file size", f"{cfg.max_file_bytes} bytes"),
        ("user data", str(configmod.user_data_dir())),
        ("user cache", f"{configmod.user_cache_dir()} (the ONNX model; SPECMEM_CACHE_DIR)"),
    ]
    for name, value in rows:
        out.print(f"{name:>14}: {escape(value)}")


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 1; tracebacks are for bugs."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KNOWN_ERRORS as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
