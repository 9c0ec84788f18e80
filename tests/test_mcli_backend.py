"""The `mcli` backend, for real: the mcli SDK talks GraphQL over HTTP to a server started here on 127.0.0.1.

The server answers the two operations the backend uses (``createRun`` and ``getRunsPaginated``) in the shapes
mcli 0.7.5 deserializes, records every request, and moves the run from RUNNING to COMPLETED as it is polled.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from helpers import deploy, finetune, mds, mds_jobs, runs
from helpers.config import load_config
from tests.conftest import S3_SECRET, small_corpus

TOKEN = "mcli-test-token-" + uuid.uuid4().hex


class FakeMapi:
    """A minimal MosaicML API: stores created runs, reports their status, keeps every request it saw."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.runs: dict[str, dict] = {}
        self.deployments: list[dict] = []
        self.polls = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/graphql"

    def _run_object(self, run: dict, status: str) -> dict:
        now = datetime.now(UTC).isoformat()
        compute = run["input"].get("compute", {})
        return {
            "id": run["id"], "name": run["name"], "status": status, "createdAt": now, "updatedAt": now,
            "reason": None, "createdByEmail": "workshop@example.com", "priority": "medium", "maxRetries": 0,
            "preemptible": False, "retryOnSystemFailure": False, "isDeleted": False, "runType": "TRAINING",
            "maxDurationSeconds": None,
            "resumptions": [{"clusterName": compute.get("cluster", ""), "cpus": 0, "gpuType": "a100_80gb",
                             "gpus": compute.get("gpus", 0), "nodes": 1, "executionIndex": 0, "startTime": now,
                             "endTime": None, "status": status, "estimatedEndTime": None, "reason": None}],
            "details": {"originalRunInput": None, "metadata": {}, "lastExecutionId": None},
        }

    def _answer(self, body: dict) -> dict:
        query, variables = body["query"], body.get("variables", {})
        if "createRun(" in query:
            run_input = variables["createRunData"]["runInput"]
            run = {"id": uuid.uuid4().hex, "name": run_input["runName"] + "-abc1", "input": run_input}
            self.runs[run["name"]] = run
            return {"data": {"createRun": [self._run_object(run, "PENDING")]}}  # MAPI answers with a list
        if "createInferenceDeployment(" in query:
            spec = variables["createInferenceDeploymentData"]["inferenceDeploymentInput"]
            self.deployments.append(spec)
            now = datetime.now(UTC).isoformat()
            compute = spec.get("compute", {})
            stored = {**spec, "cluster": compute.get("cluster", ""), "gpuType": "a100_80gb",
                      "gpuNum": compute.get("gpus", 0)}  # MAPI echoes the input with the resolved compute
            return {"data": {"createInferenceDeployment": [{  # MAPI answers with a list here too
                "id": uuid.uuid4().hex, "name": spec["deploymentName"] + "-abc1", "inferenceDeploymentInput": stored,
                "originalInferenceDeploymentInput": None, "status": "PENDING", "createdAt": now, "updatedAt": now,
                "deletedAt": None, "publicDNS": "", "createdByEmail": "workshop@example.com"}]}}
        if "getRunsPaginated(" in query:
            self.polls += 1
            status = "RUNNING" if self.polls < 2 else "COMPLETED"
            names = variables["getRunsPaginatedData"].get("filters", {}).get("name", {}).get("in", list(self.runs))
            found = [self._run_object(self.runs[n], status) for n in names if n in self.runs]
            return {"data": {"getRunsPaginated": {"cursor": None, "hasNextPage": False, "runs": found}}}
        return {"errors": [{"message": f"operation not supported by the test server: {query[:80]}",
                            "extensions": {"code": "BAD_REQUEST"}}]}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server names its handlers so
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                api.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                answer = json.dumps(api._answer(json.loads(raw))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeMapi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mapi(monkeypatch, tmp_path):
    with FakeMapi() as api:
        monkeypatch.setenv("MOSAICML_API_ENDPOINT", api.endpoint)
        monkeypatch.setenv(runs.TOKEN_VARIABLE, TOKEN)
        monkeypatch.setenv("MCLI_CONFIG_DIR", str(tmp_path / "mosaic"))  # no ~/.mosaic read or written
        monkeypatch.delenv("MOSAICML_API_KEY", raising=False)
        yield api


def platform_config(tmp_path: Path, cluster: str = "r1z1"):
    return load_config(work_dir=tmp_path / "work", backend="mcli", storage_root="s3://workshop-bucket/qa",
                       cluster=cluster, generator_model="mosaicml/mpt-7b")


def test_finetune_is_submitted_with_the_yaml_fields(mapi, tmp_path, capsys) -> None:
    cfg = platform_config(tmp_path)
    result = finetune.train(cfg, "mosaicml/mpt-7b", run_name="ft-platform", follow=False, poll_s=0.05,
                            timeout_s=30)
    assert result.backend == "mcli" and result.status == "COMPLETED" and result.name == "ft-platform-abc1"

    submitted = created_run(mapi)
    rendered = yaml.safe_load((cfg.runs_dir / "ft-platform" / "rendered.yaml").read_text())
    source = runs.load_spec(finetune.FINETUNE_YAML)
    assert submitted["runName"] == rendered["name"] == "ft-platform"
    assert submitted["image"] == source["image"]
    assert submitted["command"] == source["command"].strip()
    assert submitted["compute"]["cluster"] == "r1z1" and submitted["compute"]["gpus"] == source["compute"]["gpus"]
    assert submitted["parameters"] == rendered["parameters"]
    params = submitted["parameters"]
    # the model is the configured one, unchanged by the local CPU profile; data and checkpoints are in the bucket
    assert params["model"]["pretrained_model_name_or_path"] == "mosaicml/mpt-7b"
    assert params["precision"] == "amp_bf16" and "fsdp_config" in params
    assert params["train_loader"]["dataset"]["remote"] == "s3://workshop-bucket/qa/mds/codebase"
    assert params["save_folder"] == "s3://workshop-bucket/qa/checkpoints/ft-platform"
    assert "<" not in json.dumps(submitted), "a placeholder reached the platform"
    assert any("getRunsPaginated(" in json.loads(r["body"])["query"] for r in mapi.requests), "status never polled"

    assert_token_only_in_the_header(mapi, cfg, capsys)


def created_run(mapi: FakeMapi) -> dict:
    """The runInput of the one createRun request the stand-in received."""
    creates = [r for r in mapi.requests if "createRun(" in json.loads(r["body"])["query"]]
    assert len(creates) == 1
    return json.loads(creates[0]["body"])["variables"]["createRunData"]["runInput"]


def assert_token_only_in_the_header(mapi: FakeMapi, cfg, capsys, secrets: tuple[str, ...] = ()) -> None:
    """The token travels only as the Authorization header: not in any body, other header, file or output.

    ``secrets`` (object-store keys) appear nowhere at all.
    """
    for request in mapi.requests:
        assert request["headers"]["Authorization"] == TOKEN
        others = {k: v for k, v in request["headers"].items() if k != "Authorization"}
        for secret in (TOKEN, *secrets):
            assert secret not in request["body"] and secret not in json.dumps(others)
    for path in cfg.work_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            assert not any(secret in text for secret in (TOKEN, *secrets)), f"a secret was written to {path}"
    out = capsys.readouterr()
    assert not any(secret in out.out + out.err for secret in (TOKEN, *secrets))


def test_unfilled_placeholders_stop_before_submitting(mapi, tmp_path) -> None:
    cfg = platform_config(tmp_path, cluster="")
    with pytest.raises(runs.RunSpecError) as err:
        runs.run("finetune/finetune_composer_codebase.yaml", cfg, "ft-platform", follow=False)
    assert "<CLUSTER>" in str(err.value) and "<DATA_NAME_MDS>" in str(err.value) and "<MODEL_NAME>" not in str(err.value)
    assert mapi.requests == [], "something was submitted despite the missing fields"


def test_missing_token_is_a_clear_error(mapi, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(runs.TOKEN_VARIABLE)
    cfg = platform_config(tmp_path)
    with pytest.raises(runs.RunSpecError, match=runs.TOKEN_VARIABLE):
        finetune.train(cfg, "mosaicml/mpt-7b", run_name="ft-platform", follow=False)
    assert mapi.requests == []


def platform_corpus(tmp_path: Path, s3_endpoint: str):
    """A small completed source, a platform configuration and its (moto) bucket."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="workshop-bucket")
    return small_corpus(tmp_path, None, backend="mcli", storage_root="s3://workshop-bucket/qa", cluster="r1z1",
                        generator_model="mosaicml/mpt-7b")


def bucket_files(s3_endpoint: str, prefix: str) -> set[str]:
    import boto3

    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="workshop-bucket", Prefix=prefix)
    return {o["Key"].removeprefix(prefix) for o in listing.get("Contents", [])}


def filled(command: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        command = command.replace(f"<{name}>", value)
    return command.strip()


def test_text_conversion_is_submitted_with_its_files_in_the_bucket(mapi, s3_endpoint, tmp_path, capsys) -> None:
    cfg = platform_corpus(tmp_path, s3_endpoint)
    job = mds_jobs.convert_text_job(cfg, max_seq_len=2048, follow=False, poll_s=0.05, timeout_s=30)
    assert job.result.backend == "mcli" and job.result.status == "COMPLETED" and job.result.name == "convert-codebase-abc1"

    submitted = created_run(mapi)
    source = runs.load_spec(mds_jobs.TEXT_YAML)
    staged = f"s3://workshop-bucket/qa/staged/{job.staged.folder.name}"
    assert submitted["runName"] == "convert-codebase" and submitted["image"] == source["image"]
    assert submitted["compute"]["cluster"] == "r1z1" and submitted["compute"]["gpus"] == 0
    assert submitted["command"] == filled(source["command"], {
        "PATH_TO_TXT_FOLDER": staged, "STORAGE_ROOT": "s3://workshop-bucket/qa", "DATA_NAME_MDS": "codebase",
        "MODEL_NAME": "mosaicml/mpt-7b", "MAX_SEQ_LEN": "2048"})
    assert "<" not in json.dumps(submitted), "a placeholder reached the platform"
    # The node reads the staged files from the bucket: every file, in the split the in-process conversion gives it.
    keys = [k for split in mds.SPLITS for k in job.staged.keys[split]]
    assignment = mds.assign_splits(keys, cfg.seed)
    uploaded = bucket_files(s3_endpoint, f"qa/staged/{job.staged.folder.name}/")
    assert uploaded == {f"{split}/{name}" for split in mds.SPLITS for name in job.staged.names[split]}
    for split, idx in assignment.items():
        assert sorted(job.staged.keys[split]) == sorted(keys[i] for i in idx)
    assert_token_only_in_the_header(mapi, cfg, capsys, secrets=(S3_SECRET,))


def test_jsonl_conversion_is_submitted_with_its_splits_in_the_bucket(mapi, s3_endpoint, tmp_path, capsys) -> None:
    cfg = platform_corpus(tmp_path, s3_endpoint)
    pairs = tmp_path / "qa.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}?", "response": f"a{i}", "source": "s", "path": f"f{i % 5}.py"})
                             + "\n" for i in range(30)))
    job = mds_jobs.convert_jsonl_job(cfg, pairs, "codebase_qa", follow=False, poll_s=0.05, timeout_s=30)
    assert job.result.status == "COMPLETED" and job.result.name == "convert-codebase-qa-abc1"

    submitted = created_run(mapi)
    staged = f"s3://workshop-bucket/qa/staged/{job.staged.folder.name}"
    assert submitted["command"] == filled(runs.load_spec(mds_jobs.JSONL_YAML)["command"], {
        "PATH_TO_JSONL_FOLDER": staged, "STORAGE_ROOT": "s3://workshop-bucket/qa", "DATA_NAME_MDS": "codebase_qa"})
    assert submitted["compute"]["cluster"] == "r1z1" and "<" not in json.dumps(submitted)
    assert bucket_files(s3_endpoint, f"qa/staged/{job.staged.folder.name}/") == {f"{s}.jsonl" for s in mds.SPLITS}
    assert sum(len(job.staged.keys[s]) for s in mds.SPLITS) == 30
    assert_token_only_in_the_header(mapi, cfg, capsys, secrets=(S3_SECRET,))


def test_deployment_is_created_from_the_deploy_yaml(mapi, tmp_path, capsys) -> None:
    cfg = platform_config(tmp_path)
    created = deploy.deploy_platform(cfg, "codebase-qa-llm", "s3://workshop-bucket/qa/models/finetuned")
    assert len(mapi.deployments) == 1 and created.name == "codebase-qa-llm-abc1" and created.status == "PENDING"
    sent = json.dumps(mapi.deployments[0])
    assert "mosaicml/inference:0.1.29" in sent and "s3://workshop-bucket/qa/models/finetuned" in sent
    assert "mosaicml/mpt-7b" in sent and "r1z1" in sent and "<" not in sent, "a placeholder is left"
    assert_token_only_in_the_header(mapi, cfg, capsys)
