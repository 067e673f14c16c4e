"""`specmem init` writes MCP configs a team can commit (no machine's path in them) for Claude Code, and for Cursor
and VS Code when their folders exist; the next steps it prints run as printed; `serve --project` serves the
folder an editor passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers import TIMEOUT, call, cli, memory, write


@pytest.fixture
def project(isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    top = tmp_path / "team project"  # a space: the printed commands must quote it
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    (top / ".cursor").mkdir()
    (top / ".vscode").mkdir()
    write(top / "specs" / "001-db" / "memory" / "wal.md", memory("WAL mode", "Readers never block writers."))
    return top


def test_configs_for_each_assistant_start_specmem_from_path(project, tmp_path):
    done = cli("init", str(project), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    claude = json.loads((project / ".mcp.json").read_text())
    assert claude == {"mcpServers": {"specmem": {"type": "stdio", "command": "specmem", "args": ["serve"]}}}
    cursor = json.loads((project / ".cursor" / "mcp.json").read_text())
    assert cursor == {
        "mcpServers": {
            "specmem": {"command": "specmem", "args": ["serve", "--project", "${workspaceFolder}"]}
        }
    }
    vscode = json.loads((project / ".vscode" / "mcp.json").read_text())
    assert vscode == {
        "servers": {
            "specmem": {
                "type": "stdio",
                "command": "specmem",
                "args": ["serve", "--project", "${workspaceFolder}"],
            }
        }
    }
    for text in (p.read_text() for p in project.rglob("mcp.json")):
        assert sys.prefix not in text and str(Path.home()) not in text  # nothing of this machine


def test_no_cursor_or_vscode_config_without_their_folders(isolated, tmp_path):
    top = tmp_path / "plain"
    done = cli("init", str(top), cwd=tmp_path)
    assert done.returncode == 0 and (top / ".mcp.json").is_file()
    assert not (top / ".cursor").exists() and not (top / ".vscode").exists()


def test_the_next_steps_run_as_printed(project, tmp_path):
    done = cli("init", str(project), "--json", cwd=tmp_path)
    (step,) = json.loads(done.stdout)["next"]
    ran = subprocess.run(step, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, (step, ran.stdout, ran.stderr)
    assert "WAL mode" in ran.stdout
    text = cli("init", str(project), cwd=tmp_path).stdout
    assert f"next: {step}" in text


def test_the_path_note_says_what_to_do_when_specmem_is_not_on_path(project, tmp_path):
    bare = {"PATH": "/usr/bin:/bin"}  # this install's bin folder not on it
    done = cli("init", str(project), cwd=tmp_path, env=bare)
    assert "`specmem` is not on PATH" in done.stdout and "uv tool install specmem-mcp" in done.stdout
    on_path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"}
    done = cli("init", str(project), cwd=tmp_path, env=on_path)
    assert "not on PATH" not in done.stdout
    assert "next: cd '" in done.stdout and "&& specmem scan && specmem search" in done.stdout


def test_serve_with_project_serves_that_folder_from_anywhere(project, tmp_path):
    """What VS Code and Cursor run: `specmem serve --project ${workspaceFolder}`, started in another folder."""
    assert cli("init", str(project), cwd=tmp_path).returncode == 0
    assert cli("scan", cwd=project).returncode == 0
    entry = json.loads((project / ".vscode" / "mcp.json").read_text())["servers"]["specmem"]
    args = [a.replace("${workspaceFolder}", str(project)) for a in entry["args"]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    on_path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "SPECMEM_WATCH": "0"}
    params = StdioServerParameters(
        command=entry["command"], args=args, env={**os.environ, **on_path}, cwd=str(elsewhere)
    )

    async def main() -> None:
        with anyio.fail_after(TIMEOUT):
            async with Client(params) as client:
                answer = await call(client, "memory_search", query="readers block writers", mode="keyword")
                assert answer["results"][0]["title"] == "WAL mode"

    anyio.run(main)
