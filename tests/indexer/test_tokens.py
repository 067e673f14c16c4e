"""The word-at-a-time counter gives the real tokenizer's counts exactly, so chunk boundaries (and the chunk hashes
that decide re-embedding) do not move."""

from collections.abc import Sequence
from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from specmem.indexer.chunk import chunk_file
from specmem.indexer.embed import SentenceTransformerEmbedder
from specmem.indexer.parse import parse
from specmem.indexer.tokens import WordPieceCounter
from tests.corpus import generate

TEXTS = [
    "",
    " ",
    "\n\t\r  \n",
    "Hello, World!",
    "The quick brown fox jumps over the lazy dog.",
    "def f(x: int) -> dict[str, list[int]]:  # a comment",
    "    return {'a': [1, 2, 3], \"b\": x ** 2 // 7 % 3}",
    "if (a && b || !c) { x->y = &z; } else { *p++ = ~q ^ r | s; }",
    "https://example.com/path?query=1&b=two#frag",
    "snake_case camelCase PascalCase SCREAMING_CASE kebab-case",
    "3.14159 1e-10 0x1F 1,000,000 v2.0.0-rc1",
    '`code` **bold** _em_ ~~strike~~ [link](url) ![img](src) <tag attr="v">',
    "| a | b |\n|---|:-:|\n| 1 | 2 |",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "y" * 5000,
    "word " + "ab" * 60 + " word",
    "zzqxj qqqqzzzz xkcdqwfp",  # odd pieces
    "[UNK] [CLS] hello [SEP] [MASK] [PAD]",
    "an [unk] in lowercase and [ UNK ] spaced",
    "Café naïve résumé Ångström",
    "日本語のテキスト and 中文 mixed",
    "emoji 🎉 and ✓ and → arrows",
    "em—dash en–dash ‘quotes’ “double” …",
    "Привет мир Ελληνικά",
    "control\x00chars\x01here\x0bvt\x0cff\x7fdel",
    "zero\u200bwidth and non\u00a0breaking",
    "tab\tseparated\tvalues",
    "CRLF line\r\nnext",
    "ﬁ ligature and ＦＵＬＬＷＩＤＴＨ",
    "\ufffd replacement",
    "a" * 50 + "é" + "b" * 60,
    "a" * 60 + "é" + "b" * 60 + " and " + "c" * 101 + "é",
    "ASCII words beside non‐ASCII ones: foo‐bar, it’s “quoted” — and Σ",
    "ΟΔΟΣ ΣΑΣ final sigma",
    "a ́b combining mark after a space, é decomposed",
    "x y z　w non-ASCII spaces",
    "abcde separators",
    "A › B › C heading path",
    "mixed [CLS]é in one piece",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    assert embedder.path is not None
    return embedder


@pytest.fixture(scope="module")
def real(minilm):
    tokenizer = Tokenizer.from_file(str(minilm.path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    return count


@pytest.fixture(scope="module")
def fast(minilm) -> WordPieceCounter:
    counter = WordPieceCounter.from_file(minilm.path / "tokenizer.json")
    assert counter is not None
    return counter


def test_counts_equal_the_real_tokenizer_on_varied_texts(fast, real):
    assert fast(TEXTS) == real(TEXTS)
    # Once more with every word cached, one text at a time and all at once.
    assert [fast([t])[0] for t in TEXTS] == real(TEXTS)
    assert fast(TEXTS) == real(TEXTS)


def test_long_words_and_unknown_pieces_count_as_the_tokenizer_does(fast, real):
    texts = ["a" * n for n in (1, 99, 100, 101, 250)] + ["q" * 101 + "!" + "z" * 3, "\u2603" * 3, "[UNK]"]
    assert fast(texts) == real(texts)


def test_counts_equal_the_real_tokenizer_on_generated_files(fast, real):
    lines = [line for m in generate(300, seed=3) for line in m.data.decode("utf-8", "replace").split("\n")]
    assert fast(lines) == real(lines)
    words = [w for line in lines for w in line.split(" ")]
    assert fast(words) == real(words)


def test_counts_equal_the_real_tokenizer_on_shared_corpora(fast, real, shared_data):
    files = sorted((shared_data / "md-manpages-2000").rglob("*.md"))[:300]
    files += sorted((shared_data / "md-hugo-docs").rglob("*.md"))[:300]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    lines = [line for t in texts for line in t.split("\n")]
    assert fast(lines) == real(lines)
    assert fast(texts) == real(texts)


def test_chunks_are_the_same_with_either_counter(fast, real, minilm, shared_data):
    files = sorted((shared_data / "md-hugo-docs").rglob("*.md"))[:200]
    files += sorted((shared_data / "md-manpages-2000").rglob("*.md"))[:200]
    datas = [(PurePosixPath(f.name), f.read_bytes()) for f in files]
    datas += [(PurePosixPath(m.rel_path), m.data) for m in generate(200, seed=5)]
    for rel, data in datas:
        parsed = parse(data, rel)
        with_real, _ = chunk_file(parsed, real, minilm.max_tokens)
        with_fast, _ = chunk_file(parsed, fast, minilm.max_tokens)
        assert [c.text_hash for c in with_fast] == [c.text_hash for c in with_real], rel
        assert [(c.start_line, c.end_line) for c in with_fast] == [
            (c.start_line, c.end_line) for c in with_real
        ]


def test_the_embedder_counts_with_the_word_cache(minilm, real):
    assert isinstance(minilm._get_counter(), WordPieceCounter)
    assert minilm.count_tokens(TEXTS) == real(TEXTS)


_TEXTS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=0x2FF), max_size=60),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789 -.#_", max_size=300),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXTS, max_size=12))
def test_counts_equal_the_real_tokenizer_on_random_texts(fast, real, texts):
    # Word pieces of made-up words (WordPiece's longest match, done here for ASCII), punctuation runs, control
    # characters and accents, one at a time and as one batch.
    assert fast(texts) == real(texts)
    assert [fast([t])[0] for t in texts] == real(texts)
