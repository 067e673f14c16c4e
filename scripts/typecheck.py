"""Type-check the package as it is installed: `specmem` with `indexer/` as `specmem.indexer` and `server/` as
`specmem.server`. mypy knows nothing of setuptools' package-dir, so this builds that layout from symlinks in a
temporary folder, runs mypy on it and reports paths as they are in the repository.

    .venv/bin/python scripts/typecheck.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="specmem-typecheck-") as tmp:
        package = Path(tmp) / "specmem"
        package.mkdir()
        for item in (ROOT / "specmem").iterdir():
            if item.name != "__pycache__":
                (package / item.name).symlink_to(item)
        (package / "indexer").symlink_to(ROOT / "indexer")
        (package / "server").symlink_to(ROOT / "server")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                "-p",
                "specmem",
            ],
            cwd=tmp,
            env={**os.environ, "MYPYPATH": tmp},
            capture_output=True,
            text=True,
        )
        out = (
            (done.stdout + done.stderr)
            .replace("specmem/indexer/", "indexer/")
            .replace("specmem/server/", "server/")
        )
        print(out, end="")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
