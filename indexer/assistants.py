"""The MCP configs `specmem init` writes for assistants, and how to run this specmem again from a shell.

Claude Code's `.mcp.json` is always written; Cursor's `.cursor/mcp.json` and VS Code's `.vscode/mcp.json` when the
project has those folders. Every entry starts `specmem serve` found on PATH, never this machine's path to a
virtual environment, so the files can be committed and work for each teammate who installed specmem (pipx,
`uv tool install`, pip). Cursor and VS Code may start a server outside the project, so their entries pass the
workspace folder (`--project ${workspaceFolder}`, which both expand); Claude Code starts it in the project.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER = "specmem"  # the entry's name in each config file


@dataclass(frozen=True)
class Client:
    """One assistant's project-level MCP config file."""

    name: str
    file: str  # relative to the project's top folder
    key: str  # the object holding the servers
    folder: str | None  # written only when the project has this folder; None: always
    entry: dict[str, Any] = field(default_factory=dict)


CLIENTS = (
    Client(
        "Claude Code",
        ".mcp.json",
        "mcpServers",
        None,
        {"type": "stdio", "command": "specmem", "args": ["serve"]},
    ),
    Client(
        "Cursor",
        ".cursor/mcp.json",
        "mcpServers",
        ".cursor",
        {"command": "specmem", "args": ["serve", "--project", "${workspaceFolder}"]},
    ),
    Client(
        "VS Code",
        ".vscode/mcp.json",
        "servers",
        ".vscode",
        {"type": "stdio", "command": "specmem", "args": ["serve", "--project", "${workspaceFolder}"]},
    ),
)


def clients_for(folder: Path) -> list[Client]:
    """The clients whose config belongs in the project at `folder`."""
    return [c for c in CLIENTS if c.folder is None or (folder / c.folder).is_dir()]


def config_text(client: Client) -> str:
    return json.dumps({client.key: {SERVER: client.entry}}, indent=2) + "\n"


def has_entry(client: Client, path: Path) -> bool:
    """Whether the existing config file at `path` already starts a specmem server."""
    try:
        servers = json.loads(path.read_text(encoding="utf-8")).get(client.key, {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(servers, dict) and SERVER in servers


def entry_hint(client: Client) -> str:
    return f'add to its "{client.key}": "{SERVER}": {json.dumps(client.entry)}'


def this_script() -> Path | None:
    """The `specmem` script of the running install, if there is one."""
    script = Path(sys.executable).parent / ("specmem.exe" if os.name == "nt" else "specmem")
    return script if script.is_file() else None


def on_path() -> bool:
    """Whether `specmem` on PATH is the running install (so `specmem ...`, as configs and hints say, runs it)."""
    found, script = shutil.which("specmem"), this_script()
    return found is not None and script is not None and Path(found).resolve() == script.resolve()


def command() -> str:
    """How to run this specmem from a shell, ready to paste: `specmem` when PATH finds this install, else its
    script's path (a clone's `.venv/bin/specmem`), else `python -m specmem`."""
    if on_path():
        return "specmem"
    script = this_script()
    if script is not None:
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(str(Path(sys.executable).absolute()))} -m specmem"


def path_note() -> str | None:
    """What to do when the configs' `specmem` is not the running one (None when it is)."""
    if on_path():
        return None
    found = shutil.which("specmem")
    where = f"`specmem` on PATH is {found}, not this install" if found else "`specmem` is not on PATH"
    return (
        f"the MCP configs start `specmem serve` from PATH, and {where}: install it for your user "
        "(uv tool install specmem-mcp, or pipx install specmem-mcp), or put "
        f"{Path(sys.executable).parent} on PATH; or, for yourself only: claude mcp add --scope local specmem -- "
        f"{command()} serve"
    )
