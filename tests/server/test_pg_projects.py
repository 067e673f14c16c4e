"""What a team member sees on a shared PostgreSQL index (a real PostgreSQL with pgvector, started by the `pg_server`
fixture): list, context, resources and get reach the other projects named by the call, or by SPECMEM_PROJECTS for
a team server, and each item names its project."""

from __future__ import annotations

from pathlib import Path

import pytest

import specmem
from specmem.api import Memories
from specmem.indexer.errors import SearchError
from tests.helpers import memory, write

BODIES = {
    "payments": ("Idempotency keys", "every charge carries an idempotency key, kept for a day"),
    "search": ("Indexer batches", "the indexer commits every batch of 200 files"),
}


def project(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> Memories:
    """The project `name` (a folder with a rule and a memory) opened on the shared index and scanned."""
    specs = tmp_path / name / "specs"
    title, body = BODIES[name]
    write(specs / "001-x" / "memory" / "a.md", memory(title, body, trigger_phrases=f"[{name} flow]"))
    write(specs / "constitutional" / "rule.md", memory(f"{name} rule", f"{name} code is reviewed twice"))
    monkeypatch.setenv("SPECMEM_PROJECT", name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    mem = specmem.open(specs)
    mem.scan()
    return mem


@pytest.fixture
def team(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPECMEM_DB", pg_url)
    search = project(tmp_path, "search", monkeypatch)
    search.close()
    payments = project(tmp_path, "payments", monkeypatch)
    yield tmp_path, payments
    payments.close()


def test_list_stays_in_its_project_unless_told(team) -> None:
    _, mem = team
    own = mem.list()
    assert {(i.project, i.title) for i in own.items} == {
        ("payments", "Idempotency keys"),
        ("payments", "payments rule"),
    }
    every = mem.list(projects=["*"])
    assert every.total == 4
    assert {i.project for i in every.items} == {"payments", "search"}
    assert {i.title for i in mem.list(projects=["search"], tier="constitutional").items} == {
        "payments rule",
        "search rule",
    }
    with pytest.raises(SearchError, match="no project 'nope'"):
        mem.list(projects=["nope"])


def test_context_across_projects_quotes_their_files(team) -> None:
    _, mem = team
    own = mem.context("search flow: how big is a batch?")
    assert {i.project for i in own.items} == {"payments"}
    block = mem.context("search flow: how big is a batch?", projects=["search"])
    reasons = {(i.project, i.title): i.reason for i in block.items}
    assert reasons[("search", "search rule")] == "rule"
    assert reasons[("payments", "payments rule")] == "rule"
    assert reasons[("search", "Indexer batches")] == "trigger"
    assert "commits every batch of 200 files" in block.text
    assert not [n for n in block.notes if "skipped" in n]


def test_get_reads_any_projects_memory_by_id(team) -> None:
    tmp_path, mem = team
    other = next(i for i in mem.list(projects=["search"]).items if i.title == "Indexer batches")
    got = mem.get(other.id)
    assert (got.project, got.title) == ("search", "Indexer batches")
    assert "batch of 200 files" in got.content
    # A path names a memory of this project only.
    with pytest.raises(specmem.SpecmemError):
        mem.get(str(tmp_path / "search" / "specs" / "001-x" / "memory" / "a.md"))


def test_a_team_server_reads_every_project(team, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, payments = team
    monkeypatch.setenv("SPECMEM_PROJECTS", "*")
    with specmem.open(tmp_path / "payments" / "specs") as mem:
        assert mem.config.projects == ("*",)
        assert {r.title for r in mem.served()} == {
            "payments rule",
            "search rule",
            "Idempotency keys",
            "Indexer batches",
        }
        assert {r.project for r in mem.search("indexer batch", mode="keyword").results} >= {"search"}
        assert mem.list().total == 4
        assert mem.list(projects=[]).total == 2  # a call that names no other project reads its own
