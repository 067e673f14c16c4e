import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from specmem.cli import cli, main
from specmem.indexer import db
from tests.helpers import memory, write


def run(*args: str):
    """Run the CLI through main(), as the `specmem` script does (known errors: one line, exit 1)."""
    return CliRunner().invoke(main_wrapper, list(args), catch_exceptions=False)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def main_wrapper(ctx):
    sys.argv = ["specmem", *ctx.args]
    main()


@pytest.fixture
def indexed(specs):
    write(
        specs / "001-a" / "memory" / "apsw.md",
        memory("Use apsw", "apsw loads sqlite-vec", importance_tier="critical"),
    )
    write(specs / "constitutional" / "truth.md", memory("Files are truth", "the index is derived"))
    result = run("scan")
    assert result.exit_code == 0, result.output
    return specs


def test_scan_summary_and_json(specs):
    write(specs / "a.md", memory("A", "alpha"))
    write(specs / "bad.md", "---\ntitle: [x\n---\nbody\n")
    result = run("scan")
    assert result.exit_code == 0
    assert "2 added" in result.output and "warning" in result.output and "not valid YAML" in result.output
    result = run("scan", "--json")
    data = json.loads(result.output)
    assert data["unchanged"] == 2 and data["added"] == 0 and data["pending_embeddings"] == 0


def test_scan_no_embed_then_complete(specs):
    write(specs / "a.md", memory("A", "alpha"))
    assert json.loads(run("scan", "--no-embed", "--json").output)["pending_embeddings"] == 1
    assert json.loads(run("scan", "--json").output)["pending_embeddings"] == 0


def test_search_text_and_json(indexed):
    result = run("search", "sqlite-vec")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    # The rule does not answer the query: it is not put on top (rules lead memory_context, not every search).
    assert lines[0].startswith("1. Use apsw") and not any(line.startswith("★") for line in lines)
    assert "001-a/memory/apsw.md:5-7" in result.output
    data = json.loads(
        run("search", "sqlite-vec", "--json", "--no-constitutional", "--mode", "keyword").output
    )
    assert [r["title"] for r in data["results"]] == ["Use apsw"] and data["mode_used"] == "keyword"


def test_search_filters(indexed):
    data = json.loads(run("search", "apsw", "--json", "--tier", "normal", "--no-constitutional").output)
    assert data["results"] == []
    data = json.loads(
        run("search", "apsw", "--json", "--spec-folder", "001-a", "--tag", "x", "--no-constitutional").output
    )
    assert data["results"] == []
    assert run("search", "x", "--since", "not-a-date").exit_code == 2


def test_get_by_id_and_path(indexed):
    result = run("get", "1")
    assert result.exit_code == 0 and "apsw loads sqlite-vec" in result.output
    rel = run("get", "001-a/memory/apsw.md")
    assert rel.exit_code == 0 and rel.output == result.output
    data = json.loads(run("get", str(indexed / "001-a" / "memory" / "apsw.md"), "--json").output)
    assert data["tier"] == "critical" and data["spec_folder"] == "001-a"


def test_get_refuses_unknown_and_outside(indexed, tmp_path):
    result = run("get", "999")
    assert (
        result.exit_code == 1 and result.output.count("\n") == 1 and "no memory with id 999" in result.output
    )
    outside = write(tmp_path / "secret.md", "# secret\n")
    assert run("get", str(outside)).exit_code == 1
    assert run("get", "../../secret.md").exit_code == 1


def test_stats_and_paths(indexed, isolated):
    data = json.loads(run("stats", "--json").output)
    assert data["memories"] == 2 and data["by_tier"] == {"constitutional": 1, "critical": 1}
    text = run("stats").output
    assert "2 memories" in text and f"schema v{len(db.MIGRATIONS)}" in text
    paths = run("paths").output
    assert str(isolated / ".specmem" / "index.db") in paths and "hash:64" in paths


def test_errors_are_one_line(specs, isolated):
    result = run("search", "x")
    assert result.exit_code == 1 and "run `specmem scan` first" in result.output
    result = run("scan", str(isolated / "nope"))
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_help_explains_every_command():
    runner = CliRunner()
    for command in ["scan", "search", "get", "stats", "paths"]:
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "SPECMEM_DB" in result.output


def test_console_script_end_to_end(specs, isolated):
    """The installed `specmem` entry point, as a user runs it."""
    write(specs / "a.md", memory("Entry point", "console script works"))
    exe = Path(sys.executable).with_name("specmem")
    env = {**os.environ, "NO_COLOR": "1"}
    scan = subprocess.run(
        [str(exe), "scan"], capture_output=True, text=True, env=env, cwd=isolated, timeout=120
    )
    assert scan.returncode == 0, scan.stderr
    found = subprocess.run(
        [str(exe), "search", "console", "--mode", "keyword"],
        capture_output=True,
        text=True,
        env=env,
        cwd=isolated,
        timeout=120,
    )
    assert found.returncode == 0 and "Entry point" in found.stdout


def test_write_and_checkpoint_commands(specs, isolated):
    runner = CliRunner()
    done = runner.invoke(
        cli,
        [
            "write",
            "--title",
            "Cache keys",
            "--spec-folder",
            "004-cache",
            "--tier",
            "important",
            "--trigger",
            "cache key",
            "keys are hashed",
        ],
        catch_exceptions=False,
    )
    assert done.exit_code == 0 and "written to" in done.output
    path = next((specs / "004-cache" / "memory").glob("*-cache-keys.md"))
    assert "importance_tier: important" in path.read_text()
    assert runner.invoke(cli, ["checkpoint", "create", "first"], catch_exceptions=False).exit_code == 0
    path.write_text(memory("Cache keys", "edited"))
    listed = runner.invoke(cli, ["checkpoint", "list"], catch_exceptions=False)
    assert listed.output.startswith("first ") and "1 files" in listed.output
    restored = runner.invoke(cli, ["checkpoint", "restore", "first"], catch_exceptions=False)
    assert "restored 1 files" in restored.output and "keys are hashed" in path.read_text()
    assert runner.invoke(cli, ["checkpoint", "delete", "first"], catch_exceptions=False).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["write", "--title", "x", "--spec-folder", "../up", "body"], "not a folder name"),
        (["checkpoint", "create", "a/b"], "must be 1-64"),
        (["checkpoint", "restore", "nope"], "no checkpoint named"),
    ],
)
def test_write_and_checkpoint_errors_are_one_line(specs, isolated, args, message):
    done = subprocess.run(
        [sys.executable, "-m", "specmem", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_search_explain_shows_each_side_and_the_weights(indexed):
    result = run("search", "apsw sqlite-vec", "--explain", "--no-constitutional")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "keyword bm25" in text and "semantic cosine" in text and "fused" in text and "× tier 1.5" in text
    data = json.loads(run("search", "apsw sqlite-vec", "--json", "--no-constitutional").output)
    parts = data["results"][0]["parts"]
    assert {
        "keyword",
        "keyword_norm",
        "keyword_weight",
        "semantic",
        "semantic_norm",
        "semantic_weight",
    } <= set(parts)
