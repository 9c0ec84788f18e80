"""Step 5: the MLflow model server, started for real on 127.0.0.1, queried, and stopped (also at interpreter exit)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from helpers import deploy, qa, runs
from helpers.config import REPO_ROOT, load_config
from helpers.errors import ModelNotAvailable


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    cfg = load_config(work_dir=str(tmp_path_factory.mktemp("deploy")))
    return cfg, deploy.package_model(cfg, deploy.model_folder(cfg, "base"))


def test_model_choice_and_bad_folders(tmp_path) -> None:
    cfg = load_config(work_dir=str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="04_convert_to_hf"):
        deploy.model_folder(cfg, "finetuned")
    with pytest.raises(ModelNotAvailable, match="unknown"):
        deploy.model_folder(cfg, "largest")
    with pytest.raises(deploy.DeployError, match="does not exist"):
        deploy.package_model(cfg, str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10}))
    with pytest.raises(deploy.DeployError, match=f"{broken}.*does not load"):
        deploy.package_model(cfg, str(broken))
    assert not (cfg.models_dir / "mlflow" / "broken").exists(), "a half-written package was left behind"


def test_port_in_use_is_refused(packaged) -> None:
    _, model_dir = packaged
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(deploy.DeployError, match=f"port {port} .* already in use"):
            deploy.start_server(model_dir, port=port)
    with pytest.raises(deploy.DeployError, match="loopback"):
        deploy.start_server(model_dir, port=port, host="0.0.0.0")


def test_serve_query_stop(packaged) -> None:
    cfg, model_dir = packaged
    again = deploy.package_model(cfg, deploy.model_folder(cfg, "base"))
    assert again == model_dir and (model_dir / "MLmodel").is_file()
    server = deploy.start_server(model_dir, port=deploy.free_port())
    try:
        assert server.url.startswith("http://127.0.0.1:") and deploy.health(server)
        prompt = "<|im_start|>user\nName one programming language.<|im_end|>\n<|im_start|>assistant\n"
        reply = deploy.query(server, prompt, max_new_tokens=8)
        assert reply.strip() and "<|im_start|>" not in reply
        # The server constrains an answer as the in-process generator does (the chain's names, step 6).
        pattern = qa.answer_pattern(["Cobol", "Fortran"])
        constrained = deploy.query(server, prompt, max_new_tokens=8, pattern=pattern)
        assert qa.fits_pattern(constrained, pattern), constrained  # cut short at 8 tokens
        # A pattern that is no regular expression is refused with the reason, and the server answers as before.
        with pytest.raises(deploy.DeployError, match=r"answered 400: .*pattern '\(\(\(' is not a regular expression"):
            deploy.query(server, prompt, max_new_tokens=4, pattern="(((")
        assert deploy.query(server, prompt, max_new_tokens=8, pattern=pattern) == constrained
    finally:
        deploy.stop(server)
    assert not server.running and not deploy.health(server)
    assert deploy.port_is_free(int(server.url.rsplit(":", 1)[1]))
    with pytest.raises(deploy.DeployError, match="could not reach"):
        deploy.query(server, "hello")


def test_server_is_stopped_when_python_exits(packaged) -> None:
    """A kernel that exits without the final cell still stops its server (the atexit hook)."""
    _, model_dir = packaged
    port = deploy.free_port()
    script = textwrap.dedent(f"""
        from helpers import deploy, qa
        server = deploy.start_server({str(model_dir)!r}, port={port})
        print("UP", deploy.health(server), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert "UP True" in out.stdout, out.stderr[-2000:]
    assert not deploy.health(f"http://127.0.0.1:{port}") and deploy.port_is_free(port)


def test_platform_deployment_yaml_is_what_mcli_accepts(tmp_path) -> None:
    """deploy_llm.yaml, rendered for the platform, passes mcli's own inference-deployment config classes."""
    from mcli.models.inference_deployment_config import FinalInferenceDeploymentConfig, InferenceDeploymentConfig

    cfg = load_config(work_dir=tmp_path, backend="mcli", storage_root="s3://bucket/ws", cluster="r1z1",
                      generator_model="mosaicml/mpt-7b")
    spec = runs.render("deploy_llm.yaml", runs.workshop_values(cfg, "codebase-qa-llm",
                                                               HF_OUTPUT_FOLDER="s3://bucket/ws/models/finetuned"))
    final = FinalInferenceDeploymentConfig.finalize_config(InferenceDeploymentConfig.from_dict(spec))
    api = final.to_create_deployment_api_input()["inferenceDeploymentInput"]
    assert api["image"] == "mosaicml/inference:0.1.29" and api["replicas"] == 1
    assert api["compute"]["gpus"] == 1 and api["compute"]["instance"] and api["compute"]["cluster"] == "r1z1"
    assert api["model"]["downloadParameters"]["s3_path"] == "s3://bucket/ws/models/finetuned"
    assert api["model"]["modelHandler"].endswith("MPTModelHandler")
    assert api["model"]["modelParameters"]["model_name"] == "mosaicml/mpt-7b"
    assert "<" not in json.dumps(api), "a placeholder is left"
