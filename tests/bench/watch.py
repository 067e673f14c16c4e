"""The live watcher on the 1,000 pages of md-hugo-docs in a git repository, with the real model.

    .venv/bin/python tests/bench/watch.py            # all three, in one run
    .venv/bin/python tests/bench/watch.py latency    # or one of: idle, latency, branch

Set-up: the corpus is copied into a fresh git repository (branch `main`), a branch `other` rewrites every file
(one paragraph appended to each), and a first full scan with embeddings is timed: that is the fresh full scan the
figures compare with. Then a `specmem watch` process is started on it, and:

- idle: CPU time (user + system, from /proc) of the idle watcher over 60 s, as a share of one core;
- latency: 50 edits (alternately in place and by writing a temporary file renamed over the original), each a new
  paragraph in a different file; the time until `search` in keyword mode finds its unique word, and until
  semantic mode, filtered to that file, answers with the chunk holding the new paragraph;
- branch: `git checkout other` (1,000 files change); the time until the index equals a fresh scan of that
  branch (keyword rows), and until every embedding is done; next to a fresh keyword scan of `other` and the fresh
  full scan, in the same run.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import CORPUS, pct, record  # noqa: E402

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.lock import watcher_info  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.indexer.store import pending_count  # noqa: E402
from specmem.server.search import Filters, search  # noqa: E402

ANIMALS = [
    "arctic tern",
    "humpback whale",
    "monarch butterfly",
    "grey wolf",
    "snow leopard",
    "emperor penguin",
    "leatherback turtle",
    "barn owl",
    "red fox",
    "honey bee",
]
PLACES = ["frozen tundra", "coral reef", "cloud forest", "salt marsh", "volcanic island"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def wait(cond: Callable[[], object], timeout: float, step: float = 0.005) -> float:
    """Seconds until cond() holds (polling every `step`); raises after `timeout`."""
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(step)
    return time.perf_counter() - start


def snapshot(conn) -> list[tuple]:
    return sorted(
        conn.execute("SELECT rel_path, title, content_hash, line_count FROM memory_index").fetchall()
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(tmp: Path, out: dict[str, float]) -> tuple[config.Config, Path]:
    repo = tmp / "repo"
    specs = repo / "specs"
    shutil.copytree(CORPUS, specs)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=b@b", "-c", "user.name=bench", "add", "-A")
    git(repo, "-c", "user.email=b@b", "-c", "user.name=bench", "commit", "-qm", "main")
    git(repo, "checkout", "-q", "-b", "other")
    pages = sorted(specs.rglob("*.md"))
    for i, page in enumerate(pages):
        with open(page, "a", encoding="utf-8") as fh:
            fh.write(f"\n\n## Branch note {i}\n\nThis page was revised on the other branch, revision {i}.\n")
    git(repo, "-c", "user.email=b@b", "-c", "user.name=bench", "commit", "-qam", "other")
    git(repo, "checkout", "-q", "main")
    out["files"] = len(pages)

    cfg = config.resolve(db=repo / ".specmem" / "index.db", roots=[specs], cwd=repo)
    conn = db.connect(cfg.db_path)
    embedder = get_embedder(cfg.model)
    embedder.encode(["warm up the model"])
    t = time.perf_counter()
    report = scan(conn, cfg, embedder)
    out["fresh_full_scan_s"] = time.perf_counter() - t
    out["fresh_full_scan_keyword_phase_s"] = report.keyword_seconds
    conn.close()
    return cfg, repo


def start_watcher(cfg: config.Config, repo: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch", "--root", str(cfg.roots[0]), "--db", str(cfg.db_path)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    wait(
        lambda: (info := watcher_info(cfg.watcher_lock_path, cfg.watcher_status_path)) and info.batches >= 1,
        120,
    )
    return proc


def bench_idle(cfg: config.Config, proc: subprocess.Popen, out: dict[str, float], seconds: float) -> None:
    # Let start-up work (the model loading in the embedding thread) finish: wait for two quiet seconds.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        start = cpu_seconds(proc.pid)
        time.sleep(2)
        if cpu_seconds(proc.pid) - start < 0.04:
            break
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    used = cpu_seconds(proc.pid) - before
    out["idle_window_s"] = seconds
    out["idle_cpu_s"] = used
    out["idle_cpu_percent_of_one_core"] = 100 * used / seconds


def found_keyword(conn, word: str, page: Path) -> bool:
    hits = search(conn, word, mode="keyword", limit=5, include_constitutional=False).results
    return any(r.path == str(page) for r in hits)


def found_semantic(conn, embedder, sentence: str, page: Path, root: Path, line: int) -> bool:
    """Semantic search for the new sentence, filtered to the edited page, answers with the chunk holding it.

    Until that chunk has its vector, the page's other chunks (whose vectors come from the cache) answer instead."""
    hits = search(
        conn,
        sentence,
        mode="semantic",
        limit=1,
        embedder=embedder,
        filters=Filters(path_glob=page.relative_to(root).as_posix()),
        include_constitutional=False,
    ).results
    return any(r.path == str(page) and r.start_line <= line <= r.end_line for r in hits)


def bench_latency(cfg: config.Config, out: dict[str, float], edits: int) -> None:
    conn = db.connect(cfg.db_path, readonly=True)
    embedder = get_embedder(cfg.model)
    embedder.encode(["warm up"])
    pages = sorted(cfg.roots[0].rglob("*.md"))[::17][:edits]
    keyword, semantic = {"inplace": [], "rename": []}, {"inplace": [], "rename": []}
    for i, page in enumerate(pages):
        word = f"zqx{i}marker"
        sentence = (
            f"Field note {word}: the {ANIMALS[i % 10]} crosses the {PLACES[(i // 10) % 5]} in season {i}, "
            "feeding at dawn and resting through the heat of the day."
        )
        text = page.read_text(encoding="utf-8") + f"\n\n## Observation {i}\n\n{sentence}\n"
        new_line = text.count("\n")  # 1-based number of the last line, the sentence
        style = "inplace" if i % 2 == 0 else "rename"
        t0 = time.perf_counter()
        if style == "inplace":
            with open(page, "r+", encoding="utf-8") as fh:
                fh.seek(0)
                fh.write(text)
                fh.truncate()
        else:
            tmp = page.with_name(f".{page.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, page)

        wait(partial(found_keyword, conn, word, page), 30)
        keyword[style].append(time.perf_counter() - t0)
        try:
            wait(
                partial(found_semantic, conn, embedder, sentence, page, cfg.roots[0], new_line), 60, step=0.02
            )
            semantic[style].append(time.perf_counter() - t0)
        except TimeoutError:
            out["semantic_not_found"] = out.get("semantic_not_found", 0) + 1
    conn.close()
    out["edits"] = len(pages)
    for kind, values in (("keyword", keyword), ("semantic", semantic)):
        both = values["inplace"] + values["rename"]
        out[f"{kind}_visible_p50_ms"] = 1000 * statistics.median(both)
        out[f"{kind}_visible_p95_ms"] = 1000 * pct(both, 95)
        for style in ("inplace", "rename"):
            out[f"{kind}_visible_{style}_p50_ms"] = 1000 * statistics.median(values[style])


def bench_branch(cfg: config.Config, repo: Path, tmp: Path, out: dict[str, float]) -> None:
    exported = tmp / "other"
    exported.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", "other"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(exported)], input=archive.stdout, check=True)
    fresh_cfg = config.resolve(db=tmp / "fresh" / "index.db", roots=[exported / "specs"], cwd=tmp)
    fresh = db.connect(fresh_cfg.db_path)
    t = time.perf_counter()
    scan(fresh, fresh_cfg, get_embedder(cfg.model), embed=False)
    out["fresh_keyword_scan_of_other_s"] = time.perf_counter() - t
    expected = snapshot(fresh)
    fresh.close()

    conn = db.connect(cfg.db_path, readonly=True)
    t0 = time.perf_counter()
    git(repo, "checkout", "-q", "other")
    out["git_checkout_s"] = time.perf_counter() - t0
    wait(lambda: snapshot(conn) == expected, 300, step=0.05)
    out["branch_switch_keyword_converged_s"] = time.perf_counter() - t0
    wait(lambda: pending_count(conn) == 0, 1800, step=0.2)
    out["branch_switch_embeddings_done_s"] = time.perf_counter() - t0
    info = watcher_info(cfg.watcher_lock_path, cfg.watcher_status_path)
    out["watcher_batches_total"] = info.batches if info else -1
    conn.close()


_shown: set[str] = set()


def show(out: dict[str, float]) -> None:
    """Print the figures not printed yet (as they come, so a later failure loses nothing)."""
    for key, value in out.items():
        if key not in _shown:
            _shown.add(key)
            print(
                f"{key:>42}: {value:.3f}" if isinstance(value, float) else f"{key:>42}: {value}", flush=True
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="*", help="idle, latency, branch (default: all three)")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    which = args.which or ["idle", "latency", "branch"]
    if set(which) - {"idle", "latency", "branch"}:
        parser.error("choose among: idle, latency, branch")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cfg, repo = setup(tmp, out)
        show(out)
        proc = start_watcher(cfg, repo)
        try:
            if "idle" in which:
                bench_idle(cfg, proc, out, args.idle_seconds)
                show(out)
            if "latency" in which:
                bench_latency(cfg, out, args.edits)
            show(out)
            if "branch" in which:
                # The latency edits are committed so the checkout is clean, as a developer's would be.
                git(repo, "-c", "user.email=b@b", "-c", "user.name=bench", "commit", "-qam", "latency edits")
                batches_before = watcher_info(cfg.watcher_lock_path, cfg.watcher_status_path).batches
                bench_branch(cfg, repo, tmp, out)
                out["branch_switch_batches"] = out.pop("watcher_batches_total") - batches_before
        finally:
            proc.terminate()
            proc.wait(30)
    show(out)
    # A run of some parts only is kept apart from the full run the README shows.
    record("watch" if len(which) == 3 else "watch-" + "-".join(which), out)


if __name__ == "__main__":
    main()
