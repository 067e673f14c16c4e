from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specmem.indexer.parse import BODY_TIER_RE, parse, spec_folder
from specmem.indexer.tiers import TIERS
from tests.corpus import generate


def p(text: str | bytes, rel: str = "001-x/memory/a.md"):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse(data, PurePosixPath(rel))


def test_frontmatter_fields():
    r = p(
        "---\ntitle: Auth tokens\nimportance_tier: critical\ncontext_type: decision\n"
        "trigger_phrases: [jwt expiry, refresh token]\ntags: [auth, security]\nexpires: 2030-01-02\n---\n# Other\nbody\n"
    )
    assert (r.title, r.tier, r.context_type) == ("Auth tokens", "critical", "decision")
    assert r.trigger_phrases == ["jwt expiry", "refresh token"]
    assert r.tags == ["auth", "security"]
    assert r.expires == "2030-01-02"
    assert r.warnings == []
    assert r.lines[r.body_start] == "# Other"


def test_camel_case_aliases_of_spec_kit_files():
    r = p("---\nimportanceTier: important\ncontextType: research\ntriggerPhrases:\n  - a b\n  - c\n---\nx\n")
    assert (r.tier, r.context_type, r.trigger_phrases) == ("important", "research", ["a b", "c"])


@pytest.mark.parametrize(
    "tier", ["constitutional", "critical", "important", "normal", "temporary", "deprecated"]
)
def test_all_six_tiers(tier):
    assert p(f"---\nimportance_tier: {tier.upper()}\n---\nx").tier == tier


def test_unknown_tier_warns_and_defaults():
    r = p("---\nimportance_tier: urgent\n---\nx")
    assert r.tier == "normal"
    assert any("unknown importance tier 'urgent'" in w for w in r.warnings)


def test_constitutional_folder_default_and_override():
    assert p("# Rule\n", "constitutional/rule.md").tier == "constitutional"
    assert p("---\nimportance_tier: normal\n---\n", "constitutional/rule.md").tier == "normal"


def test_body_tier_line_but_never_in_comments_or_code():
    assert p("# T\n\n**Importance Tier:** critical\n").tier == "critical"
    assert p("# T\n\n[IMPORTANCE_TIER: important]\n").tier == "important"
    assert p("# T\n<!-- importance_tier: critical -->\n").tier == "normal"
    assert p("# T\n<!--\nimportance_tier: critical\n-->\n").tier == "normal"
    assert p("# T\n```yaml\nimportance_tier: critical\n```\n").tier == "normal"
    assert p("# T\n~~~\nimportance_tier: deprecated\n~~~\n").tier == "normal"


def test_trigger_phrase_section_merges_with_frontmatter():
    r = p(
        "---\ntrigger_phrases: [alpha]\n---\n# T\n\n## Trigger Phrases\n- beta\n* `gamma`\n1. alpha\n\n## Next\n- not one\n"
    )
    assert r.trigger_phrases == ["alpha", "beta", "gamma"]


def test_title_fallbacks():
    assert p("---\ntags: [x]\n---\nintro\n# First heading\n").title == "First heading"
    assert p("## only h2\ntext\n", "notes/my-note.md").title == "my-note"
    assert p("```\n# not a heading\n```\n", "x/code.md").title == "code"


@pytest.mark.parametrize(
    "rel, folder",
    [
        ("003-auth/memory/x.md", "003-auth"),
        ("specs/003-auth/memory/x.md", "003-auth"),
        ("docs/specs/010-a/b/memory/deep/x.md", "010-a/b"),
        ("003-auth/spec.md", "003-auth"),
        ("notes/x.md", "notes"),
        ("x.md", ""),
    ],
)
def test_spec_folder_from_path(rel, folder):
    assert spec_folder(PurePosixPath(rel)) == folder


def test_malformed_yaml_warns_and_keeps_body():
    r = p("---\ntitle: [unclosed\ntags: x\n---\n# Heading\nbody text\n")
    assert r.title == "Heading"
    assert any("not valid YAML" in w for w in r.warnings)
    assert "body text" in r.lines[r.body_start :]


def test_hugo_archetypes_with_go_template_frontmatter(shared_data):
    archetypes = sorted((shared_data / "md-hugo-docs" / "archetypes").glob("*.md"))
    assert archetypes
    for path in archetypes:
        r = parse(path.read_bytes(), PurePosixPath("archetypes") / path.name)
        assert any("frontmatter is not valid YAML" in w for w in r.warnings), path.name
        assert r.tier == "normal" and r.title, path.name


def test_unclosed_and_non_mapping_frontmatter():
    r = p("---\ntitle: x\n# Heading\n")
    assert any("never closed" in w for w in r.warnings) and r.title == "Heading"
    r = p("---\n- a\n- b\n---\nbody\n")
    assert any("not a mapping" in w for w in r.warnings)


def test_toml_frontmatter():
    r = p('+++\ntitle = "From TOML"\nimportance_tier = "important"\n+++\nbody\n')
    assert (r.title, r.tier) == ("From TOML", "important")


def test_utf8_bom_and_crlf():
    r = p(b"\xef\xbb\xbf---\r\ntitle: Bom\r\nimportance_tier: critical\r\n---\r\n# H\r\nline\r\n")
    assert (r.title, r.tier, r.warnings) == ("Bom", "critical", [])
    assert r.lines[r.body_start : r.body_start + 2] == ["# H", "line"]


@pytest.mark.parametrize("codec, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_utf16_with_bom(codec, bom):
    r = p(bom + "---\ntitle: Wide é\n---\nbody\n".encode(codec))
    assert r.title == "Wide é"
    assert any("UTF-16" in w for w in r.warnings)


def test_invalid_utf8_replaced_with_warning():
    r = p(b"# Title\nbad \xff\xfe byte\n")
    assert r.title == "Title"
    assert any("invalid UTF-8 at byte 12" in w for w in r.warnings)
    assert "\ufffd" in r.lines[1]


def test_empty_and_binary():
    r = p(b"")
    assert r.title == "a" and any("empty" in w for w in r.warnings)
    r = p(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert r.binary and any("binary" in w for w in r.warnings)


def test_bad_field_types_warn():
    r = p("---\ntitle: {a: 1}\ntags: 5\nexpires: someday\ntrigger_phrases: [[nested], ok]\n---\n# H\n")
    assert r.title == "H" and r.tags == [] and r.expires is None and r.trigger_phrases == ["ok"]
    assert len(r.warnings) == 4


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_parser_never_raises(data):
    r = parse(data, PurePosixPath("x/memory/y.md"))
    assert r.tier in {"constitutional", "critical", "important", "normal", "temporary", "deprecated"}
    assert r.title


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["title", "importance_tier", "tags", "trigger_phrases", "expires", "x"]),
        st.none() | st.integers() | st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3),
    )
)
def test_random_frontmatter_values_never_raise(meta):
    import yaml

    text = "---\n" + yaml.safe_dump(meta, allow_unicode=True) + "---\nbody\n"
    r = p(text)
    assert isinstance(r.tags, list) and isinstance(r.trigger_phrases, list)


def test_real_memory_bank_corpus_parses_cleanly_or_with_warnings(shared_data):
    folder = shared_data / "md-memory-bank-genesis10"
    results = [
        parse(f.read_bytes(), PurePosixPath(f.relative_to(folder).as_posix())) for f in folder.rglob("*.md")
    ]
    assert len(results) == 80
    assert all(r.title for r in results)


MALFORMED_WARNING = {
    "yaml": "frontmatter is not valid YAML",
    "go-template": "frontmatter is not valid YAML",
    "unclosed": "is never closed",
    "not-mapping": "not a mapping",
}


def test_generated_corpus_parses_as_written():
    """1,000 generated files of every shape: each reads back as written; only the broken ones warn, and say why."""
    for m in generate(1000, seed=5):
        r = parse(m.data, PurePosixPath(m.rel_path))
        assert (r.title, r.tier, r.context_type, r.expires) == (m.title, m.tier, m.context_type, m.expires), (
            m.rel_path
        )
        assert (tuple(r.trigger_phrases), tuple(r.tags)) == (m.trigger_phrases, m.tags), m.rel_path
        if m.malformed:
            assert len(r.warnings) == 1 and MALFORMED_WARNING[m.malformed] in r.warnings[0], (
                m.rel_path,
                r.warnings,
            )
        else:
            assert r.warnings == [], (m.rel_path, r.warnings)
        assert "\r" not in "".join(r.lines) and not r.lines[0].startswith("\ufeff")


# Lines that open or close fences and comments, headings, anchors and words the parser looks for, in any order.
_LINE_PARTS = [
    "# Title",
    "  ## Sub",
    "    # code, not a heading",
    "```",
    "~~~~",
    " ```python",
    "<!-- note",
    "-->",
    "<!-- inline --> # after a comment",
    "text <!-- a --> more <!-- b",
    "<!-- ANCHOR:a -->",
    "<!-- /ANCHOR:a -->",
    "importance_tier: critical",
    "impor<!-- -->tance_tier: important",
    "## Trigger phrases",
    "- a phrase",
    "plain text",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINE_PARTS), max_size=30), st.integers(0, 3))
def test_visible_lines_of_candidates_are_those_of_every_line(lines, start):
    from specmem.indexer.parse import ANCHOR_OPEN_RE, HEADING_LINE_RE, HEADING_RE, visible_lines

    every = list(visible_lines(lines, start))
    some = list(visible_lines(lines, start, HEADING_LINE_RE))
    assert set(some) <= set(every)
    wanted = [
        (i, t)
        for i, t in every
        if HEADING_RE.match(t) or ANCHOR_OPEN_RE.match(lines[i]) or "<!--" in lines[i]
    ]
    assert set(wanted) <= set(some)
    # And a file made of them parses as a line-by-line look at every line would.
    parsed = parse("\n".join(lines).encode(), PurePosixPath("x.md"))
    tiers = [
        m.group(1).lower()
        for _, t in visible_lines(lines)
        if (m := BODY_TIER_RE.match(t)) and m.group(1).lower() in TIERS
    ]
    assert parsed.tier == (tiers[0] if tiers else "normal")
