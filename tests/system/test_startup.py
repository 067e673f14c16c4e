"""What the quick commands import, read from the `-X importtime` log of a real `specmem` process: `--version`,
`--help` and a keyword search load none of the heavy packages (specs/003-cli/memory/lazy-imports.md). No times are
asserted; tests/bench/startup.py measures them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from specmem.indexer import config
from tests.helpers import memory, write

# What a keyword search has no use for: the vector and model stack, the MCP and schema layers, the YAML parser
# (indexing reads frontmatter), pathspec (walking the roots), the watcher.
HEAVY = (
    "numpy",
    "pydantic",
    "pydantic_core",
    "yaml",
    "frontmatter",
    "pathspec",
    "watchdog",
    "torch",
    "sentence_transformers",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "rich",
    "mcp",
    "mcp_types",
    "starlette",
    "uvicorn",
)


def specmem(*args: str, cwd: Path) -> tuple[str, set[str]]:
    """Run the installed `specmem` command; its stdout and the top-level packages it imported."""
    exe = Path(sys.executable).with_name("specmem")
    done = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "NO_COLOR": "1"},
        cwd=cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done.stdout, modules


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("search", "--help")])
def test_version_and_help_load_no_library(isolated, args):
    out, modules = specmem(*args, cwd=isolated)
    assert out.strip()
    assert not heavy(modules)
    # Not even the index: only click and the command's own module.
    assert not {m for m in modules if m.split(".")[0] in ("apsw", "sqlite_vec")}
    assert "specmem.api" not in modules


@pytest.fixture
def indexed(specs, isolated):
    write(
        specs / "001-auth" / "memory" / "tokens.md", memory("Tokens", "Access tokens expire after one hour.")
    )
    write(
        specs / "constitutional" / "truth.md", memory("Files are truth", "The index is derived from files.")
    )
    out, _ = specmem("scan", cwd=isolated)
    assert "2 added" in out
    return isolated


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_a_keyword_search_loads_nothing_heavy(indexed, extra):
    out, modules = specmem("search", "--mode", "keyword", "when do tokens expire", *extra, cwd=indexed)
    if extra:
        response = json.loads(out)
        assert response["mode_used"] == "keyword"
        assert [r["title"] for r in response["results"]] == ["Tokens"]
        assert response["results"][0]["parts"]["keyword"] > 0
    else:
        assert "Tokens" in out and "001-auth/memory/tokens.md" in out
    assert "specmem.server.search" in modules
    assert not heavy(modules)
    # Nor what only writes, locks, zscore fusion or citations of code need (a few ms each at start-up).
    assert not modules & {"statistics", "socket", "ctypes", "specmem.indexer.spans"}


def test_importing_the_api_loads_no_numpy_and_no_pydantic():
    """`import specmem.api` (what every CLI command does) defines things only; each method imports its needs."""
    code = (
        "import sys, specmem.api\n"
        "from specmem.server import search\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pydantic', 'yaml', 'pathspec', "
        "'watchdog'))\n"
        "assert not loaded, loaded\n"
        "from specmem.api import Written\n"  # the write results still import from here, on first use
        "assert 'pydantic' in sys.modules and Written.__module__ == 'specmem.results'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_building_the_mcp_server_loads_no_numpy(isolated):
    """Up to its first answer the server needs the SDK, pydantic and its tools; numpy and the model's runtime load
    in the model thread (load_model=False here), torch only when indexing needs it, even with the real model
    configured."""
    code = (
        "import sys\n"
        "import specmem.cli\n"
        "from specmem.indexer import config\n"
        "from specmem.indexer.embed import use_threads\n"
        "from specmem.server.mcp.server import build_server\n"
        "use_threads(1)\n"
        f"build_server(config.resolve(model={config.DEFAULT_MODEL!r}), load_model=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'sentence_transformers', "
        "'transformers', 'onnxruntime'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=isolated
    )
    assert done.returncode == 0, done.stderr
