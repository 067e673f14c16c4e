"""The wheel installs one import package, `specmem`, and nothing else at the top of site-packages."""

from __future__ import annotations

import configparser
import os
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
    (wheel,) = tmp_path.glob("specmem-*.whl")
    assert wheel.name.startswith(f"specmem-{version}-")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"specmem-{version}.dist-info/"
    strays = [n for n in names if not n.startswith(("specmem/", dist_info))]
    assert strays == [], strays  # no top-level server/ or indexer/
    assert "specmem/py.typed" in names
    assert {"specmem/indexer/__init__.py", "specmem/server/__init__.py", "specmem/__main__.py"} <= set(names)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{dist_info}entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == {"specmem": "specmem.cli:main"}
