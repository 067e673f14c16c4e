"""Embedding: torch (sentence-transformers) against ONNX Runtime on the same chunks, and the query encoder's
fresh-process latency.

    .venv/bin/python tests/bench/embed.py                       # 256 chunks, 3 rounds, 1 and default threads
    .venv/bin/python tests/bench/embed.py --cli-index /tmp/man  # also `specmem search` on md-manpages-2000
    .venv/bin/python tests/bench/embed.py --extra-onnx legacy=/tmp/torch_legacy.onnx  # any other export too

Throughput, in one child process per thread setting (OMP_NUM_THREADS=1, then unset): raw
`SentenceTransformer.encode` (batch 32), the pipeline (`embed_pending`, which the scan runs) with torch, raw
`OnnxEmbedder.encode` with and without weight prepacking, and the pipeline with ONNX; each round runs every variant
once, in a rotated order, and the figures are medians over rounds of wall time and of process CPU time (CPU time is
what stays comparable on a busy machine). Agreement: cosine of each ONNX vector to torch's (min and mean).

Fresh process: from `python -c` start to a query vector (import, load, tokenise, run), torch against ONNX; with
--cli-index, the whole `specmem search` (hybrid, default) on md-manpages-2000, with the ONNX query encoder and with
SPECMEM_ONNX=0 (torch), and in keyword mode for reference. The index is built in that folder the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, ROOT, record  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
CORPUS = DATA / "md-manpages-2000"
QUERY = "how do I copy a file and keep its permissions"


def pick_files(count: int) -> list[Path]:
    """Files spread over the corpus (every 7th) until their chunks number `count`."""
    from specmem.indexer.chunk import chunk_file
    from specmem.indexer.embed import SentenceTransformerEmbedder
    from specmem.indexer.parse import parse

    counter = SentenceTransformerEmbedder(MODEL)  # its tokenizer only
    files, chunks = [], 0
    every = sorted(CORPUS.rglob("*.md"))
    for path in every[::7] + every[1::7]:
        parsed = parse(path.read_bytes(), PurePosixPath(path.name))
        chunks += len(chunk_file(parsed, counter.count_tokens, counter.max_tokens)[0])
        files.append(path)
        if chunks >= count:
            break
    return files


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def throughput(chunks: int, rounds: int, extra: dict[str, str]) -> dict[str, Any]:
    """In this process, with the thread setting it was started with."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    from specmem.indexer import config, db
    from specmem.indexer.embed import SentenceTransformerEmbedder, embed_pending
    from specmem.indexer.onnx_embed import OnnxEmbedder, ensure_onnx_file
    from specmem.indexer.scan import scan

    torch_embedder = SentenceTransformerEmbedder(MODEL)
    model_dir = torch_embedder.path
    assert model_dir is not None
    onnx_file = ensure_onnx_file(model_dir)
    onnx_embedder = OnnxEmbedder(MODEL, model_dir, onnx_file, prepack=True)
    plain_embedder = OnnxEmbedder(MODEL, model_dir, onnx_file, prepack=False)
    others = {name: OnnxEmbedder(MODEL, model_dir, Path(path), prepack=True) for name, path in extra.items()}
    st = torch_embedder.load()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "specs"
        for path in pick_files(chunks):
            target = root / path.relative_to(CORPUS / "specs")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        cfg = config.resolve(db=Path(tmp) / "index.db", roots=[root], cwd=Path(tmp), model=MODEL)
        conn = db.connect(cfg.db_path)
        scan(conn, cfg, torch_embedder, embed=False)
        rows = conn.execute("SELECT heading || char(10) || text FROM memory_chunks ORDER BY id").fetchall()
        texts = list(dict.fromkeys(r[0] for r in rows))  # identical chunks are embedded once, by either path

        def pipeline(embedder: Any) -> Callable[[], Any]:
            def run() -> Any:
                with db.write_tx(conn):  # every chunk pending again, nothing to reuse
                    conn.execute("DELETE FROM embedding_cache")
                    if db.has_table(conn, "vec_memories"):
                        conn.execute("DELETE FROM vec_memories")
                    conn.execute("UPDATE memory_chunks SET embedded = 0")
                    conn.execute("UPDATE memory_index SET embedding_status = 'pending'")
                embedded, reused = embed_pending(conn, embedder, cfg.signal_path)
                assert (embedded, reused) == (len(texts), len(rows) - len(texts)), (embedded, reused)

            return run

        variants: dict[str, Callable[[], Any]] = {
            "torch_raw": lambda: st.encode(
                texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
            ),
            "torch_pipeline": pipeline(torch_embedder),
            "onnx_raw": lambda: onnx_embedder.encode(texts),
            "onnx_raw_no_prepack": lambda: plain_embedder.encode(texts),
            "onnx_pipeline": pipeline(onnx_embedder),
            **{f"{name}_raw": (lambda e=e: e.encode(texts)) for name, e in others.items()},
        }
        for embedder in (onnx_embedder, plain_embedder, *others.values()):  # load outside the timings
            embedder.encode(texts[:8])
        st.encode(texts[:8])
        vectors: dict[str, Any] = {}
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                c, t = cpu_seconds(), time.perf_counter()
                vectors[name] = variants[name]()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
        conn.close()

    out: dict[str, Any] = {"chunks": len(texts), "rounds": rounds}
    for name in variants:
        out[name] = {
            "chunks_per_s": round(len(texts) / statistics.median(wall[name]), 2),
            "chunks_per_cpu_s": round(len(texts) / statistics.median(cpu[name]), 2),
            "wall_s": [round(x, 2) for x in wall[name]],
            "cpu_s": [round(x, 2) for x in cpu[name]],
        }
    base = "torch_raw"
    for name in variants:
        if name != base:
            out[name]["vs_torch_raw"] = round(
                statistics.median(a / b for a, b in zip(wall[base], wall[name], strict=True)), 3
            )
            out[name]["vs_torch_raw_cpu"] = round(
                statistics.median(a / b for a, b in zip(cpu[base], cpu[name], strict=True)), 3
            )
        if "raw" in name and name != base:
            agreement = (np.asarray(vectors[name]) * np.asarray(vectors[base])).sum(axis=1)
            out[name]["cosine_min"] = round(float(agreement.min()), 7)
            out[name]["cosine_mean"] = round(float(agreement.mean()), 7)
    return out


FRESH = {
    "torch": (
        "from specmem.indexer.embed import SentenceTransformerEmbedder as E; v = E({model!r}).encode([{query!r}])",
    ),
    "onnx": (
        "from specmem.indexer.onnx_embed import get_query_embedder as g; v = g({model!r}).encode([{query!r}])",
    ),
}


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed: {done.stderr[-1500:]}")
    return elapsed


def fresh_process(rounds: int, cli_index: Path | None) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        f"query_vector_{name}": (
            [sys.executable, "-c", prelude + code.format(model=MODEL, query=QUERY)],
            env,
        )
        for name, (code,) in FRESH.items()
    }
    if cli_index is not None:
        db_path = ensure_index(cli_index)
        exe = str(Path(sys.executable).with_name("specmem"))
        base = [exe, "search", QUERY, "--db", str(db_path), "--root", str(CORPUS / "specs")]
        commands["cli_hybrid_onnx"] = (base, env)
        commands["cli_hybrid_torch"] = (base, {**env, "SPECMEM_ONNX": "0"})
        commands["cli_keyword"] = ([*base, "--mode", "keyword"], env)
    for cmd, e in commands.values():  # warm the page cache and build the ONNX file outside the timings
        timed(cmd, e, ROOT)
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            cmd, e = commands[name]
            times[name].append(timed(cmd, e, ROOT))
    return {
        name: {
            "median_s": round(statistics.median(v), 3),
            "min_s": round(min(v), 3),
            "runs": [round(x, 3) for x in v],
        }
        for name, v in times.items()
    }


def ensure_index(folder: Path) -> Path:
    """md-manpages-2000 indexed with the default model into `folder` (once; later runs reuse it)."""
    db_path = folder / "index.db"
    if not db_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        exe = str(Path(sys.executable).with_name("specmem"))
        print(f"indexing {CORPUS} into {db_path} (once)…", file=sys.stderr)
        subprocess.run(
            [exe, "scan", "--db", str(db_path), str(CORPUS / "specs")], check=True, stdout=subprocess.DEVNULL
        )
    return db_path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=256, help="Chunks to embed in each run (default 256).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of every variant (default 3).")
    parser.add_argument("--fresh-rounds", type=int, default=5, help="Runs of each fresh process (default 5).")
    parser.add_argument("--cli-index", type=Path, help="Folder for the md-manpages-2000 index (built once).")
    parser.add_argument(
        "--extra-onnx",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Another ONNX export to compare.",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.extra_onnx)
    if args.child:
        print(json.dumps(throughput(args.chunks, args.rounds, extra)))
        return

    figures: dict[str, Any] = {"model": MODEL, "corpus": CORPUS.name, "query": QUERY}
    for label, threads in (("threads_1", "1"), ("threads_default", None)):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        if threads:
            env["OMP_NUM_THREADS"] = threads
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--chunks",
            str(args.chunks),
            "--rounds",
            str(args.rounds),
        ]
        cmd += [f"--extra-onnx={item}" for item in args.extra_onnx]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        figures[label] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label}: {json.dumps(figures[label])}", file=sys.stderr)
    figures["fresh_process"] = fresh_process(args.fresh_rounds, args.cli_index)

    print("| variant | threads | chunks/s | chunks/CPU-s | vs torch raw (wall, CPU) | cosine min / mean |")
    print("|---|---|---|---|---|---|")
    for label in ("threads_1", "threads_default"):
        for name, f in figures[label].items():
            if not isinstance(f, dict):
                continue
            ratio = f"{f['vs_torch_raw']:.2f}, {f['vs_torch_raw_cpu']:.2f}" if "vs_torch_raw" in f else "1"
            cos = f"{f['cosine_min']:.7f} / {f['cosine_mean']:.7f}" if "cosine_min" in f else "-"
            row = [name, label.removeprefix("threads_"), f["chunks_per_s"], f["chunks_per_cpu_s"], ratio, cos]
            print("| " + " | ".join(str(x) for x in row) + " |")
    print()
    print("| fresh process | median | min |")
    print("|---|---|---|")
    for name, f in figures["fresh_process"].items():
        print(f"| {name} | {f['median_s']:.2f} s | {f['min_s']:.2f} s |")
    record("embed", figures)


if __name__ == "__main__":
    main()
