"""The `specmem` command: thin wrappers that parse arguments, call one method of the public API and print.

Only click is imported at start-up; everything else is imported by the command that needs it, so `--help`,
`--version` and the quick commands start fast. Text output goes to stdout, notes and progress to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from specmem import DISTRIBUTION
from specmem.indexer.tiers import TIERS

STATS_SHOWN = 12
STALE = ("changed", "missing")  # code statuses shown in red (server/citations.py STALE)

if TYPE_CHECKING:
    from specmem.api import Memories
    from specmem.indexer.config import Config
    from specmem.indexer.scan import ScanReport
    from specmem.server.search import ScoreParts


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command shares: where the index is, which roots, which model."""

    @click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False),
        help="Index file, or a postgresql:// URL for a shared index [env SPECMEM_DB; default "
        "<project>/.specmem/index.db].",
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
        "default all-MiniLM-L6-v2, shipped offline].",
    )
    @functools.wraps(fn)
    def wrapper(db_path: str | None, roots: tuple[str, ...], model: str | None, **kwargs: Any) -> Any:
        from specmem.indexer import config as configmod

        extra_roots = kwargs.pop("root_args", ()) or ()
        project = kwargs.pop("project", None)
        cfg = configmod.resolve(
            db=db_path,
            roots=[*roots, *extra_roots] or None,
            model=model,
            cwd=Path(project) if project else None,
        )
        remembered = cfg.sources.get("roots", "")
        if remembered.startswith("remembered"):
            # Not this folder's own index: say which one answers (`specmem forget` drops the record).
            say(
                f"using the index of {', '.join(str(r) for r in cfg.roots)} {remembered} ({cfg.db_path}); "
                "`specmem forget` forgets it",
                err=True,
            )
        return fn(cfg, **kwargs)

    return wrapper


def opened(cfg: Config) -> Memories:
    from specmem.api import Memories

    return Memories(cfg)


def say(text: str = "", *, err: bool = False, **style: Any) -> None:
    click.echo(click.style(text, **style) if style else text, err=err)


def emit(value: Any) -> None:
    """`value` (a pydantic model, a dataclass, a list or dict of them) as indented JSON on stdout: --json."""
    import pydantic_core

    click.echo(json.dumps(pydantic_core.to_jsonable_python(value), indent=2, ensure_ascii=False))


def as_json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(fn)


class Group(click.Group):
    """The command group: a reader that closes the pipe early (`specmem search x | head -1`) ends the command
    quietly with status 0, as ripgrep does, instead of a traceback or an error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            closed_pipe()


def closed_pipe() -> None:
    """Leave quietly after the reader of stdout went away: what is still buffered goes to /dev/null (Python
    would otherwise try to flush it at exit and print `Exception ignored ... BrokenPipeError`)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def color_choice(ctx: click.Context, _: click.Parameter, value: str | None) -> str:
    """--color wins; else NO_COLOR (https://no-color.org: set and not empty) turns colour off; else auto."""
    if value is None:
        value = "never" if os.environ.get("NO_COLOR") else "auto"
    ctx.color = {"always": True, "never": False}.get(value)  # None: colour only on a terminal
    return value


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name=DISTRIBUTION, prog_name="specmem")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    callback=color_choice,
    expose_value=False,
    is_eager=True,
    help="Colour the output: auto (on a terminal, unless NO_COLOR is set), always or never.",
)
def cli() -> None:
    """specmem: long-term memory for AI coding assistants, kept as markdown files in your repository.

    Memory files are *.md files under the roots (default: the project's specs/ folder), with YAML frontmatter
    giving each an importance tier. `specmem scan` indexes them into SQLite; `specmem search` finds them.
    Settings resolve as: option, then SPECMEM_* environment variable, then specmem.toml, then default
    (see `specmem paths`). Every command that prints a result takes --json.
    """


class ProgressLine:
    """Progress of a long scan on stderr: a line redrawn in place on a terminal; off a terminal (a log, CI, a
    pipe), a full line when a phase starts, every few seconds while it runs and when it ends, with done/total,
    rate and time left. A phase with total 0 has no count (walking the folders, loading the model)."""

    def __init__(self, every: float = 5.0) -> None:
        self.tty = sys.stderr.isatty()
        self.every = every
        self.phase: str | None = None
        self.started = self.last = self.previous = time.monotonic()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self.phase:
            # A phase's first report comes after some of its work: it began when the one before it ended.
            self.finish()
            self.phase, self.started, self.last = phase, self.previous, float("-inf")
        self.previous = now
        if not self.tty and now - self.last < self.every and 0 < total and done < total:
            return
        self.last = now
        if total <= 0:
            line = f"{phase}…"
        else:
            rate = done / max(now - self.started, 1e-9)
            left = f", {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
            line = f"{phase}: {done}/{total} ({rate:.0f}/s{left})" if done else f"{phase}: 0/{total}"
        if self.tty:
            click.echo(f"\r\033[K{line}", err=True, nl=False)
        else:
            click.echo(line, err=True)

    def finish(self) -> None:
        if self.tty and self.phase is not None:
            click.echo("\r\033[K", err=True, nl=False)


@cli.command("init")
@click.argument("folder", default=".", type=click.Path(file_okay=False))
@click.option(
    "--root",
    "roots",
    multiple=True,
    help="A folder of memory files for the project's settings; repeat for several [default specs].",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be created and kept; change nothing.")
@click.option(
    "--examples", is_flag=True, help="Write the example rule and memory even where the project keeps memory."
)
@as_json_option
def init_cmd(folder: str, roots: tuple[str, ...], dry_run: bool, examples: bool, as_json: bool) -> None:
    """Set up FOLDER (default: here) for specmem: specmem.toml, .specmem/ kept out of git, and the MCP configs
    that start `specmem serve` from PATH: .mcp.json (Claude Code), and .cursor/mcp.json and .vscode/mcp.json when
    those folders exist; an example rule and memory only where the project keeps no memory yet. Never overwrites
    a file: it says what it kept. Says which memory it will read (the roots, and the memory places of assistants
    found anywhere in the project: Spec Kit, Kiro, Cursor, CLAUDE.md, ADRs, ...) and which markdown it will not
    read, with the setting that reads it."""
    from specmem.api import init

    plan = init(folder, roots=list(roots) or None, dry_run=dry_run, examples=examples)
    steps = next_steps(plan.folder) if not dry_run else []
    if as_json:
        emit({**plan.to_dict(), "dry_run": dry_run, "next": steps})
        return
    say(f"specmem init {plan.folder}" + (" (dry run: nothing written)" if dry_run else ""))
    for step in plan.steps:
        verb = ("would create" if dry_run else "created") if step.action == "create" else "kept"
        where = step.path.relative_to(plan.folder) if step.path.is_relative_to(plan.folder) else step.path
        say(
            f"  {click.style(f'{verb:<12}', fg='green' if step.action == 'create' else 'yellow')} {where}: {step.why}"
        )
    if plan.reads:
        say(f"reads: {described(plan.folder, [(p, n) for _, p, n in plan.reads])}")
    else:
        say(
            "reads: nothing yet (Spec Kit, Kiro, Cursor, CLAUDE.md, AGENTS.md, ADRs, ... are read when present)"
        )
    for path, count in plan.hidden.items():
        say(
            f"not read: {path.name}/ holds {count} markdown file{'s' if count != 1 else ''}; to index it, add include = "
            f'["{path.name}"] to specmem.toml',
            fg="yellow",
        )
    print_unread(plan.unread)
    from specmem.indexer import assistants

    note = assistants.path_note()
    if note:
        say(f"note: {note}", fg="yellow")
    for line in steps:
        say(f"next: {line}")


def next_steps(folder: Path) -> list[str]:
    """What to run after `init`, exactly as it can be pasted into a shell here."""
    import shlex

    from specmem.indexer import assistants

    run = assistants.command()
    here = "" if folder.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(str(folder))} && "
    return [f'{here}{run} scan && {run} search "what did we decide"']


READ_ALL = 'roots = ["."] in specmem.toml reads every markdown file of the project'


def described(top: Any, places: list[tuple[Any, int]], shown: int = 3) -> str:
    """Folders and files read, for people: `specs/ (13 files), .kiro/steering/ (9), AGENTS.md, 10 CLAUDE.md
    (apps/webapp, docs, packages/core, …)`; files of one name in several folders are grouped."""
    from pathlib import Path

    def rel(path: Path) -> str:
        return path.relative_to(top).as_posix() if path.is_relative_to(top) and path != top else str(path)

    parts: list[str] = []
    by_name: dict[str, list[Path]] = {}
    for path, count in places:
        path = Path(path)
        if path.is_dir():
            parts.append(f"{rel(path)}/ ({count} file{'s' if count != 1 else ''})")
        else:
            by_name.setdefault(path.name, []).append(path)
    for name, paths in by_name.items():
        if len(paths) <= shown:
            parts += [rel(p) for p in paths]
            continue
        folders = [rel(p.parent) if p.parent != Path(top) else "the top" for p in paths]
        parts.append(f"{len(paths)} {name} ({', '.join(folders[:shown])}, …)")
    return ", ".join(parts)


@cli.command("forget")
@click.argument("folder", required=False, type=click.Path(file_okay=False))
@click.option("--all", "everything", is_flag=True, help="Forget every remembered scan.")
@as_json_option
def forget_cmd(folder: str | None, everything: bool, as_json: bool) -> None:
    """Forget the scan remembered for FOLDER (default: here), the one `specmem scan DIR` recorded outside a
    configured project, and delete the index it made in the user data folder. The memory files are not touched."""
    from specmem.api import forget

    scans, deleted = forget(folder, everything=everything)
    if as_json:
        emit({"forgot": [scan.describe() for scan in scans], "deleted": [str(p) for p in deleted]})
        return
    for scan in scans:
        say(f"forgot {scan.describe()}")
    for path in deleted:
        say(f"deleted the index {path}", err=True)


@cli.command("scan")
@click.argument("root_args", metavar="[ROOT]...", nargs=-1, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Re-read and re-index every file, even unchanged ones.")
@click.option(
    "--no-embed", is_flag=True, help="Keyword phase only; a later plain scan completes the embeddings."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@common
def scan_cmd(cfg: Config, force: bool, no_embed: bool, as_json: bool) -> None:
    """Index the memory files under ROOT... (default: the configured roots).

    Unchanged files are skipped by size and mtime, then by content hash; removed files leave the index; moved or
    renamed files keep their embeddings. Keyword search sees the changes before the embeddings are computed.
    Progress goes to stderr (a bar on a terminal, a line every few seconds otherwise).
    """
    from specmem.indexer import remembered
    from specmem.indexer.errors import ConfigError, ModelUnavailable

    missing = [r for r in cfg.roots if not r.exists()]
    if missing and len(missing) == len(cfg.roots):
        raise ConfigError(
            f"root folder {missing[0]} does not exist; create it (`specmem init` does), or pass an existing "
            "folder (specmem scan DIR)"
        )
    if cfg.sources.get("roots") == "option" and cfg.project_file is None:
        # Outside a configured project: the next command run here finds these roots and this index, from the
        # start of this scan (keyword search works long before the embeddings are done).
        remembered.remember(cfg)
        roots = " ".join(f"--root {r}" for r in cfg.roots if r not in cfg.convention_roots)
        say(
            f"remembered: `specmem search` and the other commands run in {os.getcwd()} use these roots and this "
            f"index (`specmem forget` forgets them); to keep them in the project for good: specmem init {roots}",
            err=True,
        )
    progress = ProgressLine()
    try:
        with opened(cfg) as mem:
            report = mem.scan(force=force, embed=not no_embed, progress=None if as_json else progress)
            cfg = mem.config  # with the places the scan found
    except KeyboardInterrupt:
        progress.finish()
        say(
            "interrupted: what was indexed is kept and searchable; run `specmem scan` again to go on from there",
            err=True,
        )
        exit_now(130)
    progress.finish()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, cfg)
    if report.embedding_error and not no_embed:
        # Keyword search works, but the scan did not do what was asked: say why and how to fix it.
        raise ModelUnavailable(
            f"embeddings not computed ({report.embedding_error}); keyword search works on what was indexed: set "
            "a model that loads (--model, SPECMEM_MODEL or model in specmem.toml; `specmem paths` shows the one "
            "used), or scan with --no-embed"
        )


def print_report(report: ScanReport, cfg: Config) -> None:
    where = ", ".join(str(r) for r in cfg.roots)
    if cfg.searches_project:
        where = described(cfg.project, [(r, files_in(report, r)) for r in cfg.roots if r.exists()])
    say(
        f"scanned {report.files_seen} files in {where}: "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.moved} moved, "
        f"{report.removed} removed"
    )
    say(
        f"embeddings: {report.embedded_chunks} chunks embedded, {report.reused_chunks} reused from cache, "
        f"{report.pending_embeddings} memories pending; {report.seconds:.2f} s "
        f"(keyword phase {report.keyword_seconds:.2f} s)"
    )
    if report.embedding_error:
        say(f"embeddings skipped: {report.embedding_error}", fg="yellow")
    for path, message in report.problems:
        say(f"problem {path}: {message}", fg="red")
    for path, message in report.warnings:
        say(f"warning {path}: {message}", fg="yellow")
    print_skipped(report, cfg)
    print_unread(report.unread)
    say(f"index: {cfg.index_name}")


UNREAD_LISTED = 8  # folders of unread markdown named one a line; --json lists every one


def print_unread(unread: Sequence[tuple[str, int]]) -> None:
    """The markdown no root reads (a scan's or init's `unread`): how many files, with the setting that reads
    them all, then the folders that hold them, each with its count."""
    if not unread:
        return
    total = sum(n for _, n in unread)
    say(
        f"not read: {total} other markdown file{'s' if total != 1 else ''}; {READ_ALL}, or add a folder below to "
        "roots",
        fg="yellow",
    )
    for folder, count in unread[:UNREAD_LISTED]:
        say(
            f"  {'the top folder' if folder == '.' else folder + '/'} ({count} file{'s' if count != 1 else ''})"
        )
    rest = unread[UNREAD_LISTED:]
    if rest:
        n = sum(count for _, count in rest)
        say(f"  … {len(rest)} more folders ({n} file{'s' if n != 1 else ''}); --json lists every one")


def files_in(report: ScanReport, root: Any) -> int:
    """Memory files the scan saw under one root (`report.per_root`)."""
    return report.per_root.get(str(root), 0)


def print_skipped(report: ScanReport, cfg: Config) -> None:
    """Every hidden folder holding markdown that the scan left out, with the setting that takes it in."""
    from specmem.indexer import conventions, files

    for folder, count in report.skipped:
        path = Path(folder)
        root = files.root_of(path, cfg.roots)
        rel = path.relative_to(root).as_posix() if root else folder
        files_word = f"{count} markdown file{'s' if count != 1 else ''}"
        place = conventions.place_of(path)
        if place is not None and place.name not in cfg.conventions:
            hint = f'{place.tool}\'s place, a convention not adopted: add "{place.name}" to conventions'
        else:
            hint = "a hidden folder that is no memory convention's place"
        say(f'skipped {folder}: {files_word}; {hint}, or include = ["{rel}"], in specmem.toml', fg="yellow")


@cli.command("watch")
@click.argument("root_args", metavar="[ROOT]...", nargs=-1, type=click.Path(file_okay=False))
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
@click.option(
    "--json", "as_json", is_flag=True, help="Print each applied batch as one line of JSON on stdout."
)
@common
def watch_cmd(
    cfg: Config, debounce: float, polling: bool, no_embed: bool, verbose: bool, as_json: bool
) -> None:
    """Keep the index live: reconcile once, then apply every save, rename, delete and git checkout as it happens.

    Changes are coalesced for --debounce seconds and applied in one write batch; keyword search sees them at once,
    embeddings follow in the background. One watcher per database: a second one exits, naming the first.
    Stop with Ctrl-C (or SIGTERM): the batch in progress is finished first. Status lines go to stderr.
    """
    from specmem.indexer.embed import use_threads

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    for root in cfg.roots:
        if not root.exists():  # (a convention's file, CLAUDE.md, is a root too)
            say(f"warning: root {root} does not exist yet; watching for it", err=True, fg="yellow")
    ready = threading.Event()

    def on_batch(report: ScanReport) -> None:
        changed = report.added + report.updated + report.moved + report.removed
        if as_json and (changed or not ready.is_set()):
            click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
            sys.stdout.flush()
        if not ready.is_set():
            ready.set()
            say(
                f"{time.strftime('%H:%M:%S')} ready: {report.files_seen} memory files "
                f"({report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed "
                f"since last time); watching {', '.join(str(r) for r in cfg.roots)} (Ctrl-C to stop)",
                err=True,
            )
        elif changed or verbose:
            waiting = (
                f" · {report.pending_embeddings} waiting for embeddings" if report.pending_embeddings else ""
            )
            say(
                f"{time.strftime('%H:%M:%S')} indexed: {report.added} added, {report.updated} updated, "
                f"{report.moved} moved, {report.removed} removed in {report.keyword_seconds * 1000:.0f} ms{waiting}",
                err=True,
            )

    def on_embedded(count: int) -> None:
        if verbose:
            say(f"{time.strftime('%H:%M:%S')} embedded {count} chunks", err=True)

    # A background daemon: the servers answering an assistant come first on a busy CPU. Lower priority, and
    # embeddings on one core unless SPECMEM_THREADS says otherwise (torch reads it when the model loads).
    use_threads(cfg.threads or 1)
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with opened(cfg) as mem:
        watcher = mem.watch(
            debounce=debounce, polling=polling, embed=not no_embed, on_batch=on_batch, on_embedded=on_embedded
        )
        try:
            while watcher.running and not stop.wait(1.0):
                pass
        finally:
            say(watcher.yielded or "stopping: finishing the batch in progress", err=True)
            watcher.stop()
    say(f"stopped after {watcher.status.batches} batches", err=True)
    exit_now(0)


def exit_now(code: int) -> None:
    """Leave at once after an orderly stop (index committed, locks released). An embedding thread may still be
    inside torch, which cannot be interrupted: waiting for it takes seconds, and tearing the interpreter down
    under it aborts the process. It holds no transaction, so nothing is lost by not waiting."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


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
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True),
    help="Serve the project in this folder, as if started there (VS Code and Cursor pass ${workspaceFolder}). "
    "Without it, a server started outside any project serves the client's first workspace root.",
)
@common
def serve_cmd(cfg: Config, http: bool, host: str, port: int, watch: bool | None, verbose: bool) -> None:
    """Run the MCP server: memory_search, memory_get, memory_list and the other tools.

    Over stdio by default, which is how Claude Desktop, Claude Code and editors launch it; the protocol owns
    stdout and logs go to stderr. The embedding model loads in the background: until it is ready, searches
    answer at once in keyword mode and say so. Exactly one process watches a database: the first server (or
    `specmem watch`) to take its watcher lock; the others read, and take over within seconds if it exits.
    """
    import dataclasses

    from specmem.indexer import config as configmod
    from specmem.indexer.embed import use_threads
    from specmem.server.mcp.server import serve

    # -v: specmem's own records (tool names and timings, batches) in detail; other libraries' debug records
    # stay off, since some of them (sse-starlette over HTTP) log whole response bodies, i.e. memory text.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("specmem").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if watch is not None:
        cfg = dataclasses.replace(cfg, watch=watch)
    # One torch thread per search: a short query embeds as fast on one core, and several servers on one machine
    # then do not fight over every core (with two threads, four paced servers and a writing watcher had a p95 of
    # 359 ms instead of 54: tests/bench/concurrency.py). SPECMEM_THREADS overrides it.
    use_threads(cfg.threads or 1)
    # No project here and no roots given (a client that starts its servers in the home folder): the server asks
    # the client for its workspace roots rather than serving whatever scan was remembered for a parent folder.
    chosen = cfg.sources.get("roots", "").startswith(("option", "env"))
    outside = cfg.project_file is None and configmod.find_project(Path.cwd()) is None and not chosen
    serve(cfg, http=http, host=host, port=port, outside_project=outside)
    exit_now(0)


@cli.command("write")
@click.option("--title", required=True, help="One line; also names the file (date + slug).")
@click.option("--spec-folder", required=True, help="e.g. 003-auth; the file goes to <spec folder>/memory/.")
@click.option("--tier", type=click.Choice(TIERS), default="normal", show_default=True)
@click.option("--context-type", help="e.g. decision, context, convention.")
@click.option("--trigger", "triggers", multiple=True, help="A trigger phrase; repeatable.")
@click.option("--tag", "tags", multiple=True, help="A tag; repeatable.")
@click.option(
    "--on-duplicate",
    type=click.Choice(["write", "skip", "update"]),
    help="When the spec folder already has a memory saying the same [default: skip an exact duplicate, "
    "else write with a warning].",
)
@click.argument("content", required=False)
@as_json_option
@common
def write_cmd(
    cfg: Config,
    title: str,
    spec_folder: str,
    tier: str,
    context_type: str | None,
    triggers: tuple[str, ...],
    tags: tuple[str, ...],
    on_duplicate: str | None,
    content: str | None,
    as_json: bool,
) -> None:
    """Save a new memory file (CONTENT, or stdin when omitted) and index it at once. Never overwrites a file;
    a memory of the spec folder that says the same is reported (see --on-duplicate)."""
    from specmem.indexer.draft import Draft

    if content is None:
        content = sys.stdin.read()
    draft = Draft(title, content, spec_folder, tier, context_type, triggers, tags)
    with opened(cfg) as mem:
        written = mem.write(draft, on_duplicate=on_duplicate)  # type: ignore[arg-type]
    if as_json:
        emit(written)
        return
    for warning in written.warnings:
        say(f"warning: {warning}", err=True, fg="yellow")
    if written.action == "skipped":
        duplicate = written.duplicates[0]
        say(f"not written: memory {written.id} ({duplicate.kind}) already says this: {written.path}")
    elif written.action == "updated":
        say(f"memory {written.id} updated ({', '.join(written.changed) or 'no change'}): {written.path}")
        say(f"undo with: specmem checkpoint restore {written.checkpoint}", err=True)
    else:
        say(f"memory {written.id} written to {written.path}")


@cli.group("checkpoint")
def checkpoint_group() -> None:
    """Save and restore the memory files (with their validation scores) as they are now."""


@checkpoint_group.command("create")
@click.argument("name")
@click.option("--spec-folder", help="Only this spec folder (default: every memory file).")
@as_json_option
@common
def checkpoint_create_cmd(cfg: Config, name: str, spec_folder: str | None, as_json: bool) -> None:
    """Save a checkpoint called NAME."""
    with opened(cfg) as mem:
        info = mem.checkpoint(name, spec_folder=spec_folder)
    if as_json:
        emit(info)
        return
    say(f"checkpoint {name}: {info.file_count} files, {info.size_bytes} bytes")


@checkpoint_group.command("list")
@as_json_option
@common
def checkpoint_list_cmd(cfg: Config, as_json: bool) -> None:
    """Checkpoints, newest first."""
    with opened(cfg) as mem:
        listed = mem.checkpoints()
    if as_json:
        emit(listed)
        return
    for c in listed:
        where = f" · {c.git_branch}@{(c.git_commit or '')[:8]}" if c.git_branch else ""
        say(
            f"{c.name}  {clock(c.created_at)}  scope {c.scope or 'all'}  {c.file_count} files"
            f"{where}{' (automatic)' if c.automatic else ''}"
        )


@checkpoint_group.command("restore")
@click.argument("name")
@click.option("--clear-newer", is_flag=True, help="Also delete memory files created since the checkpoint.")
@as_json_option
@common
def checkpoint_restore_cmd(cfg: Config, name: str, clear_newer: bool, as_json: bool) -> None:
    """Rewrite the memory files to their content in checkpoint NAME and re-index them."""
    with opened(cfg) as mem:
        report = mem.restore(name, clear_newer=clear_newer)
    if as_json:
        emit(report)
        return
    say(f"restored {len(report.restored)} files, {report.unchanged} unchanged, {len(report.removed)} removed")
    for path in report.newer_kept:
        say(f"kept (created since; --clear-newer removes it): {path}")


@checkpoint_group.command("delete")
@click.argument("name")
@as_json_option
@common
def checkpoint_delete_cmd(cfg: Config, name: str, as_json: bool) -> None:
    """Delete checkpoint NAME."""
    with opened(cfg) as mem:
        mem.delete_checkpoint(name)
    if as_json:
        emit({"deleted": name})
        return
    say(f"deleted checkpoint {name}")


@cli.command("doctor")
@click.option("--no-model", is_flag=True, help="Skip loading the embedding model (a few seconds).")
@as_json_option
@common
def doctor_cmd(cfg: Config, no_model: bool, as_json: bool) -> None:
    """Check the install (apsw, FTS5, sqlite-vec, the model offline) and the index (integrity, schema, model,
    orphan rows, pending embeddings, watcher lock), and say what to do about each problem. Exit 1 on a failure."""
    from specmem.server import doctor

    checks = doctor.run(cfg, load_model=not no_model)
    if as_json:
        emit(checks)
        sys.exit(1 if any(c.status == "fail" for c in checks) else 0)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        click.echo(f"{click.style(f'{c.status:>4}', fg=colour[c.status])} {c.name:<11} {c.detail}")
        if c.fix:
            say(f"{'':17}→ {c.fix}")
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


def parse_since(value: str | None) -> Any:
    import datetime as dt

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
@click.option(
    "--no-constitutional", is_flag=True, help="Rank rules like any memory, beyond their share of the results."
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Search this project of a shared index too ('*': every project); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@click.option(
    "--explain",
    is_flag=True,
    help="Show each result's raw and normalised scores, the weights and multipliers.",
)
@common
def search_cmd(
    cfg: Config,
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
    projects: tuple[str, ...],
    as_json: bool,
    explain: bool,
) -> None:
    """Search the memories for QUERY, best first. Rules count by relevance, a few at most; deprecated are hidden."""
    from specmem.server.search import Filters

    filters = Filters(
        spec_folder=spec_folder,
        tiers=list(tiers) or None,
        context_type=context_type,
        tags=list(tags) or None,
        path_glob=path_glob,
        since=parse_since(since),
    )
    with opened(cfg) as mem:
        response = mem.search(
            query,
            limit=limit,
            mode=mode,  # type: ignore[arg-type]
            filters=filters,
            include_deprecated=include_deprecated,
            include_constitutional=not no_constitutional,
            projects=list(projects) or None,
        )
    if mode == "semantic" and response.mode_used != "semantic":
        from specmem.indexer.errors import SearchError

        # Asked for meaning only, and no meaning can be searched: an answer by keyword would pass for it.
        raise SearchError(
            f"semantic search is not possible here: {'; '.join(response.notes)}; use --mode keyword or hybrid"
        )
    if as_json:
        click.echo(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))
        return
    for note in response.notes:
        say(f"note: {note}", err=True, fg="yellow")
    if not response.results:
        say(f"no memories match {response.query!r} ({response.total_memories} indexed)")
        return
    surfaced = sum(r.always_surfaced for r in response.results)
    for rank, r in enumerate(response.results, 1):
        label = "★" if r.always_surfaced else f"{rank - surfaced}."
        say(
            f"{click.style(f'{label} {r.title}', bold=True)}  "
            + click.style(
                f"{f'{r.project} · ' if projects else ''}{r.tier} · {r.spec_folder or '-'} · score {figure(r.score)}",
                dim=True,
            )
        )
        say("   " + click.style(f"{r.path}:{r.start_line}-{r.end_line}", fg="cyan"))
        parts = r.snippet.split("**")
        say(
            "   "
            + "".join(click.style(p, bold=True, fg="yellow") if i % 2 else p for i, p in enumerate(parts))
        )
        for line in r.code_notes:
            say("   " + click.style(f"cites {line}", fg="red" if r.code in STALE else "yellow"))
        if explain:
            say("   " + click.style(_explain(r.parts), dim=True))
    say(click.style(f"{response.mode_used} search over {response.total_memories} memories", dim=True))


def figure(value: float) -> str:
    """A score with three significant figures: 10.5, 0.531, 1.6e-06. BM25 gives a word found in most memories a
    tiny weight, so keyword scores can all be below 0.0001, where fixed decimals print 0.0000 for each."""
    return f"{value:.3g}"


def _explain(parts: ScoreParts) -> str:
    """One line: each side's raw → normalised × weight, then the multipliers."""
    sides = []
    for name, raw, norm, weight in (
        ("keyword bm25", parts.keyword, parts.keyword_norm, parts.keyword_weight),
        ("semantic cosine", parts.semantic, parts.semantic_norm, parts.semantic_weight),
    ):
        shown = "not found" if raw is None else figure(raw)
        if name == "keyword bm25" and parts.keyword_second is not None:
            shown += f" (2nd chunk {figure(parts.keyword_second)})"
        if norm is not None:
            shown += f" → {norm:.3f} × {weight:.2f}"
        sides.append(f"{name} {shown}")
    rule = f" ({parts.fusion})" if parts.fusion else ""
    return (
        f"{' + '.join(sides)} = fused {figure(parts.fused)}{rule}; × tier {parts.tier_weight:g}"
        f" × recency {parts.recency:.3f} × confidence {parts.confidence:.2f}"
    )


@cli.command("context")
@click.argument("task")
@click.option(
    "-b", "--budget", default=2000, show_default=True, type=click.IntRange(200, 100_000), help="Tokens."
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="Include this project of a shared index too ('*': every project); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the block with its items and what was left out.")
@common
def context_cmd(cfg: Config, task: str, budget: int, projects: tuple[str, ...], as_json: bool) -> None:
    """Print the memories for TASK as one block to paste into a prompt, within a token budget: rules, then
    memories TASK triggers, then the best search results, each cited path:start-end."""
    with opened(cfg) as mem:
        block = mem.context(task, budget=budget, projects=list(projects) or None)
    if as_json:
        click.echo(block.model_dump_json(indent=2))
        return
    for note in block.notes:
        say(f"note: {note}", err=True, fg="yellow")
    click.echo(block.text, nl=False)
    say(
        click.style(
            f"{block.tokens}/{block.budget} tokens, {len(block.items)} memories, "
            f"{len(block.left_out)} left out",
            dim=True,
        ),
        err=True,
    )


@cli.command("get")
@click.argument("path_or_id")
@click.option("--json", "as_json", is_flag=True, help="Print the memory and its metadata as JSON.")
@common
def get_cmd(cfg: Config, path_or_id: str, as_json: bool) -> None:
    """Print one memory by id or path (absolute, or relative to the current folder or a root)."""
    with opened(cfg) as mem:
        memory = mem.get(path_or_id)
    if as_json:
        click.echo(memory.model_dump_json(indent=2))
        return
    say(
        click.style(
            f"#{memory.id} {memory.path} · {memory.tier} · {memory.spec_folder or '-'}"
            f" · embeddings {memory.embedding_status}",
            dim=True,
        ),
        err=True,
    )
    for warning in memory.warnings:
        say(f"warning: {warning}", err=True, fg="yellow")
    for c in memory.citations:
        say(f"cites {c.describe()}", err=True, fg="red" if c.status in STALE else None)
        if c.diff:
            say(c.diff, err=True, dim=True)
    click.echo(memory.content if memory.content.endswith("\n") else memory.content + "\n", nl=False)


@cli.command("list")
@click.option("--spec-folder", help="Only this spec folder (and below).")
@click.option("--tier", type=click.Choice(TIERS), help="Only this tier.")
@click.option(
    "--sort",
    type=click.Choice(["updated", "title", "path", "tier"]),
    default="updated",
    show_default=True,
    help="Order of the list.",
)
@click.option("-n", "--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many first.")
@click.option(
    "--project",
    "projects",
    multiple=True,
    help="List this project of a shared index too ('*': every project); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@common
def list_cmd(
    cfg: Config,
    spec_folder: str | None,
    tier: str | None,
    sort: str,
    limit: int,
    offset: int,
    projects: tuple[str, ...],
    as_json: bool,
) -> None:
    """List memories with their ids, tiers, spec folders and titles (newest first by default)."""
    with opened(cfg) as mem:
        page = mem.list(
            offset=offset,
            limit=limit,
            spec_folder=spec_folder,
            tier=tier,
            sort=sort,
            projects=list(projects) or None,
        )
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    shared = {m.rel_path for m in page.items if sum(o.rel_path == m.rel_path for o in page.items) > 1}
    for m in page.items:
        # Two roots may each hold a README.md: those are shown by their path from the project, not as twins.
        shown = m.rel_path if m.rel_path not in shared else _from_project(m.path, cfg)
        say(
            f"{m.id:>5}  {f'{m.project} · ' if projects else ''}{m.tier:<14} {m.spec_folder or '-':<20} "
            f"{click.style(m.title, bold=True)}  " + click.style(shown, fg="cyan")
        )
    shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
    say(click.style(f"{shown} of {page.total} memories", dim=True), err=True)


def _from_project(path: str, cfg: Config) -> str:
    from pathlib import Path

    target = Path(path)
    return target.relative_to(cfg.project).as_posix() if target.is_relative_to(cfg.project) else path


@cli.command("triggers")
@click.argument("prompt")
@click.option("-n", "--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON.")
@common
def triggers_cmd(cfg: Config, prompt: str, limit: int, as_json: bool) -> None:
    """Memories whose trigger phrases occur in PROMPT as whole words ('-' reads the prompt from stdin)."""
    if prompt == "-":
        prompt = sys.stdin.read()
    with opened(cfg) as mem:
        matches = mem.triggers(prompt, limit=limit)
    if as_json:
        click.echo(json.dumps([m.model_dump() for m in matches], indent=2))
        return
    if not matches:
        say("no trigger phrase matches", err=True)
    for m in matches:
        say(
            f"{m.id:>5}  {click.style(m.title, bold=True)}  {', '.join(m.phrases)}  "
            + click.style(m.path, fg="cyan")
        )


@cli.command("update")
@click.argument("id_or_path")
@click.option("--title", help="New title.")
@click.option("--tier", type=click.Choice(TIERS), help="New importance tier.")
@click.option("--context-type", help="New context type.")
@click.option("--trigger", "triggers", multiple=True, help="A trigger phrase (repeat; replaces the list).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat; replaces the list).")
@click.option(
    "--confirm-citations",
    is_flag=True,
    help="It still holds for the cited code as it is now: baseline its citations anew (see `specmem stale`).",
)
@as_json_option
@common
def update_cmd(
    cfg: Config,
    id_or_path: str,
    title: str | None,
    tier: str | None,
    context_type: str | None,
    triggers: tuple[str, ...],
    tags: tuple[str, ...],
    confirm_citations: bool,
    as_json: bool,
) -> None:
    """Change a memory's frontmatter; only the lines of the keys that change are rewritten. With
    --confirm-citations, the line anchors of moved code are updated and `cites_checked` records the check."""
    with opened(cfg) as mem:
        written = mem.update(
            id_or_path,
            title=title,
            tier=tier,
            context_type=context_type,
            trigger_phrases=triggers or None,
            tags=tags or None,
            confirm_citations=confirm_citations,
        )
    if as_json:
        emit(written)
        return
    changed = ", ".join(written.changed) or "nothing (the values were already so)"
    say(f"memory {written.id} ({written.path}): changed {changed}")


@cli.command("stale")
@click.option("-n", "--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many first.")
@click.option("--diff", "show_diff", is_flag=True, help="Show each changed citation's diff.")
@as_json_option
@common
def stale_cmd(cfg: Config, limit: int, offset: int, show_diff: bool, as_json: bool) -> None:
    """List the memories whose cited code changed or is gone since they were written, oldest first: review each
    against the code, then fix it, or confirm it with `specmem update ID --confirm-citations`."""
    with opened(cfg) as mem:
        found = mem.stale(limit=limit, offset=offset)
    if as_json:
        emit(found)
        return
    for m in found.items:
        say(
            f"{m.id:>5}  {click.style(m.title, bold=True)}  "
            + click.style(f"{m.rel_path} · written {clock(m.written_ms)}", fg="cyan")
        )
        for c in m.citations:
            say(f"       cites {c.describe()}", fg="red" if c.status in STALE else None)
            if show_diff and c.diff:
                say("\n".join("         " + line for line in c.diff.splitlines()), dim=True)
    if not found.total:
        say("no memory cites code that changed", err=True)
    else:
        shown = f"{offset + 1}-{offset + len(found.items)}" if found.items else "none"
        say(
            click.style(
                f"{shown} of {found.total} memories; once one still holds: specmem update ID --confirm-citations",
                dim=True,
            ),
            err=True,
        )


@cli.command("delete")
@click.argument("id_or_path", required=False)
@click.option("--spec-folder", help="Delete every memory of this spec folder (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm deleting a whole spec folder.")
@as_json_option
@common
def delete_cmd(
    cfg: Config, id_or_path: str | None, spec_folder: str | None, yes: bool, as_json: bool
) -> None:
    """Delete one memory (ID_OR_PATH) or a whole spec folder, after an automatic checkpoint that undoes it."""
    from specmem.indexer.errors import WriteError

    if spec_folder is not None and id_or_path is None and not yes:
        # Said here: the library's message names its own parameter (confirm), not this command's flag.
        raise WriteError(
            f"deleting every memory of {spec_folder!r} needs --yes (a checkpoint is taken first: it can be undone)"
        )
    with opened(cfg) as mem:
        deleted = mem.delete(id_or_path, spec_folder=spec_folder, confirm=yes)
    if as_json:
        emit(deleted)
        return
    for path in deleted.deleted:
        say(f"deleted {path}")
    say(f"undo with: specmem checkpoint restore {deleted.checkpoint}", err=True)


@cli.command("validate")
@click.argument("memory_id", type=int)
@click.option("--useful/--not-useful", required=True, help="Whether the memory helped.")
@as_json_option
@common
def validate_cmd(cfg: Config, memory_id: int, useful: bool, as_json: bool) -> None:
    """Record whether memory MEMORY_ID helped: its confidence moves toward 1 or 0 and weighs its ranking."""
    with opened(cfg) as mem:
        v = mem.validate(memory_id, useful)
    if as_json:
        emit(v)
        return
    say(f"memory {v.id}: confidence {v.confidence_before:.2f} → {v.confidence_after:.2f}")


@cli.command("save")
@click.argument("path")
@as_json_option
@common
def save_cmd(cfg: Config, path: str, as_json: bool) -> None:
    """Index one memory file now (after writing or editing it), without a full scan."""
    with opened(cfg) as mem:
        report = mem.save(path)
    if as_json:
        emit(report.to_dict())
        return
    say(
        f"{path}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed"
    )
    for p, message in report.warnings:
        say(f"warning {p}: {message}", fg="yellow")


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@common
def stats_cmd(cfg: Config, as_json: bool) -> None:
    """Counts by tier, spec folder, context type and embedding status; files with warnings."""
    with opened(cfg) as mem:
        stats = mem.stats()
    if as_json:
        click.echo(stats.model_dump_json(indent=2))
        return
    say(
        click.style(f"{stats.memories} memories", bold=True)
        + f", {stats.chunks} chunks, index {stats.db_bytes / 1e6:.1f} MB at {stats.db_path}"
    )
    say(
        f"model {stats.model or '(none yet)'} · dimension {stats.dim or '-'} · schema v{stats.schema_version}"
    )
    for name, counts in (
        ("tiers", stats.by_tier),
        ("embeddings", stats.by_embedding_status),
        ("context types", stats.by_context_type),
        ("spec folders", stats.by_spec_folder),
    ):
        say(f"{name}: {counted(counts)}")
    if stats.citations:
        say(f"citations of code: {counted(stats.citations)} (`specmem stale` lists what changed)")
    if stats.watcher:
        w = stats.watcher
        last = (
            f"last batch {clock(w.last_batch_ms)} ({w.last_batch})"
            if w.last_batch_ms
            else "no batch applied yet"
        )
        say(f"watcher: pid {w.pid} on {w.host} since {clock(w.since_ms)}; {w.batches} batches, {last}")
    else:
        say("watcher: none (`specmem watch`, or any `specmem serve`, keeps the index live)")
    if stats.warnings:
        say(f"{len(stats.warnings)} files with warnings:", fg="yellow")
        for fw in stats.warnings:
            say(f"  {fw.path}: {'; '.join(fw.messages)}")


def counted(counts: dict[str, int], most: int = STATS_SHOWN) -> str:
    """`a 3, b 2`; past `most` entries only the largest, then `… and 7 more`, so a hundred spec folders stay
    one short line."""
    items = list(counts.items())
    rest = len(items) - most
    if rest > 0:
        items = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:most]
    shown = ", ".join(f"{k or '-'} {v}" for k, v in items) or "-"
    return shown + (f", … and {rest} more (--json lists them all)" if rest > 0 else "")


def clock(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


@cli.command("paths")
@as_json_option
@common
def paths_cmd(cfg: Config, as_json: bool) -> None:
    """Print every resolved setting and where it came from (option, SPECMEM_* variable, specmem.toml, default)."""
    from specmem.indexer import config as configmod
    from specmem.indexer.embed import resolve_model_path

    model_path = resolve_model_path(cfg.model) if not cfg.model.startswith("hash:") else None
    rows = [
        *cfg.shown(),
        ("signal", str(cfg.signal_path), ""),
        ("watcher lock", str(cfg.watcher_lock_path), ""),
        ("model folder", str(model_path or "-"), ""),
        ("user data", str(configmod.user_data_dir()), ""),
        ("user cache", str(configmod.user_cache_dir()), "the ONNX model; SPECMEM_CACHE_DIR"),
    ]
    if as_json:
        emit({name: {"value": value, "source": source} for name, value, source in rows})
        return
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        say(f"{name:>{width}}: {value}" + (click.style(f"  ({source})", dim=True) if source else ""))


def main() -> None:
    """Entry point: errors the library raises on purpose become one line on stderr and exit code 1 (usage
    errors: 2); anything else is a bug and keeps its traceback."""
    from specmem.indexer.errors import SpecmemError

    try:
        cli.main(prog_name="specmem", standalone_mode=False)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart from a bug
    except BrokenPipeError:
        closed_pipe()
    except click.exceptions.Abort:
        say("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SpecmemError as exc:
        say(f"error: {exc}", err=True, fg="red")
        sys.exit(1)


if __name__ == "__main__":
    main()
