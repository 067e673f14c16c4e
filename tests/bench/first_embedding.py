"""The wait for a long-running process's first embedding, and its memory, against an earlier commit's.

    nice .venv/bin/python tests/bench/first_embedding.py                # this tree against main, 2 rounds
    nice .venv/bin/python tests/bench/first_embedding.py --base 612e528 --rounds 3

Set-up: md-spec-kit's 142 files copied into a project and indexed once with embeddings. Then, each round, for this
tree's code and the base commit's (extracted and imported ahead of the editable install, as rescan_ab.py does), in
turns, on a fresh copy of that project and its up-to-date index:

- `specmem watch -v`: from its `ready` line (the watcher has reconciled the files) a new memory file is written;
  the time until its `embedded` line; then the process's RSS and peak RSS;
- `specmem serve` over stdio hosting the watcher: once it answers `initialize`, a new memory file is written; the
  time until the index holds that file's vectors (polled read-only); then 20 hybrid searches, 5 s idle, and the
  process's RSS and peak RSS.

The issue's targets: first embedding ≤ 5 s after the process is ready, RSS ≤ 250 MB for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import corpus, record  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from runner import extract  # noqa: E402

from specmem.indexer import config, db  # noqa: E402

MODEL = config.DEFAULT_MODEL
QUERIES = ["how are tasks broken down", "constitution principles", "plan template", "clarify the spec"] * 5
NEW = "---\ntitle: Retention\n---\n# Retention\n\nNightly backups are kept for thirty days in the cold bucket.\n"
TARGETS = {"first_embedding_s_max": 5.0, "rss_mb_max": 250.0}


def status_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024,
    }


def embedded(db_path: Path, name: str) -> bool:
    conn = db.connect(db_path, readonly=True)
    try:
        row = db.one(conn, "SELECT embedding_status FROM memory_index WHERE rel_path = ?", (name,))
        return row is not None and row.embedding_status == "done"
    finally:
        conn.close()


def watch_round(project: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch", "-v"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=project,
    )
    try:
        assert proc.stderr is not None
        while "ready" not in (line := proc.stderr.readline()):
            assert line, "the watcher ended before it was ready"
        start = time.perf_counter()
        (project / "specs" / "retention.md").write_text(NEW)
        while "embedded" not in (line := proc.stderr.readline()):
            assert line, "the watcher ended before it embedded"
        out = {"first_embedding_s": time.perf_counter() - start} | status_mb(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=120)
    return out


def server_round(project: Path, env: dict[str, str]) -> dict[str, float]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "specmem", "serve"], env=env, cwd=project
    )
    out: dict[str, float] = {}

    async def scenario() -> None:
        async with Client(params) as client:
            start = time.perf_counter()
            (project / "specs" / "retention.md").write_text(NEW)
            while not embedded(Path(env["SPECMEM_DB"]), "retention.md"):
                await anyio.sleep(0.1)
            out["first_embedding_s"] = time.perf_counter() - start
            while (await client.call_tool("memory_health", {})).structured_content[
                "model_state"
            ] == "loading":
                await anyio.sleep(0.2)
            for q in QUERIES:
                await client.call_tool("memory_search", {"query": q, "limit": 10, "mode": "hybrid"})
            await anyio.sleep(5)
            pid = next(
                int(p.parent.name)
                for p in Path("/proc").glob("[0-9]*/cmdline")
                if b"serve" in p.read_bytes()
                and f"PPid:\t{os.getpid()}\n" in (p.parent / "status").read_text()
            )
            out.update(status_mb(pid))

    anyio.run(scenario)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of each (default 2).")
    parser.add_argument("--base", default="main", help="The commit to compare with (default main).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    samples: dict[str, list[dict[str, float]]] = {
        f"{kind}_{v}": [] for kind in ("watch", "server") for v in ("this", "base")
    }
    with tempfile.TemporaryDirectory(prefix="specmem-first-embedding-") as name:
        tmp = Path(name)
        variants = {"this": {}, "base": {"PYTHONPATH": str(extract(args.base, tmp / "base"))}}
        # The project is indexed in place once and kept as a pristine copy (mtimes preserved): every round
        # starts from an index that is up to date with its files, as a process started on a user's project does.
        project = tmp / "project"
        shutil.copytree(corpus("md-spec-kit"), project / "specs")
        base_env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "SPECMEM_MODEL": MODEL,
            "SPECMEM_CACHE_DIR": str(tmp / "cache"),
            "XDG_DATA_HOME": str(tmp / "data"),
            "SPECMEM_DB": str(project / "index.db"),
            "SPECMEM_ROOTS": str(project / "specs"),
        }
        subprocess.run(
            [sys.executable, "-m", "specmem", "scan"],
            check=True,
            env=base_env,
            capture_output=True,
            cwd=project,
        )
        pristine = tmp / "pristine"
        shutil.copytree(project, pristine)
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for kind, fn in (("watch", watch_round), ("server", server_round)):
                for variant in order:
                    shutil.rmtree(project)
                    shutil.copytree(pristine, project)
                    env = base_env | variants[variant]
                    samples[f"{kind}_{variant}"].append(fn(project, env))
                    print(
                        f"round {r + 1} {kind} {variant}: {samples[f'{kind}_{variant}'][-1]}", file=sys.stderr
                    )
    figures: dict[str, object] = {
        "corpus": "md-spec-kit",
        "base": subprocess.run(
            ["git", "rev-parse", "--short", args.base], capture_output=True, text=True
        ).stdout.strip(),
        "rounds": args.rounds,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "targets": TARGETS,
    }
    for key, runs in samples.items():
        figures[key] = {field: round(statistics.median(s[field] for s in runs), 2) for field in runs[0]} | {
            "samples": runs
        }
        print(key, {k: v for k, v in figures[key].items() if k != "samples"})  # type: ignore[union-attr]
    if not args.no_record:
        record("first_embedding", figures)


if __name__ == "__main__":
    main()
