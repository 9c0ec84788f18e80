"""Evaluation: how often retrieval finds the answering file, and how often answers hold a right keyword.

The evaluation set (``data_manifests/eval_questions.yaml``) holds hand-written questions that describe behaviour
without naming the code, each with the file(s) that answer it and keywords a correct answer contains. The
hand-written questions are split, once and by a seeded hash, into a *tuning* half (defaults are chosen on it)
and a *held-out* half (reported, never tuned on). More questions are generated from the corpus itself: from its
docstrings (describing what a function does) and from its names (asking about a function, class or parameter by
name, about a class in words or about a file by its path, or for a kind of class by what it does, as users often
do); any of them can be asked again with typos. Retrieval is scored by recall@k and MRR of the first chunk from an answering file;
answers by the share that contain a keyword, the share that cite an answering file, and latency.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import yaml
from tqdm.auto import tqdm

from helpers import qa
from helpers.config import REPO_ROOT, WorkshopConfig
from helpers.errors import EvalSetError
from helpers.files import read_json, write_json, write_text
from helpers.pysource import declared_names
from helpers.qa.confidence import choose_threshold
from helpers.qa.multipart import ask_multipart
from helpers.scoring import contains_keyword

EVAL_SET = REPO_ROOT / "data_manifests" / "eval_questions.yaml"
USER_SET = REPO_ROOT / "data_manifests" / "user_questions.yaml"  # user-style questions written blind (session 15)
HALVES = ("tuning", "held-out")
PACKAGES = {"composer/": "composer", "streaming/": "streaming", "llmfoundry/": "llm-foundry",
            "scripts/": "llm-foundry", "mcli/": "llm-foundry"}


@dataclass
class EvalQuestion:
    """A question, the file paths that answer it, keywords of a correct answer, and where it came from."""

    question: str
    files: list[str]
    keywords: list[str]
    origin: str = "hand"  # 'hand', 'user', 'docstring', 'named', 'parameter', 'spoken', 'file' or 'kind'; '+typos' when misspelled
    package: str = ""
    half: str = "tuning"  # 'tuning' or 'held-out' (hand-written questions); generated ones are 'tuning'


# How users ask about a function or class they know by name (named_questions), and about a parameter or attribute
# (parameter_questions).
NAMED_PHRASINGS = ("What does `{}` do?", "Where is {} defined?", "How do I use {}?", "{}")
PARAMETER_PHRASINGS = ("What is the default value of {}?", "What does the `{}` argument do?", "How do I set {}?")
# A file asked about by its path (file_questions), whole or its last two parts.
FILE_PHRASINGS = ("What is in {}?", "What does {} do?", "Explain {}")
# A kind of class asked for by what it does (kind_questions): "Which callback does this: …?".
KIND_PHRASING = "Which {} does this: {}?"
# A class asked about in words (spoken_questions): "the mds writer" for MDSWriter.
SPOKEN_PHRASINGS = ("What does the {} do?", "How do I use a {}?", "Where is the {} defined?")
# What to subclass for one's own thing (custom_questions): "How do I write a custom callback?".
CUSTOM_PHRASINGS = ("How do I write a custom {}?", "How can I make my own {}?", "What do I subclass to add my own {}?",
                    "I want a custom {}: where do I start?")
TYPO_WORDS = 2  # words misspelled in each question by misspelled(), of TYPO_MIN_LETTERS letters or more
TYPO_MIN_LETTERS = 5


def package_of(path: str) -> str:
    """Which library a corpus path belongs to (by its top folder)."""
    return next((name for prefix, name in PACKAGES.items() if path.startswith(prefix)), "other")


def assign_halves(questions: list[EvalQuestion], seed: int = 17) -> list[EvalQuestion]:
    """Split questions into a tuning and a held-out half by a seeded hash, half of each package in each."""
    by_package: dict[str, list[EvalQuestion]] = {}
    for q in questions:
        by_package.setdefault(q.package, []).append(q)
    for group in by_package.values():
        ranked = sorted(group, key=lambda q: hashlib.sha256(f"{seed}\0{q.question}".encode()).hexdigest())
        for i, q in enumerate(ranked):
            q.half = HALVES[i % 2]
    return questions


def _questions(path: Path, key: str, origin: str) -> list[EvalQuestion]:
    """The questions of the file's ``key:`` list, with their package; a bad entry names its field."""
    path = Path(path)
    entries = _eval_file(path).get(key)
    if not isinstance(entries, list) or not entries:
        raise EvalSetError(f"{path}: needs a top-level '{key}:' list of questions.")
    out = []
    for i, e in enumerate(entries):
        where = f"{path.name}: {key}[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("question"), str) or not e["question"].strip():
            raise EvalSetError(f"{where}: field 'question' must be a non-empty string.")
        files, keywords = _listed(e, "files", where), _listed(e, "keywords", where)
        out.append(EvalQuestion(e["question"].strip(), files, keywords, origin, e.get("package") or package_of(files[0])))
    return out


def load_eval_set(path: Path = EVAL_SET, seed: int = 17) -> list[EvalQuestion]:
    """The hand-written questions of the evaluation file, with package and half; a bad entry names its field."""
    return assign_halves(_questions(path, "hand", "hand"), seed)


def load_user_set(path: Path = USER_SET) -> list[EvalQuestion]:
    """The user-style questions (``data_manifests/user_questions.yaml``): its ``tuning:`` and ``held-out:`` lists as
    the two halves, origin 'user'. A keyword the question itself contains is dropped where another is left: an
    answer that repeats the question would have it."""
    out = []
    for half in HALVES:
        for q in _questions(path, half, "user"):
            asked = q.question.lower()
            q.keywords = [k for k in q.keywords if k.lower() not in asked] or q.keywords
            q.half = half
            out.append(q)
    return out


@dataclass
class MultiPartQuestion:
    """A question asking several things; each part has its answering files and keywords."""

    question: str
    parts: list[EvalQuestion]
    package: str = "multipart"
    half: str = "tuning"


def _eval_file(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EvalSetError(f"evaluation set {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise EvalSetError(f"{path} is not valid UTF-8 YAML: {err}") from None
    if not isinstance(data, dict):
        raise EvalSetError(f"{path}: needs a mapping with a 'hand:' list of questions at the top.")
    return data


def _listed(entry: Any, name: str, where: str) -> list[str]:
    value = entry.get(name) if isinstance(entry, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        raise EvalSetError(f"{where}: field '{name}' must be a non-empty list of strings.")
    return list(value)


def load_multipart(path: Path = EVAL_SET, seed: int = 17) -> list[MultiPartQuestion]:
    """The ``multipart:`` questions of the evaluation file, split into halves like the hand-written ones."""
    out = []
    for i, e in enumerate(_eval_file(path).get("multipart") or []):
        where = f"{Path(path).name}: multipart[{i}]"
        parts = e.get("parts") if isinstance(e, dict) else None
        if not isinstance(e.get("question"), str) or not isinstance(parts, list) or len(parts) < 2:
            raise EvalSetError(f"{where}: needs a 'question' and a 'parts' list of at least two parts.")
        out.append(MultiPartQuestion(e["question"].strip(), [
            EvalQuestion(e["question"].strip(), _listed(p, "files", f"{where}.parts[{j}]"),
                         _listed(p, "keywords", f"{where}.parts[{j}]"), "multipart", package_of(p["files"][0]))
            for j, p in enumerate(parts)]))
    return assign_halves(out, seed)


def load_offtopic(path: Path = EVAL_SET, seed: int = 17) -> list[EvalQuestion]:
    """The ``offtopic:`` questions (no answer in the index), split into halves."""
    entries = _eval_file(path).get("offtopic") or []
    if not all(isinstance(q, str) and q.strip() for q in entries):
        raise EvalSetError(f"{Path(path).name}: every 'offtopic' entry must be a question (a non-empty string).")
    return assign_halves([EvalQuestion(q.strip(), [], [], "offtopic", "offtopic") for q in entries], seed)


def _public_definitions(chunks: Iterable[qa.Chunk]) -> Iterable[tuple[qa.Chunk, str]]:
    """Each public function and class of the library code (not tests, not ``__init__.py``), with its name, in path
    and line order (an index rebuilt after a change holds its chunks in another order: the same questions)."""
    for c in sorted(chunks, key=lambda c: (c.path, c.start_line, c.symbol)):
        if c.kind not in ("function", "class") or c.symbol.endswith("(continued)") or "test" in c.path.lower():
            continue
        name = c.symbol.split(".")[-1]
        if not name.startswith("_") and not c.path.endswith("__init__.py"):
            yield c, name


def _check_count(name: str, n: Any) -> int:
    """``n`` if it is a whole number of questions (0 or more), else EvalSetError naming ``name``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise EvalSetError(f"{name}={n!r}: the number of generated questions must be a whole number, 0 or more.")
    return n


def _pick(candidates: list[EvalQuestion], n: int, seed: int) -> list[EvalQuestion]:
    """``n`` of the candidates in a seeded order, one per keyword (the asked-for name)."""
    n = _check_count("n", n)
    rng = random.Random(seed)
    rng.shuffle(candidates)
    seen: set[str] = set()
    picked = []
    for q in candidates:
        if len(picked) == n:
            break
        if q.keywords[0] not in seen:
            seen.add(q.keywords[0])
            picked.append(q)
    return picked


def _described(name: str, summary: str) -> str:
    """A docstring summary as words of a question ("Counts the ticks." -> "counts the ticks."), or '' when it cannot
    ask for ``name``: too short or too long (6 to 30 words), saying the name itself, or a pointer ("See …",
    "Deprecated …")."""
    if not 6 <= len(summary.split()) <= 30 or name.lower() in summary.lower() or \
            summary.lower().startswith(("see ", "deprecated")):
        return ""
    return summary[0].lower() + summary[1:]


def docstring_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions made from public functions' and classes' docstring summaries (the name is the keyword)."""
    candidates = [EvalQuestion(f"Which function or class does this: {words}?", [c.path], [name], "docstring",
                               package_of(c.path))
                  for c, name in _public_definitions(chunks) if (words := _described(name, c.docstring_summary()))]
    return _pick(candidates, n, seed)


def kind_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that ask for a kind of class by what it does, in words from its docstring summary ("Which
    callback does this: …?", ``qa.class_kinds``; the kind most classes share when a class has several). The class's
    file answers; its name is the keyword."""
    chunks = list(chunks)
    kinds = qa.class_kinds(chunks)
    shared = Counter(word for words in kinds.values() for word in words)
    candidates = []
    for c, name in _public_definitions(chunks):
        words = _described(name, c.docstring_summary()) if id(c) in kinds else ""
        if words:
            kind = max(sorted(kinds[id(c)]), key=lambda word: shared[word])
            candidates.append(EvalQuestion(KIND_PHRASING.format(kind, words.rstrip(".")), [c.path], [name], "kind",
                                           package_of(c.path)))
    return _pick(candidates, n, seed)


def _asked_by_name(where: dict[str, list[str]], origin: str, phrasings: tuple[str, ...], n: int,
                   seed: int) -> list[EvalQuestion]:
    """``n`` questions about the names in ``where`` (name -> the files that answer), in the ``phrasings`` in turn."""
    picked = _pick([EvalQuestion(name, files, [name], origin, package_of(files[0]))
                    for name, files in sorted(where.items())], n, seed)
    for i, q in enumerate(picked):
        q.question = phrasings[i % len(phrasings)].format(q.keywords[0])
    return picked


def named_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that ask about a public function or class by its name, in the ``NAMED_PHRASINGS`` in turn;
    the files that define that name answer them (the name is the keyword)."""
    where: dict[str, list[str]] = {}
    for c, name in _public_definitions(chunks):
        if len(name) > 3 and c.path not in where.setdefault(name, []):
            where[name].append(c.path)
    return _asked_by_name(where, "named", NAMED_PHRASINGS, n, seed)


def parameter_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that ask about a parameter or class attribute by its name (``cache_limit``), in the
    ``PARAMETER_PHRASINGS`` in turn; the files whose public functions or classes declare it answer them. Only names
    written as code (with ``_``) and declared in at most two files: ``batch_size`` in forty files has no answer."""
    where: dict[str, list[str]] = {}
    for c, _ in _public_definitions(chunks):
        for name in declared_names(c.text):
            if "_" in name.strip("_") and not name.startswith("_") and c.path not in where.setdefault(name, []):
                where[name].append(c.path)
    return _asked_by_name({name: files for name, files in where.items() if 0 < len(files) <= 2}, "parameter",
                          PARAMETER_PHRASINGS, n, seed)


def spoken_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that name a public class of two or more words in words, lower case (``MDSWriter`` -> "the
    mds writer"), in the ``SPOKEN_PHRASINGS`` in turn; the files that define the class answer them."""
    where: dict[str, list[str]] = {}
    for c, name in _public_definitions(chunks):
        if c.kind == "class" and len(qa.name_parts(name)) > 1 and c.path not in where.setdefault(name, []):
            where[name].append(c.path)
    picked = _asked_by_name({name: files for name, files in where.items() if files}, "spoken", SPOKEN_PHRASINGS,
                            n, seed)
    for q in picked:
        name = q.keywords[0]
        q.question = q.question.replace(name, " ".join(qa.name_parts(name)))
    return picked


def file_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that ask about a library file by its path, in the ``FILE_PHRASINGS`` in turn, every other one
    by the path's last two parts (``base/util.py``); the file's first public name is the keyword."""
    first: dict[str, str] = {}
    for c, name in _public_definitions(chunks):
        if c.path.endswith(".py"):
            first.setdefault(c.path, name)
    picked = _pick([EvalQuestion(path, [path], [name], "file", package_of(path)) for path, name in sorted(first.items())],
                   n, seed)
    for i, q in enumerate(picked):
        shown = q.files[0] if i % 2 == 0 else "/".join(q.files[0].split("/")[-2:])
        q.question = FILE_PHRASINGS[i % len(FILE_PHRASINGS)].format(shown)
    return picked


def custom_questions(chunks: Iterable[qa.Chunk], n: int = 30, seed: int = 17) -> list[EvalQuestion]:
    """``n`` questions that ask how to make one's own kind of thing ("How do I write a custom callback?"), in the
    ``CUSTOM_PHRASINGS`` in turn, for the last word of each public class that at least three indexed classes derive
    from (``qa.base_classes``; "error" for ``UserError`` too; a word that says nothing of what a class does, such as
    "enum" or "mixin", left out by ``qa.NOT_KINDS``). The files of the classes with that word answer; the class names
    are the keywords."""
    where: dict[str, list[qa.Chunk]] = {}
    for _, word, c in qa.base_classes(chunks):
        if word.isalpha() and len(word) > 2 and word not in qa.NOT_KINDS and not c.name.startswith("_"):
            where.setdefault(word, []).append(c)
    picked = _pick([EvalQuestion(word, sorted({c.path for c in cs}), sorted({c.name for c in cs}), "custom",
                                 package_of(cs[0].path)) for word, cs in sorted(where.items())], n, seed)
    for i, q in enumerate(picked):
        q.question = CUSTOM_PHRASINGS[i % len(CUSTOM_PHRASINGS)].format(q.question)
    return picked


def misspelled(questions: list[EvalQuestion], seed: int = 17, words: int = TYPO_WORDS) -> list[EvalQuestion]:
    """The questions again, each with ``words`` of its words (``TYPO_MIN_LETTERS`` letters or more) misspelled by one
    slip of the hand: a letter dropped, two neighbours swapped, or a letter doubled; origin gets '+typos'. Seeded:
    the same questions get the same typos."""
    rng = random.Random(seed)
    out = []
    for q in questions:
        text = q.question
        spans = [m.span() for m in re.finditer(rf"[A-Za-z_]{{{TYPO_MIN_LETTERS},}}", text)]
        for start, end in sorted(rng.sample(spans, min(words, len(spans))), reverse=True):
            word, i = text[start:end], rng.randrange(1, end - start - 1)
            slip = rng.choice(("drop", "swap", "double"))
            typed = {"drop": word[:i] + word[i + 1:], "swap": word[:i] + word[i + 1] + word[i] + word[i + 2:],
                     "double": word[:i] + word[i] + word[i:]}[slip]
            text = text[:start] + typed + text[end:]
        out.append(EvalQuestion(text, q.files, q.keywords, f"{q.origin}+typos", q.package, q.half))
    return out


def check_eval_set(questions: list[EvalQuestion], chunks: list[qa.Chunk]) -> list[str]:
    """Problems with the set against the indexed corpus: unknown files, keywords found in no answering file."""
    text_by_path: dict[str, str] = {}
    for c in chunks:
        text_by_path[c.path] = text_by_path.get(c.path, "") + "\n" + c.text
    problems = []
    for q in questions:
        present = [f for f in q.files if f in text_by_path]
        if not present:
            problems.append(f"{q.question!r}: file(s) {q.files} are not in the index")
            continue
        blob = "\n".join(text_by_path[f] for f in present).lower()
        if len(present) == len(q.files) and not any(k.lower() in blob for k in q.keywords):
            problems.append(f"{q.question!r}: none of {q.keywords} occurs in {q.files}")
    return problems


def question_set(index: qa.CodeIndex, docstring_n: int = 30, seed: int = 17, named_n: int = 0,
                 typos: bool = False, user: bool = False) -> list[EvalQuestion]:
    """The hand-written questions plus ``docstring_n`` generated from docstrings and ``named_n`` asking by name,
    of each kind (``named_questions``, ``parameter_questions``, ``spoken_questions``, ``file_questions``,
    ``kind_questions``, ``custom_questions``), kept where the answering file
    is indexed; with ``typos``, the hand-written and named questions once more with typos (``misspelled``); with
    ``user``, the user-style questions too (``load_user_set``)."""
    docstring_n, named_n = _check_count("docstring_n", docstring_n), _check_count("named_n", named_n)
    indexed = {c.path for c in index.chunks}
    hand, named = load_eval_set(seed=seed), named_questions(index.chunks, n=named_n, seed=seed)
    questions = hand + docstring_questions(index.chunks, n=docstring_n, seed=seed) + named + \
        parameter_questions(index.chunks, n=named_n, seed=seed) + spoken_questions(index.chunks, n=named_n, seed=seed) + \
        file_questions(index.chunks, n=named_n, seed=seed) + kind_questions(index.chunks, n=named_n, seed=seed) + \
        custom_questions(index.chunks, n=named_n, seed=seed)
    if typos:
        questions += misspelled(hand + named, seed)
    if user:
        questions += load_user_set()
    return [q for q in questions if q.files[0] in indexed]


def questions_table(questions: list[EvalQuestion]) -> pd.DataFrame:
    """How many questions per origin, package and half."""
    frame = pd.DataFrame([asdict(q) for q in questions])
    return frame.groupby(["origin", "half", "package"]).size().unstack("package", fill_value=0)


def first_hit_rank(hits: list[qa.Hit], files: list[str]) -> int | None:
    """1-based rank of the first hit from one of ``files``, or None."""
    return next((rank for rank, h in enumerate(hits, 1) if h.chunk.path in files), None)


def evaluate_retrieval(index: qa.CodeIndex, questions: list[EvalQuestion], modes: Iterable[str] = qa.MODES,
                       k: int = 10) -> pd.DataFrame:
    """One row per (mode, question): rank of the first chunk from an answering file (None if not in top k), ms."""
    rows = []
    for mode in modes:
        for q in questions:
            t0 = time.perf_counter()
            hits = index.search(q.question, k, mode)
            ms = (time.perf_counter() - t0) * 1000
            rows.append({"mode": mode, "origin": q.origin, "half": q.half, "package": q.package,
                         "question": q.question, "rank": first_hit_rank(hits, q.files), "ms": ms})
    return pd.DataFrame(rows)


def retrieval_summary(rows: pd.DataFrame, ks: tuple[int, ...] = (1, 3, 5, 10),
                      by: tuple[str, ...] = ("mode", "origin")) -> pd.DataFrame:
    """recall@k, MRR and median ms per group (by default per retrieval mode and question origin)."""

    def agg(g: pd.DataFrame) -> pd.Series:
        ranks = g["rank"]
        out = {f"recall@{k}": float((ranks.notna() & (ranks <= k)).mean()) for k in ks}
        out["MRR"] = float(ranks.map(lambda r: 0.0 if pd.isna(r) else 1.0 / r).mean())
        out["p50 ms"] = float(g["ms"].median())
        out["questions"] = len(g)
        return pd.Series(out)

    return rows.groupby(list(by)).apply(agg, include_groups=False).round(3)




def _answers_cache_file(index: qa.CodeIndex, gen: Any, questions: list[EvalQuestion],
                        settings: dict[str, Any]) -> Path:
    """Where the answers of exactly this index, model, question set and settings are kept between runs."""

    def stamp(path: Path) -> list[int] | None:
        return [path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else None

    folder = Path(str(getattr(gen, "folder", "")))
    key = {"index": stamp(index.cfg.index_dir / qa.META_FILE), "model": str(folder), "engine": type(gen).__name__,
           "weights": [stamp(p) for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))]
           if folder.is_dir() else None, "endpoint": getattr(gen, "url", ""),
           "questions": [[q.question, q.keywords] for q in questions], **settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return index.cfg.work_dir / "eval" / "answers-cache" / f"{digest}.json"


def evaluate_answers(index: qa.CodeIndex, gen: Any, questions: list[EvalQuestion], label: str,
                     mode: str = qa.DEFAULT_MODE, k: int = qa.DEFAULT_K, max_new_tokens: int = qa.DEFAULT_NEW_TOKENS,
                     answer_format: str = "symbol-first", progress: bool = True, reuse: bool = True) -> pd.DataFrame:
    """One row per question: keyword in the retrieved context / the answer / the model's own text, citation, seconds.

    Answers with the same index, model, questions and settings are kept in ``<work_dir>/eval/answers-cache`` and
    reused (``reuse=False`` answers again), so re-running the notebook is quick.
    """
    cache = _answers_cache_file(index, gen, questions, {"label": label, "mode": mode, "k": k,
                                                        "format": answer_format, "max_new_tokens": max_new_tokens})
    cached = read_json(cache) if reuse else None
    if isinstance(cached, list):
        print(f"answers ({label}): reusing {len(questions)} answers from {cache.parent.name}/{cache.name}")
        return pd.DataFrame(cached)
    rows = []
    for q in tqdm(questions, desc=f"answers ({label})", disable=not progress):
        ans = qa.ask(index, gen, q.question, k=k, mode=mode, max_new_tokens=max_new_tokens,
                     answer_format=answer_format)
        context = "\n".join(h.chunk.search_text for h in ans.hits)
        cited = [h.chunk.path for h in ans.hits if h.chunk.citation in ans.text]
        rows.append({"setting": label, "origin": q.origin, "half": q.half, "package": q.package,
                     "question": q.question, "answer": ans.text,
                     "context keyword": contains_keyword(context, q.keywords),
                     "answer keyword": contains_keyword(ans.text, q.keywords),
                     "model-text keyword": contains_keyword(ans.model_text, q.keywords),
                     "cites a source": bool(cited), "cites a right file": any(p in q.files for p in cited),
                     "seconds": ans.seconds, "first words s": ans.first_words_s})
    write_json(cache, rows)
    return pd.DataFrame(rows)


def compare_answers(index: qa.CodeIndex, questions: list[EvalQuestion], models: Iterable[str] = ("base", "finetuned"),
                    limit: int = 0, formats: Iterable[str] = ("symbol-first",), **ask_kwargs: Any) -> pd.DataFrame:
    """Answer rows for every available model in ``models`` and every answer format in ``formats``.

    Uses the hand-written and user-style questions (all questions if there are none); with ``limit``, the first ``limit`` of
    each half, so the tuning and held-out figures stay comparable.
    """
    answer_set = [q for q in questions if q.origin in ("hand", "user")] or questions
    if limit:
        answer_set = [q for half in HALVES for q in [x for x in answer_set if x.half == half][:limit]]
    available = qa.model_choices(index.cfg)
    settings = [(m, fmt) for m in models if m in available for fmt in formats]
    return pd.concat([evaluate_answers(index, qa.generator(index.cfg, m), answer_set, f"{m} / {fmt}",
                                       answer_format=fmt, **ask_kwargs) for m, fmt in settings])


def answer_summary(rows: pd.DataFrame, by: tuple[str, ...] = ("setting",)) -> pd.DataFrame:
    """Shares of answers with a keyword / a right citation and latency percentiles, per group."""

    def agg(g: pd.DataFrame) -> pd.Series:
        return pd.Series({"context keyword": g["context keyword"].mean(), "answer keyword": g["answer keyword"].mean(),
                          "model-text keyword": g["model-text keyword"].mean(),
                          "cites a right file": g["cites a right file"].mean(), "p50 s": g["seconds"].median(),
                          "p95 s": g["seconds"].quantile(0.95),
                          # answers cached before this column have none: NaN, not a time
                          "first words p50 s": g.get("first words s", pd.Series(dtype=float)).median(),
                          "questions": len(g)})

    return rows.groupby(list(by), sort=False).apply(agg, include_groups=False).round(3)


def example_answers(rows: pd.DataFrame, n: int = 3, seed: int = 17) -> list[str]:
    """``n`` answers per setting, whole, as printable text (question, answer, whether a keyword is in it)."""
    out = []
    for setting, group in rows.groupby("setting", sort=False):
        for _, r in group.sample(min(n, len(group)), random_state=seed).iterrows():
            mark = "✓" if r["answer keyword"] else "✗"
            out.append(f"[{setting}] {mark} Q: {r['question']}\n{r['answer']}\n")
    return out


def evaluate_multipart(index: qa.CodeIndex, gen: Any, questions: list[MultiPartQuestion], progress: bool = True,
                       **ask_kwargs: Any) -> pd.DataFrame:
    """The plain chain against splitting into sub-questions, one row per question and setting.

    A part counts as *answered* when one of its keywords is in the answer and as *cited* when the answer cites
    one of its files; "all parts" needs every part.
    """
    rows = []
    settings = (("plain", qa.ask), ("split", ask_multipart))
    for q in tqdm(questions, desc="multi-part questions", disable=not progress):
        for label, answer_fn in settings:
            ans = answer_fn(index, gen, q.question, **ask_kwargs)
            cited = {h.chunk.path for h in ans.hits if h.chunk.citation in ans.text}
            answered = [contains_keyword(ans.text, p.keywords) for p in q.parts]
            found = [bool(cited & set(p.files)) for p in q.parts]
            rows.append({"setting": label, "half": q.half, "question": q.question, "answer": ans.text,
                         "parts answered": sum(answered) / len(answered), "all parts answered": all(answered),
                         "parts cited": sum(found) / len(found), "all parts cited": all(found),
                         "seconds": ans.seconds, "first words s": ans.first_words_s})
    return pd.DataFrame(rows)


def multipart_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per half and setting: shares of parts answered, questions with every part answered / cited, p50 seconds."""
    return rows.groupby(["half", "setting"], sort=False).agg(
        **{"parts answered": ("parts answered", "mean"), "all parts answered": ("all parts answered", "mean"),
           "parts cited": ("parts cited", "mean"), "all parts cited": ("all parts cited", "mean"),
           "p50 s": ("seconds", "median"), "questions": ("question", "count")}).round(3)


def evaluate_declining(index: qa.CodeIndex, on_topic: list[EvalQuestion], off_topic: list[EvalQuestion],
                       threshold: float | None = None) -> tuple[pd.DataFrame, float]:
    """Relevance of every question, the threshold (chosen on the tuning half unless given) and who is declined.

    Returns one row per question (origin, half, relevance, declined) and the threshold used.
    """
    rows = []
    for q in on_topic + off_topic:
        rel = qa.relevance(index, q.question)
        rows.append({"origin": "off-topic" if q.origin == "offtopic" else "on-topic", "half": q.half,
                     "question": q.question, "relevance": round(rel.score, 3), "cosine": round(rel.cosine, 3),
                     "unknown words": round(rel.unknown_share, 3)})
    table = pd.DataFrame(rows)
    if threshold is None:
        tuning = table[table["half"] == "tuning"]
        candidates = [round(0.20 + 0.01 * i, 2) for i in range(31)]
        threshold = choose_threshold(tuning.loc[tuning["origin"] == "on-topic", "relevance"].tolist(),
                                     tuning.loc[tuning["origin"] == "off-topic", "relevance"].tolist(), candidates)
    table["declined"] = table["relevance"] < threshold
    return table, threshold


def declining_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Share declined per half and origin: high for off-topic questions, near zero for on-topic ones."""
    return table.pivot_table(index="half", columns="origin", values="declined", aggfunc="mean").round(3)


def write_reference_jsonl(questions: list[EvalQuestion], path: Path) -> Path:
    """The questions in the reference repository's evaluation format: ``{"context": q, "continuation": keyword}``
    lines, the continuation being each question's first keyword (usually the answering symbol)."""
    lines = [json.dumps({"context": q.question, "continuation": q.keywords[0]}) for q in questions if q.keywords]
    return write_text(Path(path), "\n".join(lines) + "\n")


def plot_relevance(table: pd.DataFrame, threshold: float, ax: Any = None) -> Any:
    """Histogram of relevance for on- and off-topic questions, with the decline threshold."""
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    for origin, group in table.groupby("origin"):
        ax.hist(group["relevance"], bins=30, range=(-0.2, 0.9), alpha=0.6, label=origin)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("relevance of the question to the index")
    ax.set_ylabel("questions")
    ax.legend()
    return ax


def save_results(cfg: WorkshopConfig, **tables: pd.DataFrame) -> list[Path]:
    """Write each table as ``<work_dir>/eval/<name>.csv`` (e.g. ``retrieval=rows``); returns the paths."""
    folder = cfg.work_dir / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        path = folder / f"{name}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def _share_bars(table: pd.DataFrame, title: str, ax: Any = None) -> Any:
    """Grouped bars of shares (0 to 1), one group per row of ``table``."""
    ax = ax or plt.subplots(figsize=(9, 3.5))[1]
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of questions")
    ax.set_title(title)
    ax.legend(ncol=len(table.columns), fontsize=8, loc="upper left")
    return ax


def plot_retrieval(summary: pd.DataFrame, ax: Any = None) -> Any:
    """Bar chart of recall@k and MRR per group of the summary."""
    return _share_bars(summary.drop(columns=["p50 ms", "questions"]),
                       "Retrieval: answering file among the top k chunks", ax)


def plot_answers(summary: pd.DataFrame, ax: Any = None) -> Any:
    """Bar chart: keyword in context vs in the answer vs in the model's words, and right citations, per setting."""
    table = summary[["context keyword", "answer keyword", "model-text keyword", "cites a right file"]]
    return _share_bars(table, "Answers: a correct keyword in the context, the answer, the model's own words", ax)
