"""The MCP server through real clients: the SDK's client over stdio (spawning `specmem serve`), over streamable
HTTP, raw JSON-RPC lines on stdin, and the MCP Inspector's CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from tests.helpers import HEADERS, INIT, call, fails, free_port, memory, serve, write

READ_TOOLS = {
    "memory_context",
    "memory_search",
    "memory_match_triggers",
    "memory_get",
    "memory_list",
    "memory_stale",
    "memory_stats",
    "memory_health",
    "checkpoint_list",
}
SCHEMA_TOOLS = {"memory_context"}  # output schemas only where a client builds on the structure
WRITE_TOOLS = {
    "memory_index_scan",
    "memory_save",
    "memory_validate",
    "memory_write",
    "memory_update",
    "memory_delete",
    "checkpoint_create",
    "checkpoint_restore",
    "checkpoint_delete",
}


@pytest.fixture(autouse=True)
def no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the tools; hosting the watcher is tested in test_takeover.py."""
    monkeypatch.setenv("SPECMEM_WATCH", "0")


def test_tools_are_listed_with_hints_and_no_stubs(indexed_specs):
    async def scenario(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == READ_TOOLS | WRITE_TOOLS
        for name in READ_TOOLS:
            assert tools[name].annotations.read_only_hint is True, name
        for name, listed in tools.items():
            assert listed.description and not listed.description.startswith(" "), name
            assert "\n    " not in listed.description, f"{name}: description not dedented"
            assert (listed.output_schema is not None) == (name in SCHEMA_TOOLS), name
        for name in WRITE_TOOLS:
            assert tools[name].annotations.read_only_hint is False, name

    serve(scenario)


def test_read_tools_success_and_errors(indexed_specs, cfg):
    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="readers block writer", limit=5)
        titles = [r["title"] for r in answer["results"]]
        assert titles[0] == "Files are the truth" and "WAL mode" in titles  # constitutional first
        parts = set(answer["results"][1]["parts"])  # what --explain shows, for hybrid answers
        assert {"keyword_norm", "keyword_weight", "semantic_norm", "semantic_weight", "fusion"} <= parts
        assert answer["index"]["pending_embeddings"] == 0 and answer["index"]["last_indexed_ms"] > 0
        filtered = await call(
            client,
            "memory_search",
            query="tokens",
            filters={"spec_folder": "002-auth"},
            include_constitutional=False,
        )
        assert [r["title"] for r in filtered["results"]] == ["JWT tokens"]
        assert "limit: input should be less than or equal to 100" in await fails(
            client, "memory_search", query="x", limit=101
        )
        bad_mode = await fails(client, "memory_search", query="x", mode="fuzzy")
        assert bad_mode.endswith("mode: 'fuzzy' is not one of: keyword, semantic, hybrid"), bad_mode

        matches = await call(
            client, "memory_match_triggers", prompt="Why is the DATABASE   is locked error back?"
        )
        assert [m["title"] for m in matches] == ["WAL mode"] and matches[0]["phrases"] == [
            "database is locked"
        ]
        assert await call(client, "memory_match_triggers", prompt="walrus databases") == []

        wal_id = next(r["id"] for r in answer["results"] if r["title"] == "WAL mode")
        got = await call(client, "memory_get", id_or_path=str(wal_id))
        assert got["title"] == "WAL mode" and "readers never block" in got["content"]
        section = await call(client, "memory_get", id_or_path="001-db/memory/wal.md", anchor="why")
        assert "because of WAL" in section["content"] and "readers never" not in section["content"]
        lines = await call(client, "memory_get", id_or_path=str(wal_id), start_line=1, end_line=2)
        assert lines["content"].count("\n") == 2 and (lines["start_line"], lines["end_line"]) == (1, 2)
        assert "no anchor" in await fails(client, "memory_get", id_or_path=str(wal_id), anchor="nope")
        assert "no memory with id" in await fails(client, "memory_get", id_or_path="99999")
        outside = await fails(client, "memory_get", id_or_path="/etc/passwd")
        assert "/etc/passwd is outside the memory roots (" in outside

        listed = await call(client, "memory_list", limit=2, sort="title")
        assert listed["total"] == 4 and [i["title"] for i in listed["items"]] == [
            "Files are the truth",
            "JWT tokens",
        ]
        page2 = await call(client, "memory_list", offset=2, limit=2, sort="title")
        assert [i["title"] for i in page2["items"]] == ["Old sessions", "WAL mode"]
        assert (await call(client, "memory_list", spec_folder="002-auth"))["total"] == 2
        assert (await call(client, "memory_list", tier="critical"))["items"][0]["title"] == "WAL mode"
        bad_tier = await fails(client, "memory_list", tier="urgent")
        assert "tier: 'urgent' is not one of: constitutional, critical, important, normal" in bad_tier
        assert "\n" not in bad_tier and "pydantic" not in bad_tier

        stats = await call(client, "memory_stats")
        assert stats["memories"] == 4 and stats["by_tier"]["deprecated"] == 1 and stats["files_bytes"] > 0
        health = await call(client, "memory_health")
        assert health["database"] == str(cfg.db_path) and health["schema_version"] >= 1
        assert health["sqlite_vec_version"].startswith("v") and health["pending_embeddings"] == 0
        assert health["model_state"] == "ready" and health["watcher"] is None and health["watching"] is False

    serve(scenario)


def test_first_search_lists_every_rule_then_the_most_relevant(specs, cfg):
    for n in range(9):
        write(specs / "constitutional" / f"rule{n}.md", memory(f"Rule {n}", f"Always do thing {n}."))
    for n in range(6):
        write(specs / "001-a" / "memory" / f"m{n}.md", memory(f"Memory {n}", f"cache layer detail {n}"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.close()

    async def scenario(client: Client) -> None:
        answers = [
            (await call(client, "memory_search", query="cache layer", limit=3))["results"] for _ in range(3)
        ]
        assert sum(r["always_surfaced"] for r in answers[0]) == 9  # the session's first search: every rule
        for later in answers[1:]:  # then rules are ranked by relevance, a third of the limit at most
            assert len(later) == 3 and not any(r["always_surfaced"] for r in later)
            assert [r["title"] for r in later if r["tier"] == "constitutional"] == []

    serve(scenario)


def test_next_call_sees_commits_from_another_process_through_the_signal(indexed_specs, cfg, tmp_path):
    async def scenario(client: Client) -> None:
        assert (
            await call(
                client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
            )
        )["results"] == []
        write(indexed_specs / "003-new" / "memory" / "fish.md", memory("Fish", "zebrafish regenerate fins"))
        done = subprocess.run(
            [sys.executable, "-m", "specmem", "scan"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        found = await call(
            client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
        )
        assert [r["title"] for r in found["results"]] == ["Fish"]
        health = await call(client, "memory_health")
        assert health["reloads"] >= 1

        # A database replaced on disk (a restore, a rebuild) is picked up by the next call.
        other = config.resolve(db=str(tmp_path / "other" / "index.db"))
        (indexed_specs / "003-new" / "memory" / "fish.md").unlink()
        conn = db.connect(other.db_path)
        scan.scan(conn, other, get_embedder(other.model))
        conn.close()
        for suffix in ("", "-wal", "-shm"):  # a replaced database brings its own WAL, or none
            if Path(f"{other.db_path}{suffix}").exists():
                os.replace(f"{other.db_path}{suffix}", f"{cfg.db_path}{suffix}")
            else:
                Path(f"{cfg.db_path}{suffix}").unlink(missing_ok=True)
        assert (
            await call(
                client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
            )
        )["results"] == []

    serve(scenario)


def test_write_tools(indexed_specs, cfg, tmp_path):
    async def scenario(client: Client) -> None:
        path = write(
            indexed_specs / "002-auth" / "memory" / "mfa.md", memory("MFA", "second factor required")
        )
        summary = await call(client, "memory_save", path="002-auth/memory/mfa.md")
        assert summary["added"] == 1 and summary["scope"] == [str(path)]
        assert [
            r["title"]
            for r in (
                await call(
                    client,
                    "memory_search",
                    query="second factor",
                    mode="keyword",
                    include_constitutional=False,
                )
            )["results"]
        ] == ["MFA"]
        roots = f"is outside the memory roots ({indexed_specs}); give a path inside them"
        assert f"{tmp_path / 'x.md'} {roots}" in await fails(
            client, "memory_save", path=str(tmp_path / "x.md")
        )
        assert f"../../etc/passwd {roots}" in await fails(client, "memory_save", path="../../etc/passwd")
        assert "not a memory file" in await fails(client, "memory_save", path="002-auth")

        path.unlink()
        scanned = await call(client, "memory_index_scan", spec_folder="002-auth")
        assert scanned["removed"] == 1 and scanned["files_seen"] == 2
        assert "no spec folder" in await fails(client, "memory_index_scan", spec_folder="999-none")
        assert "spec_folder '../..' is not a folder name like 003-auth" in await fails(
            client, "memory_index_scan", spec_folder="../.."
        )
        everything = await call(client, "memory_index_scan", force=True)
        assert everything["updated"] == 4

        jwt = (await call(client, "memory_search", query="tokens", include_constitutional=False))["results"][
            0
        ]
        first = await call(client, "memory_validate", id=jwt["id"], useful=False)
        second = await call(client, "memory_validate", id=jwt["id"], useful=False)
        assert (
            first["confidence_before"] == 0.5 and second["confidence_after"] < first["confidence_after"] < 0.5
        )
        again = (await call(client, "memory_search", query="tokens", include_constitutional=False))[
            "results"
        ][0]
        assert again["parts"]["confidence"] < jwt["parts"]["confidence"]
        assert "no memory with id" in await fails(client, "memory_validate", id=424242, useful=True)

    serve(scenario)


def test_keyword_answer_while_the_model_loads(indexed_specs, cfg):
    """With the real model configured, the first search answers in keyword mode (saying so) instead of waiting."""
    env = {"SPECMEM_MODEL": config.DEFAULT_MODEL, "HF_HUB_OFFLINE": "1"}

    async def scenario(client: Client) -> None:
        first = await call(client, "memory_search", query="readers block writer")
        assert first["keyword_only"] is True and first["index"]["model_state"] == "loading"
        assert any("keyword mode" in n for n in first["notes"])
        assert first["results"], "a keyword answer, not an empty one"
        deadline = time.monotonic() + 90
        while (await call(client, "memory_health"))["model_state"] == "loading":
            assert time.monotonic() < deadline, "the model never finished loading"
            await anyio.sleep(0.2)
        health = await call(client, "memory_health")
        assert health["model_state"] == "ready", health["model_error"]

    serve(scenario, env=env)


def test_start_up_imports_no_torch(indexed_specs):
    code = (
        "import sys; from specmem.indexer import config; from specmem.server.mcp.server import build_server; "
        "import specmem.cli; "
        "build_server(config.resolve(model='" + config.DEFAULT_MODEL + "'), load_model=False); "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_stdout_carries_only_the_protocol(indexed_specs):
    """Raw JSON-RPC lines, including garbage and hostile input: every stdout line is a protocol message."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    replies: dict[int, dict] = {}

    def send(message: dict | str) -> None:
        proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        proc.stdin.flush()

    def reply(wanted: int) -> dict:
        while wanted not in replies:
            line = proc.stdout.readline()
            assert line, f"server closed stdout; stderr: {proc.stderr.read()}"
            message = json.loads(line)  # fails the test if anything but JSON reaches stdout
            if "id" in message and message["id"] is not None:
                replies[message["id"]] = message
        return replies[wanted]

    def tool(id_: int, name: str, arguments: dict) -> dict:
        send(
            {
                "jsonrpc": "2.0",
                "id": id_,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
        )
        return reply(id_)

    try:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        assert reply(1)["result"]["serverInfo"]["name"] == "specmem"
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert len(reply(2)["result"]["tools"]) == len(READ_TOOLS | WRITE_TOOLS)
        unknown = tool(3, "no_such_tool", {})
        assert unknown.get("error") or unknown["result"]["isError"]
        hostile = tool(4, "memory_search", {"query": '" OR 1=1; DROP TABLE memory_index; -- NEAR(* \x00'})
        assert not hostile["result"]["isError"]
        send("not json at all")
        send({"jsonrpc": "2.0", "id": 5, "method": "no/such/method"})
        assert "error" in reply(5)
        assert tool(6, "memory_stats", {})["result"]["structuredContent"]["memories"] == 4
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_tools_list_fits_in_13_kb(indexed_specs):
    """Every session pays for tools/list in its context: the whole reply, as sent, stays under 13 KB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ):
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            assert line, "server closed stdout"
            if json.loads(line).get("id") == 2:
                break
        tools = json.loads(line)["result"]["tools"]
        assert {t["name"] for t in tools} == READ_TOOLS | WRITE_TOOLS
        assert all(t["description"] for t in tools)
        assert len(line.encode()) <= 13_000, f"tools/list is {len(line.encode())} bytes"
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()


def test_streamable_http(indexed_specs):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve", "--http", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:

        async def main() -> None:
            with anyio.fail_after(60):
                while True:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                            break
                    except OSError:
                        await anyio.sleep(0.05)
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    assert names == READ_TOOLS | WRITE_TOOLS
                    found = await call(
                        client, "memory_search", query="tokens expire", include_constitutional=False
                    )
                    assert found["results"][0]["title"] == "JWT tokens"

        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.network
def test_mcp_inspector_cli(indexed_specs, isolated):
    """The MCP Inspector's CLI (downloaded by npx, hence the network marker) lists and calls the tools."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed: the MCP Inspector CLI cannot run here")
    base = [
        npx,
        "-y",
        "@modelcontextprotocol/inspector",
        "--cli",
        sys.executable,
        "-m",
        "specmem",
        "serve",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    listed = subprocess.run(
        [*base, "--method", "tools/list"], capture_output=True, text=True, timeout=300, cwd=isolated, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == READ_TOOLS | WRITE_TOOLS
    searched = subprocess.run(
        [
            *base,
            "--method",
            "tools/call",
            "--tool-name",
            "memory_search",
            "--tool-arg",
            "query=tokens expire",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=isolated,
        env=env,
    )
    assert searched.returncode == 0, searched.stderr
    reply = json.loads(searched.stdout)
    assert not reply.get("isError") and "JWT tokens" in json.dumps(reply["structuredContent"])


def test_a_crashing_call_is_an_error_result_and_the_server_goes_on(indexed_specs, cfg, monkeypatch):
    """In-process (so the fault can be injected): an unexpected exception in one call fails only that call."""
    from specmem.server import search as api  # the API imports search() from here on each call
    from specmem.server.mcp import server as mcp_server

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    real = api.search
    monkeypatch.setattr(api, "search", broken)

    async def main() -> None:
        async with Client(mcp_server.build_server(cfg, load_model=False)) as client:
            crashed = await client.call_tool("memory_search", {"query": "tokens"})
            # A bug, not a known error: the client gets no internals, the server log gets the traceback.
            assert crashed.is_error and crashed.content[0].text == "Error executing tool memory_search"
            monkeypatch.setattr(api, "search", real)
            stats = await call(client, "memory_stats")
            assert stats["memories"] == 4

    anyio.run(main)


# -- HTTP transport security ------------------------------------------------------------------------------------


def http_server(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve", "--http", "--port", str(port)],
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            assert time.monotonic() < deadline, "the HTTP server never listened"
            time.sleep(0.05)


class Reply:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text


def post(url: str, headers: dict[str, str]) -> Reply:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(INIT).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, response.read(2000).decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode(errors="replace"))


def test_http_token_host_and_origin_checks(indexed_specs):
    proc, port = http_server({"SPECMEM_HTTP_TOKEN": "s3cret-token"})
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        assert post(url, HEADERS).status_code == 401
        wrong = post(url, {**HEADERS, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "SPECMEM_HTTP_TOKEN" in wrong.text
        auth = {**HEADERS, "Authorization": "Bearer s3cret-token"}
        assert post(url, auth).status_code == 200
        evil_origin = post(url, {**auth, "Origin": "http://evil.example"})
        assert evil_origin.status_code == 403
        rebound = post(url, {**auth, "Host": f"evil.example:{port}"})
        assert rebound.status_code == 421
        local_origin = post(url, {**auth, "Origin": f"http://localhost:{port}"})
        assert local_origin.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_index_is_owner_only(indexed_specs, cfg):
    import stat

    assert stat.S_IMODE(cfg.db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.db_path.parent.stat().st_mode) == 0o700
