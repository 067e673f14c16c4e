"""The CLI as scripts use it: closed pipes, colour switches, JSON from every command, readable scores, hints that
name this command's flags, usage lines that name the arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from specmem.cli import cli as specmem_cli
from tests.helpers import cli, memory, write

ANSI = "\x1b["


@pytest.fixture
def corpus(specs, run_scan):
    write(specs / "001-a" / "memory" / "a.md", memory("Alpha note", "the cache keys are hashed"))
    write(specs / "001-a" / "memory" / "b.md", memory("Beta note", "the cache is warm"))
    write(specs / "002-b" / "memory" / "c.md", memory("Gamma note", "the queue is durable"))
    run_scan()
    return specs


def test_a_closed_pipe_ends_the_command_quietly(corpus):
    """`specmem list | head -1` and `specmem search x | true`: the reader leaves early; exit 0, nothing on stderr."""
    for args in (["search", "the", "-n", "50"], ["list"], ["stats", "--json"]):
        done = subprocess.run(
            f"{sys.executable} -m specmem {' '.join(args)} | true; echo status ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip() == "status 0", (args, done.stdout, done.stderr)
        assert "Error" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_colour_follows_no_color_and_the_color_option(corpus, monkeypatch):
    runner = CliRunner()
    coloured = runner.invoke(specmem_cli, ["--color", "always", "list"], color=True)
    assert ANSI in coloured.output
    monkeypatch.setenv("NO_COLOR", "1")
    plain = runner.invoke(specmem_cli, ["list"], color=True)  # color=True: as on a terminal
    assert plain.exit_code == 0 and ANSI not in plain.output and "Alpha note" in plain.output
    forced = runner.invoke(specmem_cli, ["--color", "always", "list"], color=True)
    assert ANSI in forced.output  # the option wins over the environment
    monkeypatch.delenv("NO_COLOR")
    never = runner.invoke(specmem_cli, ["--color", "never", "list"], color=True)
    assert ANSI not in never.output


def test_every_command_that_prints_a_result_takes_json(corpus):
    written = json.loads(
        cli("write", "--title", "Delta", "--spec-folder", "003-c", "--json", "queues drain").stdout
    )
    assert written["id"] > 0 and written["path"].endswith(".md") and written["action"] == "written"
    updated = json.loads(cli("update", str(written["id"]), "--tag", "ops", "--json").stdout)
    assert (
        updated["id"] == written["id"]
        and updated["path"] == written["path"]
        and updated["changed"] == ["tags"]
    )
    validated = json.loads(cli("validate", str(written["id"]), "--useful", "--json").stdout)
    assert validated["id"] == written["id"] and validated["confidence_after"] > validated["confidence_before"]
    saved = json.loads(cli("save", written["path"], "--json").stdout)
    assert saved["files_seen"] == 1
    created = json.loads(cli("checkpoint", "create", "before", "--json").stdout)
    assert created["name"] == "before" and created["file_count"] == 4
    listed = json.loads(cli("checkpoint", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["before"]
    deleted = json.loads(cli("delete", written["path"], "--json").stdout)
    assert deleted["deleted"] == [written["path"]] and deleted["checkpoint"]
    restored = json.loads(cli("checkpoint", "restore", deleted["checkpoint"], "--json").stdout)
    assert restored["restored"] == [written["path"]]
    assert json.loads(cli("checkpoint", "delete", "before", "--json").stdout) == {"deleted": "before"}
    paths = json.loads(cli("paths", "--json").stdout)
    assert paths["database"]["value"].endswith("index.db") and paths["roots"]["source"]
    doctor = cli("doctor", "--no-model", "--json")
    assert {c["name"] for c in json.loads(doctor.stdout)} >= {"apsw", "fts5"}, doctor.stderr
    for args in (["search", "cache"], ["list"], ["stats"], ["triggers", "cache"], ["context", "cache"]):
        done = cli(*args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        json.loads(done.stdout)


def test_scores_stay_readable_when_bm25_weights_are_tiny(corpus):
    """`the` is in every memory, so BM25 weighs it about 1e-6: each hit once printed `score 0.0000`."""
    shown = cli("search", "the", "--mode", "keyword").stdout
    scores = [line.rsplit("score ", 1)[1] for line in shown.splitlines() if "score " in line]
    assert len(scores) == 3 and "0.0000" not in scores and all(float(s) > 0 for s in scores), shown
    answer = json.loads(cli("search", "the", "--mode", "keyword", "--json").stdout)
    assert all(r["score"] > 0 for r in answer["results"])


def test_hints_name_this_commands_flags_and_commands(corpus):
    whole = cli("delete", "--spec-folder", "001-a")
    assert whole.returncode == 1 and "needs --yes" in whole.stderr and "confirm" not in whole.stderr
    missing = cli("checkpoint", "restore", "nope")
    assert missing.returncode == 1 and "specmem checkpoint list" in missing.stderr, missing.stderr


def test_usage_names_the_arguments():
    for command in ("scan", "watch"):
        shown = cli(command, "--help").stdout
        assert f"Usage: specmem {command} [OPTIONS] [ROOT]..." in shown and "ROOT_ARGS" not in shown
