"""Where assistants already keep memory (Spec Kit, Kiro, Cursor, Claude Code, Copilot, AGENTS.md, Cline's memory
bank): recognised with their tiers and context types, included when a project has them, and every hidden folder
holding markdown that is left out is reported. Through the `specmem` command and `specmem serve`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mcp import Client

from specmem.indexer import config, conventions, db
from specmem.indexer.embed import get_embedder
from specmem.indexer.errors import ConfigError
from specmem.indexer.watch import Watcher
from tests.helpers import call, cli, hits, in_memory, wait_for, write

STEERING_ALWAYS = "# Product\n\nWe build a bakery ordering app. Orders close at 18:00.\n"
STEERING_TECH = "---\ninclusion: always\n---\n# Tech stack\n\nPython 3.12, FastAPI, PostgreSQL.\n"
STEERING_API = (
    "---\ninclusion: fileMatch\nfileMatchPattern: 'app/api/**/*.py'\n---\n# API rules\n\n"
    "Every endpoint validates input with pydantic.\n"
)


@pytest.fixture
def unset_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Let roots resolve as a user's would: from the project, not from the suite's SPECMEM_ROOTS (and keep
    indexes outside any project in this test's own user data folder)."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))


def kiro_project(top: Path) -> Path:
    """A Kiro-style project: steering files, one spec's three documents, and Kiro's settings."""
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    write(top / ".kiro" / "steering" / "product.md", STEERING_ALWAYS)
    write(top / ".kiro" / "steering" / "tech.md", STEERING_TECH)
    write(top / ".kiro" / "steering" / "api-rules.md", STEERING_API)
    for doc, text in (
        ("requirements", "# Requirements\n\nWHEN a user logs in THEN the system SHALL issue a session.\n"),
        ("design", "# Design\n\nSessions are signed cookies that expire after 12 hours.\n"),
        ("tasks", "# Tasks\n\n- [ ] 1. Add the login endpoint\n- [x] 2. Add the session table\n"),
    ):
        write(top / ".kiro" / "specs" / "user-login" / f"{doc}.md", text)
    write(top / ".kiro" / "settings" / "mcp.json", "{}")
    write(top / "src" / "notes.md", "# Not memory\n\nsource notes outside the roots\n")
    return top


def cursor_project(top: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    write(
        top / ".cursor" / "rules" / "style.mdc",
        "---\ndescription: House style\nalwaysApply: true\n---\n# House style\n\nUse tabs in Makefiles.\n",
    )
    write(
        top / ".cursor" / "rules" / "tests.mdc",
        "---\ndescription: Tests\nglobs: tests/**\nalwaysApply: false\n---\n# Tests\n\nNo sleeps in tests.\n",
    )
    write(top / ".cursor" / "notes" / "scratch.md", "# Scratch\n\nnot a rule\n")
    write(top / "CLAUDE.md", "# Claude notes\n\nRun the suite with pytest -q.\n")
    return top


def listed(cwd: Path, *args: str) -> dict[str, dict]:
    done = cli("list", "--json", *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {Path(m["path"]).relative_to(cwd).as_posix(): m for m in json.loads(done.stdout)["items"]}


def test_the_table_is_consistent():
    names = [c.name for c in conventions.CONVENTIONS]
    assert set(names) == set(conventions.NAMES)
    for c in conventions.CONVENTIONS:
        assert c.path and not c.path.startswith("/") and c.reads, c
    assert conventions.match(Path("/p/.kiro/steering/x.md")).name == "kiro"
    assert conventions.match(Path("/p/.kiro/settings/x.md")) is None
    assert conventions.match(Path("/p/.cursor/rules/a/b.mdc")).name == "cursor"
    assert conventions.match(Path("/p/.cursor/rules/b.txt")) is None
    assert conventions.match(Path("/p/docs/AGENTS.md")).name == "agents"
    assert conventions.enters(Path("/p/.github"), conventions.CONVENTIONS)
    assert not conventions.enters(Path("/p/.github/workflows"), conventions.CONVENTIONS)


def test_kiro_project_with_default_roots(isolated, unset_roots, tmp_path):
    """`specmem scan` in a Kiro project without specs/: the steering and spec folders are roots of their own."""
    top = kiro_project(tmp_path / "kiro")
    done = cli("scan", cwd=top)
    assert done.returncode == 0, done.stderr
    assert "scanned 6 files" in done.stdout, done.stdout
    memories = listed(top)
    assert set(memories) == {
        ".kiro/steering/product.md",
        ".kiro/steering/tech.md",
        ".kiro/steering/api-rules.md",
        ".kiro/specs/user-login/requirements.md",
        ".kiro/specs/user-login/design.md",
        ".kiro/specs/user-login/tasks.md",
    }
    steering = {k: memories[f".kiro/steering/{k}.md"] for k in ("product", "tech", "api-rules")}
    assert steering["product"]["tier"] == steering["tech"]["tier"] == "constitutional"
    assert steering["api-rules"]["tier"] == "important"
    assert {m["context_type"] for m in steering.values()} == {"rule"}
    spec = memories[".kiro/specs/user-login/design.md"]
    assert (spec["tier"], spec["context_type"], spec["spec_folder"]) == ("normal", "spec", "user-login")

    paths = cli("paths", cwd=top).stdout
    assert "convention roots" in paths and ".kiro/steering" in paths

    # The steering rules do not lead a search they do not answer (an assistant loads them once, as context).
    found = cli("search", "session cookies expire", "--json", cwd=top)
    results = json.loads(found.stdout)["results"]
    assert results[0]["title"] == "Design" and not any(r["always_surfaced"] for r in results)


def test_kiro_project_scanned_as_a_folder(isolated, unset_roots, tmp_path):
    """`specmem scan DIR` on the project top (the newcomer's way): the hidden convention folders are entered."""
    top = kiro_project(tmp_path / "kiro")
    done = cli("scan", str(top), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == 7  # six Kiro documents and src/notes.md
    assert report["skipped"] == []  # .kiro/settings holds no markdown
    memories = listed(tmp_path, "--root", str(top))
    assert memories["kiro/.kiro/steering/product.md"]["tier"] == "constitutional"
    assert memories["kiro/.kiro/specs/user-login/tasks.md"]["spec_folder"] == "user-login"


def test_cursor_rules_and_claude_md_and_reported_skips(isolated, unset_roots, tmp_path):
    top = cursor_project(tmp_path / "cur")
    done = cli("scan", str(top), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scanned 3 files" in done.stdout, done.stdout
    assert "skipped " + str(top / ".cursor" / "notes") + ": 1 markdown file" in done.stdout, done.stdout
    assert 'include = [".cursor/notes"]' in done.stdout
    memories = listed(tmp_path, "--root", str(top))
    assert memories["cur/.cursor/rules/style.mdc"]["tier"] == "constitutional"
    assert memories["cur/.cursor/rules/tests.mdc"]["tier"] == "important"
    assert memories["cur/CLAUDE.md"]["tier"] == "important"
    assert memories["cur/CLAUDE.md"]["context_type"] == "instructions"


def test_settings_choose_conventions_and_include_and_exclude(isolated, unset_roots, tmp_path):
    top = cursor_project(tmp_path / "cur")
    write(top / "specs" / "001-a" / "memory" / "a.md", "# A\n\nalpha\n")
    write(top / "specs" / "drafts" / "d.md", "# Draft\n\nnot yet\n")
    write(top / "specs" / ".notes" / "n.md", "# Hidden note\n\nincluded by the settings\n")
    (top / "specmem.toml").write_text(
        'conventions = ["claude"]\ninclude = [".notes"]\nexclude = ["drafts/"]\n', encoding="utf-8"
    )
    done = cli("scan", cwd=top)
    assert done.returncode == 0, done.stderr
    assert set(listed(top)) == {"specs/001-a/memory/a.md", "specs/.notes/n.md", "CLAUDE.md"}
    (top / "specmem.toml").write_text('roots = ["."]\nconventions = ["claude"]\n', encoding="utf-8")
    done = cli("scan", cwd=top)
    assert "skipped " + str(top / ".cursor") in done.stdout
    assert 'Cursor\'s place, a convention not adopted: add "cursor" to conventions' in done.stdout

    (top / "specmem.toml").write_text('conventions = ["nope"]\n', encoding="utf-8")
    bad = cli("scan", cwd=top)
    assert bad.returncode == 1 and "unknown convention(s) nope; known: speckit, kiro" in bad.stderr


def test_setting_errors_name_the_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "specmem.toml").write_text("include = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="specmem.toml: include must be a list of texts"):
        config.resolve(env={}, cwd=tmp_path / "a")
    (tmp_path / "b").mkdir()
    assert config.resolve(env={"SPECMEM_CONVENTIONS": "none"}, cwd=tmp_path / "b").conventions == ()
    with pytest.raises(ConfigError, match="SPECMEM_CONVENTIONS: unknown convention"):
        config.resolve(env={"SPECMEM_CONVENTIONS": "kiro,vim"}, cwd=tmp_path / "b")


def markdown_count(top: Path) -> int:
    return sum(f.endswith((".md", ".mdc")) for _, _, names in os.walk(top) for f in names)


@pytest.mark.parametrize("name", ["md-spec-kit", "md-memory-bank-genesis10"])
def test_real_collections_skip_nothing_unreported(isolated, unset_roots, tmp_path, name, shared_data):
    """Real repositories nobody here wrote: every markdown file is either indexed or in a reported skip."""
    top = tmp_path / name
    shutil.copytree(shared_data / name, top)
    done = cli("scan", str(top), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    skipped = sum(s["markdown_files"] for s in report["skipped"])
    assert report["files_seen"] + skipped == markdown_count(top), report["skipped"]
    memories = listed(tmp_path, "--root", str(top), "--limit", "500")
    if name == "md-spec-kit":
        constitution = memories[f"{name}/.specify/memory/constitution.md"]
        assert (constitution["tier"], constitution["context_type"]) == ("constitutional", "rule")
        assert memories[f"{name}/AGENTS.md"]["tier"] == "important"
        assert {Path(s["path"]).name for s in report["skipped"]} >= {"workflows"}
    else:
        assert memories[f"{name}/.github/copilot-instructions.md"]["context_type"] == "instructions"
        assert memories[f"{name}/AGENTS.md"]["tier"] == "important"


def test_spec_kit_project_with_default_roots_over_mcp(isolated, unset_roots, tmp_path, shared_data):
    """A Spec Kit project (git repository, default settings): the constitution leads a search over MCP."""
    top = tmp_path / "sk"
    shutil.copytree(shared_data / "md-spec-kit", top)
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    assert cli("scan", cwd=top).returncode == 0

    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="how are dependencies kept minimal")
        first = answer["results"][0]
        assert first["always_surfaced"] and first["path"].endswith(".specify/memory/constitution.md")
        summary = await call(client, "memory_index_scan")
        assert summary["files_seen"] == 2 and summary["skipped"] == []
        assert str(top / ".specify" / "memory") in summary["scope"]

    in_memory(scenario, config.resolve(cwd=top))


def test_watcher_sees_new_steering_files_and_edits_of_a_top_level_file(isolated, unset_roots, tmp_path):
    top = kiro_project(tmp_path / "kiro")
    write(top / "AGENTS.md", "# Agents\n\nfirst words\n")
    cfg = config.resolve(cwd=top)
    assert top / "AGENTS.md" in cfg.file_roots
    watcher = Watcher(cfg, get_embedder("hash:64"), embed=False)
    watcher.start()
    try:
        conn = db.connect(cfg.db_path)
        try:
            wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
            write(top / ".kiro" / "steering" / "security.md", "# Security\n\nNever log tokens zanzibar.\n")
            wait_for(lambda: hits(conn, "zanzibar"), what="the new steering file")
            write(top / "AGENTS.md", "# Agents\n\nsecond words quetzal\n")
            wait_for(lambda: hits(conn, "quetzal"), what="the edited AGENTS.md")
            tier = db.scalar(
                conn, "SELECT importance_tier FROM memory_index WHERE rel_path = '.kiro/steering/security.md'"
            )
            assert tier == "constitutional"
            (top / "AGENTS.md").unlink()
            wait_for(lambda: not hits(conn, "quetzal"), what="AGENTS.md leaving the index")
        finally:
            conn.close()
    finally:
        watcher.stop()


def test_readme_conventions_table_is_the_code_s():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = text.index("\n", text.index("<!-- conventions table")) + 1
    assert text[start : text.index("<!-- end of conventions table")].strip() == conventions.markdown_table()


def test_readme_configuration_table_lists_every_setting():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| setting | option | environment | `specmem.toml` | default |") :].split("\n\n")[
        0
    ]
    for setting in config.SETTINGS:
        assert f"`{setting.env}`" in table, setting.env
        assert setting.key is None or f"`{setting.key}`" in table, setting.key


def monorepo(top: Path) -> Path:
    """A repository whose memory lies beyond specs/: instruction files in packages, decision records, Cursor
    rules in an app, plus markdown that is no memory and places that must never be read."""
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    write(top / ".gitignore", "build/\n")
    write(top / "specs" / "001-a" / "spec.md", "# Feature A\n\nThe first feature.\n")
    write(top / "apps" / "web" / "CLAUDE.md", "# Web app\n\nRun the web app with pnpm dev quokka.\n")
    write(top / "packages" / "db" / "AGENTS.md", "# Database package\n\nMigrations live in prisma/.\n")
    write(
        top / "apps" / "web" / ".cursor" / "rules" / "ui.mdc",
        "---\nalwaysApply: false\n---\n# UI\n\nTailwind.\n",
    )
    write(top / "docs" / "adr" / "0001-use-postgres.md", "# 1. Use PostgreSQL\n\nStatus: accepted.\n")
    write(top / "docs" / "adr" / "README.md", "# Decision records\n\nOne file per decision.\n")
    write(top / "docs" / "guide.md", "# Guide\n\nHow to use the product.\n")
    write(top / "node_modules" / "x" / "CLAUDE.md", "# Not ours\n")
    write(top / "build" / "CLAUDE.md", "# Generated\n")
    return top


def test_memory_anywhere_in_the_project_is_read_and_scoped_to_its_folder(isolated, unset_roots, tmp_path):
    """`specmem init` and `specmem scan` read a CLAUDE.md or AGENTS.md in any package, decision records and nested
    Cursor rules (each scoped to its folder), say which markdown they leave out with the setting that reads it,
    and follow places that appear or go away."""
    top = monorepo(tmp_path / "mono")
    init = cli("init", cwd=top)
    assert init.returncode == 0, init.stderr
    assert "apps/web/CLAUDE.md" in init.stdout and "docs/adr/ (2 files)" in init.stdout, init.stdout
    assert 'not read: 1 other markdown file; roots = ["."] in specmem.toml' in init.stdout
    assert "  docs/ (1 file)" in init.stdout  # docs/guide.md, beside the decision records read in docs/adr/
    assert not (top / "specs" / "constitutional").exists()  # the project keeps memory: no example rule

    done = cli("scan", cwd=top)
    assert done.returncode == 0, done.stderr
    assert "scanned 6 files" in done.stdout and "not read: 1 other markdown file;" in done.stdout
    assert "  docs/ (1 file)" in done.stdout
    memories = listed(top)
    assert set(memories) == {
        "specs/001-a/spec.md",
        "apps/web/CLAUDE.md",
        "packages/db/AGENTS.md",
        "apps/web/.cursor/rules/ui.mdc",
        "docs/adr/0001-use-postgres.md",
        "docs/adr/README.md",
    }
    web = memories["apps/web/CLAUDE.md"]
    assert (web["spec_folder"], web["tier"], web["context_type"]) == ("apps/web", "important", "instructions")
    assert memories["packages/db/AGENTS.md"]["spec_folder"] == "packages/db"
    assert memories["apps/web/.cursor/rules/ui.mdc"]["tier"] == "important"
    adr = memories["docs/adr/0001-use-postgres.md"]
    assert (adr["spec_folder"], adr["context_type"]) == ("docs/adr", "decision")
    assert memories["docs/adr/README.md"]["context_type"] is None
    found = json.loads(cli("search", "quokka", "--json", "--mode", "keyword", cwd=top).stdout)
    assert found["results"][0]["rel_path"] == "apps/web/CLAUDE.md"

    write(top / "packages" / "api" / "CLAUDE.md", "# API\n\nEndpoints are versioned.\n")
    (top / "packages" / "db" / "AGENTS.md").unlink()
    assert cli("scan", cwd=top).returncode == 0
    assert set(listed(top)) >= {"packages/api/CLAUDE.md"}
    assert "packages/db/AGENTS.md" not in listed(top)
    assert "packages/api/CLAUDE.md" in cli("paths", cwd=top).stdout


def test_init_writes_examples_only_into_a_project_without_memory(isolated, unset_roots, tmp_path):
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    assert cli("init", cwd=empty).returncode == 0
    assert (empty / "specs" / "constitutional" / "example-rule.md").is_file()

    kiro = kiro_project(tmp_path / "kiro")
    done = cli("init", cwd=kiro)
    assert done.returncode == 0 and "no examples added (--examples adds them)" in done.stdout, done.stdout
    assert (kiro / "specs").is_dir() and not any((kiro / "specs").iterdir())
    assert cli("init", "--examples", cwd=kiro).returncode == 0
    assert (kiro / "specs" / "constitutional" / "example-rule.md").is_file()


def test_what_each_convention_implies():
    kiro = Path("/p/.kiro/steering")
    assert conventions.defaults(kiro / "README.md", {}) == (None, None)  # documentation, not a rule
    assert conventions.defaults(kiro / "api.md", {"include": "conditional"}) == ("important", "rule")
    assert conventions.defaults(kiro / "tech.md", {"include": "always"}) == ("constitutional", "rule")
    assert conventions.defaults(Path("/p/.cursor/rules/README.md"), {}) == (None, None)
    assert conventions.defaults(Path("/p/docs/decisions/0002-x.md"), {}) == (None, "decision")
    assert conventions.defaults(Path("/adr/notes/specs/x.md"), {}) == (None, None)  # an adr folder far above
    assert conventions.defaults(Path("/p/app/GEMINI.md"), {}) == ("important", "instructions")
    assert (
        conventions.defaults(Path("/p/.windsurf/rules/a.md"), {"trigger": "always_on"})[0] == "constitutional"
    )
