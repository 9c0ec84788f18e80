"""The offline question/answer generator: public names, exact locations, argument docs; CoQA conversion."""

from __future__ import annotations

import http.server
import json
import threading
from functools import partial
from pathlib import Path

import pytest

from helpers import qa_dataset as qa
from helpers import repos
from helpers.config import load_config

MODULE = '''"""A module."""

import os


class Widget:
    """Turn knobs into widgets.

    More detail that is not part of the summary.
    """

    def __init__(self, size: int, colour: str = "red"):
        self.size = size

    def spin(self, times: int = 1) -> None:
        """Spin the widget around.

        Args:
            times (int, optional): How many turns to make. Defaults to ``1``.
        """

    @staticmethod
    def make(kind: str) -> "Widget":
        """Build a widget of one kind."""

    def _hidden(self):
        """Never asked about."""


def build(name: str, *, strict: bool = False) -> Widget:
    """Build a widget by name.

    Args:
        name: The widget's name.
        strict (bool): Raise on unknown names,
            rather than guessing.
    """


def undocumented(x):
    return x


def _private():
    """Private helpers are not part of the public API."""
'''


def corpus(tmp_path: Path):
    root = tmp_path / "src"
    (root / "src" / "toolkit" / "parts").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "src" / "toolkit" / "__init__.py").write_text('"""Toolkit."""\nfrom toolkit.parts import Widget, build\n')
    (root / "src" / "toolkit" / "parts" / "__init__.py").write_text("from .widgets import Widget, build\n")
    (root / "src" / "toolkit" / "parts" / "widgets.py").write_text(MODULE)
    (root / "src" / "toolkit" / "broken.py").write_text("def oops(:\n")
    (root / "tests" / "test_widgets.py").write_text('def test_spin():\n    """Spin test."""\n')
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"sources: [{{name: kit, local: {root}}}]\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    repos.download_sources(cfg, progress=False)
    return cfg


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


def test_questions_use_public_names_and_exact_locations(tmp_path):
    cfg = corpus(tmp_path)
    path, counts = qa.build_qa_jsonl(cfg)
    assert path == cfg.work_dir / "qa" / "codebase_qa.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) >= {"prompt", "response", "source", "path"} and r["source"] == "kit" for r in records)
    by_prompt = {r["prompt"]: r for r in records}
    # Shortest public import path, found through the packages' re-exports.
    where = by_prompt["Where is `toolkit.Widget` defined?"]
    assert where["path"] == "src/toolkit/parts/widgets.py"
    assert where["line"] == line_of(MODULE, "class Widget:")
    assert f"line {where['line']}" in where["response"]
    purpose = [r for r in records if r["prompt"].endswith(("`toolkit.Widget` do?", "`toolkit.Widget` for?",
                                                          "`toolkit.Widget` in one or two sentences."))]
    assert len(purpose) == 1 and purpose[0]["response"].startswith("Turn knobs into widgets. It is a class")
    assert "More detail" not in purpose[0]["response"]
    assert by_prompt["What arguments does `toolkit.Widget` take?"]["response"].startswith(
        "`toolkit.Widget(size: int, colour: str='red')`")
    spin = by_prompt["What arguments does `toolkit.Widget.spin` take?"]["response"]
    assert spin.startswith("`toolkit.Widget.spin(times: int=1)`")
    assert "- times: How many turns to make. Defaults to ``1``." in spin
    assert by_prompt["What arguments does `toolkit.Widget.make` take?"]["response"].startswith("`toolkit.Widget.make(kind: str)`")
    build = by_prompt["What arguments does `toolkit.build` take?"]["response"]
    assert "- name: The widget's name." in build and "- strict: Raise on unknown names, rather than guessing." in build
    prompts = " ".join(by_prompt)
    for absent in ("_hidden", "_private", "undocumented", "test_spin", "oops"):
        assert absent not in prompts
    assert counts["unparsable files"] == 1 and counts["records"] == len(records)
    # Deterministic: a second build writes the same bytes.
    first = path.read_bytes()
    qa.build_qa_jsonl(cfg)
    assert path.read_bytes() == first
    qa.build_qa_jsonl(cfg, max_records=3)
    assert len(path.read_text().splitlines()) == 3


def test_module_names():
    assert qa.module_name("composer/callbacks/early_stopper.py") == "composer.callbacks.early_stopper"
    assert qa.module_name("src/pkg/__init__.py") == "pkg"
    assert qa.module_name("scripts/train-model.py") is None
    assert qa.module_name("README.md") is None


def test_needs_step_one(tmp_path):
    with pytest.raises(repos.SourceNotReady, match="01_download_repos"):
        qa.build_qa_jsonl(load_config(work_dir=tmp_path))


COQA = {"version": "1.0", "data": [
    {"id": "s1", "story": "Anna has a red bike. She rides it to school.",
     "questions": [{"input_text": "What colour is the bike?", "turn_id": 1}, {"input_text": "Where does she ride?", "turn_id": 2}],
     "answers": [{"input_text": "red", "turn_id": 1}, {"input_text": "to school", "turn_id": 2}]},
]}


def test_coqa_conversion(tmp_path):
    src = tmp_path / "coqa.json"
    src.write_text(json.dumps(COQA))
    out = tmp_path / "coqa.jsonl"
    assert qa.coqa_to_jsonl(src, out) == 2
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["prompt"].endswith("Q: What colour is the bike?\nA:") and first["response"] == " red"
    assert "Q: What colour is the bike?\nA: red\nQ: Where does she ride?\nA:" in second["prompt"]
    src.write_text(json.dumps({"data": [{"story": "x"}]}))
    with pytest.raises(ValueError, match="story 0"):
        qa.coqa_to_jsonl(src, out)


def test_qa_datasets_from_the_manifest_download_over_http(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "coqa.json").write_text(json.dumps(COQA))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(f"sources: [{{name: x, local: .}}]\nqa_datasets:\n"
                            f"  - {{name: coqa, url: 'http://127.0.0.1:{port}/coqa.json', format: coqa}}\n")
        cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
        [path] = qa.fetch_qa_datasets(cfg)
        assert path == cfg.work_dir / "qa" / "coqa.jsonl" and len(path.read_text().splitlines()) == 2
        manifest.write_text(f"sources: [{{name: x, local: .}}]\nqa_datasets:\n"
                            f"  - {{name: gone, url: 'http://127.0.0.1:{port}/missing.json', format: coqa}}\n")
        with pytest.raises(repos.SourceUnavailable, match="offline_sdists.yaml"):
            qa.fetch_qa_datasets(load_config(work_dir=tmp_path / "work", manifest=str(manifest)))
    finally:
        server.shutdown()
        server.server_close()
