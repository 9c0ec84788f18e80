"""helpers.qa.embedding: the embedded model's int8 OpenVINO export embeds as the original model does."""

from __future__ import annotations

import numpy as np

from helpers import models, qa
from helpers.constants import READY_MARKER
from helpers.files import read_json
from helpers.qa import embedding


def test_int8_export_embeds_like_the_original_model(tiny_index) -> None:
    from sentence_transformers import SentenceTransformer

    cfg, _, _ = tiny_index
    emb = qa.embedder(cfg)
    folder = embedding.prepare_openvino_embedder(cfg, progress=False)
    assert read_json(folder / READY_MARKER)["quantization"] == embedding.QUANTIZATION
    assert emb.signature == f"{cfg.embedding_model}/openvino-int8/{embedding.EMBED_MAX_TOKENS}"
    texts = [c.embed_text for c in qa.CodeIndex.load(cfg).chunks]
    questions = ["How is a shard file copied from the bucket?", "merge several index.json files",
                 "How do I delete a cached shard?"]
    counted: list[int] = []
    vectors = emb.embed(texts + questions, on_progress=counted.append)
    assert sum(counted) == len(texts) + len(questions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    reference = SentenceTransformer(models.embedding_model_path(cfg), device="cpu")
    reference.max_seq_length = embedding.EMBED_MAX_TOKENS
    expected = reference.encode(texts + questions, normalize_embeddings=True)
    cosine = (vectors * expected).sum(axis=1)
    assert cosine.min() > 0.98 and cosine.mean() > 0.99, cosine
    # Each question finds the same nearest chunk with either model.
    got, want = vectors[len(texts):] @ vectors[:len(texts)].T, expected[len(texts):] @ expected[:len(texts)].T
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    # A text's vector does not depend on the batch it was padded in.
    alone = np.stack([emb.embed([t])[0] for t in texts[:3]])
    assert ((alone * vectors[:3]).sum(axis=1) > 0.999).all()
    assert emb.embed([]).shape == (0, emb.dimension) and emb.embed([""]).shape == (1, emb.dimension)


def test_calibration_texts_are_code_and_reproducible() -> None:
    texts = embedding.calibration_texts(8)
    assert len(texts) == 8 and texts == embedding.calibration_texts(8)
    assert all(t.startswith("calibration/") and len(t) > 20 for t in texts)
