"""Sentence embeddings for dense search: all-MiniLM-L6-v2 (embedded in a PyPI package) behind LangChain's interface.

``Embedder`` is a LangChain ``Embeddings`` (so LangChain's FAISS store can use it) that also embeds many texts
fast: texts sorted by length so batches carry little padding, normalized vectors so inner product is cosine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from langchain_core.embeddings import Embeddings

from helpers import models
from helpers.config import EMBEDDED_EMBEDDING, WorkshopConfig
from helpers.errors import ModelNotAvailable

EMBED_BATCH = 64
EMBED_MAX_TOKENS = 128  # word pieces embedded per chunk: header, signature and docstring come first
EMBED_INT8 = True  # dynamic int8 Linear layers: about 2x faster embedding on CPU for a negligible recall change


class Embedder(Embeddings):
    """A sentence-transformers model on the CPU, optionally with int8 Linear layers."""

    def __init__(self, model_path: str, name: str, max_tokens: int = EMBED_MAX_TOKENS, int8: bool = EMBED_INT8):
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(model_path, device="cpu")
        except (OSError, ValueError) as err:
            raise ModelNotAvailable(
                f"the embedding model {name!r} does not load from {model_path} ({str(err).splitlines()[0][:160]}); "
                f"offline, use the embedded {EMBEDDED_EMBEDDING!r} (embedding_model setting) or a local folder.") from None
        model.max_seq_length = min(model.max_seq_length or max_tokens, max_tokens)
        if int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self.dimension = int(model.get_sentence_embedding_dimension())
        self.signature = f"{name}/torch{'-int8' if int8 else ''}/{max_tokens}"
        self._lock = threading.Lock()

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
        return self.embed([text])[0].tolist()


_EMBEDDERS: dict[str, Embedder] = {}


def embedder(cfg: WorkshopConfig) -> Embedder:
    """The (cached) embedder for ``cfg.embedding_model``."""
    path = models.embedding_model_path(cfg)
    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = Embedder(path, cfg.embedding_model)
    return _EMBEDDERS[path]
