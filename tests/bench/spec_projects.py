"""Retrieval on real spec projects, as users see it: each project set up the way a user sets it up, every question
asked through the CLI, rules counted where they are shown.

    .venv/bin/python tests/bench/spec_projects.py --cache .cache-bench              # both sets, defaults; recorded
    .venv/bin/python tests/bench/spec_projects.py --cache .cache-bench --config whole --no-record
    .venv/bin/python tests/bench/spec_projects.py --cache .cache-bench --set dev --project lem-project__lem --misses
    .venv/bin/python tests/bench/spec_projects.py --cache .cache-bench --reuse      # only query-side code changed

The sets (shared/data, see their READMEs): `spec-projects-dev`, the assistant memory of five public repositories
with 68 judged developer questions, and `spec-projects-dev-full`, the same repositories with their other markdown
(README files, docs, changelogs) beside the memory. Each question is searched within its own project.

For every project: a fresh copy in a folder of its own, `git init`, `specmem init`, `specmem scan`, then
`specmem search QUESTION --json -n 10` run in the project for each question and mode (keyword, hybrid), with no
SPECMEM_* setting. What the search prints is what is scored: a rule shown above the results takes its place in
the ranking like any result (the first ten shown are ranked). Configurations:

- `defaults`: exactly the above (what a user gets).
- `whole`: `specmem init --root .` (the whole project is the root): every markdown file read. (Issue 22's reference
  rows also set `SPECMEM_SURFACE=0`, which then kept rules from the top; rules no longer lead a plain search.)

Figures, by set, configuration, mode and question kind (own-words, paraphrase, buried): hit@1 and hit@3 (a judged
answer file shown first / among the first three: the primary file or another that answers fully), MRR of the first
judged file, nDCG@10 with exponential gains (2^grade - 1; grade 2 = primary, 1 = another file that answers fully),
and primary@1 (the primary file itself first). `rule_first` counts questions whose first shown result is a rule
(a constitutional memory, shown on top or ranked) that is not judged relevant. Figures go to results/spec_projects.json when both sets of the default
configuration ran on every project.

Speed: embeddings are the slow part (about 11,000 chunks for the full set). With `--cache DIR` every vector computed
is kept in DIR/spec-projects/embeddings.db, keyed by model and chunk text hash as the index keys them, and put into
a new project's index before its `specmem scan`, which then embeds only chunks it has never seen; the index is the
one a plain scan builds. The projects stay in DIR/spec-projects/work, so `--reuse` skips the set-up and only asks
the questions again (for changes to the search side only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, record  # noqa: E402
from runner import SPECMEM, clean_env, git_init, run  # noqa: E402

SETS = {"dev": "spec-projects-dev", "dev-full": "spec-projects-dev-full"}
CONFIGS = ("defaults", "whole")
MODES = ("keyword", "hybrid")
KINDS = ("own-words", "paraphrase", "buried")
SHOWN = 10  # `-n 10`; rules shown on top come first, and the first ten shown are ranked


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    project: str
    kind: str


@dataclass(frozen=True)
class Answer:
    """One question's result list as shown: (document id, a rule: constitutional, on top or ranked) in order."""

    question: Question
    mode: str
    shown: tuple[tuple[str, bool], ...]


def load(name: str) -> tuple[list[Question], dict[str, dict[str, int]]]:
    folder = DATA / name
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: the benchmark data folder (SPECMEM_TEST_DATA) must hold {name}/")
    questions = [
        Question(q["_id"], q["text"], q["project"], q["kind"])
        for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())
    ]
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (folder / "qrels.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        qrels[qid][doc] = int(score)
    return questions, qrels


# -- set-up, as a user does it --------------------------------------------------------------------------------


EXTRA_ENV: dict[str, str] = {}  # --env: settings tried on every command of a run (never in a recorded run)


def env_for(config: str) -> dict[str, str]:
    extra = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return clean_env(**{**extra, **EXTRA_ENV})


def copy_project(src: Path, dest: Path) -> None:
    """The shared data is read-only: a writable copy, as a checkout is."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    for folder, _, names in os.walk(dest):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)


def seed(index: Path, cache: Path | None) -> None:
    """Put every vector the cache holds into a new index's embedding cache, as if this machine had embedded
    those texts before: the scan then embeds only what it has never seen. No cache: nothing to do."""
    if cache is None or not cache.exists():
        return
    from specmem.indexer import db

    conn = db.connect(index)
    try:
        conn.execute("ATTACH DATABASE ? AS seed", (str(cache),))
        with db.write_tx(conn):
            conn.execute(
                "INSERT OR IGNORE INTO main.embedding_cache (model, text_hash, vector, used_at) "
                "SELECT model, text_hash, vector, ? FROM seed.vectors",
                (db.now_ms(),),
            )
        conn.execute("DETACH DATABASE seed")
    finally:
        conn.close()


def harvest(index: Path, cache: Path | None) -> None:
    """Keep the vectors of this index's chunks in the cache for the next set-up."""
    if cache is None:
        return
    import apsw

    out = apsw.Connection(str(cache))
    try:
        out.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, text_hash TEXT NOT NULL, vector BLOB NOT NULL, "
            "PRIMARY KEY (model, text_hash)) WITHOUT ROWID"
        )
        out.execute("ATTACH DATABASE ? AS idx", (str(index),))
        with out:
            out.execute(
                "INSERT OR IGNORE INTO vectors SELECT e.model, e.text_hash, e.vector FROM idx.embedding_cache e "
                "WHERE e.text_hash IN (SELECT text_hash FROM idx.memory_chunks)"
            )
    finally:
        out.close()


def set_up(src: Path, project: Path, config: str, cache: Path | None) -> dict[str, Any]:
    """`git init`, `specmem init` and `specmem scan` in a fresh copy of `src`; what init and scan said."""
    copy_project(src, project)
    git_init(project)
    env = env_for(config)
    init = run([SPECMEM, "init", *(["--root", "."] if config == "whole" else [])], env=env, cwd=project)
    index = project / ".specmem" / "index.db"
    seed(index, cache)
    started = time.perf_counter()
    scan = run([SPECMEM, "scan", "--json"], env=env, cwd=project, timeout=6 * 3600)
    harvest(index, cache)
    report = json.loads(scan.stdout)
    return {
        "init": init.stdout,
        "files": report.get("files_seen"),
        "embedded_chunks": report.get("embedded_chunks"),
        "reused_chunks": report.get("reused_chunks"),
        "scan_s": round(time.perf_counter() - started, 1),
    }


def ask(project: Path, project_name: str, question: Question, mode: str, config: str) -> Answer:
    done = run(
        [SPECMEM, "search", question.text, "--json", "-n", str(SHOWN), "--mode", mode],
        env=env_for(config),
        cwd=project,
    )
    return answer_of(project, project_name, question, mode, json.loads(done.stdout))


def ask_in_process(
    project: Path, project_name: str, questions: list[Question], modes: list[str], config: str
) -> list[Answer]:
    """The library call `specmem search` makes, in this process: the same results without a process per
    question (for iteration; recorded figures come from the command)."""
    from specmem.api import Memories
    from specmem.indexer import config as configmod

    cfg = configmod.resolve(env=env_for(config), cwd=project)
    with Memories(cfg) as mem:
        return [
            answer_of(project, project_name, q, mode, mem.search(q.text, limit=SHOWN, mode=mode).to_dict())  # type: ignore[arg-type]
            for q in questions
            for mode in modes
        ]


def answer_of(
    project: Path, project_name: str, question: Question, mode: str, response: dict[str, Any]
) -> Answer:
    if response["mode_used"] != mode:
        raise SystemExit(
            f"{question.id}: asked for {mode}, answered in {response['mode_used']}: {response['notes']}"
        )
    top = os.path.realpath(project)
    shown = tuple(
        (
            f"{project_name}/{Path(os.path.relpath(os.path.realpath(r['path']), top)).as_posix()}",
            r["always_surfaced"] or r["tier"] == "constitutional",
        )
        for r in response["results"]
    )
    return Answer(question, mode, shown)


# -- scoring --------------------------------------------------------------------------------------------------


def ndcg(ranked: list[str], gains: dict[str, int], k: int = SHOWN) -> float:
    """nDCG@k with exponential gains (2^grade - 1): the primary file counts three times another answer."""
    dcg = sum((2 ** gains.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    return dcg / sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))


def answer_rank(answer: Answer, gains: dict[str, int], primary: bool = False) -> int | None:
    """1-based rank of the first judged answer file (the primary one with `primary`) among the first ten shown."""
    for i, (doc, _) in enumerate(answer.shown[:SHOWN]):
        if gains.get(doc, 0) >= (2 if primary else 1):
            return i + 1
    return None


def figures(answers: Iterable[Answer], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """hit@1, hit@3 and MRR of the first judged answer file, nDCG@10, the primary file's hit@1, rule_first."""
    answers = list(answers)
    ranks = [answer_rank(a, qrels[a.question.id]) for a in answers]
    n = len(answers)
    rule_first = sum(
        1 for a in answers if a.shown and a.shown[0][1] and qrels[a.question.id].get(a.shown[0][0], 0) == 0
    )
    return {
        "hit@1": sum(r == 1 for r in ranks) / n,
        "hit@3": sum(r is not None and r <= 3 for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
        "ndcg@10": sum(ndcg([d for d, _ in a.shown], qrels[a.question.id]) for a in answers) / n,
        "primary@1": sum(answer_rank(a, qrels[a.question.id], primary=True) == 1 for a in answers) / n,
        "rule_first": rule_first,
        "questions": n,
    }


def summarise(answers: list[Answer], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """{mode: {"all" | "kind K": figures}, "ranks": {mode: {question: rank}}, "first": {mode: {question: doc}}}."""
    out: dict[str, Any] = {}
    for mode in MODES:
        mine = [a for a in answers if a.mode == mode]
        if not mine:
            continue
        out[mode] = {"all": figures(mine, qrels)}
        for kind in KINDS:
            of_kind = [a for a in mine if a.question.kind == kind]
            if of_kind:
                out[mode][f"kind {kind}"] = figures(of_kind, qrels)
    out["ranks"] = {
        mode: {a.question.id: answer_rank(a, qrels[a.question.id]) for a in answers if a.mode == mode}
        for mode in MODES
    }
    return out


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| set | configuration | mode | questions | hit@1 | hit@3 | MRR | nDCG@10 | rule first |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for set_name, configs in results.items():
        for config, modes in configs.items():
            for mode in MODES:
                for group, f in modes.get(mode, {}).items():
                    label = mode if group == "all" else f"{mode}, {group.removeprefix('kind ')}"
                    lines.append(
                        f"| {set_name} | {config} | {label} | {f['questions']} | {f['hit@1']:.3f} | {f['hit@3']:.3f} | "
                        f"{f['mrr']:.3f} | {f['ndcg@10']:.3f} | {f['rule_first']} |"
                    )
    return lines


def misses(answers: list[Answer], qrels: dict[str, dict[str, int]]) -> list[str]:
    lines = []
    for a in answers:
        gains = qrels[a.question.id]
        rank = answer_rank(a, gains)
        if rank == 1:
            continue
        primary = next(d for d, g in gains.items() if g == 2)
        first = [
            f"{'★' if rule else ''}{doc.split('/', 1)[1]}{'(1)' if gains.get(doc) == 1 else ''}"
            for doc, rule in a.shown[:3]
        ]
        lines.append(
            f"{a.mode:<7} {a.question.id:<10} {a.question.kind:<10} rank {rank or '-':>2}  want {primary.split('/', 1)[1]}"
            f"\n        {a.question.text}\n        shown: {', '.join(first)}"
        )
    return lines


# -- the run --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--set", dest="sets", choices=SETS, action="append", help="Only this set; repeatable."
    )
    parser.add_argument(
        "--config", dest="configs", choices=CONFIGS, action="append", help="Default: defaults."
    )
    parser.add_argument("--mode", dest="modes", choices=MODES, action="append", help="Default: both.")
    parser.add_argument(
        "--project", action="append", help="Only this project (corpus folder name); repeatable."
    )
    parser.add_argument("--cache", type=Path, help="Keep vectors and the projects here between runs.")
    parser.add_argument(
        "--reuse", action="store_true", help="Ask again in the projects set up by an earlier run."
    )
    parser.add_argument("--jobs", type=int, default=2, help="Searches run at once (default 2).")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="Ask through the CLI's library call in this process (iteration).",
    )
    parser.add_argument(
        "--misses", action="store_true", help="List every question whose answer is not first."
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A setting for every command; repeatable.",
    )
    parser.add_argument("--no-record", action="store_true", help="Do not write results/spec_projects.json.")
    parser.add_argument(
        "--json", type=Path, help="Also write this run's figures and every answer to this file."
    )
    args = parser.parse_args()
    sets = args.sets or list(SETS)
    configs = args.configs or ["defaults"]
    modes = args.modes or list(MODES)
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)
    if args.reuse and not args.cache:
        parser.error("--reuse needs --cache (the projects of the earlier run are kept there)")

    results: dict[str, dict[str, Any]] = {}
    setups: dict[str, Any] = {}
    dump: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="specmem-spec-projects-") as tmp:
        base = (args.cache.resolve() / "spec-projects") if args.cache else Path(tmp)
        vectors = base / "embeddings.db" if args.cache else None
        base.mkdir(parents=True, exist_ok=True)
        for set_key in sets:
            name = SETS[set_key]
            questions, qrels = load(name)
            projects = sorted({q.project for q in questions if not args.project or q.project in args.project})
            for config in configs:
                answers: list[Answer] = []
                for project_name in projects:
                    project = base / "work" / set_key / config / project_name
                    if args.reuse and (project / ".specmem" / "index.db").exists():
                        note = "reused"
                    else:
                        setup = set_up(DATA / name / "corpus" / project_name, project, config, vectors)
                        setups[f"{set_key}/{config}/{project_name}"] = {
                            k: v for k, v in setup.items() if k != "init"
                        }
                        note = f"{setup['files']} files, {setup['embedded_chunks']} chunks embedded, {setup['scan_s']} s"
                    print(f"[{set_key} {config}] {project_name}: {note}", file=sys.stderr)
                    mine = [q for q in questions if q.project == project_name]
                    if args.in_process:
                        answers += ask_in_process(project, project_name, mine, modes, config)
                        continue
                    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                        answers += pool.map(
                            lambda qm, p=project, pn=project_name, c=config: ask(p, pn, qm[0], qm[1], c),
                            [(q, m) for q in mine for m in modes],
                        )
                results.setdefault(set_key, {})[config] = summarise(answers, qrels)
                if args.misses:
                    print(f"\n## misses: {set_key}, {config}")
                    print("\n".join(misses(answers, qrels)))
                dump += [
                    {
                        "set": set_key,
                        "config": config,
                        "mode": a.mode,
                        "question": a.question.id,
                        "shown": a.shown,
                    }
                    for a in answers
                ]

    print("\n".join(table(results)))
    if args.json:
        args.json.write_text(json.dumps({"figures": results, "answers": dump}, indent=1) + "\n")
    complete = (
        not args.project
        and not args.in_process
        and not args.env
        and set(sets) == set(SETS)
        and "defaults" in configs
        and set(modes) == set(MODES)
    )
    if complete and not args.no_record:
        record("spec_projects", {"sets": results, "setup": setups, "reused": args.reuse})
    first = Counter(d["shown"][0][0] for d in dump if d["shown"] and d["shown"][0][1])
    if first:
        print(
            "rules shown first:", ", ".join(f"{doc} ×{n}" for doc, n in first.most_common(8)), file=sys.stderr
        )


if __name__ == "__main__":
    main()
