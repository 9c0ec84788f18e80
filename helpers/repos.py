"""Step 1: fetch the code bases named in a manifest and flatten each into plain text files with an index.

A manifest (YAML in ``data_manifests/``) lists sources, each a git repository at a pinned commit or tag, a PyPI
source distribution (``name==version``), a local folder or documentation web pages (``helpers.webdocs``). Each
source becomes ``retrieval_data/<name>/``: one ``.txt`` file per kept file or page (collision-free flat names),
``index.jsonl`` mapping every text file back to its original path (a page: its URL), size and line count (later
steps cite ``path:line`` from it, or a page's URL), and a completion marker written last. The folder is built
under a temporary name and renamed, so an interrupted run never looks finished.
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.config import REPO_ROOT, WorkshopConfig
from helpers.constants import run_first
from helpers.errors import ManifestError, SourceNotReady, SourceUnavailable
from helpers.files import cleanup_on_terminate, read_json, replace_dir, write_json, write_text
from helpers.webdocs import DocsSite, crawl, site_from_manifest

INDEX_FILE = "index.jsonl"
MARKER_FILE = ".complete.json"
DEFAULT_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".rst", ".txt")
DEFAULT_MAX_FILE_BYTES = 1_000_000
OFFLINE_MANIFEST = "offline_sdists.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
PYPI_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
GIT_URL_RE = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
KINDS = ("git", "pypi", "local", "docs")
UNDECODABLE = ("replace", "skip")


@dataclass(frozen=True)
class Source:
    """One manifest entry: where a code base comes from and the name of its folder in retrieval_data/."""

    name: str
    kind: str  # 'git' | 'pypi' | 'local' | 'docs'
    location: str  # git URL, 'name==version', a folder, or the docs start page
    ref: str = ""  # git commit or tag (git only)
    docs: DocsSite | None = None  # prefix and limits of a docs crawl (docs only)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind, "location": self.location, "ref": self.ref}
        return (spec | {"docs": asdict(self.docs)}) if self.docs else spec


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
        """The file's text exactly as it was (``\r\n`` and lone ``\r`` kept: line endings are not translated)."""
        with open(self.text_file, encoding="utf-8", newline="") as fh:
            return fh.read()


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


def check_name(name: Any, where: str) -> str:
    """A name that becomes a folder (source, dataset): letters, digits, '.', '_', '-', never a path."""
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: field 'name' is missing; give it a short folder name like 'composer'.")
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
        available = sorted(p.name for p in (REPO_ROOT / "data_manifests").glob("*.yaml"))
        raise ManifestError(f"manifest {path} does not exist; the shipped manifests are: {', '.join(available)}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path} is not UTF-8 text (byte {err.start}): save the manifest as UTF-8.") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise ManifestError(f"{path}: needs a top-level 'sources:' list with at least one entry.")
    suffixes = data.get("suffixes", list(DEFAULT_SUFFIXES))
    if not isinstance(suffixes, list) or not suffixes or not all(isinstance(s, str) and s.startswith(".") for s in suffixes):
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
        name = check_name(entry.get("name"), where)
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
        if kind == "docs":
            if "ref" in entry:
                raise ManifestError(f"{where}: field 'ref' only applies to git sources; remove it.")
            site = site_from_manifest(value, where)
            sources.append(Source(name=name, kind=kind, location=site.url, docs=site))
            continue
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


def _write_flat(out: Path, rel: str, path: str, text: str, used: set[str], replaced: bool = False) -> dict[str, Any]:
    """Write ``text`` as the flat file for ``rel`` in ``out``; its index row, cited as ``path``."""
    name = _flat_name(rel, used)
    # newline="" keeps \r\n and lone \r as they are, so line numbers and bytes match the original.
    with open(out / name, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return {"text_file": name, "path": path, "bytes": len(text.encode("utf-8")), "lines": _count_lines(text),
            "replaced": replaced}


def _resolved(path: Path) -> Path | None:
    """Where a link points, or None for a link loop or an unreadable target."""
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):
        return None


def _walk(root: Path, counts: Counter) -> list[tuple[str, Path]]:
    """(relative path, path) of every file below ``root``, without recursion (any depth) or following links."""
    found: list[tuple[str, Path]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            counts["skipped: unreadable folder"] += 1
            continue
        for entry in entries:
            p = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if entry.name == ".git":
                    counts["skipped: .git"] += 1
                else:
                    stack.append(p)
            elif entry.is_symlink() and p.is_dir():
                target = _resolved(p)  # never followed: a linked folder could loop or leave the source
                inside = target is not None and target.is_relative_to(root)
                counts["skipped: symlinked folder" if inside else "skipped: symlink outside"] += 1
            else:
                found.append((p.relative_to(root).as_posix(), p))
    return found


def flatten(root: Path, out: Path, manifest: Manifest) -> tuple[list[dict[str, Any]], Counter]:
    """Copy kept files under ``root`` into ``out`` as flat .txt files; return index rows and per-reason counts."""
    root = root.resolve()
    counts: Counter = Counter()
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for rel, p in sorted(_walk(root, counts)):
        if p.is_symlink():
            target = _resolved(p)
            if target is None:
                counts["skipped: symlink loop"] += 1
                continue
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
        try:
            if p.stat().st_size > manifest.max_file_bytes:
                counts["skipped: too large"] += 1
                continue
            data = p.read_bytes()
        except OSError:
            counts["skipped: unreadable"] += 1
            continue
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
        rows.append(_write_flat(out, rel, rel, text, used, replaced))
        counts["kept"] += 1
    return rows, counts


def flatten_docs(site: DocsSite, name: str, out: Path) -> tuple[list[dict[str, Any]], Counter]:
    """Crawl the docs source ``name`` into ``out``: one flat .txt per page, its URL as the path; rows and counts."""
    result = crawl(site, name)
    used: set[str] = set()
    rows = [_write_flat(out, page.name, page.url, page.text, used) for page in result.pages]
    counts = Counter({f"skipped: {reason}": n for reason, n in result.skipped.items()})
    return rows, counts + Counter(kept=len(rows))


def _report_from(name: str, status: str, rows: list[dict[str, Any]], counts: Counter, seconds: float) -> SourceReport:
    skipped = {k.split(": ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("skipped: ")}
    return SourceReport(name=name, status=status, kept=len(rows), bytes=sum(r["bytes"] for r in rows),
                        lines=sum(r["lines"] for r in rows), replaced=counts.get("replaced", 0),
                        skipped=skipped, seconds=round(seconds, 2))


def _marker(folder: Path) -> dict[str, Any] | None:
    marker = read_json(folder / MARKER_FILE)
    return marker if isinstance(marker, dict) else None


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
        if source.docs is not None:
            rows, counts = flatten_docs(source.docs, source.name, staging)
        else:
            rows, counts = flatten(_fetch(source, fetch_dir), staging, manifest)
        if not rows and source.docs is not None:
            raise SourceUnavailable(f"source {source.name!r}: no page kept from {source.location} (skipped: "
                                    f"{dict(counts) or 'nothing found'}). Check fields 'docs.url' and 'docs.prefix', "
                                    "and that robots.txt allows the pages.")
        if not rows:
            raise SourceUnavailable(f"source {source.name!r}: no file kept from {source.location} (endings "
                                    f"{', '.join(manifest.suffixes)}, up to {manifest.max_file_bytes:,} bytes; "
                                    f"skipped: {dict(counts) or 'nothing found'}). Check the source and the filters.")
        report = _report_from(source.name, "built", rows, counts, time.perf_counter() - start)
        write_text(staging / INDEX_FILE, "".join(json.dumps(row) + "\n" for row in rows))
        write_json(staging / MARKER_FILE, {"spec": source.spec(), "filters": filters, "report": asdict(report)})
        replace_dir(staging, final)
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
    with cleanup_on_terminate(), tqdm(sources, desc="sources", unit="source", disable=not progress) as bar:
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
            f"source {source!r} is not complete in {cfg.retrieval_data_dir}: {run_first(1)} "
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


# ---------------------------------------------------------------------------------------------- looking at it


def records_table(records: list[FileRecord]):
    """One row per kept file: source, original path, text file, bytes, lines (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([{"source": r.source, "path": r.path, "text file": r.text_file.name, "bytes": r.bytes,
                          "lines": r.lines} for r in records])


def types_table(records: list[FileRecord]):
    """Files and lines per file ending, most lines first."""
    frame = records_table(records)
    ending = frame["path"].str.extract(r"(\.[^./]+)$")[0].str.lower()
    return (frame.assign(type=ending).groupby("type").agg(files=("path", "size"), lines=("lines", "sum"))
            .sort_values("lines", ascending=False))


def plot_report(table) -> Any:
    """Two bar charts of a report table: text kept per source, and files kept or skipped per reason."""
    import matplotlib.pyplot as plt

    skip_cols = [c for c in table.columns if c.startswith("skipped: ")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    table["MB kept"].plot.barh(ax=axes[0], color="tab:blue", title="text kept (MB)")
    counts = table[["files kept", *skip_cols]].rename(columns=lambda c: c.replace("skipped: ", "skipped\n"))
    counts.plot.barh(ax=axes[1], stacked=True, title="files per source")
    axes[1].legend(fontsize=8, bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def check_sources(cfg: WorkshopConfig, names: list[str]) -> list[str]:
    """Problems with completed sources: not completed, no files, colliding names, missing or resized files."""
    done = completed_sources(cfg)
    problems = [f"source {name!r} is not completed" for name in names if name not in done]
    for name in (n for n in names if n in done):
        index = read_index(cfg, name)
        if not index:
            problems.append(f"source {name!r} kept no files: check its suffixes and max_file_bytes")
        if len({r.text_file.name.lower() for r in index}) != len(index):
            problems.append(f"text file names collide in {name}")
        problems += [f"{r.text_file} is missing or resized" for r in index
                     if not r.text_file.is_file() or r.text_file.stat().st_size != r.bytes]
    return problems


def manifest_table(manifest: Manifest):
    """The manifest's sources as a table: name, kind, where from, ref."""
    import pandas as pd

    return pd.DataFrame([{"name": s.name, "kind": s.kind, "from": s.location, "ref": s.ref}
                         for s in manifest.sources]).set_index("name")
