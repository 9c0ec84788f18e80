"""Step 2: turn the flattened code (and question/answer JSONL) into MDS shards that Streaming can serve.

Text becomes a ``tokens`` column exactly as LLM Foundry's ``convert_text_to_mds`` writes it: each file is
tokenized with the generator's tokenizer, files are joined with EOS and cut into ``max_seq_len`` samples by
LLM Foundry's ``ConcatTokensDataset``. Files go to train/validation/test by a seeded hash of their path, so the
split never depends on the order files were found. Question/answer records become ``prompt``/``response``
string columns, the layout LLM Foundry's ``finetuning`` dataloader reads. Output goes to
``cfg.storage_path('mds', dataset, split)``: a local folder, or an object store through Streaming's uploaders.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers import repos
from helpers.config import WorkshopConfig
from helpers.constants import SPLITS, TEXT_DATASET, run_first
from helpers.errors import DataError, DataNotReady, JsonlError
from helpers.files import cleanup_on_terminate, replace_dir, write_json

DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
TOKEN_COLUMNS = {"tokens": "ndarray:int32"}
QA_COLUMNS = {"prompt": "str", "response": "str"}
ON_ERROR = ("raise", "skip")


@dataclass
class SplitStats:
    """What one split holds: documents (files or records), samples and tokens, and where it was written."""

    split: str
    path: str
    documents: int = 0
    samples: int = 0
    tokens: int = 0
    doc_tokens: list[int] = field(default_factory=list)  # tokens per document, for the length histogram
    keys: list[str] = field(default_factory=list)  # 'source/path' (or line number) of each document, in order


@dataclass
class Conversion:
    """The result of one conversion: parameters and the stats of every split."""

    dataset: str
    kind: str  # 'tokens' | 'prompt_response'
    params: dict[str, Any]
    splits: dict[str, SplitStats]
    seconds: float = 0.0
    reused: bool = False

    def table(self):
        """Samples, documents and tokens per split as a pandas DataFrame."""
        import pandas as pd

        rows = [{"split": s.split, "documents": s.documents, "samples": s.samples, "tokens": s.tokens, "path": s.path}
                for s in self.splits.values()]
        frame = pd.DataFrame(rows).set_index("split")
        return frame if self.kind == "tokens" else frame.drop(columns="tokens")


# ---------------------------------------------------------------------------------------------- splitting


def assign_splits(keys: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, list[int]]:
    """Indices of ``keys`` per split, decided by a seeded hash of each key (input order does not matter).

    Every split gets at least one key when there are at least three; each split keeps the input order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"fractions={tuple(fractions)} must be three non-negative numbers (train, validation, test) summing to 1.")
    if len(set(keys)) != len(keys):
        raise DataError("split keys must be unique (one per file or record).")
    n = len(keys)
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}\0{keys[i]}".encode()).hexdigest())
    sizes = [round(f * n) for f in fractions[1:]]
    if n >= 3:
        sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions[1:], strict=False)]
    n_val, n_test = sizes
    n_train = n - n_val - n_test
    chosen = {"train": ranked[:n_train], "validation": ranked[n_train:n_train + n_val], "test": ranked[n_train + n_val:]}
    return {split: sorted(idx) for split, idx in chosen.items()}


# ---------------------------------------------------------------------------------------------- tokenizing


def load_tokenizer(cfg: WorkshopConfig):
    """The generator's tokenizer (prepared by step 0), set up for long documents."""
    from transformers import AutoTokenizer

    from helpers import models

    tokenizer = AutoTokenizer.from_pretrained(models.prepare_generator(cfg))
    tokenizer.model_max_length = 1 << 40  # documents are cut into samples later; silence the length warning
    if tokenizer.eos_token is None:
        raise DataError(f"the tokenizer of {cfg.generator_model} has no EOS token to separate documents with.")
    return tokenizer


class _RecordingTokenizer:
    """Stands in for the tokenizer inside ConcatTokensDataset: serves batch-encoded documents, keeps the tail.

    * Documents are encoded 64 at a time (one call into the Rust tokenizer per batch is about a quarter
      faster than one per document) just before ConcatTokensDataset asks for them, in the same order.
    * ConcatTokensDataset drops the last partial sample; knowing the stream's tail lets us write it too, so no
      file text is lost.
    * Literal special-token text in code (a chat template in a string) is tokenized as plain text, so it
      never turns into a fake end-of-document.
    """

    def __init__(self, tokenizer, frame: list[int], keep: int, batch: int = 64):
        self._tokenizer = tokenizer
        self._frame = frame  # tokens ConcatTokensDataset adds per document (BOS + EOS)
        self._keep = keep
        self._batch = batch
        self._pending: deque[tuple[str, list[int]]] = deque()
        self.doc_tokens: list[int] = []
        self.total = 0
        self.tail: list[int] = []

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # The same call ConcatTokensDataset makes (truncation and padding off), on a batch.
        return self._tokenizer(texts, truncation=False, padding=False, split_special_tokens=True)["input_ids"]

    def documents(self, texts: Iterable[str]) -> Iterator[dict[str, str]]:
        """The rows ConcatTokensDataset iterates over, with each batch encoded ahead of being asked for."""
        iterator = iter(texts)
        while batch := list(itertools.islice(iterator, self._batch)):
            self._pending.extend(zip(batch, self._encode(batch), strict=False))
            for text in batch:
                yield {"text": text}

    def __call__(self, text: str, **kwargs: Any):
        if self._pending and self._pending[0][0] is text:
            ids = self._pending.popleft()[1]
        else:
            ids = self._encode([text])[0]
        self.doc_tokens.append(len(ids))
        self.total += len(ids) + len(self._frame)
        self.tail.extend(ids)
        self.tail.extend(self._frame)
        if len(self.tail) > 4 * self._keep:
            self.tail = self.tail[-self._keep:]
        return {"input_ids": ids}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def iter_token_samples(texts: Iterable[str], tokenizer, max_seq_len: int, keep_tail: bool = True,
                       stats: SplitStats | None = None) -> Iterator[dict[str, np.ndarray]]:
    """``{'tokens': int32 array}`` samples of ``max_seq_len`` from texts joined by EOS (LLM Foundry's ConcatTokensDataset)."""
    from llmfoundry.data import ConcatTokensDataset

    dataset = ConcatTokensDataset(hf_dataset=[], tokenizer=tokenizer,  # type: ignore[arg-type]
                                  max_length=max_seq_len, bos_text="", eos_text=tokenizer.eos_token, no_wrap=False)
    recorder = _RecordingTokenizer(tokenizer, dataset.bos_tokens + dataset.eos_tokens, max_seq_len)
    dataset.tokenizer = recorder
    dataset.hf_dataset = recorder.documents(texts)  # type: ignore[assignment]
    emitted = 0
    for sample in dataset:
        emitted += len(sample["tokens"])
        yield sample
    left = recorder.total - emitted
    if keep_tail and left > 0:
        yield {"tokens": np.asarray(recorder.tail[-left:], dtype=np.int32)}
    if stats is not None:
        stats.doc_tokens = recorder.doc_tokens
        stats.tokens = recorder.total if keep_tail else emitted


# ---------------------------------------------------------------------------------------------- writing


def _record_file(cfg: WorkshopConfig, dataset: str) -> Path:
    return cfg.work_dir / "mds" / f"{dataset}.json"


def load_conversion(cfg: WorkshopConfig, dataset: str) -> Conversion | None:
    """The stats recorded by the last conversion of ``dataset`` (None if there was none)."""
    try:
        data = json.loads(_record_file(cfg, dataset).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    data["splits"] = {k: SplitStats(**v) for k, v in data["splits"].items()}
    return Conversion(**data)


def _reusable(cfg: WorkshopConfig, dataset: str, params: dict[str, Any]) -> Conversion | None:
    previous = load_conversion(cfg, dataset)
    if previous is None or previous.params != params:
        return None
    if not cfg.is_remote and not all(Path(s.path, "index.json").is_file() for s in previous.splits.values()):
        return None
    previous.reused = True
    return previous


def _write_splits(cfg: WorkshopConfig, dataset: str, columns: dict[str, str], compression: str | None,
                  produce: dict[str, Any], progress: bool) -> dict[str, SplitStats]:
    """Write each split's samples with MDSWriter; local output appears only when every split is complete."""
    from streaming import MDSWriter
    from tqdm.auto import tqdm

    final = cfg.storage_path("mds", dataset)
    stats: dict[str, SplitStats] = {}
    if cfg.is_remote:
        staging = Path(tempfile.mkdtemp(prefix=f"{dataset}-", dir=_cache_root(cfg)))
    else:
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{dataset}-", dir=Path(final).parent))
    try:
        with cleanup_on_terminate():
            for split, (documents, keys, samples_of) in produce.items():
                st = SplitStats(split=split, path=cfg.storage_path("mds", dataset, split), documents=documents, keys=keys)
                # Remote: shards upload as they are written, index.json last, so readers never see a partial split.
                out: str | tuple[str, str] = (str(staging / split), st.path) if cfg.is_remote else str(staging / split)
                with MDSWriter(out=out, columns=columns, compression=compression, size_limit=1 << 24) as writer:
                    for sample in tqdm(samples_of(st), desc=f"{dataset}/{split}", unit=" samples", disable=not progress,
                                       leave=False):
                        writer.write(sample)
                        st.samples += 1
                stats[split] = st
            if not cfg.is_remote:
                replace_dir(staging, Path(final))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return stats


def _cache_root(cfg: WorkshopConfig) -> Path:
    root = cfg.work_dir / "mds_cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


def record_conversion(cfg: WorkshopConfig, conversion: Conversion) -> Conversion:
    """Remember a finished conversion in ``<work_dir>/mds/<dataset>.json`` (read by ``load_conversion``)."""
    write_json(_record_file(cfg, conversion.dataset), asdict(conversion))
    return conversion


def convert_documents(cfg: WorkshopConfig, dataset: str, keys: Sequence[str], load: Any, max_seq_len: int = 512,
                      fractions: Sequence[float] = DEFAULT_FRACTIONS, compression: str | None = "zstd",
                      keep_tail: bool = True, overwrite: bool = False, progress: bool = True,
                      extra_params: dict[str, Any] | None = None) -> Conversion:
    """Tokenize documents (``load(i)`` gives text of ``keys[i]``) into a 'tokens' MDS dataset with three splits."""
    repos.check_name(dataset, "MDS dataset")
    if not isinstance(max_seq_len, int) or max_seq_len < 2:
        raise DataError(f"max_seq_len={max_seq_len} must be at least 2.")
    if not keys:
        raise DataNotReady(f"no documents to convert into {dataset!r}: {run_first(1)}.")
    params = {"generator_model": cfg.generator_model, "max_seq_len": max_seq_len, "fractions": list(fractions),
              "seed": cfg.seed, "compression": compression, "keep_tail": keep_tail, "storage": cfg.storage_path("mds", dataset),
              "keys_sha": hashlib.sha256("\n".join(keys).encode()).hexdigest(), **(extra_params or {})}
    if not overwrite and (previous := _reusable(cfg, dataset, params)):
        return previous
    start = time.perf_counter()
    tokenizer = load_tokenizer(cfg)
    assignment = assign_splits(keys, cfg.seed, fractions)

    def producer(indices: list[int]):
        def samples_of(st: SplitStats):
            return iter_token_samples((load(i) for i in indices), tokenizer, max_seq_len, keep_tail, st)
        return len(indices), [keys[i] for i in indices], samples_of

    produce = {split: producer(assignment[split]) for split in SPLITS}
    splits = _write_splits(cfg, dataset, TOKEN_COLUMNS, compression, produce, progress)
    return record_conversion(cfg, Conversion(dataset, "tokens", params, splits, round(time.perf_counter() - start, 2)))


def convert_text(cfg: WorkshopConfig, dataset: str = TEXT_DATASET, sources: Sequence[str] | None = None,
                 max_seq_len: int = 512, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 compression: str | None = "zstd", keep_tail: bool = True, overwrite: bool = False,
                 progress: bool = True) -> Conversion:
    """Step 2 for the flattened code: every kept file of the completed sources into a 'tokens' MDS dataset."""
    records, keys, content_sha = corpus(cfg, sources)
    return convert_documents(cfg, dataset, keys, lambda i: records[i].read_text(), max_seq_len, fractions,
                             compression, keep_tail, overwrite, progress,
                             extra_params={"content_sha": content_sha})


def corpus(cfg: WorkshopConfig, sources: Sequence[str] | None = None) -> tuple[list[repos.FileRecord], list[str], str]:
    """The files of the completed sources (or ``sources``), their split keys ('source/path') and a content hash.

    The hash covers every file's bytes, so reuse is decided on content, not names: an edited file makes a new
    conversion.
    """
    names = list(sources) if sources else repos.completed_sources(cfg)
    records = [r for name in names for r in repos.read_index(cfg, name)]
    content = hashlib.sha256()
    for r in records:
        content.update(hashlib.sha256(r.text_file.read_bytes()).digest())
    return records, [f"{r.source}/{r.path}" for r in records], content.hexdigest()


# ---------------------------------------------------------------------------------------------- JSONL


def read_jsonl(path: str | Path, on_error: str = "raise") -> tuple[list[dict[str, Any]], str, list[int]]:
    """Records of a JSONL file, their style ('text' or 'prompt_response') and the line numbers skipped.

    Each line must be a JSON object with a string ``text`` field, or string ``prompt`` and ``response`` fields,
    all lines in one style. A bad line raises JsonlError naming its number (``on_error='skip'``: skipped and
    counted instead).
    """
    if on_error not in ON_ERROR:
        raise DataError(f"on_error={on_error!r} must be one of {', '.join(ON_ERROR)}.")
    path = Path(path)
    if not path.is_file():
        raise JsonlError(f"{path} does not exist.")
    records: list[dict[str, Any]] = []
    skipped: list[int] = []
    style: str | None = None
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise JsonlError(f"{path}:{number}: not UTF-8 text (byte {err.start + 1} of the line); save "
                                     "the file as UTF-8.") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise JsonlError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno}).") from None
                if not isinstance(record, dict):
                    raise JsonlError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}.")
                if "prompt" in record or "response" in record:
                    this = "prompt_response"
                    fields = ("prompt", "response")
                elif "text" in record:
                    this, fields = "text", ("text",)
                else:
                    raise JsonlError(f"{path}:{number}: needs a 'text' field, or 'prompt' and 'response' fields.")
                for name in fields:
                    if not isinstance(record.get(name), str):
                        raise JsonlError(f"{path}:{number}: field {name!r} must be a string (found {type(record.get(name)).__name__}).")
                if style is None:
                    style = this
                elif this != style:
                    raise JsonlError(f"{path}:{number}: a {this!r} record in a file of {style!r} records; use one style per file.")
            except JsonlError:
                if on_error == "raise":
                    raise
                skipped.append(number)
                continue
            records.append(record)
    if not records:
        raise JsonlError(f"{path}: no usable records ({len(skipped)} skipped).")
    return records, style or "text", skipped


def convert_jsonl(cfg: WorkshopConfig, jsonl: str | Path, dataset: str, max_seq_len: int = 512,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS, compression: str | None = "zstd",
                  on_error: str = "raise", overwrite: bool = False, progress: bool = True) -> Conversion:
    """A JSONL file into MDS: 'text' records are tokenized like code files, 'prompt'/'response' records kept as strings.

    Records carrying 'source' and 'path' are split by that file (all questions about one file land in one
    split, so validation never asks about code seen in training); others by line.
    """
    repos.check_name(dataset, "MDS dataset")
    records, style, skipped = read_jsonl(jsonl, on_error)
    extra = {"jsonl": str(Path(jsonl).resolve()), "jsonl_sha": hashlib.sha256(Path(jsonl).read_bytes()).hexdigest(),
             "skipped_lines": skipped, "on_error": on_error}
    if style == "text":
        return convert_documents(cfg, dataset, [f"#{i}" for i in range(len(records))],
                                 lambda i: records[i]["text"], max_seq_len, fractions, compression,
                                 overwrite=overwrite, progress=progress, extra_params=extra)
    params = {"fractions": list(fractions), "seed": cfg.seed, "compression": compression,
              "storage": cfg.storage_path("mds", dataset), **extra}
    if not overwrite and (previous := _reusable(cfg, dataset, params)):
        return previous
    start = time.perf_counter()
    keys, assignment = qa_splits(records, cfg.seed, fractions)
    produce = {}
    for split in SPLITS:
        chosen = assignment[split]

        def samples_of(st: SplitStats, chosen: list[int] = chosen):
            for i in chosen:
                yield {"prompt": records[i]["prompt"], "response": records[i]["response"]}
        produce[split] = (len(chosen), [keys[i] for i in chosen], samples_of)
    splits = _write_splits(cfg, dataset, QA_COLUMNS, compression, produce, progress)
    return record_conversion(cfg, Conversion(dataset, "prompt_response", params, splits, round(time.perf_counter() - start, 2)))


def qa_splits(records: Sequence[dict[str, Any]], seed: int,
              fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[list[str], dict[str, list[int]]]:
    """Each record's split key and the record indices per split: by source file when records name one, else by line.

    Records carrying 'source' and 'path' are grouped by that file, so all questions about one file land in one
    split; the groups are assigned like files (``assign_splits``).
    """
    keys = [f"{r['source']}/{r['path']}" if isinstance(r.get("source"), str) and isinstance(r.get("path"), str)
            else f"#{i}" for i, r in enumerate(records)]
    groups = sorted(set(keys))
    group_split = {groups[i]: split for split, idx in assign_splits(groups, seed, fractions).items() for i in idx}
    return keys, {split: [i for i, key in enumerate(keys) if group_split[key] == split] for split in SPLITS}


# ---------------------------------------------------------------------------------------------- reading back


def open_split(cfg: WorkshopConfig, dataset: str, split: str):
    """Streaming's StreamingDataset over one written split (local folder, or remote through a local cache), unshuffled."""
    from streaming import StreamingDataset

    path = cfg.storage_path("mds", dataset, split)
    if not cfg.is_remote:
        if not Path(path, "index.json").is_file():
            raise DataNotReady(f"no MDS split at {path}: {run_first(2)}.")
        return StreamingDataset(local=path, shuffle=False, batch_size=1)
    local = _cache_root(cfg) / "read" / dataset / split
    return StreamingDataset(remote=path, local=str(local), shuffle=False, batch_size=1)


def iter_split_tokens(cfg: WorkshopConfig, dataset: str, split: str) -> Iterator[np.ndarray]:
    """The token arrays of one split in written order."""
    data = open_split(cfg, dataset, split)
    for i in range(len(data)):
        yield np.asarray(data[i]["tokens"])


def split_documents(token_arrays: Iterable[np.ndarray], eos_id: int) -> list[list[int]]:
    """The document token lists of a concatenated split (EOS-separated), the inverse of the concatenation."""
    arrays = list(token_arrays)
    stream = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
    cuts = np.flatnonzero(stream == eos_id)
    docs, start = [], 0
    for cut in cuts:
        docs.append(stream[start:cut].tolist())
        start = cut + 1
    if start < len(stream):
        docs.append(stream[start:].tolist())
    return docs


def reconcat(cfg: WorkshopConfig, source: str, dataset: str, max_seq_len: int, compression: str | None = "zstd",
             progress: bool = True) -> Conversion:
    """MDS to MDS: re-cut an existing 'tokens' dataset to a new ``max_seq_len`` (same documents, same splits)."""
    previous = load_conversion(cfg, source)
    if previous is None or previous.kind != "tokens":
        raise DataNotReady(f"no 'tokens' dataset {source!r} recorded in {cfg.work_dir / 'mds'}: {run_first(2)}.")
    start = time.perf_counter()

    def producer(split: str):
        old = previous.splits[split]

        def samples_of(st: SplitStats):
            st.doc_tokens, st.tokens = old.doc_tokens, 0
            buffer = np.zeros(0, dtype=np.int32)
            for arr in iter_split_tokens(cfg, source, split):
                buffer = np.concatenate([buffer, arr.astype(np.int32)])
                while len(buffer) >= max_seq_len:
                    st.tokens += max_seq_len
                    yield {"tokens": buffer[:max_seq_len].copy()}
                    buffer = buffer[max_seq_len:]
            if len(buffer):
                st.tokens += len(buffer)
                yield {"tokens": buffer}
        return old.documents, old.keys, samples_of

    produce = {split: producer(split) for split in SPLITS}
    splits = _write_splits(cfg, dataset, TOKEN_COLUMNS, compression, produce, progress)
    params = {**previous.params, "max_seq_len": max_seq_len, "reconcat_of": source}
    return record_conversion(cfg, Conversion(dataset, "tokens", params, splits, round(time.perf_counter() - start, 2)))


def verify_text_split(cfg: WorkshopConfig, dataset: str, split: str, tokenizer=None) -> list[str]:
    """Decode a code-corpus split back into documents and compare them with the text files; return mismatched keys.

    An empty list means every file of the split survived tokenizing, concatenating and writing exactly. A split
    written by LLM Foundry's converter (the conversion yaml, ``helpers.mds_jobs``) is held to what that converter
    promises: the files in the order it read them, line endings read in text mode (``\r\n`` becomes ``\n``),
    and at most one sample's worth of tokens missing at the end.
    """
    conversion = load_conversion(cfg, dataset)
    if conversion is None or conversion.kind != "tokens":
        raise DataNotReady(f"no 'tokens' dataset {dataset!r} recorded in {cfg.work_dir / 'mds'}: {run_first(2)}.")
    tokenizer = tokenizer or load_tokenizer(cfg)
    stats = conversion.splits[split]
    texts = {f"{r.source}/{r.path}": r for r in repos.iter_records(cfg)}
    if conversion.params.get("converter") == "yaml":
        stream = np.concatenate(list(iter_split_tokens(cfg, dataset, split))).tolist()
        return _verify_concatenated(tokenizer.decode(stream), stats.keys, texts, tokenizer,
                                    int(conversion.params["max_seq_len"]))
    docs = split_documents(iter_split_tokens(cfg, dataset, split), tokenizer.eos_token_id)
    if len(docs) != len(stats.keys):
        return [f"{len(docs)} documents decoded, {len(stats.keys)} expected"]
    # Compared byte for byte with the files of step 1: line endings (\r\n, lone \r) and indentation included.
    return [key for key, ids in zip(stats.keys, docs, strict=True)
            if key not in texts or tokenizer.decode(ids).encode("utf-8") != texts[key].text_file.read_bytes()]


def _verify_concatenated(decoded: str, keys: list[str], texts: dict[str, repos.FileRecord], tokenizer,
                         max_seq_len: int) -> list[str]:
    """Keys whose text (read in text mode, then EOS) is not where it belongs in ``decoded``; the tail may be cut."""
    decoded = decoded.rstrip("\ufffd")  # a character cut in half by the last sample
    position = 0
    for n, key in enumerate(keys):
        if key not in texts:
            return [key]
        part = texts[key].read_text().replace("\r\n", "\n").replace("\r", "\n") + tokenizer.eos_token
        piece = decoded[position:position + len(part)]
        if piece == part:
            position += len(part)
            continue
        if position + len(piece) < len(decoded) or not part.startswith(piece):
            return [key]
        # The stream ends inside this file: what is missing must be less than one sample.
        rest = part[len(piece):] + "".join(texts[k].read_text() + tokenizer.eos_token for k in keys[n + 1:])
        missing = len(tokenizer(rest, add_special_tokens=False)["input_ids"])
        return [] if missing <= max_seq_len else [f"{missing} tokens missing at the end (more than one sample)"]
    return [] if position == len(decoded) else [f"{len(decoded) - position} characters decoded after the last file"]


# ---------------------------------------------------------------------------------------------- looking at it


def convert_qa_datasets(cfg: WorkshopConfig, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                        overwrite: bool = False, progress: bool = True) -> list[Conversion]:
    """The manifest's online question/answer sets (e.g. CoQA), downloaded and converted; [] when it lists none."""
    from helpers import qa_dataset

    if not repos.load_manifest(cfg.manifest_path).extra.get("qa_datasets"):
        return []
    return [convert_jsonl(cfg, path, dataset=path.stem, fractions=fractions, overwrite=overwrite, progress=progress)
            for path in qa_dataset.fetch_qa_datasets(cfg)]


def first_boundary_sample(data: Any, eos_id: int, look: int = 200) -> int:
    """Index of the first sample (of the first ``look``) in which one document ends and the next begins."""
    return next((i for i in range(min(len(data), look)) if eos_id in data[i]["tokens"][:-1]), 0)


def plot_lengths(conversion: Conversion, max_seq_len: int) -> Any:
    """Histogram of document lengths in tokens (log scale), with the sample length marked."""
    import matplotlib.pyplot as plt

    lengths = np.concatenate([s.doc_tokens for s in conversion.splits.values()])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(lengths, bins=np.logspace(0, np.log10(max(lengths.max(), 10)), 40), color="tab:blue")
    ax.axvline(max_seq_len, color="tab:red", linestyle="--", label=f"max_seq_len = {max_seq_len}")
    ax.set_xscale("log")
    ax.set_xlabel("file length (tokens)")
    ax.set_ylabel("files")
    ax.set_title(f"{len(lengths)} files, median {int(np.median(lengths))} tokens")
    ax.legend()
    return fig


def check_conversion(conversion: Conversion) -> list[str]:
    """Problems with a conversion: empty splits, and for token data a token count that does not add up."""
    problems = [f"{conversion.dataset}/{split} is empty: the corpus is too small for three splits"
                for split, stats in conversion.splits.items() if stats.samples == 0]
    if conversion.kind == "tokens" and conversion.params.get("keep_tail", True) \
            and "reconcat_of" not in conversion.params:
        documents = sum(len(s.doc_tokens) for s in conversion.splits.values())
        expected = sum(sum(s.doc_tokens) for s in conversion.splits.values()) + documents  # one EOS per document
        found = sum(s.tokens for s in conversion.splits.values())
        if found != expected:
            problems.append(f"{conversion.dataset}: {found} tokens written, {expected} expected")
    return problems
