"""helpers.qa.multipart: questions that ask several things are split where people join questions, each part is
answered with its own sources; a single question goes through the plain chain."""

from __future__ import annotations

import pytest

from helpers import qa


@pytest.mark.parametrize(("question", "parts"), [
    ("How do I download a shard, and how do I delete it from the cache?",
     ["How do I download a shard?", "How do I delete it from the cache?"]),
    ("Which compressions are supported? Also, how are samples shuffled?",
     ["Which compressions are supported?", "How are samples shuffled?"]),
    ("What does evict remove; what does merge_index_files return?",
     ["What does evict remove?", "What does merge_index_files return?"]),
    ("What is the difference between download and evict?",
     ["What is download?", "What is evict?"]),
    ("gzip vs zstd: which is faster?", ["Gzip: which is faster?", "Zstd: which is faster?"]),
])
def test_split_where_questions_are_joined(question: str, parts: list[str]) -> None:
    assert qa.split_question(question) == parts


@pytest.mark.parametrize("question", [
    "How is a shard downloaded and renamed when complete?",         # one question with 'and'
    "Which class, which you can subclass, downloads shards?",       # relative clause after a comma
    "How do I download a shard?",
    "and?",
])
def test_single_questions_stay_whole(question: str) -> None:
    assert qa.split_question(question) == [question.strip()]


def test_each_part_answered_with_its_own_sources(tiny_index) -> None:
    cfg = tiny_index[0]
    index, gen = qa.CodeIndex.load(cfg), qa.generator(cfg, "base")
    question = "Which method deletes a cached shard, and how are the index files of several shard folders combined?"
    streamed: list[str] = []
    ans = qa.ask_multipart(index, gen, question, max_new_tokens=4, on_token=streamed.append)
    first, second = ans.text.split("\n\n**2. ")
    assert first.startswith("**1. Which method deletes a cached shard?**") and "ShardDownloader.evict" in first
    assert "merge_index_files" in second and "tiny/download.py:" in second
    assert "".join(streamed).strip() == ans.text.strip()
    assert 0 < ans.first_words_s < ans.seconds, "the first part's words, counted from its own retrieval"
    single = qa.ask_multipart(index, gen, "Which method deletes a cached shard?", max_new_tokens=4)
    assert "**1." not in single.text and single.hits
