"""Follow-up questions: the text used for retrieval borrows from the previous turn when the question leans on it.

"How is a shard downloaded?" then "and what is its default?": the second question alone retrieves nothing
useful, because *its* points back to the first. ``retrieval_query`` spots such a follow-up with a few cheap
rules and searches with the question plus the previous question and the symbols the previous answer named. The
model still reads the user's own question; only retrieval sees the longer text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Words that point back to something said before ("its default", "what does it return", "those files").
POINTING_WORDS = frozenset({"it", "its", "it's", "itself", "they", "them", "their", "theirs", "these", "those",
                            "this"})
# "that" is mostly a relative pronoun ("files that are compressed"); it points back only in these spots.
THAT_BEFORE = frozenset({"does", "do", "is", "was", "about", "of", "for", "with", "use", "call", "change", "set"})
THAT_AFTER = frozenset({"function", "class", "method", "one", "setting", "option", "parameter", "argument", "value",
                        "default", "file", "module", "variable", "field", "do", "does", "return", "returns", "mean"})
OPENERS = ("and ", "and,", "what about", "how about", "also ", "same for", "then ", "but ", "so ")
SHORT_WORDS = 3  # "the default?", "which file?": this short and no name of its own is a follow-up
MAX_SYMBOLS = 2  # names taken from the previous answer (the symbol-first answer names the best match first)
MAX_DEPTH = 3  # a chain of follow-ups looks back at most this many turns

_WORD = re.compile(r"[A-Za-z_][\w']*")
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(\))?")
_IDENTIFIER = re.compile(
    r"`[^`\n]+`"                                      # `anything in backticks`
    r"|\b[A-Za-z_]\w+\.[A-Za-z_][\w.]*"               # dotted.name, file.py (not e.g.)
    r"|\b\w*[a-z0-9]_\w+|\b_\w+"                      # snake_case, _private
    r"|\b[A-Za-z]*[a-z][A-Z]\w*|\b[A-Z]{2,}[a-z]\w*"  # CamelCase, MDSWriter
    r"|\b\w+\(\)"                                     # call()
)


def identifiers(text: str) -> list[str]:
    """The names in ``text`` that look like code: backticked, dotted, snake_case, CamelCase or called."""
    return _IDENTIFIER.findall(text)


def is_follow_up(question: str) -> bool:
    """True when ``question`` leans on the previous turn: it opens with "and"/"what about"…, or has no name of
    its own and either points back ("it", "its", "those"…) or is only a few words long."""
    text = question.strip().lower()
    if text.startswith(OPENERS):
        return True
    if identifiers(question):
        return False
    words = [w.strip("'") for w in _WORD.findall(text)]
    if len(words) <= SHORT_WORDS:
        return True
    if POINTING_WORDS.intersection(words):
        return True
    for i, word in enumerate(words):
        if word == "that" and (i + 1 == len(words) or words[i + 1] in THAT_AFTER or (i and words[i - 1] in THAT_BEFORE)):
            return True
    return False


def cited_symbols(answer: str, n: int = MAX_SYMBOLS) -> list[str]:
    """The first ``n`` distinct names an answer wrote in backticks (e.g. ``ShardDownloader.download``)."""
    found: list[str] = []
    for text in _BACKTICKED.findall(answer):
        name = text.strip()
        if _NAME.fullmatch(name) and name not in found:
            found.append(name)
        if len(found) == n:
            break
    return found


def retrieval_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The text to search with for ``question`` after the (question, answer) turns in ``history``, oldest first.

    A standalone question comes back unchanged. A follow-up gets the previous question (itself expanded when it
    was a follow-up too, up to ``MAX_DEPTH`` turns back) and the names the previous answer cited, one per line.
    """
    return _expand(question, list(history), MAX_DEPTH)


def _expand(question: str, history: list[tuple[str, str]], depth: int) -> str:
    if not history or depth == 0 or not is_follow_up(question):
        return question
    previous_question, previous_answer = history[-1]
    parts = [question.strip(), _expand(previous_question, history[:-1], depth - 1).strip(),
             " ".join(cited_symbols(previous_answer))]
    return "\n".join(p for p in parts if p)
