"""The write SQL: one memory's rows (memory_index, memory_chunks, memory_fts, cached vectors) written and removed
together, what change detection reads, embeddings, checkpoints and feedback. Call everything here inside
`db.write_tx` unless it only reads. With db.py and server/reads.py this is the storage seam: each function marked
`@db.engine_specific` is where another engine plugs in (specs/001-indexer/memory/storage-seam.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple, cast

import apsw

from specmem.indexer import db
from specmem.indexer.db import pending_count as pending_count  # read by both sides: the shared base's
from specmem.indexer.parse import ParsedFile, spec_folder

if TYPE_CHECKING:
    from specmem.indexer.chunk import Chunk  # xxhash: not for a reader, which imports this module's rows

_IDS = "(SELECT value FROM json_each(?))"  # a list of values passed as one JSON argument


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
    if base is not None and path != base and path.is_relative_to(base):  # by name, as files.within
        return PurePosixPath(path.relative_to(base).as_posix())
    if path == root:
        return PurePosixPath(path.name)
    return PurePosixPath(path.relative_to(root).as_posix())


class Indexed(NamedTuple):
    """What change detection needs of a memory already in the index (one per file: a named tuple is cheap)."""

    id: int
    stat: FileStat
    content_hash: str


@db.engine_specific
def store_memory(
    conn: apsw.Connection, prep: Prepared, memory_id: int | None, vec_model: str | None
) -> tuple[int, int]:
    """Insert or replace one memory with its chunks and FTS rows; reuse cached vectors. Call inside write_tx.

    Returns (memory id, number of chunks whose vector came from the cache)."""
    now = db.now_ms()
    rel = prep.rel  # a path computation: once, not once per chunk
    # Defensive: the path may have been indexed since the caller looked (one row per path, always).
    holder = memory_id_at(conn, str(prep.path))
    if holder is not None and memory_id is None:
        memory_id = holder
    elif holder is not None and holder != memory_id:
        delete_memories(conn, [holder])
    values = memory_row(prep, now)
    if memory_id is None:
        cols = ", ".join(values) + ", created_at"
        marks = ", ".join(f":{k}" for k in values) + ", :indexed_at"
        conn.execute(f"INSERT INTO memory_index ({cols}) VALUES ({marks})", values)
        memory_id = conn.last_insert_rowid()
    else:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(f"UPDATE memory_index SET {sets} WHERE id = :id", {**values, "id": memory_id})
        delete_chunks(conn, memory_id)

    reused = _store_chunks(conn, memory_id, prep, str(rel), vec_model, now)
    all_embedded = reused == len(prep.chunks)
    status = "none" if not prep.chunks else ("done" if all_embedded else "pending")
    conn.execute("UPDATE memory_index SET embedding_status = ? WHERE id = ?", (status, memory_id))
    return memory_id, reused


@db.engine_specific
def store_memories(
    conn: apsw.Connection, items: Sequence[tuple[Prepared, int | None]], vec_model: str | None
) -> list[tuple[int, int]]:
    """A scan batch: each memory (with the id it had, or None) stored as `store_memory` does, in order. SQLite
    writes them one at a time (each statement is a call, not a round trip); a server engine writes the batch in a
    few statements. Call inside write_tx."""
    return [store_memory(conn, prep, memory_id, vec_model) for prep, memory_id in items]


def memory_row(prep: Prepared, now: int) -> dict[str, object]:
    """A memory's memory_index columns (all but id and created_at), as every engine stores them."""
    p = prep.parsed
    rel = prep.rel
    return {
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


def keyword_columns(prep: Prepared, rel_path: str, chunk: Chunk) -> tuple[str, str, str, str, str]:
    """A chunk's keyword columns (indexer/terms.py COLUMNS: text, title, triggers, tags, path; `rel_path` is
    `prep.rel`, computed once per memory), as every engine indexes them."""
    p = prep.parsed
    return (chunk.text, chunk.heading, " ; ".join(p.trigger_phrases), " ".join(p.tags), rel_path)


def _store_chunks(
    conn: apsw.Connection, memory_id: int, prep: Prepared, rel_path: str, vec_model: str | None, now: int
) -> int:
    """Insert a memory's chunks with their FTS rows, each with its cached vector when there is one; returns how
    many came with a cached vector."""
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
            (chunk_id, *keyword_columns(prep, rel_path, chunk)),
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
    return reused


@db.engine_specific
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


@db.engine_specific
def outside(conn: apsw.Connection, roots: tuple[Path, ...]) -> dict[str, Indexed]:
    """Memories that no longer belong to the index: not below any of the roots, and not indexed under a folder
    above one of them either (that is a narrower scan, `specmem scan specs/003-auth`, not a removed root)."""
    out: dict[str, Indexed] = {}
    sql = (
        "SELECT id, path, root, size, mtime_ns, ctime_ns, inode, content_hash FROM main.memory_index "
        f"WHERE NOT {db.under('path', roots)}"
    )
    for mid, path, root, size, mtime_ns, ctime_ns, inode, digest in conn.execute(sql):
        if not any(Path(root) == r or Path(root) in r.parents for r in roots):
            out[path] = Indexed(mid, FileStat(size, mtime_ns, ctime_ns, inode), digest)
    return out


@db.engine_specific
def update_stat(conn: apsw.Connection, memory_id: int, st: FileStat) -> None:
    """Record a file's new stat when its content did not change. Call inside write_tx."""
    conn.execute(
        "UPDATE memory_index SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? WHERE id = ?",
        (st.size, st.mtime_ns, st.ctime_ns, st.inode, memory_id),
    )


@db.engine_specific
@db.engine_specific
def indexed_roots(conn: apsw.Connection) -> list[Path]:
    """Every root that indexed memories were found under."""
    return [Path(r) for (r,) in conn.execute("SELECT DISTINCT root FROM main.memory_index")]


@db.engine_specific
def rebase_root(conn: apsw.Connection, old: Path, new: Path) -> None:
    """Move the rows under root `old` to root `new`, paths with them; a row whose new path is indexed already is
    left (the next full scan removes it). Call inside write_tx."""
    conn.execute(
        "UPDATE memory_index SET root = :new, path = :new || substr(path, length(:old) + 1) "
        "WHERE root = :old AND NOT EXISTS "
        "(SELECT 1 FROM memory_index m WHERE m.path = :new || substr(memory_index.path, length(:old) + 1))",
        {"old": str(old), "new": str(new)},
    )


@db.engine_specific
def delete_memories(conn: apsw.Connection, memory_ids: list[int]) -> None:
    """Remove memories with their chunks, FTS rows and vectors. Call inside write_tx."""
    if not memory_ids:
        return
    has_vec = db.has_table(conn, "vec_memories")
    for mid in memory_ids:
        delete_chunks(conn, mid, has_vec=has_vec)
        conn.execute("DELETE FROM memory_index WHERE id = ?", (mid,))


@db.engine_specific
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


@db.engine_specific
def memory_id_at(conn: apsw.Connection, path: str) -> int | None:
    """The id of the memory indexed at this absolute path."""
    rows = cast(
        list[tuple[int]], conn.execute("SELECT id FROM memory_index WHERE path = ?", (path,)).fetchall()
    )
    return rows[0][0] if rows else None


@db.engine_specific
def with_content(conn: apsw.Connection, digest: str) -> list[tuple[int, str]]:
    """(id, path) of the memories whose file content has this hash."""
    sql = "SELECT id, path FROM memory_index WHERE content_hash = ?"
    return cast(list[tuple[int, str]], conn.execute(sql, (digest,)).fetchall())


# -- embeddings -------------------------------------------------------------------------------------------------


class PendingChunk(NamedTuple):
    id: int
    heading: str
    text: str
    text_hash: str


@db.engine_specific
def unembedded_count(conn: apsw.Connection) -> int:
    """Chunks still waiting for their vector."""
    return int(db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE embedded = 0"))


@db.engine_specific
def unembedded(conn: apsw.Connection, after_id: int, limit: int) -> list[PendingChunk]:
    """Up to `limit` chunks waiting for their vector, by id from `after_id` on (a walk that can resume)."""
    sql = "SELECT id, heading, text, text_hash FROM memory_chunks WHERE embedded = 0 AND id > ? ORDER BY id LIMIT ?"
    return [PendingChunk._make(r) for r in conn.execute(sql, (after_id, limit))]


@db.engine_specific
def cached_vectors(conn: apsw.Connection, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
    """text hash → vector, for those of these chunk texts whose vector of `model` is cached."""
    sql = f"SELECT text_hash, vector FROM embedding_cache WHERE model = ? AND text_hash IN {_IDS}"
    return dict(
        cast(list[tuple[str, bytes]], conn.execute(sql, (model, json.dumps(list(hashes)))).fetchall())
    )


@db.engine_specific
def store_vectors(
    conn: apsw.Connection, model: str, fresh: dict[str, bytes], chunks: dict[int, bytes], now: int
) -> None:
    """Cache the `fresh` vectors (text hash → vector) and give each chunk (id → vector) its vector, unless it was
    replaced meanwhile; a memory whose chunks all have theirs is done. Call inside write_tx."""
    for text_hash, blob in fresh.items():
        conn.execute(
            "INSERT OR REPLACE INTO embedding_cache (model, text_hash, vector, used_at) VALUES (?, ?, ?, ?)",
            (model, text_hash, blob, now),
        )
    touched: set[int] = set()
    for chunk_id, vector in chunks.items():
        # The chunk may have been replaced by another writer while the model ran.
        live = cast(
            list[tuple[int]],
            conn.execute(
                "SELECT memory_id FROM memory_chunks WHERE id = ? AND embedded = 0", (chunk_id,)
            ).fetchall(),
        )
        if not live:
            continue
        conn.execute("INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)", (chunk_id, vector))
        conn.execute("UPDATE memory_chunks SET embedded = 1 WHERE id = ?", (chunk_id,))
        touched.add(live[0][0])
    for mid in touched:
        conn.execute(
            "UPDATE memory_index SET embedding_status = 'done' WHERE id = ? AND NOT EXISTS "
            "(SELECT 1 FROM memory_chunks WHERE memory_id = ? AND embedded = 0)",
            (mid, mid),
        )


@db.engine_specific
def forget_vectors(conn: apsw.Connection, unused_since: int) -> None:
    """Drop cached vectors no chunk has and none used since `unused_since` (ms). Call inside write_tx."""
    conn.execute(
        "DELETE FROM embedding_cache WHERE used_at < ? AND text_hash NOT IN (SELECT text_hash FROM memory_chunks)",
        (unused_since,),
    )


# -- feedback and checkpoints -----------------------------------------------------------------------------------


@db.engine_specific
def confidence(conn: apsw.Connection, memory_id: int) -> tuple[str, float] | None:
    """(path, confidence) of a memory; None for an unknown id."""
    sql = "SELECT path, confidence FROM memory_index WHERE id = ?"
    rows = cast(list[tuple[str, float]], conn.execute(sql, (memory_id,)).fetchall())
    return (rows[0][0], float(rows[0][1])) if rows else None


@db.engine_specific
def set_confidence(conn: apsw.Connection, memory_id: int, value: float) -> None:
    """Call inside write_tx."""
    conn.execute("UPDATE memory_index SET confidence = ? WHERE id = ?", (value, memory_id))


@db.engine_specific
def votes(conn: apsw.Connection, path: str) -> tuple[float, int] | None:
    """(confidence, access count) of the memory at this path: what a checkpoint keeps beside its file."""
    sql = "SELECT confidence, access_count FROM memory_index WHERE path = ?"
    rows = cast(list[tuple[float, int]], conn.execute(sql, (path,)).fetchall())
    return rows[0] if rows else None


@db.engine_specific
def set_votes(conn: apsw.Connection, path: str, confidence: float, access_count: int) -> None:
    """Call inside write_tx."""
    sql = "UPDATE memory_index SET confidence = ?, access_count = ? WHERE path = ?"
    conn.execute(sql, (confidence, access_count, path))


class CheckpointRow(NamedTuple):
    name: str
    created_at: int
    scope: str | None
    git_branch: str | None
    git_commit: str | None
    file_count: int
    size_bytes: int
    automatic: bool


CHECKPOINT_COLUMNS = "name, created_at, scope, git_branch, git_commit, file_count, size_bytes, automatic"


@db.engine_specific
def has_checkpoint(conn: apsw.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM checkpoints WHERE name = ?", (name,)).fetchall())


@db.engine_specific
def add_checkpoint(conn: apsw.Connection, row: CheckpointRow, data: bytes) -> None:
    """Call inside write_tx."""
    sql = f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    conn.execute(sql, (*row[:-1], int(row.automatic), data))


@db.engine_specific
def retain_checkpoints(conn: apsw.Connection, older_than: int, most: int, keep: str, automatic: bool) -> None:
    """Drop checkpoints made before `older_than` (ms), and those of one kind (`automatic` or made by hand) past
    the `most` newest of that kind, never `keep`. Call inside write_tx."""
    conn.execute("DELETE FROM checkpoints WHERE created_at < ? AND name != ?", (older_than, keep))
    conn.execute(
        "DELETE FROM checkpoints WHERE name != ? AND automatic = ? AND id NOT IN "
        "(SELECT id FROM checkpoints WHERE automatic = ? ORDER BY created_at DESC, id DESC LIMIT ?)",
        (keep, int(automatic), int(automatic), most),
    )


@db.engine_specific
def amend_checkpoint(conn: apsw.Connection, name: str, data: bytes, size_bytes: int, file_count: int) -> None:
    """Replace a checkpoint's saved files. Call inside write_tx."""
    conn.execute(
        "UPDATE checkpoints SET data = ?, size_bytes = ?, file_count = ? WHERE name = ?",
        (data, size_bytes, file_count, name),
    )


@db.engine_specific
def checkpoints(conn: apsw.Connection) -> list[CheckpointRow]:
    """Every checkpoint, newest first."""
    sql = f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY created_at DESC, id DESC"
    return [CheckpointRow._make((*r[:-1], bool(r[-1]))) for r in conn.execute(sql)]


@db.engine_specific
def checkpoint_data(conn: apsw.Connection, name: str) -> bytes | None:
    rows = conn.execute("SELECT data FROM checkpoints WHERE name = ?", (name,)).fetchall()
    return cast(bytes, rows[0][0]) if rows else None


@db.engine_specific
def delete_checkpoint(conn: apsw.Connection, name: str) -> None:
    """Call inside write_tx."""
    conn.execute("DELETE FROM checkpoints WHERE name = ?", (name,))


# -- citations of code (indexer/citations.py decides what they say) ------------------------------------------------


class CitationRecord(NamedTuple):
    """One citation as stored: where it points, its baseline (`span`: JSON of the lines kept, or None and then
    `span_status`/`span_note` say what to report) and its state now."""

    seq: int
    line: int
    target: str
    path: str  # relative to the repository
    file: str  # absolute
    start_line: int | None
    end_line: int | None
    baseline: str
    baseline_at: int
    span: str | None
    span_status: str | None
    span_note: str | None
    status: str
    now_start: int | None
    now_end: int | None
    diff: str | None
    note: str | None


CITATION_COLUMNS = ", ".join(CitationRecord._fields)


class StoredCitation(NamedTuple):
    """A stored citation with its id (what a re-check or a re-baseline reads)."""

    id: int
    record: CitationRecord


@db.engine_specific
def store_citations(conn: apsw.Connection, memory_id: int, records: Sequence[CitationRecord]) -> None:
    """Replace one memory's citations. Call inside write_tx."""
    conn.execute("DELETE FROM citations WHERE memory_id = ?", (memory_id,))
    sql = (
        f"INSERT INTO citations (memory_id, {CITATION_COLUMNS}, checked_at) "
        f"VALUES (?, {', '.join('?' * len(CitationRecord._fields))}, ?)"
    )
    now = db.now_ms()
    conn.executemany(sql, [(memory_id, *r, now) for r in records])


@db.engine_specific
def citations_of_file(conn: apsw.Connection, file: str) -> list[StoredCitation]:
    """Every citation of this cited file (absolute path)."""
    sql = f"SELECT id, {CITATION_COLUMNS} FROM citations WHERE file = ?"
    return [StoredCitation(r[0], CitationRecord._make(r[1:])) for r in conn.execute(sql, (file,))]


@db.engine_specific
def citations_of_memory(conn: apsw.Connection, memory_id: int) -> list[StoredCitation]:
    """One memory's citations, in the order written."""
    sql = f"SELECT id, {CITATION_COLUMNS} FROM citations WHERE memory_id = ? ORDER BY seq"
    return [StoredCitation(r[0], CitationRecord._make(r[1:])) for r in conn.execute(sql, (memory_id,))]


@db.engine_specific
def cited_path(conn: apsw.Connection, file: str) -> str | None:
    """The path in its repository of a cited file (absolute path); None when no memory cites it."""
    rows = conn.execute("SELECT path FROM citations WHERE file = ? LIMIT 1", (file,)).fetchall()
    return str(rows[0][0]) if rows else None


@db.engine_specific
def update_citation_states(
    conn: apsw.Connection, states: Sequence[tuple[int, str, int | None, int | None, str | None, str | None]]
) -> None:
    """Set (id, status, now_start, now_end, diff, note) of citations just checked. Call inside write_tx."""
    now = db.now_ms()
    conn.executemany(
        "UPDATE citations SET status = ?, now_start = ?, now_end = ?, diff = ?, note = ?, checked_at = ? "
        "WHERE id = ?",
        [(*state[1:], now, state[0]) for state in states],
    )


@db.engine_specific
def worktree_baselined(conn: apsw.Connection, worktree: str) -> list[tuple[int, str, str]]:
    """(id, path, content hash) of the memories with a citation whose baseline is `worktree`."""
    # The literal (not a parameter) lets SQLite use the partial index citations_worktree.
    assert worktree.isalnum(), worktree
    sql = (
        "SELECT DISTINCT m.id, m.path, m.content_hash FROM citations c JOIN main.memory_index m "
        f"ON m.id = c.memory_id WHERE c.baseline = '{worktree}'"
    )
    return [(int(i), str(p), str(h)) for i, p, h in conn.execute(sql)]


@db.engine_specific
def cited_files(
    conn: apsw.Connection, files: Sequence[str] | None = None
) -> list[tuple[str, int, int, int, int]]:
    """(file, size, mtime_ns, ctime_ns, inode) of every cited file at its last look, or of those of `files` that
    are recorded; size -1: there was no file. Plain tuples: a no-op rescan compares 5,000 of them."""
    sql = "SELECT file, size, mtime_ns, ctime_ns, inode FROM cited_files"
    if files is None:
        return cast(list[tuple[str, int, int, int, int]], conn.execute(sql).fetchall())
    rows = conn.execute(f"{sql} WHERE file IN {_IDS}", (json.dumps(list(files)),)).fetchall()
    return cast(list[tuple[str, int, int, int, int]], rows)


@db.engine_specific
def cited_file_hash(conn: apsw.Connection, file: str) -> str | None:
    """The content hash of a cited file at its last look (None: it was not read)."""
    rows = conn.execute("SELECT content_hash FROM cited_files WHERE file = ?", (file,)).fetchall()
    return cast(str | None, rows[0][0]) if rows else None


@db.engine_specific
def record_cited_files(conn: apsw.Connection, looks: Sequence[tuple[str, FileStat, str | None]]) -> None:
    """Record (file, stat, content hash) of cited files just looked at (a stat of size -1: there was no file).
    Call inside write_tx."""
    conn.executemany(
        "INSERT INTO cited_files (file, size, mtime_ns, ctime_ns, inode, content_hash) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(file) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
        "ctime_ns = excluded.ctime_ns, inode = excluded.inode, content_hash = excluded.content_hash",
        [(file, *st, digest) for file, st, digest in looks],
    )


@db.engine_specific
def forget_uncited_files(conn: apsw.Connection) -> None:
    """Drop the records of files no memory cites any more. Call inside write_tx."""
    conn.execute("DELETE FROM cited_files WHERE file NOT IN (SELECT file FROM citations)")
