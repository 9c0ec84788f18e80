"""helpers.qa.search: identifier-aware tokens, the three retrievers, and the LangChain retriever."""

from __future__ import annotations

import pytest

from helpers import qa


def test_code_tokens_split_identifiers() -> None:
    tokens = qa.code_tokens("ShardDownloader.num_canonical_nodes")
    assert {"sharddownloader", "shard", "downloader", "num_canonical_nodes", "canonical", "nodes"} <= set(tokens)


@pytest.mark.parametrize("mode", qa.MODES)
def test_each_retriever_finds_the_answering_chunk(tiny_index, mode) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    hits = index.search("How is a shard file copied from the bucket into the local cache?", 3, mode)
    assert hits and hits[0].chunk.path == "tiny/download.py"
    assert any(h.chunk.symbol == "ShardDownloader.download" for h in hits)
    docs = qa.retriever(index, k=2, mode=mode).invoke("merge several index.json files")
    assert docs[0].metadata["symbol"] == "merge_index_files" and docs[0].metadata["start_line"] > 1
    assert docs[0].metadata["citation"] == docs[0].metadata["hit"].chunk.citation


@pytest.mark.parametrize(("k", "mode", "message"), [(-1, "hybrid", "k=-1"), (0, "bm25", "k=0"), ("3", "dense", "k='3'"),
                                                    (4, "fuzzy", "mode 'fuzzy'")])
def test_bad_search_settings_are_named(tiny_index, k, mode, message) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    with pytest.raises(qa.QAError, match=message):
        index.search("download", k, mode)
    with pytest.raises(qa.QAError, match=message):
        qa.retriever(index, k, mode)


def test_tests_and_examples_are_recognised() -> None:
    from helpers.qa.search import is_test_or_example

    assert is_test_or_example("tests/test_trainer.py") and is_test_or_example("streaming/tests/x.py")
    assert is_test_or_example("examples/run.yaml") and is_test_or_example("pkg/foo_test.py")
    assert not is_test_or_example("composer/trainer/trainer.py") and not is_test_or_example("contest/latest.py")


def test_library_preference_reorders_but_never_hides(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    baseline = index.search("shard download cache", 10, "hybrid")
    for hit in baseline:  # pretend the best file is a test file
        hit.chunk.path, original = "tests/" + hit.chunk.path, hit.chunk.path
        break
    try:
        index.test_weight = 0.1
        reranked = index.search("shard download cache", 10, "hybrid")
        assert reranked[0].chunk is not baseline[0].chunk, "the test file should lose first place"
        everything = index.search("shard download cache", len(index), "hybrid")
        assert any(h.chunk is baseline[0].chunk for h in everything), "but stay findable"
    finally:
        baseline[0].chunk.path = original
        index.test_weight = 1.0


def test_a_file_that_matches_in_several_places_gains(tiny_index) -> None:
    """A file's best chunk gains FILE_EVIDENCE times its next best chunks' scores; the others keep theirs."""
    from helpers.qa.search import FILE_EVIDENCE, FILE_EVIDENCE_CHUNKS

    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    question = "How does the downloader retry and evict shards from the local cache?"
    try:
        index.file_evidence = 0.0
        plain = {id(h.chunk): h for h in index.search(question, 50, "hybrid", per_file=0)}
        index.file_evidence = 0.5
        boosted = index.search(question, 50, "hybrid", per_file=0)
    finally:
        index.file_evidence = FILE_EVIDENCE
    assert {id(h.chunk) for h in boosted} == set(plain)
    files = {h.chunk.path for h in boosted}
    gained = 0
    for path in files:
        ranked = sorted((h for h in plain.values() if h.chunk.path == path), key=lambda h: -h.score)
        best, rest = ranked[0], ranked[1:]
        scores = {id(h.chunk): h.score for h in boosted if h.chunk.path == path}
        assert scores[id(best.chunk)] == pytest.approx(best.score + 0.5 * sum(h.score for h in rest[:FILE_EVIDENCE_CHUNKS]))
        assert all(scores[id(h.chunk)] == h.score for h in rest), "a file's other chunks must keep their scores"
        gained += bool(rest)
    assert gained, "no file matched in more than one place: the test question is too narrow"
    assert [h.score for h in boosted] == sorted((h.score for h in boosted), reverse=True)
