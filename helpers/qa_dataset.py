"""Question/answer pairs for finetuning, built offline from the corpus itself (or CoQA, online).

Every public class, function and method with a docstring in the flattened Python files yields questions a
user might ask (what does it do, what does it take, where is it) whose answers come from its own docstring,
signature and location. Names use the shortest public import path (``composer.callbacks.EarlyStopper``
rather than ``composer.callbacks.early_stopper.EarlyStopper``), found from the packages' ``__init__.py``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import repos
from helpers.config import WorkshopConfig
from helpers.constants import QA_DATASET, run_first
from helpers.errors import DataError, ManifestError, SourceNotReady, SourceUnavailable
from helpers.files import write_text
from helpers.pysource import first_paragraph, module_name

EXCLUDED_DIRS = ("tests", "test", "docs", "examples", "scripts", "benchmarks")
PURPOSE_TEMPLATES = ("What does `{name}` do?", "What is `{name}` for?", "Explain `{name}` in one or two sentences.")
MAX_ARGS = 8  # documented arguments listed per answer, so answers fit a finetuning sample
KIND_WORDS = {"class": "class", "function": "function", "method": "method"}


@dataclass
class Definition:
    """A public, documented class, function or method found in the corpus."""

    source: str
    path: str
    line: int
    kind: str  # 'class' | 'function' | 'method'
    qualname: str  # module.Class.method
    public_name: str  # shortest import path
    signature: str
    docstring: str


def qa_path(cfg: WorkshopConfig, name: str = QA_DATASET) -> Path:
    """Where a question/answer JSONL lives: <work_dir>/qa/<name>.jsonl."""
    return cfg.work_dir / "qa" / f"{name}.jsonl"


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, drop_self: bool) -> str:
    args = node.args
    if drop_self and args.posonlyargs:
        args.posonlyargs = args.posonlyargs[1:]
    elif drop_self and args.args:
        args.args = args.args[1:]
        if args.defaults and len(args.defaults) > len(args.args):
            args.defaults = args.defaults[1:]
    return "(" + ast.unparse(args) + ")"


def _arg_docs(docstring: str, names: set[str], limit: int = 300) -> list[str]:
    """``name: description`` lines for the parameters ``names`` from a Google-style ``Args:`` section."""
    out: list[str] = []
    inside, indent, blank = False, None, False
    for line in docstring.expandtabs().splitlines():
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters):\s*$", stripped):
            inside, indent = True, None
            continue
        if not inside:
            continue
        if not stripped:
            blank = True
            continue
        current = len(line) - len(line.lstrip())
        indent = current if indent is None else indent
        if current < indent:
            break
        match = re.match(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\(.*\))?\s*:\s*(.*)$", stripped)
        if current == indent and match and match.group(1) in names:
            out.append(f"{match.group(1)}: {match.group(3)}".rstrip(": "))
            blank = False
        elif current == indent:
            break
        elif out and not blank and len(out[-1]) < limit:
            out[-1] += " " + stripped
    return [a if len(a) <= limit else a[: limit - 1].rstrip() + "…" for a in out]


def _reexports(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """``module.alias`` -> imported qualified name, for names a module (usually an __init__) imports."""
    out = {}
    package = module if is_package else module.rpartition(".")[0]
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)] if node.level > 1 else base_parts
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            if alias.name != "*":
                out[f"{module}.{alias.asname or alias.name}"] = f"{base}.{alias.name}"
    return out


def find_definitions(records: Iterable[repos.FileRecord], excluded_dirs: tuple[str, ...] = EXCLUDED_DIRS,
                     counts: Counter | None = None) -> list[Definition]:
    """Every public documented class/function/method in the Python files, with its shortest public name."""
    counts = counts if counts is not None else Counter()
    found: list[Definition] = []
    edges: dict[str, str] = {}
    for rec in records:
        module = module_name(rec.path)
        if module is None or any(part in excluded_dirs for part in rec.path.split("/")[:-1]):
            continue
        try:
            tree = ast.parse(rec.read_text(), filename=rec.path)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            counts["unparsable files"] += 1
            continue
        counts["python files"] += 1
        if rec.path.endswith("__init__.py"):  # a package's re-exports are its public names
            edges.update(_reexports(tree, module, True))
        for node in tree.body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            members = [(node, "class" if isinstance(node, ast.ClassDef) else "function", f"{module}.{node.name}")]
            if isinstance(node, ast.ClassDef):
                members += [(m, "method", f"{module}.{node.name}.{m.name}") for m in node.body
                            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")]
            for item, kind, qualname in members:
                doc = ast.get_docstring(item)
                if not doc or not first_paragraph(doc):
                    counts["undocumented"] += 1
                    continue
                if isinstance(item, ast.ClassDef):
                    init = next((m for m in item.body if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
                    signature = _signature(init, True) if init else ""
                else:
                    static = any(isinstance(dec, ast.Name) and dec.id == "staticmethod" for dec in item.decorator_list)
                    signature = _signature(item, kind == "method" and not static)
                found.append(Definition(rec.source, rec.path, item.lineno, kind, qualname, qualname, signature, doc))
    # Shortest public alias: follow re-export chains (composer.Trainer -> composer.trainer.Trainer -> ...).
    defined = {d.qualname for d in found}
    best: dict[str, str] = {}
    for alias in edges:
        target, seen = alias, set()
        while target in edges and target not in defined and target not in seen:
            seen.add(target)
            target = edges[target]
        if target in defined and (target not in best or (alias.count("."), alias) < (best[target].count("."), best[target])):
            best[target] = alias
    for d in found:
        owner, _, member = d.qualname.rpartition(".")
        if d.kind == "method" and owner in best and best[owner].count(".") < owner.count("."):
            d.public_name = f"{best[owner]}.{member}"
        elif d.qualname in best and best[d.qualname].count(".") < d.qualname.count("."):
            d.public_name = best[d.qualname]
    return found


def questions_for(d: Definition) -> list[dict[str, Any]]:
    """The question/answer records one definition yields."""
    where = f"`{d.path}` line {d.line} (in {d.source})"
    pick = int(hashlib.sha1(d.qualname.encode()).hexdigest(), 16) % len(PURPOSE_TEMPLATES)
    base = {"source": d.source, "path": d.path, "line": d.line}
    out = [{"prompt": PURPOSE_TEMPLATES[pick].format(name=d.public_name),
            "response": f"{first_paragraph(d.docstring)} It is a {KIND_WORDS[d.kind]} defined in {where}.", **base},
           {"prompt": f"Where is `{d.public_name}` defined?",
            "response": f"`{d.public_name}` is a {KIND_WORDS[d.kind]} defined in {where}.", **base}]
    if d.signature and d.signature != "()":
        args = _arg_docs(d.docstring, set(re.findall(r"\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*[:=,)]", d.signature)))
        response = f"`{d.public_name}{d.signature}`"
        if args:
            response += "\n" + "\n".join(f"- {a}" for a in args[:MAX_ARGS])
            if len(args) > MAX_ARGS:
                response += f"\n- … and {len(args) - MAX_ARGS} more documented arguments"
        out.append({"prompt": f"What arguments does `{d.public_name}` take?", "response": response, **base})
    return out


def write_jsonl(records: list[dict[str, Any]], path: Path) -> None:
    """Write records as JSON lines (atomically), keeping non-ASCII text as it is."""
    write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def build_qa_jsonl(cfg: WorkshopConfig, sources: list[str] | None = None, max_records: int | None = None,
                   excluded_dirs: tuple[str, ...] = EXCLUDED_DIRS) -> tuple[Path, Counter]:
    """Write <work_dir>/qa/codebase_qa.jsonl from the docstrings of the completed sources; return it and counts."""
    names = sources or repos.completed_sources(cfg)
    if not names:
        raise SourceNotReady(f"no completed sources in {cfg.retrieval_data_dir}: {run_first(1)}.")
    records = [r for name in names for r in repos.read_index(cfg, name)]
    counts: Counter = Counter()
    definitions = find_definitions(records, excluded_dirs, counts)
    definitions.sort(key=lambda d: (d.source, d.path, d.line, d.qualname))
    qa = [q for d in definitions for q in questions_for(d)]
    if max_records is not None:
        qa = qa[:max_records]
    if not qa:
        raise DataError(f"sources {', '.join(names)} hold no documented public Python definitions to ask about.")
    counts["definitions"] = len(definitions)
    counts["records"] = len(qa)
    path = qa_path(cfg)
    write_jsonl(qa, path)
    return path, counts


# ---------------------------------------------------------------------------------------------- CoQA (online)


def coqa_to_jsonl(coqa_json: str | Path, out: str | Path, max_records: int | None = None) -> int:
    """Convert CoQA's JSON (stories with question/answer turns) to prompt/response JSONL; returns records written."""
    data = json.loads(Path(coqa_json).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{coqa_json} is not CoQA JSON: expected an object with a 'data' list of stories.")
    records = []
    for s, story in enumerate(data["data"]):
        try:
            history = ""
            for question, answer in zip(story["questions"], story["answers"], strict=False):
                prompt = f"{story['story'].strip()}\n\n{history}Q: {question['input_text']}\nA:"
                records.append({"prompt": prompt, "response": " " + answer["input_text"], "source": "coqa",
                                "path": str(story.get("id", s))})
                history += f"Q: {question['input_text']}\nA: {answer['input_text']}\n"
        except (KeyError, TypeError):
            raise DataError(f"{coqa_json}: story {s} lacks 'story', 'questions' or 'answers' in CoQA's layout.") from None
    records = records[:max_records] if max_records is not None else records
    write_jsonl(records, Path(out))
    return len(records)


def fetch_qa_datasets(cfg: WorkshopConfig, timeout: float = 60) -> list[Path]:
    """Download and convert the manifest's ``qa_datasets`` (e.g. CoQA) into <work_dir>/qa/<name>.jsonl."""
    manifest = repos.load_manifest(cfg.manifest_path)
    entries = manifest.extra.get("qa_datasets") or []
    paths = []
    for i, entry in enumerate(entries):
        where = f"{manifest.path.name}: qa_datasets[{i}]"
        if not isinstance(entry, dict) or entry.get("format") != "coqa" or not str(entry.get("url", "")).startswith(("https://", "http://")):
            raise ManifestError(f"{where} needs 'name', an http(s) 'url' and format: coqa.")
        name = repos.check_name(entry.get("name"), where)
        out = qa_path(cfg, name)
        if out.is_file():
            paths.append(out)
            continue
        raw = out.with_suffix(".json")
        raw.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(entry["url"], timeout=timeout) as response, open(raw, "wb") as fh:
                fh.write(response.read())
        except OSError as err:
            raise SourceUnavailable(
                f"{where}: could not download {entry['url']} ({err}). Offline, use the generated codebase_qa.jsonl "
                f"(manifest='{repos.OFFLINE_MANIFEST}')."
            ) from None
        coqa_to_jsonl(raw, out)
        paths.append(out)
    return paths


def read_examples(path: str | Path, every: int = 100, limit: int = 400) -> list[dict[str, Any]]:
    """Every ``every``-th record of the first ``limit`` lines of a JSONL file, to show a few examples."""
    with open(path, encoding="utf-8") as fh:
        lines = [line for _, line in zip(range(limit), fh, strict=False)]
    return [json.loads(line) for line in lines[::every]]
