"""helpers.qa.chunking: files cut along their structure, each chunk pointing at its exact lines."""

from __future__ import annotations

from helpers import qa
from helpers.qa.chunking import MAX_CHUNK_LINES, embedded_texts
from tests.corpus import CONFIG, DOWNLOADER, README


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
    assert method.search_text.startswith("tiny/tiny/download.py · ShardDownloader.download · lines")
    # The embedder reads the summary before the code (it keeps only the first 64 word pieces).
    summary = method.docstring_summary()
    assert summary and method.dense_text.startswith(f"tiny/download.py · ShardDownloader.download\n{summary}\n")
    assert method.dense_text.endswith(method.text)
    assert method.citation == f"tiny/download.py:{method.start_line}"
    head = by_symbol["ShardDownloader"]
    assert "chunk_bytes" in head.text and "def " not in head.text
    assert "RETRIES = 3" in by_symbol["tiny.download"].text


def test_long_functions_are_split_and_bad_python_falls_back_to_windows() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(150))
    chunks = qa.chunk_file("s", "m.py", f"def long():\n{body}\n")
    assert len(chunks) == 3 and all(c.end_line - c.start_line + 1 <= MAX_CHUNK_LINES for c in chunks)
    assert chunks[1].symbol == "long (continued)" and chunks[1].start_line == MAX_CHUNK_LINES + 1
    broken = qa.chunk_file("s", "broken.py", "def f(:\n    pass\n" * 30)
    assert broken and all(c.kind == "text" for c in broken)


def test_summaries_come_from_the_whole_file() -> None:
    # Each summary is read when the file is parsed (not by parsing each chunk again), so the first window of a long
    # definition has its definition's summary whether its text parses alone (pack) or not (build); the embedder
    # reads such windows without it.
    steps = "\n".join(f"    step_{i} = {i}" for i in range(70))
    call = "\n".join(f"        arg_{i}={i}," for i in range(80))
    source = (f'"""Tools for shards."""\n\nimport os\n\n\ndef pack(shards):\n    """Pack the shards into one file."""\n'
              f'{steps}\n\n\ndef build():\n    """Build it."""\n    return make(\n{call}\n    )\n\n\n'
              f'class Box:\n    """A box of shards.\n\n    More words.\n    """\n\n    size = 3\n')
    chunks = qa.chunk_file("s", "pkg/tools.py", source)
    assert all(c.summary is not None for c in chunks)
    by_symbol = {c.symbol: c for c in chunks}
    assert by_symbol["pack"].docstring_summary() == "Pack the shards into one file"
    assert by_symbol["build"].docstring_summary() == "Build it"
    assert by_symbol["pack (continued)"].docstring_summary() == by_symbol["build (continued)"].docstring_summary() == ""
    assert by_symbol["Box"].docstring_summary() == "A box of shards"
    assert by_symbol["pkg.tools"].docstring_summary() == "Tools for shards"
    read = dict(zip((c.symbol for c in chunks), embedded_texts(chunks), strict=True))
    assert read["Box"] == by_symbol["Box"].dense_text and read["Box"].split("\n")[1] == "A box of shards"
    assert read["pack"] == "pkg/tools.py · pack\n" + by_symbol["pack"].text
    assert read["build (continued)"] == by_symbol["build (continued)"].dense_text
    # Chunks made elsewhere (no parse of their file) still read the summary from their own text.
    loose = qa.Chunk("s", "m.py", 1, 2, "f", "function", 'def f():\n    """Do it."""')
    assert loose.docstring_summary() == "Do it"


def test_markdown_and_yaml_chunks() -> None:
    md = qa.chunk_file("tiny", "README.md", README)
    assert [c.symbol for c in md] == ["Tiny streaming", "Compression", "Shuffling"]
    assert "not a heading" in md[1].text
    yml = qa.chunk_file("tiny", "conf/train.yaml", CONFIG)
    assert [c.symbol for c in yml] == ["max_duration", "optimizer", "save_folder"]
    assert yml[0].text.startswith("# Training settings") and yml[2].text.startswith("# Where checkpoints go")


def test_deep_python_falls_back_to_windows_instead_of_failing() -> None:
    """A 3,000-term expression overflows Python's parser; the file is still indexed, as windows of lines."""
    deep = "value = " + " + ".join(["1"] * 3000) + "\n\ndef f():\n    return value\n"
    chunks = qa.chunk_file("s", "deep.py", deep)
    assert chunks and all(c.kind == "text" for c in chunks)
    assert qa.chunk_file("s", "empty.py", "") == []


def test_declared_names_are_parameters_or_class_attributes() -> None:
    from helpers.pysource import declared_names

    method = ('    @property\n    def fetch(self, remote: str = "s3://(x)", *,\n'
              '              cache_limit: int | None = None,  # bytes (or None)\n'
              '              ) -> None:\n        """Fetch."""\n        keep = 1\n')
    assert declared_names(method) == ["remote", "cache_limit"], "self, locals and decorators are not declared"
    window = method + "".join(f"        x{i} = {i}\n" for i in range(70))  # a long function's first window
    assert declared_names(window.splitlines()[0] + "\n" + "\n".join(window.splitlines()[1:60])) == \
        ["remote", "cache_limit"], "the header alone is parsed, so a cut body does not matter"
    head = 'class Config:\n    """Settings."""\n    cache_limit: int = 0\n    keep_zip = shuffle = False\n'
    assert declared_names(head) == ["cache_limit", "keep_zip", "shuffle"]
    assert declared_names("x = 1\n") == [] and declared_names("def broken(a,\n") == []


def test_a_long_config_class_declares_its_fields_in_every_window() -> None:
    from helpers.pysource import declared_names

    fields = "".join(f"    field_{i}: int = {i}  # the {i}th setting\n" for i in range(70))
    docstring = '    """Settings.\n\n    Args:\n        seed: not a field\n    """\n'
    source = "@dataclass\nclass TrainConfig:\n" + docstring + fields
    first, *later = qa.chunk_file("t", "t/config.py", source)
    assert later and later[0].symbol == "TrainConfig (continued)", "the class is long enough to be split"
    assert declared_names(first.text)[:2] == ["field_0", "field_1"] and "seed" not in declared_names(first.text)
    assert declared_names(later[0].text, class_window=True)[-1] == "field_69"
