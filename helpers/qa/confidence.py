"""Knowing when it does not know: a relevance score for a question against the index, and the reply that declines.

A small model asked about something the index does not hold will still write a confident sentence. Before
generating, the chain measures how close the question comes to the indexed code:

    relevance = cosine(question, best chunk) - UNKNOWN_PENALTY * (share of the question's words the index never saw)

and below ``DECLINE_THRESHOLD`` it says plainly that it did not find the answer, offering the nearest sources.
The threshold was chosen with :func:`choose_threshold` on the *tuning* half of the hand-written questions and of
the off-topic questions in ``data_manifests/eval_questions.yaml`` (07_evaluate.ipynb reports both halves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from helpers.qa.search import CodeIndex, Hit, code_tokens

DECLINE_THRESHOLD = 0.34  # choose_threshold on the tuning half (stemmed words): 89% of off-topic declined, no on-topic question
UNKNOWN_PENALTY = 0.25
WRONG_DECLINE_COST = 5.0  # declining a real question costs five times as much as answering an off-topic one


@dataclass
class Relevance:
    """How close a question comes to the index: the score and the two measurements behind it."""

    score: float
    cosine: float  # dense similarity of the question and its nearest chunk
    unknown_share: float  # share of the question's words that occur in no indexed chunk

    def __str__(self) -> str:
        return f"relevance {self.score:.2f} (nearest chunk {self.cosine:.2f}, unknown words {self.unknown_share:.0%})"


def relevance(index: CodeIndex, question: str) -> Relevance:
    """The relevance of ``question`` to ``index`` (higher is closer; about 0.3 separates on- from off-topic).
    Typos are corrected first (``CodeIndex.spelled``): a misspelled word is not a sign of an unknown topic."""
    question = index.spelled(question)
    nearest = index.dense(question, 1)
    cosine = nearest[0].score if nearest else 0.0
    words = set(code_tokens(question))
    vocabulary = index.vocabulary()
    unknown = sum(1 for w in words if w not in vocabulary) / len(words) if words else 1.0
    return Relevance(cosine - UNKNOWN_PENALTY * unknown, cosine, unknown)


def is_confident(rel: Relevance, threshold: float = DECLINE_THRESHOLD) -> bool:
    return rel.score >= threshold


def decline_text(hits: Sequence[Hit], rel: Relevance, not_found: str) -> str:
    """The reply when the index holds nothing close enough: say so, then the nearest sources (from the index)."""
    nearest = "; ".join(f"`{h.chunk.name}` ({h.chunk.citation})" for h in hits[:3])
    text = f"{not_found} ({rel})."
    return text + (f"\nThe nearest sources I found: {nearest}." if nearest else "")


def choose_threshold(on_topic: Sequence[float], off_topic: Sequence[float], candidates: Sequence[float],
                     wrong_decline_cost: float = WRONG_DECLINE_COST) -> float:
    """The candidate threshold with the best (off-topic declined) - cost x (on-topic declined); of equally good
    candidates the middle one, farthest from both kinds of mistake."""

    def gain(t: float) -> float:
        declined_off = sum(s < t for s in off_topic) / max(1, len(off_topic))
        declined_on = sum(s < t for s in on_topic) / max(1, len(on_topic))
        return declined_off - wrong_decline_cost * declined_on

    ranked = sorted(candidates)
    best = max(gain(t) for t in ranked)
    tied = [t for t in ranked if gain(t) == best]
    return tied[(len(tied) - 1) // 2]
