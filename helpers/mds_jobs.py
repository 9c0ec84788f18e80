"""Step 2 as the tutorial runs it: the conversion yamls, on this machine or on the MosaicML platform.

``mcli_yamls/conversion/convert_txt_to_stream.yaml`` and ``convert_jsonl_to_stream.yaml`` call LLM Foundry's own
converters, which take their input already split. ``stage_text`` and ``stage_jsonl`` put every file (or
question/answer pair) into train/validation/test by the same seeded hash as the in-process conversion of
``helpers.mds``, in a folder named by a hash of what it holds, so an unchanged corpus is staged once and an
identical finished run is reused. A platform run gets the staged folder uploaded next to the data, since its nodes
cannot see this machine. ``ConversionJob.conversion`` then reads the written MDS back into the same
``mds.Conversion`` summary the in-process conversion returns, so the rest of the notebook does not care which
path wrote it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import mds, models, repos, runs
from helpers.config import WorkshopConfig
from helpers.constants import QA_DATASET, READY_MARKER, SPLITS, TEXT_DATASET, run_first
from helpers.errors import DataError, DataNotReady
from helpers.files import read_json, staged_dir, write_json, write_text

TEXT_YAML = "conversion/convert_txt_to_stream.yaml"
JSONL_YAML = "conversion/convert_jsonl_to_stream.yaml"
STAGED = "staged"  # <work_dir>/staged/<dataset>-<hash>/, and <storage_root>/staged/<dataset>-<hash>/ for the platform


@dataclass
class Staged:
    """Input of a conversion yaml, split: its folder and, per split, each item's split key and staged file name."""

    kind: str  # 'tokens' (a folder of .txt files per split) | 'prompt_response' (one JSONL file per split)
    folder: Path
    keys: dict[str, list[str]]  # split -> 'source/path' of each file, or the group key of each pair, in order
    names: dict[str, list[str]] = field(default_factory=dict)  # split -> file names below <folder>/<split>/ (text)


@dataclass
class ConversionJob:
    """A conversion yaml that ran (or was reused, or was submitted): its result and what it was given."""

    dataset: str
    staged: Staged
    result: runs.RunResult
    params: dict[str, Any]

    def conversion(self, cfg: WorkshopConfig) -> mds.Conversion:
        """The written MDS read back into a ``mds.Conversion`` (and recorded, as the in-process path records it)."""
        previous = mds.load_conversion(cfg, self.dataset)
        if self.result.reused and previous is not None and previous.params == self.params:
            previous.reused = True
            return previous
        splits = {split: _read_back(cfg, self, split) for split in SPLITS}
        conversion = mds.Conversion(self.dataset, self.staged.kind, self.params, splits, round(self.result.seconds, 2))
        return mds.record_conversion(cfg, conversion)


def job_name(dataset: str) -> str:
    """The run name of a dataset's conversion: ``convert-<dataset>`` (the platform takes lower case and '-')."""
    return "convert-" + re.sub(r"[^a-z0-9-]+", "-", dataset.lower()).strip("-")


# ---------------------------------------------------------------------------------------------- staging


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _stage(cfg: WorkshopConfig, dataset: str, kind: str, digest: str,
           write: Callable[[Path], tuple[dict[str, list[str]], dict[str, list[str]]]]) -> Staged:
    """The staged folder ``<work_dir>/staged/<dataset>-<digest>``: reused when complete, else written by ``write``."""
    folder = cfg.work_dir / STAGED / f"{dataset}-{digest}"
    marker = read_json(folder / READY_MARKER)
    if isinstance(marker, dict) and marker.get("kind") == kind:
        return Staged(kind, folder, marker["keys"], marker.get("names", {}))
    stale = re.compile(re.escape(dataset) + r"-[0-9a-f]{12}")
    for old in folder.parent.glob(f"{dataset}-*"):
        if stale.fullmatch(old.name):  # an earlier corpus of this dataset
            shutil.rmtree(old, ignore_errors=True)
    with staged_dir(folder) as tmp:
        keys, names = write(tmp)
        write_json(tmp / READY_MARKER, {"kind": kind, "keys": keys, "names": names})
    return Staged(kind, folder, keys, names)


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no copy), or a copy where links cannot be made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def stage_text(cfg: WorkshopConfig, dataset: str = TEXT_DATASET, sources: Sequence[str] | None = None,
               fractions: Sequence[float] = mds.DEFAULT_FRACTIONS) -> Staged:
    """Step 1's text files in ``<split>/<source>/<file>.txt``, each file in the split ``mds.convert_text`` gives it."""
    records, keys, content_sha = mds.corpus(cfg, sources)
    if not keys:
        raise DataNotReady(f"no documents to convert into {dataset!r}: {run_first(1)}.")
    assignment = mds.assign_splits(keys, cfg.seed, fractions)

    def write(tmp: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        names = {split: [f"{records[i].source}/{records[i].text_file.name}" for i in idx]
                 for split, idx in assignment.items()}
        for split, idx in assignment.items():
            for i, name in zip(idx, names[split], strict=True):
                _link(records[i].text_file, tmp / split / name)
        return {split: [keys[i] for i in idx] for split, idx in assignment.items()}, names

    return _stage(cfg, dataset, "tokens", _digest(keys, content_sha, list(fractions), cfg.seed), write)


def stage_jsonl(cfg: WorkshopConfig, jsonl: str | Path, dataset: str = QA_DATASET,
                fractions: Sequence[float] = mds.DEFAULT_FRACTIONS, on_error: str = "raise") -> Staged:
    """A prompt/response JSONL file as ``<split>.jsonl`` files, split as ``mds.convert_jsonl`` splits it.

    Only ``prompt`` and ``response`` are kept: LLM Foundry's converter refuses records with other fields.
    """
    records, style, _ = mds.read_jsonl(jsonl, on_error)
    if style != "prompt_response":
        raise DataError(f"{jsonl} holds 'text' records; convert_jsonl_to_stream.yaml takes prompt/response pairs. "
                        "Convert text records in-process with mds.convert_jsonl.")
    keys, assignment = mds.qa_splits(records, cfg.seed, fractions)

    def write(tmp: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        for split, idx in assignment.items():
            lines = (json.dumps({"prompt": records[i]["prompt"], "response": records[i]["response"]},
                                ensure_ascii=False) + "\n" for i in idx)
            write_text(tmp / f"{split}.jsonl", "".join(lines))
        return {split: [keys[i] for i in idx] for split, idx in assignment.items()}, {}

    content = hashlib.sha256(Path(jsonl).read_bytes()).hexdigest()
    return _stage(cfg, dataset, "prompt_response", _digest(content, list(fractions), cfg.seed, on_error), write)


def upload_folder(folder: Path, uri: str) -> int:
    """Copy every file below ``folder`` to the object store under ``uri`` (same relative names); return how many."""
    from composer.utils import maybe_create_object_store_from_uri, parse_uri

    store = maybe_create_object_store_from_uri(uri)
    if store is None:
        raise DataError(f"{uri} is not an object-store URI (s3://, gs://, oci://).")
    _, _, prefix = parse_uri(uri)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != READY_MARKER)
    for path in files:
        store.upload_object(f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}", str(path))
    return len(files)


def input_path(cfg: WorkshopConfig, staged: Staged) -> str:
    """Where the job reads the staged folder: in place for a local run, uploaded next to the data for the platform."""
    if cfg.backend == "local":
        return str(staged.folder)
    uri = cfg.storage_path(STAGED, staged.folder.name)
    count = upload_folder(staged.folder, uri)
    print(f"Uploaded {count} staged files to {uri}")
    return uri


# ---------------------------------------------------------------------------------------------- running


def _run(cfg: WorkshopConfig, yaml: str, dataset: str, staged: Staged, values: dict[str, Any],
         params: dict[str, Any], overwrite: bool, progress: bool, submit_kwargs: dict[str, Any]) -> ConversionJob:
    """Run (or reuse, or submit) one conversion yaml; LLM Foundry's converters refuse a non-empty output folder."""
    local_output = None if cfg.is_remote else Path(cfg.storage_path("mds", dataset))
    previous = mds.load_conversion(cfg, dataset)
    written = (local_output is not None and previous is not None and previous.params == params
               and all((local_output / split / "index.json").is_file() for split in SPLITS))
    result = runs.run(yaml, cfg, job_name(dataset), values={"DATA_NAME_MDS": dataset, **values}, progress=progress,
                      reuse=written and not overwrite, clear=[local_output] if local_output else None,
                      **submit_kwargs)
    return ConversionJob(dataset, staged, result, params)


def convert_text_job(cfg: WorkshopConfig, dataset: str = TEXT_DATASET, max_seq_len: int = 512,
                     fractions: Sequence[float] = mds.DEFAULT_FRACTIONS, sources: Sequence[str] | None = None,
                     overwrite: bool = False, progress: bool = True, **submit_kwargs: Any) -> ConversionJob:
    """``convert_txt_to_stream.yaml`` on ``cfg.backend``: step 1's files staged per split, tokenized by LLM Foundry."""
    repos.check_name(dataset, "MDS dataset")
    if not isinstance(max_seq_len, int) or max_seq_len < 2:
        raise DataError(f"max_seq_len={max_seq_len} must be at least 2.")
    staged = stage_text(cfg, dataset, sources, fractions)
    values: dict[str, Any] = {"PATH_TO_TXT_FOLDER": input_path(cfg, staged), "MAX_SEQ_LEN": max_seq_len}
    if cfg.backend == "local":
        values["MODEL_NAME"] = str(models.prepare_generator(cfg))
    params = {"converter": "yaml", "yaml": TEXT_YAML, "backend": cfg.backend, "generator_model": cfg.generator_model,
              "max_seq_len": max_seq_len, "keep_tail": False, "fractions": list(fractions), "seed": cfg.seed,
              "storage": cfg.storage_path("mds", dataset), "staged": staged.folder.name}
    return _run(cfg, TEXT_YAML, dataset, staged, values, params, overwrite, progress, submit_kwargs)


def convert_jsonl_job(cfg: WorkshopConfig, jsonl: str | Path, dataset: str = QA_DATASET,
                      fractions: Sequence[float] = mds.DEFAULT_FRACTIONS, on_error: str = "raise",
                      overwrite: bool = False, progress: bool = True, **submit_kwargs: Any) -> ConversionJob:
    """``convert_jsonl_to_stream.yaml`` on ``cfg.backend``: the pairs staged per split, written by LLM Foundry."""
    repos.check_name(dataset, "MDS dataset")
    staged = stage_jsonl(cfg, jsonl, dataset, fractions, on_error)
    params = {"converter": "yaml", "yaml": JSONL_YAML, "backend": cfg.backend, "fractions": list(fractions),
              "seed": cfg.seed, "storage": cfg.storage_path("mds", dataset), "staged": staged.folder.name}
    return _run(cfg, JSONL_YAML, dataset, staged, {"PATH_TO_JSONL_FOLDER": input_path(cfg, staged)}, params,
                overwrite, progress, submit_kwargs)


# ---------------------------------------------------------------------------------------------- reading back


def read_order(job: ConversionJob, split: str) -> list[str]:
    """The split's keys in the order LLM Foundry's text converter read the files (pairs keep their file order)."""
    keys = job.staged.keys[split]
    if job.staged.kind != "tokens":
        return keys
    by_name = dict(zip(job.staged.names[split], keys, strict=True))
    if job.params.get("backend") != "local":  # an object store lists names in sorted order
        return [by_name[name] for name in sorted(by_name)]
    from llmfoundry.command_utils.data_prep.convert_text_to_mds import get_object_names

    split_folder = job.staged.folder / split
    return [by_name[Path(name).relative_to(split_folder).as_posix()] for name in get_object_names(str(split_folder))]


def _read_back(cfg: WorkshopConfig, job: ConversionJob, split: str) -> mds.SplitStats:
    """What one written split holds: samples, tokens and document lengths (text) or pairs, in a SplitStats."""
    stats = mds.SplitStats(split=split, path=cfg.storage_path("mds", job.dataset, split),
                           documents=len(job.staged.keys[split]), keys=read_order(job, split))
    if job.staged.kind == "tokens":
        arrays = list(mds.iter_split_tokens(cfg, job.dataset, split))
        eos = mds.load_tokenizer(cfg).eos_token_id
        stats.samples = len(arrays)
        stats.tokens = sum(len(a) for a in arrays)
        stats.doc_tokens = [len(doc) for doc in mds.split_documents(arrays, eos)]
    else:
        stats.samples = len(mds.open_split(cfg, job.dataset, split))
    return stats
