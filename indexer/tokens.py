"""Exact word-piece counts for chunking, each distinct piece of text counted once.

A BERT tokenizer (BertNormalizer, BertPreTokenizer, WordPiece) counts a text as the sum of what each of its words
counts on its own: the pre-tokenizer splits at whitespace and at every punctuation character, and WordPiece
never looks across words. Normalization works a character at a time and turns the four ASCII whitespace
characters into spaces, so a text also counts as the sum of its pieces between ASCII whitespace. The count of
each distinct piece is cached, and a batch of texts is counted by C-level string operations only: the texts are
joined, lowercased and split at whitespace, each piece's cached count becomes a byte, and a line's count is the
sum of its bytes (`_Pieces`).

A piece of printable ASCII is counted here: split into BERT's words (runs of letters and digits, single
punctuation characters), each word by WordPiece's greedy longest-match over the vocabulary, as the tokenizer
does. A piece holding anything else (normalization removes control characters, strips accents, isolates CJK
characters) is counted by the real tokenizer, whole, once; a text holding a special token such as `[CLS]`
(matched before normalization) is counted whole by the real tokenizer, every time.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

# Printable ASCII, tab, newline and carriage return: normalization only lowercases these and turns the three
# control characters into spaces. A piece with anything else takes the real tokenizer.
_OUTSIDE_FAST_PATH = re.compile(r"[^\t\n\r\x20-\x7e]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # the ASCII outside the fast path
# Lowercased: a run of letters and digits is one word; every other printable ASCII character is punctuation to
# BERT (ASCII 33-47, 58-64, 91-96, 123-126) and a word of its own.
_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9\t\n\r ]")
# Normalization works a character at a time and these four are always whitespace to it, so a text counts as the sum
# of its pieces between them.
_PIECES = re.compile(r"[^ \t\n\r]+")
# What str.split() takes for whitespace besides those four (str.isspace; a test checks the list).
_OTHER_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
# Joins the texts of a batch: a piece of its own (it is not whitespace to str.split) that no counted text holds
# (texts with control characters take the other path), whose count is the byte that separates texts.
_SEPARATOR = " \x00 "
_END = 255
# A piece's count as bytes whose sum is the count (a byte holds up to 254).
_FULL = 254
# Cached pieces (about 100 bytes each); past this, the cache starts again.
_MAX_CACHED = 200_000


_BYTES = [bytes((n,)) for n in range(_FULL)]


def _as_bytes(count: int) -> bytes:
    return _BYTES[count] if count < _FULL else b"\xfe" * (count // _FULL) + _BYTES[count % _FULL]


class WordPieceCounter:
    """Counts word pieces as `tokenizer.encode_batch(texts, add_special_tokens=False)` would, faster."""

    def __init__(self, path: Path, config: dict[str, Any], special: Sequence[str]) -> None:
        model = config["model"]
        self._path = path
        self._vocab: dict[str, int] = model["vocab"]
        self._prefix: str = model.get("continuing_subword_prefix") or "##"
        self._max_chars = int(model.get("max_input_chars_per_word") or 100)
        # No vocabulary entry is longer: WordPiece's longest match starts its search there.
        self._longest = max(map(len, self._vocab), default=1)
        self._tokenizer: Any = None  # loaded for the first piece outside printable ASCII
        self._special = re.compile("|".join(re.escape(s) for s in special)) if special else None
        self._pieces: dict[str, bytes] = {"\x00": bytes((_END,))}
        self._words: dict[str, bytes] = {"\x00": bytes((_END,))}

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
            and isinstance(model.get("vocab"), dict)
        ):
            return None
        special = [t["content"] for t in config.get("added_tokens") or [] if t.get("content")]
        return cls(path, config, special)

    # -- counting one piece --------------------------------------------------------------------------------

    def _exact(self, texts: list[str]) -> list[int]:
        # One text at a time: encode_batch hands each call to a thread pool, and the few short texts a file has
        # left wait longer for its threads (on a busy machine, milliseconds a call) than they take to encode.
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self._path))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        encode = self._tokenizer.encode
        return [len(encode(text, add_special_tokens=False).ids) for text in texts]

    def _word(self, word: str) -> int:
        """WordPiece on one lowercased ASCII word: the longest vocabulary entry at the start, then the longest
        `##` entry at each next position; a word with no match at some position (or too long) is one [UNK]."""
        vocab = self._vocab
        if word in vocab or len(word) > self._max_chars:
            return 1
        count, start, size = 0, 0, len(word)
        while start < size:
            end = min(size, start + self._longest)
            while end > start:
                if (word[start:end] if start == 0 else self._prefix + word[start:end]) in vocab:
                    break
                end -= 1
            if end == start:
                return 1  # no entry matches here: the whole word is [UNK]
            count += 1
            start = end
        return count

    def _learn(self, pieces: set[str], *, ascii_only: bool) -> None:
        """Cache the counts of pieces not seen yet: printable ASCII ones (lowercased) here, word by word, the
        others by the tokenizer."""
        if len(self._pieces) + len(pieces) > _MAX_CACHED:
            self._pieces = {"\x00": bytes((_END,))}
            self._words = {"\x00": bytes((_END,))}
        other = [] if ascii_only else [p for p in pieces if _OUTSIDE_FAST_PATH.search(p)]
        plain = list(pieces.difference(other)) if other else list(pieces)
        if plain:
            self._learn_plain(plain)
        if other:
            for piece, count in zip(other, self._exact(other), strict=True):
                self._pieces[piece] = _as_bytes(count)

    def _learn_plain(self, plain: list[str]) -> None:
        # The words of all new pieces at once, the pieces separated as texts are: the same byte sums.
        words = _WORDS.findall(_SEPARATOR.join(plain))
        known = self._words
        try:
            data = b"".join(map(known.__getitem__, words))
        except KeyError:
            for word in set(words).difference(known):
                known[word] = _as_bytes(self._word(word))
            data = b"".join(map(known.__getitem__, words))
        self._pieces.update(zip(plain, map(_as_bytes, map(sum, data.split(b"\xff"))), strict=True))

    # -- counting texts -------------------------------------------------------------------------------------

    def _sums(self, pieces: list[str], *, ascii_only: bool = True) -> list[int]:
        """The counts of the runs of `pieces` between separators."""
        try:
            data = b"".join(map(self._pieces.__getitem__, pieces))
        except KeyError:
            self._learn(set(pieces).difference(self._pieces), ascii_only=ascii_only)
            data = b"".join(map(self._pieces.__getitem__, pieces))
        return list(map(sum, data.split(b"\xff")))

    def _pieces_of(self, text: str) -> list[str]:
        """A text holding characters outside printable ASCII: its pieces between ASCII whitespace, the ASCII ones
        lowercased (the others keep their case: the tokenizer lowercases them itself)."""
        if _OTHER_SPACE.search(text):  # str.split would cut there too
            return [p if _OUTSIDE_FAST_PATH.search(p) else p.lower() for p in _PIECES.findall(text)]
        # Lowercasing never adds or removes whitespace: both splits give the same pieces.
        return [
            low if raw.isascii() else raw for raw, low in zip(text.split(), text.lower().split(), strict=True)
        ]

    def _notable_texts(self, texts: Sequence[str], joined: str) -> list[int]:
        """The indexes of the texts that hold anything outside printable ASCII or a special token (`joined`: the
        texts joined by newlines): one search from each such text to the next, not one per text."""
        ends = list(accumulate(len(t) + 1 for t in texts))
        found: set[int] = set()
        for pattern in (_OUTSIDE_FAST_PATH, self._special):
            if pattern is None:
                continue
            match = pattern.search(joined)
            while match is not None:
                i = bisect_right(ends, match.start())
                found.add(i)
                match = pattern.search(joined, ends[i]) if i + 1 < len(texts) else None
        return sorted(found)

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # The separator of `_sums` is no printable ASCII, so what each text holds is looked for in another join.
        lines = "\n".join(texts)
        special = self._special
        if lines.isascii() and not _CONTROL.search(lines) and not (special and special.search(lines)):
            return self._sums(_SEPARATOR.join(texts).lower().split())
        notable = self._notable_texts(texts, lines)
        whole = [i for i in notable if special and special.search(texts[i])]
        mixed = [i for i in notable if i not in set(whole)] if whole else notable
        plain = list(texts)
        for i in notable:
            plain[i] = ""
        out = self._sums(_SEPARATOR.join(plain).lower().split())
        if mixed:
            pieces: list[str] = []
            for i in mixed:
                pieces += self._pieces_of(texts[i])
                pieces.append("\x00")
            for i, n in zip(mixed, self._sums(pieces, ascii_only=False), strict=False):
                out[i] = n
        if whole:
            for i, n in zip(whole, self._exact([texts[i] for i in whole]), strict=True):
                out[i] = n
        return out


def token_counter(model_dir: Path | None) -> Callable[[Sequence[str]], list[int]] | None:
    """The exact word-piece counter of a model folder's tokenizer.json: this module's for a BERT word-piece
    tokenizer, else the tokenizer itself; None without a tokenizer.json."""
    if model_dir is None or not (model_dir / "tokenizer.json").exists():
        return None
    counter = WordPieceCounter.from_file(model_dir / "tokenizer.json")
    if counter is not None:
        return counter
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    return count
