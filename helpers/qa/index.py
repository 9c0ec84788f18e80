"""The search index on disk: FAISS files of chunk and setting vectors plus SQLite tables of both, no pickle.

``build_index`` chunks every file of step 1, embeds the chunks and writes ``<work_dir>/index/``; a rebuild
re-embeds only files whose content hash changed. ``load_index`` reads it back and checks that it was built
with the same embedder and chunker, so opening an index someone sent you can never run their code.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from helpers import repos
from helpers.config import WorkshopConfig
from helpers.constants import run_first
from helpers.errors import QAError
from helpers.files import staged_dir
from helpers.qa.chunking import CHUNKER_VERSION, Chunk, chunk_file, embedded_texts, file_hash, is_embedded
from helpers.qa.documented import passage_text, setting_passages
from helpers.qa.embedding import Embedder, embedder

INDEX_FILE = "faiss.index"
META_FILE = "chunks.sqlite"
SETTINGS_FILE = "settings.index"  # one vector per documented setting (``documented``), rows of the settings table
SETTINGS_VERSION = 2  # 2: 32 word pieces
# Word pieces the embedder reads of a setting ("Trainer save_num_checkpoints_to_keep: The number of …"): on the
# tuning halves as good as 64 (README), and the settings embed in about half the time.
SETTING_MAX_TOKENS = 32
# Which chunks have vectors (``chunking.is_embedded``): an index built with another rule is rebuilt.
DENSE_SCOPE = "library code and docs, not tests or examples"


@dataclass
class Settings:
    """The documented settings of an index: for each, the row of the chunk holding it, its line and the text the
    embedder read, and their vectors (a FAISS index; all zeros until a lexical-first build is embedded)."""

    rows: list[int]
    lines: list[int]
    texts: list[str]
    vectors: Any


@dataclass
class BuildStats:
    """What a build did: files and chunks in the index, how many were embedded now vs reused, and seconds."""

    files: int
    chunks: int
    embedded: int  # chunks given vectors now (new or changed files; tests and examples get none)
    reused: int
    removed_files: int
    seconds: float
    settings: int = 0  # documented settings in the index (``documented``)
    settings_embedded: int = 0  # of them embedded now (the others' files were unchanged)


def _read_meta(folder: Path, expected: dict[str, str]) -> tuple[dict[str, str], list[Chunk]]:
    """The index's info, and its chunks when the info is ``expected`` (an older chunker's table may lack columns)."""
    con = sqlite3.connect(f"file:{folder / META_FILE}?mode=ro", uri=True)
    try:
        info = dict(con.execute("SELECT key, value FROM info"))
        if info != expected:
            return info, []
        rows = con.execute("SELECT source, path, start_line, end_line, symbol, kind, text, file_hash, summary "
                           "FROM chunks ORDER BY row")
        chunks = [Chunk(*r) for r in rows]
    finally:
        con.close()
    return info, chunks


def _read_settings(folder: Path) -> tuple[list[int], list[int], list[str]]:
    con = sqlite3.connect(f"file:{folder / META_FILE}?mode=ro", uri=True)
    try:
        found = list(con.execute("SELECT chunk_row, line, text FROM settings ORDER BY row"))
    finally:
        con.close()
    return [r[0] for r in found], [r[1] for r in found], [r[2] for r in found]


def _write_meta(path: Path, info: dict[str, str], chunks: list[Chunk],
                settings: list[tuple[int, int, str]]) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("CREATE TABLE chunks (row INTEGER PRIMARY KEY, source TEXT, path TEXT, start_line INTEGER, "
                    "end_line INTEGER, symbol TEXT, kind TEXT, text TEXT, file_hash TEXT, summary TEXT)")
        con.executemany("INSERT INTO info VALUES (?, ?)", info.items())
        con.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(i, c.source, c.path, c.start_line, c.end_line, c.symbol, c.kind, c.text, c.file_hash,
                          c.summary) for i, c in enumerate(chunks)])
        con.execute("CREATE TABLE settings (row INTEGER PRIMARY KEY, chunk_row INTEGER, line INTEGER, text TEXT)")
        con.executemany("INSERT INTO settings VALUES (?, ?, ?, ?)", [(i, *row) for i, row in enumerate(settings)])
        con.commit()
    finally:
        con.close()


def index_info(cfg: WorkshopConfig, emb: Embedder) -> dict[str, str]:
    """What an index was built with; an index whose info differs is rebuilt from scratch."""
    return {"embedding_model": cfg.embedding_model, "embedder": emb.signature,
            "chunker_version": str(CHUNKER_VERSION), "settings_version": f"{SETTINGS_VERSION}/{SETTING_MAX_TOKENS}",
            "dense_scope": DENSE_SCOPE}


def _read_faiss(path: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as err:
        raise QAError(f"{path} is not a readable FAISS index ({str(err).splitlines()[0][:120]}); rebuild it with "
                      "qa.build_index(cfg).") from None


def load_index(cfg: WorkshopConfig, emb: Embedder | None = None) -> tuple[list[Chunk], Any]:
    """The chunks and the FAISS index in ``cfg.index_dir``; a missing, foreign or damaged index raises QAError."""
    folder = cfg.index_dir
    if not (folder / META_FILE).is_file() or not (folder / INDEX_FILE).is_file():
        raise QAError(f"no index in {folder}: {run_first(6)} (or qa.build_index(cfg)).")
    expected = index_info(cfg, emb or embedder(cfg))
    try:
        info, chunks = _read_meta(folder, expected)
    except sqlite3.DatabaseError as err:
        raise QAError(f"{folder / META_FILE} is not a readable index ({err}); rebuild it with qa.build_index(cfg).") \
            from None
    if info != expected:
        others = "".join(f"; its {key} is {info.get(key)!r}, not {value!r}" for key, value in expected.items()
                         if key not in ("embedder", "embedding_model", "chunker_version") and info.get(key) != value)
        raise QAError(f"the index in {folder} was built with {info.get('embedder') or info.get('embedding_model')!r} "
                      f"(chunker {info.get('chunker_version')}), not {expected['embedder']!r} (chunker "
                      f"{expected['chunker_version']}){others}: rebuild it with qa.build_index(cfg).")
    index = _read_faiss(folder / INDEX_FILE)
    if index.ntotal != len(chunks) or (chunks and index.d != (emb or embedder(cfg)).dimension):
        raise QAError(f"{folder}: {index.ntotal} vectors of size {index.d} for {len(chunks)} chunks does not match; "
                      "rebuild it with qa.build_index(cfg).")
    return chunks, index


def load_settings(cfg: WorkshopConfig, chunks: list[Chunk]) -> Settings:
    """The documented settings of the index in ``cfg.index_dir`` (``load_index`` checked it was built this way);
    rows that do not fit ``chunks`` raise QAError."""
    folder = cfg.index_dir
    try:
        rows, lines, texts = _read_settings(folder)
    except sqlite3.DatabaseError as err:
        raise QAError(f"{folder / META_FILE} has no readable settings table ({err}); rebuild it with "
                      "qa.build_index(cfg).") from None
    vectors = _read_faiss(folder / SETTINGS_FILE)
    if vectors.ntotal != len(rows) or any(not 0 <= r < len(chunks) for r in rows):
        raise QAError(f"{folder}: {vectors.ntotal} setting vectors for {len(rows)} settings of {len(chunks)} chunks "
                      "does not match; rebuild it with qa.build_index(cfg).")
    return Settings(rows, lines, texts, vectors)


def _vectors(faiss_index: Any) -> np.ndarray:
    return faiss_index.reconstruct_n(0, faiss_index.ntotal) if faiss_index.ntotal else np.zeros((0, faiss_index.d),
                                                                                              dtype="float32")


def missing_vectors(faiss_index: Any, vectors: np.ndarray | None = None,
                    chunks: list[Chunk] | None = None) -> np.ndarray:
    """One flag per row: True where the row has no vector yet (all zeros, as a lexical-first build writes it).
    ``vectors``: the index's vectors, when the caller has them already; ``chunks``: the index's chunks, whose rows
    that are never embedded (tests and examples, ``chunking.is_embedded``) are not missing anything (a FAISS index
    with no rows at all, as a BM25-only ``CodeIndex`` is given, has none to miss)."""
    missing = ~np.abs(_vectors(faiss_index) if vectors is None else vectors).any(axis=1)
    if chunks is not None and len(missing):
        missing &= np.array([is_embedded(c) for c in chunks], dtype=bool)
    return missing


def _previous(cfg: WorkshopConfig, emb: Embedder) -> tuple[dict[tuple[str, str], list[tuple[Chunk, int]]], Any,
                                                             dict[tuple[str, str, str], np.ndarray]]:
    """Chunks and vectors of the index already on disk, by file, when it was built the same way, and the vectors of
    its settings by (source, path, text); else nothing."""
    try:
        chunks, index = load_index(cfg, emb)
        settings = load_settings(cfg, chunks)
    except (QAError, FileNotFoundError):  # FileNotFoundError: another build swapped the folder while it was read
        return {}, None, {}  # missing, unreadable or foreign: rebuild from scratch
    setting_vectors = _vectors(settings.vectors)
    embedded = ~missing_vectors(settings.vectors, setting_vectors)
    old_settings = {(chunks[row].source, chunks[row].path, text): setting_vectors[i]
                    for i, (row, text) in enumerate(zip(settings.rows, settings.texts, strict=True)) if embedded[i]}
    vectors = _vectors(index)
    missing = missing_vectors(index, vectors, chunks)
    by_file: dict[tuple[str, str], list[tuple[Chunk, int]]] = {}
    for row, c in enumerate(chunks):
        by_file.setdefault((c.source, c.path), []).append((c, row))
    # A file written by a lexical-first build has no vectors yet: it is embedded now, like a changed file.
    by_file = {key: rows for key, rows in by_file.items() if not any(missing[r] for _, r in rows)}
    return by_file, vectors, old_settings


def build_index(cfg: WorkshopConfig, records: Iterable[repos.FileRecord] | None = None,
                progress: bool = True, embed: bool = True) -> BuildStats:
    """Index every file of step 1 (or ``records``) into ``cfg.index_dir``, re-embedding only changed files.

    A file whose text hash matches the saved index keeps its chunks and vectors; new or changed files are chunked
    and embedded; files that disappeared are dropped. The new index is written beside the old one and swapped in.
    With ``embed=False`` (a *lexical-first* build, seconds instead of minutes) new chunks get no vectors yet: the
    index answers with BM25 alone (``CodeIndex.pending``) until a normal build embeds them.
    """
    import faiss

    start = time.perf_counter()
    records = list(repos.iter_records(cfg) if records is None else records)
    if not records:
        raise QAError(f"no source files to index in {cfg.retrieval_data_dir}: {run_first(1)}.")
    emb = embedder(cfg)
    old_chunks, old_vectors, old_settings = _previous(cfg, emb)

    kept: list[Chunk] = []
    kept_rows: list[int] = []
    fresh: list[Chunk] = []
    seen_files = set()
    for rec in records:
        text = rec.read_text()
        key = (rec.source, rec.path)
        seen_files.add(key)
        previous = old_chunks.get(key)
        if previous and previous[0][0].file_hash == file_hash(text):
            kept.extend(c for c, _ in previous)
            kept_rows.extend(r for _, r in previous)
        else:
            fresh.extend(chunk_file(rec.source, rec.path, text))
    all_chunks = kept + fresh
    if not all_chunks:
        raise QAError(f"the source files hold no text to index: check step 1's output in {cfg.retrieval_data_dir}.")

    vectors = np.zeros((len(all_chunks), emb.dimension), dtype="float32")
    if kept_rows:
        vectors[: len(kept)] = old_vectors[kept_rows]
    rows = [len(kept) + i for i, c in enumerate(fresh) if is_embedded(c)]  # tests and examples keep zeros
    if rows and embed:
        texts = embedded_texts(fresh)
        with tqdm(total=len(rows), desc="Embedding chunks", unit="chunk", disable=not progress) as bar:
            vectors[rows] = emb.embed([texts[r - len(kept)] for r in rows], on_progress=bar.update)

    # Each documented setting gets a vector of its own (``documented``): reused when its file's text is unchanged.
    passages = [(row, doc.line, passage_text(all_chunks[row], doc)) for row, doc in setting_passages(all_chunks)]
    setting_vectors = np.zeros((len(passages), emb.dimension), dtype="float32")
    new = []
    for i, (row, _, text) in enumerate(passages):
        old = old_settings.get((all_chunks[row].source, all_chunks[row].path, text))
        if old is not None and row < len(kept):
            setting_vectors[i] = old
        else:
            new.append(i)
    if new and embed:
        with tqdm(total=len(new), desc="Embedding settings", unit="setting", disable=not progress) as bar:
            setting_vectors[new] = emb.embed([passages[i][2] for i in new], on_progress=bar.update,
                                             max_tokens=SETTING_MAX_TOKENS)

    index = faiss.IndexFlatIP(emb.dimension)
    index.add(vectors)
    settings = faiss.IndexFlatIP(emb.dimension)
    settings.add(setting_vectors)
    with staged_dir(cfg.index_dir) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        faiss.write_index(settings, str(tmp / SETTINGS_FILE))
        _write_meta(tmp / META_FILE, index_info(cfg, emb), all_chunks, passages)
    return BuildStats(files=len(seen_files), chunks=len(all_chunks), embedded=len(rows) if embed else 0, reused=len(kept),
                      removed_files=len(set(old_chunks) - seen_files), seconds=round(time.perf_counter() - start, 2),
                      settings=len(passages), settings_embedded=len(new) if embed else 0)
