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

from helpers import finetune, runs
from helpers.config import load_config

TOKEN = "mcli-test-token-" + uuid.uuid4().hex


class FakeMapi:
    """A minimal MosaicML API: stores created runs, reports their status, keeps every request it saw."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.runs: dict[str, dict] = {}
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

    creates = [r for r in mapi.requests if "createRun(" in json.loads(r["body"])["query"]]
    assert len(creates) == 1
    submitted = json.loads(creates[0]["body"])["variables"]["createRunData"]["runInput"]
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

    # The token travels only as the Authorization header: not in any body, other header, file or output.
    for request in mapi.requests:
        assert request["headers"]["Authorization"] == TOKEN
        others = {k: v for k, v in request["headers"].items() if k != "Authorization"}
        assert TOKEN not in request["body"] and TOKEN not in json.dumps(others)
    for path in cfg.work_dir.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="ignore"), f"token written to {path}"
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


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
