"""Scan the roots into the index: fast-path skip, hash skip, move detection, keyword rows first, then embeddings."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import apsw
import numpy as np
import xxhash
from specmem.indexer import db, files, signal
from specmem.indexer.chunk import Chunk, chunk_file
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder, ModelUnavailable, to_blob
from specmem.indexer.lock import FileLock
from specmem.indexer.parse import ParsedFile, parse, spec_folder

Progress = Callable[[str, int, int], None]
FILES_PER_BATCH = 200
CHUNKS_PER_EMBED_BATCH = 256
CACHE_TTL_MS = 30 * 24 * 3600 * 1000
WRITE_LOCK_TIMEOUT = 120.0
SETTLE_ATTEMPTS = 4
SETTLE_DELAY = 0.05
# Bump when parsing or chunking changes what a file's rows would be: the next scan re-indexes every file.
INDEX_FORMAT = "1"


@dataclass
class ScanReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0
    pending_embeddings: int = 0
    files_seen: int = 0
    unsettled: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    embedding_error: str | None = None
    keyword_seconds: float = 0.0
    embed_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["warnings"] = [{"path": p, "message": m} for p, m in self.warnings]
        data["problems"] = [{"path": p, "message": m} for p, m in self.problems]
        return data


@dataclass(frozen=True)
class FileStat:
    """What the fast path compares: size and mtime. An mtime of -1 matches no file, forcing a re-read."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns)


@dataclass
class Prepared:
    path: Path
    root: Path
    stat: FileStat
    digest: str
    parsed: ParsedFile
    chunks: list[Chunk]
    warnings: list[str]

    @property
    def rel(self) -> PurePosixPath:
        return PurePosixPath(self.path.relative_to(self.root).as_posix())


def read_head(path: Path, limit: int) -> tuple[bytes, int | None]:
    """The file's bytes, at most `limit` of them; the second value is the real size when it was cut."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
        if len(data) > limit:
            return data[:limit], os.fstat(fh.fileno()).st_size
    return data, None


def digest_of(data: bytes, truncated_from: int | None) -> str:
    digest = xxhash.xxh3_128_hexdigest(data)
    return f"{digest}:{truncated_from}" if truncated_from is not None else digest


def prepare(
    path: Path, root: Path, stat: FileStat, data: bytes, truncated_from: int | None, embedder: Embedder
) -> Prepared:
    rel = PurePosixPath(path.relative_to(root).as_posix())
    parsed = parse(data, rel, truncated_from=truncated_from)
    chunks, chunk_warnings = chunk_file(parsed, embedder.count_tokens, embedder.max_tokens)
    return Prepared(
        path, root, stat, digest_of(data, truncated_from), parsed, chunks, parsed.warnings + chunk_warnings
    )


def vectors_usable(conn: apsw.Connection, model_id: str) -> bool:
    """Whether `vec_memories` holds vectors of this model (so cached vectors may be reused right away)."""
    return db.get_config(conn, "model") == model_id and db.has_table(conn, "vec_memories")


def reset_vectors_if_model_changed(conn: apsw.Connection, model_id: str) -> bool:
    """A database embedded with another model: drop its vectors so they are never mixed. Returns True if reset."""
    current = db.get_config(conn, "model")
    if current is None or current == model_id:
        return False
    with db.write_tx(conn):
        db.reset_vectors(conn)
    return True


def write_memory(
    conn: apsw.Connection, prep: Prepared, memory_id: int | None, vec_model: str | None
) -> tuple[int, int]:
    """Insert or replace one memory with its chunks and FTS rows; reuse cached vectors. Call inside write_tx.

    Returns (memory id, number of chunks whose vector came from the cache)."""
    now = db.now_ms()
    p = prep.parsed
    # Defensive: the path may have been indexed since the caller looked (one row per path, always).
    holder = conn.execute("SELECT id FROM memory_index WHERE path = ?", (str(prep.path),)).fetchall()
    if holder and memory_id is None:
        memory_id = holder[0][0]
    elif holder and holder[0][0] != memory_id:
        db.delete_memories(conn, [holder[0][0]])
    values = {
        "path": str(prep.path),
        "root": str(prep.root),
        "rel_path": str(prep.rel),
        "spec_folder": spec_folder(prep.rel),
        "title": p.title,
        "importance_tier": p.tier,
        "context_type": p.context_type,
        "trigger_phrases": json.dumps(p.trigger_phrases, ensure_ascii=False),
        "tags": json.dumps(p.tags, ensure_ascii=False),
        "expires": p.expires,
        "anchors": json.dumps([c.anchor for c in prep.chunks if c.anchor], ensure_ascii=False),
        "size": prep.stat.size,
        "mtime_ns": prep.stat.mtime_ns,
        "content_hash": prep.digest,
        "line_count": len(p.lines),
        "warnings": json.dumps(prep.warnings, ensure_ascii=False),
        "updated_at": max(prep.stat.mtime_ns, 0) // 1_000_000 or now,
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
        db.delete_chunks(conn, memory_id)

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
            (chunk_id, chunk.text, chunk.heading, triggers, tags, str(prep.rel)),
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


def _existing(
    conn: apsw.Connection, roots: Iterable[Path], scopes: tuple[Path, ...] | None
) -> dict[Path, tuple[int, int, int, str]]:
    """Indexed memories under the roots, or under the scopes (a scope is a file or a folder)."""
    out: dict[Path, tuple[int, int, int, str]] = {}
    cols = "SELECT id, path, size, mtime_ns, content_hash FROM memory_index"
    if scopes is None:
        queries = [(f"{cols} WHERE root = ?", (str(root),)) for root in roots]
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
        for mid, path, size, mtime_ns, digest in conn.execute(sql, args):
            out[Path(path)] = (mid, size, mtime_ns, digest)
    return out


def read_settled(path: Path, limit: int, st: FileStat) -> tuple[bytes, int | None, FileStat]:
    """Read a file that may be being written: retry until its size and mtime hold still across the read.

    Returns (data, truncated_from, stat of the data). When the file never settles the stat carries mtime -1,
    so that the next pass reads it again."""
    for attempt in range(SETTLE_ATTEMPTS):
        data, truncated_from = read_head(path, limit)
        after = FileStat.of(path.stat())
        if after == st:
            return data, truncated_from, after
        st = after
        if attempt < SETTLE_ATTEMPTS - 1:
            time.sleep(SETTLE_DELAY)
    return data, truncated_from, FileStat(st.size, -1)


def scan(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    *,
    roots: tuple[Path, ...] | None = None,
    scopes: tuple[Path, ...] | None = None,
    force: bool = False,
    embed: bool = True,
    progress: Progress | None = None,
    lock_timeout: float = WRITE_LOCK_TIMEOUT,
    one_transaction: bool = False,
    finalize: Callable[[apsw.Connection], None] | None = None,
) -> ScanReport:
    """Bring the index in line with the files under the roots (or only under `scopes`: files or folders).

    Holds the database's write lock while it classifies files and commits keyword rows, so scans from the CLI,
    the servers and the watcher never interleave. Never deletes rows of folders or files it could not read.
    `one_transaction` commits every change in one transaction; `finalize` runs inside the last one."""
    started = time.perf_counter()
    report = ScanReport()
    roots = roots or config.roots
    reset_vectors_if_model_changed(conn, embedder.model_id)
    with FileLock(config.write_lock_path, "scan") as write_lock:
        write_lock.acquire(lock_timeout)
        _keyword_phase(
            conn, config, embedder, roots, scopes, force, progress, report, one_transaction, finalize
        )
    if embed:
        emb_started = time.perf_counter()
        try:
            embedded, reused = embed_pending(conn, embedder, config.signal_path, progress=progress)
            report.embedded_chunks = embedded
            report.reused_chunks += reused
        except ModelUnavailable as exc:
            report.embedding_error = str(exc)
        report.embed_seconds = time.perf_counter() - emb_started
    report.pending_embeddings = pending_count(conn)
    report.seconds = time.perf_counter() - started
    return report


def _keyword_phase(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    roots: tuple[Path, ...],
    scopes: tuple[Path, ...] | None,
    force: bool,
    progress: Progress | None,
    report: ScanReport,
    one_transaction: bool = False,
    finalize: Callable[[apsw.Connection], None] | None = None,
) -> None:
    kw_started = time.perf_counter()
    if db.get_config(conn, "index_format") != INDEX_FORMAT:
        force, scopes = True, None  # every file's rows must be rebuilt, not only those in scope
    walked = files.walk(roots, exclude=(config.db_path.parent,), scopes=scopes)
    report.problems.extend(walked.problems)
    report.files_seen = len(walked.files)
    existing = _existing(conn, roots, scopes)

    # Classify: cheapest test first. Reading happens outside any transaction.
    changed: list[tuple[Path, Path, FileStat, bytes, int | None, int | None]] = []
    stat_only: list[tuple[int, FileStat]] = []
    unreadable: set[Path] = set()
    vanished: set[Path] = set()
    total = len(walked.files)
    for done, (path, (root, os_stat)) in enumerate(walked.files.items(), 1):
        row = existing.get(path)
        st = FileStat.of(os_stat)
        if row and not force and row[1] == st.size and row[2] == st.mtime_ns:
            report.unchanged += 1
        else:
            try:
                data, truncated_from, st = read_settled(path, config.max_file_bytes, st)
            except FileNotFoundError:
                vanished.add(
                    path
                )  # deleted since the walk: its row (if any) goes with the others that are gone
                continue
            except OSError as exc:
                report.problems.append(
                    (str(path), f"cannot read ({exc.strerror}); its memory is kept as it was")
                )
                unreadable.add(path)
                continue
            if st.mtime_ns == -1:
                report.unsettled.append(str(path))
            if row and not force and digest_of(data, truncated_from) == row[3]:
                stat_only.append((row[0], st))
                report.unchanged += 1
            else:
                changed.append((path, root, st, data, truncated_from, row[0] if row else None))
        if progress and (done % 200 == 0 or done == total):
            progress("checking", done, total)

    gone = {
        path: row
        for path, row in existing.items()
        if (path not in walked.files or path in vanished)
        and path not in unreadable
        and not any(files.within(path, folder) for folder in walked.incomplete)
    }
    gone_by_digest: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for path, row in gone.items():
        gone_by_digest[row[3]].append((path, row[0]))

    vec_model = embedder.model_id if vectors_usable(conn, embedder.model_id) else None
    claimed: set[int] = set()
    nothing_to_write = not (changed or stat_only or gone)
    step = max(len(changed), 1) if one_transaction else FILES_PER_BATCH
    last_start = ((max(len(changed), 1) - 1) // step) * step
    if nothing_to_write and finalize is not None:
        with db.write_tx(conn):
            finalize(conn)
    for start in range(0, 0 if nothing_to_write else max(len(changed), 1), step):
        batch = changed[start : start + step]
        prepared = []
        for path, root, st, data, truncated_from, mid in batch:
            prep = prepare(path, root, st, data, truncated_from, embedder)
            kind = "updated" if mid is not None else "added"
            if mid is None and gone_by_digest.get(prep.digest):
                old_path, mid = gone_by_digest[prep.digest].pop()
                del gone[old_path]
                kind = "moved"
            elif mid is None and scopes is not None:
                # The move's other side may lie outside these scopes (the watcher saw the new name first).
                mid = _moved_from_elsewhere(conn, prep.digest, walked.files, claimed)
                kind = "moved" if mid is not None else kind
            prepared.append((prep, mid, kind))
        with db.write_tx(conn):
            for prep, mid, kind in prepared:
                report.reused_chunks += write_memory(conn, prep, mid, vec_model)[1]
                setattr(report, kind, getattr(report, kind) + 1)
                report.warnings.extend((str(prep.path), w) for w in prep.warnings)
            if start == 0:
                for mid, st in stat_only:
                    conn.execute(
                        "UPDATE memory_index SET size = ?, mtime_ns = ? WHERE id = ?",
                        (st.size, st.mtime_ns, mid),
                    )
                db.delete_memories(conn, [row[0] for row in gone.values()])
                report.removed = len(gone)
            if start == last_start and finalize is not None:
                finalize(conn)
        signal.touch(config.signal_path)
        if progress:
            progress("indexing", min(start + step, len(changed)), len(changed))
    if force and db.get_config(conn, "index_format") != INDEX_FORMAT:
        with db.write_tx(conn):
            db.set_config(conn, "index_format", INDEX_FORMAT)
    report.keyword_seconds = time.perf_counter() - kw_started


def _moved_from_elsewhere(
    conn: apsw.Connection, digest: str, found: dict[Path, tuple[Path, os.stat_result]], claimed: set[int]
) -> int | None:
    """The id of an indexed memory with this content whose file no longer exists: the source of a move."""
    for mid, path in conn.execute("SELECT id, path FROM memory_index WHERE content_hash = ?", (digest,)):
        if mid not in claimed and Path(path) not in found and not os.path.lexists(path):
            claimed.add(mid)
            return int(mid)
    return None


def pending_count(conn: apsw.Connection) -> int:
    return int(
        conn.execute("SELECT count(*) FROM memory_index WHERE embedding_status = 'pending'").fetchall()[0][0]
    )


def embed_pending(
    conn: apsw.Connection,
    embedder: Embedder,
    signal_path: Path,
    *,
    batch_size: int = CHUNKS_PER_EMBED_BATCH,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[int, int]:
    """Embed every chunk still lacking a vector, in batches committed as they come. Returns (embedded, reused).

    The model runs outside any transaction; each batch's write is one short transaction, then `.db-updated`.
    """
    pending = int(conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 0").fetchall()[0][0])
    if pending == 0 and (vectors_usable(conn, embedder.model_id) or not db.has_table(conn, "vec_memories")):
        return 0, 0  # nothing to embed: do not load the model
    dim = embedder.dim  # loads the model; raises ModelUnavailable
    with db.write_tx(conn):
        db.ensure_vec_table(conn, embedder.model_id, dim)
    total = int(conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 0").fetchall()[0][0])
    embedded = reused = done = 0
    last_id = 0
    while not (should_stop and should_stop()):
        # Shortest texts first within a batch keeps padding low; id order keeps the walk resumable.
        rows = conn.execute(
            "SELECT id, heading, text, text_hash FROM memory_chunks WHERE embedded = 0 AND id > ? ORDER BY id LIMIT ?",
            (last_id, batch_size),
        ).fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        hashes = sorted({r[3] for r in rows})
        cached = {
            h: v
            for h, v in conn.execute(
                f"SELECT text_hash, vector FROM embedding_cache WHERE model = ? AND text_hash IN "
                f"({','.join('?' * len(hashes))})",
                (embedder.model_id, *hashes),
            )
        }
        todo = {r[3]: f"{r[1]}\n{r[2]}" for r in rows if r[3] not in cached}
        fresh: dict[str, bytes] = {}
        if todo:
            keys = sorted(todo, key=lambda h: len(todo[h]))
            vectors: np.ndarray = embedder.encode([todo[h] for h in keys])
            fresh = {h: to_blob(v) for h, v in zip(keys, vectors, strict=True)}
        now = db.now_ms()
        with db.write_tx(conn):
            for h, blob in fresh.items():
                conn.execute(
                    "INSERT OR REPLACE INTO embedding_cache (model, text_hash, vector, used_at) VALUES (?, ?, ?, ?)",
                    (embedder.model_id, h, blob, now),
                )
            touched: set[int] = set()
            for chunk_id, _, _, text_hash in rows:
                # The chunk may have been replaced by another writer while the model ran.
                live = conn.execute(
                    "SELECT memory_id FROM memory_chunks WHERE id = ? AND embedded = 0", (chunk_id,)
                ).fetchall()
                if not live:
                    continue
                blob = fresh.get(text_hash) or cached.get(text_hash)
                conn.execute("INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)", (chunk_id, blob))
                conn.execute("UPDATE memory_chunks SET embedded = 1 WHERE id = ?", (chunk_id,))
                touched.add(live[0][0])
            for mid in touched:
                conn.execute(
                    "UPDATE memory_index SET embedding_status = 'done' WHERE id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM memory_chunks WHERE memory_id = ? AND embedded = 0)",
                    (mid, mid),
                )
        signal.touch(signal_path)
        embedded += len(fresh)
        reused += len(rows) - len(fresh)
        done += len(rows)
        if progress:
            progress("embedding", done, max(total, done))
    with db.write_tx(conn):
        conn.execute(
            "DELETE FROM embedding_cache WHERE used_at < ? AND text_hash NOT IN (SELECT text_hash FROM memory_chunks)",
            (db.now_ms() - CACHE_TTL_MS,),
        )
    return embedded, reused
