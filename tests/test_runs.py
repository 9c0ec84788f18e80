"""helpers.runs: placeholders filled from the configuration, and the local backend running a yaml's command."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers import runs
from helpers.config import load_config

ALL_YAMLS = sorted(runs.YAMLS_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAMLS, ids=[str(p.relative_to(runs.YAMLS_DIR)) for p in ALL_YAMLS])
def test_every_yaml_is_an_mcli_spec_with_known_placeholders(path: Path) -> None:
    spec = runs.load_spec(path)
    assert {"name", "image", "compute", "integrations"} <= set(spec), f"{path.name} lacks MCLI fields"
    assert "cluster" in spec["compute"]
    text = path.read_text()
    assert text.lstrip().startswith("#"), f"{path.name} should open with a comment saying what it does"
    found = set(runs.PLACEHOLDER.findall(text))
    assert found and found <= set(runs.KNOWN_PLACEHOLDERS), f"unknown placeholders {found - set(runs.KNOWN_PLACEHOLDERS)}"
    if "finetune" in path.parts:
        assert "llmfoundry train /mnt/config/parameters.yaml" in spec["command"]
        params = spec["parameters"]
        assert params["model"]["name"] == "hf_causal_lm" and params["train_loader"]["dataset"]["split"] == "train"
        assert {"max_duration", "max_seq_len", "device_train_microbatch_size", "precision", "fsdp_config",
                "save_folder", "loggers"} <= set(params)


def test_render_fills_from_the_config_and_keeps_types(tmp_path: Path) -> None:
    cfg = load_config(work_dir=tmp_path, backend="mcli", storage_root="gs://my-bucket/ws", cluster="c1")
    values = runs.workshop_values(cfg, "ft", DATA_NAME_MDS="codebase")
    spec = runs.render("finetune/finetune_composer_codebase", values,
                       overrides={"parameters.max_seq_len": 128, "parameters.fsdp_config": runs.DELETE})
    assert spec["name"] == "ft" and spec["compute"]["cluster"] == "c1"
    assert spec["parameters"]["train_loader"]["dataset"]["remote"] == "gs://my-bucket/ws/mds/codebase"
    assert spec["parameters"]["model"]["pretrained_model_name_or_path"] == runs.EMBEDDED_GENERATOR_HUB
    assert spec["parameters"]["max_seq_len"] == 128 and "fsdp_config" not in spec["parameters"]
    assert values["CLOUD"] == "gs" and values["BUCKET"] == "my-bucket"
    assert "<" not in yaml.safe_dump(spec)
    typed = tmp_path / "typed.yaml"
    typed.write_text("# typed\nname: x\nimage: i\ncompute: {cluster: c}\nintegrations: []\ncommand: echo\n"
                     "parameters: {steps: <RUN_NAME>}\n")
    assert runs.render(typed, {"RUN_NAME": 7})["parameters"]["steps"] == 7


def test_missing_and_unknown_placeholders_are_listed_together(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    marker = tmp_path / "ran"
    bad.write_text(textwrap.dedent(f"""\
        name: <RUN_NAME>
        image: python
        compute: {{cluster: <CLUSTER>}}
        integrations: []
        command: touch {marker} <PATH_TO_TXT_FOLDER>
        parameters: {{model: <MODLE_NAME>, out: <STORAGE_ROOT>/<DATA_NAME_MDS>}}
        """))
    cfg = load_config(work_dir=tmp_path / "work")
    with pytest.raises(runs.RunSpecError) as err:
        runs.run(bad, cfg, "r1")
    message = str(err.value)
    for name in ("<MODLE_NAME>", "<PATH_TO_TXT_FOLDER>", "<DATA_NAME_MDS>"):
        assert name in message, f"{name} not reported in:\n{message}"
    assert "not a known placeholder" in message and "has no value" in message
    assert "<CLUSTER>" not in message, "a local run does not use compute.cluster"
    assert not marker.exists(), "the command ran despite the errors"
    with pytest.raises(runs.RunSpecError, match="CLUSTER"):
        runs.render(bad, runs.workshop_values(cfg, "r1"), backend="mcli")


def _job(tmp_path: Path, command: str, parameters: dict | None = None) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "<RUN_NAME>", "image": "python", "compute": {"cluster": "<CLUSTER>"},
                                    "integrations": [], "command": command,
                                    "parameters": parameters or {"out": "<STORAGE_ROOT>/out.txt", "n": 3}}))
    return path


def test_local_backend_runs_the_command_with_the_parameters_file(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys, yaml\np = yaml.safe_load(open(sys.argv[1]))\n"
                      "for i in range(1, p['n'] + 1):\n    print(f'[batch={i}/{p[\"n\"]}]:', flush=True)\n"
                      "open(p['out'], 'w').write('done')\n")
    job = _job(tmp_path, f"python {script} /mnt/config/parameters.yaml\n")
    cfg = load_config(work_dir=tmp_path / "work")
    Path(cfg.storage_root).mkdir(parents=True)
    result = runs.run(job, cfg, "job1", progress=False)
    assert result.returncode == 0 and result.backend == "local" and result.name == "job1"
    assert (Path(cfg.storage_root) / "out.txt").read_text() == "done"
    assert yaml.safe_load(result.parameters_path.read_text()) == {"out": f"{cfg.storage_root}/out.txt", "n": 3}
    assert "[batch=3/3]" in result.log_path.read_text()
    assert (cfg.runs_dir / "job1" / "rendered.yaml").is_file()


def test_identical_finished_run_is_reused_and_a_change_runs_again(tmp_path: Path) -> None:
    counter, data = tmp_path / "count.txt", tmp_path / "data.txt"
    data.write_text("v1")
    job = _job(tmp_path, f"echo x >> {counter}", {"out": "<STORAGE_ROOT>", "n": 1})
    cfg = load_config(work_dir=tmp_path / "work")
    Path(cfg.storage_root).mkdir(parents=True)
    (Path(cfg.storage_root) / "keep").write_text("an output")
    runs_made = lambda: len(counter.read_text().split())  # noqa: E731
    first = runs.run(job, cfg, "job5", progress=False, reuse=True, inputs=[data])
    again = runs.run(job, cfg, "job5", progress=False, reuse=True, inputs=[data])
    assert runs_made() == 1 and not first.reused and again.reused and again.returncode == 0
    runs.run(job, cfg, "job5", progress=False, reuse=False, inputs=[data])
    assert runs_made() == 2, "reuse=False must run again"
    data.write_text("v2, longer")
    assert not runs.run(job, cfg, "job5", progress=False, reuse=True, inputs=[data]).reused and runs_made() == 3
    runs.run(_job(tmp_path, f"echo x >> {counter}", {"out": "<STORAGE_ROOT>", "n": 2}), cfg, "job5", progress=False,
             reuse=True, inputs=[data])
    assert runs_made() == 4, "a changed yaml must run again"


def test_local_failure_raises_with_the_last_log_lines(tmp_path: Path) -> None:
    job = _job(tmp_path, "echo preparing; echo 'ValueError: the data is bad' >&2; exit 3")
    with pytest.raises(runs.RunFailed) as err:
        runs.run(job, load_config(work_dir=tmp_path / "work"), "job2", progress=False)
    assert "exit code 3" in str(err.value) and "ValueError: the data is bad" in str(err.value)


def test_local_run_never_sees_or_logs_the_token(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(runs.TOKEN_VARIABLE, "secret-value-123")
    (tmp_path / "leak.txt").write_text("secret-value-123")  # a job that prints the token anyway gets it masked
    job = _job(tmp_path, f'echo "token=${{MOSAICML_API_TOKEN:-unset}}"; cat {tmp_path / "leak.txt"}')
    cfg = load_config(work_dir=tmp_path / "work")
    log = runs.run(job, cfg, "job3", progress=False).log_path.read_text()
    assert "token=unset" in log and "secret-value-123" not in log and "***" in log
    assert all("secret-value-123" not in p.read_text() for p in cfg.runs_dir.rglob("*") if p.is_file())


def test_interrupt_stops_the_job_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    job = _job(tmp_path, f"sleep 120 & echo $! > {pid_file}; echo started; wait")
    cfg = load_config(work_dir=tmp_path / "work")

    def interrupt() -> None:  # what Ctrl-C or the kernel's stop button does to the notebook's process
        deadline = time.time() + 30
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.time()
    # Importing composer (as earlier tests in the same process do) turns SIGINT into SystemExit(130).
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        runs.run(job, cfg, "job4", progress=False)
    assert time.time() - started < 30
    status = Path(f"/proc/{int(pid_file.read_text())}/status")
    assert not status.exists() or "zombie" in status.read_text(), "the job's background child survived"


def test_clear_empties_old_outputs_before_a_run_but_not_on_reuse(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = _job(tmp_path, f"test ! -e {out}/old && mkdir -p {out} && date +%s%N > {out}/new", {"n": 1})
    cfg = load_config(work_dir=tmp_path / "work")
    out.mkdir()
    (out / "old").write_text("an earlier output the command would refuse")
    runs.run(job, cfg, "job6", progress=False, clear=[out])
    written = (out / "new").read_text()
    assert not (out / "old").exists()
    assert runs.run(job, cfg, "job6", progress=False, reuse=True, clear=[out]).reused
    assert (out / "new").read_text() == written, "a reused run must leave its outputs alone"
