"""helpers.qa.index: the pickle-free FAISS + SQLite index, incremental rebuilds, and damaged or foreign indexes."""

from __future__ import annotations

import shutil
import sqlite3

import faiss
import numpy as np
import pytest

from helpers import qa
from helpers.config import load_config
from tests.corpus import CONFIG, DOWNLOADER, README, altered_index, write_corpus


def test_index_is_pickle_free_and_loads(tiny_index) -> None:
    cfg, records, stats = tiny_index
    assert stats.files == len(records) and stats.embedded == stats.chunks > 0 and stats.reused == 0
    assert sorted(p.name for p in cfg.index_dir.iterdir()) == sorted([qa.INDEX_FILE, qa.META_FILE, qa.SETTINGS_FILE])
    assert not [p for p in cfg.work_dir.iterdir() if p.name.startswith(".tmp-")], "staging folder left behind"
    con = sqlite3.connect(cfg.index_dir / qa.META_FILE)
    assert con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == stats.chunks
    con.close()
    assert len(qa.CodeIndex.load(cfg)) == stats.chunks


def test_rebuild_embeds_only_changed_files(tiny_index, tmp_path) -> None:
    cfg, _, _ = tiny_index
    cfg2 = load_config(work_dir=str(tmp_path))
    shutil.copytree(cfg.index_dir, cfg2.index_dir)
    files = {"tiny/download.py": DOWNLOADER, "README.md": README + "\n## Hashing\n\nShards are checked with xxh64.\n",
             "conf/train.yaml": CONFIG}  # banner.py removed, README changed
    records2 = write_corpus(tmp_path, files)
    stats = qa.build_index(cfg2, records2, progress=False)
    assert stats.embedded == len(qa.chunk_file("tiny", "README.md", files["README.md"])) and stats.removed_files == 1
    assert stats.reused == (len(qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER))
                            + len(qa.chunk_file("tiny", "conf/train.yaml", CONFIG)))
    index = qa.CodeIndex.load(cfg2)
    assert index.search("checked with xxh64", 1, "bm25")[0].chunk.symbol == "Hashing"
    assert not any(c.path == "tiny/banner.py" for c in index.chunks)
    again = qa.build_index(cfg2, records2, progress=False)
    assert again.embedded == 0 and again.chunks == stats.chunks


def test_missing_or_empty_inputs_give_clear_errors(tmp_path) -> None:
    cfg = load_config(work_dir=str(tmp_path))
    with pytest.raises(qa.QAError, match="no index.*06_retrieval_qa"):
        qa.CodeIndex.load(cfg)
    with pytest.raises(qa.QAError, match="01_download_repos"):
        qa.build_index(cfg, [])


@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "other dimension"])
def test_damaged_faiss_file_is_a_message_and_a_rebuild_heals_it(tiny_index, tmp_path, damage) -> None:
    cfg, records, stats = tiny_index
    cfg2 = load_config(work_dir=str(tmp_path))
    shutil.copytree(cfg.index_dir, cfg2.index_dir)
    path = cfg2.index_dir / qa.INDEX_FILE
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # the same number of vectors, but of another size: it would load, then fail on the first search
        other = faiss.IndexFlatIP(16)
        other.add(np.zeros((stats.chunks, 16), dtype="float32"))
        faiss.write_index(other, str(path))
    with pytest.raises(qa.QAError, match=r"rebuild it with qa\.build_index"):
        qa.CodeIndex.load(cfg2)
    healed = qa.build_index(cfg2, records, progress=False)
    assert healed.embedded == healed.chunks == stats.chunks
    assert qa.CodeIndex.load(cfg2).search("download a shard", 1, "dense")


@pytest.mark.parametrize(("statements", "message"), [
    (["UPDATE info SET value = 'old-embedder' WHERE key = 'embedder'"], "old-embedder.*rebuild"),
    # Chunker 5 wrote no summary column: the index is named by its chunker, not read as damaged.
    (["ALTER TABLE chunks DROP COLUMN summary", "UPDATE info SET value = '5' WHERE key = 'chunker_version'"],
     r"\(chunker 5\), not .*rebuild it"),
    # Before session 19 tests and examples had vectors too: named, and rebuilt.
    (["DELETE FROM info WHERE key = 'dense_scope'"], r"its dense_scope is None, not 'library code.*rebuild it"),
], ids=["embedder", "chunker", "dense scope"])
def test_index_of_another_embedder_or_chunker_is_detected_and_rebuilt(tiny_index, tmp_path, statements,
                                                                       message) -> None:
    cfg, records, stats = tiny_index
    cfg2 = altered_index(cfg, tmp_path, *statements)
    with pytest.raises(qa.QAError, match=message):
        qa.CodeIndex.load(cfg2)
    assert qa.build_index(cfg2, records, progress=False).embedded == stats.chunks
    assert len(qa.CodeIndex.load(cfg2)) == stats.chunks


def test_lexical_first_build_answers_with_bm25_then_gets_its_vectors(tiny_index, tmp_path) -> None:
    cfg, _, _ = tiny_index
    cfg2 = load_config(work_dir=str(tmp_path))
    (tmp_path / "models").symlink_to(cfg.models_dir, target_is_directory=True)
    records = write_corpus(tmp_path)
    quick = qa.build_index(cfg2, records, progress=False, embed=False)
    assert quick.embedded == 0 and quick.chunks > 0
    index = qa.CodeIndex.load(cfg2)
    assert index.pending == len(index) == quick.chunks
    question = "Which method deletes a cached shard to stay under the cache limit?"
    hits = index.search(question, 3, "hybrid")
    assert [h.chunk for h in hits] == [h.chunk for h in index.search(question, 3, "bm25")], "hybrid is BM25 alone"
    assert hits[0].chunk.symbol == "ShardDownloader.evict"
    with pytest.raises(qa.QAError, match="dense search is not ready: .* use 'hybrid' or 'bm25'"):
        index.search(question, 3, "dense")
    full = qa.build_index(cfg2, records, progress=False)
    assert full.embedded == full.chunks == quick.chunks and full.reused == 0, "zero vectors were reused"
    index = qa.CodeIndex.load(cfg2)
    assert index.pending == 0
    vectors = index.store.index.reconstruct_n(0, len(index))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_tests_and_examples_are_found_by_their_words_and_get_no_vector(tiny_index, tmp_path) -> None:
    """A test file's chunks keep zero vectors (nothing to embed, nothing pending); BM25 and hybrid search find them
    by their words, dense search never returns them, and a rebuild does not take them for unfinished work."""
    cfg, _, _ = tiny_index
    cfg2 = load_config(work_dir=str(tmp_path))
    (tmp_path / "models").symlink_to(cfg.models_dir, target_is_directory=True)
    test_file = ("def test_eviction_keeps_the_cache_under_its_limit():\n"
                 "    \"\"\"A full cache evicts its oldest shard: the quokka shard goes first.\"\"\"\n"
                 "    assert evict(['quokka']) == []\n")
    records = write_corpus(tmp_path, {"tiny/download.py": DOWNLOADER, "README.md": README, "conf/train.yaml": CONFIG,
                                      "tests/test_cache.py": test_file})
    stats = qa.build_index(cfg2, records, progress=False)
    index = qa.CodeIndex.load(cfg2)
    rows = [i for i, c in enumerate(index.chunks) if c.path == "tests/test_cache.py"]
    vectors = index.store.index.reconstruct_n(0, len(index))
    assert rows and not np.abs(vectors[rows]).any() and np.abs(vectors).any(axis=1).sum() == len(index) - len(rows)
    assert index.pending == 0, "a test's zero vector is not a chunk still to embed"
    assert stats.embedded == stats.chunks - len(rows), "the build counts the chunks it gave vectors"
    question = "Which test evicts the quokka shard?"
    assert index.bm25(question, 1)[0].chunk.path == "tests/test_cache.py"
    assert "tests/test_cache.py" in [h.chunk.path for h in index.search(question, 3, "hybrid")]
    assert all(h.chunk.path != "tests/test_cache.py" for h in index.search(question, len(index), "dense"))
    again = qa.build_index(cfg2, records, progress=False)
    assert again.reused == stats.chunks and again.embedded == 0, "the test file was embedded again"
