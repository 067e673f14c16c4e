"""FIFOs, sockets and other files that are not regular, where a memory file was: every read opens non-blocking
and checks the descriptor, so no tool waits for a writer that never comes; a restore refuses such a target before
it writes anything."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import specmem
from specmem.indexer.errors import CheckpointError
from tests.helpers import call, fails, memory, serve, write


@pytest.fixture
def piped(specs: Path, cfg, run_scan) -> Path:
    """Two indexed memories in one spec folder; one of them is then replaced by a FIFO."""
    write(specs / "001-a" / "memory" / "kept.md", memory("Kept", "the cache keys are hashed"))
    path = write(specs / "001-a" / "memory" / "pipe.md", memory("Piped", "the cache is warmed at start"))
    run_scan()
    path.unlink()
    os.mkfifo(path)
    return path


def test_no_tool_waits_on_a_fifo(piped):
    async def scenario(client) -> None:
        text = await fails(client, "memory_get", id_or_path="001-a/memory/pipe.md")
        assert "FIFO" in text, text
        block = await call(client, "memory_context", task="cache keys warmed")
        assert any("FIFO" in note for note in block["notes"]), block["notes"]
        text = await fails(client, "memory_update", id_or_path="001-a/memory/pipe.md", tags=["x"])
        assert "FIFO" in text, text
        written = await call(
            client,
            "memory_write",
            title="Cache size",
            content="the cache holds 512 entries",
            spec_folder="001-a",
        )
        assert written["id"]

    serve(scenario)


def test_resources_read_of_a_fifo_is_an_error(piped):
    async def scenario(client) -> None:
        from mcp.shared.exceptions import MCPError

        with pytest.raises(MCPError, match="FIFO"):
            await client.read_resource("specmem://path/001-a/memory/pipe.md")

    serve(scenario)


def test_a_scan_reports_a_fifo_named_like_a_memory(piped, run_scan):
    report = run_scan()
    assert any("FIFO" in message for path, message in report.problems if path.endswith("pipe.md")), (
        report.problems
    )


def test_restore_refuses_a_fifo_target_before_writing_anything(specs, cfg, run_scan):
    paths = [
        write(specs / f"{i:03d}-f" / "memory" / "m.md", memory(f"Memory {i}", f"version one of {i}"))
        for i in range(40)
    ]
    run_scan()
    with specmem.open() as mem:
        mem.checkpoint("before")
        for path in paths:
            path.write_text(path.read_text().replace("version one", "version two"))
        paths[20].unlink()
        os.mkfifo(paths[20])
        with pytest.raises(CheckpointError, match="FIFO"):
            mem.restore("before")
    assert all("version two" in p.read_text() for i, p in enumerate(paths) if i != 20)


def test_a_socket_at_a_memory_path_is_refused(piped, specs):
    sock_path = specs / "001-a" / "memory" / "sock.md"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        from specmem.indexer import atomic

        with pytest.raises(atomic.NotRegular, match="socket"):
            atomic.read_file(sock_path, (specs,))
        with pytest.raises(atomic.NotRegular, match="FIFO"):
            atomic.read_file(piped, (specs,))
    finally:
        server.close()


@pytest.mark.parametrize("name", [".gitignore", ".specmemignore"])
def test_a_fifo_as_an_ignore_file_does_not_hang_a_scan(specs, cfg, run_scan, name):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "indexed"))
    os.mkfifo(specs / "001-a" / name)
    report = run_scan()
    assert report.added == 1


def test_a_fifo_as_the_project_file_is_never_waited_on(isolated, monkeypatch):
    from specmem.indexer import config

    monkeypatch.delenv("SPECMEM_ROOTS")
    os.mkfifo(isolated / "specmem.toml")
    config.resolve()  # not a settings file: passed over
    with pytest.raises(config.ConfigError, match="FIFO"):
        config.read_project_file(isolated / "specmem.toml")


def test_a_fifo_as_an_assistant_config_is_never_waited_on(isolated):
    """`specmem init` reads an existing `.mcp.json` to see whether it starts specmem already."""
    from specmem.indexer import project

    os.mkfifo(isolated / ".mcp.json")
    plan = project.plan(isolated)
    assert any(s.path.name == ".mcp.json" and s.action == "keep" for s in plan.steps)
