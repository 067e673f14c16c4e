"""Storage: one memory's rows (memory_index, memory_chunks, memory_fts, cached vectors) written and removed
together. Call everything here inside `db.write_tx` unless it only reads."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import apsw

from specmem.indexer import db, files
from specmem.indexer.chunk import Chunk
from specmem.indexer.parse import ParsedFile, spec_folder


class FileStat(NamedTuple):
    """What the fast path compares. A change that keeps the size and restores the mtime (`touch -r`, `cp -p`, an
    editor) cannot keep the ctime, nor the inode of a file written anew. A ctime of -1 matches no file: the
    content is checked at the next look (a file modified as it was read, or still being written).

    A named tuple, not a dataclass: a no-op rescan builds and compares one per file (50,000 of them)."""

    size: int
    mtime_ns: int
    ctime_ns: int = -1
    inode: int = -1

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def recheck(self) -> FileStat:
        """This stat, marked so that the next look reads and hashes the file again."""
        return self._replace(ctime_ns=-1)


@dataclass
class Prepared:
    path: Path
    root: Path
    stat: FileStat
    digest: str
    parsed: ParsedFile
    chunks: list[Chunk]
    warnings: list[str]
    base: Path | None = None  # what `rel` is relative to, when not the root (a convention's place)

    @property
    def rel(self) -> PurePosixPath:
        return relative(self.path, self.root, self.base)


def relative(path: Path, root: Path, base: Path | None = None) -> PurePosixPath:
    """A memory's path as shown (`rel_path`; its spec folder comes from it): relative to `base` when given and
    holding it, else to its root; a root that is one file (CLAUDE.md at the project top) is its own name."""
    if base is not None and path != base and files.within(path, base):
        return PurePosixPath(path.relative_to(base).as_posix())
    if path == root:
        return PurePosixPath(path.name)
    return PurePosixPath(path.relative_to(root).as_posix())


class Indexed(NamedTuple):
    """What change detection needs of a memory already in the index (one per file: a named tuple is cheap)."""

    id: int
    stat: FileStat
    content_hash: str


def store_memory(
    conn: apsw.Connection, prep: Prepared, memory_id: int | None, vec_model: str | None
) -> tuple[int, int]:
    """Insert or replace one memory with its chunks and FTS rows; reuse cached vectors. Call inside write_tx.

    Returns (memory id, number of chunks whose vector came from the cache)."""
    now = db.now_ms()
    p = prep.parsed
    rel = prep.rel  # a path computation: once, not once per chunk
    # Defensive: the path may have been indexed since the caller looked (one row per path, always).
    holder = db.one(conn, "SELECT id FROM memory_index WHERE path = ?", (str(prep.path),))
    if holder is not None and memory_id is None:
        memory_id = holder.id
    elif holder is not None and holder.id != memory_id:
        delete_memories(conn, [holder.id])
    values = {
        "path": str(prep.path),
        "root": str(prep.root),
        "rel_path": str(rel),
        "spec_folder": spec_folder(rel),
        "title": p.title,
        "importance_tier": p.tier,
        "context_type": p.context_type,
        "trigger_phrases": json.dumps(p.trigger_phrases, ensure_ascii=False),
        "tags": json.dumps(p.tags, ensure_ascii=False),
        "expires": p.expires,
        "anchors": json.dumps(
            list(dict.fromkeys(c.anchor for c in prep.chunks if c.anchor)), ensure_ascii=False
        ),
        "size": prep.stat.size,
        "mtime_ns": prep.stat.mtime_ns,
        "ctime_ns": prep.stat.ctime_ns,
        "inode": prep.stat.inode,
        "content_hash": prep.digest,
        "line_count": len(p.lines),
        "warnings": json.dumps(prep.warnings, ensure_ascii=False),
        # An mtime in the future would never decay and pass every `since`: it counts as now (scan warns).
        "updated_at": min(max(prep.stat.mtime_ns, 0) // 1_000_000, now) or now,
        "indexed_at": now,
    }
    if memory_id is None:
        cols = ", ".join(values) + ", created_at"
        marks = ", ".join(f":{k}" for k in values) + ", :indexed_at"
        conn.execute(f"INSERT INTO memory_index ({cols}) VALUES ({marks})", values)
        memory_id = conn.last_insert_rowid()
    else:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(f"UPDATE memory_index SET {sets} WHERE id = :id", {**values, "id": memory_id})
        delete_chunks(conn, memory_id)

    triggers = " ; ".join(p.trigger_phrases)
    tags = " ".join(p.tags)
    all_embedded = True
    reused = 0
    for chunk in prep.chunks:
        text_hash = chunk.text_hash
        conn.execute(
            "INSERT INTO memory_chunks (memory_id, seq, heading, anchor, start_line, end_line, text, text_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                memory_id,
                chunk.seq,
                chunk.heading,
                chunk.anchor,
                chunk.start_line,
                chunk.end_line,
                chunk.text,
                text_hash,
            ),
        )
        chunk_id = conn.last_insert_rowid()
        conn.execute(
            "INSERT INTO memory_fts (rowid, text, title, triggers, tags, path) VALUES (?, ?, ?, ?, ?, ?)",
            (chunk_id, chunk.text, chunk.heading, triggers, tags, values["rel_path"]),
        )
        cached = None
        if vec_model is not None:
            cached = conn.execute(
                "SELECT vector FROM embedding_cache WHERE model = ? AND text_hash = ?", (vec_model, text_hash)
            ).fetchall()
        if cached:
            conn.execute(
                "INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)", (chunk_id, cached[0][0])
            )
            conn.execute("UPDATE memory_chunks SET embedded = 1 WHERE id = ?", (chunk_id,))
            conn.execute(
                "UPDATE embedding_cache SET used_at = ? WHERE model = ? AND text_hash = ?",
                (now, vec_model, text_hash),
            )
            reused += 1
        else:
            all_embedded = False
    status = "none" if not prep.chunks else ("done" if all_embedded else "pending")
    conn.execute("UPDATE memory_index SET embedding_status = ? WHERE id = ?", (status, memory_id))
    return memory_id, reused


def existing(
    conn: apsw.Connection, roots: Iterable[Path], scopes: tuple[Path, ...] | None
) -> dict[str, Indexed]:
    """Indexed memories under the roots, or under the scopes (a scope is a file or a folder), by path text."""
    out: dict[str, Indexed] = {}
    cols = "SELECT id, path, size, mtime_ns, ctime_ns, inode, content_hash FROM memory_index"
    if scopes is None:
        queries: list[tuple[str, tuple[str, ...]]] = [
            (f"{cols} WHERE root = ?", (str(root),)) for root in roots
        ]
    else:
        # A range on the unique path index: every path equal to the scope or below it as a folder.
        queries = [
            (
                f"{cols} WHERE path = ? OR (path > ? AND path < ?)",
                (str(s), f"{s}{os.sep}", f"{s}{chr(ord(os.sep) + 1)}"),
            )
            for s in scopes
        ]
    for sql, args in queries:
        # Unpacked by name, not through db.rows: a named tuple per row is a third of a no-op rescan at 50k files.
        for mid, path, size, mtime_ns, ctime_ns, inode, digest in conn.execute(sql, args):
            out[path] = Indexed(mid, FileStat(size, mtime_ns, ctime_ns, inode), digest)
    return out


def outside(conn: apsw.Connection, roots: tuple[Path, ...]) -> dict[str, Indexed]:
    """Memories that no longer belong to the index: not below any of the roots, and not indexed under a folder
    above one of them either (that is a narrower scan, `specmem scan specs/003-auth`, not a removed root)."""
    out: dict[str, Indexed] = {}
    sql = (
        "SELECT id, path, root, size, mtime_ns, ctime_ns, inode, content_hash FROM main.memory_index "
        f"WHERE NOT {db.under('path', roots)}"
    )
    for row in db.rows(conn, sql):
        if not any(Path(row.root) == r or Path(row.root) in r.parents for r in roots):
            out[row.path] = Indexed(
                row.id, FileStat(row.size, row.mtime_ns, row.ctime_ns, row.inode), row.content_hash
            )
    return out


def update_stat(conn: apsw.Connection, memory_id: int, st: FileStat) -> None:
    """Record a file's new stat when its content did not change. Call inside write_tx."""
    conn.execute(
        "UPDATE memory_index SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? WHERE id = ?",
        (st.size, st.mtime_ns, st.ctime_ns, st.inode, memory_id),
    )


def pending_count(conn: apsw.Connection) -> int:
    """Memories whose embeddings are not all computed yet."""
    return int(db.scalar(conn, "SELECT count(*) FROM memory_index WHERE embedding_status = 'pending'"))


def delete_memories(conn: apsw.Connection, memory_ids: list[int]) -> None:
    """Remove memories with their chunks, FTS rows and vectors. Call inside write_tx."""
    if not memory_ids:
        return
    has_vec = db.has_table(conn, "vec_memories")
    for mid in memory_ids:
        delete_chunks(conn, mid, has_vec=has_vec)
        conn.execute("DELETE FROM memory_index WHERE id = ?", (mid,))


def delete_chunks(conn: apsw.Connection, memory_id: int, *, has_vec: bool | None = None) -> None:
    """Remove one memory's chunks with their FTS rows and vectors. Call inside write_tx."""
    if has_vec is None:
        has_vec = db.has_table(conn, "vec_memories")
    ids = [r[0] for r in conn.execute("SELECT id FROM memory_chunks WHERE memory_id = ?", (memory_id,))]
    for cid in ids:
        conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (cid,))
        if has_vec:
            conn.execute("DELETE FROM vec_memories WHERE chunk_id = ?", (cid,))
    conn.execute("DELETE FROM memory_chunks WHERE memory_id = ?", (memory_id,))
