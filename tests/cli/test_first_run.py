"""The first run, through real processes: a scan remembered from its start and searchable while it embeds,
Ctrl-C at any point, several remembered scans, `specmem forget`, and a project that moved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from specmem.indexer import config, scanstate
from tests.corpus import write_corpus
from tests.helpers import cli, memory, wait_for, write


@pytest.fixture
def outside(monkeypatch) -> None:
    """No configured project: roots and index come from `specmem scan DIR` and what it remembered."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")


def test_a_first_scan_is_searchable_while_it_embeds_and_ctrl_c_leaves_a_usable_index(outside, tmp_path):
    home, vault = tmp_path / "home", tmp_path / "home" / "vault"
    write_corpus(vault, n=60, seed=3)
    real_model = {"SPECMEM_MODEL": ""}  # the shipped model: loading it takes long enough to search meanwhile
    state_path = config.resolve(roots=[vault], env={}).scan_state_path
    scan = subprocess.Popen(
        [sys.executable, "-m", "specmem", "scan", str(vault)],
        cwd=home,
        env={**os.environ, **real_model},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def embedding() -> bool:
            state = scanstate.read(state_path)
            assert scan.poll() is None, "the scan ended before its embedding phase could be searched"
            return state is not None and not state.keyword

        wait_for(embedding, timeout=300, what="the scan to finish its keyword phase")  # (loading the model)
        during = cli("search", "decision", "-n", "3", cwd=vault, env=real_model)
        assert during.returncode == 0, during.stderr
        assert during.stdout.count(":") >= 3, during.stdout  # results, cited path:lines
        assert f"using the index of {vault}" in during.stderr
        assert f"a scan (pid {scan.pid}) is computing them" in during.stderr, during.stderr
        scan.send_signal(signal.SIGINT)
        _, err = scan.communicate(timeout=600)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
    assert scan.returncode == 130, err
    assert "interrupted: what was indexed is kept and searchable" in err
    after = cli("search", "decision", "-n", "3", cwd=vault, env=real_model)
    assert after.returncode == 0 and after.stdout, after.stderr
    resumed = cli(
        "scan", "--json", cwd=vault, env=real_model, timeout=1200
    )  # (torch's import alone: 44 s at load 24)
    assert resumed.returncode == 0, resumed.stderr
    assert '"pending_embeddings": 0' in resumed.stdout and '"added": 0' in resumed.stdout


def test_several_scans_from_one_folder_are_remembered_and_the_innermost_wins(outside, tmp_path):
    home = tmp_path / "home"
    one, two, other = home / "vault1", home / "vault2", tmp_path / "other"
    write(one / "Daily" / "a.md", "# Alpha note\n\ngardening in vault one\n")
    write(two / "b.md", "# Beta note\n\ngardening in vault two\n")
    write(other / "c.md", "# Gamma note\n\ngardening somewhere else\n")
    for folder in (one, two, other):  # all from one folder; `other` last, remembered for `home` and below
        done = cli("scan", str(folder), cwd=home)
        assert done.returncode == 0, done.stderr

    for where, title in ((one / "Daily", "Alpha note"), (two, "Beta note"), (home, "Gamma note")):
        found = cli("search", "gardening", cwd=where)
        assert found.returncode == 0, found.stderr
        titles = [t for t in ("Alpha note", "Beta note", "Gamma note") if t in found.stdout]
        assert titles == [title], (where, found.stdout)
        assert "using the index of" in found.stderr and "`specmem forget` forgets it" in found.stderr

    index = config.resolve(roots=[one], env={}).db_path
    assert index.exists()
    forgot = cli("forget", cwd=one)
    assert forgot.returncode == 0, forgot.stderr
    assert f"forgot {one}" in forgot.stdout and f"deleted the index {index}" in forgot.stderr
    assert not index.exists() and not list(index.parent.glob("index.db*"))
    assert "Gamma note" in cli("search", "gardening", cwd=one).stdout  # the scan remembered for `home` now

    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    refused = cli("forget", cwd=nowhere)
    assert refused.returncode == 1 and f"no scan is remembered for {nowhere}" in refused.stderr
    assert cli("forget", "--all", cwd=nowhere).returncode == 0
    assert cli("search", "gardening", cwd=two).returncode == 1


def test_a_scan_remembered_for_a_parent_does_not_win_over_one_whose_roots_hold_the_folder(outside, tmp_path):
    shared = tmp_path / "shared"  # a shared temporary folder where a scan of something else once ran
    notes = shared / "notes"
    write(notes / "n.md", "# Own note\n\nquokka facts\n")
    write(tmp_path / "elsewhere" / "e.md", "# Foreign note\n\nquokka rumours\n")
    assert cli("scan", str(notes), cwd=tmp_path / "elsewhere").returncode == 0
    assert cli("scan", str(tmp_path / "elsewhere"), cwd=shared).returncode == 0  # later, run in a parent
    found = cli("search", "quokka", cwd=notes)
    assert found.returncode == 0 and "Own note" in found.stdout and "Foreign" not in found.stdout, found


def test_a_moved_project_keeps_its_index_and_its_embeddings(isolated, monkeypatch, tmp_path):
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    project = tmp_path / "app"
    write(project / "specs" / "001-a" / "memory" / "wal.md", memory("WAL mode", "readers never block"))
    (project / ".git").mkdir()
    assert cli("scan", cwd=project).returncode == 0
    moved = tmp_path / "renamed-app"
    project.rename(moved)
    found = cli("search", "readers", cwd=moved)
    assert found.returncode == 0 and "WAL mode" in found.stdout, (found.stdout, found.stderr)
    assert str(moved / "specs") in found.stdout
    rescan = cli("scan", "--json", cwd=moved)
    assert '"embedded_chunks": 0' in rescan.stdout and '"unchanged": 1' in rescan.stdout, rescan.stdout


def test_an_unreadable_remembered_record_is_no_error(outside, tmp_path):
    record = Path(os.environ["XDG_DATA_HOME"]) / "specmem" / "remembered-scans.json"
    write(record, "{not json")
    missing = cli("search", "x", cwd=tmp_path)
    assert missing.returncode == 1 and "no index yet" in missing.stderr
