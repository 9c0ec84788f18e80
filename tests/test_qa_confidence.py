"""helpers.qa.confidence: questions far from the indexed code are declined with the nearest sources, questions
about it are answered; the threshold chooser weighs wrong declines against missed ones."""

from __future__ import annotations

import pytest

from helpers import qa
from helpers.qa.confidence import choose_threshold


@pytest.fixture(scope="module")
def index(tiny_index):
    return qa.CodeIndex.load(tiny_index[0])


@pytest.fixture(scope="module")
def gen(tiny_index):
    return qa.generator(tiny_index[0], "base")


def test_on_topic_questions_score_above_off_topic_ones(index) -> None:
    on = qa.relevance(index, "How does the downloader copy a shard from the bucket into the local cache?")
    off = qa.relevance(index, "Can you recommend a good recipe for banana bread?")
    assert on.score > qa.DECLINE_THRESHOLD > off.score
    assert off.unknown_share > on.unknown_share  # 'banana', 'bread', 'recipe' occur in no chunk
    assert "relevance" in str(off)


def test_off_topic_question_is_declined_with_nearest_sources(index, gen) -> None:
    streamed: list[str] = []
    ans = qa.ask(index, gen, "What's the weather like in Paris tomorrow?", on_token=streamed.append)
    assert ans.declined and ans.model_text == ""
    assert ans.text.startswith(qa.NO_ANSWER) and "".join(streamed) == ans.text
    assert 0 < ans.first_words_s < ans.seconds
    assert "nearest sources" in ans.text and ans.hits[0].chunk.citation in ans.text  # real sources, from the index
    kept = qa.ask(index, gen, "What's the weather like in Paris tomorrow?", decline=False, max_new_tokens=4)
    assert not kept.declined and kept.model_text  # the setting turns it off


def test_question_about_the_code_is_answered(index, gen) -> None:
    ans = qa.ask(index, gen, "Which method deletes a cached shard to keep disk usage under the limit?",
                 max_new_tokens=4)
    assert not ans.declined and ans.relevance is not None and ans.relevance.score >= qa.DECLINE_THRESHOLD
    assert "ShardDownloader.evict" in ans.text


def test_threshold_chooser_prefers_no_wrong_declines() -> None:
    on, off = [0.5, 0.45, 0.38, 0.6], [0.1, 0.2, 0.3, 0.4]
    assert choose_threshold(on, off, [0.2, 0.3, 0.35, 0.39, 0.5]) == 0.35  # 0.39 would decline one real question
    assert choose_threshold(on, off, [0.2, 0.3, 0.35, 0.39, 0.5], wrong_decline_cost=0.1) == 0.5


def test_one_answer_embeds_its_question_once(index) -> None:
    emb = index.store.embedding_function
    question = "Which method deletes a cached shard?"
    first = emb.embed_query(question)
    assert emb.embed_query(question) is first  # the relevance check and the search share one vector
    assert first == emb.embed([question])[0].tolist()
