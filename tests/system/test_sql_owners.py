"""SQL has one home per side (specs/001-indexer/memory/storage-seam.md): `indexer/db.py` (connections, migrations,
the config table), `indexer/store.py` (the write side) and `server/reads.py` (the read side), and the same three
for each other engine (PostgreSQL: `indexer/pg.py`, `indexer/pg_store.py`, `server/pg_reads.py`). An SQL statement
in any other module of the package fails here: give the owner a function for it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {"indexer/db.py", "indexer/store.py", "server/reads.py"}
# PostgreSQL's, in the seam's shape: db.py's part in pg.py and pg_db.py, reads.py's in pg_reads.py and pg_keyword.py
ENGINES = {
    "indexer/pg.py",
    "indexer/pg_db.py",
    "indexer/pg_store.py",
    "server/pg_reads.py",
    "server/pg_keyword.py",
}
SQL = re.compile(
    r"\bSELECT\s|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\bPRAGMA\s"
    r"|\b(CREATE|DROP|ALTER)\s+(TEMP\s+|VIRTUAL\s+|UNIQUE\s+)?(TABLE|INDEX|VIEW)\b|\bBEGIN\s+IMMEDIATE\b"
)


def literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal (f-string parts too) that is not a docstring, with its line."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_sql_lives_only_in_its_owner_modules():
    offenders = []
    for folder in ("indexer", "server", "specmem"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in OWNERS | ENGINES:
                continue
            for line, text in literals(ast.parse(path.read_text())):
                if SQL.search(text):
                    offenders.append(f"{name}:{line}: {text[:60]!r}")
    assert offenders == []


def test_the_owners_hold_sql():
    """The check finds what it looks for (an owner module without a match would mean a broken pattern)."""
    for name in OWNERS:
        assert any(SQL.search(text) for _, text in literals(ast.parse((ROOT / name).read_text()))), name
