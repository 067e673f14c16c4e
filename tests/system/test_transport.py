"""The transports and the server process, through real server processes: raw JSON-RPC lines written to a server's
stdin (only the protocol on stdout, every line answered, tools/list's size as sent), the model loading while the
process answers, the SDK's client over streamable HTTP, real HTTP requests under attack, and the MCP Inspector's CLI.
The tools' behaviour is tested in memory (tests/mcp)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from specmem.indexer import config
from specmem.server.mcp.server import TOOLS
from tests.helpers import HEADERS, INIT, StdioServer, call, free_port, serve, wait_for

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECMEM_WATCH", "0")


def search_line(id_: Any, escaped_query: str) -> str:
    """A tools/call line written by hand, so that the query's JSON escapes reach the server as written."""
    return (
        f'{{"jsonrpc":"2.0","id":{json.dumps(id_)},"method":"tools/call",'
        f'"params":{{"name":"memory_search","arguments":{{"query":"{escaped_query}"}}}}}}'
    )


def test_every_request_line_gets_an_answer_over_stdio(indexed_specs):
    """A lone surrogate escape (`\\ud800`) is valid JSON to most parsers but not to the SDK's: the line was
    dropped without an answer and the client waited forever. So was any line that is JSON with a request id
    but not a valid request. Each now gets an error for its id, and the server goes on."""
    server = StdioServer()
    try:
        server.initialize()
        for id_, query in [(7, "a\\ud800b"), (8, "\\udc00"), ("str-id", "x\\ud83d")]:
            server.send(search_line(id_, query))
            answer = server.reply(id_)
            assert answer["error"]["code"] == -32700 and "surrogate" in answer["error"]["message"], answer
        server.send('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":"not an object"}')
        assert server.reply(9)["error"]["code"] == -32600
        server.send('{"jsonrpc":"2.0","id":10,"method":42}')
        assert server.reply(10)["error"]["code"] == -32600
        server.send("not json at all")  # JSON-RPC: a parse error, with a null id
        assert server.reply(None)["error"]["code"] == -32700
        # An id that is no string or integer made the line a notification to the SDK: never answered.
        for id_ in ("1.5", "1.0", '{"a": 1}', "true", "[1]", "null"):
            server.send('{"jsonrpc":"2.0","id":' + id_ + ',"method":"ping"}')
            assert "id must be a string or an integer" in server.reply(None)["error"]["message"], id_
        # A notification is never answered, not even with an error.
        server.send('{"jsonrpc":"2.0","method":"notifications/x","params":"no id"}')
        server.send(search_line(11, "tokens \\ud83d\\ude00 expire"))  # a valid pair is an ordinary query
        found = server.reply(11)["result"]["structuredContent"]
        assert found["results"] and not server.replies
    finally:
        server.close()
    assert server.proc.returncode == 0


def test_stdout_carries_only_the_protocol_and_tools_list_fits_in_13_kb(indexed_specs):
    """Raw JSON-RPC lines, including garbage and hostile input: every stdout line is a protocol message. Every
    session pays for tools/list in its context: the whole reply, as sent, stays under 13 KB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    replies: dict[int, dict] = {}
    lines: dict[int, str] = {}

    def send(message: dict | str) -> None:
        assert proc.stdin is not None
        proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        proc.stdin.flush()

    def reply(wanted: int) -> dict:
        assert proc.stdout is not None and proc.stderr is not None
        while wanted not in replies:
            line = proc.stdout.readline()
            assert line, f"server closed stdout; stderr: {proc.stderr.read()}"
            message = json.loads(line)  # fails the test if anything but JSON reaches stdout
            if "id" in message and message["id"] is not None:
                replies[message["id"]], lines[message["id"]] = message, line
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
        tools = reply(2)["result"]["tools"]
        assert {t["name"] for t in tools} == {t.__name__ for t in TOOLS}
        assert all(t["description"] for t in tools)
        assert len(lines[2].encode()) <= 13_000, f"tools/list is {len(lines[2].encode())} bytes"
        unknown = tool(3, "no_such_tool", {})
        assert unknown.get("error") or unknown["result"]["isError"]
        hostile = tool(4, "memory_search", {"query": '" OR 1=1; DROP TABLE memory_index; -- NEAR(* \x00'})
        assert not hostile["result"]["isError"]
        send("not json at all")
        send({"jsonrpc": "2.0", "id": 5, "method": "no/such/method"})
        assert "error" in reply(5)
        assert tool(6, "memory_stats", {})["result"]["structuredContent"]["memories"] == 4
    finally:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_keyword_answer_while_the_model_loads(indexed_specs, cfg):
    """With the real model configured, the process's first search answers in keyword mode (saying so) instead of
    waiting for the model, which loads in the background."""
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


# -- HTTP --------------------------------------------------------------------------------------------------------


def http_server(env: dict[str, str], host: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve", "--http", "--host", host, "--port", str(port)],
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    wait_for(lambda: _listening(port), what="the HTTP server to listen")
    return proc, port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without a network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def http_post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(4000).decode(errors="replace"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def test_idle_http_sessions_expire(indexed_specs):
    """1,200 abandoned sessions took a server from 91 to 168 MB: with the SDK versions specmem allowed, a session
    lived until its client deleted it. A session with no request for SPECMEM_HTTP_SESSION_IDLE seconds ends."""
    proc, port = http_server({"SPECMEM_HTTP_SESSION_IDLE": "1"})
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        sessions = []
        for _ in range(20):
            status, _, headers = http_post(url, INIT, HEADERS)
            assert status == 200
            sessions.append(headers["mcp-session-id"])
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

        def expired(session: str) -> bool:
            with_session = {**HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
            return http_post(url, listing, with_session)[0] == 404

        # Asking a session about itself is a request, which keeps it alive: ask less often than it may idle.
        wait_for(lambda: all(expired(s) for s in sessions), what="the idle sessions to expire", every=2.5)
        assert http_post(url, INIT, HEADERS)[0] == 200  # a new client is served as before
    finally:
        proc.terminate()
        proc.wait(30)


def test_streamable_http(indexed_specs):
    proc, port = http_server({})
    try:

        async def main() -> None:
            with anyio.fail_after(60):
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    assert names == {t.__name__ for t in TOOLS}
                    found = await call(
                        client, "memory_search", query="tokens expire", include_constitutional=False
                    )
                    assert found["results"][0]["title"] == "JWT tokens"

        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(30)


def test_http_token_host_and_origin_checks(indexed_specs):
    """The token is required (its scheme in any case), a foreign Origin is refused, and so is a Host that is not
    this machine's (DNS rebinding)."""
    proc, port = http_server({"SPECMEM_HTTP_TOKEN": "s3cret-token"})
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            auth = {**HEADERS, "Authorization": f"{scheme} s3cret-token"}
            assert http_post(url, INIT, auth)[0] == 200, scheme
        assert http_post(url, INIT, HEADERS)[0] == 401
        for wrong in (
            "Bearer nope",
            "Basic s3cret-token",
            "Bearer s3cret-tokenX",
            "Bearers3cret-token",
            "s3cret-token",
        ):
            status, text, _ = http_post(url, INIT, {**HEADERS, "Authorization": wrong})
            assert status == 401 and "SPECMEM_HTTP_TOKEN" in text, wrong
        auth = {**HEADERS, "Authorization": "Bearer s3cret-token"}
        assert http_post(url, INIT, {**auth, "Origin": "http://evil.example"})[0] == 403
        assert http_post(url, INIT, {**auth, "Host": f"evil.example:{port}"})[0] == 421
        assert http_post(url, INIT, {**auth, "Origin": f"http://localhost:{port}"})[0] == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_bound_to_every_interface_the_machine_answers_by_its_own_address(indexed_specs):
    address = own_address()
    if address is None:
        pytest.skip("no network interface besides loopback")
    proc, port = http_server({"SPECMEM_HTTP_TOKEN": "t0ken"}, host="0.0.0.0")
    auth = {**HEADERS, "Authorization": "Bearer t0ken"}
    try:
        assert http_post(f"http://{address}:{port}/mcp", INIT, auth)[0] == 200
        assert http_post(f"http://127.0.0.1:{port}/mcp", INIT, auth)[0] == 200
        # DNS rebinding is still refused: a name that is not this machine's, on this machine's address.
        rebound = http_post(f"http://{address}:{port}/mcp", INIT, {**auth, "Host": f"evil.example:{port}"})
        assert rebound[0] == 421
        evil_origin = http_post(
            f"http://{address}:{port}/mcp", INIT, {**auth, "Origin": "http://evil.example"}
        )
        assert evil_origin[0] == 403
    finally:
        proc.terminate()
        proc.wait(30)


def test_an_empty_host_is_refused_not_bound_to_every_interface(indexed_specs, isolated):
    done = subprocess.run(
        [sys.executable, "-m", "specmem", "serve", "--http", "--host", "", "--port", str(free_port())],
        cwd=isolated,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    assert "--host" in done.stderr and "0.0.0.0" in done.stderr, done.stderr


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
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == {t.__name__ for t in TOOLS}
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
