from pathlib import PurePosixPath

import pytest

from specmem.indexer.chunk import chunk_file
from specmem.indexer.embed import SentenceTransformerEmbedder, get_embedder
from specmem.indexer.parse import parse
from tests.corpus import generate


def chunks_of(text: str, max_tokens: int = 256, embedder=None):
    embedder = embedder or get_embedder("hash:64")
    parsed = parse(text.encode(), PurePosixPath("a/memory/x.md"))
    return parsed, *chunk_file(parsed, embedder.count_tokens, max_tokens)


def test_line_ranges_match_the_file():
    text = "---\ntitle: T\n---\n# T\n\nintro one two three\n\n## A\n\nalpha text more\n\n## B\n\nbeta text more\n"
    parsed, chunks, warnings = chunks_of(text, max_tokens=14)
    assert warnings == []
    lines = text.split("\n")
    for c in chunks:
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])
    assert [c.heading for c in chunks] == ["T", "T › A", "T › B"]


def test_small_sections_are_packed_until_the_budget():
    parsed, chunks, _ = chunks_of("# T\n\n## A\none\n\n## B\ntwo\n", max_tokens=256)
    assert len(chunks) == 1 and chunks[0].start_line == 1 and chunks[0].end_line == 7


def test_anchors_are_chunks_of_their_own():
    text = "# T\nbefore\n<!-- ANCHOR:decision -->\n## Decision\nuse apsw\n<!-- /ANCHOR:decision -->\nafter\n"
    _, chunks, warnings = chunks_of(text)
    anchored = [c for c in chunks if c.anchor]
    assert [(c.anchor, c.start_line, c.end_line) for c in anchored] == [("decision", 3, 6)]
    assert len(chunks) == 3 and warnings == []


def test_unclosed_anchor_warns():
    _, chunks, warnings = chunks_of("# T\n<!-- ANCHOR:x -->\nrest\n")
    assert chunks[-1].anchor == "x" and "never closed" in warnings[0]


def test_headings_in_code_blocks_do_not_split():
    _, chunks, _ = chunks_of("# T\n```\n# not a heading\n```\ntext\n", max_tokens=256)
    assert len(chunks) == 1 and chunks[0].heading == "T"


@pytest.fixture(scope="module")
def minilm_counter():
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")  # only its tokenizer is used: no model load


def test_every_chunk_fits_the_model_limit_with_the_real_tokenizer(minilm_counter):
    long_para = " ".join(f"word{i} supercalifragilistic" for i in range(400))
    one_line = "x" * 5000
    text = f"# Big\n\n{long_para}\n\n## Code\n\n{one_line}\n\n" + "\n".join(
        f"line {i} text" for i in range(600)
    )
    parsed, chunks, _ = chunks_of(text, minilm_counter.max_tokens, minilm_counter)
    assert len(chunks) > 5
    counts = minilm_counter.count_tokens([c.embed_text for c in chunks])
    assert max(counts) + 2 <= minilm_counter.max_tokens
    # Nothing was dropped: every word of the file is in some chunk.
    joined = " ".join(c.text for c in chunks)
    assert "word399" in joined and joined.count("x") >= 5000


def test_generated_corpus_chunks_fit_and_keep_every_line(minilm_counter):
    """Generated files of every shape: chunks fit the real tokenizer's limit, cite the right lines, lose no
    text, and each anchor is a chunk of its own."""
    texts = []
    for m in generate(400, seed=9):
        parsed = parse(m.data, PurePosixPath(m.rel_path))
        chunks, warnings = chunk_file(parsed, minilm_counter.count_tokens, minilm_counter.max_tokens)
        assert warnings == [], (m.rel_path, warnings)
        covered = set()
        for c in chunks:
            assert c.text == "\n".join(parsed.lines[c.start_line - 1 : c.end_line]), m.rel_path
            covered.update(range(c.start_line - 1, c.end_line))
        body = [i for i in range(parsed.body_start, len(parsed.lines)) if parsed.lines[i].strip()]
        assert set(body) <= covered, m.rel_path
        assert set(m.anchors) == {c.anchor for c in chunks if c.anchor}, m.rel_path
        texts += [c.embed_text for c in chunks]
    assert max(minilm_counter.count_tokens(texts)) + 2 <= minilm_counter.max_tokens


def test_hugo_corpus_chunks_fit(minilm_counter, shared_data):
    files = sorted((shared_data / "md-hugo-docs" / "content").rglob("*.md"))[:150]
    texts = []
    for f in files:
        parsed = parse(f.read_bytes(), PurePosixPath(f.name))
        chunks, _ = chunk_file(parsed, minilm_counter.count_tokens, minilm_counter.max_tokens)
        texts += [c.embed_text for c in chunks]
    assert max(minilm_counter.count_tokens(texts)) + 2 <= minilm_counter.max_tokens


def _heading_only(chunk) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in chunk.text.split("\n"))


def test_an_over_budget_first_section_opens_with_its_heading(minilm_counter):
    # A SciFact-like abstract: a title, then one paragraph on one line, longer than the model's limit.
    abstract = " ".join(f"cells{i} express receptor" for i in range(150))
    text = f"# Receptor expression in cells\n\n{abstract}\n"
    _, chunks, _ = chunks_of(text, minilm_counter.max_tokens, minilm_counter)
    assert len(chunks) >= 2 and not any(_heading_only(c) for c in chunks)
    assert chunks[0].start_line == 1 and chunks[0].text.startswith(
        "# Receptor expression in cells\n\ncells0 "
    )
    assert max(minilm_counter.count_tokens([c.embed_text for c in chunks])) + 2 <= minilm_counter.max_tokens
    assert " ".join(c.text for c in chunks).split()[-3:] == abstract.split()[-3:]


def test_a_heading_leads_its_own_content_not_the_previous_chunk():
    # The heading used to be cut off alone and packed at the end of the previous section's chunk.
    code = "\n".join(f"  --flag{i} value  does thing {i}" for i in range(40))
    text = f"# Tool\n\nintro text\n\n## Options\n\n```\n{code}\n```\n"
    _, chunks, _ = chunks_of(text, max_tokens=120)
    assert not any(_heading_only(c) for c in chunks)
    options = [c for c in chunks if "## Options" in c.text]
    assert len(options) == 1 and "## Options\n\n```\n  --flag0 value" in options[0].text
