"""The ONNX query encoder: the vectors of torch without importing torch, a file built once and atomically, reused,
and a clean fallback to torch whenever ONNX cannot run the model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from specmem.indexer import config, db, onnx_embed, onnx_graph
from specmem.indexer.chunk import chunk_file
from specmem.indexer.embed import SentenceTransformerEmbedder, resolve_model_path
from specmem.indexer.errors import ModelUnavailable
from specmem.indexer.parse import parse
from specmem.indexer.scan import scan
from specmem.server.search import search
from tests import corpus
from tests.helpers import memory, write

MODEL = config.DEFAULT_MODEL
TORCH_MODULES = ("torch", "sentence_transformers", "transformers")


@pytest.fixture(autouse=True)
def fresh_query_embedders():
    """get_query_embedder keeps one embedder per name per process; each test decides anew."""
    onnx_embed._QUERY.clear()
    yield
    onnx_embed._QUERY.clear()


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = SentenceTransformerEmbedder(MODEL)
    embedder.load()
    return embedder


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def real_chunks(limit: int = 300) -> list[str]:
    """Chunks of a generated corpus of realistic memories, as the indexer embeds them (heading path + text)."""
    counter = SentenceTransformerEmbedder(MODEL)  # its tokenizer only: torch is not loaded
    texts: list[str] = []
    for generated in corpus.generate(200, seed=7):
        parsed = parse(generated.data, PurePosixPath(generated.rel_path))
        chunks, _ = chunk_file(parsed, counter.count_tokens, counter.max_tokens)
        texts += [c.embed_text for c in chunks]
        if len(texts) >= limit:
            return texts[:limit]
    return texts


EDGE_TEXTS = [
    "",
    "   ",
    "a",
    "How do I copy a file and keep its permissions?",
    "Ünïcödé, 中文字符, emoji 🚀 and tabs\tand\nnewlines",
    "word " * 600,  # longer than max_seq_length: truncated exactly as sentence-transformers truncates
    "```python\ndef f(x):\n    return x ** 2\n```",
]


def test_onnx_vectors_agree_with_torch_on_real_chunks(torch_embedder):
    embedder = onnx_embed.onnx_embedder(MODEL)
    texts = real_chunks() + EDGE_TEXTS
    assert len(texts) > 250
    ours, theirs = embedder.encode(texts), torch_embedder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    agreement = cosines(ours, theirs)
    assert agreement.min() >= 0.999, (agreement.min(), texts[int(agreement.argmin())][:80])
    # One query at a time (the CLI's case) gives the same vector as in a batch.
    assert cosines(embedder.encode([texts[3]]), theirs[3:4])[0] >= 0.999
    # The same model id, size, limit and token counts: either embedder searches what the other indexed.
    assert (embedder.model_id, embedder.dim, embedder.max_tokens) == (
        torch_embedder.model_id,
        torch_embedder.dim,
        torch_embedder.max_tokens,
    )
    assert embedder.count_tokens(texts[:20]) == torch_embedder.count_tokens(texts[:20])
    assert embedder.encode([]).shape == (0, 384)


def test_an_index_embedded_by_torch_is_searched_with_onnx_vectors(specs, cfg, conn, torch_embedder):
    topics = {
        "backups": "Nightly backups are copied to the storage bucket and kept for thirty days.",
        "tokens": "Access tokens expire after one hour; refresh tokens rotate on every use.",
        "colours": "The dashboard uses a dark theme with a teal accent colour.",
    }
    for name, body in topics.items():
        write(specs / "001-x" / "memory" / f"{name}.md", memory(name.title(), body))
    scan(conn, cfg, torch_embedder)
    query = onnx_embed.onnx_embedder(MODEL)
    for question, expected in [
        ("how long do we keep copies of the data", "Backups"),
        ("when does a login session run out", "Tokens"),
    ]:
        by_torch = search(
            conn, question, mode="semantic", embedder=torch_embedder, include_constitutional=False
        )
        by_onnx = search(conn, question, mode="semantic", embedder=query, include_constitutional=False)
        assert by_onnx.mode_used == "semantic" and by_onnx.results[0].title == expected
        assert [r.title for r in by_onnx.results] == [r.title for r in by_torch.results]


# -- a tiny BERT of random weights: plumbing tests build it in milliseconds -------------------------------------


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for array in tensors.values():
            fh.write(np.ascontiguousarray(array, dtype="<f4").tobytes())


def make_tiny_model(folder: Path, *, pooling: str = "mean", seed: int = 0, model_type: str = "bert") -> Path:
    """A 2-layer BERT (hidden 32) with random weights and the real model's tokenizer, as a sentence-transformers
    folder."""
    real = resolve_model_path(MODEL)
    assert real is not None
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(real / name, folder / name)
    hidden, inter, layers, vocab = 32, 64, 2, 30522
    cfg = json.loads((real / "config.json").read_text())
    cfg.update(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        model_type=model_type,
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
            }
        )
    )
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.2, shape).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": r(vocab, hidden),
        "embeddings.position_embeddings.weight": r(512, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        "embeddings.LayerNorm.weight": 1 + r(hidden),
        "embeddings.LayerNorm.bias": r(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (rows, cols) in {
            "attention.self.query": (hidden, hidden),
            "attention.self.key": (hidden, hidden),
            "attention.self.value": (hidden, hidden),
            "attention.output.dense": (hidden, hidden),
            "intermediate.dense": (inter, hidden),
            "output.dense": (hidden, inter),
        }.items():
            t[p + name + ".weight"], t[p + name + ".bias"] = r(rows, cols), r(rows)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + name + ".weight"], t[p + name + ".bias"] = 1 + r(hidden), r(hidden)
    write_safetensors(folder / "model.safetensors", t)
    return folder


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_graph_matches_sentence_transformers_for_both_poolings(tmp_path, pooling):
    from sentence_transformers import SentenceTransformer

    model = make_tiny_model(tmp_path / "tiny", pooling=pooling)
    embedder = onnx_embed.onnx_embedder(str(model), cache_dir=tmp_path / "cache")
    texts = ["", "one", "a longer sentence about padding and masks", "word " * 100]
    ours = embedder.encode(texts)
    theirs = SentenceTransformer(str(model), device="cpu").encode(texts, normalize_embeddings=True)
    assert cosines(ours, theirs).min() >= 0.999


def test_the_file_is_built_once_and_reused(tmp_path, monkeypatch):
    model, cache = make_tiny_model(tmp_path / "tiny"), tmp_path / "cache"
    path = onnx_embed.ensure_onnx_file(model, cache)
    assert path.is_file() and (path.parent / onnx_graph.DATA_FILE).is_file()
    assert path.parent.parent == cache / "onnx"
    stamp = path.stat().st_mtime_ns

    def no_second_build(*args: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(onnx_graph, "build", no_second_build)
    assert onnx_embed.ensure_onnx_file(model, cache) == path and path.stat().st_mtime_ns == stamp
    # Other weights are another model: another file.
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    assert onnx_embed.onnx_path(model, cache) != path


def test_a_failed_build_leaves_no_half_file(tmp_path, monkeypatch):
    model, cache = make_tiny_model(tmp_path / "tiny"), tmp_path / "cache"
    real_build = onnx_graph.build

    def dies_half_way(model_dir: Path, folder: Path) -> Path:
        (folder / onnx_graph.DATA_FILE).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_graph, "build", dies_half_way)
    with pytest.raises(onnx_embed.OnnxUnavailable, match="No space left"):
        onnx_embed.ensure_onnx_file(model, cache)
    assert not onnx_embed.onnx_path(model, cache).parent.exists()
    assert [p.name for p in (cache / "onnx").iterdir()] == [onnx_embed.STAMPS]
    # A build killed outright (kill -9) leaves its temporary folder: the next build removes it once it is stale.
    stale = cache / "onnx" / ".tiny-0.abc.tmp"
    stale.mkdir()
    old = time.time() - 2 * onnx_embed.STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    monkeypatch.setattr(onnx_graph, "build", real_build)
    assert onnx_embed.ensure_onnx_file(model, cache).is_file()
    assert not stale.exists()


BUILDER = """
import sys
from pathlib import Path
from specmem.indexer import onnx_embed
path = onnx_embed.ensure_onnx_file(Path(sys.argv[1]), Path(sys.argv[2]))
embedder = onnx_embed.OnnxEmbedder("tiny", Path(sys.argv[1]), path)
print(path, float(embedder.encode(["probe"])[0][0]))
"""


def test_concurrent_builders_publish_one_complete_copy(tmp_path):
    model, cache = make_tiny_model(tmp_path / "tiny"), tmp_path / "cache"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(model), str(cache)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    lines = {out.strip() for out, _ in outputs}
    assert len(lines) == 1  # one path, one vector
    folder = Path(lines.pop().split()[0]).parent
    assert sorted(p.name for p in folder.iterdir()) == [onnx_graph.GRAPH_FILE, onnx_graph.DATA_FILE]
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == sorted([folder.name, onnx_embed.STAMPS])


# -- fallbacks ---------------------------------------------------------------------------------------------------


def test_fallback_to_torch_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    embedder = onnx_embed.get_query_embedder(MODEL)
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.model_id == MODEL


def test_fallback_to_torch_when_the_file_is_missing_and_cannot_be_built(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECMEM_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(onnx_embed.OnnxUnavailable, match="pip install onnx"):
        onnx_embed.ensure_onnx_file(resolve_model_path(MODEL))
    assert isinstance(onnx_embed.get_query_embedder(MODEL), SentenceTransformerEmbedder)


def test_fallback_to_torch_when_the_file_is_damaged(tmp_path, monkeypatch):
    model, cache = make_tiny_model(tmp_path / "tiny"), tmp_path / "cache"
    path = onnx_embed.ensure_onnx_file(model, cache)
    path.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailable, match="cannot load"):
        onnx_embed.onnx_embedder(str(model), cache).load()
    monkeypatch.setenv("SPECMEM_CACHE_DIR", str(cache))
    assert isinstance(onnx_embed.get_query_embedder(str(model)), SentenceTransformerEmbedder)


def test_the_cache_never_follows_a_symlink(tmp_path):
    model, cache = make_tiny_model(tmp_path / "tiny"), tmp_path / "cache"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (cache / "onnx").mkdir(parents=True)
    os.symlink(victim, cache / "onnx" / onnx_embed.STAMPS)
    path = onnx_embed.onnx_path(model, cache)  # the stamps are neither read nor written through the link
    assert victim.read_text() == "precious"
    elsewhere = tmp_path / "planted"
    elsewhere.mkdir()
    os.symlink(elsewhere, path.parent)  # a graph folder planted in the cache is never loaded
    with pytest.raises(onnx_embed.OnnxUnavailable, match="is a symlink"):
        onnx_embed.ensure_onnx_file(model, cache)


def test_fallback_to_torch_for_a_model_it_cannot_translate(tmp_path, monkeypatch):
    model = make_tiny_model(tmp_path / "tiny", model_type="roberta")
    monkeypatch.setenv("SPECMEM_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(onnx_embed.OnnxUnavailable, match="model_type='roberta'"):
        onnx_embed.onnx_embedder(str(model))
    embedder = onnx_embed.get_query_embedder(str(model))
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.model_id == str(model)
    assert not (tmp_path / "cache" / "onnx").exists() or not any((tmp_path / "cache" / "onnx").glob("tiny-*"))


def test_hash_models_never_touch_onnx():
    assert onnx_embed.get_query_embedder("hash:64").model_id == "hash:64"


# -- the CLI -----------------------------------------------------------------------------------------------------


def imported_modules(importtime_log: str) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in importtime_log.splitlines()
        if line.startswith("import time:")
    }


def test_cli_hybrid_search_does_not_import_torch(specs, isolated, monkeypatch):
    for name, body in {
        "backups": "Nightly backups are copied to the storage bucket and kept for thirty days.",
        "tokens": "Access tokens expire after one hour; refresh tokens rotate on every use.",
    }.items():
        write(specs / "001-x" / "memory" / f"{name}.md", memory(name.title(), body))
    monkeypatch.setenv("SPECMEM_MODEL", MODEL)
    cfg = config.resolve()
    conn = db.connect(cfg.db_path)
    scan(
        conn, cfg, onnx_embed.onnx_embedder(MODEL)
    )  # the index as any scan leaves it: model all-MiniLM-L6-v2
    conn.close()
    exe = Path(sys.executable).with_name("specmem")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(exe), "search", "how long do we keep copies of the data", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=isolated,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    response = json.loads(done.stdout)
    assert response["mode_used"] == "hybrid" and response["results"][0]["title"] == "Backups"
    modules = imported_modules(done.stderr)
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in TORCH_MODULES}


def test_specmem_onnx_0_keeps_queries_on_torch(monkeypatch):
    monkeypatch.setenv("SPECMEM_ONNX", "0")
    assert isinstance(onnx_embed.get_query_embedder(MODEL), SentenceTransformerEmbedder)


def test_a_scan_embeds_with_onnx_without_importing_torch(specs, isolated, monkeypatch, torch_embedder):
    """Scans, watchers and write tools share one indexing embedder (server/state.py): its vectors come from ONNX
    Runtime and equal torch's, its chunks are counted by the same tokenizer."""
    bodies = {
        "backups": "Nightly backups are copied to the storage bucket and kept for thirty days.",
        "tokens": "Access tokens expire after one hour; refresh tokens rotate on every use.",
    }
    for name, body in bodies.items():
        write(specs / "001-x" / "memory" / f"{name}.md", memory(name.title(), body))
    monkeypatch.setenv("SPECMEM_MODEL", MODEL)
    exe = Path(sys.executable).with_name("specmem")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(exe), "scan"], capture_output=True, text=True, env=env, cwd=isolated, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = imported_modules(done.stderr)
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in TORCH_MODULES}
    conn = db.connect(config.resolve().db_path)
    rows = list(
        conn.execute(
            "SELECT c.heading, c.text, v.embedding FROM memory_chunks c JOIN vec_memories v ON v.chunk_id = c.id"
        )
    )
    conn.close()
    assert len(rows) == len(bodies)
    stored = np.array([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows])
    reference = torch_embedder.encode([f"{heading}\n{text}" for heading, text, _ in rows])
    assert cosines(stored, reference).min() > 0.9999


def test_the_indexing_embedder_counts_tokens_without_loading_a_model(monkeypatch):
    monkeypatch.setattr(onnx_embed, "get_query_embedder", lambda name: pytest.fail("a model was loaded"))
    embedder = onnx_embed.get_indexing_embedder(MODEL)
    reference = SentenceTransformerEmbedder(MODEL)
    texts = real_chunks(40)
    assert embedder.count_tokens(texts) == reference.count_tokens(texts)
    assert (embedder.model_id, embedder.max_tokens) == (reference.model_id, reference.max_tokens)


def test_specmem_onnx_0_keeps_indexing_on_torch(monkeypatch):
    monkeypatch.setenv("SPECMEM_ONNX", "0")
    assert isinstance(onnx_embed.get_indexing_embedder(MODEL), SentenceTransformerEmbedder)
    assert onnx_embed.get_indexing_embedder("hash:64").model_id == "hash:64"
