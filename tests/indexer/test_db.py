import apsw
import pytest

from specmem.indexer import db, signal, store
from specmem.indexer.embed import HashEmbedder
from specmem.indexer.errors import DatabaseError
from tests.helpers import memory, write


def test_connection_settings(conn, cfg):
    assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchall()[0][0] == 1
    assert conn.execute("PRAGMA synchronous").fetchall()[0][0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchall()[0][0] >= 10_000
    assert conn.execute("SELECT vec_version()").fetchall()[0][0].startswith("v")
    assert conn.execute("SELECT sqlite_version()").fetchall()[0][0] >= "3.45"
    assert (cfg.db_path.parent / ".gitignore").read_text().strip().endswith("*")


def test_migrations_recorded_once(cfg, conn):
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations")]
    assert names == [fn.__name__ for fn in db.MIGRATIONS]
    assert db.schema_version(conn) == len(db.MIGRATIONS)
    again = db.connect(cfg.db_path)
    assert [r[0] for r in again.execute("SELECT name FROM _migrations")] == names


def test_reader_runs_no_ddl(tmp_path):
    with pytest.raises(DatabaseError, match="run `specmem scan` first"):
        db.connect(tmp_path / "missing.db", readonly=True)
    writer = db.connect(tmp_path / "x.db")
    reader = db.connect(tmp_path / "x.db", readonly=True)
    with pytest.raises(apsw.ReadOnlyError):
        reader.execute("CREATE TABLE nope (x)")
    assert reader.execute("SELECT vec_version()").fetchall()
    writer.close()


def test_failed_transaction_rolls_back(conn):
    with pytest.raises(RuntimeError):
        with db.write_tx(conn):
            db.set_config(conn, "k", "v")
            raise RuntimeError("boom")
    assert db.get_config(conn, "k") is None


def test_delete_removes_chunks_fts_and_vectors(conn, cfg, specs, run_scan):
    write(specs / "a" / "memory" / "x.md", memory("X", "alpha " * 150 + "\n\n## Two\n\n" + "beta " * 150))
    run_scan()
    counts = lambda: [  # noqa: E731
        conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
        for t in ("memory_index", "memory_chunks", "memory_fts", "vec_memories")
    ]
    before = counts()
    assert before[0] == 1 and before[1] == before[2] == before[3] > 1
    with db.write_tx(conn):
        store.delete_memories(conn, [1])
    assert counts() == [0, 0, 0, 0]


def test_model_change_re_embeds_never_mixes(conn, cfg, specs, run_scan):
    write(specs / "a.md", memory("A", "alpha beta"))
    run_scan(embedder=HashEmbedder(64))
    assert db.get_config(conn, "dim") == "64"
    report = run_scan(embedder=HashEmbedder(32))
    assert report.unchanged == 1 and report.embedded_chunks == 1
    assert (db.get_config(conn, "model"), db.get_config(conn, "dim")) == ("hash:32", "32")
    assert conn.execute("SELECT count(*) FROM vec_memories").fetchall()[0][0] == 1
    dims = {len(r[0]) for r in conn.execute("SELECT embedding FROM vec_memories")}
    assert dims == {32 * 4}


def test_signal_is_replaced_atomically_and_tolerates_garbage(tmp_path):
    (tmp_path / "sig").mkdir()
    path = tmp_path / "sig" / ".db-updated"
    assert signal.read(path) is None
    first = signal.touch(path)
    second = signal.touch(path)
    assert second.generation == first.generation + 1 and second.committed_ms >= first.committed_ms
    path.write_text("{not json")
    assert signal.read(path) is None
    assert signal.touch(path).generation == 1
    assert [p.name for p in path.parent.iterdir()] == [".db-updated"]  # no temporary files left behind
