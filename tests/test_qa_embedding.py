"""helpers.qa.embedding: the embedded model's int8 OpenVINO export embeds as the original model does."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from helpers import models, qa
from helpers.config import load_config
from helpers.constants import READY_MARKER
from helpers.errors import QAError
from helpers.files import read_json, write_json
from helpers.qa import embedding
from helpers.qa.chunking import CHUNKER_VERSION
from helpers.qa.index import load_index


def test_int8_export_embeds_like_the_original_model(tiny_index) -> None:
    from sentence_transformers import SentenceTransformer

    cfg, _, _ = tiny_index
    emb = qa.embedder(cfg)
    folder = embedding.prepare_openvino_embedder(cfg, progress=False)
    stamp = read_json(folder / READY_MARKER)
    assert stamp["quantization"] == embedding.QUANTIZATION
    assert emb.signature == f"{cfg.embedding_model}/openvino-int8/{embedding.EMBED_MAX_TOKENS}/{stamp['weights']}"
    texts = [c.dense_text for c in qa.CodeIndex.load(cfg).chunks]
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


def test_texts_that_read_the_same_pieces_run_once(tiny_index) -> None:
    cfg, _, _ = tiny_index
    emb = qa.embedder(cfg)
    texts = [c.dense_text for c in qa.CodeIndex.load(cfg).chunks][:4]
    n = emb._model.max_tokens
    long = "shard " * (3 * n)
    repeated = texts + texts[:2] + [long, long + "tail words that are never read"]
    before = emb._model.inferred
    counted: list[int] = []
    vectors = emb.embed(repeated, on_progress=counted.append)
    assert emb._model.inferred - before == len(texts) + 1 and sum(counted) == len(repeated)
    assert np.allclose(vectors[4:6], vectors[:2]) and np.allclose(vectors[-1], vectors[-2])
    assert np.allclose(vectors[:4], emb.embed(texts), atol=1e-5)


def test_token_ids_of_a_prefix_are_those_of_the_whole_text(tiny_index) -> None:
    cfg, _, _ = tiny_index
    encoder = qa.embedder(cfg)._model
    n = encoder.max_tokens
    limit = n * embedding.PREFIX_CHARS
    long_code = "\n".join(f"    total_{i} = compute_value(shard_{i}, cache_limit={i})" for i in range(200))
    texts = [c.dense_text for c in qa.CodeIndex.load(cfg).chunks] + [
        long_code,  # cut at a line break
        " " * (limit + 50) + "word " * 10,  # the prefix is blank: tokenized whole
        "x" * (limit + 10) + " tail",  # no whitespace before the limit: tokenized whole
        "a " * (limit // 2 - 1) + "Mötley_Crüe " + "b" * 30,  # a word across the limit
        "information " * (3 * n),  # prose of long words: the prefix is doubled twice before it holds n pieces
        "",
    ]
    want = encoder.tokenizer(texts, truncation=True, max_length=n)["input_ids"]
    assert encoder.token_ids(texts) == want
    assert len(want[-6]) == n and 2 < len(want[-5]) < n and len(want[-2]) == n


def test_many_texts_are_tokenized_on_every_core_and_the_setting_is_put_back(tiny_index, monkeypatch) -> None:
    """A call with PARALLEL_TEXTS texts or more runs the tokenizer with TOKENIZERS_PARALLELISM true, the same ids
    as one at a time, and leaves the variable as it found it ("false" where it was unset: a later fork stays safe)."""
    cfg, _, _ = tiny_index
    encoder = qa.embedder(cfg)._model
    texts = [f"def shard_{i}(cache_limit={i}):\n    return evict(shard_{i})" for i in range(embedding.PARALLEL_TEXTS)]
    seen = []
    tokenize = encoder.tokenizer.__class__.__call__
    monkeypatch.setattr(encoder.tokenizer.__class__, "__call__", lambda self, *a, **k: (
        seen.append(os.environ.get("TOKENIZERS_PARALLELISM")), tokenize(self, *a, **k))[1])
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    one_by_one = [encoder.token_ids([t])[0] for t in texts[:5]]
    assert seen == ["false"] * 5, "a few texts: as the environment says"
    assert encoder.token_ids(texts)[:5] == one_by_one and seen[-1] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")
    encoder.token_ids(texts)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false", "unset before: set to false, so a fork stays silent"


def test_the_same_calibration_gives_the_same_weights_and_other_weights_another_signature(tiny_index, tmp_path) -> None:
    """A second export from the same calibration texts is the same bit for bit, so figures measured on one work
    folder hold for another; the weights' digest is in the stamp and the signature, so an index whose vectors came
    from another export (another chunker's calibration texts, another nncf) is named and rebuilt."""
    cfg, _, _ = tiny_index
    shared = embedding.prepare_openvino_embedder(cfg, progress=False)
    fresh = embedding.prepare_openvino_embedder(load_config(work_dir=str(tmp_path)), progress=False)
    assert fresh != shared and fresh.is_relative_to(tmp_path)
    weights = [(folder / "openvino" / "openvino_model.bin").read_bytes() for folder in (shared, fresh)]
    assert weights[0] == weights[1]
    stamp = read_json(fresh / READY_MARKER)
    assert stamp == read_json(shared / READY_MARKER)
    assert stamp["weights"] == hashlib.sha256(weights[1]).hexdigest()[:embedding.WEIGHTS_DIGEST]
    assert f"chunker {CHUNKER_VERSION}" in stamp["quantization"]

    write_json(fresh / READY_MARKER, stamp | {"weights": "0" * embedding.WEIGHTS_DIGEST})  # as another export would
    other = qa.Embedder(str(fresh), cfg.embedding_model)
    assert other.signature != qa.embedder(cfg).signature
    with pytest.raises(QAError, match=rf"built with .*/openvino-int8/{embedding.EMBED_MAX_TOKENS}/{stamp['weights']}"
                                      r".*rebuild it"):
        load_index(cfg, other)


def test_calibration_texts_are_code_and_reproducible() -> None:
    texts = embedding.calibration_texts(8)
    assert len(texts) == 8 and texts == embedding.calibration_texts(8)
    assert all(t.split("\n")[0].split(" · ")[0].endswith(".py") and len(t) > 20 for t in texts), texts[0][:80]


def test_short_texts_go_in_larger_batches_of_the_same_word_pieces() -> None:
    """A batch holds EMBED_BATCH rows, or more while rows times the longest stays within BATCH_PIECES: settings
    of 32 pieces go 32 a request, chunks of 64 go 16; every row once, in order."""
    from helpers.qa.embedding import BATCH_PIECES, EMBED_BATCH, batches

    lengths = np.array([5] * 70 + [32] * 64 + [64] * 40)
    order = np.argsort(lengths, kind="stable")
    cut = batches(lengths, order)
    assert np.array_equal(np.concatenate(cut), order)
    sizes = [len(rows) for rows in cut]
    assert sizes[0] == 64 and 32 in sizes and sizes[-1] <= EMBED_BATCH, sizes
    assert all(len(rows) == EMBED_BATCH or len(rows) * lengths[rows].max() <= BATCH_PIECES for rows in cut[:-1])
    assert [len(rows) for rows in batches(np.array([64] * 40), np.arange(40))] == [16, 16, 8]
