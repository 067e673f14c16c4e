"""Every install path of the README, tried from a clean environment: pip into a new venv, pipx, `uv tool install`,
and the one-line `uvx` start of the MCP server. Each installs the wheel built from this checkout (the same files
PyPI would serve as specmem-mcp), so the dependencies come from the network: marked `network`.

torch is installed as its CPU build, as the README says. Its command names PyTorch's CPU index; a machine that
cannot reach that index but has a CPU wheel of torch in a folder pip is configured with (`find-links`, as CI's
machine has) gets the README's other form, naming that folder and pinning the wheel's version. `torch_cpu()`
decides, and each test says which form it ran. uv and pipx come with the test extras (pyproject.toml)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.network
PYTORCH_CPU = "https://download.pytorch.org/whl/cpu"
INSTALL_TIMEOUT = 1200  # seconds: a cold cache downloads torch and its neighbours
CUDA = ("nvidia", "triton", "cuda")
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built offline from a copy (as tests/system/test_packaging.py does)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), "."],
        cwd=source,
        env={**os.environ, "PIP_NO_INDEX": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = folder.glob("specmem_mcp-*.whl")
    return built


def reachable(url: str) -> bool:
    host = url.split("/")[2]
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


def local_cpu_wheel() -> Path | None:
    """A CPU wheel of torch in a folder pip is configured to look in (pip config find-links), if any."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            for folder in value.strip("'\"").split():
                found = sorted(Path(folder.removeprefix("file://")).glob("torch-*+cpu-*.whl"))
                if found:
                    return found[-1]
    return None


def torch_cpu() -> tuple[str, Path | None]:
    """('index', None): PyTorch's CPU index is reachable; ('wheel', path): a local CPU wheel instead."""
    if reachable(PYTORCH_CPU):
        return "index", None
    local = local_cpu_wheel()
    if local is None:
        pytest.skip(f"neither {PYTORCH_CPU} nor a local CPU wheel of torch (pip find-links) is available")
    return "wheel", local


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' brings it)")
    return found


def clean_env(home: Path) -> dict[str, str]:
    """A user with nothing installed: its own home, tool folders and PATH (the system's, not this venv's)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SPECMEM_", "VIRTUAL_ENV", "UV_", "PIPX_"))
    }
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        PIPX_HOME=str(home / "pipx"),
        PIPX_BIN_DIR=str(bin_dir),
        PIPX_MAN_DIR=str(home / "man"),
        UV_TOOL_DIR=str(home / "uv-tools"),
        UV_TOOL_BIN_DIR=str(bin_dir),
        UV_PYTHON=str(base_python()),
        UV_CACHE_DIR=os.environ.get(
            "UV_CACHE_DIR", str(Path.home() / ".cache" / "uv")
        ),  # a shared cache: speed
        PIP_RETRIES="0",
        PIP_TIMEOUT="20",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def base_python() -> Path:
    """The Python this venv was made from (a clean install starts from the system's Python, not a venv)."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return candidate if candidate.exists() else Path(sys.executable)


def run(command: list[str], env: dict[str, str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, **kwargs
    )
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done


def works(specmem: list[str], env: dict[str, str], site: Path | None, tmp_path: Path) -> None:
    """The installed command runs, without CUDA, and its MCP server answers `initialize`."""
    assert run([*specmem, "--version"], env, tmp_path).stdout.startswith("specmem, version ")
    if site is not None:
        names = [p.name.lower() for p in site.iterdir()]
        assert not [n for n in names if n.startswith(CUDA)], "a CUDA package came with torch"
        assert any(n.startswith("torch-") and "+cpu" in n for n in names), "torch is not the CPU build"
    project = tmp_path / "fresh"  # (tmp_path/project is the autouse fixture's)
    project.mkdir()
    run(["git", "init", "-q"], env, project)
    run([*specmem, "init"], env, project)
    served = run(
        [*specmem, "serve"],
        {**env, "SPECMEM_WATCH": "0"},
        project,
        input=json.dumps(INIT) + "\n",
    )
    reply = json.loads(served.stdout.splitlines()[0])
    assert reply["result"]["serverInfo"]["name"] == "specmem", reply


def site_packages(prefix: Path) -> Path:
    (site,) = prefix.glob("lib/python3*/site-packages")
    return site


def test_pip_into_a_venv(wheel, tmp_path):
    """README: python3 -m venv DIR; DIR/bin/pip install torch --extra-index-url PYTORCH_CPU; DIR/bin/pip install
    specmem-mcp."""
    form, local = torch_cpu()
    env = clean_env(tmp_path / "home")
    venv = tmp_path / "venv"
    run([str(base_python()), "-m", "venv", str(venv)], env, tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if form == "index":
        run([*pip, "torch", "--extra-index-url", PYTORCH_CPU], env, tmp_path)
    else:
        assert local is not None
        run([*pip, str(local)], env, tmp_path)
    run([*pip, str(wheel)], env, tmp_path)
    works([str(venv / "bin" / "specmem")], env, site_packages(venv), tmp_path)


def test_pipx(wheel, tmp_path):
    """README: pipx install --pip-args="--extra-index-url PYTORCH_CPU" specmem-mcp (pipx's default backend)."""
    form, local = torch_cpu()
    pipx = tool("pipx")
    env = clean_env(tmp_path / "home")
    if form == "index":
        command = [pipx, "install", f"--pip-args=--extra-index-url {PYTORCH_CPU}", str(wheel)]
    else:
        assert local is not None
        command = [
            pipx,
            "install",
            f"--pip-args=--find-links {local.parent}",
            "--preinstall",
            torch_pin(local),
            str(wheel),
        ]
    run(command, {**env, "PATH": f"{Path(uv_path()).parent}{os.pathsep}{env['PATH']}"}, tmp_path)
    venv = Path(env["PIPX_HOME"]) / "venvs" / "specmem-mcp"
    works(["specmem"], env, site_packages(venv), tmp_path)


def test_uv_tool_install(wheel, tmp_path):
    """README: uv tool install --torch-backend cpu specmem-mcp."""
    form, local = torch_cpu()
    uv = uv_path()
    env = clean_env(tmp_path / "home")
    run([uv, "tool", "install", *uv_torch(form, local), str(wheel)], env, tmp_path)
    venv = Path(env["UV_TOOL_DIR"]) / "specmem-mcp"
    works(["specmem"], env, site_packages(venv), tmp_path)


def test_uvx_starts_the_server_in_one_line(wheel, tmp_path):
    """README: uvx --torch-backend cpu --from specmem-mcp specmem serve (what an MCP config can run)."""
    form, local = torch_cpu()
    env = clean_env(tmp_path / "home")
    project = tmp_path / "p"
    (project / "specs").mkdir(parents=True)
    run(["git", "init", "-q"], env, project)
    served = run(
        [tool("uvx"), *uv_torch(form, local), "--from", str(wheel), "specmem", "serve"],
        {**env, "SPECMEM_WATCH": "0"},
        project,
        input=json.dumps(INIT) + "\n",
    )
    reply = json.loads(served.stdout.splitlines()[0])
    assert reply["result"]["serverInfo"]["name"] == "specmem", reply


def uv_path() -> str:
    return tool("uv")


def torch_pin(local: Path) -> str:
    return f"torch=={local.name.split('-')[1]}"


def uv_torch(form: str, local: Path | None) -> list[str]:
    """uv's options for the CPU build of torch: PyTorch's index, or the local wheel's folder and version."""
    if form == "index":
        return ["--torch-backend", "cpu"]
    assert local is not None
    return ["--find-links", str(local.parent), "--with", torch_pin(local)]
