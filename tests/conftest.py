"""Shared fixtures: one work folder per test session, and the notebook series run once, in order, inside it."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Nothing may reach the Hugging Face Hub: every model is embedded in an installed package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import repos, series  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402

# Small parameters that make each notebook a smoke run of a minute or two on 2 cores.
# Every notebook in notebooks/ must have an entry (tests/test_notebooks.py checks it).
SMOKE_PARAMETERS: dict[str, dict[str, Any]] = {
    "00_setup.ipynb": {},
    "01_download_repos.ipynb": {"manifest": "smoke_streaming.yaml"},  # one sdist (~150 files) instead of three
    "02_convert_to_mds.ipynb": {"qa_max_records": 600, "reconcat_seq_len": 1024},
    # three optimizer steps of 2 x 64 tokens (~1 min); scoring 8 test samples before and after
    "03_finetune.ipynb": {"max_batches": 3, "batch_size": 2, "max_seq_len": 64, "eval_interval": 3, "eval_batches": 1,
                          "perplexity_samples": 8},
    "04_convert_to_hf.ipynb": {"max_new_tokens": 12},
    "05_deploy.ipynb": {"port": 0, "max_new_tokens": 12},  # a free loopback port; the server is stopped at the end
    # index 40 files (~1/4 of the smoke corpus)
    "06_retrieval_qa.ipynb": {"max_files": 40, "max_new_tokens": 24},
    # answer evaluation on 3 questions for each available model
    "07_evaluate.ipynb": {"docstring_questions": 8, "named_questions": 8, "answer_questions": 3, "max_new_tokens": 24},
    "08_qa_panel.ipynb": {"check_question": "How are shards written to disk?", "max_new_tokens": 16},
}


class SeriesRunner:
    """Runs notebooks of the series under papermill in one shared work folder, each at most once."""

    def __init__(self, work_dir: Path, output_dir: Path):
        self.work_dir = work_dir
        self.output_dir = output_dir
        self.results: dict[str, series.StepResult] = {}

    def run(self, name: str) -> series.StepResult:
        """Run ``name`` and, first, every earlier notebook of the series that has not run yet."""
        ordered = [p for p in series.notebooks() if p.name <= name]
        assert ordered and ordered[-1].name == name, f"no notebook {name} in {series.NOTEBOOKS_DIR}"
        for path in ordered:
            if path.name not in self.results:
                params = {"work_dir": str(self.work_dir), **SMOKE_PARAMETERS.get(path.name, {})}
                self.results[path.name] = series.run_notebook(path, self.output_dir, params)
            result = self.results[path.name]
            if result.status != "ok":
                pytest.fail(f"{path.name} failed: {result.error} (executed copy: {result.output})")
        return self.results[name]


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder every notebook of this test session writes to (``WORKSHOP_TEST_WORK_DIR`` to keep it)."""
    keep = os.environ.get("WORKSHOP_TEST_WORK_DIR")
    path = Path(keep) if keep else tmp_path_factory.mktemp("workdir")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def workshop_config(work_dir: Path):
    """The configuration the notebooks of this test session use."""
    from helpers.config import load_config

    return load_config(work_dir=work_dir)


@pytest.fixture(scope="session")
def generator_dir(workshop_config) -> Path:
    """The embedded generator as a Hugging Face folder (converted once per session, shared with the notebooks)."""
    from helpers import models

    return Path(models.prepare_generator(workshop_config, progress=False))


@pytest.fixture(scope="session")
def series_runner(work_dir: Path) -> SeriesRunner:
    return SeriesRunner(work_dir, REPO_ROOT / "workdir" / "test-executed")


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, generator_dir: Path):
    """The tiny test corpus (tests/corpus.py) indexed once: (cfg, records, build stats); models shared."""
    from helpers import qa
    from helpers.config import load_config
    from tests.corpus import write_corpus

    work = tmp_path_factory.mktemp("qa")
    (work / "models").symlink_to(generator_dir.parent, target_is_directory=True)
    cfg = load_config(work_dir=str(work))
    records = write_corpus(work)
    stats = qa.build_index(cfg, records, progress=False)
    return cfg, records, stats


# Files that test exactness: indentation, tabs, \r\n, non-ASCII, no final newline, special-token text.
TRICKY = {
    "indent.py": "class A:\n    def f(self):\n\t\treturn  '<|im_end|>'   \n\n\n",
    "crlf.py": "a = 1\r\nb = 2\r\n",
    "unicode.md": "\u00dcn\u00efc\u00f6d\u00e9 \u4e2d\u6587 \U0001f642\n  leading spaces\n",
    "trailing.txt": "no newline at the end   ",
    "template.yaml": "chat: \"<|im_start|>user\\n{{ q }}<|im_end|>\"\nkey:   value\n",
}


def small_corpus(tmp_path: Path, models_dir: Path | None, n_extra: int = 30, **cfg_overrides):
    """A work folder with one completed local source of tricky files (sharing the prepared model, if given)."""
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    for name, text in TRICKY.items():
        (root / name).write_bytes(text.encode("utf-8"))
    rng = np.random.default_rng(0)
    for i in range(n_extra):
        body = "".join(f"{' ' * int(rng.integers(0, 9))}line_{i}_{j} = {int(rng.integers(0, 10**6))}\n"
                       for j in range(int(rng.integers(1, 40))))
        (root / "pkg" / f"mod_{i}.py").write_text(f'"""Module {i}."""\n{body}')
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"sources: [{{name: tricky, local: {root}}}]\n")
    work = tmp_path / "work"
    work.mkdir()
    if models_dir is not None:
        (work / "models").symlink_to(models_dir)
    cfg = load_config(work_dir=work, manifest=str(manifest), **cfg_overrides)
    repos.download_sources(cfg, progress=False)
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Dummy object-store credentials, distinctive so a test can prove they never leave this machine.
S3_SECRET = "moto-secret-" + uuid.uuid4().hex


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A real S3 API (moto's server) on 127.0.0.1, with dummy credentials, for the duration of one test."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield endpoint
    finally:
        server.stop()
