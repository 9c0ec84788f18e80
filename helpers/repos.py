"""Step 1: fetch the code bases named in a manifest and flatten each into plain text files with an index.

A manifest (YAML in ``data_manifests/``) lists sources, each a git repository at a pinned commit or tag, a PyPI
source distribution (``name==version``) or a local folder. Each source becomes ``retrieval_data/<name>/``: one
``.txt`` file per kept file (collision-free flat names), ``index.jsonl`` mapping every text file back to its
original path, size and line count (later steps cite ``path:line`` from it), and a completion marker written
last. The folder is built under a temporary name and renamed, so an interrupted run never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from helpers.config import WorkshopConfig

INDEX_FILE = "index.jsonl"
MARKER_FILE = ".complete.json"
DEFAULT_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".rst", ".txt")
DEFAULT_MAX_FILE_BYTES = 1_000_000
OFFLINE_MANIFEST = "offline_sdists.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
PYPI_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
GIT_URL_RE = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
KINDS = ("git", "pypi", "local")
UNDECODABLE = ("replace", "skip")


class ManifestError(ValueError):
    """A manifest entry or field is wrong; the message names the entry, the field and the fix."""


class SourceUnavailable(RuntimeError):
    """A source could not be fetched (host unreachable, unknown ref or package); the message says what to try."""


class SourceNotReady(LookupError):
    """A later step asked for a source that step 1 has not completed."""


@dataclass(frozen=True)
class Source:
    """One manifest entry: where a code base comes from and the name of its folder in retrieval_data/."""

    name: str
    kind: str  # 'git' | 'pypi' | 'local'
    location: str  # git URL, 'name==version', or a folder
    ref: str = ""  # git commit or tag (git only)

    def spec(self) -> dict[str, str]:
        return {"kind": self.kind, "location": self.location, "ref": self.ref}


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: sources plus the filters that decide which files are kept."""

    path: Path
    sources: list[Source]
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    undecodable: str = "replace"
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level sections (e.g. qa_datasets)


@dataclass
class FileRecord:
    """One kept file: its source, original POSIX path in the source, text file on disk, size and line count."""

    source: str
    path: str
    text_file: Path
    bytes: int
    lines: int

    def read_text(self) -> str:
        return self.text_file.read_text(encoding="utf-8")


@dataclass
class SourceReport:
    """What step 1 did with one source: files kept, bytes, lines and files skipped per reason."""

    name: str
    status: str  # 'built' | 'already done'
    kept: int = 0
    bytes: int = 0
    lines: int = 0
    replaced: int = 0  # non-UTF-8 files kept with replacement characters
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- manifest


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: field 'name' is missing; give each source a short folder name like 'composer'.")
    if "/" in name or "\\" in name or ".." in name or not NAME_RE.match(name):
        raise ManifestError(
            f"{where}: field 'name'={name!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(no '/', no '..'), starting with a letter or digit."
        )
    return name


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest file; every problem names the entry and field to fix."""
    path = Path(path)
    if not path.is_file():
        available = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "data_manifests").glob("*.yaml"))
        raise ManifestError(f"manifest {path} does not exist; the shipped manifests are: {', '.join(available)}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ManifestError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise ManifestError(f"{path}: needs a top-level 'sources:' list with at least one entry.")
    suffixes = data.get("suffixes", list(DEFAULT_SUFFIXES))
    if not isinstance(suffixes, list) or not all(isinstance(s, str) and s.startswith(".") for s in suffixes):
        raise ManifestError(f"{path}: field 'suffixes' must be a list of file endings like ['.py', '.md'].")
    max_bytes = data.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise ManifestError(f"{path}: field 'max_file_bytes'={max_bytes!r} must be a positive whole number.")
    undecodable = data.get("undecodable", "replace")
    if undecodable not in UNDECODABLE:
        raise ManifestError(f"{path}: field 'undecodable'={undecodable!r} must be one of {', '.join(UNDECODABLE)}.")
    sources: list[Source] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["sources"]):
        where = f"{path.name}: sources[{i}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} must be a mapping with 'name' and one of {', '.join(KINDS)}.")
        name = _check_name(entry.get("name"), where)
        where = f"{path.name}: source {name!r}"
        if name.lower() in seen:
            raise ManifestError(f"{where}: the name is used twice; names must be unique (case-insensitive).")
        seen.add(name.lower())
        unknown = sorted(set(entry) - {"name", "ref", *KINDS})
        if unknown:
            raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}; use 'name', 'ref' and one of {', '.join(KINDS)}.")
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise ManifestError(f"{where}: give exactly one of the fields {', '.join(KINDS)} (found {kinds or 'none'}).")
        kind = kinds[0]
        value = entry[kind]
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{where}: field '{kind}' must be a non-empty string.")
        value = value.strip()
        ref = entry.get("ref", "")
        if kind == "git":
            if value.startswith("-") or not GIT_URL_RE.match(value):
                raise ManifestError(
                    f"{where}: field 'git'={value!r} is not a git URL; write it like https://github.com/mosaicml/composer."
                )
            if not isinstance(ref, str) or not REF_RE.match(ref) or ".." in ref:
                raise ManifestError(
                    f"{where}: field 'ref'={ref!r} must pin a commit SHA or tag (e.g. v0.32.1) so the corpus is reproducible."
                )
        elif ref:
            raise ManifestError(f"{where}: field 'ref' only applies to git sources; remove it.")
        if kind == "pypi" and not PYPI_RE.match(value):
            raise ManifestError(f"{where}: field 'pypi'={value!r} must pin one version, like mosaicml-streaming==0.12.0.")
        if kind == "local":
            folder = Path(value).expanduser()
            value = str(folder if folder.is_absolute() else (path.parent / folder).resolve())
        sources.append(Source(name=name, kind=kind, location=value, ref=ref))
    extra = {k: v for k, v in data.items() if k not in {"sources", "suffixes", "max_file_bytes", "undecodable"}}
    return Manifest(path, sources, tuple(s.lower() for s in suffixes), max_bytes, undecodable, extra)


# ---------------------------------------------------------------------------------------------- fetching


def _run(cmd: list[str], source: Source, cwd: Path | None = None, timeout: int = 600) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(
            f"source {source.name!r}: fetching {source.location} took over {timeout}s. "
            f"Without network access use the offline manifest: manifest='{OFFLINE_MANIFEST}'."
        ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SourceUnavailable(
            f"source {source.name!r}: could not fetch {source.location}"
            + (f" at {source.ref}" if source.ref else "")
            + f" ({' / '.join(detail)}). Check the host is reachable and the name/ref exist; "
            f"without network access use the offline manifest: manifest='{OFFLINE_MANIFEST}'."
        )


def _fetch_git(source: Source, dest: Path) -> Path:
    repo = dest / "repo"
    repo.mkdir()
    _run(["git", "init", "--quiet"], source, cwd=repo)
    _run(["git", "fetch", "--quiet", "--depth", "1", "--", source.location, source.ref], source, cwd=repo)
    _run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD"], source, cwd=repo)
    return repo


def _safe_extract(archive: Path, dest: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise SourceUnavailable(f"{archive.name}: member {member!r} would land outside the folder; refusing it.")
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            # The 'data' filter refuses absolute paths, '..', device files and links leaving the folder.
            tf.extractall(dest, filter="data")


def _fetch_pypi(source: Source, dest: Path) -> Path:
    download = dest / "download"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           "--retries", "1", "--timeout", "15", "--dest", str(download), source.location]
    _run(cmd, source)
    archives = sorted(download.iterdir())
    if len(archives) != 1:
        raise SourceUnavailable(f"source {source.name!r}: pip download gave {len(archives)} files, expected one sdist.")
    unpacked = dest / "unpacked"
    unpacked.mkdir()
    _safe_extract(archives[0], unpacked)
    entries = list(unpacked.iterdir())
    # An sdist holds one top folder (name-version/); its contents are the source tree.
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked


def _fetch(source: Source, dest: Path) -> Path:
    if source.kind == "git":
        return _fetch_git(source, dest)
    if source.kind == "pypi":
        return _fetch_pypi(source, dest)
    folder = Path(source.location)
    if not folder.is_dir():
        raise SourceUnavailable(f"source {source.name!r}: field 'local' points to {folder}, which is not a folder.")
    return folder


# ---------------------------------------------------------------------------------------------- flattening


def _flat_name(rel: str, used: set[str]) -> str:
    """A flat, unique text-file name for ``rel`` (``a/b_c.py`` -> ``a__b_c.py.txt``), hashed if it would collide."""
    name = rel.replace("/", "__") + ".txt"
    if len(name.encode()) > 200 or name.lower() in used:
        digest = hashlib.sha1(rel.encode()).hexdigest()[:10]
        name = name[:150].rstrip(".") + f".{digest}.txt"
    used.add(name.lower())
    return name


def _count_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def flatten(root: Path, out: Path, source: str, manifest: Manifest) -> tuple[list[dict[str, Any]], Counter]:
    """Copy kept files under ``root`` into ``out`` as flat .txt files; return index rows and per-reason counts."""
    root = root.resolve()
    counts: Counter = Counter()
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    candidates: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            p = here / d
            if d == ".git":
                counts["skipped: .git"] += sum(len(f) for _, _, f in os.walk(p))
                dirnames.remove(d)
            elif p.is_symlink():
                dirnames.remove(d)  # never followed: a linked folder could loop or leave the source
                counts["skipped: symlink outside" if not p.resolve().is_relative_to(root) else "skipped: symlinked folder"] += 1
        for f in filenames:
            p = here / f
            candidates.append((p.relative_to(root).as_posix(), p))
    for rel, p in sorted(candidates):
        if p.is_symlink():
            target = p.resolve()
            if not target.is_relative_to(root):
                counts["skipped: symlink outside"] += 1
                continue
            if not target.is_file():
                counts["skipped: broken symlink"] += 1
                continue
        if not p.is_file():
            counts["skipped: not a file"] += 1
            continue
        if not rel.lower().endswith(manifest.suffixes):
            counts["skipped: other type"] += 1
            continue
        size = p.stat().st_size
        if size > manifest.max_file_bytes:
            counts["skipped: too large"] += 1
            continue
        data = p.read_bytes()
        if not data.strip():
            counts["skipped: empty"] += 1
            continue
        if b"\x00" in data[:8192]:
            counts["skipped: binary"] += 1
            continue
        try:
            text = data.decode("utf-8")
            replaced = False
        except UnicodeDecodeError:
            if manifest.undecodable == "skip":
                counts["skipped: not UTF-8"] += 1
                continue
            text, replaced = data.decode("utf-8", errors="replace"), True
            counts["replaced"] += 1
        name = _flat_name(rel, used)
        encoded = text.encode("utf-8")
        # newline="" keeps \r\n and lone \r as they are, so line numbers and bytes match the original.
        with open(out / name, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        rows.append({"text_file": name, "path": rel, "bytes": len(encoded), "lines": _count_lines(text),
                     "replaced": replaced})
        counts["kept"] += 1
    return rows, counts


def _report_from(name: str, status: str, rows: list[dict[str, Any]], counts: Counter, seconds: float) -> SourceReport:
    skipped = {k.split(": ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("skipped: ")}
    return SourceReport(name=name, status=status, kept=len(rows), bytes=sum(r["bytes"] for r in rows),
                        lines=sum(r["lines"] for r in rows), replaced=counts.get("replaced", 0),
                        skipped=skipped, seconds=round(seconds, 2))


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def build_source(cfg: WorkshopConfig, source: Source, manifest: Manifest, force: bool = False) -> SourceReport:
    """Fetch and flatten one source into retrieval_data/<name>/, unless it is already complete with the same spec."""
    final = cfg.retrieval_data_dir / source.name
    filters = {"suffixes": list(manifest.suffixes), "max_file_bytes": manifest.max_file_bytes,
               "undecodable": manifest.undecodable}
    marker = _marker(final)
    if not force and marker and marker.get("spec") == source.spec() and marker.get("filters") == filters:
        return SourceReport(**marker["report"] | {"status": "already done"})
    cfg.retrieval_data_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{source.name}-", dir=cfg.retrieval_data_dir))
    fetch_dir = Path(tempfile.mkdtemp(prefix=f".fetch-{source.name}-", dir=cfg.work_dir))
    try:
        root = _fetch(source, fetch_dir)
        rows, counts = flatten(root, staging, source.name, manifest)
        report = _report_from(source.name, "built", rows, counts, time.perf_counter() - start)
        with open(staging / INDEX_FILE, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        (staging / MARKER_FILE).write_text(json.dumps(
            {"spec": source.spec(), "filters": filters, "report": asdict(report)}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(fetch_dir, ignore_errors=True)


def download_sources(cfg: WorkshopConfig, names: list[str] | None = None, force: bool = False,
                     progress: bool = True) -> list[SourceReport]:
    """Step 1 for every source of the configured manifest (or only ``names``); returns one report per source."""
    manifest = load_manifest(cfg.manifest_path)
    sources = manifest.sources
    if names:
        unknown = sorted(set(names) - {s.name for s in sources})
        if unknown:
            raise ManifestError(f"{manifest.path.name} has no source(s) {', '.join(unknown)}; it has "
                                + ", ".join(s.name for s in sources) + ".")
        sources = [s for s in sources if s.name in names]
    from tqdm.auto import tqdm

    reports = []
    with tqdm(sources, desc="sources", unit="source", disable=not progress) as bar:
        for source in bar:
            bar.set_postfix_str(source.name)
            reports.append(build_source(cfg, source, manifest, force=force))
    return reports


def report_table(reports: list[SourceReport]):
    """The reports as a pandas DataFrame: one row per source, one column per skip reason."""
    import pandas as pd

    reasons = sorted({r for rep in reports for r in rep.skipped})
    rows = []
    for rep in reports:
        row = {"source": rep.name, "status": rep.status, "files kept": rep.kept, "MB kept": round(rep.bytes / 1e6, 2),
               "lines": rep.lines, "non-UTF-8 (replaced)": rep.replaced}
        row.update({f"skipped: {r}": rep.skipped.get(r, 0) for r in reasons})
        row["seconds"] = rep.seconds
        rows.append(row)
    return pd.DataFrame(rows).set_index("source")


# ---------------------------------------------------------------------------------------------- reading back


def completed_sources(cfg: WorkshopConfig) -> list[str]:
    """Names of the sources step 1 has finished (folder with a completion marker), sorted."""
    root = cfg.retrieval_data_dir
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _marker(p))


def read_index(cfg: WorkshopConfig, source: str) -> list[FileRecord]:
    """Every kept file of one completed source, in index order, with absolute text-file paths."""
    folder = cfg.retrieval_data_dir / source
    if not _marker(folder):
        raise SourceNotReady(
            f"source {source!r} is not complete in {cfg.retrieval_data_dir}: run 01_download_repos.ipynb first "
            f"(completed: {', '.join(completed_sources(cfg)) or 'none'})."
        )
    records = []
    with open(folder / INDEX_FILE, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            records.append(FileRecord(source=source, path=row["path"], text_file=folder / row["text_file"],
                                      bytes=row["bytes"], lines=row["lines"]))
    return records


def iter_records(cfg: WorkshopConfig) -> Iterator[FileRecord]:
    """Every kept file of every completed source, source by source."""
    for source in completed_sources(cfg):
        yield from read_index(cfg, source)
