"""Multi-part questions: split a question that asks two or more things, answer each part, combine the answers.

"How do I log the learning rate, and how do I track memory?" asks for two symbols in two files; one retrieval
finds at most one of them well, and a 135M model answers one part at best. :func:`split_question` cuts such a
question into sub-questions with a few rules about how people join questions (a second question mark, "; ",
", and how/what/which …", "the difference between A and B", "A vs B"); :func:`ask_multipart` answers each part
with the ordinary chain (a part that points back, "how do I configure it?", is searched together with the part
before it) and joins the answers, each under its sub-question and with its own sources.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from helpers.qa.chain import Answer, ask, check_question
from helpers.qa.conversation import retrieval_query
from helpers.qa.generation import Generator
from helpers.qa.search import CodeIndex

MAX_PARTS = 4
MIN_PART_WORDS = 3
QUESTION_WORDS = ("how", "what", "what's", "which", "where", "when", "why", "who", "whose", "is", "are", "can",
                  "could", "do", "does", "did", "should", "would", "will", "may", "must")
_LEADING = re.compile(r"^(?:and|also|plus|then|besides|as well)\b[\s,]*", re.IGNORECASE)
WH_WORDS = ("how", "what", "what's", "which", "where", "when", "why", "who", "whose")
STARTERS = ("how", "what", "what's", "can", "could", "do", "does", "should", "is", "are")  # not relative pronouns


def _words(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(words) + r")\b"


# Where a second question starts: ", and can …" (any question word after a comma and a conjunction), ", how do …"
# (a question word that is no relative pronoun after a bare comma), " and which …" (a wh-word after "and").
_JOINED = re.compile(r",\s*(?:and|also|plus|then)\s+(?:also\s+)?(?=" + _words(QUESTION_WORDS) + ")"
                     r"|,\s*(?=" + _words(STARTERS) + ")"
                     r"|\s+(?:and|also|then)\s+(?:also\s+)?(?=" + _words(WH_WORDS) + ")", re.IGNORECASE)
_COMPARISONS = (
    re.compile(r"(?:the )?difference(?:s)? between (?P<a>.+?) and (?P<b>.+?)(?=[,?;:.]| - |$)", re.IGNORECASE),
    re.compile(r"\bcompare (?P<a>.+?) (?:with|to|and) (?P<b>.+?)(?=[,?;:.]| - |$)", re.IGNORECASE),
    re.compile(r"\bhow do(?:es)? (?P<a>.+?) and (?P<b>.+?) differ\b", re.IGNORECASE),
    re.compile(r"(?P<a>[\w.`]+) (?:vs\.?|versus) (?P<b>[\w.`]+)", re.IGNORECASE),
)


def _clean(part: str) -> str:
    part = _LEADING.sub("", part.strip(" ,;-")).strip()
    if part and part[-1] not in "?.!":
        part += "?"
    return part[:1].upper() + part[1:]


def _long_enough(part: str) -> bool:
    return len(re.findall(r"\w+", part)) >= MIN_PART_WORDS


def split_question(question: str) -> list[str]:
    """The sub-questions of ``question`` (at most ``MAX_PARTS``), or ``[question]`` when it asks one thing."""
    pieces = [p for p in re.split(r"(?<=\?)\s+|;\s+", question.strip()) if p.strip()]
    parts = [q for piece in pieces for q in _JOINED.split(piece)]
    parts = [_clean(p) for p in parts if _long_enough(p)]
    if len(parts) == 1:
        for pattern in _COMPARISONS:
            match = pattern.search(question)
            if match:
                whole = match.group(0)
                parts = [_clean(question.replace(whole, match.group(side))) for side in ("a", "b")]
                break
    return parts[:MAX_PARTS] if len(parts) > 1 else [question.strip()]


def ask_multipart(index: CodeIndex, gen: Generator, question: Any, on_token: Callable[[str], None] | None = None,
                  **ask_kwargs: Any) -> Answer:
    """Answer each sub-question with :func:`ask` and join the answers; one part is the plain chain.

    The joined text gives each part as a heading, then its answer with its own ``path:line`` sources; the
    returned ``Answer.hits`` hold every part's hits, best of each part first.
    """
    start = time.perf_counter()
    question = check_question(question)
    parts = split_question(question)
    if len(parts) == 1:
        return ask(index, gen, question, on_token=on_token, **ask_kwargs)
    answers: list[Answer] = []
    history: list[tuple[str, str]] = []
    for n, part in enumerate(parts, 1):
        heading = f"{'' if n == 1 else chr(10)}**{n}. {part}**\n"
        if on_token:
            on_token(heading)
        answers.append(ask(index, gen, part, on_token=on_token, retrieval_query=retrieval_query(part, history),
                           **ask_kwargs))
        if on_token:
            on_token("\n")
        history.append((part, answers[-1].text))
    text = "\n\n".join(f"**{n}. {part}**\n{a.text}" for n, (part, a) in enumerate(zip(parts, answers, strict=True), 1))
    hits = [h for a in answers for h in a.hits]
    return Answer(question, text, "\n".join(a.model_text for a in answers), hits,
                  sum(a.retrieval_s for a in answers), time.perf_counter() - start,
                  first_words_s=answers[0].first_words_s,  # the first part's words follow its own retrieval
                  declined=all(a.declined for a in answers))
