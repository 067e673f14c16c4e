"""Write the README's CLI reference from the click commands themselves (as sqlite-utils does with cog).

    .venv/bin/python scripts/readme_cli.py           # rewrite the block between the markers in README.md
    .venv/bin/python scripts/readme_cli.py --check   # exit 1, showing the difference, if they disagree

The block is `<!-- cli-reference -->…<!-- /cli-reference -->`: one row per command, its synopsis built from its
arguments and options and the first paragraph of its help. tests/cli/test_reference.py runs the check, so a
command, option or help text cannot change without the README following.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also when loaded by its path (tests)
import readme_block  # noqa: E402

ROOT = readme_block.ROOT
BLOCK = re.compile(r"(<!-- cli-reference -->\n)(.*?)(<!-- /cli-reference -->)", re.DOTALL)
SHARED = ("db_path", "roots", "model")  # options of every command that reads the index: listed once


def commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


def synopsis(path: str, command: click.Command) -> str:
    parts = [path]
    shared = SHARED if any(p.name == "db_path" for p in command.params) else ()
    for param in command.params:
        if param.name in shared or param.name == "help":
            continue
        if isinstance(param, click.Argument):
            name = param.metavar or (param.name or "").upper()
            if param.metavar is None and not param.required:
                name = f"[{name}]"
            parts.append(name + ("..." if param.nargs == -1 and param.metavar is None else ""))
            continue
        assert isinstance(param, click.Option)
        flag = max(param.opts, key=len)
        if param.is_flag and param.secondary_opts:
            shown = f"{flag}|{max(param.secondary_opts, key=len)}"
        elif param.is_flag:
            shown = flag
        elif isinstance(param.type, click.Choice):
            shown = f"{flag} {'|'.join(str(c) for c in param.type.choices)}"
        else:
            shown = f"{flag} {flag.lstrip('-').upper().replace('-', '_')}"
        shown = shown if param.required else f"[{shown}]"
        parts.append(shown + ("..." if param.multiple else ""))
    return " ".join(parts)


def summary(command: click.Command) -> str:
    first = (command.help or "").split("\n\n")[0]
    return " ".join(first.split())


def rendered() -> str:
    sys.path.insert(0, str(ROOT))
    from specmem.cli import cli

    rows = ["| command | what it does |", "|---|---|"]
    for path, command in commands(cli, "specmem"):
        cell = synopsis(path, command).replace("|", "\\|")
        rows.append(f"| `{cell}` | {summary(command).replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    if not BLOCK.search(text):
        raise SystemExit("README.md has no <!-- cli-reference --> block")
    return BLOCK.sub(lambda m: m.group(1) + rendered() + m.group(3), text)


def main() -> int:
    return readme_block.main(__doc__, render, "CLI reference rewritten from the click commands")


if __name__ == "__main__":
    sys.exit(main())
