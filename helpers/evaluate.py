"""Step 6 evaluation: how often retrieval finds the answering file, and how often answers hold a right keyword.

The evaluation set (``data_manifests/eval_questions.yaml``) holds hand-written questions that describe behaviour
without naming the code, each with the file(s) that answer it and keywords a correct answer contains. More
questions are generated from the corpus's own docstrings. Retrieval is scored by recall@k and MRR of the first
chunk from an answering file; answers by the share that contain a keyword, the share that cite a retrieved source,
and latency.
"""

from __future__ import annotations

import json

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from helpers import qa
from helpers.config import REPO_ROOT

EVAL_SET = REPO_ROOT / "data_manifests" / "eval_questions.yaml"


@dataclass
class EvalQuestion:
    """A question, the file paths that answer it, keywords of a correct answer, and where it came from."""

    question: str
    files: list[str]
    keywords: list[str]
    origin: str = "hand"  # 'hand' or 'docstring'


def load_eval_set(path: Path = EVAL_SET) -> list[EvalQuestion]:
    """The hand-written questions of the evaluation file; a malformed entry names its number and field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"evaluation set {path} does not exist.")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("hand")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: needs a top-level 'hand:' list of questions.")
    out = []
    for i, e in enumerate(entries):
        where = f"{path.name}: hand[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("question"), str) or not e["question"].strip():
            raise ValueError(f"{where}: field 'question' must be a non-empty string.")
        for name in ("files", "keywords"):
            if not isinstance(e.get(name), list) or not e[name] or not all(isinstance(x, str) and x for x in e[name]):
                raise ValueError(f"{where}: field '{name}' must be a non-empty list of strings.")
        out.append(EvalQuestion(e["question"].strip(), list(e["files"]), list(e["keywords"]), "hand"))
    return out


def docstring_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions made from public functions' and classes' docstring summaries (the name is the keyword)."""
    candidates = []
    for c in chunks:
        if c.kind not in ("function", "class") or c.symbol.endswith("(continued)") or "test" in c.path.lower():
            continue
        name = c.symbol.split(".")[-1]
        if name.startswith("_") or c.path.endswith("__init__.py"):
            continue
        summary = qa.docstring_summary(c)
        words = summary.split()
        if not (6 <= len(words) <= 30) or name.lower() in summary.lower() or summary.lower().startswith(("see ", "deprecated")):
            continue
        candidates.append(EvalQuestion(f"Which function or class does this: {summary[0].lower() + summary[1:]}?",
                                       [c.path], [name], "docstring"))
    rng = random.Random(seed)
    rng.shuffle(candidates)
    seen: set[str] = set()
    picked = []
    for q in candidates:
        if q.keywords[0] not in seen:
            seen.add(q.keywords[0])
            picked.append(q)
        if len(picked) == n:
            break
    return picked


def check_eval_set(questions: list[EvalQuestion], chunks: list[qa.Chunk]) -> list[str]:
    """Problems with the set against the indexed corpus: unknown files, keywords found in no answering file."""
    text_by_path: dict[str, str] = {}
    for c in chunks:
        text_by_path[c.path] = text_by_path.get(c.path, "") + "\n" + c.text
    problems = []
    for q in questions:
        missing = [f for f in q.files if f not in text_by_path]
        if missing:
            problems.append(f"{q.question!r}: file(s) {missing} are not in the index")
            continue
        blob = "\n".join(text_by_path[f] for f in q.files).lower()
        if not any(k.lower() in blob for k in q.keywords):
            problems.append(f"{q.question!r}: none of {q.keywords} occurs in {q.files}")
    return problems


def _first_hit_rank(hits: list[qa.Hit], files: list[str]) -> int | None:
    for rank, h in enumerate(hits, 1):
        if h.chunk.path in files:
            return rank
    return None


def evaluate_retrieval(index: qa.CodeIndex, questions: list[EvalQuestion], modes: Iterable[str] = qa.MODES,
                       k: int = 10):
    """One row per (mode, question): rank of the first chunk from an answering file (None if not in top k), ms."""
    import pandas as pd

    rows = []
    for mode in modes:
        for q in questions:
            t0 = time.perf_counter()
            hits = index.search(q.question, k, mode)
            ms = (time.perf_counter() - t0) * 1000
            rows.append({"mode": mode, "origin": q.origin, "question": q.question,
                         "rank": _first_hit_rank(hits, q.files), "ms": ms})
    return pd.DataFrame(rows)


def retrieval_summary(rows, ks: tuple[int, ...] = (1, 3, 5, 10)):
    """recall@k, MRR and median ms per retrieval mode (and per question origin)."""
    import pandas as pd

    def agg(g) -> pd.Series:
        ranks = g["rank"]
        out = {f"recall@{k}": float((ranks.notna() & (ranks <= k)).mean()) for k in ks}
        out["MRR"] = float(ranks.map(lambda r: 0.0 if pd.isna(r) else 1.0 / r).mean())
        out["p50 ms"] = float(g["ms"].median())
        out["questions"] = len(g)
        return pd.Series(out)

    return rows.groupby(["mode", "origin"]).apply(agg, include_groups=False).round(3)


def contains_keyword(text: str, keywords: list[str]) -> bool:
    low = text.lower()
    return any(k.lower() in low for k in keywords)


def _answers_cache_file(index: qa.CodeIndex, gen: Any, questions: list[EvalQuestion], settings: dict[str, Any]) -> Path:
    """Where the answers of exactly this index, model, question set and settings are kept between runs."""
    import hashlib

    def stamp(path: Path) -> list[int] | None:
        return [path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else None

    folder = Path(str(getattr(gen, "folder", "")))
    key = {"index": stamp(index.cfg.index_dir / qa.META_FILE), "model": str(folder),
           "weights": stamp(folder / "model.safetensors"), "endpoint": getattr(gen, "url", ""),
           "questions": [[q.question, q.keywords] for q in questions], **settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return index.cfg.work_dir / "eval" / "answers-cache" / f"{digest}.json"


def evaluate_answers(index: qa.CodeIndex, gen: Any, questions: list[EvalQuestion], label: str,
                     mode: str = qa.DEFAULT_MODE, k: int = qa.DEFAULT_K, max_new_tokens: int = 64,
                     answer_format: str = "symbol-first", progress: bool = True, reuse: bool = True):
    """One row per question: keyword in the retrieved context / the answer / the model's own text, citation, seconds.

    Answers take seconds each, so a run with the same index, model, questions and settings is kept in
    ``<work_dir>/eval/answers-cache`` and reused (``reuse=False`` answers again): re-running the notebook is quick.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    cache = _answers_cache_file(index, gen, questions, {"label": label, "mode": mode, "k": k, "format": answer_format,
                                                        "max_new_tokens": max_new_tokens})
    if reuse and cache.is_file():
        print(f"answers ({label}): reusing {len(questions)} answers from {cache.parent.name}/{cache.name}")
        return pd.DataFrame(json.loads(cache.read_text()))
    rows = []
    for q in tqdm(questions, desc=f"answers ({label})", disable=not progress):
        ans = qa.ask(index, gen, q.question, k=k, mode=mode, max_new_tokens=max_new_tokens, answer_format=answer_format)
        if ans.error:
            raise RuntimeError(f"question {q.question!r} gave an error: {ans.error}")
        context = "\n".join(h.chunk.embed_text for h in ans.hits)
        cited = any(h.chunk.path in ans.text for h in ans.hits)
        rows.append({"setting": label, "origin": q.origin, "question": q.question, "answer": ans.text,
                     "context keyword": contains_keyword(context, q.keywords),
                     "answer keyword": contains_keyword(ans.text, q.keywords),
                     "model-text keyword": contains_keyword(ans.model_text, q.keywords),
                     "cites a source": cited, "seconds": ans.seconds})
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(cache)
    return pd.DataFrame(rows)


def question_set(index: qa.CodeIndex, docstring_n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """The hand-written questions plus ``docstring_n`` generated ones, kept where the answering file is indexed."""
    indexed = {c.path for c in index.chunks}
    questions = load_eval_set() + docstring_questions(index.chunks, n=docstring_n, seed=seed)
    return [q for q in questions if all(f in indexed for f in q.files[:1])]


def compare_answers(index: qa.CodeIndex, questions: list[EvalQuestion], models: Iterable[str] = ("base", "finetuned"),
                    limit: int = 0, **ask_kwargs: Any):
    """Answer rows for the base model plain and symbol-first, and every other available model symbol-first.

    Uses the hand-written questions (all questions if there are none), the first ``limit`` of them when set.
    """
    import pandas as pd

    answer_set = [q for q in questions if q.origin == "hand"] or questions
    answer_set = answer_set[:limit] if limit else answer_set
    available = qa.model_choices(index.cfg)
    settings = [("base", "plain"), ("base", "symbol-first")]
    settings += [(m, "symbol-first") for m in models if m != "base" and m in available]
    return pd.concat([evaluate_answers(index, qa.generator(index.cfg, m), answer_set, f"{m} / {fmt}",
                                       answer_format=fmt, **ask_kwargs) for m, fmt in settings])


def answer_summary(rows):
    """Shares of answers with a keyword / citation and latency percentiles, per setting."""
    import pandas as pd

    def agg(g) -> pd.Series:
        return pd.Series({"context keyword": g["context keyword"].mean(), "answer keyword": g["answer keyword"].mean(),
                          "model-text keyword": g["model-text keyword"].mean(),
                          "cites a source": g["cites a source"].mean(), "p50 s": g["seconds"].median(),
                          "p95 s": g["seconds"].quantile(0.95), "questions": len(g)})

    return rows.groupby("setting", sort=False).apply(agg, include_groups=False).round(3)


def _share_bars(table, title: str, ax=None):
    """Grouped bars of shares (0 to 1), one group per row of ``table``."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.5))[1]
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of questions")
    ax.set_title(title)
    ax.legend(ncol=len(table.columns), fontsize=8, loc="upper left")
    return ax


def plot_retrieval(summary, ax=None):
    """Bar chart of recall@k and MRR per retrieval mode (hand-written questions and docstring questions)."""
    return _share_bars(summary.drop(columns=["p50 ms", "questions"]),
                       "Retrieval: answering file among the top k chunks", ax)


def plot_answers(summary, ax=None):
    """Bar chart: keyword in context vs in the answer vs citation, per answer setting."""
    table = summary[["context keyword", "answer keyword", "model-text keyword", "cites a source"]]
    return _share_bars(table, "Answers: a correct keyword in the context, the answer, the model's own words", ax)
