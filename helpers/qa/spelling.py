"""Typos in a question, corrected against the words of the index.

Users type fast: "How do I use TokenAccuacy?", "Which callback halts a run when a metric crosses a fxed value?". A
misspelled identifier matches nothing in BM25, names nothing for the name ranking, and reads as noise to the
embedder. A word the index does not know (neither the word nor its stem occurs in any chunk) and that is not an
English word, of five letters or more, is replaced by the most common indexed word one edit away (a letter dropped,
added or changed, or two neighbours swapped); a word with no such neighbour stays as typed (a user's own name, a
word from elsewhere). Correct words are never touched, since they are known: "halts" stays, although "Halt" is one
edit away; nor are English words the index may lack ("score" is not a typo of "core", "pastes" not of "passes").
"""

from __future__ import annotations

import re
from collections.abc import Callable

MIN_LETTERS = 5  # shorter words have too many neighbours one edit away ("fit", "fix", "fin")
MAX_LETTERS = 40  # longer "words" are pasted data, not typed
MAX_LOOKUPS = 6  # unknown words looked up per question (each costs ~40 ms): typed questions have a few typos at most
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def one_edit(word: str) -> set[str]:
    """The lower-case strings one edit from ``word``: one character dropped, added or changed (letters, digits,
    ``_``), or two neighbouring characters swapped."""
    word = word.lower()
    out: set[str] = set()
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        out.update(head + c + tail for c in _ALPHABET)
        if tail:
            out.add(head + tail[1:])
            out.update(head + c + tail[1:] for c in _ALPHABET)
        if len(tail) > 1:
            out.add(head + tail[1] + tail[0] + tail[2:])
    out.discard(word)
    return out


def correct(question: str, rarity: Callable[[str], float | None], spelled: Callable[[str], str | None],
            skip: frozenset[str] = frozenset(), is_word: Callable[[str], bool] = lambda word: False) -> str:
    """``question`` with its unknown words corrected.

    ``rarity(word)`` is None for a word the index does not know, else how rare it is (an idf: lower is more
    common); of the known words one edit away the most common wins (then the first alphabetically, so the result
    never depends on set order). ``spelled(word)`` gives the way the code writes a known lower-case word
    (``tokenaccuracy`` -> ``TokenAccuracy``) or None; a correction the code writes in lower case keeps the typed
    word's capital first letter. Words in ``skip`` (stop words) and words for which ``is_word`` is true (English
    words the index may lack: "score" in a small index is not a typo of "core") are left alone. Only the first
    ``MAX_LOOKUPS`` unknown words are looked up (pasted gibberish stays fast).
    """

    lookups = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal lookups
        word = match.group()
        low = word.lower()
        if not MIN_LETTERS <= len(low) <= MAX_LETTERS or low in skip or is_word(low) or \
                rarity(low) is not None or lookups >= MAX_LOOKUPS:
            return word
        lookups += 1
        known = [(rare, near) for near in one_edit(low) if (rare := rarity(near)) is not None]
        if not known:
            return word
        best = min(known)[1]
        cased = spelled(best) or best
        return cased[:1].upper() + cased[1:] if cased == best and word[:1].isupper() else cased

    return _WORD.sub(fix, question)
