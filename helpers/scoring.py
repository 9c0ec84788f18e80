"""Score any answering function on a JSONL file in the reference repository's evaluation format.

Each line is ``{"context": question, "continuation": answer}``. An answer is scored by

* **exact match**: equal after normalising (lower case, no punctuation, no articles, single spaces);
* **close match**: the normalised reference occurs inside the normalised answer, or the two share enough words
  (word-overlap F1 ≥ ``CLOSE_F1``), so "It uses `zstd`." matches "zstd" and small wording changes still count;
* **keyword**: one of the reference's code-like words (identifiers, numbers) appears in the answer, the
  project's own answer metric (``evaluate.contains_keyword``).
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from helpers.errors import EvalSetError

CLOSE_F1 = 0.5
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation if c not in "_."})


def normalise(text: str) -> str:
    """Lower case, punctuation (but ``_`` and ``.`` inside names) and articles removed, spaces collapsed."""
    text = text.lower().translate(_PUNCTUATION)
    text = re.sub(r"\.(?!\w)", " ", text)  # a full stop, not the dot in a.b or 0.5
    return " ".join(_ARTICLES.sub(" ", text).split())


def word_f1(answer: str, reference: str) -> float:
    """Harmonic mean of word precision and recall between two normalised texts."""
    a, r = normalise(answer).split(), normalise(reference).split()
    common = sum((Counter(a) & Counter(r)).values())
    if not a or not r or not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def exact_match(answer: str, reference: str) -> bool:
    return normalise(answer) == normalise(reference)


def close_match(answer: str, reference: str, min_f1: float = CLOSE_F1) -> bool:
    ref = normalise(reference)
    return bool(ref) and (f" {ref} " in f" {normalise(answer)} " or word_f1(answer, reference) >= min_f1)


def contains_keyword(text: str, keywords: list[str]) -> bool:
    """True when one of ``keywords`` occurs in ``text`` (case-insensitive)."""
    low = text.lower()
    return any(k.lower() in low for k in keywords)


def reference_keywords(reference: str) -> list[str]:
    """The code-like words of a reference answer (identifiers with ``_``/dots/capitals, numbers), else its words."""
    words = re.findall(r"[A-Za-z_][\w.]*\w|\d[\w.]*", reference)
    code = [w for w in words if "_" in w or "." in w or any(c.isupper() for c in w[1:]) or w[0].isdigit()]
    return code or [w for w in normalise(reference).split() if len(w) > 3] or words


def read_reference(path: Path) -> list[tuple[str, str]]:
    """(question, answer) pairs from a JSONL file; a bad line raises EvalSetError naming its number."""
    path = Path(path)
    if not path.is_file():
        raise EvalSetError(f"{path} does not exist: give a JSONL file of {{'context': ..., 'continuation': ...}} lines.")
    pairs = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise EvalSetError(f"{path}:{number} is not a UTF-8 JSON object ({err}).") from None
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("context", "continuation")):
                raise EvalSetError(f"{path}:{number}: each line needs string fields 'context' and 'continuation'.")
            pairs.append((item["context"], item["continuation"]))
    if not pairs:
        raise EvalSetError(f"{path} holds no lines to score.")
    return pairs


def score_reference(path: Path, answer: Callable[[str], str], limit: int = 0, progress: bool = True) -> pd.DataFrame:
    """One row per line of ``path`` (the first ``limit`` with ``limit``): the answer and its four scores."""
    pairs = read_reference(path)[:limit or None]
    rows = []
    for question, reference in tqdm(pairs, desc=f"scoring {Path(path).name}", disable=not progress):
        start = time.perf_counter()
        text = answer(question)
        keywords = reference_keywords(reference)
        rows.append({"question": question, "reference": reference, "answer": text,
                     "exact match": exact_match(text, reference), "close match": close_match(text, reference),
                     "keyword": contains_keyword(text, keywords),
                     "word F1": round(word_f1(text, reference), 3), "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def reference_summary(rows: pd.DataFrame) -> pd.Series:
    return pd.Series({"exact match": rows["exact match"].mean(), "close match": rows["close match"].mean(),
                      "keyword": rows["keyword"].mean(), "word F1": rows["word F1"].mean(),
                      "p50 s": rows["seconds"].median(), "lines": len(rows)}).round(3)
