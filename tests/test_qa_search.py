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
