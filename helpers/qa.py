"""Step 6: index the flattened sources and answer questions about them with retrieval plus the generator.

The code is cut along its own structure (module, class, function; headings for Markdown; top-level keys for
YAML), each chunk prefixed with its path and qualified name and remembering its line range, so every answer can
cite ``path:line``. Chunks are embedded with all-MiniLM-L6-v2 into FAISS through LangChain; the index is saved as
a FAISS file plus a SQLite table of chunk metadata (no pickle, so a shared index cannot run code), and a rebuild
re-embeds only files whose content hash changed. Retrieval is dense, lexical (BM25) or hybrid (reciprocal rank
fusion); the chain is LangChain runnables: question -> retrieve -> prompt -> generator -> answer plus sources.
"""

from __future__ import annotations

import ast
import hashlib
import html
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from helpers.config import WorkshopConfig

INDEX_FILE = "faiss.index"
META_FILE = "chunks.sqlite"
CHUNKER_VERSION = 3
MAX_CHUNK_LINES = 60  # longer functions are split into windows of this many lines
WINDOW_LINES = 40  # plain text files without structure
EMBED_BATCH = 64
EMBED_MAX_TOKENS = 128  # word pieces embedded per chunk: header, signature and docstring come first
EMBED_INT8 = True  # dynamic int8 Linear layers: about 2x faster embedding on CPU for a negligible recall change
MODES = ("hybrid", "dense", "bm25")
DEFAULT_MODE = "hybrid"  # best recall@5 and MRR on the evaluation set (see 06_retrieval_qa.ipynb)
DEFAULT_K = 4
RRF_K = 60  # the usual reciprocal-rank-fusion constant
ANSWER_FORMATS = ("symbol-first", "plain")
MAX_QUESTION_CHARS = 4000
NO_ANSWER = "I could not find this in the indexed code."


class QAError(ValueError):
    """A question, index or model the QA step cannot use; the message says what to do instead."""


# ---------------------------------------------------------------------------------------------- chunking


@dataclass
class Chunk:
    """A piece of one source file: where it is (source, path, lines), what it is (symbol, kind) and its text."""

    source: str
    path: str
    start_line: int
    end_line: int
    symbol: str  # qualified name, e.g. 'StreamingDataset.__init__', or a heading / top-level key
    kind: str  # 'module' | 'class' | 'function' | 'section' | 'key' | 'text'
    text: str  # the original lines, without the header
    file_hash: str = ""

    @property
    def header(self) -> str:
        return f"{self.source}/{self.path} · {self.symbol} · lines {self.start_line}-{self.end_line}"

    @property
    def citation(self) -> str:
        return f"{self.path}:{self.start_line}"

    @property
    def embed_text(self) -> str:
        """What is embedded and searched: the header (path and qualified name) then the code."""
        return self.header + "\n" + self.text

    @property
    def key(self) -> str:
        return f"{self.source}/{self.path}:{self.start_line}-{self.end_line}:{self.symbol}"


def _module_name(path: str) -> str:
    stem = path[:-3] if path.endswith(".py") else path
    parts = [p for p in stem.split("/") if p]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or path


def _spans_to_chunks(lines: list[str], spans: list[tuple[int, int, str, str]], source: str, path: str) -> list[Chunk]:
    """Turn (first, last, symbol, kind) line spans (1-based, inclusive) into chunks, splitting long ones."""
    chunks = []
    for first, last, symbol, kind in spans:
        body = lines[first - 1:last]
        if not "".join(body).strip():
            continue
        if len(body) <= MAX_CHUNK_LINES:
            chunks.append(Chunk(source, path, first, last, symbol, kind, "\n".join(body)))
            continue
        for offset in range(0, len(body), MAX_CHUNK_LINES):
            part = body[offset:offset + MAX_CHUNK_LINES]
            if "".join(part).strip():
                start = first + offset
                name = symbol if offset == 0 else f"{symbol} (continued)"
                chunks.append(Chunk(source, path, start, start + len(part) - 1, name, kind, "\n".join(part)))
    return chunks


def _python_spans(text: str, path: str) -> list[tuple[int, int, str, str]]:
    """Module-level code, each class head and each function/method as its own span, named by qualified name."""
    tree = ast.parse(text)
    module = _module_name(path)
    spans: list[tuple[int, int, str, str]] = []

    def start_of(node: ast.AST) -> int:
        decorators = getattr(node, "decorator_list", [])
        return min([node.lineno] + [d.lineno for d in decorators])

    def walk(body: list[ast.stmt], prefix: str, loose_kind: str, loose_name: str) -> None:
        loose: list[ast.stmt] = []

        def flush() -> None:
            if loose:
                spans.append((start_of(loose[0]), loose[-1].end_lineno or loose[-1].lineno, loose_name, loose_kind))
                loose.clear()

        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                flush()
                spans.append((start_of(node), node.end_lineno or node.lineno, prefix + node.name, "function"))
            elif isinstance(node, ast.ClassDef):
                flush()
                qual = prefix + node.name
                defs = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
                end = node.end_lineno or node.lineno
                if not defs or end - start_of(node) + 1 <= 25:
                    spans.append((start_of(node), end, qual, "class"))
                    continue
                # The class head: decorators, signature, docstring and attributes up to the first method.
                head_end = start_of(defs[0]) - 1
                spans.append((start_of(node), head_end, qual, "class"))
                rest = [n for n in node.body if n.lineno > head_end]
                walk(rest, qual + ".", "class", qual)
            else:
                loose.append(node)
        flush()

    walk(tree.body, "", "module", module)
    return sorted(spans)


def _markdown_spans(lines: list[str]) -> list[tuple[int, int, str, str]]:
    """One span per heading section (heading text as the name; '#' lines inside code fences are ignored)."""
    spans, title, start, fenced = [], "(top)", 1, False
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"^#{1,6}\s", line) and i > start:
            spans.append((start, i - 1, title, "section"))
            start = i
        if not fenced and re.match(r"^#{1,6}\s", line):
            title = line.lstrip("#").strip() or "(untitled)"
    spans.append((start, len(lines), title, "section"))
    return spans


def _yaml_spans(lines: list[str]) -> list[tuple[int, int, str, str]]:
    """One span per top-level key (comments directly above a key belong to it)."""
    starts = []
    for i, line in enumerate(lines, 1):
        m = re.match(r"^([A-Za-z0-9_.\-\"']+)\s*:", line)
        if m:
            first = i
            while first > 1 and lines[first - 2].startswith("#"):
                first -= 1
            starts.append((first, m.group(1).strip("\"'")))
    if not starts:
        return [(1, len(lines), "(document)", "key")]
    spans = []
    if starts[0][0] > 1:
        spans.append((1, starts[0][0] - 1, "(header)", "key"))
    for (first, name), nxt in zip(starts, starts[1:] + [(len(lines) + 1, "")]):
        spans.append((first, nxt[0] - 1, name, "key"))
    return spans


def _window_spans(lines: list[str], name: str) -> list[tuple[int, int, str, str]]:
    return [(s, min(s + WINDOW_LINES - 1, len(lines)), name, "text") for s in range(1, len(lines) + 1, WINDOW_LINES)]


def chunk_file(source: str, path: str, text: str) -> list[Chunk]:
    """Cut one file by its structure: Python by ``ast``, Markdown by headings, YAML by top-level keys, else windows."""
    lines = text.splitlines()
    if not lines:
        return []
    lower = path.lower()
    spans: list[tuple[int, int, str, str]]
    if lower.endswith(".py"):
        try:
            spans = _python_spans(text, path)
        except (SyntaxError, ValueError):
            spans = _window_spans(lines, _module_name(path))
    elif lower.endswith(".md"):
        spans = _markdown_spans(lines)
    elif lower.endswith((".yaml", ".yml")):
        spans = _yaml_spans(lines)
    else:
        spans = _window_spans(lines, Path(path).name)
    digest = file_hash(text)
    chunks = _spans_to_chunks(lines, spans, source, path)
    for c in chunks:
        c.file_hash = digest
    return chunks


def file_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- lexical search

_STOP = frozenset("""a an and are as at be by for from how i if in is it its of on or that the this to what when where
which who why with does do can self def return none true false import class cls""".split())


def code_tokens(text: str) -> list[str]:
    """Lower-case words for BM25, with identifiers also split at '_' and camelCase (``num_canonical_nodes`` -> 4)."""
    out = []
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+", text):
        low = word.lower()
        if low not in _STOP:
            out.append(low)
        parts = [p.lower() for p in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", word)]
        if len(parts) > 1:
            out.extend(p for p in parts if p not in _STOP and len(p) > 1)
    return out


# ---------------------------------------------------------------------------------------------- the index


@dataclass
class BuildStats:
    """What a build did: files and chunks in the index, how many were embedded now vs reused, and seconds."""

    files: int
    chunks: int
    embedded: int
    reused: int
    removed_files: int
    seconds: float


def embeddings(cfg: WorkshopConfig):
    """The LangChain embedding object for ``cfg.embedding_model`` (normalized vectors, so inner product = cosine)."""
    from langchain_huggingface import HuggingFaceEmbeddings

    from helpers import models

    emb = HuggingFaceEmbeddings(model_name=models.embedding_model_path(cfg), model_kwargs={"device": "cpu"},
                                encode_kwargs={"normalize_embeddings": True, "batch_size": EMBED_BATCH})
    emb._client.max_seq_length = min(emb._client.max_seq_length or EMBED_MAX_TOKENS, EMBED_MAX_TOKENS)
    if EMBED_INT8:
        import torch

        emb._client = torch.ao.quantization.quantize_dynamic(emb._client, {torch.nn.Linear}, dtype=torch.qint8)
    return emb


def _read_meta(folder: Path) -> tuple[dict[str, str], list[Chunk]]:
    con = sqlite3.connect(f"file:{folder / META_FILE}?mode=ro", uri=True)
    try:
        info = dict(con.execute("SELECT key, value FROM info"))
        rows = con.execute("SELECT source, path, start_line, end_line, symbol, kind, text, file_hash FROM chunks ORDER BY row")
        chunks = [Chunk(*r) for r in rows]
    finally:
        con.close()
    return info, chunks


def _write_meta(path: Path, info: dict[str, str], chunks: list[Chunk]) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("CREATE TABLE chunks (row INTEGER PRIMARY KEY, source TEXT, path TEXT, start_line INTEGER, "
                    "end_line INTEGER, symbol TEXT, kind TEXT, text TEXT, file_hash TEXT)")
        con.executemany("INSERT INTO info VALUES (?, ?)", info.items())
        con.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(i, c.source, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.text, c.file_hash)
                         for i, c in enumerate(chunks)])
        con.commit()
    finally:
        con.close()


def _index_info(cfg: WorkshopConfig) -> dict[str, str]:
    return {"embedding_model": cfg.embedding_model, "chunker_version": str(CHUNKER_VERSION),
            "embed_max_tokens": str(EMBED_MAX_TOKENS), "embed_int8": str(EMBED_INT8)}


def build_index(cfg: WorkshopConfig, records: Iterable[Any] | None = None, progress: bool = True) -> BuildStats:
    """Index every file of step 1 (or ``records``) into ``cfg.index_dir``, re-embedding only changed files.

    A file whose text hash matches the saved index keeps its chunks and vectors; new or changed files are chunked
    and embedded; files that disappeared are dropped. The new index is written beside the old one and swapped in.
    """
    import faiss
    import numpy as np
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if records is None:
        from helpers import repos

        records = list(repos.iter_records(cfg))
    records = list(records)
    if not records:
        raise QAError(f"no source files to index in {cfg.retrieval_data_dir}: run 01_download_repos.ipynb first.")

    old_chunks: dict[tuple[str, str], list[tuple[Chunk, int]]] = {}
    old_vectors = None
    folder = cfg.index_dir
    if (folder / META_FILE).is_file() and (folder / INDEX_FILE).is_file():
        try:
            info, chunks = _read_meta(folder)
            if info == _index_info(cfg):
                index = faiss.read_index(str(folder / INDEX_FILE))
                if index.ntotal == len(chunks):
                    old_vectors = index.reconstruct_n(0, index.ntotal)
                    for row, c in enumerate(chunks):
                        old_chunks.setdefault((c.source, c.path), []).append((c, row))
        except (sqlite3.DatabaseError, RuntimeError):
            old_chunks, old_vectors = {}, None  # unreadable or foreign index: rebuild from scratch

    kept: list[Chunk] = []
    kept_rows: list[int] = []
    fresh: list[Chunk] = []
    seen_files = set()
    for rec in records:
        text = Path(rec.text_file).read_text(encoding="utf-8")
        key = (rec.source, rec.path)
        seen_files.add(key)
        previous = old_chunks.get(key)
        if previous and previous[0][0].file_hash == file_hash(text):
            kept.extend(c for c, _ in previous)
            kept_rows.extend(r for _, r in previous)
        else:
            fresh.extend(chunk_file(rec.source, rec.path, text))
    removed = len(set(old_chunks) - seen_files)
    all_chunks = kept + fresh
    if not all_chunks:
        raise QAError("the source files hold no text to index: check step 1's output in "
                      f"{cfg.retrieval_data_dir}.")

    emb = embeddings(cfg)
    dim = len(emb.embed_query("dimension probe"))
    vectors = np.zeros((len(all_chunks), dim), dtype="float32")
    if kept_rows:
        vectors[: len(kept)] = old_vectors[kept_rows]
    if fresh:
        # Similar lengths batched together waste less padding; the bar counts chunks.
        order = sorted(range(len(fresh)), key=lambda i: len(fresh[i].embed_text))
        with tqdm(total=len(fresh), desc="Embedding chunks", unit="chunk", disable=not progress) as bar:
            for b in range(0, len(order), EMBED_BATCH * 4):
                ids = order[b:b + EMBED_BATCH * 4]
                vecs = emb.embed_documents([fresh[i].embed_text for i in ids])
                vectors[[len(kept) + i for i in ids]] = np.asarray(vecs, dtype="float32")
                bar.update(len(ids))

    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    faiss.write_index(index, str(tmp / INDEX_FILE))
    _write_meta(tmp / META_FILE, _index_info(cfg), all_chunks)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return BuildStats(files=len(seen_files), chunks=len(all_chunks), embedded=len(fresh), reused=len(kept),
                      removed_files=removed, seconds=round(time.perf_counter() - start, 2))


@dataclass
class Hit:
    """One retrieved chunk with its rank score (cosine for dense, BM25 score, or fused RRF score)."""

    chunk: Chunk
    score: float


class CodeIndex:
    """A loaded index: chunks, the LangChain FAISS store for dense search, and a BM25 index for lexical search."""

    def __init__(self, cfg: WorkshopConfig, chunks: list[Chunk], faiss_index: Any):
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy
        from langchain_core.documents import Document

        self.cfg = cfg
        self.chunks = chunks
        ids = [str(i) for i in range(len(chunks))]
        docs = {i: Document(page_content=c.embed_text, metadata={"row": int(i)}, id=i) for i, c in zip(ids, chunks)}
        self.store = FAISS(embeddings(cfg), faiss_index, InMemoryDocstore(docs), dict(enumerate(ids)),
                           distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
        self._bm25 = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, cfg: WorkshopConfig) -> "CodeIndex":
        """Open ``cfg.index_dir`` (FAISS file + SQLite metadata); a missing or empty index raises QAError."""
        import faiss

        folder = cfg.index_dir
        if not (folder / META_FILE).is_file() or not (folder / INDEX_FILE).is_file():
            raise QAError(f"no index in {folder}: run 06_retrieval_qa.ipynb (or qa.build_index(cfg)) first.")
        try:
            info, chunks = _read_meta(folder)
        except sqlite3.DatabaseError as err:
            raise QAError(f"{folder / META_FILE} is not a readable index ({err}); rebuild it with qa.build_index(cfg).") from None
        if info.get("embedding_model") != cfg.embedding_model:
            raise QAError(f"the index in {folder} was built with embedding model {info.get('embedding_model')!r}, "
                          f"not {cfg.embedding_model!r}: rebuild it with qa.build_index(cfg).")
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(chunks):
            raise QAError(f"{folder}: {index.ntotal} vectors but {len(chunks)} chunks; rebuild it with qa.build_index(cfg).")
        return cls(cfg, chunks, index)

    def __len__(self) -> int:
        return len(self.chunks)

    def _bm25_index(self):
        from rank_bm25 import BM25Okapi

        with self._lock:
            if self._bm25 is None:
                self._bm25 = BM25Okapi([code_tokens(c.embed_text) for c in self.chunks])
        return self._bm25

    def dense(self, question: str, n: int) -> list[Hit]:
        pairs = self.store.similarity_search_with_score(question, k=min(n, len(self.chunks)))
        return [Hit(self.chunks[d.metadata["row"]], float(s)) for d, s in pairs]

    def bm25(self, question: str, n: int) -> list[Hit]:
        import numpy as np

        tokens = code_tokens(question)
        if not tokens:
            return []
        scores = self._bm25_index().get_scores(tokens)
        top = np.argsort(-scores)[:n]
        return [Hit(self.chunks[i], float(scores[i])) for i in top if scores[i] > 0]

    def search(self, question: str, k: int = DEFAULT_K, mode: str = DEFAULT_MODE) -> list[Hit]:
        """The ``k`` best chunks for ``question`` by ``mode``: 'dense', 'bm25' or 'hybrid' (reciprocal rank fusion)."""
        if mode not in MODES:
            raise QAError(f"retrieval mode {mode!r} is unknown: use one of {', '.join(MODES)}.")
        if not self.chunks:
            raise QAError("the index is empty: rebuild it with qa.build_index(cfg) after step 1.")
        if mode == "dense":
            return self.dense(question, k)
        if mode == "bm25":
            return self.bm25(question, k)
        pool = max(4 * k, 20)
        fused: dict[int, float] = {}
        chunk_of: dict[int, Chunk] = {}
        for hits in (self.dense(question, pool), self.bm25(question, pool)):
            for rank, hit in enumerate(hits):
                fused[id(hit.chunk)] = fused.get(id(hit.chunk), 0.0) + 1.0 / (RRF_K + rank + 1)
                chunk_of[id(hit.chunk)] = hit.chunk
        best = sorted(fused, key=lambda key: -fused[key])[:k]
        return [Hit(chunk_of[key], fused[key]) for key in best]


def retriever(index: CodeIndex, k: int = DEFAULT_K, mode: str = DEFAULT_MODE):
    """A LangChain retriever over ``index`` returning Documents whose metadata carry path, lines and symbol."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class CodeRetriever(BaseRetriever):
        """Retrieves code chunks by dense, BM25 or hybrid search."""

        idx: Any
        k: int
        mode: str

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            return [Document(page_content=h.chunk.text, metadata={
                "source": h.chunk.source, "path": h.chunk.path, "start_line": h.chunk.start_line,
                "end_line": h.chunk.end_line, "symbol": h.chunk.symbol, "kind": h.chunk.kind, "score": h.score})
                for h in self.idx.search(query, self.k, self.mode)]

    return CodeRetriever(idx=index, k=k, mode=mode)


# ---------------------------------------------------------------------------------------------- generators


def model_choices(cfg: WorkshopConfig) -> dict[str, str]:
    """Label -> generator name for the models available now: 'base', 'finetuned' (if step 4 ran)."""
    from helpers import deploy

    choices = {"base": "base"}
    try:
        deploy.model_folder(cfg, "finetuned")
        choices["finetuned"] = "finetuned"
    except deploy.DeployError:
        pass
    return choices


class LocalGenerator:
    """The generator in this process: greedy decoding with a KV cache, optionally int8-quantized Linear layers."""

    def __init__(self, folder: str, quantize: bool = False, threads: int | None = None, dtype: str = "float32"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
        except (OSError, ValueError) as err:
            raise QAError(f"the model folder {folder} does not load ({err}); prepare it again (00_setup / 04).") from None
        model.eval()
        if quantize:
            # Dynamic int8 Linear layers: faster, but a 135M model's answers turn to noise (measured in step 6).
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self.folder = folder
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def render(self, messages: list[dict[str, str]], answer_prefix: str = "") -> str:
        """The chat-template text the model continues (with an optional start of the assistant's answer)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + answer_prefix

    def stream(self, prompt: str, max_new_tokens: int = 64, min_new_tokens: int = 0) -> Iterator[str]:
        """Yield decoded text pieces as the model produces them (generation runs in a background thread)."""
        import torch
        from transformers import TextIteratorStreamer

        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=False,
                                        min_new_tokens=min_new_tokens or None,
                                        repetition_penalty=1.1, pad_token_id=self.tokenizer.pad_token_id)
            except BaseException as err:  # surfaced in the caller's thread below
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]


class EndpointGenerator:
    """The step-5 MLflow model server: the prompt is rendered here and sent to its /invocations route."""

    def __init__(self, url: str, template_folder: str):
        from transformers import AutoTokenizer

        self.url = url.rstrip("/")
        self.tokenizer = AutoTokenizer.from_pretrained(template_folder)
        self.max_positions = 8192

    count_tokens = LocalGenerator.count_tokens
    render = LocalGenerator.render

    def stream(self, prompt: str, max_new_tokens: int = 64, min_new_tokens: int = 0) -> Iterator[str]:
        from helpers import deploy

        yield deploy.query(self.url, prompt, max_new_tokens=max_new_tokens)


_GENERATORS: dict[tuple, Any] = {}


def generator(cfg: WorkshopConfig, choice: str = "base", endpoint_url: str = "", quantize: bool = False,
              dtype: str = "float32"):
    """A cached generator: 'base' (the embedded model), 'finetuned' (step 4) or 'endpoint' (step 5's server)."""
    from helpers import deploy, models

    if choice == "endpoint":
        if not endpoint_url:
            raise QAError("choice 'endpoint' needs the server's URL (see 05_deploy.ipynb), e.g. http://127.0.0.1:5001.")
        key = ("endpoint", endpoint_url)
        if key not in _GENERATORS:
            _GENERATORS[key] = EndpointGenerator(endpoint_url, models.prepare_generator(cfg, progress=False))
        return _GENERATORS[key]
    try:
        folder = deploy.model_folder(cfg, choice)
    except deploy.DeployError as err:
        raise QAError(str(err)) from None
    key = ("local", folder, quantize, dtype)
    if key not in _GENERATORS:
        _GENERATORS[key] = LocalGenerator(folder, quantize=quantize, dtype=dtype)
    return _GENERATORS[key]


# ---------------------------------------------------------------------------------------------- prompt + chain

SYSTEM_PROMPT = (
    "You answer questions about a Python code base using only the numbered code excerpts given. "
    "Answer in one or two sentences. Name the function or class that does it and quote its identifiers exactly. "
    f"If the excerpts do not contain the answer, say: {NO_ANSWER}"
)


def _excerpt(chunk: Chunk, tokenizer: Any, budget: int) -> str:
    """The chunk's first lines (signature and docstring come first) cut to ``budget`` tokens."""
    ids = tokenizer(chunk.text, add_special_tokens=False).input_ids
    if len(ids) <= budget:
        return chunk.text
    return tokenizer.decode(ids[:budget]).rstrip() + "\n..."


def build_messages(question: str, hits: list[Hit], tokenizer: Any, context_tokens: int = 700) -> list[dict[str, str]]:
    """System rules, then the excerpts (best first, the best one given the largest share), then the question."""
    blocks = []
    remaining = context_tokens
    for rank, hit in enumerate(hits):
        share = remaining // 2 if rank < len(hits) - 1 else remaining
        if share < 24:
            break
        body = _excerpt(hit.chunk, tokenizer, share)
        block = f"[{rank + 1}] {hit.chunk.path}:{hit.chunk.start_line} ({hit.chunk.symbol})\n{body}"
        blocks.append(block)
        remaining -= len(tokenizer(block, add_special_tokens=False).input_ids)
    context = "\n\n".join(blocks)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Code excerpts:\n{context}\n\nQuestion: {question}"}]


def docstring_summary(chunk: Chunk) -> str:
    """The first sentence of a Python chunk's docstring (function, class or module), or ''."""
    import textwrap

    if not chunk.path.endswith(".py") or chunk.symbol.endswith("(continued)"):
        return ""
    try:
        tree = ast.parse(textwrap.dedent(chunk.text))
    except (SyntaxError, ValueError):
        return ""
    node = tree.body[0] if chunk.kind in ("function", "class") and tree.body else tree
    try:
        doc = ast.get_docstring(node) or ""
    except TypeError:
        return ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", first)
    return (match.group(1) if match else first).rstrip(".")


def lead_sentence(hits: list[Hit]) -> str:
    """The symbol-first opening: the best-matching symbol, its location and docstring summary, from retrieval."""
    if not hits:
        return ""
    c = hits[0].chunk
    name = c.symbol.removesuffix(" (continued)")
    summary = docstring_summary(c)
    return f"`{name}` in {c.path}:{c.start_line}" + (f": {summary}." if summary else ".") + "\n"


@dataclass
class Answer:
    """An answer with its sources and timings; ``error`` holds a user-facing message when nothing could be asked."""

    question: str
    text: str = ""
    model_text: str = ""  # only what the model generated (without the symbol-first lead)
    hits: list[Hit] = field(default_factory=list)
    retrieval_s: float = 0.0
    seconds: float = 0.0
    error: str = ""

    @property
    def sources(self) -> list[str]:
        return [h.chunk.citation for h in self.hits]


def check_question(question: Any, tokenizer: Any | None = None, max_tokens: int | None = None) -> str:
    """The cleaned question, or QAError with a message for an empty, non-text or too-long question."""
    if not isinstance(question, str) or not question.strip():
        raise QAError("Please type a question about the code base (the question is empty).")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise QAError(f"The question is {len(question)} characters long; please keep it under {MAX_QUESTION_CHARS}.")
    if tokenizer is not None and max_tokens is not None:
        n = len(tokenizer(question, add_special_tokens=False).input_ids)
        if n > max_tokens:
            raise QAError(f"The question is {n} tokens long but the model's context leaves room for {max_tokens}; "
                          "please shorten it.")
    return question


def build_chain(index: CodeIndex, gen: Any, k: int = DEFAULT_K, mode: str = DEFAULT_MODE, max_new_tokens: int = 64,
                answer_format: str = "symbol-first", context_tokens: int = 700,
                on_token: Callable[[str], None] | None = None, timing: dict[str, float] | None = None):
    """The LangChain runnable: {question} -> retrieve k -> prompt -> generator -> {answer, model_text, hits}."""
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    if answer_format not in ANSWER_FORMATS:
        raise QAError(f"answer_format {answer_format!r} is unknown: use one of {', '.join(ANSWER_FORMATS)}.")

    def retrieve(inputs: dict) -> list[Hit]:
        t0 = time.perf_counter()
        hits = index.search(inputs["question"], k, mode)
        if timing is not None:
            timing["retrieval_s"] = time.perf_counter() - t0
        return hits

    def prompt(inputs: dict) -> str:
        lead = lead_sentence(inputs["hits"]) if answer_format == "symbol-first" else ""
        messages = build_messages(inputs["question"], inputs["hits"], gen.tokenizer, context_tokens)
        return gen.render(messages, lead)

    def generate(inputs: dict) -> dict:
        lead = lead_sentence(inputs["hits"]) if answer_format == "symbol-first" else ""
        if on_token and lead:
            on_token(lead)
        pieces = []
        for piece in gen.stream(inputs["prompt"], max_new_tokens):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        model_text = "".join(pieces).strip()
        return {"answer": (lead + model_text).strip(), "model_text": model_text}

    return (RunnablePassthrough.assign(hits=RunnableLambda(retrieve))
            | RunnablePassthrough.assign(prompt=RunnableLambda(prompt))
            | RunnablePassthrough.assign(result=RunnableLambda(generate)))


def ask(index: CodeIndex, gen: Any, question: Any, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
        max_new_tokens: int = 64, answer_format: str = "symbol-first", context_tokens: int = 700,
        on_token: Callable[[str], None] | None = None) -> Answer:
    """Answer one question; bad input or an empty index comes back as ``Answer.error``, never a traceback."""
    start = time.perf_counter()
    try:
        room = gen.max_positions - max_new_tokens - context_tokens - 200
        question = check_question(question, gen.tokenizer, room)
        if len(index) == 0:
            raise QAError("The index is empty: run step 1 and then qa.build_index(cfg).")
        timing: dict[str, float] = {}
        chain = build_chain(index, gen, k, mode, max_new_tokens, answer_format, context_tokens, on_token, timing)
        out = chain.invoke({"question": question})
        return Answer(question, out["result"]["answer"], out["result"]["model_text"], out["hits"],
                      timing.get("retrieval_s", 0.0), time.perf_counter() - start)
    except QAError as err:
        return Answer(question if isinstance(question, str) else "", error=str(err),
                      seconds=time.perf_counter() - start)


def escape(text: str) -> str:
    """HTML-escape document or model text before it is shown in a page."""
    return html.escape(text, quote=True)
