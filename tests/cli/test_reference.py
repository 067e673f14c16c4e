"""The README's CLI reference is generated from the click commands (scripts/readme_cli.py), so it names every
command, argument and option as `specmem --help` does; this fails when the two disagree."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from specmem.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def readme_cli():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("readme_cli", ROOT / "scripts" / "readme_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_generated_from_the_commands():
    text = (ROOT / "README.md").read_text()
    rendered = readme_cli().render(text)
    diff = "".join(difflib.unified_diff(text.splitlines(True), rendered.splitlines(True), "README.md", "cli"))
    assert rendered == text, "run .venv/bin/python scripts/readme_cli.py:\n" + diff


def test_the_reference_names_every_command():
    reference = readme_cli().rendered()
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", {name: command})
        for sub in subcommands:
            shown = f"`specmem {name}" + (f" {sub}" if sub != name else "")
            assert shown in reference, shown
