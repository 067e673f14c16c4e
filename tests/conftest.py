"""Each test gets its own database and roots; plumbing tests use the deterministic hash embedder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer import config, db
from indexer.embed import Embedder, get_embedder
from indexer.index import ScanReport, scan

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One user cache folder for the session: the ONNX model is built once, never in the real user cache."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> Path:
    """Own project folder, database and roots for every test; nothing leaks between tests."""
    monkeypatch.setenv("SPECMEM_CACHE_DIR", str(session_cache))
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("SPECMEM_DB", str(project / ".specmem" / "index.db"))
    monkeypatch.setenv("SPECMEM_ROOTS", str(project / "specs"))
    monkeypatch.setenv("SPECMEM_MODEL", "hash:64")
    monkeypatch.delenv("SPECMEM_MAX_FILE_BYTES", raising=False)
    return project


@pytest.fixture
def specs(isolated: Path) -> Path:
    return isolated / "specs"


@pytest.fixture
def cfg(isolated: Path) -> config.Config:
    return config.resolve()


@pytest.fixture
def conn(cfg: config.Config):
    connection = db.connect(cfg.db_path)
    yield connection
    connection.close()


@pytest.fixture
def hash_embedder() -> Embedder:
    return get_embedder("hash:64")


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The shipped all-MiniLM-L6-v2, loaded once per test session."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = get_embedder(config.DEFAULT_MODEL)
    assert embedder.dim == 384
    return embedder


@pytest.fixture
def run_scan(conn, cfg, hash_embedder) -> Callable[..., ScanReport]:
    def _run(**kwargs) -> ScanReport:
        kwargs.setdefault("embedder", hash_embedder)
        embedder = kwargs.pop("embedder")
        return scan(conn, kwargs.pop("cfg", cfg), embedder, **kwargs)

    return _run


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def memory(title: str, body: str, **meta: str) -> str:
    lines = [f"title: {title}"] + [f"{k}: {v}" for k, v in meta.items()]
    return "---\n" + "\n".join(lines) + f"\n---\n# {title}\n\n{body}\n"
