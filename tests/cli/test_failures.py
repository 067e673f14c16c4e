"""Every failure says so: a command that did not do what was asked exits non-zero with one line naming the cause
and the fix; a name that fits several memories is an error listing them; markdown the roots leave out is listed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from specmem.indexer import config
from specmem.indexer.lock import current_holder
from tests.helpers import cli, memory, wait_for, write


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_scan_whose_model_cannot_load_exits_non_zero_naming_the_fix(specs):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "keyword search still works"))
    done = cli("scan", env={"SPECMEM_MODEL": "/no/such/model", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = error_line(done.stderr)
    assert "embeddings not computed" in line and "SPECMEM_MODEL" in line and "--no-embed" in line
    assert "1 added" in done.stdout  # the keyword phase is done and said so
    assert cli("scan", "--no-embed", env={"SPECMEM_MODEL": "/no/such/model"}).returncode == 0
    keyword = cli("search", "keyword", "--mode", "keyword")
    assert keyword.returncode == 0 and "A" in keyword.stdout


def test_doctor_without_an_index_fails(specs):
    done = cli("doctor", "--no-model")
    assert done.returncode == 1 and "no index at" in done.stdout and "specmem scan" in done.stdout


def test_a_semantic_search_that_cannot_search_meaning_exits_non_zero(specs):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "words only"))
    assert cli("scan", "--no-embed").returncode == 0
    done = cli("search", "words", "--mode", "semantic")
    assert done.returncode == 1 and "no embeddings in the index yet" in error_line(done.stderr)
    assert cli("search", "words").returncode == 0  # hybrid answers by keyword, and says so


def test_a_search_whose_model_differs_from_the_index_says_which_not_loading(specs):
    """A one-shot search said "embedding model not loaded yet" whatever the cause: a wrong model path too."""
    write(specs / "001-a" / "memory" / "a.md", memory("A", "meaning and words"))
    assert cli("scan").returncode == 0  # embedded with hash:64
    wrong = {"SPECMEM_MODEL": "/no/such/model", "HF_HUB_OFFLINE": "1"}
    done = cli("search", "words", env=wrong)
    assert done.returncode == 0 and "A" in done.stdout, done.stderr
    assert "not loaded yet" not in done.stderr and "embedded with hash:64, not /no/such/model" in done.stderr
    semantic = cli("search", "words", "--mode", "semantic", env=wrong)
    assert semantic.returncode == 1 and "/no/such/model" in error_line(semantic.stderr)


def test_a_name_in_two_roots_is_ambiguous_and_listed_apart(isolated, monkeypatch, tmp_path):
    one, two = isolated / "one", isolated / "two"
    write(one / "README.md", memory("First readme", "alpha"))
    write(two / "README.md", memory("Second readme", "beta"))
    monkeypatch.setenv("SPECMEM_ROOTS", os.pathsep.join([str(one), str(two)]))
    assert cli("scan").returncode == 0
    got = cli("get", "README.md")
    assert got.returncode == 1, got.stdout
    line = error_line(got.stderr)
    assert (
        "README.md is ambiguous" in line and str(one / "README.md") in line and str(two / "README.md") in line
    )
    assert cli("get", str(two / "README.md")).returncode == 0
    assert "Second readme" in cli("get", "README.md", cwd=two).stdout  # from its folder, it names one file
    saved = cli("save", "README.md")
    assert saved.returncode == 1 and "ambiguous" in error_line(saved.stderr)
    listed = cli("list").stdout
    assert "one/README.md" in listed and "two/README.md" in listed


def test_watch_does_not_warn_of_convention_files_that_exist(isolated, monkeypatch):
    monkeypatch.delenv("SPECMEM_ROOTS")
    (isolated / ".git").mkdir()
    write(isolated / "CLAUDE.md", "# Claude\n\nrules\n")
    write(isolated / "AGENTS.md", "# Agents\n\nrules\n")
    cfg = config.resolve()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch"], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_for(lambda: current_holder(cfg.watcher_lock_path) is not None, what="the watcher to start")
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert "does not exist yet" not in err, err


def test_markdown_folders_outside_the_roots_are_listed_by_init_and_scan(isolated, monkeypatch):
    monkeypatch.delenv("SPECMEM_ROOTS")
    (isolated / ".git").mkdir()
    write(isolated / "specs" / "001-a" / "memory" / "a.md", memory("A", "read"))
    write(isolated / "docs" / "guide" / "intro.md", "# Intro\n")
    write(isolated / "docs" / "faq.md", "# FAQ\n")
    write(isolated / ".specify" / "templates" / "spec-template.md", "# Template\n")
    write(isolated / ".specify" / "memory" / "constitution.md", "# Constitution\n")  # a Spec Kit project
    write(isolated / "README.md", "# The project\n")
    expected = [  # the summary counts what the lines below it list (the hidden .specify/templates/ too)
        'not read: 4 other markdown files; roots = ["."] in specmem.toml reads every markdown file of the project',
        "  docs/ (2 files)",
        "  .specify/templates/ (1 file)",
        "  the top folder (1 file)",
    ]
    init = cli("init", "--dry-run")
    assert init.returncode == 0 and all(line in init.stdout for line in expected), init.stdout
    scan = cli("scan")
    assert scan.returncode == 0 and all(line in scan.stdout for line in expected), scan.stdout
    assert "README.md" not in scan.stdout
    listed = [  # one structure in both commands' JSON: what the lines above show
        {"folder": "docs", "markdown_files": 2},
        {"folder": ".", "markdown_files": 1},
        {"folder": ".specify/templates", "markdown_files": 1},
    ]
    assert json.loads(cli("scan", "--json").stdout)["unread"] == listed
    assert json.loads(cli("init", "--dry-run", "--json").stdout)["unread"] == listed
