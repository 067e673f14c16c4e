"""A newcomer's first hour, through real processes (the `specmem` command, `specmem serve` over stdio and HTTP)
and the MCP tools in memory.

Scan progress off a terminal, no stray progress bars, SIGTERM to a watcher, and the answers that used to be silent
or wrong (empty query, server version, verbose logs, long stats, doubled bold in snippets, memory_save paths)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from specmem import DISTRIBUTION
from specmem.indexer import config, db
from tests.helpers import call, cli, fails, in_memory, memory, serve, write

ROOT = Path(__file__).resolve().parents[2]


# -- item 6: progress off a terminal, and no progress bars of the embedding library ----------------------------


def test_scan_reports_every_phase_off_a_terminal(specs):
    for i in range(250):
        write(specs / f"{i % 7:03d}-f" / "memory" / f"m{i}.md", memory(f"Memory {i}", f"body number {i}"))
    done = cli("scan")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "\r" not in done.stderr and "\033" not in done.stderr, "no terminal control codes in a log"
    for phase in ("walking", "checking: 250/250", "indexing: 250/250", "embedding: 250/250"):
        assert any(line.startswith(phase) for line in lines), (phase, lines)
    assert "scanned 250 files" in done.stdout


def test_real_model_draws_no_progress_bars_in_scan_and_watch(specs, isolated):
    """sentence-transformers draws tqdm "Batches" bars whenever logging is at INFO (as `watch` and `serve -v`
    set it); none reach stderr."""
    env = {"SPECMEM_MODEL": config.DEFAULT_MODEL, "HF_HUB_OFFLINE": "1"}
    write(specs / "001-a" / "memory" / "a.md", memory("Alpha", "the first memory about tokens"))
    done = cli("scan", env=env)
    assert done.returncode == 0, done.stderr
    assert "Batches" not in done.stderr and "it/s" not in done.stderr, done.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch", "-v"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        seen = wait_for_line(proc, "ready")
        write(specs / "001-a" / "memory" / "b.md", memory("Beta", "a second memory, embedded by the watcher"))
        seen += wait_for_line(proc, "embedded")
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists():  # Linux: the watcher embedded with ONNX Runtime, torch never loaded (issue 28)
            libraries = maps.read_text()
            assert "onnxruntime" in libraries and "libtorch" not in libraries
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, seen + rest
    assert "Batches" not in seen + rest and "it/s" not in seen + rest, seen + rest


def wait_for_line(proc: subprocess.Popen, needle: str, limit: float = 240) -> str:
    """Read the process's stderr until a line holds `needle` (the test's own timeout bounds a hang)."""
    seen = ""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"process ended before {needle!r}: {seen}"
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} line: {seen}")


# -- item 8: SIGTERM to a watcher ------------------------------------------------------------------------------


def test_sigterm_stops_a_watcher_mid_work_with_the_index_consistent(specs, cfg):
    """SIGTERM while the watcher embeds (real model, many chunks): exit 0, and the index is whole: every chunk
    has its FTS row, and its vector exactly when it is marked embedded (the batch in progress committed or not
    at all). The time it takes is measured by hand (see the README), never asserted here."""
    env = {"SPECMEM_MODEL": config.DEFAULT_MODEL, "HF_HUB_OFFLINE": "1"}
    for i in range(60):
        body = "\n\n".join(
            f"## Part {j}\n\nparagraph {j} of memory {i} about caching and tokens" for j in range(8)
        )
        write(specs / "001-a" / "memory" / f"m{i}.md", memory(f"Memory {i}", body))
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        seen = wait_for_line(proc, "ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, seen + rest
    assert "stopped after" in rest
    conn = db.connect(cfg.db_path, readonly=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        chunks = db.scalar(conn, "SELECT count(*) FROM memory_chunks")
        assert chunks == db.scalar(conn, "SELECT count(*) FROM memory_fts") > 0
        if db.has_table(conn, "vec_memories"):
            embedded = db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE embedded = 1")
            assert db.scalar(conn, "SELECT count(*) FROM vec_memories") == embedded
    finally:
        conn.close()
    again = cli("scan", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["pending_embeddings"] == 0, again.stderr


# -- item 8: silent or wrong answers ---------------------------------------------------------------------------


@pytest.fixture
def corpus(specs: Path) -> Path:
    write(
        specs / "001-a" / "memory" / "bold.md",
        memory("Bold words", "We chose the **Framework** because the hunter2 secret is here."),
    )
    write(specs / "002-b" / "memory" / "plain.md", memory("Plain", "nothing bold"))
    assert cli("scan").returncode == 0
    return specs


def test_blank_query_is_an_error_in_cli_and_mcp(corpus):
    for query in ("", "   "):
        done = cli("search", query)
        assert done.returncode == 1 and "the query is empty" in done.stderr, done
        assert "no memories match" not in done.stdout

    async def scenario(client: Client) -> None:
        assert "the query is empty" in await fails(client, "memory_search", query=" \t")

    in_memory(scenario)


def test_snippets_do_not_double_markdown_bold(corpus):
    done = cli("search", "framework", "--mode", "keyword", "--json")
    snippet = json.loads(done.stdout)["results"][0]["snippet"]
    assert "**Framework**" in snippet and "****" not in snippet, snippet

    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="framework", mode="keyword")
        assert "****" not in answer["results"][0]["snippet"]

    in_memory(scenario)


def test_server_reports_its_version(corpus):
    async def scenario(client: Client) -> None:
        assert client.server_info.name == "specmem"
        assert client.server_info.version == version(DISTRIBUTION)

    in_memory(scenario)


def test_verbose_server_logs_calls_but_no_memory_text(corpus):
    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="framework hunter2")
        await call(client, "memory_get", id_or_path=str(answer["results"][0]["id"]))

    err = serve(scenario, args=("-v",))
    assert "memory_search answered" in err and "memory_get answered" in err, err
    assert "hunter2" not in err, err


def test_verbose_http_server_logs_no_response_bodies(corpus):
    """Over HTTP, sse-starlette logs every chunk it sends at DEBUG; `-v` must not turn that on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve", "--http", "--port", str(port), "-v", "--no-watch"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def main() -> None:
            with anyio.fail_after(120):
                while True:
                    try:
                        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                            await call(client, "memory_search", query="hunter2 framework")
                            return
                    except Exception:  # noqa: BLE001 - not listening yet
                        await anyio.sleep(0.2)

        anyio.run(main)
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    assert "memory_search answered" in err, err
    assert "hunter2" not in err, err


def test_stats_keeps_a_hundred_spec_folders_short(specs):
    for i in range(120):
        write(specs / f"{i:03d}-folder" / "memory" / "m.md", memory(f"M {i}", "body"))
    write(specs / "005-folder" / "memory" / "n.md", memory("N", "body"))
    assert cli("scan").returncode == 0
    done = cli("stats")
    line = next(x for x in done.stdout.splitlines() if x.startswith("spec folders:"))
    assert line.startswith("spec folders: 005-folder 2, ") and "… and 108 more" in line, line
    assert len(line) < 400
    assert len(json.loads(cli("stats", "--json").stdout)["by_spec_folder"]) == 120


def test_memory_save_paths_relative_to_the_project_missing_and_ignored(corpus, isolated, monkeypatch):
    write(corpus / "003-c" / "memory" / "new.md", memory("New one", "saved by path"))
    write(corpus / ".drafts" / "hidden.md", memory("Hidden", "in a dot-folder"))

    async def scenario(client: Client) -> None:
        saved = await call(client, "memory_save", path="specs/003-c/memory/new.md")
        assert saved["files_seen"] == 1 and saved["added"] == 1, saved
        assert saved["scope"] == [str(corpus / "003-c" / "memory" / "new.md")]
        assert "does not exist" in await fails(client, "memory_save", path="specs/003-c/memory/nope.md")
        assert "is not indexed" in await fails(client, "memory_save", path="specs/.drafts/hidden.md")

    monkeypatch.chdir(isolated.parent)  # a server started elsewhere: paths are still the project's
    in_memory(scenario)


def test_readme_mcp_tools_table_is_one_table_listing_every_tool():
    from specmem.server.mcp.server import TOOLS

    text = (ROOT / "README.md").read_text()
    start = text.index("| tool | read-only | what it does |")
    table = text[start:].split("\n\n", 1)[0].splitlines()
    listed = " ".join(line.split("|")[1] for line in table[2:])
    names = re.findall(r"`(\w+)`", listed)
    registered = {t.__name__ for t in TOOLS}
    assert len(registered) > 15 and registered <= set(names), registered - set(names)


# -- item 3: roots scanned outside a configured project are remembered ------------------------------------------


def test_scanned_roots_are_remembered_outside_a_project(isolated, monkeypatch, tmp_path):
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    vault = tmp_path / "vault"
    write(vault / "Sync" / "Sync notes.md", "# Sync\n\nObsidian Sync keeps vaults in step across devices.\n")
    (vault / "Daily").mkdir()
    scanned = cli("scan", ".", cwd=vault)
    assert scanned.returncode == 0, scanned.stderr
    assert (
        "remembered: `specmem search`" in scanned.stderr and f"specmem init --root {vault}" in scanned.stderr
    )
    assert str(tmp_path / "user-data") in scanned.stdout  # the index lives in the user data folder

    for where in (vault, vault / "Daily"):
        found = cli("search", "sync", cwd=where)
        assert found.returncode == 0, found.stderr
        assert "Sync" in found.stdout
    paths = cli("paths", cwd=vault).stdout
    assert "remembered from `specmem scan` in" in paths

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = cli("search", "sync", cwd=elsewhere)
    assert missing.returncode == 1
    assert f"no index yet for roots {elsewhere / 'specs'}" in missing.stderr, missing.stderr
    assert "looked at" in missing.stderr and f"no scan remembered for {elsewhere}" in missing.stderr
    assert "specmem init" in missing.stderr


def test_a_scan_remembered_in_a_parent_folder_does_not_take_over_a_project_below_it(
    isolated, monkeypatch, tmp_path
):
    """`specmem scan ~/vault` once run in `~` (or /tmp) must not replace the specs of every project below it."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    vault = tmp_path / "vault"
    write(vault / "note.md", "# Vault note\n\nsomething about gardening\n")
    assert cli("scan", str(vault), cwd=tmp_path).returncode == 0
    project = tmp_path / "work" / "app"
    write(project / "specs" / "001-a" / "memory" / "own.md", memory("Own decision", "gardening with apsw"))
    assert cli("scan", cwd=project).returncode == 0

    own = cli("search", "gardening", cwd=project)
    assert own.returncode == 0, own.stderr
    assert "Own decision" in own.stdout and "Vault note" not in own.stdout
    assert "remembered from" not in cli("paths", cwd=project).stdout

    plain = tmp_path / "work" / "notes"  # no project here: the scan remembered above still applies
    plain.mkdir()
    found = cli("search", "gardening", cwd=plain)
    assert found.returncode == 0 and "Vault note" in found.stdout, found.stderr


# -- item 5: specmem init ---------------------------------------------------------------------------------------


def test_init_then_scan_then_the_configured_mcp_server_answers(isolated, monkeypatch, tmp_path):
    """A newcomer's first minutes: init (dry run first), scan, search, then the MCP server exactly as the written
    .mcp.json starts it."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    top = tmp_path / "newproject"
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    write(top / ".kiro" / "steering" / "tech.md", "# Tech stack\n\nWe use Django and PostgreSQL.\n")
    write(top / ".notes" / "n.md", "# A note\n")

    dry = cli("init", str(top), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing written" in dry.stdout and "would create specmem.toml" in dry.stdout
    assert "reads: .kiro/steering/ (1 file)" in dry.stdout
    assert 'not read: .notes/ holds 1 markdown file; to index it, add include = [".notes"]' in dry.stdout
    assert not (top / "specmem.toml").exists() and not (top / "specs").exists()

    done = cli("init", cwd=top)
    assert done.returncode == 0, done.stderr
    for name in ("specmem.toml", ".specmem/.gitignore", ".mcp.json"):
        assert (top / name).is_file(), name
    # The project keeps memory already (Kiro's steering): no example is written into it.
    assert (top / "specs").is_dir() and not any((top / "specs").iterdir())
    assert "no examples added (--examples adds them)" in done.stdout
    (top / ".mcp.json").write_text((top / ".mcp.json").read_text())  # untouched from here on
    before = {p: p.read_bytes() for p in top.rglob("*") if p.is_file() and ".git" not in p.parts}

    again = cli("init", cwd=top)
    assert "created" not in again.stdout and again.stdout.count("kept") == 4, again.stdout
    assert {p: p.read_bytes() for p in before} == before

    ignored = subprocess.run(["git", "check-ignore", "-q", ".specmem/index.db"], cwd=top, capture_output=True)
    assert ignored.returncode == 0, "the index folder is kept out of git"

    scanned = cli("scan", cwd=top)
    assert scanned.returncode == 0 and "scanned 1 files" in scanned.stdout, scanned.stdout + scanned.stderr
    found = cli("search", "which database", cwd=top)
    assert found.returncode == 0 and "Tech stack" in found.stdout, found.stdout

    server = json.loads((top / ".mcp.json").read_text())["mcpServers"]["specmem"]
    assert server == {
        "type": "stdio",
        "command": "specmem",
        "args": ["serve"],
    }  # no machine's path: committable
    on_path = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    }  # as after an install
    params = StdioServerParameters(
        command=server["command"],
        args=server["args"],
        env={**os.environ, **on_path, "SPECMEM_WATCH": "0"},
        cwd=str(top),
    )

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(params) as client:
                answer = await call(client, "memory_search", query="Django")
                titles = [r["title"] for r in answer["results"]]
                assert "Tech stack" in titles
                assert any(r["always_surfaced"] for r in answer["results"])

    anyio.run(main)


def test_init_keeps_an_existing_mcp_config_and_says_what_to_add(isolated, tmp_path):
    top = tmp_path / "p"
    write(top / ".mcp.json", '{"mcpServers": {"other": {"command": "x"}}}\n')
    write(top / "specs" / "a.md", "# A\n")
    done = cli("init", str(top), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        'kept         .mcp.json: exists without specmem; add to its "mcpServers": "specmem": {' in done.stdout
    )
    assert json.loads((top / ".mcp.json").read_text()) == {"mcpServers": {"other": {"command": "x"}}}
    assert "the project keeps 1 memory file; no examples added" in done.stdout
    assert not (top / "specs" / "constitutional").exists()


# -- item 9: CLI parity with the MCP tools, and shell completion ------------------------------------------------


def test_cli_does_what_the_mcp_tools_do(corpus):
    listed = json.loads(cli("list", "--json").stdout)
    assert listed["total"] == 2
    bold = next(m for m in listed["items"] if m["title"] == "Bold words")
    text = cli("list", "--tier", "normal", "--sort", "title").stdout
    assert text.index("Bold words") < text.index("Plain")

    updated = cli("update", str(bold["id"]), "--tier", "critical", "--trigger", "pick a framework")
    assert updated.returncode == 0 and "importance_tier" in updated.stdout, updated
    triggers = cli("triggers", "how do we pick a framework here?", "--json")
    assert [m["id"] for m in json.loads(triggers.stdout)] == [bold["id"]]
    piped = subprocess.run(
        [sys.executable, "-m", "specmem", "triggers", "-"],
        input="Pick A Framework",
        capture_output=True,
        text=True,
    )
    assert "Bold words" in piped.stdout

    validated = cli("validate", str(bold["id"]), "--useful")
    assert validated.returncode == 0 and "confidence 0.50 →" in validated.stdout

    write(corpus / "002-b" / "memory" / "plain.md", memory("Plain", "nothing bold, edited"))
    saved = cli("save", "specs/002-b/memory/plain.md")
    assert saved.returncode == 0 and "1 updated" in saved.stdout, saved

    deleted = cli("delete", str(bold["id"]))
    assert deleted.returncode == 0 and "undo with: specmem checkpoint restore auto-delete-" in deleted.stderr
    assert not (corpus / "001-a" / "memory" / "bold.md").exists()
    refused = cli("delete", "--spec-folder", "002-b")
    assert refused.returncode == 1 and "needs --yes" in refused.stderr
    assert cli("delete", "--spec-folder", "002-b", "--yes").returncode == 0
    assert json.loads(cli("list", "--json").stdout)["total"] == 0

    async def scenario(client: Client) -> None:  # the same index, seen by the server
        assert (await call(client, "memory_list"))["total"] == 0

    in_memory(scenario)


def test_shell_completion_is_generated_by_the_command():
    script = subprocess.run(
        [sys.executable, "-m", "specmem"],
        env={**os.environ, "_SPECMEM_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
    )
    assert "_specmem_completion" in script.stdout, script.stderr
    words = subprocess.run(
        [sys.executable, "-m", "specmem"],
        env={
            **os.environ,
            "_SPECMEM_COMPLETE": "bash_complete",
            "COMP_WORDS": "specmem tri",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
    )
    assert "triggers" in words.stdout, words


# -- item 7: the first MCP search on a fresh project ------------------------------------------------------------


def test_first_search_on_a_fresh_project_waits_for_the_keyword_phase(specs, cfg):
    """No index yet; the server builds it (it hosts the watcher). The first search, sent at once, answers with
    the memories instead of an error or an empty list."""
    for i in range(1500):
        write(specs / f"{i % 30:03d}-f" / "memory" / f"m{i}.md", memory(f"Memory {i}", f"plain words {i}"))
    write(specs / "zzz" / "memory" / "last.md", memory("The last one", "the word quokka is only here"))
    assert not cfg.db_path.exists()

    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="quokka", mode="keyword")
        assert [r["title"] for r in answer["results"]] == ["The last one"], answer["notes"]
        assert not any(n.startswith("indexing") for n in answer["notes"]), answer["notes"]

    in_memory(scenario, watch=True, ready=False)


def fake_scan(cfg: config.Config, pid: int, phase: str, done: int, total: int, age_s: float = 0.0) -> None:
    now = time.time_ns() // 1_000_000
    state = {"pid": pid, "host": socket.gethostname(), "phase": phase, "done": done, "total": total}
    state |= {"started_ms": now - 60_000, "updated_ms": now - int(age_s * 1000)}
    cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.scan_state_path.write_text(json.dumps(state))


def test_search_says_how_far_indexing_got_when_the_wait_runs_out(corpus, cfg):
    fake_scan(cfg, os.getpid(), "indexing", 400, 1000)  # this test process plays a scan that is still busy

    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="framework")
        assert answer["results"], "what is indexed is still answered"
        assert any(n.startswith("indexing: 400 of 1000 files done") for n in answer["notes"]), answer["notes"]

    serve(scenario, env={"SPECMEM_SEARCH_WAIT": "0.2"})
    cfg.db_path.unlink()

    async def nothing_yet(client: Client) -> None:
        answer = await call(client, "memory_search", query="framework")
        assert answer["results"] == []
        assert "nothing is searchable yet" in answer["notes"][0], answer["notes"]

    serve(nothing_yet, env={"SPECMEM_SEARCH_WAIT": "0.2"})


def test_doctor_tells_a_running_scan_from_a_stalled_or_interrupted_one(corpus, cfg):
    fake_scan(cfg, os.getpid(), "checking", 200, 1000, age_s=2)
    running = cli("doctor", "--no-model")
    assert "in progress: pid" in running.stdout and "200 of 1000 files checked" in running.stdout

    fake_scan(cfg, os.getpid(), "embedding", 64, 5000, age_s=600)
    stalled = cli("doctor", "--no-model")
    assert stalled.returncode == 1 and "stalled: pid" in stalled.stdout
    assert re.search(r"has reported nothing for 6\d\d s", stalled.stdout), stalled.stdout

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    fake_scan(cfg, int(gone.stdout), "indexing", 10, 100, age_s=5)
    dead = cli("doctor", "--no-model")
    assert "interrupted: pid" in dead.stdout and "run `specmem scan`" in dead.stdout
