"""Writing memories and checkpoints: files first, the index follows; nothing lost, nothing overwritten."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from specmem.indexer import checkpoints, db
from specmem.indexer.draft import Draft
from specmem.indexer.errors import CheckpointError, WriteError
from specmem.indexer.write import update_frontmatter, update_memory, write_memory
from tests.helpers import memory, write

TODAY = dt.date(2026, 11, 21)


def rows(conn) -> dict[str, tuple]:
    return {
        r[0]: r[1:]
        for r in conn.execute("SELECT rel_path, id, title, importance_tier, content_hash FROM memory_index")
    }


# -- memory_write ----------------------------------------------------------------------------------------------


def test_write_creates_a_new_file_never_overwriting(conn, cfg, specs, hash_embedder):
    mid, path = write_memory(
        conn,
        cfg,
        hash_embedder,
        Draft(
            "Use WAL mode!",
            "Readers never block.",
            "001-db",
            tier="important",
            trigger_phrases=["database is locked"],
            tags=["sqlite"],
        ),
        today=TODAY,
    )
    assert path == specs / "001-db" / "memory" / "2026-11-21-use-wal-mode.md"
    assert rows(conn)["001-db/memory/2026-11-21-use-wal-mode.md"][:3] == (mid, "Use WAL mode!", "important")
    text = path.read_text()
    assert (
        text.startswith("---\ntitle: Use WAL mode!\nimportance_tier: important\n")
        and "Readers never block." in text
    )
    _, second = write_memory(
        conn, cfg, hash_embedder, Draft("Use WAL mode!", "Again.", "001-db"), today=TODAY
    )
    assert second.name == "2026-11-21-use-wal-mode-2.md" and "Readers never block." in path.read_text()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], (
        "a temporary file was left behind"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spec_folder": "../outside"}, "not a folder name"),
        ({"spec_folder": "/etc"}, "not a folder name"),
        ({"spec_folder": ".hidden"}, "not a folder name"),
        ({"spec_folder": "a/../../b"}, "not a folder name"),
        ({"spec_folder": "ok\x00"}, "NUL"),
        ({"title": "bad\x00title"}, "NUL"),
        ({"title": "two\nlines"}, "one line"),
        ({"title": ""}, "one line"),
        ({"tier": "urgent"}, "unknown tier"),
        ({"content": "x" * 6_000_000}, "over the"),
        ({"tags": ["ok", "n\x00ul"]}, "NUL"),
    ],
)
def test_hostile_writes_are_refused_and_write_nothing(
    conn, cfg, specs, tmp_path, hash_embedder, kwargs, message
):
    args: dict[str, Any] = {"title": "T", "content": "body", "spec_folder": "001-a"} | kwargs
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(WriteError, match=message):
        write_memory(conn, cfg, hash_embedder, Draft(**args))
    after = sorted(p for p in tmp_path.rglob("*") if ".specmem" not in p.parts)
    assert after == [p for p in before if ".specmem" not in p.parts]
    assert rows(conn) == {}


def test_symlinked_spec_folder_leading_out_is_refused(conn, cfg, specs, tmp_path, hash_embedder):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, specs / "001-link")
    with pytest.raises(WriteError, match="leads out of the root"):
        write_memory(conn, cfg, hash_embedder, Draft("T", "x", "001-link"))
    assert list(outside.iterdir()) == []


def test_concurrent_writers_lose_nothing(cfg, specs, hash_embedder):
    db.connect(cfg.db_path).close()
    errors: list[BaseException] = []
    written: list[Path] = []

    def writer(n: int) -> None:
        conn = db.connect(cfg.db_path)
        try:
            for i in range(15):
                written.append(
                    write_memory(
                        conn, cfg, hash_embedder, Draft("Same title", f"w{n} i{i}", "001-race"), today=TODAY
                    )[1]
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(set(written)) == 45
    conn = db.connect(cfg.db_path)
    assert conn.execute("SELECT count(*) FROM memory_index").fetchall()[0][0] == 45
    bodies = {p.read_text().split("\n")[-2] for p in written}
    assert bodies == {f"w{n} i{i}" for n in range(3) for i in range(15)}, "a write was lost or overwritten"


# -- memory_update -------------------------------------------------------------------------------------------------


ODD = (
    "---\r\n"
    "# a comment before everything\r\n"
    "tags: [b, a]   # why these tags\r\n"
    "custom_key: {nested: true}\r\n"
    "title: Odd file\r\n"
    "trigger_phrases:\r\n"
    "    - first phrase\r\n"
    "    - second phrase\r\n"
    "importance_tier: normal\r\n"
    "unknown: keep me\r\n"
    "---\r\n"
    "# Odd file\r\n"
    "\r\n"
    "Body text stays.\r\n"
)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [(x, y) for x, y in zip(a, b, strict=False) if x != y] + [("", y) for y in b[len(a) :]]


def test_update_touches_only_the_changed_keys():
    after = update_frontmatter(ODD, {"importance_tier": "critical"})
    assert changed_lines(ODD, after) == [("importance_tier: normal\r\n", "importance_tier: critical\r\n")]
    after = update_frontmatter(ODD, {"tags": ["x", "y"]})
    assert changed_lines(ODD, after) == [
        ("tags: [b, a]   # why these tags\r\n", "tags: [x, y]   # why these tags\r\n")
    ]
    after = update_frontmatter(ODD, {"trigger_phrases": ["only one"]})
    assert "    - only one\r\n" in after and "second phrase" not in after
    assert after.replace("    - only one\r\n", "    - first phrase\r\n    - second phrase\r\n") == ODD
    after = update_frontmatter(ODD, {"context_type": "decision"})
    assert after == ODD.replace(
        "unknown: keep me\r\n---", "unknown: keep me\r\ncontext_type: decision\r\n---"
    )


def test_update_memory_reindexes_without_reembedding(conn, cfg, specs, hash_embedder):
    path = write(specs / "001-a" / "memory" / "odd.md", ODD.encode())
    from specmem.indexer.scan import scan

    scan(conn, cfg, hash_embedder)
    vectors = conn.execute("SELECT count(*) FROM embedding_cache").fetchall()[0][0]
    changed = update_memory(
        conn, cfg, hash_embedder, path, {"importance_tier": "critical", "title": "Odd file"}
    )
    assert changed == ["importance_tier"]
    assert rows(conn)["001-a/memory/odd.md"][2] == "critical"
    assert path.read_bytes() == ODD.replace("importance_tier: normal", "importance_tier: critical").encode()
    assert conn.execute("SELECT count(*) FROM embedding_cache").fetchall()[0][0] == vectors
    assert conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 0").fetchall()[0][0] == 0
    toml = write(specs / "001-a" / "memory" / "toml.md", "+++\ntitle = 'T'\n+++\nbody\n")
    with pytest.raises(WriteError, match="TOML"):
        update_memory(conn, cfg, hash_embedder, toml, {"importance_tier": "critical"})
    assert toml.read_text() == "+++\ntitle = 'T'\n+++\nbody\n"


# -- checkpoints ---------------------------------------------------------------------------------------------------


def test_restore_after_edits_deletes_and_additions(conn, cfg, specs, hash_embedder):
    a = write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha original"))
    b = write(specs / "001-a" / "memory" / "b.md", memory("B", "bravo original"))
    from specmem.indexer.feedback import validate
    from specmem.indexer.scan import scan

    scan(conn, cfg, hash_embedder)
    validate(conn, cfg, rows(conn)["001-a/memory/a.md"][0], True)
    before = rows(conn)
    info = checkpoints.create(conn, cfg, "before-changes")
    assert (info.file_count, info.scope) == (2, None)
    with pytest.raises(CheckpointError, match="exists"):
        checkpoints.create(conn, cfg, "before-changes")
    for bad in ("a/b", "x\x00", "", "../up", ".hidden"):
        with pytest.raises(CheckpointError, match="name"):
            checkpoints.create(conn, cfg, bad)

    a.write_text(memory("A", "alpha edited"))
    b.unlink()
    c = write(specs / "001-a" / "memory" / "c.md", memory("C", "charlie new"))
    scan(conn, cfg, hash_embedder)
    validate(conn, cfg, rows(conn)["001-a/memory/a.md"][0], False)

    report = checkpoints.restore(conn, cfg, hash_embedder, "before-changes")
    assert sorted(Path(p).name for p in report.restored) == ["a.md", "b.md"]
    assert report.newer_kept == [str(c)] and c.exists()
    assert "alpha original" in a.read_text() and b.exists()
    now = rows(conn)
    assert {k: v[1:] for k, v in now.items() if k != "001-a/memory/c.md"} == {
        k: v[1:] for k, v in before.items()
    }
    assert now["001-a/memory/a.md"][0] == before["001-a/memory/a.md"][0]
    conf = conn.execute(
        "SELECT confidence FROM memory_index WHERE rel_path = '001-a/memory/a.md'"
    ).fetchall()[0][0]
    assert conf == pytest.approx(0.6), "the validation score was not restored"

    report = checkpoints.restore(conn, cfg, hash_embedder, "before-changes", clear_newer=True)
    assert report.removed == [str(c)] and not c.exists() and report.unchanged == 2
    assert set(rows(conn)) == {"001-a/memory/a.md", "001-a/memory/b.md"}
    assert [i.name for i in checkpoints.list_all(conn)] == ["before-changes"]
    checkpoints.delete(conn, "before-changes")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoints.restore(conn, cfg, hash_embedder, "before-changes")


# -- the round trip through the MCP server --------------------------------------------------------------------------


def test_round_trip_through_the_server(specs, isolated, monkeypatch):
    monkeypatch.setenv("SPECMEM_WATCH", "0")
    write(specs / "001-a" / "memory" / "other.md", memory("Other", "penguins nest on ice shelves"))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "specmem", "serve"], env=dict(os.environ), cwd=str(isolated)
    )

    async def call(client: Client, tool: str, **args: Any) -> Any:
        result = await client.call_tool(tool, args)
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        return data["result"] if set(data) == {"result"} else data

    async def search(client: Client, query: str) -> list[tuple[str, float]]:
        found = await call(client, "memory_search", query=query, mode="keyword", include_constitutional=False)
        return [(r["title"], round(r["score"], 6)) for r in found["results"]]

    async def main() -> None:
        async with Client(params) as client:
            await call(client, "memory_index_scan")
            written = await call(
                client,
                "memory_write",
                title="Penguin diet",
                content="penguins eat krill and fish",
                spec_folder="002-b",
                tier="normal",
                trigger_phrases=["krill"],
            )
            assert Path(written["path"]).parent == specs / "002-b" / "memory"
            assert [t for t, _ in await search(client, "penguins krill")][0] == "Penguin diet"

            ranked = dict(await search(client, "penguins"))
            await call(client, "memory_update", id_or_path=str(written["id"]), tier="deprecated")
            hidden = dict(await search(client, "penguins"))
            assert (
                "Penguin diet" in ranked and "Penguin diet" not in hidden
            )  # deprecated: out of default results
            await call(client, "memory_update", id_or_path=written["path"], tier="critical")
            boosted = dict(await search(client, "penguins"))
            assert boosted["Penguin diet"] > ranked["Penguin diet"]

            before_delete = await search(client, "penguins krill")
            content_before = Path(written["path"]).read_bytes()
            deleted = await call(client, "memory_delete", id_or_path=str(written["id"]))
            assert deleted["deleted"] == [written["path"]] and not Path(written["path"]).exists()
            assert "Penguin diet" not in dict(await search(client, "penguins krill"))
            listed = await call(client, "checkpoint_list")
            assert [c["name"] for c in listed] == [deleted["checkpoint"]] and listed[0]["automatic"]

            restored = await call(client, "checkpoint_restore", name=deleted["checkpoint"])
            assert restored["restored"] == [written["path"]]
            assert Path(written["path"]).read_bytes() == content_before
            assert await search(client, "penguins krill") == before_delete

            refused = await client.call_tool("memory_delete", {"spec_folder": "002-b"})
            assert refused.is_error and "confirm" in refused.content[0].text
            for bad in (
                {"title": "x", "content": "y", "spec_folder": "../../etc"},
                {"title": "x", "content": "y", "spec_folder": "/tmp"},
            ):
                result = await client.call_tool("memory_write", bad)
                assert result.is_error and "not a folder name" in result.content[0].text
            bad_name = await client.call_tool("checkpoint_create", {"name": "../x"})
            assert bad_name.is_error

    anyio.run(main)


def test_a_write_under_the_watcher_is_indexed_once(conn, cfg, specs, hash_embedder):
    from specmem.indexer.watch import Watcher

    watcher = Watcher(cfg, hash_embedder, debounce=0.05)
    watcher.start()
    try:
        mid, path = write_memory(conn, cfg, hash_embedder, Draft("Watched", "seen once", "001-w"))
        deadline = dt.datetime.now() + dt.timedelta(seconds=15)
        while not watcher.idle() or watcher.status.last_report is None or watcher.status.batches < 2:
            assert dt.datetime.now() < deadline, "the watcher never applied the write's events"
            threading.Event().wait(0.02)
        assert conn.execute("SELECT id FROM memory_index").fetchall() == [(mid,)]
        last = watcher.status.last_report
        assert (last.added, last.updated, last.moved) == (0, 0, 0)
    finally:
        watcher.stop()
