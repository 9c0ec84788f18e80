"""Step 1: manifests are validated, sources flatten safely and exactly, re-runs and interruptions are handled."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import repos
from helpers.config import load_config


def write_manifest(folder: Path, body: str) -> Path:
    path = folder / "manifest.yaml"
    path.write_text(body)
    return path


def make_hostile_tree(root: Path, outside: Path) -> None:
    """A source folder with every kind of file step 1 must keep, skip or refuse."""
    (root / "a").mkdir(parents=True)
    (root / "a_b").mkdir()
    (root / "a" / "b_c.py").write_text("def f():\n    return 'a/b_c'\n")
    (root / "a_b" / "c.py").write_text("def f():\n\treturn 'a_b/c'\n")
    (root / "windows.py").write_bytes(b"x = 1\r\ny = 2\r\n  z = 3  ")  # CRLF and no final newline
    (root / "README.md").write_text("# Title\n\nSome text \u00e9\u4e2d\n")
    (root / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    (root / "blob.py").write_bytes(b"abc\x00\x01\x02")
    (root / "big.md").write_text("x" * 5000)
    (root / "image.png").write_bytes(b"\x89PNG....")
    (root / "empty.py").write_text("")
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("[core]\n")
    (outside / "secret.txt").write_text("TOP SECRET outside the source\n")
    os.symlink(outside / "secret.txt", root / "leak.txt")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "README.md", root / "inside_link.md")


def test_manifests_shipped_are_valid():
    for name in ("offline_sdists.yaml", "mosaicml_repos.yaml", "smoke_streaming.yaml"):
        manifest = repos.load_manifest(repos.Path(repos.__file__).parent.parent / "data_manifests" / name)
        assert manifest.sources
    online = repos.load_manifest(load_config(manifest="mosaicml_repos.yaml").manifest_path)
    assert {s.name for s in online.sources} == {"composer", "streaming", "examples", "diffusion", "llm-foundry"}
    assert all(s.kind == "git" and s.ref for s in online.sources)
    offline = repos.load_manifest(load_config().manifest_path)
    assert [s.location for s in offline.sources] == ["mosaicml==0.32.1", "mosaicml-streaming==0.12.0", "llm-foundry==0.22.0"]


@pytest.mark.parametrize("entry, words", [
    ("- {name: x, git: 'not a url', ref: v1}", ["source 'x'", "'git'"]),
    ("- {name: x, git: '--upload-pack=evil', ref: v1}", ["source 'x'", "'git'"]),
    ("- {name: x, git: 'https://github.com/a/b'}", ["source 'x'", "'ref'"]),
    ("- {name: x, git: 'https://github.com/a/b', ref: '--evil'}", ["source 'x'", "'ref'"]),
    ("- {name: x, pypi: 'mosaicml'}", ["source 'x'", "'pypi'"]),
    ("- {name: x, pypi: 'a==1', git: 'https://h/r', ref: v}", ["source 'x'", "exactly one"]),
    ("- {name: x, pypi: 'a==1', colour: red}", ["source 'x'", "colour"]),
    ("- {name: ../../etc, local: .}", ["sources[0]", "'name'"]),
    ("- {name: a/b, local: .}", ["sources[0]", "'name'"]),
    ("- {name: .., local: .}", ["sources[0]", "'name'"]),
    ("- {local: .}", ["sources[0]", "'name'"]),
    ("- {name: x, local: .}\n  - {name: X, local: .}", ["source 'X'", "twice"]),
])
def test_bad_manifest_entries_name_the_entry_and_field(tmp_path, entry, words):
    path = write_manifest(tmp_path, "sources:\n  " + entry + "\n")
    with pytest.raises(repos.ManifestError) as err:
        repos.load_manifest(path)
    for word in words:
        assert word in str(err.value)


def test_bad_manifest_file(tmp_path):
    with pytest.raises(repos.ManifestError, match="offline_sdists.yaml"):
        repos.load_manifest(tmp_path / "missing.yaml")
    with pytest.raises(repos.ManifestError, match="not valid YAML"):
        repos.load_manifest(write_manifest(tmp_path, "sources: [\n"))
    with pytest.raises(repos.ManifestError, match="'sources:'"):
        repos.load_manifest(write_manifest(tmp_path, "source: []\n"))
    with pytest.raises(repos.ManifestError, match="max_file_bytes"):
        repos.load_manifest(write_manifest(tmp_path, "sources: [{name: x, local: .}]\nmax_file_bytes: -1\n"))


def test_flatten_hostile_local_source(tmp_path):
    root, outside = tmp_path / "src", tmp_path / "outside"
    outside.mkdir()
    make_hostile_tree(root, outside)
    manifest = write_manifest(tmp_path, f"sources:\n  - {{name: mine, local: {root}}}\nmax_file_bytes: 4000\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    [report] = repos.download_sources(cfg, progress=False)

    records = {r.path: r for r in repos.read_index(cfg, "mine")}
    assert set(records) == {"a/b_c.py", "a_b/c.py", "windows.py", "README.md", "latin1.txt", "inside_link.md"}
    assert report.kept == 6 and report.replaced == 1
    assert report.skipped == {"binary": 1, "too large": 1, "other type": 1, "empty": 1, ".git": 1,
                              "symlink outside": 2}
    # Flat names never collide, and every text file holds exactly the original text.
    assert len({r.text_file.name for r in records.values()}) == len(records)
    for path, rec in records.items():
        if path != "latin1.txt":
            assert rec.text_file.read_bytes() == (root / path).read_bytes(), path
        assert rec.bytes == rec.text_file.stat().st_size
    assert records["windows.py"].lines == 3
    assert records["README.md"].lines == 3
    assert records["latin1.txt"].read_text() == "caf\ufffd\n"
    # Nothing from outside the source was read through a link.
    leaked = [p for p in (cfg.retrieval_data_dir / "mine").iterdir() if "TOP SECRET" in p.read_text(errors="replace")]
    assert not leaked
    index_rows = [json.loads(line) for line in (cfg.retrieval_data_dir / "mine" / "index.jsonl").read_text().splitlines()]
    assert {"text_file", "path", "bytes", "lines"} <= set(index_rows[0])


def test_undecodable_skip_option(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "ok.py").write_text("x = 1\n")
    (root / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    manifest = write_manifest(tmp_path, f"sources: [{{name: s, local: {root}}}]\nundecodable: skip\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    [report] = repos.download_sources(cfg, progress=False)
    assert [r.path for r in repos.read_index(cfg, "s")] == ["ok.py"]
    assert report.skipped == {"not UTF-8": 1} and report.replaced == 0


def test_rerun_skips_done_sources_and_interrupted_runs_never_count(tmp_path, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    for i in range(5):
        (root / f"m{i}.py").write_text(f"value = {i}\n")
    manifest = write_manifest(tmp_path, f"sources:\n  - {{name: one, local: {root}}}\n  - {{name: two, local: {root}}}\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))

    real_flatten = repos.flatten

    def interrupted(src, out, spec):
        result = real_flatten(src, out, spec)  # files written, then the run dies before the marker
        if out.name.startswith(".tmp-two-"):
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(repos, "flatten", interrupted)
    with pytest.raises(KeyboardInterrupt):
        repos.download_sources(cfg, progress=False)
    assert repos.completed_sources(cfg) == ["one"]
    assert not (cfg.retrieval_data_dir / "two").exists()
    assert [p.name for p in cfg.retrieval_data_dir.iterdir()] == ["one"]  # no temporary leftovers
    with pytest.raises(repos.SourceNotReady, match="01_download_repos"):
        repos.read_index(cfg, "two")
    # A folder left without a marker (e.g. by a crash of an older version) is not "done" either.
    (cfg.retrieval_data_dir / "two").mkdir()
    (cfg.retrieval_data_dir / "two" / "stale.txt").write_text("half")
    assert repos.completed_sources(cfg) == ["one"]

    monkeypatch.setattr(repos, "flatten", real_flatten)
    reports = repos.download_sources(cfg, progress=False)
    assert [r.status for r in reports] == ["already done", "built"]
    assert reports[0].kept == reports[1].kept == 5
    assert not (cfg.retrieval_data_dir / "two" / "stale.txt").exists()
    assert len(list(repos.iter_records(cfg))) == 10
    assert [r.status for r in repos.download_sources(cfg, names=["two"], progress=False)] == ["already done"]
    assert [r.status for r in repos.download_sources(cfg, names=["two"], force=True, progress=False)] == ["built"]
    with pytest.raises(repos.ManifestError, match="three"):
        repos.download_sources(cfg, names=["three"], progress=False)


def test_git_source_at_a_pinned_tag(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=origin, check=True)
    (origin / "pkg").mkdir()
    (origin / "pkg" / "mod.py").write_text("VERSION = 1\n")
    subprocess.run([*git, "add", "."], cwd=origin, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=origin, check=True)
    subprocess.run([*git, "tag", "v1"], cwd=origin, check=True)
    (origin / "pkg" / "mod.py").write_text("VERSION = 2\n")
    subprocess.run([*git, "commit", "-qam", "two"], cwd=origin, check=True)
    manifest = write_manifest(tmp_path, f"sources: [{{name: repo, git: 'file://{origin}', ref: v1}}]\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    [report] = repos.download_sources(cfg, progress=False)
    [record] = repos.read_index(cfg, "repo")
    assert record.path == "pkg/mod.py" and record.read_text() == "VERSION = 1\n"
    assert report.skipped.get(".git", 0) > 0


def test_unreachable_hosts_suggest_the_offline_manifest(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path, "sources:\n"
                              "  - {name: gone, git: 'https://127.0.0.1:9/mosaicml/composer', ref: v0.32.1}\n"
                              "  - {name: nopypi, pypi: 'mosaicml-streaming==0.12.0'}\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    with pytest.raises(repos.SourceUnavailable) as err:
        repos.download_sources(cfg, names=["gone"], progress=False)
    assert "'gone'" in str(err.value) and "offline_sdists.yaml" in str(err.value)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(repos.SourceUnavailable) as err:
        repos.download_sources(cfg, names=["nopypi"], progress=False)
    assert "'nopypi'" in str(err.value) and "offline_sdists.yaml" in str(err.value)
    assert repos.completed_sources(cfg) == []
    assert [p.name for p in cfg.retrieval_data_dir.iterdir()] == []
    assert not [p for p in cfg.work_dir.iterdir() if p.name.startswith(".fetch")]


def test_notebook_flattens_the_sdist_exactly(series_runner, work_dir):
    """The smoke run of 01 fetched mosaicml-streaming==0.12.0 from PyPI; its files equal the installed package's."""
    series_runner.run("01_download_repos.ipynb")
    cfg = load_config(work_dir=work_dir)
    assert "streaming" in repos.completed_sources(cfg)
    import streaming

    installed = Path(streaming.__file__).parent
    records = {r.path: r for r in repos.read_index(cfg, "streaming")}
    assert len(records) > 100
    compared = 0
    for rel in ("streaming/base/dataset.py", "streaming/base/format/mds/writer.py", "streaming/base/util.py"):
        assert records[rel].read_text() == (installed.parent / rel).read_text()
        assert records[rel].lines == (installed.parent / rel).read_text().count("\n")
        compared += 1
    assert compared == 3
