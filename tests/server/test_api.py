"""The public Python API, as the README shows it: one object opened on a project's memory."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import specmem
from specmem.indexer import db
from tests.helpers import memory, wait_for, write

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_readme_example_runs_from_any_folder(tmp_path, monkeypatch):
    """The README's Python API example, run as written from a temporary folder and from the folder holding a
    clone named specmem (where `import specmem` once found the clone's folder as an empty namespace package)."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S)
    assert example, "the README has no Python API example"
    script = tmp_path / "example.py"
    script.write_text(example.group(1))
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "specmem").symlink_to(ROOT)
    for key in ("SPECMEM_DB", "SPECMEM_ROOTS"):
        monkeypatch.delenv(key)
    before = sorted(p for p in (ROOT / "specs").rglob("*") if p.is_file())
    for where in (tmp_path, holder):
        done = subprocess.run(
            [sys.executable, "-c", script.read_text()], cwd=where, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert "/specs/001-db/memory/apsw.md:1-3 normal Use apsw" in done.stdout, done.stdout
        assert "We hash cache keys with xxh3." in done.stdout
    assert sorted(p for p in (ROOT / "specs").rglob("*") if p.is_file()) == before, (
        "the example wrote into the clone"
    )


# -- embeddings owed by a background host (issue 23, item 4) -----------------------------------------------------


class Gated:
    """The hash embedder behind two gates: its model "loads" when `loaded` is set, and the embedding worker's
    encode waits for `encoded` (other threads, such as a write's duplicate check, pass)."""

    def __init__(self, inner, loaded: threading.Event, encoded: threading.Event) -> None:
        self.inner, self.loaded, self.encoded = inner, loaded, encoded
        self.model_id, self.max_tokens = inner.model_id, inner.max_tokens
        self.waiting = threading.Event()

    @property
    def dim(self) -> int:
        self.loaded.wait(60)
        return self.inner.dim

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def encode(self, texts):
        if threading.current_thread().name == "specmem-embed":
            self.waiting.set()
            self.encoded.wait(60)
        return self.inner.encode(texts)


def status(cfg, mid: int) -> str:
    conn = db.connect(cfg.db_path, readonly=True)
    try:
        return conn.execute("SELECT embedding_status FROM memory_index WHERE id = ?", (mid,)).fetchall()[0][0]
    finally:
        conn.close()


@pytest.fixture
def indexed(specs, cfg, hash_embedder):
    write(specs / "001-a" / "memory" / "old.md", memory("Old", "an embedded memory"))
    with specmem.Memories(cfg, embedder=hash_embedder) as mem:
        mem.scan()
    return cfg


def test_a_memory_written_while_the_model_loads_is_embedded_once_it_has(indexed, hash_embedder):
    loaded, encoded = threading.Event(), threading.Event()
    encoded.set()
    mem = specmem.Memories(indexed, embedder=Gated(hash_embedder, loaded, encoded), background=True)
    try:
        written = mem.write("Fresh", "written while the model loads", "009-new")
        assert status(indexed, written.id) == "pending"
        loaded.set()
        wait_for(lambda: status(indexed, written.id) == "done", what="the embedding once the model loaded")
    finally:
        mem.close()


def test_a_background_host_finishes_its_writes_embeddings_before_it_closes(indexed, hash_embedder):
    loaded, encoded = threading.Event(), threading.Event()
    loaded.set()
    embedder = Gated(hash_embedder, loaded, encoded)
    mem = specmem.Memories(indexed, embedder=embedder, background=True)
    written = mem.write("Fresh", "written just before the server exits", "009-new")
    wait_for(embedder.waiting.is_set, what="the embedding to start")
    at_close: list[str] = []
    closing = threading.Thread(target=lambda: (mem.close(), at_close.append(status(indexed, written.id))))
    closing.start()
    encoded.set()
    closing.join(60)
    assert at_close == ["done"]


def test_embeddings_left_pending_by_an_earlier_process_are_computed_by_the_next_server(indexed):
    write(indexed.roots[0] / "002-b" / "memory" / "left.md", memory("Left", "written, never embedded"))
    with specmem.Memories(indexed) as mem:
        mem.scan(embed=False)
        left = mem.search("never embedded", mode="keyword", include_constitutional=False).results[0].id
    assert status(indexed, left) == "pending"
    mem = specmem.Memories(indexed, background=True)  # a server with no watcher (SPECMEM_WATCH=0)
    try:
        wait_for(lambda: status(indexed, left) == "done", what="the next server to embed what was left")
    finally:
        mem.close()
