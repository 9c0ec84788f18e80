"""helpers.scoring: the reference repository's JSONL format scored with exact match, close match and keywords,
on the real chain; bad files are named with the line to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import qa, scoring
from helpers.errors import EvalSetError


def test_normalised_exact_and_close_match() -> None:
    assert scoring.exact_match("The `zstd` codec.", "zstd codec")
    assert not scoring.exact_match("zstd or gzip", "zstd")
    assert scoring.close_match("Shards use `zstd` here.", "zstd")  # the reference inside the answer
    assert scoring.close_match("evict deletes a cached shard", "it deletes the cached shard")  # shared words
    assert not scoring.close_match("merge the index files", "zstd")
    assert scoring.normalise("Call `merge_index_files()` in util.py.") == "call merge_index_files in util.py"
    assert scoring.reference_keywords("Use ShardDownloader.evict with cache_limit") == \
        ["ShardDownloader.evict", "cache_limit"]


def test_bad_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"context": "q", "continuation": "a"}\n{"context": "q"}\n')
    with pytest.raises(EvalSetError, match=r"eval.jsonl:2: .*'continuation'"):
        scoring.read_reference(path)
    path.write_bytes(b'{"context": "q", "continuation": "a"}\n\xff\xfe\n')
    with pytest.raises(EvalSetError, match=r"eval.jsonl:2 is not a UTF-8 JSON object"):
        scoring.read_reference(path)
    with pytest.raises(EvalSetError, match="does not exist"):
        scoring.read_reference(tmp_path / "missing.jsonl")


def test_chain_scored_on_a_reference_file(tiny_index, tmp_path: Path) -> None:
    cfg = tiny_index[0]
    index, gen = qa.CodeIndex.load(cfg), qa.generator(cfg, "base")
    path = tmp_path / "tiny.jsonl"
    lines = [{"context": "Which method deletes a cached shard to keep disk usage under the limit?",
              "continuation": "ShardDownloader.evict"},
             {"context": "What is the capital of Australia?", "continuation": "Canberra"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows = scoring.score_reference(path, lambda q: qa.ask(index, gen, q, max_new_tokens=8).text, progress=False)
    assert list(rows["keyword"]) == [True, False] and list(rows["exact match"]) == [False, False]
    assert rows.loc[0, "close match"]  # the answer names ShardDownloader.evict
    summary = scoring.reference_summary(rows)
    assert summary["keyword"] == 0.5 and summary["lines"] == 2
