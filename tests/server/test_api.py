"""The public Python API, as the README shows it: one object opened on a project's memory."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import specmem
from tests.helpers import memory, write


@pytest.fixture
def mem(specs: Path):
    write(
        specs / "001-a" / "memory" / "apsw.md",
        memory("Use apsw", "apsw loads sqlite-vec", importance_tier="critical"),
    )
    write(specs / "constitutional" / "truth.md", memory("Files are truth", "the index is derived"))
    with specmem.open(specs) as opened:
        yield opened


def test_scan_search_get_stats(mem, specs):
    report = mem.scan()
    assert (report.added, report.pending_embeddings) == (2, 0)
    hits = mem.search("sqlite-vec loads", limit=5, mode="keyword", include_constitutional=False).results
    assert [h.title for h in hits] == ["Use apsw"]
    assert hits[0].citation == f"{specs / '001-a' / 'memory' / 'apsw.md'}:5-7"
    got = mem.get(hits[0].id)
    assert got.tier == "critical" and "apsw loads sqlite-vec" in got.content
    assert mem.get("001-a/memory/apsw.md").id == got.id
    stats = mem.stats()
    assert stats.memories == 2 and stats.by_tier == {"constitutional": 1, "critical": 1}
    assert [m.title for m in mem.list(sort="title").items] == ["Files are truth", "Use apsw"]


def test_write_update_delete_restore(mem, specs):
    mem.scan()
    written = mem.write(
        "Cache keys", "keys are hashed", "004-cache", tier="important", trigger_phrases=["cache key"]
    )
    assert Path(written.path).parent == specs / "004-cache" / "memory"
    assert [t.id for t in mem.triggers("what is the cache key format?")] == [written.id]
    updated = mem.update(written.id, tags=["cache"])
    assert updated.changed == ["tags"] and mem.get(written.id).tags == ["cache"]
    deleted = mem.delete(written.id)
    assert not Path(written.path).exists()
    with pytest.raises(specmem.NotFound):
        mem.get(written.id)
    mem.restore(deleted.checkpoint)
    assert Path(written.path).exists() and mem.search("hashed", mode="keyword").results


def test_errors_are_specmem_errors(mem, tmp_path):
    with pytest.raises(specmem.DatabaseError, match="specmem scan"):
        mem.search("anything")
    mem.scan()
    with pytest.raises(specmem.NotFound, match="no memory with id"):
        mem.get(99999999999999999999999)
    with pytest.raises(specmem.NotFound, match="outside the memory roots"):
        mem.save(write(tmp_path / "outside.md", "# out\n"))
    with pytest.raises(specmem.SpecFolderError):
        mem.write("x", "y", "../escape")
    assert issubclass(specmem.SpecFolderError, specmem.SpecmemError)


def test_watch_keeps_the_index_live(mem, specs):
    mem.scan()
    batches = threading.Event()
    watcher = mem.watch(debounce=0.05, on_batch=lambda report: report.added and batches.set())
    try:
        write(specs / "002-b" / "memory" / "new.md", memory("Brand new", "fresh words here"))
        assert batches.wait(10)
    finally:
        watcher.stop()
    found = mem.search("fresh words", mode="keyword", include_constitutional=False).results
    assert [h.title for h in found] == ["Brand new"]


def test_import_is_cheap_and_side_effect_free():
    """`import specmem` loads nothing heavy; importing any of its modules changes no process state (warning
    filters, environment, threads) beyond what its third-party dependencies do on their own import."""
    code = (
        "import os, sys, threading, warnings, pkgutil, importlib\n"
        "for dep in ('numpy', 'watchdog.observers', 'apsw', 'pydantic', 'yaml', 'frontmatter', 'xxhash', "
        "'pathspec', 'platformdirs', 'click', 'mcp.server.mcpserver', 'starlette', 'tokenizers'):\n"
        "    importlib.import_module(dep)\n"
        "env, filters, threads = dict(os.environ), list(warnings.filters), threading.active_count()\n"
        "import specmem, specmem.indexer, specmem.server\n"
        "for package in (specmem.indexer, specmem.server):\n"
        "    for info in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(f'{package.__name__}.{info.name}')\n"
        "import specmem.api\n"
        "assert warnings.filters == filters, [f for f in warnings.filters if f not in filters]\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert threading.active_count() == threads\n"
        "assert not [m for m in ('torch', 'sentence_transformers') if m in sys.modules]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, specmem; assert 'numpy' not in sys.modules and 'apsw' not in sys.modules",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bare.returncode == 0, bare.stderr
    assert set(specmem.__all__) <= set(dir(specmem)) and all(getattr(specmem, n) for n in specmem.__all__)


def test_the_readme_example_runs(specs, capsys):
    """The README's Python API example, run as written against a small project."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S)
    assert example, "the README has no Python API example"
    write(
        specs / "001-db" / "memory" / "apsw.md",
        memory("Use apsw", "apsw instead of sqlite3: it loads sqlite-vec"),
    )
    exec(compile(example.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert (
        "001-db/memory/apsw.md:4-6 normal Use apsw" in printed and "We hash cache keys with xxh3." in printed
    )
