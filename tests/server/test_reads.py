"""The read SQL (server/reads.py): the spec-folder condition, written once, and the seam an engine plugs into."""

from __future__ import annotations

import types

from specmem.indexer import db
from specmem.indexer.scan import scan
from specmem.server import reads
from specmem.server.search import Filters, search
from tests.helpers import memory, write


def test_a_spec_folder_means_the_same_everywhere(specs, run_scan, conn, hash_embedder):
    """ "/" at either end is ignored and a folder includes the folders below it, in a list as in a search (list
    used to find nothing for `003-auth/`); a folder whose name only starts the same is not included."""
    for folder in ("003-auth", "003-auth/sessions", "003-authz", "004-x"):
        write(specs / folder / "memory" / "note.md", memory(f"Token note {folder}", "token rotation"))
    run_scan()
    expected = {"003-auth", "003-auth/sessions"}
    for given in ("003-auth", "003-auth/", "/003-auth/"):
        scope = reads.Scope(spec_folder=given, hide_deprecated=False)
        listed = {row.spec_folder for row in reads.page(conn, scope, "path", 0, 50)[1]}
        found = {
            r.spec_folder
            for r in search(conn, "token", mode="keyword", filters=Filters(spec_folder=given)).results
        }
        assert listed == found == expected, given
    exact = reads.memories_in(conn, reads.Scope(spec_folder="003-auth/", below=False))
    assert [row.spec_folder for row in exact] == ["003-auth"]


def test_an_engine_plugs_in_behind_the_seam(specs, run_scan, conn):
    """`db.plug` makes the seam's functions answer from another engine's module for its connections; the
    SQLite bodies still answer for apsw connections. `plug` names what the engine module left out."""
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    run_scan()

    class OtherConnection:
        pass

    engine = types.ModuleType("other_reads")
    engine.memory_count = lambda conn: 42  # type: ignore[attr-defined]
    missing = db.plug(reads, engine, OtherConnection)
    assert "memory_count" not in missing and "nearest_in_scope" in missing
    assert reads.memory_count(OtherConnection()) == 42
    assert reads.memory_count(conn) == 1


def test_document_frequencies_follow_the_index(specs, run_scan, conn, cfg, hash_embedder):
    """A connection keeps its word counts until the index changes, whether it wrote the change itself or
    another connection did."""
    write(specs / "001-a" / "memory" / "a.md", memory("A", "rotation of keys"))
    run_scan()
    assert reads.document_frequency(conn, "rotation") == 1
    write(specs / "001-a" / "memory" / "b.md", memory("B", "rotation again"))
    run_scan()  # through this connection
    assert reads.document_frequency(conn, "rotation") == 2
    write(specs / "001-a" / "memory" / "c.md", memory("C", "rotation, a third time"))
    other = db.connect(cfg.db_path)
    try:
        scan(other, cfg, hash_embedder)
    finally:
        other.close()
    assert reads.document_frequency(conn, "rotation") == 3
