"""The duplicate check: the memories of a spec folder that already say what a new memory says (read-only).

Three signals, strongest first: the same content (indexer/duplicates.py `content_key`), the same title
(case-insensitive), or a cosine similarity of at least `SIMILARITY` between the new memory (title and content, one
embedding) and the closest chunk of an existing one. The threshold was measured on paraphrase and non-paraphrase
pairs: tests/bench/duplicates.py, and the decision record specs/005-mcp-server/memory/duplicate-threshold.md.

It lives on the read side: it asks the index the question search asks (`reads.nearest_in_scope`) over one spec
folder (specs/001-indexer/memory/storage-seam.md); the write side acts on what it finds.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import apsw

from specmem.indexer.draft import Draft, Duplicate, Kind, content_key, title_key
from specmem.indexer.parse import parse
from specmem.server import reads
from specmem.server.reads import Scope

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder

SIMILARITY = 0.82  # chosen on data: see the module docstring
_KIND_ORDER = {"same content": 0, "same title": 1, "similar": 2}


def _existing_key(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    parsed = parse(data, PurePosixPath(path.name))
    return content_key("\n".join(parsed.body_lines)) if not parsed.binary else None


def _folder(spec_folder: str) -> Scope:
    """One spec folder's memories (not those of the folders below it), deprecated ones aside."""
    return Scope(spec_folder=spec_folder.strip("/"), below=False)


def similarities(conn: apsw.Connection, embedder: Embedder, text: str, spec_folder: str) -> dict[int, float]:
    """memory id → cosine similarity of `text` to its most similar chunk, for the memories of a spec folder that
    have vectors of this model."""
    vector = embedder.encode([text])[0].astype("float32").tobytes()
    near = reads.nearest_in_scope(conn, vector, embedder.model_id, _folder(spec_folder))
    return {mid: hit.similarity for mid, hit in near.items()}


def find(
    conn: apsw.Connection, embedder: Embedder | None, draft: Draft, threshold: float = SIMILARITY
) -> list[Duplicate]:
    """Memories of the draft's spec folder that say what it says, strongest evidence first. Without an
    embedder (model still loading) only content and title are compared."""
    rows = reads.memories_in(conn, _folder(draft.spec_folder))
    if not rows:
        return []
    key, same_title = content_key(draft.content), title_key(draft.title)
    text = f"{draft.title}\n{draft.content}"
    near = similarities(conn, embedder, text, draft.spec_folder) if embedder is not None else {}
    found: list[Duplicate] = []
    for row in rows:
        score = near.get(row.id)
        kind: Kind | None = None
        if key and _existing_key(Path(row.path)) == key:
            kind = "same content"
        elif title_key(row.title) == same_title:
            kind = "same title"
        elif score is not None and score >= threshold:
            kind = "similar"
        if kind is not None:
            similarity = round(score, 4) if score is not None else None
            found.append(
                Duplicate(id=row.id, path=row.path, title=row.title, kind=kind, similarity=similarity)
            )
    found.sort(key=lambda d: (_KIND_ORDER[d.kind], -(d.similarity or 0.0), d.id))
    return found
