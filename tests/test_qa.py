"""Step 6: structural chunking, the pickle-free incremental index, the three retrievers and the chain's messages."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from helpers import qa, repos
from helpers.config import load_config

DOWNLOADER = textwrap.dedent('''\
    """Fetch shard files from remote storage into a local cache."""

    import os

    RETRIES = 3


    class ShardDownloader:
        """Downloads shard files from cloud object storage such as S3 buckets.

        Each download goes to a temporary name first and is renamed when complete.
        """

        chunk_bytes = 1 << 20

        def __init__(self, remote: str, local: str) -> None:
            self.remote = remote
            self.local = local

        def download(self, name: str) -> str:
            """Copy one shard file from the bucket to the local cache folder and return its path."""
            tmp = os.path.join(self.local, name + ".tmp")
            final = os.path.join(self.local, name)
            os.replace(tmp, final)
            return final

        def evict(self, name: str) -> None:
            """Delete a cached shard to keep disk usage under the cache limit."""
            os.remove(os.path.join(self.local, name))
            x = 1
            y = 2
            z = 3
            w = 4
            v = 5
            u = 6
            return None


    def merge_index_files(folders: list) -> dict:
        """Combine the index.json files of several shard folders into one index."""
        merged = {"shards": []}
        for folder in folders:
            merged["shards"].append(folder)
        return merged
    ''')

README = textwrap.dedent('''\
    # Tiny streaming

    A toy library used by the tests.

    ## Compression

    Shards may be compressed with zstd or gzip before upload.

    ```python
    # not a heading: inside a code fence
    ```

    ## Shuffling

    Samples are shuffled in blocks so that each node downloads few shards.
    ''')

CONFIG = textwrap.dedent('''\
    # Training settings
    max_duration: 10ep
    optimizer:
      name: decoupled_adamw
      lr: 0.0001
    # Where checkpoints go
    save_folder: s3://bucket/checkpoints
    ''')

HOSTILE = 'def render_banner():\n    """Return the <script>alert("owned")</script> banner <img src=x onerror=alert(1)>."""\n    return "<b>hi</b>"\n'


def write_corpus(work_dir: Path, files: dict[str, str] | None = None, source: str = "tiny") -> list[repos.FileRecord]:
    """A small corpus in step 1's layout (flat text files) and its FileRecords."""
    files = files if files is not None else {"tiny/download.py": DOWNLOADER, "README.md": README,
                                             "conf/train.yaml": CONFIG, "tiny/banner.py": HOSTILE}
    folder = work_dir / "retrieval_data" / source
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for rel, text in files.items():
        flat = folder / (rel.replace("/", "__") + ".txt")
        flat.write_text(text, encoding="utf-8")
        records.append(repos.FileRecord(source, rel, flat, len(text.encode()), text.count("\n")))
    return records


def test_python_chunks_follow_structure_and_keep_lines() -> None:
    chunks = qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)
    by_symbol = {c.symbol: c for c in chunks}
    assert {"tiny.download", "ShardDownloader", "ShardDownloader.__init__", "ShardDownloader.download",
            "ShardDownloader.evict", "merge_index_files"} <= set(by_symbol)
    lines = DOWNLOADER.splitlines()
    for c in chunks:
        # The recorded line range points at exactly the chunk's text in the original file.
        assert "\n".join(lines[c.start_line - 1:c.end_line]) == c.text
    method = by_symbol["ShardDownloader.download"]
    assert method.kind == "function" and method.text.lstrip().startswith("def download")
    assert method.embed_text.startswith("tiny/tiny/download.py · ShardDownloader.download · lines")
    assert method.citation == f"tiny/download.py:{method.start_line}"
    head = by_symbol["ShardDownloader"]
    assert "chunk_bytes" in head.text and "def " not in head.text
    assert "RETRIES = 3" in by_symbol["tiny.download"].text


def test_long_functions_are_split_and_bad_python_falls_back_to_windows() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(150))
    chunks = qa.chunk_file("s", "m.py", f"def long():\n{body}\n")
    assert len(chunks) == 3 and all(c.end_line - c.start_line + 1 <= qa.MAX_CHUNK_LINES for c in chunks)
    assert chunks[1].symbol == "long (continued)" and chunks[1].start_line == qa.MAX_CHUNK_LINES + 1
    broken = qa.chunk_file("s", "broken.py", "def f(:\n    pass\n" * 30)
    assert broken and all(c.kind == "text" for c in broken)


def test_markdown_and_yaml_chunks() -> None:
    md = qa.chunk_file("tiny", "README.md", README)
    assert [c.symbol for c in md] == ["Tiny streaming", "Compression", "Shuffling"]
    assert "not a heading" in md[1].text
    yml = qa.chunk_file("tiny", "conf/train.yaml", CONFIG)
    assert [c.symbol for c in yml] == ["max_duration", "optimizer", "save_folder"]
    assert yml[0].text.startswith("# Training settings") and yml[2].text.startswith("# Where checkpoints go")


def test_code_tokens_split_identifiers() -> None:
    tokens = qa.code_tokens("ShardDownloader.num_canonical_nodes")
    assert {"sharddownloader", "shard", "downloader", "num_canonical_nodes", "canonical", "nodes"} <= set(tokens)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("qa")
    cfg = load_config(work_dir=str(work))
    records = write_corpus(work)
    stats = qa.build_index(cfg, records, progress=False)
    return cfg, records, stats


def test_index_is_pickle_free_and_loads(built) -> None:
    cfg, records, stats = built
    assert stats.files == len(records) and stats.embedded == stats.chunks > 0 and stats.reused == 0
    assert sorted(p.name for p in cfg.index_dir.iterdir()) == sorted([qa.INDEX_FILE, qa.META_FILE])
    con = sqlite3.connect(cfg.index_dir / qa.META_FILE)
    assert con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == stats.chunks
    con.close()
    index = qa.CodeIndex.load(cfg)
    assert len(index) == stats.chunks


@pytest.mark.parametrize("mode", qa.MODES)
def test_each_retriever_finds_the_answering_chunk(built, mode) -> None:
    cfg, _, _ = built
    index = qa.CodeIndex.load(cfg)
    hits = index.search("How is a shard file copied from the bucket into the local cache?", 3, mode)
    assert hits and hits[0].chunk.path == "tiny/download.py"
    assert any(h.chunk.symbol == "ShardDownloader.download" for h in hits)
    docs = qa.retriever(index, k=2, mode=mode).invoke("merge several index.json files")
    assert docs[0].metadata["symbol"] == "merge_index_files" and docs[0].metadata["start_line"] > 1


def test_rebuild_embeds_only_changed_files(built, tmp_path) -> None:
    cfg, records, first = built
    cfg2 = load_config(work_dir=str(tmp_path))
    import shutil

    shutil.copytree(cfg.index_dir, cfg2.index_dir)
    files = {"tiny/download.py": DOWNLOADER, "README.md": README + "\n## Hashing\n\nShards are checked with xxh64.\n",
             "conf/train.yaml": CONFIG}  # banner.py removed, README changed
    records2 = write_corpus(tmp_path, files)
    stats = qa.build_index(cfg2, records2, progress=False)
    readme_chunks = len(qa.chunk_file("tiny", "README.md", files["README.md"]))
    assert stats.embedded == readme_chunks and stats.removed_files == 1
    assert stats.reused == len(qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)) + len(qa.chunk_file("tiny", "conf/train.yaml", CONFIG))
    index = qa.CodeIndex.load(cfg2)
    assert index.search("checked with xxh64", 1, "bm25")[0].chunk.symbol == "Hashing"
    assert not any(c.path == "tiny/banner.py" for c in index.chunks)
    # Reused vectors are the very same as a fresh embedding of those chunks would give.
    again = qa.build_index(cfg2, records2, progress=False)
    assert again.embedded == 0 and again.chunks == stats.chunks


def test_missing_or_empty_inputs_give_clear_errors(tmp_path) -> None:
    cfg = load_config(work_dir=str(tmp_path))
    with pytest.raises(qa.QAError, match="no index"):
        qa.CodeIndex.load(cfg)
    with pytest.raises(qa.QAError, match="01_download_repos"):
        qa.build_index(cfg, [])
    with pytest.raises(qa.QAError, match="empty"):
        qa.check_question("   ")


def test_messages_fit_the_context_budget(built) -> None:
    from transformers import AutoTokenizer

    from helpers import models

    cfg, _, _ = built
    tokenizer = AutoTokenizer.from_pretrained(models.prepare_generator(cfg, progress=False))
    index = qa.CodeIndex.load(cfg)
    hits = index.search("download a shard", 4, "hybrid")
    messages = qa.build_messages("How is a shard downloaded?", hits, tokenizer, context_tokens=120)
    user = messages[1]["content"]
    assert "[1] " + hits[0].chunk.citation in user and user.endswith("Question: How is a shard downloaded?")
    assert len(tokenizer(user).input_ids) < 120 + 80
    assert qa.lead_sentence(hits).startswith(f"`{hits[0].chunk.symbol}` in {hits[0].chunk.citation}")


def test_ask_handles_bad_questions_and_an_empty_index(built) -> None:
    import faiss

    cfg, _, _ = built
    gen = qa.generator(cfg, "base")
    index = qa.CodeIndex.load(cfg)
    for bad in ["", "  \n ", "why " * 2000, None]:
        answer = qa.ask(index, gen, bad)
        assert answer.error and not answer.text and not answer.hits
    empty = qa.CodeIndex(cfg, [], faiss.IndexFlatIP(384))
    assert "index is empty" in qa.ask(empty, gen, "What downloads shards?").error
    good = qa.ask(index, gen, "How is a shard file downloaded from the bucket?", max_new_tokens=12)
    assert not good.error and good.model_text and good.sources[0].startswith("tiny/download.py:")
    assert good.text.startswith(qa.lead_sentence(good.hits).strip())
    plain = qa.ask(index, gen, "How is a shard file downloaded from the bucket?", max_new_tokens=12, answer_format="plain")
    assert plain.text == plain.model_text


def test_answer_evaluation_is_reused_only_for_the_same_settings(built) -> None:
    from helpers import evaluate

    cfg, _, _ = built
    index = qa.CodeIndex.load(cfg)
    gen = qa.generator(cfg, "base")
    calls = []
    real_stream = gen.stream
    gen.stream = lambda *a, **kw: (calls.append(1), real_stream(*a, **kw))[1]
    questions = [evaluate.EvalQuestion(question="How is a shard file downloaded?", files=["tiny/download.py"],
                                       keywords=["download"], origin="hand")]
    first = evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=8, progress=False)
    again = evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=8, progress=False)
    assert len(calls) == 1 and again.to_dict("records") == first.to_dict("records")
    evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=9, progress=False)
    assert len(calls) == 2, "a different setting must answer again"
