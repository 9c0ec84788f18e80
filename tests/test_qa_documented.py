"""helpers.qa.documented: each documented setting a passage of its own, embedded beside the chunks and searched."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from helpers import qa
from helpers.config import load_config
from tests.corpus import CONFIG, DOWNLOADER, README, altered_index, write_corpus

WRITER = textwrap.dedent('''\
    """Write samples into shard files."""


    class ShardWriter:
        """Writes samples into shard files and uploads them.

        Args:
            out (str | tuple[str, str]): Where the shards go: a local folder, or ``(local, remote)`` to upload
                them as well.
            eval_interval (int | str | (State, Event) -> bool, optional): A type with parentheses inside.
            size_limit (int, optional): The largest a shard may grow before a new one is started, in bytes.

                Defaults to ``1 << 26``.
            keep_local (bool): Whether the local copy of each shard stays on disk after its upload. Defaults
                to ``False``, which deletes it once uploaded.

        Attributes:
            shards (list[str]): The shard files written so far.

        Example:
            writer = ShardWriter(out="x")
        """

        def __init__(self, out, size_limit=1 << 26, keep_local=False):
            self.out = out


    def upload(path, retries=3):
        """Upload one file.

        :param path: The file to upload.
        :param int retries: How many times a failed upload is tried again
            before giving up.
        """
    ''')


def test_entries_of_args_attributes_and_rest_params_are_read() -> None:
    lines = list(enumerate(WRITER.splitlines(), start=1))
    found = {d.name: d for d in qa.documented_settings(lines)}
    assert list(found) == ["out", "eval_interval", "size_limit", "keep_local", "shards", "path", "retries"]
    assert found["out"].text == ("Where the shards go: a local folder, or ``(local, remote)`` to upload them as well.")
    assert found["size_limit"].text.endswith("in bytes. Defaults to ``1 << 26``."), "a blank line inside an entry"
    assert found["eval_interval"].text == "A type with parentheses inside."
    assert found["retries"].text == "How many times a failed upload is tried again before giving up."
    assert WRITER.splitlines()[found["keep_local"].line - 1].strip().startswith("keep_local (bool):")
    assert "writer" not in found, "an Example section is not a list of settings"


def test_the_installed_libraries_documented_settings_are_read() -> None:
    """On the real code: composer's Trainer documents ~100 arguments, some typed with parentheses inside."""
    import composer.trainer.trainer as trainer
    import streaming.base.dataset as dataset

    def read(module) -> dict[str, qa.Documented]:  # each name's first entry: the class's, not a method's
        found: dict[str, qa.Documented] = {}
        for d in qa.documented_settings(enumerate(Path(module.__file__).read_text().splitlines(), 1)):
            found.setdefault(d.name, d)
        return found

    trainer_args = read(trainer)
    assert len(trainer_args) > 80
    assert "checkpoints to keep locally" in trainer_args["save_num_checkpoints_to_keep"].text
    assert "how frequently to run evaluation" in trainer_args["eval_interval"].text  # type: ``(State, Event) -> bool``
    assert "shard cache" in read(dataset)["cache_limit"].text


@pytest.fixture(scope="module")
def writer_index(tiny_index, tmp_path_factory):
    cfg, _, _ = tiny_index
    work = tmp_path_factory.mktemp("documented")
    (work / "models").symlink_to(cfg.work_dir / "models", target_is_directory=True)
    cfg2 = load_config(work_dir=str(work))
    records = write_corpus(work, {"tiny/download.py": DOWNLOADER, "README.md": README, "conf/train.yaml": CONFIG,
                                  "tiny/writer.py": WRITER})
    stats = qa.build_index(cfg2, records, progress=False)
    return cfg2, stats


def test_each_setting_is_embedded_and_points_at_its_chunk(writer_index) -> None:
    cfg, stats = writer_index
    assert stats.settings == stats.settings_embedded == 7
    index = qa.CodeIndex.load(cfg)
    rows = sqlite3.connect(cfg.index_dir / qa.META_FILE).execute("SELECT chunk_row, line, text FROM settings").fetchall()
    assert len(rows) == index.documented.vectors.ntotal == 7
    for chunk_row, line, text in rows:
        chunk = index.chunks[chunk_row]
        assert chunk.path == "tiny/writer.py" and chunk.start_line <= line <= chunk.end_line
        assert text.startswith(chunk.name.split(".")[0] + " "), "the passage names its class or function"
    hits = index.settings("should the local copy of each shard be deleted after it is uploaded?", 2)
    assert hits[0].chunk.name == "ShardWriter"
    assert index.settings("how often is a failed upload attempted again?", 2)[0].chunk.name == "upload"


def test_the_settings_ranking_joins_hybrid_search(writer_index) -> None:
    """Hybrid search with the ranking of settings scores the chunk holding the closest setting higher by
    ``setting_weight / (RRF_K + 1)``; at weight 0 the ranking is not there."""
    from helpers.qa.search import RRF_K

    cfg, _ = writer_index
    index = qa.CodeIndex.load(cfg)
    question = "should the local copy of each shard be deleted after it is uploaded?"
    scores = {}
    for weight in (0.0, 0.5):
        index.setting_weight = weight
        scores[weight] = {mode: {h.chunk.key: h.score for h in index.search(question, len(index), mode, per_file=0)}
                          for mode in ("hybrid", "bm25")}
    best = index.settings(question, 1)[0].chunk.key
    assert scores[0.5]["hybrid"][best] == pytest.approx(scores[0.0]["hybrid"].get(best, 0.0) + 0.5 / (RRF_K + 1))
    assert scores[0.5]["bm25"] == scores[0.0]["bm25"], "a ranking by meaning: BM25 search has none"


def test_a_rebuild_embeds_only_the_settings_of_changed_files(writer_index, tmp_path) -> None:
    cfg, _ = writer_index
    cfg2 = load_config(work_dir=str(tmp_path))
    (tmp_path / "models").symlink_to(cfg.work_dir / "models", target_is_directory=True)
    shutil.copytree(cfg.index_dir, cfg2.index_dir)
    changed = WRITER.replace("How many times a failed upload", "How often a failed upload")
    records = write_corpus(tmp_path, {"tiny/download.py": DOWNLOADER, "README.md": README, "conf/train.yaml": CONFIG,
                                      "tiny/writer.py": changed})
    stats = qa.build_index(cfg2, records, progress=False)
    assert stats.settings == 7 and stats.settings_embedded == 7, "writer.py changed: its settings are embedded again"
    records = write_corpus(tmp_path, {"tiny/download.py": DOWNLOADER, "README.md": README + "\nMore.\n",
                                      "conf/train.yaml": CONFIG, "tiny/writer.py": changed})
    stats = qa.build_index(cfg2, records, progress=False)
    assert stats.settings == 7 and stats.settings_embedded == 0, "README.md changed: the settings are reused"
    index = qa.CodeIndex.load(cfg2)
    assert index.settings("how often is a failed upload attempted again?", 1)[0].chunk.name == "upload"


def test_an_index_without_settings_is_detected_and_rebuilt(writer_index, tmp_path) -> None:
    """An index from before the settings (no settings table, no settings_version) is foreign: loading it names the
    fix, and a build rebuilds it whole."""
    cfg, stats = writer_index
    cfg2 = altered_index(cfg, tmp_path, "DROP TABLE settings", "DELETE FROM info WHERE key = 'settings_version'")
    (tmp_path / "models").symlink_to(cfg.work_dir / "models", target_is_directory=True)
    (cfg2.index_dir / qa.SETTINGS_FILE).unlink()
    with pytest.raises(qa.QAError, match=r"rebuild it with qa\.build_index\(cfg\)"):
        qa.CodeIndex.load(cfg2)
    records = write_corpus(tmp_path, {"tiny/download.py": DOWNLOADER, "README.md": README, "conf/train.yaml": CONFIG,
                                      "tiny/writer.py": WRITER})
    rebuilt = qa.build_index(cfg2, records, progress=False)
    assert rebuilt.embedded == stats.chunks and rebuilt.settings_embedded == 7
    assert qa.CodeIndex.load(cfg2).documented.vectors.ntotal == 7
