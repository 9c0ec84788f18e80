"""Sentence embeddings for dense search: all-MiniLM-L6-v2 (embedded in a PyPI package) behind LangChain's interface.

``Embedder`` is a LangChain ``Embeddings`` (so LangChain's FAISS store can use it) that also embeds many texts
fast. The embedded model runs on OpenVINO as a static int8 export made once under ``<work_dir>/models``
(sentence-transformers exports it, nncf quantizes it, calibrated on code of the libraries this environment
installs): texts are tokenized once, sorted by length so a batch carries little padding, and batches go to two
inference requests at a time (one per core; OpenVINO's throughput mode), then mean-pooled and normalized as the
model's sentence-transformers configuration says, so inner product is cosine. Other models run with
sentence-transformers on PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from helpers import models
from helpers.config import EMBEDDED_EMBEDDING, REPO_ROOT, WorkshopConfig
from helpers.constants import READY_MARKER
from helpers.errors import ModelNotAvailable
from helpers.files import read_json, staged_dir, write_json
from helpers.qa.chunking import CHUNKER_VERSION, chunk_file

EMBED_BATCH = 16  # texts per inference request (OpenVINO), at least; shorter texts go in larger batches:
BATCH_PIECES = 1024  # up to this many word pieces a request (16 chunks of 64; 32 settings of 32: 0.1-0.3 s less)
TORCH_BATCH = 64  # texts per forward pass for other models (sentence-transformers on PyTorch)
# Word pieces embedded per chunk (``Chunk.dense_text``: path, name, docstring summary, code). Chosen on the tuning
# half with the summary first: hybrid MRR 0.82 at 64 against 0.80 at 128 (code first), dense recall@5 0.80 against
# 0.79, and the corpus embeds in ~12 s instead of ~22 s (README; held-out hybrid MRR 0.79 either way).
EMBED_MAX_TOKENS = 64
PARALLEL_TEXTS = 256  # a call tokenizing at least this many texts uses both cores (``_tokenizer_threads``)
PREFIX_CHARS = 4  # characters per word piece tokenized first; a text whose prefix is short of pieces is tried longer
BACKENDS = ("openvino-int8", "torch")
QUERY_CACHE = 64  # question vectors kept
# Static int8 (nncf), calibrated on chunks of code that every set-up has: the libraries of the default corpus as
# installed here (this project itself when they are not). On the offline corpus (Zen 4, 2026-11-29): 1.5x faster
# than fp32 on OpenVINO, mean cosine 0.997 to the fp32 vectors, the same hybrid recall and MRR on the tuning half.
CALIBRATION_PACKAGES = ("streaming", "composer", "llmfoundry")
CALIBRATION_CHUNKS = 128
# The same calibration texts give the same int8 weights, bit for bit (two exports in one process and one by
# ``make workshop`` in another, 2026-12-08). The texts are chunks as the chunker makes them, so the export is made
# again when the chunker changes (an export calibrated on chunker 5's texts had other weights than one on chunker
# 6's), and its weights' digest is part of the embedder's signature, which an index records.
QUANTIZATION = (f"nncf static int8, transformer preset, {CALIBRATION_CHUNKS} calibration chunks of "
                f"{EMBED_MAX_TOKENS} word pieces by chunker {CHUNKER_VERSION}")
WEIGHTS_DIGEST = 12  # hex digits of the int8 weights' sha256 kept in the export's stamp and the signature


def batches(lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """``order`` (row numbers, shortest text first) cut into inference batches: ``EMBED_BATCH`` rows, doubled while
    a batch of the next rows stays within ``BATCH_PIECES`` word pieces (its rows times its longest length)."""
    out, b = [], 0
    while b < len(order):
        size = EMBED_BATCH
        while b + 2 * size <= len(order) and 2 * size * int(lengths[order[b + 2 * size - 1]]) <= BATCH_PIECES:
            size *= 2
        out.append(order[b:b + size])
        b += size
    return out


@contextlib.contextmanager
def _tokenizer_threads() -> Iterator[None]:
    """The Rust tokenizer on every core for one call: ``TOKENIZERS_PARALLELISM`` is "true" inside, then as it was
    (or "false" where it was unset). The workshop sets it to false so that a process forked later cannot deadlock
    on the tokenizer's threads; set explicitly again, a fork after this call is safe and silent. Tokenizing the
    offline corpus's chunks: 0.37-0.61 s instead of 0.66-0.82 s on two cores (README)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = before if before is not None else "false"


class _OpenVINOEncoder:
    """A sentence-transformers folder whose transformer is an OpenVINO model: tokenize, infer, mean-pool, normalize."""

    def __init__(self, folder: str, max_tokens: int):
        import openvino as ov
        from transformers import AutoTokenizer

        xml = Path(folder) / "openvino" / "openvino_model.xml"
        if not xml.is_file():
            raise ModelNotAvailable(f"no OpenVINO model at {xml}")
        pooling = read_json(Path(folder) / "1_Pooling" / "config.json") or {}
        if not (pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens")):
            raise ModelNotAvailable(f"{folder} does not use mean pooling, the only pooling run here")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = ov.Core().compile_model(str(xml), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
        self.inputs = {port.get_any_name() for port in self.model.inputs}
        self.dimension = int(self.model.output(0).get_partial_shape()[2].get_length())
        self.max_tokens = max_tokens
        self.inferred = 0  # texts run through the model so far (a text read before is not run again)

    def token_ids(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        """Each text's first ``max_tokens`` word-piece ids, as the tokenizer gives them for the whole text.

        A chunk of ~1,000 characters keeps only its first 64 pieces, so each text is first tokenized up to the last
        whitespace before ``PREFIX_CHARS`` characters a piece (the words before a space split the same alone); a
        text whose prefix gives fewer pieces is tried again with a prefix twice as long, up to the whole text. On
        the offline corpus code has fewer than four characters a piece: a quarter of the tokenizer's time.
        ``max_tokens``: fewer pieces than the encoder's own limit (never more)."""
        max_tokens = min(max_tokens or self.max_tokens, self.max_tokens)
        ids: list[list[int]] = [[] for _ in texts]
        todo, limit = list(range(len(texts))), max_tokens * PREFIX_CHARS
        while todo:
            heads = []
            for i in todo:
                text = texts[i]
                cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit), text.rfind("\t", 0, limit))
                heads.append(text[:cut] if len(text) > limit and cut > 0 else text)
            with _tokenizer_threads() if len(heads) >= PARALLEL_TEXTS else contextlib.nullcontext():
                rows = self.tokenizer(heads, truncation=True, max_length=max_tokens)["input_ids"]
            again = []
            for i, head, row in zip(todo, heads, rows, strict=True):
                ids[i] = row
                if len(row) < max_tokens and len(head) < len(texts[i]):
                    again.append(i)
            todo, limit = again, limit * 2
        return ids

    def encode(self, texts: list[str], on_progress: Callable[[int], object] | None = None,
               max_tokens: int | None = None) -> np.ndarray:
        import openvino as ov

        if not texts:
            return np.zeros((0, self.dimension), dtype="float32")
        # Texts that read the same word pieces (the same setting documented in many classes) are inferred once.
        distinct: dict[tuple[int, ...], int] = {}
        slots = [distinct.setdefault(tuple(row), len(distinct)) for row in self.token_ids(texts, max_tokens)]
        ids = list(distinct)
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(ids), self.dimension), dtype="float32")
        done: list[int] = []
        errors: list[BaseException] = []

        def pooled(request: Any, batch: tuple[np.ndarray, np.ndarray]) -> None:
            try:
                rows, mask = batch
                hidden = request.get_output_tensor(0).data
                summed = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
                out[rows] = summed / np.linalg.norm(summed, axis=1, keepdims=True)
                done.append(len(rows))
            except BaseException as err:  # noqa: BLE001 - raised in the caller's thread after wait_all
                errors.append(err)

        queue = ov.AsyncInferQueue(self.model, int(self.model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue.set_callback(pooled)
        reported = 0
        for rows in batches(lengths, order):
            width = int(lengths[rows].max())
            tokens = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(tokens)
            for j, i in enumerate(rows):
                tokens[j, :lengths[i]] = ids[i]
                mask[j, :lengths[i]] = 1
            feed = {"input_ids": tokens, "attention_mask": mask, "token_type_ids": np.zeros_like(tokens)}
            queue.start_async({k: v for k, v in feed.items() if k in self.inputs}, (rows, mask.astype("float32")))
            if on_progress and (finished := sum(done)) > reported:
                on_progress(finished - reported)
                reported = finished
        queue.wait_all()
        if errors:
            raise errors[0]
        if on_progress and len(texts) > reported:
            on_progress(len(texts) - reported)
        self.inferred += len(ids)
        return out[slots]


class Embedder(Embeddings):
    """A sentence embedding model on the CPU: an OpenVINO int8 export (the embedded model) or PyTorch."""

    def __init__(self, model_path: str, name: str, max_tokens: int = EMBED_MAX_TOKENS, backend: str = "openvino-int8"):
        if backend not in BACKENDS:
            raise ModelNotAvailable(f"embedding backend {backend!r} is unknown: use one of {', '.join(BACKENDS)}.")
        try:
            if backend == "torch":
                from sentence_transformers import SentenceTransformer

                with models.quiet_exporters():
                    model = SentenceTransformer(model_path, device="cpu")
                model.max_seq_length = min(model.max_seq_length or max_tokens, max_tokens)
                self._model: Any = model
                self.dimension = int(model.get_sentence_embedding_dimension())
            else:
                self._model = _OpenVINOEncoder(model_path, max_tokens)
                self.dimension = self._model.dimension
        except (OSError, ValueError, RuntimeError) as err:  # ModelNotAvailable is a RuntimeError: the reason, then the fix
            raise ModelNotAvailable(
                f"the embedding model {name!r} does not load from {model_path} ({str(err).splitlines()[0][:160]}); "
                f"offline, use the embedded {EMBEDDED_EMBEDDING!r} (embedding_model setting) or a local folder.") from None
        weights = (read_json(Path(model_path) / READY_MARKER) or {}).get("weights") if backend != "torch" else None
        # What an index records of the embedder: an export with other weights makes other vectors.
        self.signature = f"{name}/{backend}/{max_tokens}" + (f"/{weights}" if weights else "")
        self._lock = threading.Lock()
        self._queries: dict[str, list[float]] = {}
        self._words: frozenset[str] | None = None

    def embed(self, texts: list[str], on_progress: Callable[[int], object] | None = None,
              max_tokens: int | None = None) -> np.ndarray:
        """Normalized float32 vectors for ``texts`` (in their order), batched by length; ``max_tokens``: read fewer
        word pieces of each than the embedder's own limit (OpenVINO; PyTorch reads its own limit)."""
        if isinstance(self._model, _OpenVINOEncoder):
            with self._lock:
                return self._model.encode(texts, on_progress, max_tokens)
        out = np.zeros((len(texts), self.dimension), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for b in range(0, len(order), TORCH_BATCH * 4):  # progress every four batches
            ids = order[b:b + TORCH_BATCH * 4]
            with self._lock:
                out[ids] = self._model.encode([texts[i] for i in ids], batch_size=TORCH_BATCH,
                                              normalize_embeddings=True, convert_to_numpy=True)
            if on_progress:
                on_progress(len(ids))
        return out

    def words(self) -> frozenset[str]:
        """The whole English words of the model's tokenizer vocabulary, lower case (``score``, ``model``; not word
        pieces such as ``##ing``): a dictionary of common words that comes with the model."""
        if self._words is None:
            tokenizer = self._model.tokenizer
            pieces = (piece.lstrip("\u0120\u2581").lower() for piece in tokenizer.get_vocab())
            self._words = frozenset(p for p in pieces if len(p) > 1 and p.isalpha() and p.isascii())
        return self._words

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


def calibration_texts(n: int = CALIBRATION_CHUNKS, seed: int = 0) -> list[str]:
    """``n`` chunks of Python code, the same on every machine with the same packages: from the installed libraries
    of the default corpus (``CALIBRATION_PACKAGES``), or from this project's helpers when none is installed."""
    roots = [Path(loc) for pkg in CALIBRATION_PACKAGES if (spec := importlib.util.find_spec(pkg))
             for loc in (spec.submodule_search_locations or [])]
    files = sorted(f for root in roots or [REPO_ROOT / "helpers"] for f in root.rglob("*.py"))
    rng = random.Random(seed)
    texts: list[str] = []
    for path in rng.sample(files, min(len(files), n)):
        chunks = chunk_file("calibration", path.name, path.read_text(errors="replace"))
        if chunks:
            texts.append(rng.choice(chunks).dense_text)
    return texts[:n]


def _quantize(xml: Path, tokenizer_folder: Path, texts: list[str]) -> None:
    """Replace the OpenVINO model at ``xml`` by its static int8 form, calibrated on ``texts``."""
    import nncf
    import openvino as ov
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    model = ov.Core().read_model(str(xml))
    names = {port.get_any_name() for port in model.inputs}
    items = [{k: v.astype(np.int64) for k, v in tokenizer(t, truncation=True, max_length=EMBED_MAX_TOKENS,
                                                          return_tensors="np").items() if k in names} for t in texts]
    quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(items))
    for old in (xml, xml.with_suffix(".bin")):
        old.unlink()
    ov.save_model(quantized, str(xml))


def prepare_openvino_embedder(cfg: WorkshopConfig, progress: bool = True) -> Path:
    """The embedded sentence embedder as a static int8 OpenVINO model under ``<work_dir>/models`` (made once,
    ~25 s: sentence-transformers exports it, nncf quantizes it on ``calibration_texts``), made again when the
    model's files, the quantization or the chunker that cuts the calibration texts change; its stamp records the
    weights' digest. Checking that it is there is all that runs at every start: sentence-transformers (~5 s to
    import) is imported only to make it."""
    source = Path(models.embedding_model_path(cfg))
    out = cfg.models_dir / f"{cfg.embedding_model}-openvino-int8"
    stamp = {"source": str(source), "files": sorted(p.name for p in source.iterdir()), "quantization": QUANTIZATION}
    made = read_json(out / READY_MARKER) or {}
    if {key: made.get(key) for key in stamp} == stamp:
        return out
    from sentence_transformers import SentenceTransformer

    if progress:
        print(f"Exporting {cfg.embedding_model} to OpenVINO and quantizing it to int8 (once) …", flush=True)
    with staged_dir(out) as tmp, models.quiet_exporters():
        SentenceTransformer(str(source), device="cpu", backend="openvino").save_pretrained(str(tmp))
        xml = tmp / "openvino" / "openvino_model.xml"
        _quantize(xml, tmp, calibration_texts())
        weights = hashlib.sha256(xml.with_suffix(".bin").read_bytes()).hexdigest()[:WEIGHTS_DIGEST]
        write_json(tmp / READY_MARKER, stamp | {"weights": weights})
    return out


def embedder(cfg: WorkshopConfig) -> Embedder:
    """The (cached) embedder for ``cfg.embedding_model``: the embedded one as OpenVINO int8, others with PyTorch."""
    if cfg.embedding_model == EMBEDDED_EMBEDDING:
        path, backend = str(prepare_openvino_embedder(cfg, progress=False)), "openvino-int8"
    else:
        path, backend = models.embedding_model_path(cfg), "torch"
    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = Embedder(path, cfg.embedding_model, backend=backend)
    return _EMBEDDERS[path]
