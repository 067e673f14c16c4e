"""Words as FTS5 sees them, for an engine without FTS5: the same tokenizer (porter over unicode61, diacritics
removed), run by SQLite itself through apsw, so PostgreSQL's BM25 counts exactly the terms FTS5 counts.

`columns()` gives a chunk's term frequencies per keyword column and its length in tokens; BM25 needs nothing
else of the text (specs/001-indexer/memory/bm25-on-postgres.md).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import apsw

# The tokenizer of memory_fts (indexer/db.py m001_initial writes the same words into its schema).
TOKENIZER = ("porter", ["unicode61", "remove_diacritics", "2"])
# The keyword columns in memory_fts order: chunk text, heading path, trigger phrases, tags, relative path.
COLUMNS = ("text", "title", "triggers", "tags", "path")

_local = threading.local()


def _tokenizer() -> Any:
    """This thread's FTS5 tokenizer (an in-memory SQLite connection holds it; connections are per thread)."""
    tok = getattr(_local, "tok", None)
    if tok is None:
        _local.conn = apsw.Connection(":memory:")
        tok = _local.tok = _local.conn.fts5_tokenizer(*TOKENIZER)
    return tok


def tokens(text: str, *, query: bool = False) -> list[str]:
    """The terms of `text` in order, as FTS5 indexes them (or reads them from a query)."""
    if not text:
        return []
    reason = apsw.FTS5_TOKENIZE_QUERY if query else apsw.FTS5_TOKENIZE_DOCUMENT
    found = _tokenizer()(text.encode("utf-8"), reason, None, include_offsets=False, include_colocated=False)
    return list(found)


def columns(values: Sequence[str]) -> tuple[dict[str, list[int]], int]:
    """term → its count in each of the COLUMNS, and the chunk's length in tokens over all of them (BM25's |D|)."""
    counts: dict[str, list[int]] = {}
    length = 0
    for col, value in enumerate(values):
        words = tokens(value)
        length += len(words)
        for term, n in Counter(words).items():
            counts.setdefault(term, [0] * len(COLUMNS))[col] = n
    return counts, length
