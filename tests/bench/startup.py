"""Start-up of the `specmem` command and of the MCP server, whole processes, on md-manpages-2000 (2,000 files).

    nice .venv/bin/python tests/bench/startup.py              # a minute or two with the default 20 runs
    nice .venv/bin/python tests/bench/startup.py --against ../main/.venv/bin/specmem    # and another install

Measures (median wall and CPU, user + system, over the runs; every sample kept):
- `specmem --version` and `specmem --help`;
- one keyword search, `specmem search --mode keyword -n 10 --db DB QUERY`, on a copy of the corpus indexed
  beforehand with `specmem scan --no-embed` (the queries of peers.py, in turn);
- the MCP server over stdio: from spawning `specmem serve` to the `tools/list` answer (initialize, initialized,
  tools/list written at once), CPU read from /proc at that answer; with the hosted watcher off (SPECMEM_WATCH=0)
  and on (the default, which reconciles the index in a thread while it answers).
Each command also runs once with PYTHONPROFILEIMPORTTIME=1 and the heavy packages it imported are recorded (none
is the aim: numpy, pydantic, yaml, pathspec, watchdog, torch, sentence_transformers, transformers, onnxruntime,
rich, mcp; the server needs pydantic and mcp). qmd's figures for the same commands are in results/peers.json
(peers.py measures both side by side). With --against, every measure alternates run by run between this install
and the other one (each with its own index of the same corpus), so that the machine's load falls on both, and
the ratios (this / other) are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import SPECMEM, Run, clean_env, project_copy, run, summary  # noqa: E402

CORPUS_NAME = "md-manpages-2000"
QUERIES = [  # as in peers.py
    "bind a name to a socket",
    "change ownership of a file",
    "signal handler",
    "network interface configuration",
    "regular expression",
    "shared memory segment",
    "compress archive",
    "terminal window size",
]
HEAVY = (
    "numpy",
    "pydantic",
    "yaml",
    "pathspec",
    "watchdog",
    "torch",
    "sentence_transformers",
    "transformers",
    "onnxruntime",
    "rich",
    "mcp",
)
TARGETS = {
    "version": {"wall_s_max": 0.15},
    "help": {"wall_s_max": 0.15},
    "keyword_search_cli": {"wall_ratio_to_qmd_max": 0.5},
    "serve_to_tools_list": {"wall_s_max": 1.0},
}
TICKS = os.sysconf("SC_CLK_TCK")


def heavy_imports(cmd: list[str | Path], env: dict[str, str]) -> list[str]:
    """The heavy top-level packages a command imports (from its -X importtime log)."""
    done = subprocess.run(
        [str(c) for c in cmd],
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return sorted(names & set(HEAVY))


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def serve_once(specmem: Path, env: dict[str, str], cwd: Path) -> Run:
    """Spawn `specmem serve`, ask for tools/list, time the answer, then end the server."""
    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(specmem), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ):
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed stdout before answering tools/list")
            if json.loads(line).get("id") == 2:
                break
        wall = time.perf_counter() - started
        cpu = cpu_of(proc.pid)
        assert len(json.loads(line)["result"]["tools"]) > 10, line[:500]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Run(wall, cpu, 0.0, "", "")


def report(measure_name: str, out: dict[str, dict[str, object]]) -> None:
    for name, measures in out.items():
        m = measures[measure_name]
        print(f"{measure_name} ({name}): {m['wall_s']:.3f} s wall, {m['cpu_s']:.3f} s CPU", file=sys.stderr)  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="Runs per measure (default 20; 5 for serve).")
    parser.add_argument("--specmem", type=Path, default=SPECMEM, help="The specmem command to measure.")
    parser.add_argument("--against", type=Path, help="Another specmem command, measured alternately.")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    specmem: Path = args.specmem
    if not specmem.exists():
        sys.exit(f"{specmem} is missing: run ./scripts/setup.sh first")

    from common import corpus as data_corpus
    from common import record

    corpus = data_corpus(CORPUS_NAME)
    load_before = os.getloadavg()
    installs = {"specmem": specmem, **({"against": args.against} if args.against else {})}
    out: dict[str, dict[str, object]] = {name: {} for name in installs}
    imports: dict[str, dict[str, list[str]]] = {name: {} for name in installs}
    with tempfile.TemporaryDirectory(prefix="specmem-startup-") as tmp_name:
        tmp = Path(tmp_name)
        project = tmp / "project"
        root = project_copy(corpus, project)
        envs, dbs = {}, {}
        for name, exe in installs.items():
            dbs[name] = tmp / name / "index.db"
            envs[name] = clean_env(
                NO_COLOR="1", SPECMEM_DB=str(dbs[name]), SPECMEM_ROOTS=str(root), HF_HUB_OFFLINE="1"
            )
            run([exe, "scan", "--no-embed"], env=envs[name], cwd=project)

        def measure(measure_name: str, args_of: Callable[[str], list[list[str | Path]]]) -> None:
            cmds = {name: args_of(name) for name in installs}
            runs: dict[str, list[Run]] = {name: [] for name in installs}
            for name in installs:  # warm-up: byte code compiled, files in the page cache
                run(cmds[name][0], env=envs[name], cwd=project)
            for i in range(args.runs):
                for name in installs if i % 2 == 0 else reversed(installs):
                    runs[name].append(run(cmds[name][i % len(cmds[name])], env=envs[name], cwd=project))
            for name in installs:
                out[name][measure_name] = summary(runs[name])
                imports[name][measure_name] = heavy_imports(cmds[name][0], envs[name])
            report(measure_name, out)

        measure("version", lambda name: [[installs[name], "--version"]])
        measure("help", lambda name: [[installs[name], "--help"]])
        measure(
            "keyword_search_cli",
            lambda name: [
                [installs[name], "search", "--mode", "keyword", "-n", "10", "--db", dbs[name], q]
                for q in QUERIES
            ],
        )
        for measure_name, watch in (("serve_to_tools_list", "0"), ("serve_to_tools_list_watching", "1")):
            serve_envs = {name: {**envs[name], "SPECMEM_WATCH": watch} for name in installs}
            served: dict[str, list[Run]] = {name: [] for name in installs}
            for name, exe in installs.items():
                serve_once(exe, serve_envs[name], project)
            for i in range(max(5, args.runs // 4)):
                for name in installs if i % 2 == 0 else reversed(installs):
                    served[name].append(serve_once(installs[name], serve_envs[name], project))
            for name in installs:
                out[name][measure_name] = {
                    "wall_s": round(statistics.median(r.wall_s for r in served[name]), 4),
                    "cpu_s": round(statistics.median(r.cpu_s for r in served[name]), 4),
                    "wall_samples": [round(r.wall_s, 4) for r in served[name]],
                    "cpu_samples": [round(r.cpu_s, 4) for r in served[name]],
                }
            report(measure_name, out)

    peers = Path(__file__).resolve().parent / "results" / "peers.json"
    qmd = {}
    if peers.exists():
        measures = json.loads(peers.read_text())["figures"]["measures"]
        qmd = {
            k: measures[k]["qmd"]["wall_s"]
            for k in ("version", "help", "keyword_search_cli")
            if k in measures
        }
    figures = {
        "corpus": CORPUS_NAME,
        "runs": args.runs,
        "specmem": str(specmem),
        "against": str(args.against) if args.against else None,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "measures": out["specmem"],
        "heavy_imports": imports["specmem"],
        "qmd_wall_s_recorded_in_peers_json": qmd,
        "wall_ratio_to_recorded_qmd": {
            k: round(out["specmem"][k]["wall_s"] / v, 3)  # type: ignore[index]
            for k, v in qmd.items()
        },
        "targets": TARGETS,
    }
    if args.against:
        figures["against_measures"] = out["against"]
        figures["against_heavy_imports"] = imports["against"]
        figures["ratios_to_against"] = {
            k: {
                f"{side}_ratio": round(out["specmem"][k][f"{side}_s"] / out["against"][k][f"{side}_s"], 3)  # type: ignore[index]
                for side in ("wall", "cpu")
            }
            for k in out["specmem"]
        }
    shown = ("heavy_imports", "wall_ratio_to_recorded_qmd", "ratios_to_against")
    print(json.dumps({k: figures[k] for k in shown if k in figures}, indent=1))
    if not args.no_record:
        record("startup", figures)


if __name__ == "__main__":
    main()
