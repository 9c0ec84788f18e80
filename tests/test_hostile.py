"""Hostile input and faults: every failure is a message naming the input and the fix, nothing is left
half-written, nothing runs that should not, and credentials never leak.

The catalog, by class of input (cases covered in other files are named there):

* files that must not run code: a pickled checkpoint naming code (here); an index with pickle in it (test_qa_index)
* services that hang or are gone: a dead MosaicML endpoint (here), a dead model server (test_deploy)
* stale results: a changed file's MDS reused (here); a changed file's index chunks (test_qa_index)
* bytes changed on the way: \\r\\n and lone \\r line endings through MDS (here)
* text that becomes control tokens: chat-template markers in indexed code (test_qa_chain)
* credentials: every variable mcli and the object stores read, masked in logs, kept from services (here)
* names used as paths: run names and dataset names with '/', '..' (here); source names (test_repos)
* awkward trees: symlink loops, 1,100 nested folders, manifest not UTF-8, no file endings (here)
* unusable work folders: a file, an unknown user's home (here)
* interruptions: SIGTERM during flattening and during a local job (here); Ctrl-C (test_repos, test_runs)
* malformed JSONL: a line that is not UTF-8 (here); bad JSON, wrong fields (test_mds)
* damaged indexes: random, truncated, empty, other dimension, other embedder (test_qa_index)
* code the parser cannot take: a 3,000-term expression (test_qa_chunking)
* questions and settings: empty, too long, a lone surrogate, max_new_tokens <= 0, k < 1 (test_qa_chain, test_qa_search)
* ports and URLs: port 70000, a URL that is not one (here); a port in use (test_deploy)
* models: a Hub embedding model while offline (here)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from helpers import convert, deploy, mds, repos, runs, services
from helpers.config import REPO_ROOT, load_config
from helpers.errors import (
    CheckpointError,
    ConfigError,
    DeployError,
    JsonlError,
    ManifestError,
    ModelNotAvailable,
    RunSpecError,
    ServiceError,
)


class Evil:
    """Unpickling this object opens (creates) a marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_that_names_code_is_refused_before_anything_runs(tmp_path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"state": {"model": {}, "integrations": Evil(marker)}}, evil)
    with pytest.raises(CheckpointError, match=r"names code to run while loading \(.*open.*\).*03_finetune"):
        convert.composer_to_hf(evil, tmp_path / "out", progress=False)
    with pytest.raises(CheckpointError, match="was not unpickled"):
        convert.checkpoint_summary(evil)
    assert not marker.exists(), "code from the checkpoint ran"
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# ---------------------------------------------------------------------------------------------- the platform


def test_dead_platform_endpoint_is_named_and_python_exits(tmp_path) -> None:
    port = services.free_port()  # nothing listens there
    script = textwrap.dedent(f"""
        from helpers import runs
        from helpers.config import load_config
        cfg = load_config(work_dir={str(tmp_path)!r}, backend="mcli", storage_root="s3://bucket/ws", cluster="c")
        try:
            runs.run("convert_checkpoint_to_huggingface", cfg, "convert-x",
                     values={{"CHECKPOINT_PATH": "s3://bucket/c.pt", "HF_OUTPUT_FOLDER": "s3://bucket/hf"}})
        except runs.RunSpecError as err:
            print("MESSAGE:", err)
    """)
    env = {**os.environ, "MOSAICML_API_ENDPOINT": f"http://127.0.0.1:{port}/graphql",
           "MOSAICML_API_TOKEN": "not-a-real-token-123"}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"127.0.0.1:{port}" in result.stdout and "cannot be reached" in result.stdout
    assert "not-a-real-token-123" not in result.stdout + result.stderr
    assert time.monotonic() - start < 45


# ---------------------------------------------------------------------------------------------- MDS


def _local_source(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "src"
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"sources: [{{name: mine, local: {root}}}]\n")
    return manifest


@pytest.fixture(scope="module")
def prepared_models(work_dir: Path) -> Path:
    from helpers import models

    models.prepare_generator(load_config(work_dir=work_dir), progress=False)
    return work_dir / "models"


def _config(tmp_path: Path, manifest: Path, prepared_models: Path):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    if not (work / "models").exists():
        (work / "models").symlink_to(prepared_models)
    return load_config(work_dir=work, manifest=str(manifest))


def test_line_endings_survive_mds_byte_for_byte(tmp_path, prepared_models) -> None:
    files = {f"m{i}.py": f"x{i} = 1\r\ny = 2\rz = 3\n".encode() for i in range(6)}
    cfg = _config(tmp_path, _local_source(tmp_path, files), prepared_models)
    repos.download_sources(cfg, progress=False)
    record = repos.read_index(cfg, "mine")[0]
    assert record.read_text().encode() == files[record.path], "step 1 changed the line endings"
    mds.convert_text(cfg, max_seq_len=16, progress=False)
    for split in ("train", "validation", "test"):
        assert mds.verify_text_split(cfg, "codebase", split) == []


def test_edited_file_is_converted_again_not_reused(tmp_path, prepared_models) -> None:
    files = {f"m{i}.py": f"value_{i} = {i}\n".encode() for i in range(6)}
    manifest = _local_source(tmp_path, files)
    cfg = _config(tmp_path, manifest, prepared_models)
    repos.download_sources(cfg, progress=False)
    first = mds.convert_text(cfg, max_seq_len=16, progress=False)
    assert mds.convert_text(cfg, max_seq_len=16, progress=False).reused
    (tmp_path / "src" / "m0.py").write_bytes(b"value_0 = 'edited, same name'\n")
    repos.download_sources(cfg, force=True, progress=False)
    again = mds.convert_text(cfg, max_seq_len=16, progress=False)
    assert not again.reused and again.params["content_sha"] != first.params["content_sha"]
    assert all(mds.verify_text_split(cfg, "codebase", s) == [] for s in ("train", "validation", "test"))


def test_dataset_names_cannot_escape_the_storage_folder(tmp_path) -> None:
    cfg = load_config(work_dir=tmp_path)
    with pytest.raises(ManifestError, match=r"MDS dataset: field 'name'='\.\./\.\./escape' is not allowed"):
        mds.convert_documents(cfg, "../../escape", ["a"], lambda i: "text")
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"text": "a"}\n')
    with pytest.raises(ManifestError, match="not allowed"):
        mds.convert_jsonl(cfg, jsonl, "../up")
    assert not (tmp_path.parent / "escape").exists()


def test_jsonl_line_that_is_not_utf8_is_numbered_and_skippable(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n{"text": "also fine"}\n')
    with pytest.raises(JsonlError, match=r"bad\.jsonl:2: not UTF-8"):
        mds.read_jsonl(path)
    records, style, skipped = mds.read_jsonl(path, on_error="skip")
    assert [r["text"] for r in records] == ["fine", "also fine"] and skipped == [2] and style == "text"


# ---------------------------------------------------------------------------------------------- runs and secrets


def test_run_names_cannot_escape_the_runs_folder(tmp_path) -> None:
    cfg = load_config(work_dir=tmp_path / "work")
    for bad in ("../../../x", "a/b", "", ".hidden"):
        with pytest.raises(RunSpecError, match="run_name=.*not allowed"):
            runs.run("convert_checkpoint_to_huggingface", cfg, bad)
    assert not (tmp_path / "x").exists()


def test_every_credential_is_masked_in_logs_and_kept_from_services(tmp_path, monkeypatch) -> None:
    secrets = {"MOSAICML_API_KEY": "mcli-key-0123456789", "MOSAICML_API_TOKEN": "mcli-token-0123456789",
               "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    yaml_file = tmp_path / "echo.yaml"
    yaml_file.write_text("# echo\nname: echo\nimage: python\ncompute: {cluster: c}\nintegrations: []\n"
                         "command: echo key=$MOSAICML_API_KEY aws=$AWS_SECRET_ACCESS_KEY literal=mcli-token-0123456789\n")
    cfg = load_config(work_dir=tmp_path / "work")
    result = runs.run(yaml_file, cfg, "echo", progress=False)
    log = result.log_path.read_text()
    assert "key=" in log and not any(v in log for v in secrets.values()), log
    assert log.count("***") == 2, "the platform key never reaches a local job; the others are masked"
    port = services.free_port()
    server = textwrap.dedent(f"""
        import http.server, json, os
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(sorted(os.environ)).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
        http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
    """)
    service = services.start("env printer", [sys.executable, "-c", server], port, "/", tmp_path / "env.log",
                             timeout_s=30)
    try:
        with urllib.request.urlopen(service.url + "/", timeout=5) as resp:
            names = set(json.loads(resp.read()))
    finally:
        services.stop(service)
    assert "PATH" in names and not set(secrets) & names, "a service inherited credentials"


def test_sigterm_stops_a_local_job_and_its_process_group(tmp_path) -> None:
    pidfile = tmp_path / "job.pid"
    yaml_file = tmp_path / "sleepy.yaml"
    yaml_file.write_text("# sleeps\nname: sleepy\nimage: python\ncompute: {cluster: c}\nintegrations: []\n"
                         f"command: (sleep 300 & echo $! > {pidfile}; wait)\n")
    script = textwrap.dedent(f"""
        from helpers import runs
        from helpers.config import load_config
        runs.run({str(yaml_file)!r}, load_config(work_dir={str(tmp_path / 'work')!r}), "sleepy", progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.2)
    child = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


# ---------------------------------------------------------------------------------------------- sources


def test_awkward_trees_are_skipped_and_counted(tmp_path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "good.py").write_text("x = 1\n")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    deep = root
    for _ in range(1100):  # one level at a time: os.makedirs itself recurses
        deep = deep / "d"
        deep.mkdir()
    (deep / "deep.py").write_text("y = 2\n")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"sources: [{{name: awkward, local: {root}}}]\n")
    cfg = load_config(work_dir=tmp_path / "work", manifest=str(manifest))
    try:
        report = repos.download_sources(cfg, progress=False)[0]
        assert report.kept == 2 and report.skipped.get("symlink loop") == 2, report
        assert {r.path.rsplit("/", 1)[-1] for r in repos.read_index(cfg, "awkward")} == {"good.py", "deep.py"}
    finally:  # pytest's own clean-up of old temporary folders recurses, and would fail on this tree
        subprocess.run(["rm", "-rf", str(root / "d")], check=True)


@pytest.mark.parametrize(("text", "message"), [
    (b"sources: [{name: a, local: /tmp}]\nsuffixes: []\n", "suffixes"),
    (b"sources: [{name: caf\xe9, local: /tmp}]\n", "not UTF-8"),
])
def test_bad_manifests_are_refused_with_the_field(tmp_path, text, message) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(text)
    with pytest.raises(ManifestError, match=message):
        repos.load_manifest(path)


def _download_script(tmp_path: Path, name: str, files: int, force: bool = False) -> tuple[Path, str]:
    """A local source of ``files`` small Python files, and a Python program that runs step 1 on it."""
    root = tmp_path / "src"
    root.mkdir()
    for i in range(files):
        (root / f"f{i}.py").write_text(f"value = {i}\n" * 50)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"sources: [{{name: {name}, local: {root}}}]\n")
    work = tmp_path / "work"
    script = (f"from helpers import repos\nfrom helpers.config import load_config\n"
              f"repos.download_sources(load_config(work_dir={str(work)!r}, manifest={str(manifest)!r}), "
              f"force={force}, progress=False)")
    return work, script


def test_sigterm_during_flattening_leaves_no_staging_folders(tmp_path) -> None:
    work, script = _download_script(tmp_path, "big", 3000)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".tmp-") for p in (work / "retrieval_data").glob(".*")) if \
            (work / "retrieval_data").exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "flattening never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    leftovers = [p.name for p in work.rglob(".*") if p.name.startswith((".tmp-", ".fetch-"))]
    assert not leftovers, leftovers
    assert repos.completed_sources(load_config(work_dir=work)) == []


# ---------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("kind", ["a file", "an unknown user's home"])
def test_unusable_work_folders_are_refused(tmp_path, kind) -> None:
    value = tmp_path / "file.txt" if kind == "a file" else "~no_such_user_xyz/work"
    if kind == "a file":
        value.write_text("not a folder")
    with pytest.raises(ConfigError, match="work_dir="):
        load_config(work_dir=str(value))


def test_offline_hub_embedder_is_a_message(tmp_path) -> None:
    from helpers.qa.embedding import Embedder

    with pytest.raises(ModelNotAvailable, match="all-minilm-l6-v2.*embedding_model"):
        Embedder("sentence-transformers/some-model-not-here", "sentence-transformers/some-model-not-here")


def test_ports_and_urls_that_are_not_are_named() -> None:
    with pytest.raises(ServiceError, match="port 70000 is not a TCP port"):
        services.check_port(70000)
    with pytest.raises(DeployError, match="'not a url' is not a server URL"):
        deploy.query("not a url", "hi")


# ---------------------------------------------------------------------------------------------- concurrency


def test_two_forced_downloads_of_one_source_at_once_both_finish(tmp_path) -> None:
    work, script = _download_script(tmp_path, "twice", 400, force=True)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cfg = load_config(work_dir=work)
    assert len(repos.read_index(cfg, "twice")) == 400
    assert not [p.name for p in work.rglob(".*") if p.name.startswith((".tmp-", ".fetch-", ".old-"))]


def test_many_writers_swapping_one_folder_at_once_all_finish(tmp_path) -> None:
    import threading

    from helpers.files import replace_dir

    final = tmp_path / "index"
    for round_ in range(20):
        stagings = []
        for n in range(6):
            staging = tmp_path / f".tmp-{round_}-{n}"
            staging.mkdir()
            (staging / "writer.txt").write_text(str(n))
            stagings.append(staging)
        errors: list[BaseException] = []
        start = threading.Barrier(len(stagings))

        def swap(staging, start: threading.Barrier, errors: list[BaseException]) -> None:
            try:
                start.wait()
                replace_dir(staging, final)
            except BaseException as err:  # noqa: BLE001 - collected and asserted on below
                errors.append(err)

        threads = [threading.Thread(target=swap, args=(s, start, errors)) for s in stagings]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert (final / "writer.txt").read_text() in {str(n) for n in range(6)}  # one whole writer's folder
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index"], "staging or old folders left behind"


def test_two_index_builds_at_once_both_finish(tiny_index, tmp_path) -> None:
    import threading

    from helpers import qa

    cfg, records, stats = tiny_index
    errors: list[BaseException] = []

    def build() -> None:
        try:
            qa.build_index(cfg, records, progress=False)
        except BaseException as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(qa.CodeIndex.load(cfg)) == stats.chunks
    assert not [p.name for p in cfg.work_dir.iterdir() if p.name.startswith((".tmp-", ".old-"))]
