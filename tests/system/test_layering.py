"""The layers (README, Development): `indexer/` is the write side and the shared base, `server/*.py` the read side,
`specmem/api.py` the one object over both, and the edges (`specmem/cli.py`, `server/mcp/`) call that object."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_indexer_never_imports_server():
    offenders = []
    for path in (ROOT / "indexer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith(("server", "specmem.server")) or n == "specmem"
            ]
    assert offenders == []


def test_no_heavy_imports_at_module_level_in_indexer():
    """torch and sentence-transformers load lazily, never on import."""
    for path in (ROOT / "indexer").rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        mods = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(m.split(".")[0] in {"torch", "sentence_transformers", "transformers"} for m in mods), (
            path
        )


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_nothing_below_the_api_imports_it_or_the_edges():
    below = [
        *(ROOT / "indexer").rglob("*.py"),
        *(ROOT / "server").glob("*.py"),
        ROOT / "specmem" / "results.py",
    ]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in below
        for name in imports(path)
        if name.startswith(("specmem.api", "specmem.cli", "specmem.server.mcp"))
    ]
    assert offenders == []


def test_the_edges_call_the_api_not_the_database():
    """The CLI and the MCP edge reach the index through `Memories` only: no connection, no SQL of their own."""
    edges = [ROOT / "specmem" / "cli.py", *(ROOT / "server" / "mcp").glob("*.py")]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in edges
        for name in imports(path)
        if name == "apsw"
        or name.startswith("apsw.")
        or name in ("specmem.indexer.db", "specmem.indexer.store")
    ]
    assert offenders == []
