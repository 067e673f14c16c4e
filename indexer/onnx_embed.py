"""The embedding model run by ONNX Runtime: same vectors as torch, without importing torch.

The ONNX file is never downloaded. It is built from the model folder's own weights (`indexer.onnx_graph`, no torch)
by the first process that wants it, written atomically into the user cache folder under a name made from the
model's content, and reused by every later process. When onnxruntime or the `onnx` package is missing, the model
is not a supported BERT, or the file cannot be written, callers get the torch embedder instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from specmem.indexer import atomic
from specmem.indexer import config as configmod
from specmem.indexer.embed import (
    Embedder,
    get_embedder,
    model_id_for,
    read_max_tokens,
    resolve_model_path,
    verify_model,
)
from specmem.indexer.errors import ModelUnavailable, SpecmemError, StateFileError
from specmem.indexer.tokens import token_counter

if TYPE_CHECKING:
    import numpy as np  # imported where vectors are made: a keyword-only scan needs no numpy

log = logging.getLogger("specmem.onnx")
STAMPS = "identities.json"
STALE_TMP_SECONDS = 3600
MAX_STAMPS = 32


class OnnxUnavailable(ModelUnavailable):
    """No ONNX model for this name; the message says why. Callers fall back to torch."""


def onnx_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or configmod.user_cache_dir()) / "onnx"


def model_identity(model_dir: Path, cache_dir: Path | None = None) -> str:
    """A digest of what the graph is made from (weights, configs, graph version).

    Hashing 90 MB costs a read of the weights, so the digest is remembered per (path, size, mtime) of the files in
    `identities.json`: an unchanged install costs one `stat` per file."""
    from specmem.indexer.onnx_graph import GRAPH_VERSION

    sources = [model_dir / "config.json", model_dir / "modules.json", model_dir / "model.safetensors"]
    sources += sorted(model_dir.glob("*_Pooling/config.json"))
    stamp = "|".join(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}" for p in sources for st in [p.stat()])
    stamp = f"v{GRAPH_VERSION}|{stamp}"
    folder = onnx_dir(cache_dir)
    stamps_path = folder / STAMPS
    try:
        stamps = json.loads(atomic.read_own_file(stamps_path) or b"{}")
    except (OSError, ValueError, SpecmemError):
        stamps = {}
    if isinstance(stamps, dict) and isinstance(stamps.get(stamp), str):
        return stamps[stamp]
    digest = xxhash.xxh3_128(f"specmem-onnx-graph-v{GRAPH_VERSION}".encode())
    for path in sources:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
    identity = digest.hexdigest()
    stamps = stamps if isinstance(stamps, dict) else {}
    stamps[stamp] = identity
    stamps = dict(list(stamps.items())[-MAX_STAMPS:])  # the newest installs; older ones only cost a re-hash
    try:
        atomic.write_own_file(stamps_path, json.dumps(stamps, indent=1).encode(), durable=True)
    except SpecmemError:
        pass  # only a cache of the digest: the next process hashes again
    return identity


def onnx_path(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where the ONNX graph of this model folder lives (or will), in a folder named after the model's content."""
    from specmem.indexer.onnx_graph import GRAPH_FILE

    name = model_dir.parent.name if model_dir.name == "model" else model_dir.name  # packages ship .../model
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:40].strip(".") or "model"
    return onnx_dir(cache_dir) / f"{slug}-{model_identity(model_dir, cache_dir)[:32]}" / GRAPH_FILE


def _published(path: Path) -> bool:
    """Whether the graph file is in place. The cache folder is opened as one of specmem's own, and neither the
    model's folder nor the graph file may be a symlink: one planted in the cache is refused, never loaded."""
    try:
        with atomic.open_own_folder(path.parent.parent) as cache:
            folder = cache.lstat(path.parent.name)
        if folder is None:
            return False
        if stat.S_ISLNK(folder.st_mode):
            raise StateFileError(atomic.own_link(path.parent))
        os.close(atomic.open_own_file(path))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except StateFileError as exc:
        raise OnnxUnavailable(str(exc)) from None
    return True


def _remove_stale(folder: Path) -> None:
    """Temporary folders of builds that were killed half-way (a finished build renames its folder)."""
    for tmp in folder.glob(".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(tmp)
        except OSError:
            pass


def ensure_onnx_file(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """The ONNX graph file for `model_dir`, built now (a few seconds, once per model and user) if it is missing.

    The graph and its weights are written into a temporary folder that is then renamed into place in one step,
    so a process sees either no folder or a complete one; when two processes build at once, the first rename
    wins and the other discards its copy. Raises OnnxUnavailable with the reason."""
    from specmem.indexer import onnx_graph

    try:
        onnx_graph.check_supported(model_dir)
        path = onnx_path(model_dir, cache_dir)
    except onnx_graph.Unsupported as exc:
        raise OnnxUnavailable(f"{model_dir.name} has no ONNX translation ({exc})") from None
    except OSError as exc:
        raise OnnxUnavailable(f"cannot read {model_dir}: {exc}") from None
    final = path.parent
    try:
        if _published(path):
            return path
        _remove_stale(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise OnnxUnavailable(
            f"cannot write to {final.parent}: {exc}; set SPECMEM_CACHE_DIR to a writable folder"
        ) from None
    try:
        verify_model(model_dir)
        onnx_graph.build(model_dir, tmp)
        os.rename(tmp, final)
    except ModelUnavailable as exc:
        raise OnnxUnavailable(str(exc)) from None
    except ImportError as exc:
        raise OnnxUnavailable(f"cannot build the ONNX model ({exc}); pip install onnx") from None
    except onnx_graph.Unsupported as exc:
        raise OnnxUnavailable(f"{model_dir.name} has no ONNX translation ({exc})") from None
    except OSError as exc:
        if not _published(path):  # else another process published the same model first: use its copy
            raise OnnxUnavailable(
                f"cannot write {final}: {exc}; set SPECMEM_CACHE_DIR to a writable folder"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s from %s", path, model_dir)
    return path


def thread_count() -> int:
    """Threads for one inference: OMP_NUM_THREADS when set (servers and watchers set 1, as for torch), else 0,
    onnxruntime's default of one per physical core."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


class OnnxEmbedder:
    """An exported sentence-transformers model run by onnxruntime, tokenised by `tokenizers`: no torch.

    Its `model_id` is the torch embedder's, so either can search an index that the other embedded."""

    def __init__(
        self, name: str, model_dir: Path, onnx_file: Path, *, batch_size: int = 32, prepack: bool = False
    ) -> None:
        self.name = name
        self.path = model_dir
        self.onnx_file = onnx_file
        self.model_id = model_id_for(name, model_dir)
        self.max_tokens = read_max_tokens(model_dir)
        self.batch_size = batch_size
        self.prepack = prepack
        self._session: Any = None
        self._tokenizer: Any = None
        self._counter: Any = None
        self._lock = threading.Lock()
        self._error: str | None = None
        self._dim = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def error(self) -> str | None:
        return self._error

    def load(self) -> Any:
        """Open the session and the tokenizer (thread-safe, once). Raises ModelUnavailable with the reason."""
        with self._lock:
            if self._session is not None:
                return self._session
            if self._error is not None:
                raise ModelUnavailable(self._error)
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                options = ort.SessionOptions()
                options.intra_op_num_threads = thread_count()
                options.inter_op_num_threads = 1
                options.log_severity_level = 3  # errors only: nothing on stdout/stderr in normal use
                if not self.prepack:
                    # Weights stay in the memory-mapped file instead of being repacked: the session opens in
                    # ~30 ms instead of ~80, and a batch runs ~7% slower (tests/bench/embed.py).
                    options.add_session_config_entry("session.disable_prepacking", "1")
                tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
                # As sentence-transformers tokenises: truncate at max_seq_length, pad to the longest of a batch.
                tokenizer.enable_truncation(self.max_tokens)
                tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
                session = ort.InferenceSession(
                    str(self.onnx_file), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # any failure to load means the caller falls back, with the reason kept
                self._error = f"cannot load {self.onnx_file} ({type(exc).__name__}: {exc})"
                raise ModelUnavailable(self._error) from exc
            self._tokenizer = tokenizer
            self._session = session
            return session

    @property
    def dim(self) -> int:
        self.load()
        return self._dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            self._counter = token_counter(self.path)  # the torch embedder's counter: the same chunks
        return self._counter(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text, in order. Batches hold texts of similar length (less padding)."""
        import numpy as np

        session = self.load()
        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self._tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
        return out


def onnx_embedder(name: str, cache_dir: Path | None = None) -> OnnxEmbedder:
    """An OnnxEmbedder for the model `name`, its file built first if needed; raises OnnxUnavailable."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from None
    model_dir = resolve_model_path(name)
    if model_dir is None:
        raise OnnxUnavailable(f"{name!r} is not a local model folder")
    return OnnxEmbedder(name, model_dir, ensure_onnx_file(model_dir, cache_dir))


_QUERY: dict[str, Embedder] = {}
_QUERY_LOCK = threading.Lock()


def onnx_enabled(env: Mapping[str, str] | None = None) -> bool:
    """SPECMEM_ONNX=0 keeps every embedding on torch (to compare, or to step around an ONNX Runtime problem)."""
    value = (os.environ if env is None else env).get("SPECMEM_ONNX", "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


class IndexingEmbedder:
    """The embedder that indexes. Chunking only counts tokens, with the model's tokenizer as the torch embedder
    counts them (the same chunks); the model itself is chosen and loaded at the first vector: the process's query
    embedder, ONNX Runtime when it can run the model, else sentence-transformers. One model per process, and no
    torch in a server or a watcher unless ONNX cannot run the model."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._counter = get_embedder(name)  # loads nothing until asked for vectors; never asked here
        self.model_id = self._counter.model_id
        self.max_tokens = self._counter.max_tokens

    @property
    def dim(self) -> int:
        return get_query_embedder(self.name).dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_tokens(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return get_query_embedder(self.name).encode(texts)


def get_indexing_embedder(name: str) -> Embedder:
    """The embedder that scans, watchers and write tools use for model `name` (see IndexingEmbedder); with
    SPECMEM_ONNX=0 or a `hash:` model, `get_embedder`'s."""
    if name.startswith("hash:") or not onnx_enabled():
        return get_embedder(name)
    return IndexingEmbedder(name)


def get_query_embedder(name: str) -> Embedder:
    """The quickest embedder to start for model `name` that agrees with the index: ONNX Runtime when it can run
    the model (no torch import), else the torch embedder of `get_embedder`. One per name per process."""
    with _QUERY_LOCK:
        if name not in _QUERY:
            embedder: Embedder
            if name.startswith("hash:") or not onnx_enabled():
                embedder = get_embedder(name)
            else:
                try:
                    embedder = onnx_embedder(name)
                    embedder.load()
                except ModelUnavailable as exc:
                    log.info("query embedder falls back to torch: %s", exc)
                    embedder = get_embedder(name)
            _QUERY[name] = embedder
        return _QUERY[name]
