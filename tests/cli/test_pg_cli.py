"""A project indexed into PostgreSQL (SPECMEM_DB=postgresql://…) through the CLI as a user runs it: `specmem scan`
and `specmem search` give what they give on SQLite for the same files (a real PostgreSQL with pgvector, started by
the `pg_server` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import specmem
from tests.corpus import write_corpus
from tests.helpers import cli, memory, write

QUERIES = ("database locked retries", "token expiry refresh", "why memcached")


@pytest.fixture
def both_indexed(specs: Path, pg_url: str) -> dict[str, dict[str, str]]:
    """The same files scanned by `specmem scan` into SQLite and into PostgreSQL: each engine's environment."""
    write_corpus(specs, n=60, seed=11)
    engines = {"sqlite": {}, "postgres": {"SPECMEM_DB": pg_url}}
    for env in engines.values():
        done = cli("scan", env=env)
        assert done.returncode == 0, done.stderr
    return engines


def test_search_on_postgres_equals_sqlite(both_indexed: dict[str, dict[str, str]], pg_url: str) -> None:
    scanned = cli("scan", env=both_indexed["postgres"])
    assert (
        "postgresql://" in scanned.stdout + scanned.stderr
        and "project project" in scanned.stdout + scanned.stderr
    )
    for mode in ("keyword", "semantic", "hybrid"):
        for query in QUERIES:
            found = {}
            for engine, env in both_indexed.items():
                done = cli("search", query, "--mode", mode, "--json", "-n", "5", env=env)
                assert done.returncode == 0, done.stderr
                response = json.loads(done.stdout)
                found[engine] = [(hit["path"], round(hit["score"], 4)) for hit in response["results"]]
                assert response["mode_used"] == mode, (engine, response["notes"])
            assert found["sqlite"] == found["postgres"], (mode, query)


def test_library_api_on_postgres(specs: Path, pg_url: str) -> None:
    write_corpus(specs, n=20, seed=2)
    with specmem.open(db=pg_url) as mem:
        report = mem.scan()
        assert report.files_seen == 20 and report.pending_embeddings == 0
        hits = mem.search("token expiry", limit=3).results
        assert hits and all(Path(h.path).is_relative_to(specs) for h in hits)
        assert mem.stats().memories == 20
        assert mem.get(hits[0].path).title == hits[0].title
        assert "pgvector" in mem.vector_version()
    assert not (specs.parent / ".specmem" / "index.db").exists()  # no SQLite index was made


def test_unreachable_database_is_one_clear_line(specs: Path) -> None:
    done = cli("search", "anything", env={"SPECMEM_DB": "postgresql://nobody@127.0.0.1:1/none"})
    assert done.returncode != 0
    assert "cannot reach PostgreSQL" in done.stderr and "Nothing is lost" in done.stderr
    assert "Traceback" not in done.stderr


def test_search_across_projects(tmp_path: Path, pg_url: str) -> None:
    """Two repositories scanned into one index: a search stays in its project unless asked for others, and each
    result names its project."""
    for name, body in (
        ("payments", "idempotency keys on every charge"),
        ("search", "idempotency of the indexer"),
    ):
        write(tmp_path / name / "specs" / "001-x" / "memory" / "a.md", memory(f"{name} note", body))
        (tmp_path / name / ".git").mkdir()
        env = {"SPECMEM_DB": pg_url, "SPECMEM_ROOTS": str(tmp_path / name / "specs")}
        assert cli("scan", cwd=tmp_path / name, env=env).returncode == 0
    env = {"SPECMEM_DB": pg_url, "SPECMEM_ROOTS": str(tmp_path / "payments" / "specs")}

    def projects(*args: str) -> list[str]:
        done = cli("search", "idempotency", "--json", *args, cwd=tmp_path / "payments", env=env)
        assert done.returncode == 0, done.stderr
        return sorted(r["project"] for r in json.loads(done.stdout)["results"])

    assert projects() == ["payments"]
    assert projects("--project", "search") == ["payments", "search"]
    assert projects("--project", "*") == ["payments", "search"]
    done = cli("search", "idempotency", "--project", "nope", cwd=tmp_path / "payments", env=env)
    assert done.returncode != 0 and "no project 'nope'" in done.stderr and "payments, search" in done.stderr
    lite = cli(
        "search",
        "idempotency",
        "--project",
        "search",
        cwd=tmp_path / "payments",
        env={**env, "SPECMEM_DB": ""},
    )
    assert lite.returncode != 0 and "needs a shared index" in lite.stderr


def test_doctor_checks_postgres(specs: Path, pg_url: str) -> None:
    write_corpus(specs, n=5, seed=1)
    env = {"SPECMEM_DB": pg_url}
    assert cli("scan", env=env).returncode == 0
    done = cli("doctor", env=env)
    out = done.stdout + done.stderr
    for check in ("ok postgresql", "ok pgvector", "ok schema", "ok hnsw", "ok integrity", "ok orphans"):
        assert check in out, out
    assert "ok project project" in out and "0 memories wait" in out
    down = cli("doctor", env={"SPECMEM_DB": "postgresql://nobody@127.0.0.1:1/none"})
    assert "fail postgresql" in down.stdout + down.stderr and "Traceback" not in down.stderr
