"""What a change to indexer/chunk.py costs an existing index: how many chunks get a new text hash (and so are
embedded again on the next scan; the others come back from the embedding cache), and how many heading-only chunks
each version makes.

    .venv/bin/python tests/bench/chunk_upgrade.py --before main

Chunks the files of md-hugo-docs, qa-anthropic-docs, locomo-dev and the abstracts of Cranfield and SciFact (written
as `# title` + text, as tests/bench/retrieval.py indexes them) with `indexer/chunk.py` at git revision BEFORE and
with the working tree's, counting tokens with the real model's tokenizer (the model itself is not loaded).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import DATA, ROOT, record  # noqa: E402

from specmem.indexer import chunk as after  # noqa: E402
from specmem.indexer.config import DEFAULT_MODEL  # noqa: E402
from specmem.indexer.embed import SentenceTransformerEmbedder  # noqa: E402
from specmem.indexer.parse import HEADING_RE, parse  # noqa: E402

FOLDERS = {
    "md-hugo-docs": DATA / "md-hugo-docs",
    "qa-anthropic-docs": DATA / "qa-anthropic-docs" / "pages",
    "locomo-dev": DATA / "locomo-dev" / "sessions",
}
ABSTRACTS = ("cranfield", "scifact-train")


def documents(name: str) -> Iterator[tuple[str, bytes]]:
    if name in ABSTRACTS:
        for line in (DATA / name / "corpus.jsonl").read_text().splitlines():
            doc = json.loads(line)
            title = doc["title"].strip().rstrip(" .") or f"doc {doc['_id']}"
            yield f"{doc['_id']}.md", f"# {title}\n\n{doc['text'].strip()}\n".encode()
        return
    for path in sorted(FOLDERS[name].rglob("*.md")):
        yield str(path.relative_to(FOLDERS[name])), path.read_bytes()


def heading_only(text: str) -> bool:
    return all(not line.strip() or HEADING_RE.match(line) for line in text.split("\n"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="main", help="Git revision of the 'before' indexer/chunk.py.")
    args = parser.parse_args()
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{args.before}:indexer/chunk.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunk_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("chunk_before", path)
        before = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = before  # type: ignore[union-attr]  # dataclasses look their module up
        spec.loader.exec_module(before)  # type: ignore[union-attr]
    counter = SentenceTransformerEmbedder(DEFAULT_MODEL)
    figures: dict[str, dict[str, int]] = {}
    for name in (*FOLDERS, *ABSTRACTS):
        old, new = [], []
        for rel, data in documents(name):
            parsed = parse(data, PurePosixPath(rel))
            old += before.chunk_file(parsed, counter.count_tokens, counter.max_tokens)[0]
            new += after.chunk_file(parsed, counter.count_tokens, counter.max_tokens)[0]
        old_hashes, new_hashes = {c.text_hash for c in old}, {c.text_hash for c in new}
        figures[name] = {
            "chunks_before": len(old),
            "heading_only_before": sum(heading_only(c.text) for c in old),
            "chunks_after": len(new),
            "heading_only_after": sum(heading_only(c.text) for c in new),
            "unique_after": len(new_hashes),
            "embedded_again": len(new_hashes - old_hashes),
        }
    print(
        "| files | chunks before (heading-only) | chunks after (heading-only) | embedded again on upgrade |"
    )
    print("|---|---|---|---|")
    for name, f in figures.items():
        share = f["embedded_again"] / f["unique_after"]
        print(
            f"| {name} | {f['chunks_before']:,} ({f['heading_only_before']:,}) | {f['chunks_after']:,} "
            f"({f['heading_only_after']:,}) | {f['embedded_again']:,} of {f['unique_after']:,} ({share:.0%}) |"
        )
    record("chunk_upgrade", figures)


if __name__ == "__main__":
    main()
