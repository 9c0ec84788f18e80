"""Three ways to find the chunks that answer a question, and the LangChain retriever the chain uses.

*Dense* search compares meanings (all-MiniLM-L6-v2 vectors in FAISS, through LangChain's vector store);
*lexical* search (BM25) matches words, with identifiers split at ``_`` and camelCase; *hybrid* fuses both
rankings by reciprocal rank fusion. Four more rankings join hybrid and BM25 search when a question has what they
need: quoted text (a pasted error message) adds the candidates that hold its runs of words in order, a name of the
code (``MDSWriter``, ``Trainer.fit``, ``cache_limit``) adds the chunks that define or declare it, a pasted
traceback adds the chunks its frames point at, and a kind of class asked for ("Which callback …") adds the
candidate classes of that kind. In hybrid search the documented settings closest in meaning to the question
(``documented``: each ``Args:`` entry has a vector of its own) add the chunks that hold them. Words the index does
not know are first corrected to indexed words one edit away (``spelling``).
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from rank_bm25 import BM25Okapi
from snowballstemmer import stemmer

from helpers.config import WorkshopConfig
from helpers.errors import QAError
from helpers.pysource import declared_names
from helpers.qa.chunking import Chunk, is_embedded, is_test_or_example, whole_definitions
from helpers.qa.embedding import embedder
from helpers.qa.index import Settings, load_index, load_settings, missing_vectors
from helpers.qa.spelling import correct

MODES = ("hybrid", "dense", "bm25")
DEFAULT_MODE = "hybrid"  # best recall@5 and MRR on the tuning half of the evaluation set (07_evaluate.ipynb)
DEFAULT_K = 5  # chunks an answer reads; with two per file at most, the best answer keyword rate on the tuning half
RRF_K = 2  # reciprocal-rank-fusion constant (usually 60; with file evidence 2 did best on the tuning half, README)
POOL = 100  # candidates each search ranks before fusion, at least 4k (file evidence counts more with more)
# Dense, BM25 in hybrid search: best recall@5 on the tuning half. Re-checked with RRF_K = 2 and file evidence
# (tuning, k=10): 0.5 dense gives recall@5 0.96 / MRR 0.73; 0.3 gives 0.93 / 0.75; 0.7 and 1.0 are lower on both.
FUSION_WEIGHTS = (0.5, 1.0)
TEST_WEIGHT = 0.5  # how much a chunk from tests/ or examples/ counts against library code (tuning half)
# File evidence: in each ranking, a file's best chunk also scores FILE_EVIDENCE times the scores of the file's
# FILE_EVIDENCE_CHUNKS next best chunks, in that ranking's own units (a file that matches in several places is more
# likely the one that answers; a chunk far ahead, e.g. a rare identifier matched exactly, stays ahead). With
# RRF_K = 2, on the tuning half (hybrid, k=10): recall@1 0.48 -> 0.57, recall@5 0.93 -> 0.96, MRR 0.66 -> 0.73;
# docstring questions MRR 0.86 -> 0.88. Held-out: recall@1 0.55 -> 0.64, recall@5 0.91 -> 0.93, MRR 0.69 -> 0.76.
FILE_EVIDENCE = 0.5
FILE_EVIDENCE_CHUNKS = 2
PER_FILE = 1  # chunks of one file in the results: one file cannot crowd out the others (tuning half, k=5: r@5 0.89 -> 0.95)
# Quoted text in a question (usually a pasted error message) is a third ranking in hybrid and BM25 search: the
# candidate chunks that contain most of its runs of words, in order (string pieces joined across lines).
QUOTE_WEIGHT = 1.0
QUOTE_MIN_WORDS = 3  # shorter quotes ('10ep', `max_duration`) are identifiers or values: BM25 handles them
QUOTE_SHARE = 0.5  # a chunk must hold at least this share of the quote's word runs
QUOTE_RUN = 4  # words per run
# The pasted text alone is also searched with BM25 (its own ranking): a message carries the values of the user's
# run (``['/tmp/cache/train']``), so few runs of its words match the code's f-string, and the user's own words around
# it often match other chunks better, so the raising chunk may not even be a candidate. Chosen on the tuning halves
# and 48 more user-style questions written blind in session 19 (recall@5 0.854 -> 0.875 there, user-style MRR 0.803 ->
# 0.815; 0.5 did as well; README).
PASTED_WEIGHT = 1.0
_QUOTED = re.compile(r"""(?:^|(?<=[\s(\[:,]))(['"`])(.+?)\1(?=$|[\s).,;:!?\]])""")
_RAISED = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Warning):[ \t]*([^\n]+)")  # a pasted traceback's last line
# Where a message pasted on the question's own line ends and the user's words begin: a sentence end before a word in
# lower case ("… must be specified. i launch …"; messages open their sentences in capitals), or a dash between spaces.
_MESSAGE_END = re.compile(r"(?<=[.!?])[ \t]+(?=[a-z])|[ \t]+[-\u2013\u2014][ \t]+")
# A question that names code (``MDSWriter``, `predownload`, ``Trainer.fit``, "the Trainer", ``cache_limit``) is a
# fourth ranking in hybrid and BM25 search: the chunks that define that name (a function or class) or declare it (a
# parameter, a class attribute), best matches first. Users often ask with a name, and the chunks that only use it beat
# the one that defines it. Hybrid recall@1 / MRR on 40 generated questions of each kind (evaluate.named_questions,
# parameter_questions): by a function's or class's name 0.825 / 0.88 -> 0.975 / 0.98, by a parameter's 0.725 / 0.83
# -> 0.90 / 0.94. The hand-written questions never name the answering code; their figures stay as they were.
DEFINED_WEIGHT = 1.0
# A parameter or attribute name counts only when it is rare in the index (BM25 idf above this: in fewer than about one
# chunk in 33): ``cache_limit`` (4.3) or ``num_canonical_nodes`` (3.9) point somewhere, ``batch_size`` (3.1),
# ``remote`` (2.1) or ``tokenizer`` (2.0), declared by dozens of functions, do not ("Training with batch_size 64 runs
# out of memory" was sent to a function that merely takes a batch_size).
DECLARED_MIN_WEIGHT = 3.5
# A pasted traceback names files and lines: each frame in an indexed file (``File ".../streaming/base/dataset.py",
# line 1234, in __iter__``) points at the chunk holding that line. They are a fifth ranking, innermost frame first
# (where the error was raised), in hybrid and BM25 search.
TRACEBACK_WEIGHT = 1.0
# A class named in words ("the mds writer", "a Streaming Dataset", "the time unit", "streamingdataset") is a name
# too: one to four adjacent words that spell a class name of two or more parts (MDSWriter, StreamingDataset,
# TimeUnit) add it to the question's names. Classes only: "clean up" or "each task" also spell functions and
# parameters (clean_up, each_task), and the tuning half lost there. Tuning half (hybrid, k=10): recall@1 0.73 ->
# 0.75, MRR 0.824 -> 0.832; 40 generated questions that name a class in words (evaluate.spoken_questions): recall@1
# 0.83 -> 0.98, MRR 0.90 -> 0.99.
SPOKEN_MAX_WORDS = 4
SPELLED_CACHE = 64  # corrected questions remembered (one answer corrects the same question twice)
# A file named by its path ("What does streaming/base/util.py do?", "in trainer.py") is a name too: the file's best
# chunk joins the name ranking. A tail that fits more than FILE_MAX_MATCHES indexed files ("__init__.py") names none.
_FILE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.(?:py|md|rst|ya?ml|json|toml|txt|cfg|ini|sh))\b")
FILE_MAX_MATCHES = 3
# A question that asks for a kind of class ("Which algorithm …", "What callback …", "Is there a logger …") is a sixth
# ranking in hybrid and BM25 search: the candidate classes of that kind, in the order the other searches put them. A
# class's kinds are the last words of its base classes' names and of its own (``SelectiveBackprop(Algorithm)``:
# algorithm; ``EarlyStopper(Callback)``: callback, stopper), where at least KIND_MIN_CLASSES classes share that word.
# Tuning half (hybrid, k=10): recall@5 0.964 -> 0.982, MRR 0.832 -> 0.835 at weight 0.25 (0.5: 0.982 / 0.832; 1.0:
# 0.982 / 0.830); the generated sets unchanged.
KIND_WEIGHT = 0.25
KIND_MIN_CLASSES = 3
NOT_KINDS = frozenset({"object", "module", "enum", "abc", "protocol", "generic", "base", "mixin", "type", "dict",
                       "tuple", "list", "class", "function", "meta", "str", "int"})  # say nothing of what a class does
# "How do I write a custom callback?", "my own algorithm": the class to subclass is the one the code's own classes of
# that kind derive from (``Callback``, ``Algorithm``): the classes whose name ends with the word and that at least
# KIND_MIN_CLASSES indexed classes subclass, most subclassed first, make a seventh ranking. Before, "custom" (a rare
# word) found `configure_excepthook` ("custom exception handler") first for "How do I write a custom callback?".
# 20 generated questions (evaluate.custom_questions), hybrid recall@1 / MRR at weight 0 / 0.25 / 0.5 / 0.75 / 1.0:
# 0.10 / 0.37, 0.15 / 0.47, 0.35 / 0.63, 0.60 / 0.78, 0.95 / 0.98. The hand-written tuning half has one such question,
# whose answer is not the base class ("my own callback class usable by name in the training YAML": the registry):
# MRR 0.835 -> 0.832 from 0.75 up (rank 2 -> 3), recall@1 / @5 and the answers unchanged. The weight was chosen on
# the generated set, so its figures are not unseen ones; 12 questions written afterwards in other words ("what class
# do I extend", "a custom device class") and never tuned on, weight 0 -> 1.0: recall@1 4 -> 11 of 12, recall@5 9 -> 12,
# MRR 0.50 -> 0.94. The hand-written held-out half has no such question (unchanged).
BASE_WEIGHT = 1.0
# A documented setting's own vector (its docstring entry, ``documented``) close to the question: the chunk holding it.
SETTING_WEIGHT = 0.5
SETTING_POOL = 4  # settings read per chunk wanted (several settings of one chunk count once)
SETTING_QUOTED = 3  # the best chunks of that ranking keep the line of their setting: the answer quotes it
_BASE_ASKED = re.compile(r"\b(?:custom|own)\s+([a-z]+)", re.I)
_KIND_ASKED = re.compile(r"\b(?:which|what|whichever|is there an?|are there(?: any)?)\s+((?:[a-z]+[ -])?[a-z]+)", re.I)
_CLASS_HEAD = re.compile(r"^\s*class\s+(\w+)\s*(?:\(([^)]*)\))?\s*:", re.M)
_FRAME = re.compile(r'File "([^"\n]+)", line (\d+)(?:, in ([\w<>.]+))?')
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_BACKTICKED = re.compile(r"`([A-Za-z_][\w.]*)`")
_CAPITALISED = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+\b")  # "the Trainer", not a sentence's first word

_STOP = frozenset("""a an and are as at be by for from how i if in is it its of on or that the this to what when where
which who why with does do can self def return none true false import class cls""".split())


# Words of conversation, not of code: "we want", "my run", "is there a way", "actually", "instead". They are rare in
# code, so BM25 weighs them high, and the chunks that hold them are prose (README pages, long docstrings) that
# answer nothing; BM25 leaves them out of a question (``question_terms``; in identifiers and other words they stay:
# ``my_dataset``, ``actual``). Session 20, tuning halves, hybrid recall@5 / MRR: user-style 0.906 / 0.762 ->
# 0.927 / 0.766, hand-written 0.982 / 0.830 -> 0.982 / 0.829; held-out (README) the same or one question better.
CHATTER_WORDS = frozenset("""want wants wanted need needs needed trying tried thing things something anything stuff
actually really anyway instead myself yourself ourselves my mine we our you your they their them there here please
thanks hi hello hey ok okay guess probably maybe perhaps basically somehow wonder wondering sure gonna wanna lot lots
im ive dont doesnt didnt cant wont isnt whats hows etc eg ie""".split())
# Pasted text goes through the same filter: keeping its words as pasted gave the same tuning figures (user-style
# recall@1 one question lower, recall@5 one higher).
_CHATTER = re.compile(r"(?<![\w.])(?:" + "|".join(sorted(CHATTER_WORDS, key=len, reverse=True)) +
                      r"|\w+n['\u2019]t|(?:i|you|we|they)['\u2019](?:m|ve|d|ll|re))(?!\w|\.\w)", re.I)

_STEMMER = stemmer("english")
_STEM_LOCK = threading.Lock()  # a Snowball stemmer keeps its state while it works: one word at a time


@functools.lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    with _STEM_LOCK:
        return _STEMMER.stemWord(word)


def name_parts(name: str) -> list[str]:
    """A name's words in lower case, split at ``_`` and camelCase: ``MDSWriter`` -> ``["mds", "writer"]``."""
    return [p.lower() for p in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", name)]


def code_tokens(text: str) -> list[str]:
    """Lower-case word stems for BM25 (Snowball English: ``downloaded`` and ``downloads`` -> ``download``), with
    identifiers also split at '_' and camelCase (``num_canonical_nodes`` -> 4). Users ask with other forms of the
    code's words; stemming both sides took the tuning half's hybrid recall@1 from 0.61 to 0.70 (README)."""
    out = []
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+", text):
        low = word.lower()
        if low not in _STOP:
            out.append(_stem(low))
        parts = name_parts(word)
        if len(parts) > 1:
            out.extend(_stem(p) for p in parts if p not in _STOP and len(p) > 1)
    return out


def question_terms(question: str) -> list[str]:
    """The BM25 terms of a question (``code_tokens``) without its words of conversation (``CHATTER_WORDS``,
    contractions such as "don't" and "I've")."""
    return code_tokens(_CHATTER.sub(" ", question))


def _pasted(text: str) -> list[str]:
    """A quoted span's or an error message's lower-case words when it is long enough to be pasted text
    (``QUOTE_MIN_WORDS`` or more), else none: shorter quotes ('10ep', `max_duration`) are names or values."""
    words = _words(text)
    return words if len(words) >= QUOTE_MIN_WORDS else []


def _raised(question: str) -> list[tuple[int, int, int]]:
    """Where the pasted ``SomethingError: message`` lines are, as (start of the class name, start of the message,
    end): each up to the end of its line or where the user's own words begin (``_MESSAGE_END``)."""
    spans = []
    for m in _RAISED.finditer(question):
        end = _MESSAGE_END.search(m.group(1))
        spans.append((m.start(), m.start(1), m.start(1) + end.start() if end else m.end(1)))
    return spans


def quoted_words(question: str) -> list[list[str]]:
    """The question's pasted text: its quoted spans, and the messages after ``SomethingError:`` (``_raised``), of
    ``QUOTE_MIN_WORDS`` words or more, each as lower-case words."""
    texts = [text for _, text in _QUOTED.findall(question)] + [question[a:b] for _, a, b in _raised(question)]
    return [words for text in texts if (words := _pasted(text))]


def unquoted(question: str) -> str:
    """The question without its pasted text (``quoted_words``): the words the user wrote themselves. Short quotes
    (`max_duration`, '10ep') stay; a pasted error goes with its class name (every ``raise ValueError(`` shares it)."""
    question = _QUOTED.sub(lambda m: " " if _pasted(m.group(2)) else m.group(0), question)
    for start, message, end in reversed(_raised(question)):
        if _pasted(question[message:end]):
            question = question[:start] + " " + question[end:]
    return question


def named_identifiers(question: str) -> tuple[set[str], set[str]]:
    """The names of code in a question: (names that look like code: in backticks, with ``_`` or ``.``, in
    camelCase, or the whole question; capitalised words inside a sentence, which name code only if a class has
    that name)."""
    text = question.strip()
    code = {name.rstrip(".") for name in _BACKTICKED.findall(text)}
    code |= {word for word in _IDENTIFIER.findall(text)
             if "_" in word or "." in word or any(c.isupper() for c in word[1:]) or word == text}
    return code, set(_CAPITALISED.findall(text)) - code


def traceback_frames(question: str) -> list[tuple[str, int, str]]:
    """The frames of a traceback pasted into the question, innermost first: (path, line, function or '')."""
    frames = [(path.replace("\\", "/"), int(line), name or "") for path, line, name in _FRAME.findall(question)]
    return frames[::-1]


def _words(text: str) -> list[str]:
    """Lower-case words, with the prefixes of string literals (``f'``, ``rb"``) dropped, so an error message that
    the source builds from several string pieces reads as the message does."""
    return re.findall(r"[a-z0-9]+", re.sub(r"\b[rbfu]{1,2}(?=['\"])", "", text.lower()))


def word_runs(words: list[str], shortest: int, longest: int) -> Iterator[tuple[str, ...]]:
    """Every run of ``shortest`` to ``longest`` adjacent words, shorter runs first: ("the", "run", "name") with 2
    and 3 -> ("the", "run"), ("run", "name"), ("the", "run", "name")."""
    for n in range(shortest, longest + 1):
        for i in range(len(words) - n + 1):
            yield tuple(words[i:i + n])


def _runs(words: list[str], n: int = QUOTE_RUN) -> set[tuple[str, ...]]:
    n = min(n, len(words))
    return set(word_runs(words, n, n))


def _class_heads(chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, str, list[str]]]:
    """Each Python class's opening chunk, its name and its base classes' names (``composer.core.Callback`` ->
    ``Callback``)."""
    for c in chunks:
        if c.kind != "class" or c.symbol.endswith("(continued)") or not c.path.endswith(".py"):
            continue
        head = _CLASS_HEAD.search(c.text)
        if head:
            yield c, head.group(1), [base.strip().split(".")[-1] for base in (head.group(2) or "").split(",")]


def class_kinds(chunks: Iterable[Chunk]) -> dict[int, set[str]]:
    """Each class's kinds, by the ``id`` of the chunk that opens it: the last words, in lower case, of its base
    classes' names and of its own (``class EarlyStopper(Callback)``: callback, stopper), where at least
    ``KIND_MIN_CLASSES`` classes share that word and it is not one of ``NOT_KINDS``. Classes with none are left out."""
    found: dict[int, set[str]] = {}
    for c, name, bases in _class_heads(chunks):
        found[id(c)] = {parts[-1] for n in [name, *bases] if "=" not in n and (parts := name_parts(n))}
    counts = Counter(_stem(word) for words in found.values() for word in words)
    kinds = {key: {w for w in words if counts[_stem(w)] >= KIND_MIN_CLASSES and w.isalpha() and len(w) > 2 and
                   w not in NOT_KINDS}
             for key, words in found.items()}
    return {key: words for key, words in kinds.items() if words}


def asked_kinds(question: str) -> set[str]:
    """The stems of the words that may name a kind of class in a question: the one or two words after "which",
    "what", "is there a" ("Which algorithm speeds up …": algorithm, speed)."""
    words = {w.lower() for phrase in _KIND_ASKED.findall(question) for w in re.split(r"[ -]", phrase)}
    return {_stem(w) for w in words - _STOP}


def asked_bases(question: str) -> set[str]:
    """The stems of the words after "custom" or "own" in a question ("a custom callback": callback)."""
    return {_stem(w.lower()) for w in _BASE_ASKED.findall(question)} - {_stem(w) for w in _STOP}


def base_classes(chunks: Iterable[Chunk]) -> list[tuple[int, str, Chunk]]:
    """The classes that at least ``KIND_MIN_CLASSES`` indexed classes derive from, as (number of subclasses, the
    last word of the class's name in lower case, the chunk that opens the class), most subclassed first
    (``(41, "callback", <Callback>)``, ``(14, "scheduler", <ComposerScheduler>)``)."""
    heads: dict[str, list[Chunk]] = {}
    derived: Counter[str] = Counter()
    for c, name, bases in _class_heads(chunks):
        heads.setdefault(name, []).append(c)
        derived.update(set(bases))
    found = [(derived[name], parts[-1].lower(), c) for name, cs in heads.items() for c in cs
             if derived[name] >= KIND_MIN_CLASSES and (parts := name_parts(name))]
    return sorted(found, key=lambda item: -item[0])


@dataclass
class Hit:
    """One retrieved chunk with its rank score (cosine for dense, BM25 score, or fused RRF score)."""

    chunk: Chunk
    score: float
    lines: tuple[int, ...] = ()  # lines a ranking found on their own: the entry of a documented setting it matched


def check_search(k: Any, mode: Any) -> tuple[int, str]:
    """``k`` and ``mode`` as search takes them, or QAError naming the bad value and what is allowed."""
    if mode not in MODES:
        raise QAError(f"retrieval mode {mode!r} is unknown: use one of {', '.join(MODES)}.")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 50:
        raise QAError(f"k={k!r} chunks cannot be retrieved: use a whole number from 1 to 50.")
    return k, mode


class CodeIndex:
    """A loaded index: the chunks, LangChain's FAISS store for dense search, and a BM25 index for lexical search."""

    def __init__(self, cfg: WorkshopConfig, chunks: list[Chunk], faiss_index: Any, documented: Settings | None = None):
        self.cfg = cfg
        self.chunks = chunks
        self.documented = documented
        ids = [str(i) for i in range(len(chunks))]
        docs = {i: Document(page_content=c.search_text, metadata={"row": int(i)}, id=i) for i, c in zip(ids, chunks, strict=False)}
        self.store = FAISS(embedder(cfg), faiss_index, InMemoryDocstore(docs), dict(enumerate(ids)),
                           distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
        self._bm25: BM25Okapi | None = None
        self._definitions: dict[str, list[Chunk]] | None = None
        self._declarations: dict[str, list[Chunk]] | None = None
        self._spoken: dict[str, list[str]] = {}  # "mdswriter" -> ["MDSWriter"]: classes by their words run together
        self._cased: dict[str, str] = {}  # "tokenaccuracy" -> "TokenAccuracy": how the code writes a defined name
        self._spelled: dict[str, str] = {}  # the last questions, corrected
        self._paths: dict[str, list[Chunk]] | None = None
        self._wholes: dict[str, Chunk] | None = None  # a long definition's windows (by key) -> the definition
        self._kinds: dict[int, set[str]] | None = None
        self._bases: list[tuple[str, Chunk]] | None = None  # (stem of its last name part, class), most derived first
        self._lock = threading.Lock()
        self.weights = FUSION_WEIGHTS
        self.test_weight = TEST_WEIGHT
        self.per_file = PER_FILE
        self.file_evidence = FILE_EVIDENCE
        self.quote_weight = QUOTE_WEIGHT
        self.pasted_weight = PASTED_WEIGHT
        self.defined_weight = DEFINED_WEIGHT
        self.traceback_weight = TRACEBACK_WEIGHT
        self.kind_weight = KIND_WEIGHT
        self.base_weight = BASE_WEIGHT
        self.setting_weight = SETTING_WEIGHT
        # Chunks without a vector yet (a lexical-first build, see build_index): hybrid search uses BM25 alone.
        self.pending = int(missing_vectors(faiss_index, chunks=chunks).sum())

    @classmethod
    def load(cls, cfg: WorkshopConfig) -> CodeIndex:
        """Open ``cfg.index_dir``; a missing, foreign or damaged index raises QAError with the fix."""
        chunks, faiss_index = load_index(cfg)
        return cls(cfg, chunks, faiss_index, load_settings(cfg, chunks))

    def __len__(self) -> int:
        return len(self.chunks)

    def _bm25_index(self) -> BM25Okapi:
        with self._lock:
            if self._bm25 is None:
                self._bm25 = BM25Okapi([code_tokens(c.search_text) for c in self.chunks])
        return self._bm25

    def _names(self) -> tuple[dict[str, list[Chunk]], dict[str, list[Chunk]]]:
        """(definitions, declarations): each function's and class's chunk (its first window) under its qualified
        name and every dotted tail of it (``Trainer.fit`` and ``fit``), each module chunk under its module name; and
        each function's and class's chunk under each name it declares (a parameter, a class attribute). Also kept:
        each class name of two or more parts under its words run together in lower case (``mdswriter``), and how
        the code writes each defined or declared name (``tokenaccuracy`` -> ``TokenAccuracy``)."""
        with self._lock:
            if self._definitions is None or self._declarations is None:
                defines: dict[str, list[Chunk]] = {}
                declares: dict[str, list[Chunk]] = {}
                for c in self.chunks:
                    if not c.path.endswith(".py"):
                        continue
                    if c.symbol.endswith("(continued)"):  # a long class's later fields are declared there
                        for name in declared_names(c.text, class_window=True) if c.kind == "class" else []:
                            declares.setdefault(name, []).append(c)
                        continue
                    if c.kind in ("function", "class"):
                        parts = c.symbol.split(".")
                        for name in (".".join(parts[i:]) for i in range(len(parts))):
                            defines.setdefault(name, []).append(c)
                        for name in declared_names(c.text):
                            declares.setdefault(name, []).append(c)
                    elif c.kind == "module" and "." in c.symbol:
                        defines.setdefault(c.symbol, []).append(c)
                spoken: dict[str, list[str]] = {}
                for name, chunks in defines.items():
                    parts = name_parts(name)
                    if "." not in name and len(parts) > 1 and any(c.kind == "class" for c in chunks):
                        spoken.setdefault("".join(parts), []).append(name)
                cased = {name.lower(): name for name in [*declares, *defines] if "." not in name}
                self._spoken, self._cased = spoken, cased
                self._definitions, self._declarations = defines, declares
        return self._definitions, self._declarations

    def defined(self, question: str, candidates: list[Hit]) -> list[Hit]:
        """The chunks that define a name the question uses (``named_identifiers``; a capitalised word only when a
        class has that name) or declare it, if it is rare in the index (idf above ``DECLARED_MIN_WEIGHT``:
        ``cache_limit``, not ``batch_size``), in the order of ``candidates`` (best first), then the rest; none when it
        names none."""
        code, words = named_identifiers(question)
        definitions, declarations = self._names()
        code |= self.spoken_classes(question)
        files = self.named_files(question, candidates)
        if not code and not words and not files:
            return []
        # A fully qualified name (``composer.callbacks.EarlyStopper``) is found by its longest indexed tail.
        code = {next((tail for i in range(len(parts)) if (tail := ".".join(parts[i:])) in definitions), name)
                for name in code for parts in [name.split(".")]}
        found = [c for name in sorted(code) for c in definitions.get(name, [])]
        found += [c for name in sorted(code) if self.token_weight(_stem(name.lower())) > DECLARED_MIN_WEIGHT
                  for c in declarations.get(name, [])]
        found += [c for name in sorted(words) for c in definitions.get(name, []) if c.kind == "class"]
        found += files
        if not found:
            return []
        place = _places(candidates)
        unique = {id(c): c for c in found}
        return [Hit(c, 1.0) for c in sorted(unique.values(), key=lambda c: place.get(id(c), len(candidates)))]

    def of_kind(self, question: str, candidates: list[Hit]) -> list[Hit]:
        """The candidate classes of the kind a question asks for ("Which algorithm …": the ``Algorithm``
        subclasses among them, ``asked_kinds``), in the order of ``candidates``; none when it asks for no kind."""
        asked = asked_kinds(question)
        if not asked:
            return []
        with self._lock:
            if self._kinds is None:
                self._kinds = {key: {_stem(w) for w in words} for key, words in class_kinds(self.chunks).items()}
        place = _places(candidates)
        found = {id(h.chunk): h.chunk for h in candidates if self._kinds.get(id(h.chunk), set()) & asked}
        return [Hit(c, 1.0) for c in sorted(found.values(), key=lambda c: place[id(c)])]

    def bases(self, question: str) -> list[Hit]:
        """The classes to subclass for what a question wants its own of ("a custom callback": ``Callback``; see
        ``base_classes``), most subclassed first; none when it asks for no custom thing."""
        asked = asked_bases(question)
        if not asked:
            return []
        with self._lock:
            if self._bases is None:
                self._bases = [(_stem(word), c) for _, word, c in base_classes(self.chunks)]
        return [Hit(c, 1.0) for word, c in self._bases if word in asked]

    def spoken_classes(self, question: str) -> set[str]:
        """The classes a question names in words: one to ``SPOKEN_MAX_WORDS`` adjacent words that, run together,
        spell a class name of two or more parts ("the mds writer" -> ``MDSWriter``, "a time unit" -> ``TimeUnit``,
        "streamingdataset" -> ``StreamingDataset``)."""
        self._names()
        words = [w.lower() for w in re.findall(r"[A-Za-z0-9]+", question)]
        return {name for run in word_runs(words, 1, SPOKEN_MAX_WORDS) for name in self._spoken.get("".join(run), [])}

    def spelled(self, question: str) -> str:
        """The question with each word the index does not know (five letters or more; neither it nor its stem in
        any chunk, nor an English word in any form: a word of the embedder's vocabulary or one whose stem is)
        replaced by the most common indexed word one edit away, written as the code writes it (``TokenAccuacy`` ->
        ``TokenAccuracy``, ``fxied`` -> ``fixed``); known words and words with no such neighbour stay as typed (see
        ``spelling``). Stop words (BM25 leaves them out) count as known and most common: "whats" stays, "Whcih"
        becomes "Which". A question that is not text is a QAError."""
        if not isinstance(question, str):
            raise QAError(f"the question must be text, not {type(question).__name__}: type a question about the code.")
        done = self._spelled.get(question)
        if done is None:
            idf = self.vocabulary()
            self._names()
            english = self.store.embeddings.words()
            done = correct(question, lambda word: 0.0 if (stem := _stem(word)) in _STOP else idf.get(stem),
                           self._cased.get, _STOP, lambda word: word in english or _stem(word) in english)
            with self._lock:  # the relevance check, then the search: remember the last few questions
                if len(self._spelled) >= SPELLED_CACHE:
                    self._spelled.pop(next(iter(self._spelled)))
                self._spelled[question] = done
        return done

    def _by_path(self) -> dict[str, list[Chunk]]:
        """Each indexed path's chunks, in file order."""
        with self._lock:
            if self._paths is None:
                paths: dict[str, list[Chunk]] = {}
                for c in self.chunks:
                    paths.setdefault(c.path, []).append(c)
                self._paths = {p: sorted(cs, key=lambda c: c.start_line) for p, cs in paths.items()}
        return self._paths

    def whole(self, chunk: Chunk) -> Chunk:
        """The whole definition a window belongs to. A long function or class is indexed in windows of
        ``MAX_CHUNK_LINES`` (the later ones marked "(continued)"), each found on its own; an answer quotes the lines
        that hold the fact from any of them (a class's argument is often documented windows below its name) and
        cites the definition's first line. Other chunks are returned as they are."""
        with self._lock:
            if self._wholes is None:
                self._wholes = whole_definitions(self.chunks)
        return self._wholes.get(chunk.key, chunk)

    def named_files(self, question: str, candidates: list[Hit]) -> list[Chunk]:
        """For each file the question names by path (``streaming/base/util.py``, ``trainer.py``; not in a pasted
        traceback's frames), its best chunk: the first among ``candidates``, else its first chunk. A path names the
        indexed files whose path ends with it (at a ``/``), none if more than ``FILE_MAX_MATCHES`` do."""
        named = _FILE.findall(_FRAME.sub(" ", question))
        if not named:
            return []
        by_path = self._by_path()
        place = _places(candidates)
        out: list[Chunk] = []
        for name in dict.fromkeys(p.lstrip("./") for p in named):
            files = [p for p in by_path if p == name or p.endswith("/" + name)]
            if len(files) > FILE_MAX_MATCHES:
                continue
            for path in files:
                chunks = by_path[path]
                out.append(min(chunks, key=lambda c: place.get(id(c), len(candidates))))
        return out

    def traced(self, question: str) -> list[Hit]:
        """The chunks a pasted traceback points at, innermost frame first: for each frame whose file is indexed (its
        path ends with the indexed path), the chunk holding its line; none when the question has no such frame."""
        frames = traceback_frames(question)
        if not frames:
            return []
        by_path = self._by_path()
        found: dict[int, Chunk] = {}
        for path, line, function in frames:
            indexed = max((p for p in by_path if path == p or path.endswith("/" + p)), key=len, default=None)
            chunks = by_path.get(indexed, []) if indexed else []
            # The line, else (another version of the file) the function the frame names.
            at = [c for c in chunks if c.start_line <= line <= c.end_line] or \
                [c for c in chunks if function and c.name.split(".")[-1] == function][:1]
            for c in at:
                found.setdefault(id(c), c)
        return [Hit(c, 1.0) for c in found.values()]

    def settings(self, question: str, n: int) -> list[Hit]:
        """The chunks holding the documented settings (``documented``) closest in meaning to ``question``, best
        first (score: the setting's cosine), at most ``n``; none before the settings are embedded."""
        found: dict[int, Hit] = {}
        vectors = self.documented.vectors if self.documented else None
        if vectors is None or not vectors.ntotal or self.pending:
            return []
        query = np.asarray([embedder(self.cfg).embed_query(question)], dtype="float32")
        scores, rows = vectors.search(query, min(vectors.ntotal, SETTING_POOL * n))
        for score, i in zip(scores[0], rows[0], strict=True):
            if i < 0 or len(found) == n:
                break
            chunk = self.chunks[self.documented.rows[i]]
            found.setdefault(id(chunk), Hit(chunk, float(score), (self.documented.lines[i],)))
        return list(found.values())

    def token_weight(self, token: str) -> float:
        """How rare a word is in the index (BM25's idf; 0 for words in nearly every chunk or in none)."""
        return max(0.0, float(self._bm25_index().idf.get(token, 0.0)))

    def vocabulary(self) -> dict[str, float]:
        """Every word (as ``code_tokens`` splits them) that occurs in some chunk, with its idf."""
        return self._bm25_index().idf

    def dense(self, question: str, n: int) -> list[Hit]:
        pairs = self.store.similarity_search_with_score(question, k=min(n, len(self.chunks)))
        hits = (Hit(self.chunks[d.metadata["row"]], float(s)) for d, s in pairs)
        return [h for h in hits if is_embedded(h.chunk)]  # tests and examples have no vector (zeros: a score of 0)

    def bm25(self, question: str, n: int) -> list[Hit]:
        tokens = question_terms(question)
        if not tokens:
            return []
        scores = self._bm25_index().get_scores(tokens)
        top = np.argsort(-scores)[:n]
        return [Hit(self.chunks[i], float(scores[i])) for i in top if scores[i] > 0]

    def quoted(self, question: str, candidates: list[Hit]) -> list[Hit]:
        """The candidates holding at least ``QUOTE_SHARE`` of the runs of ``QUOTE_RUN`` words of the question's
        quoted text, most first (score: the share); none when the question quotes nothing."""
        spans = quoted_words(question)
        if not spans:
            return []
        wanted = set().union(*(_runs(words) for words in spans))
        sizes = {min(QUOTE_RUN, len(words)) for words in spans}  # runs of 3 words for a 3-word quote
        found: dict[int, Hit] = {}
        for hit in candidates:
            if id(hit.chunk) not in found:
                words = _words(hit.chunk.text)
                have = set().union(*(_runs(words, n) for n in sizes))
                share = len(wanted & have) / len(wanted)
                if share >= QUOTE_SHARE:
                    found[id(hit.chunk)] = Hit(hit.chunk, share)
        return sorted(found.values(), key=lambda h: -h.score)

    def _with_file_evidence(self, hits: list[Hit]) -> list[Hit]:
        """One ranking with each file's best hit lifted by ``file_evidence`` times the file's next
        ``FILE_EVIDENCE_CHUNKS`` best scores, in that ranking's own units (cosine or BM25 score), re-sorted; the file's
        other hits keep their scores. A chunk far ahead (a rare identifier matched exactly) stays ahead."""
        per_file: dict[tuple[str, str], list[Hit]] = {}
        for hit in hits:  # best first
            per_file.setdefault(_file_of(hit.chunk), []).append(hit)
        lifted = {id(same[0]): same[0].score + self.file_evidence * sum(h.score for h in same[1:1 + FILE_EVIDENCE_CHUNKS])
                  for same in per_file.values()}
        return sorted((Hit(h.chunk, lifted.get(id(h), h.score)) for h in hits), key=lambda h: -h.score)

    def search(self, question: str, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
               per_file: int | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``question`` by ``mode``: 'dense', 'bm25' or 'hybrid'.

        Words the index does not know are first corrected (``spelled``) for the dense, BM25 and name rankings;
        quoted text and traceback frames are matched as typed. In each ranking, a file's best chunk first gains
        ``self.file_evidence`` times the scores of the file's next
        best chunks (a file that matches in several places is more likely the answer; see ``_with_file_evidence``).
        Hybrid fuses both rankings by weighted reciprocal rank (``self.weights``: dense, BM25); in hybrid and BM25
        search, quoted text in the question adds the candidates that hold it (``quoted``, ``self.quote_weight``) and
        the chunks BM25 finds for the pasted text alone (``self.pasted_weight``), a
        name of the code the chunks that define or declare it (``defined``, ``self.defined_weight``), and a pasted
        traceback the chunks its frames point at (``traced``, ``self.traceback_weight``), and a kind of class asked for
        ("Which callback …") the candidate classes of that kind (``of_kind``, ``self.kind_weight``), and a custom thing
        asked for ("a custom callback") the classes to subclass (``bases``, ``self.base_weight``); in hybrid search,
        the documented settings closest in meaning add the chunks holding them (``settings``,
        ``self.setting_weight``), and the best of those hits carry the setting's line (``Hit.lines``). Chunks from tests
        and examples count ``self.test_weight`` times as much as library code (a preference, not a filter:
        a question about a test still finds it), since "how do I…" is usually answered by the library itself.
        At most ``per_file`` (default ``self.per_file``; 0 for no limit) chunks come from one file, its best ones,
        so the ``k`` hits name ``k`` places to look rather than ``k`` windows of one long file.
        """
        k, mode = check_search(k, mode)
        if not self.chunks:
            raise QAError("the index is empty: rebuild it with qa.build_index(cfg) after step 1.")
        if mode == "dense" and self.pending:
            raise QAError(f"dense search is not ready: {self.pending:,} chunks are still being embedded; use 'hybrid' "
                          "or 'bm25' until then (or finish the index with qa.build_index(cfg)).")
        pool = max(4 * k, POOL)
        dense = mode in ("dense", "hybrid") and not self.pending  # a half-built index: hybrid is BM25 alone
        spelled = self.spelled(question)
        rankings = {"dense": [self.dense(spelled, pool)] if dense else [],
                    "bm25": [self.bm25(spelled, pool)] if mode in ("bm25", "hybrid") else []}
        if self.file_evidence:
            rankings = {name: [self._with_file_evidence(hits) for hits in lists] for name, lists in rankings.items()}
        if mode != "dense":
            candidates = [h for lists in rankings.values() for hits in lists for h in hits]
            rankings["quote"] = [self.quoted(question, candidates)]
            pasted = " ".join(" ".join(words) for words in quoted_words(question))
            rankings["pasted"] = [self.bm25(pasted, pool)] if pasted and self.pasted_weight else []
            rankings["defined"] = [self.defined(spelled, candidates)]
            rankings["traceback"] = [self.traced(question)]
            rankings["kind"] = [self.of_kind(spelled, candidates)]
            rankings["base"] = [self.bases(spelled)]
            rankings["setting"] = [self.settings(spelled, pool)] if self.setting_weight and dense else []
        weights = {"dense": self.weights[0], "bm25": self.weights[1], "quote": self.quote_weight,
                   "pasted": self.pasted_weight, "defined": self.defined_weight, "traceback": self.traceback_weight, "kind": self.kind_weight,
                   "base": self.base_weight, "setting": self.setting_weight}
        fused: dict[int, float] = {}
        chunk_of: dict[int, Chunk] = {}
        for name, lists in rankings.items():
            for hits in lists:
                for rank, hit in enumerate(hits):
                    key = id(hit.chunk)
                    fused[key] = fused.get(key, 0.0) + weights[name] / (RRF_K + rank + 1)
                    chunk_of[key] = hit.chunk
        for key, chunk in chunk_of.items():
            if is_test_or_example(chunk.path):
                fused[key] *= self.test_weight
        limit = (self.per_file if per_file is None else per_file) or k
        best: list[int] = []
        taken: dict[tuple[str, str], int] = {}
        # Of equal scores, a chunk that defines a name the question uses comes first ("How do I use
        # StreamingDataset?": the class and a chunk that only uses it both scored 0.375).
        named = {id(h.chunk) for hits in rankings.get("defined", []) for h in hits}
        lines = {id(h.chunk): h.lines for hits in rankings.get("setting", []) for h in hits[:SETTING_QUOTED]}
        for key in sorted(fused, key=lambda key: (-round(fused[key], 9), key not in named)):
            where = _file_of(chunk_of[key])
            if taken.get(where, 0) < limit:
                taken[where] = taken.get(where, 0) + 1
                best.append(key)
                if len(best) == k:
                    break
        return [Hit(chunk_of[key], fused[key], lines.get(key, ())) for key in best]


def _places(hits: list[Hit]) -> dict[int, int]:
    """Each chunk's first place among ``hits`` (by ``id``): the order the other searches put them in."""
    place: dict[int, int] = {}
    for n, hit in enumerate(hits):
        place.setdefault(id(hit.chunk), n)
    return place


def _file_of(chunk: Chunk) -> tuple[str, str]:
    return chunk.source, chunk.path


def hit_document(hit: Hit) -> Document:
    """A hit as a LangChain Document: the chunk's code, with where it is and how it scored in the metadata."""
    c = hit.chunk
    return Document(page_content=c.text, metadata={
        "source": c.source, "path": c.path, "start_line": c.start_line, "end_line": c.end_line, "symbol": c.symbol,
        "kind": c.kind, "citation": c.citation, "score": hit.score, "hit": hit})


class CodeRetriever(BaseRetriever):
    """LangChain retriever over a CodeIndex: Documents carrying path, lines, symbol (and the Hit itself)."""

    index: Any
    k: int = DEFAULT_K
    mode: str = DEFAULT_MODE
    per_file: int | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [hit_document(h) for h in self.index.search(query, self.k, self.mode, self.per_file)]


def retriever(index: CodeIndex, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
              per_file: int | None = None) -> CodeRetriever:
    """The LangChain retriever the QA chain uses (``per_file``: chunks of one file at most, None: the index's)."""
    k, mode = check_search(k, mode)
    return CodeRetriever(index=index, k=k, mode=mode, per_file=per_file)
