"""helpers.qa.conversation: a follow-up is searched together with the previous turn, a standalone question is not
changed, and ``ask`` searches the expanded text while the model reads the question as typed."""

from __future__ import annotations

import pytest

from helpers import qa
from helpers.qa import conversation

FIRST = "Which method deletes a cached shard to stay under the cache limit?"
FIRST_ANSWER = ("`ShardDownloader.evict` (tiny/download.py:30): Delete a cached shard to keep disk usage under the "
                "cache limit.\nIt removes the file.\nSee also: `ShardDownloader.download` (tiny/download.py:23).")
HISTORY = [(FIRST, FIRST_ANSWER)]


@pytest.mark.parametrize("question", [
    "and what is its default?",
    "And what does it return?",
    "What about merge_index_files?",
    "what does that do?",
    "Where are they written?",
    "the default?",
])
def test_follow_up_is_expanded(question: str) -> None:
    query = qa.retrieval_query(question, HISTORY)
    assert qa.is_follow_up(question)
    assert query.splitlines()[0] == question  # the user's words come first
    assert FIRST in query and "ShardDownloader.evict" in query


@pytest.mark.parametrize("question", [
    "How are shards downloaded from remote storage?",
    "How do I write samples to a dataset in MDS format?",
    "What markup does render_banner return for a title?",
    "Where is MDSWriter defined and what does it write?",  # "it", but a name of its own
    "Which class handles files that are compressed?",  # "that" as a relative pronoun
    "Is there a retry limit for downloads?",
])
def test_standalone_question_is_unchanged(question: str) -> None:
    assert not qa.is_follow_up(question)
    assert qa.retrieval_query(question, HISTORY) == question


def test_without_history_nothing_is_added() -> None:
    assert qa.retrieval_query("and what is its default?", []) == "and what is its default?"


def test_cited_symbols_are_the_backticked_names_in_order() -> None:
    assert qa.cited_symbols(FIRST_ANSWER) == ["ShardDownloader.evict", "ShardDownloader.download"]
    assert qa.cited_symbols("Use `pip install x` or `<script>`; see `merge_index_files()`.") == ["merge_index_files()"]
    assert conversation.identifiers("Is `x` like shard_size, MDSWriter, os.path or call()?") == [
        "`x`", "shard_size", "MDSWriter", "os.path", "call()"]


def test_a_chain_of_follow_ups_looks_back_through_them() -> None:
    history = [*HISTORY, ("and what does it return?", "`None`, after `os.remove`.")]
    query = qa.retrieval_query("and its type?", history)
    assert query.splitlines()[:3] == ["and its type?", "and what does it return?", FIRST]
    assert "ShardDownloader.evict" in query and "os.remove" in query


def test_the_expanded_query_finds_what_the_follow_up_means(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    follow_up = "and what does it return?"
    hits = index.search(qa.retrieval_query(follow_up, HISTORY), 1, "bm25")
    assert hits[0].chunk.symbol == "ShardDownloader.evict"


def test_ask_searches_the_retrieval_query_but_answers_the_question(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    follow_up = "and what does it return?"
    answer = qa.ask(index, qa.generator(cfg, "base"), follow_up, k=2, mode="bm25", max_new_tokens=8,
                    retrieval_query=qa.retrieval_query(follow_up, HISTORY))
    assert answer.question == follow_up
    assert answer.hits[0].chunk.symbol == "ShardDownloader.evict"
