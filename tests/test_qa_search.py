"""helpers.qa.search: identifier-aware tokens, the three retrievers, and the LangChain retriever."""

from __future__ import annotations

import pytest

from helpers import qa


def test_code_tokens_split_identifiers_and_stem_words() -> None:
    tokens = set(qa.code_tokens("ShardDownloader.num_canonical_nodes"))
    assert {"shard", "canon", "node", "num"} <= tokens and len(tokens) == 7, tokens
    # Users ask with other forms of the code's words: both sides are stemmed, so they meet.
    asked = set(qa.code_tokens("How are downloaded shards cached?"))
    code = set(qa.code_tokens("def download(self, shard):\n    self.cache[shard] = fetch()"))
    assert {"download", "shard", "cach"} <= asked & code
    assert not {"how", "are"} & asked, "stop words are dropped"


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
    """In each ranking, a file's best hit gains FILE_EVIDENCE times its next best hits' scores; the others keep
    theirs, and the ranking is re-sorted."""
    from helpers.qa.search import FILE_EVIDENCE_CHUNKS

    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    question = "How does the downloader retry and evict shards from the local cache?"
    for plain in (index.bm25(question, 50), index.dense(question, 50)):
        lifted = {id(h.chunk): h.score for h in index._with_file_evidence(plain)}
        assert set(lifted) == {id(h.chunk) for h in plain}
        gained = 0
        for path in {h.chunk.path for h in plain}:
            same = [h for h in plain if h.chunk.path == path]  # best first
            extra = index.file_evidence * sum(h.score for h in same[1:1 + FILE_EVIDENCE_CHUNKS])
            assert lifted[id(same[0].chunk)] == pytest.approx(same[0].score + extra)
            assert all(lifted[id(h.chunk)] == h.score for h in same[1:]), "a file's other hits keep their scores"
            gained += extra > 0
        assert gained, "no file matched in more than one place: the test question is too narrow"
        ordered = [h.score for h in index._with_file_evidence(plain)]
        assert ordered == sorted(ordered, reverse=True)


def test_quoted_text_is_words_of_three_or_more() -> None:
    from helpers.qa.search import quoted_words

    question = ("Resuming fails with 'Timestamp mismatch: batch 12 differs'. I don't know why, and `max_duration` "
                "or '10ep' didn't help; \"the bucket path or permission\" too.")
    assert quoted_words(question) == [["timestamp", "mismatch", "batch", "12", "differs"],
                                      ["the", "bucket", "path", "or", "permission"]]
    assert quoted_words("Why doesn't the model's cache work?") == []
    assert quoted_words("Training stops with\nValueError: Batch 3 is not divisible\nWhat now?") == [
        ["batch", "3", "is", "not", "divisible"]]


def test_a_quoted_error_message_finds_where_it_is_raised(tiny_index) -> None:
    """The message is built from string pieces on several lines (as real code does); another file uses the same
    words more often but not in that order. The quote lifts the raising chunk to first place."""
    import faiss

    cfg, _, _ = tiny_index
    raising = ("def check(batch, ranks):\n    if batch % ranks:\n        raise ValueError(f'Global batch size {batch} '"
               " +\n                         f'is not evenly divisible by the initial total ' +\n"
               "                         'number of devices.')\n")
    chatty = ("def plan(devices, batch):\n    \"\"\"Devices and batch: the number of devices, the initial devices, the "
              "total devices, the batch divisible by devices, evenly, devices.\"\"\"\n    return devices, batch\n")
    chunks = qa.chunk_file("t", "t/partition.py", raising) + qa.chunk_file("t", "t/planner.py", chatty)
    chunks += qa.CodeIndex.load(cfg).chunks  # the tiny corpus, so that BM25 has words to weigh
    index = qa.CodeIndex(cfg, chunks, faiss.IndexFlatIP(384))  # no vectors: hybrid search is BM25 (and quotes)
    question = "Resuming fails with 'is not evenly divisible by the initial total number of devices'. Why?"
    index.quote_weight = 0.0
    assert index.search(question, 2, "hybrid")[0].chunk.path == "t/planner.py", "BM25 alone prefers the chatty file"
    index.quote_weight = 1.0
    for mode in ("hybrid", "bm25"):
        assert index.search(question, 2, mode)[0].chunk.path == "t/partition.py"
    unquoted = question.replace("'", "")
    assert index.search(unquoted, 2, "hybrid")[0].chunk.path == "t/planner.py", "only quoted text counts"
    pasted = "Resuming fails:\nValueError: Global batch size 12 is not evenly divisible by the initial total number of devices."
    assert index.search(pasted, 2, "hybrid")[0].chunk.path == "t/partition.py", "or a pasted exception's message"
