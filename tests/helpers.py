"""What the tests share: writing memory files, waiting on conditions, and driving specmem as a user does (the
`specmem` command; the MCP server in memory through the SDK's client, or `specmem serve` over stdio through that
client or in raw JSON-RPC lines, and HTTP).

Tests import from here, never from each other; fixtures live in the conftest.py files."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0  # generous: a wait ends as soon as its condition holds, and a loaded machine is slow
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def memory(title: str, body: str, **meta: str) -> str:
    lines = [f"title: {title}"] + [f"{k}: {v}" for k, v in meta.items()]
    return "---\n" + "\n".join(lines) + f"\n---\n# {title}\n\n{body}\n"


def wait_for(
    cond: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition", every: float = 0.02
) -> None:
    """Poll `cond` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def hits(conn, word: str) -> set[str]:
    """The paths of the memories whose indexed text holds `word` (straight from FTS5)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT m.rel_path FROM memory_fts f JOIN memory_chunks c ON c.id = f.rowid "
            "JOIN memory_index m ON m.id = c.memory_id WHERE memory_fts MATCH ?",
            (f'"{word}"',),
        )
    }


def git(folder: Path, *args: str, date: str | None = None) -> str:
    """Run git in `folder` as a fixed author (and at a fixed commit date when given); returns its output."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull}
    if date is not None:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def chain(top: Path, depth: int, *, numbered: bool = True) -> Path:
    """Folders d0/d1/…/d{depth-1} (or d/d/…/d) under `top`, made one level at a time (os.makedirs recurses)."""
    folder = top
    for level in range(depth):
        folder = folder / (f"d{level}" if numbered else "d")
        os.mkdir(folder)
    return folder


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    """`specmem ARGS` as a user runs it: a new process, stdout and stderr captured (so not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "specmem", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def in_memory(
    scenario: Callable[[Client], Awaitable[None]],
    config: Any = None,
    *,
    ready: bool = True,
    **build: Any,
) -> None:
    """Run one scenario against `build_server(config)` in this process, through the SDK's client over memory
    streams: how the tools' behaviour is tested (a server process per scenario cost a second each; tests/system
    keeps stdio for framing and process life). `config` defaults to what `specmem serve` would resolve here;
    `build` goes to build_server (watch=True hosts the watcher). `ready`: first wait until the model has loaded
    (the test embedder loads at once, but on a thread), as a server a client has used for a moment has."""
    from specmem.indexer import config as configmod
    from specmem.server.mcp.server import build_server

    server = build_server(config or configmod.resolve(), **build)

    async def main() -> None:
        with anyio.fail_after(180):
            async with Client(server) as client:
                while ready and build.get("load_model", True):
                    health = await client.call_tool("memory_health", {})
                    if health.is_error or health.structured_content["model_state"] != "loading":
                        break
                    await anyio.sleep(0.02)
                await scenario(client)

    anyio.run(main)


def serve(
    scenario: Callable[[Client], Awaitable[None]],
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Spawn `specmem serve ARGS` over stdio (no watcher unless `env` asks for one), run one scenario against it
    through the SDK's client; returns the server's stderr."""
    errlog = Path.cwd().parent / f"serve-{time.monotonic_ns()}.err"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "specmem", "serve", *args],
        env={**os.environ, "SPECMEM_WATCH": "0", **(env or {})},
        cwd=str(cwd or Path.cwd()),
    )

    async def main() -> None:
        with anyio.fail_after(180), errlog.open("w") as err:
            async with Client(stdio_client(params, errlog=err)) as client:
                await scenario(client)

    anyio.run(main)
    return errlog.read_text()


async def call(client: Client, tool: str, **args: Any) -> Any:
    """A tool's structured result (unwrapped when it is a bare value); fails the test on a tool error."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    return data["result"] if set(data) == {"result"} else data


async def fails(client: Client, tool: str, **args: Any) -> str:
    """The error text of a tool call that must fail."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StdioServer:
    """`specmem serve` over stdio, spoken to in raw lines; replies are read on a thread, so that a reply that never
    comes fails the test after a timeout instead of hanging it."""

    def __init__(self, prefix: tuple[str, ...] = (), stderr: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "specmem", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.replies: dict[Any, dict] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def reply(self, wanted: Any) -> dict:
        while wanted not in self.replies:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no answer to request {wanted!r} within {TIMEOUT} s") from None
            message = json.loads(line)
            self.replies[message.get("id")] = message
        return self.replies.pop(wanted)

    def initialize(self) -> None:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        self.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
        assert self.reply(1)["result"]["serverInfo"]["name"] == "specmem"
        self.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def call(self, id_: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A tool's structured result; fails the test on an error."""
        params = {"name": tool, "arguments": arguments}
        self.send(json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}))
        result = self.reply(id_)["result"]
        assert not result.get("isError"), result
        return result["structuredContent"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(30)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
