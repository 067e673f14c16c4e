"""The similarity threshold of duplicate-aware writes, measured on paraphrase and non-paraphrase pairs.

Each pair is a new memory and an existing memory of the same spec folder, compared by the code `memory_write`
runs (`server.duplicates.similarities`: the new memory's title and content as one embedding against the
existing memory's best chunk, all-MiniLM-L6-v2).

- specs: tests/bench/data/paraphrases.json rewrites each of this project's 31 memories (other title, other words,
  same decision). Paraphrase: the rewrite and its original. Non-paraphrase: the rewrite and every other memory
  of the same spec folder.
- anthropic: the 232 sections of qa-anthropic-docs with their written summaries (original/
  anthropic_summary_indexed_docs.json). Paraphrase: a summary (titled by its first words) and its section.
  Non-paraphrase: the summary and the other sections of the same page (same topic, other content).
- locomo: the 128 LoCoMo development sessions, one spec folder per conversation (same two speakers). Non-paraphrase
  only: the first 12 turns of a session and every other session of its conversation.

The threshold chosen is the lowest one at which at most 5% of the writes of a non-duplicate (the new memories of
the non-paraphrase pairs) would be warned about some memory: warnings must stay rare enough to be read. Recall
(paraphrases caught) at that threshold is reported with it.

    .venv/bin/python tests/bench/duplicates.py
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import specmem  # noqa: E402
from specmem.server.duplicates import similarities  # noqa: E402
from tests.bench.common import DATA, ROOT, record  # noqa: E402

FALSE_WARNINGS = 0.05
TURNS = 12


def yaml_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def memory_file(path: Path, title: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {yaml_text(title)}\n---\n{body.strip()}\n", encoding="utf-8")


def first_words(text: str, n: int = 8) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return " ".join(sentence.split()[:n]).rstrip(".,;:")


def build(root: Path) -> list[tuple[str, str, str, str, set[str]]]:
    """Write the existing memories under `root`; return the new memories as
    (set, spec folder, title, content, {relative paths of its paraphrases}) and, through the folder, its others."""
    new: list[tuple[str, str, str, str, set[str]]] = []

    specs = ROOT / "specs"
    for item in json.loads((Path(__file__).parent / "data" / "paraphrases.json").read_text()):
        original = specs / item["of"]
        folder = "specs-" + (original.parts[-3] if original.parent.name == "memory" else original.parent.name)
        target = root / folder / "memory" / original.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(original.read_bytes())
        new.append(("specs", folder, item["title"], item["content"], {target.name}))
    # Every memory of a spec folder is present, so each rewrite meets all of its neighbours.
    for original in sorted(specs.glob("*/memory/*.md")) + sorted(specs.glob("constitutional/*.md")):
        folder = "specs-" + (original.parts[-3] if original.parent.name == "memory" else original.parent.name)
        target = root / folder / "memory" / original.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(original.read_bytes())

    sections = json.loads(
        (DATA / "qa-anthropic-docs" / "original" / "anthropic_summary_indexed_docs.json").read_text()
    )
    pages: dict[str, int] = {}
    for n, section in enumerate(sections):
        page = section["chunk_link"].split("#")[0]
        folder = f"anthropic-{pages.setdefault(page, len(pages)):03d}"
        name = f"section-{n:03d}.md"
        memory_file(root / folder / "memory" / name, section["chunk_heading"], section["text"])
        new.append(("anthropic", folder, first_words(section["summary"]), section["summary"], {name}))

    for conversation in sorted((DATA / "locomo-dev" / "sessions").iterdir()):
        folder = f"locomo-{conversation.name}"
        for session in sorted(conversation.glob("*.md")):
            target = root / folder / "memory" / session.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(session.read_bytes())
            turns = [line for line in session.read_text().splitlines() if line.startswith("- **")][:TURNS]
            title = f"{conversation.name} {session.stem.replace('_', ' ')} notes"
            # Its own session is excluded below (the pair set marks it as neither).
            new.append(("locomo", folder, title, "\n".join(turns), {f"!{session.name}"}))
    return new


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "specs"
        new = build(root)
        print(f"{len(new)} new memories; indexing with the real model…", file=sys.stderr)
        with specmem.open(root, db=Path(tmp) / "index.db") as mem, mem.writer() as conn:
            mem.scan()
            names = {mid: Path(path).name for mid, path in conn.execute("SELECT id, path FROM memory_index")}
            pairs: dict[str, list[tuple[float, bool]]] = defaultdict(list)
            worst_negative: dict[str, list[float]] = defaultdict(list)
            for corpus, folder, title, content, same in new:
                near = similarities(conn, mem.embedder, f"{title}\n{content}", folder)
                negatives = []
                for mid, score in near.items():
                    name = names[mid]
                    if f"!{name}" in same:  # a LoCoMo session's own file: neither kind of pair
                        continue
                    pairs[corpus].append((score, name in same))
                    if name not in same:
                        negatives.append(score)
                if negatives:
                    worst_negative[corpus].append(max(negatives))

    every = [p for values in pairs.values() for p in values]
    worst = [w for values in worst_negative.values() for w in values]
    thresholds = [round(0.5 + 0.01 * i, 2) for i in range(50)]

    def at(t: float, chosen: list[tuple[float, bool]], writes: list[float]) -> dict[str, float]:
        tp = sum(1 for s, p in chosen if p and s >= t)
        fp = sum(1 for s, p in chosen if not p and s >= t)
        positives = sum(1 for _, p in chosen if p)
        return {
            "recall": round(tp / positives, 4) if positives else None,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "false_pair_rate": round(fp / max(1, sum(1 for _, p in chosen if not p)), 4),
            "false_warning_rate": round(sum(1 for w in writes if w >= t) / max(1, len(writes)), 4),
        }

    chosen = next(t for t in thresholds if at(t, every, worst)["false_warning_rate"] <= FALSE_WARNINGS)
    table = {str(t): at(t, every, worst) for t in thresholds}
    per_corpus = {c: at(chosen, pairs[c], worst_negative[c]) for c in sorted(pairs)}
    counts = {
        c: {"paraphrase": sum(1 for _, p in v if p), "non_paraphrase": sum(1 for _, p in v if not p)}
        for c, v in sorted(pairs.items())
    }

    def quantiles(values: list[float]) -> list[float]:
        values = sorted(values)
        return [round(values[int(q * (len(values) - 1))], 3) for q in (0.05, 0.25, 0.5, 0.75, 0.95)]

    figures = {
        "rule": f"lowest threshold with at most {FALSE_WARNINGS:.0%} of non-duplicate writes warned",
        "threshold": chosen,
        "at_threshold": table[str(chosen)],
        "per_corpus_at_threshold": per_corpus,
        "pairs": counts,
        "paraphrase_similarity_quantiles_5_25_50_75_95": quantiles([s for s, p in every if p]),
        "non_paraphrase_similarity_quantiles_5_25_50_75_95": quantiles([s for s, p in every if not p]),
        "by_threshold": table,
        "by_threshold_per_corpus": {
            c: {str(t): at(t, pairs[c], worst_negative[c]) for t in thresholds[20:46]} for c in sorted(pairs)
        },
    }
    record("duplicates", figures)
    print(json.dumps({k: v for k, v in figures.items() if not k.startswith("by_threshold")}, indent=2))
    for t in thresholds[20:46]:
        print(t, table[str(t)])


if __name__ == "__main__":
    main()
