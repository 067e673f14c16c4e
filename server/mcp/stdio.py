"""The MCP server over stdio, with an answer for every request line.

The SDK's stdio transport drops any line it cannot validate (it logs it at debug level), so a client whose request
held a lone surrogate escape (`"a\\ud800b"`: valid JSON to most parsers, not to the SDK's) or had a wrong shape
waited forever. Here such a line gets a JSON-RPC error for its id, as the HTTP transport answers it; a line
whose id cannot be read gets one with a null id, and a notification gets none (JSON-RPC 2.0).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import ObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from specmem.indexer.parse import bracket_depth


class _CheckedLines:
    """The server's stdin, line by line, holding back (and answering) the lines the SDK would drop."""

    def __init__(self, source: anyio.AsyncFile[str]) -> None:
        self.source = source
        self._replies: ObjectSendStream[SessionMessage] | None = None
        self._ready = anyio.Event()

    def answer_to(self, replies: ObjectSendStream[SessionMessage]) -> None:
        self._replies = replies
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self.source:
            if not line.strip():
                continue
            try:
                types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValidationError as exc:
                await self._refuse(line, exc)
                continue
            yield line

    async def _refuse(self, line: str, exc: ValidationError) -> None:
        """Answer a line that is not a valid message, if it was a request (or if its id cannot be told)."""
        first = exc.errors()[0]
        invalid_json = first["type"] == "json_invalid"
        try:
            # Python's parser takes lone surrogates, and so finds the id; it recurses once per level, so a line
            # nested deeper than any request (600 brackets in 1.3 KB) is only read at its top level.
            message: Any = json.loads(line) if bracket_depth(line) <= MAX_DEPTH else _top_level(line)
        except (ValueError, RecursionError):
            message = None
        if isinstance(message, dict):
            if "id" not in message and "method" in message:
                return  # a notification is never answered, even with an error
            id_ = message.get("id")
            if not isinstance(id_, int | str) or isinstance(id_, bool):
                id_ = None
        else:
            id_ = None
        if invalid_json and _lone_surrogate(message):
            error = types.ErrorData(
                code=types.PARSE_ERROR,
                message="Parse error: a \\u escape is a lone surrogate (half of a UTF-16 pair); send text as "
                "UTF-8, or escape characters outside the BMP as a pair such as \\ud83d\\ude00",
            )
        elif invalid_json:
            error = types.ErrorData(code=types.PARSE_ERROR, message=f"Parse error: {first['msg']}")
        else:
            where = ".".join(str(part) for part in first["loc"][1:]) or "message"
            error = types.ErrorData(
                code=types.INVALID_REQUEST, message=f"Invalid request: {where}: {first['msg']}"
            )
        await self._ready.wait()
        assert self._replies is not None
        await self._replies.send(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=id_, error=error)))


MAX_DEPTH = 64  # arrays and objects inside one another in a line this transport parses whole
_STRUCTURE = re.compile(r'["{}\[\]]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_KEY_END = re.compile(r"\s*:\s*")


def _top_level(line: str) -> dict[str, Any] | None:
    """The `id` and `method` of a JSON object line, read without parsing the values nested in it (so without
    recursion, however deep they go); None when the line is no object."""
    start = len(line) - len(line.lstrip())
    if not line.startswith("{", start):
        return None
    found: dict[str, Any] = {}
    depth, pos = 0, start
    while (m := _STRUCTURE.search(line, pos)) is not None:
        pos = m.start()
        if m.group() != '"':
            depth += 1 if m.group() in "{[" else -1
            pos += 1
            continue
        string = _STRING.match(line, pos)
        if string is None:
            break
        pos = string.end()
        colon = _KEY_END.match(line, pos) if depth == 1 else None
        if colon is not None and string.group() in ('"id"', '"method"'):
            key = string.group()[1:-1]
            if line.startswith(("{", "["), colon.end()):
                found[key] = {}  # an object or array: not an id
                continue
            try:
                found[key], _ = json.JSONDecoder().raw_decode(line, colon.end())
            except ValueError:
                found[key] = None
    return found


def _lone_surrogate(value: Any) -> bool:
    """Whether a parsed message holds a lone surrogate (Python joins a valid pair into one character)."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


async def serve(server: MCPServer) -> None:
    """What `MCPServer.run_stdio_async` does, reading stdin through `_CheckedLines`."""
    # A duplicate of fd 0, so that closing this reader never closes the process's stdin.
    source = io.TextIOWrapper(os.fdopen(os.dup(0), "rb"), encoding="utf-8", errors="replace")
    lines = _CheckedLines(anyio.wrap_file(source))
    async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
        lines.answer_to(write_stream)
        lowlevel = server._lowlevel_server
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def run(server: MCPServer) -> None:
    """Serve over stdin and stdout until the client closes stdin."""
    anyio.run(serve, server)
