"""Exact word-piece counts for chunking, each distinct word tokenized once.

A BERT tokenizer (BertNormalizer, BertPreTokenizer, WordPiece) counts a text as the sum of what each of its words
counts on its own: the pre-tokenizer splits at whitespace and at every punctuation character, and WordPiece
never looks across words. So the count of a word is cached, and a text is counted by splitting it the same way and
adding cached counts. Where the split would not be exact, the real tokenizer counts: a piece between ASCII
whitespace that holds anything outside printable ASCII (normalization removes control characters, strips accents,
isolates CJK characters) is counted whole, once; a text holding a special token such as `[CLS]` (matched before
normalization) is counted whole, every time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Printable ASCII, tab, newline and carriage return: normalization only lowercases these and turns the three
# control characters into spaces. Anything else takes the real tokenizer.
_OUTSIDE_FAST_PATH = re.compile(r"[^\t\n\r\x20-\x7e]")
# Lowercased: a run of letters and digits is one word; every other printable ASCII character is punctuation to
# BERT (ASCII 33-47, 58-64, 91-96, 123-126) and a word of its own.
_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9\t\n\r ]")
# Normalization works a character at a time and these four are always whitespace to it, so a text counts as the sum
# of its pieces between them.
_PIECES = re.compile(r"[^ \t\n\r]+")
# A cache this size (about 10 MB) holds the vocabulary of a large corpus; past it, the cache starts again.
_MAX_CACHED = 100_000


class WordPieceCounter:
    """Counts word pieces as `tokenizer.encode_batch(texts, add_special_tokens=False)` would, faster."""

    def __init__(self, tokenizer: Any, special: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._special = re.compile("|".join(re.escape(s) for s in special)) if special else None
        # One search tells a plain ASCII text (most lines) from one that needs a closer look.
        self._notable = re.compile("|".join([_OUTSIDE_FAST_PATH.pattern, *(re.escape(s) for s in special)]))
        self._cache: dict[str, int] = {}

    @classmethod
    def from_file(cls, path: Path) -> WordPieceCounter | None:
        """A counter for the tokenizer in `path` (a tokenizer.json), or None when it is not a BERT word-piece one."""
        config = json.loads(path.read_text(encoding="utf-8"))
        normalizer = config.get("normalizer") or {}
        model = config.get("model") or {}
        if not (
            normalizer.get("type") == "BertNormalizer"
            and normalizer.get("clean_text", True)
            and normalizer.get("lowercase", True)
            and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"
        ):
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        special = [t["content"] for t in config.get("added_tokens") or [] if t.get("content")]
        return cls(tokenizer, special)

    def _exact(self, texts: list[str]) -> list[int]:
        # One text at a time: encode_batch hands each call to a thread pool, and the few short texts a file has
        # left wait longer for its threads (on a busy machine, milliseconds a call) than they take to encode.
        encode = self._tokenizer.encode
        return [len(encode(text, add_special_tokens=False).ids) for text in texts]

    def _units(self, text: str) -> list[str] | None:
        """The units a text's count is the sum of: ASCII words and punctuation as BERT splits them; a piece between
        ASCII whitespace that holds anything else stays whole, for the real tokenizer to count alone. None when
        the text holds a special token."""
        if self._special is not None and self._special.search(text):
            return None
        units: list[str] = []
        for piece in _PIECES.findall(text):
            if _OUTSIDE_FAST_PATH.search(piece):
                units.append(piece)
            else:
                units += _WORDS.findall(piece.lower())
        return units

    def __call__(self, texts: Sequence[str]) -> list[int]:
        out = [0] * len(texts)
        slow: list[int] = []
        unseen: list[tuple[int, list[str]]] = []
        cache = self._cache
        count = cache.__getitem__
        notable = self._notable.search
        split_words = _WORDS.findall
        for i, text in enumerate(texts):
            if not notable(text):
                units = split_words(text.lower())
            else:
                found = self._units(text)
                if found is None:
                    slow.append(i)
                    continue
                units = found
            try:
                out[i] = sum(map(count, units))
            except KeyError:
                unseen.append((i, units))
        if unseen:
            if len(cache) > _MAX_CACHED:
                cache.clear()
            # A unit alone pre-tokenizes to itself, so its count here is its count in any text.
            fresh = list({w for _, words in unseen for w in words if w not in cache})
            cache.update(zip(fresh, self._exact(fresh), strict=True))
            for i, words in unseen:
                out[i] = sum(map(count, words))
        if slow:
            for i, n in zip(slow, self._exact([texts[i] for i in slow]), strict=True):
                out[i] = n
        return out
