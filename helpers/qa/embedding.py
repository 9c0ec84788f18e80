"""Sentence embeddings for dense search: all-MiniLM-L6-v2 (embedded in a PyPI package) behind LangChain's interface.

``Embedder`` is a LangChain ``Embeddings`` (so LangChain's FAISS store can use it) that also embeds many texts
fast: sentence-transformers runs the model on OpenVINO (exported once to ``<work_dir>/models``), texts sorted by
length so batches carry little padding, vectors normalized so inner product is cosine. Full precision: dynamic
int8 made it faster with PyTorch but moved the vectors (mean cosine 0.93 to the fp32 ones).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from helpers import models
from helpers.config import EMBEDDED_EMBEDDING, WorkshopConfig
from helpers.constants import READY_MARKER
from helpers.errors import ModelNotAvailable
from helpers.files import read_json, staged_dir, write_json

EMBED_BATCH = 64
EMBED_MAX_TOKENS = 128  # word pieces embedded per chunk: header, signature and docstring come first
BACKENDS = ("openvino", "torch")
QUERY_CACHE = 64  # question vectors kept


class Embedder(Embeddings):
    """A sentence-transformers model on the CPU: OpenVINO (default) or PyTorch."""

    def __init__(self, model_path: str, name: str, max_tokens: int = EMBED_MAX_TOKENS, backend: str = "openvino"):
        from sentence_transformers import SentenceTransformer

        try:
            with models.quiet_exporters():
                model = SentenceTransformer(model_path, device="cpu", backend=backend)
                dimension = int(model.get_sentence_embedding_dimension())
        except (OSError, ValueError) as err:
            raise ModelNotAvailable(
                f"the embedding model {name!r} does not load from {model_path} ({str(err).splitlines()[0][:160]}); "
                f"offline, use the embedded {EMBEDDED_EMBEDDING!r} (embedding_model setting) or a local folder.") from None
        model.max_seq_length = min(model.max_seq_length or max_tokens, max_tokens)
        self.model = model
        self.dimension = dimension
        self.signature = f"{name}/{backend}/{max_tokens}"
        self._lock = threading.Lock()
        self._queries: dict[str, list[float]] = {}

    def embed(self, texts: list[str], on_progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Normalized float32 vectors for ``texts`` (in their order), batched by length."""
        out = np.zeros((len(texts), self.dimension), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for b in range(0, len(order), EMBED_BATCH * 4):
            ids = order[b:b + EMBED_BATCH * 4]
            with self._lock:
                out[ids] = self.model.encode([texts[i] for i in ids], batch_size=EMBED_BATCH,
                                             normalize_embeddings=True, convert_to_numpy=True)
            if on_progress:
                on_progress(len(ids))
        return out

    # LangChain's Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The question's vector, remembered for the last ``QUERY_CACHE`` questions: one answer searches the same
        question twice (the relevance check, then hybrid search), and the panel asks again with new settings."""
        vector = self._queries.get(text)
        if vector is None:
            vector = self.embed([text])[0].tolist()
            with self._lock:
                if len(self._queries) >= QUERY_CACHE:
                    self._queries.pop(next(iter(self._queries)))
                self._queries[text] = vector
        return vector


_EMBEDDERS: dict[str, Embedder] = {}


def prepare_openvino_embedder(cfg: WorkshopConfig, progress: bool = True) -> Path:
    """The embedded sentence embedder exported to OpenVINO under ``<work_dir>/models`` (made once, ~10 s)."""
    from sentence_transformers import SentenceTransformer

    source = Path(models.embedding_model_path(cfg))
    out = cfg.models_dir / f"{cfg.embedding_model}-openvino"
    stamp = {"source": str(source), "files": sorted(p.name for p in source.iterdir())}
    if read_json(out / READY_MARKER) == stamp:
        return out
    if progress:
        print(f"Exporting {cfg.embedding_model} to OpenVINO (once) …", flush=True)
    with staged_dir(out) as tmp, models.quiet_exporters():
        SentenceTransformer(str(source), device="cpu", backend="openvino").save_pretrained(str(tmp))
        write_json(tmp / READY_MARKER, stamp)
    return out


def embedder(cfg: WorkshopConfig) -> Embedder:
    """The (cached) embedder for ``cfg.embedding_model``: the embedded one on OpenVINO, others with PyTorch."""
    if cfg.embedding_model == EMBEDDED_EMBEDDING:
        path, backend = str(prepare_openvino_embedder(cfg, progress=False)), "openvino"
    else:
        path, backend = models.embedding_model_path(cfg), "torch"
    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = Embedder(path, cfg.embedding_model, backend=backend)
    return _EMBEDDERS[path]
