"""Step 5: serve the (finetuned) Hugging Face model as an HTTP API with MLflow's model server, on loopback.

The model folder is packaged once as an MLflow ``transformers`` model (text-generation), then ``mlflow models
serve`` runs it as a separate process on 127.0.0.1. ``start_server`` waits for the server's health route,
``query`` posts a prompt to ``/invocations``, and ``stop`` ends the server with its workers; servers still running
when the Python process exits are stopped too (helpers.services), so closing the kernel leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from helpers import models, runs, services
from helpers.config import WorkshopConfig
from helpers.constants import READY_MARKER, TOKEN_VARIABLE, run_first
from helpers.errors import DeployError
from helpers.files import read_json, staged_dir, write_json
from helpers.models import model_folder

HOST = "127.0.0.1"
DEFAULT_PORT = 5001
SERVING_MODEL = Path(__file__).with_name("serving_model.py")
ARTIFACT = "openvino_model"  # the name serving_model.py reads the export under
__all__ = ["DeployError", "deploy_platform", "health", "model_folder", "package_model", "query", "start_server",
           "stop"]


def _load_pipeline_parts(folder: str):
    """Load model and tokenizer from ``folder``, turning any failure into a DeployError that names the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder)
    if not path.is_dir():
        raise DeployError(f"model folder {folder} does not exist: {run_first(0)} (or {run_first(4)}).")
    if not (path / "config.json").is_file():
        raise DeployError(f"model folder {folder} has no config.json, so it is not a Hugging Face model folder: "
                          "point model_dir at the folder step 4 wrote (models/finetuned).")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
    except Exception as err:  # noqa: BLE001 - any loading failure becomes one clear message naming the folder
        raise DeployError(f"model folder {folder} does not load ({type(err).__name__}: {str(err)[:300]}); "
                          "re-run the step that wrote it.") from None
    return model, tokenizer


def package_model(cfg: WorkshopConfig, folder: str, name: str = "") -> Path:
    """Package ``folder`` as an MLflow model under ``<models_dir>/mlflow/<name>`` (reused while unchanged).

    The served form is the model's int8 OpenVINO export (made once, as for answering in step 6) behind the pyfunc
    model in ``helpers/serving_model.py``: about four times faster than transformers on a CPU, and no pickle.
    """
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    name = name or Path(folder).name
    out = cfg.models_dir / "mlflow" / name
    source = {"folder": str(Path(folder).resolve()), "files": models.fingerprint(folder) if Path(folder).is_dir() else {},
              "engine": "openvino", "serving code": hashlib.sha256(SERVING_MODEL.read_bytes()).hexdigest()[:16]}
    if read_json(out / READY_MARKER) == source:
        return out
    _load_pipeline_parts(folder)  # a folder that does not load fails here, naming it
    try:
        exported = models.prepare_openvino(folder)
    except Exception as err:  # noqa: BLE001 - any export failure becomes one clear message naming the folder
        raise DeployError(f"model folder {folder} could not be exported to OpenVINO ({type(err).__name__}: "
                          f"{str(err)[:300]}).") from None
    signature = infer_signature(["<|im_start|>user\nWhat does this function do?<|im_end|>"], ["It ..."],
                                params={"max_new_tokens": 64, "repetition_penalty": 1.1, "pattern": ""})
    requirements = [f"{p}=={importlib.metadata.version(p)}" for p in ("mlflow", "openvino", "openvino-genai",
                                                                         "openvino-tokenizers")]
    with staged_dir(out) as tmp:
        mlflow.pyfunc.save_model(str(tmp), python_model=str(SERVING_MODEL), artifacts={ARTIFACT: str(exported)},
                                 signature=signature, pip_requirements=requirements)
        write_json(tmp / READY_MARKER, source)
    return out


# The server is one of the workshop's loopback services: started, health-checked and stopped by helpers.services.
port_is_free = services.port_is_free
free_port = services.free_port
Server = services.Service


def start_server(model_dir: str | Path, port: int = DEFAULT_PORT, log_dir: Path | None = None,
                 timeout_s: float = 300, host: str = HOST) -> Server:
    """Serve an MLflow model folder with ``mlflow models serve`` on loopback and wait until it answers /health."""
    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").is_file():
        raise DeployError(f"{model_dir} is not an MLflow model (no MLmodel file): package it with "
                          "deploy.package_model(cfg, folder) first.")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MLFLOW_DISABLE_ENV_CREATION": "true",
           # mlflow starts `uvicorn` by name: put this environment's scripts first on PATH.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "-h", host, "-p", str(port),
           "--env-manager", "local", "-w", "1", "-t", "300"]
    log = (log_dir or model_dir.parent) / f"mlflow-serve-{port}.log"
    try:
        return services.start("model server", cmd, port, "/health", log, env=env, timeout_s=timeout_s, host=host)
    except services.ServiceError as err:
        raise DeployError(str(err)) from None


def health(server_or_url: Server | str) -> bool:
    """True when the server's /health route answers 200."""
    url = server_or_url.url if isinstance(server_or_url, Server) else server_or_url.rstrip("/")
    return services.http_status(url + "/health") == 200


def _server_message(body: bytes) -> str:
    """The reason in an error reply: MLflow's JSON ``message`` without the request it repeats first
    ("Failed to predict data '<the prompts>'. \nError: <reason>"), at most its last 300 characters."""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    message = (message or body.decode(errors="replace")).rsplit("\nError: ", 1)[-1].strip()
    return message if len(message) <= 300 else "…" + message[-300:]


def query(server_or_url: Server | str, prompt: str, max_new_tokens: int = 64, timeout_s: float = 300,
          pattern: str = "") -> str:
    """Send one prompt to the server's /invocations route and return the generated text (prompt not included);
    with ``pattern`` (a regular expression) the server constrains the text to match it."""
    url = server_or_url.url if isinstance(server_or_url, Server) else str(server_or_url).rstrip("/")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise DeployError(f"{url!r} is not a server URL: give one like http://127.0.0.1:{DEFAULT_PORT}.")
    params: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "do_sample": False, "repetition_penalty": 1.1}
    if pattern:
        params["pattern"] = pattern
    body = json.dumps({"inputs": [prompt], "params": params}).encode()
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # loopback URL
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise DeployError(f"{url}/invocations answered {err.code}: {_server_message(err.read())}") from None
    except (OSError, ValueError) as err:
        raise DeployError(f"could not reach the model server at {url} ({err}); is it running? (deploy.start_server)") from None
    predictions = payload.get("predictions", payload)
    text = predictions[0] if isinstance(predictions, list) else predictions
    if isinstance(text, dict):
        text = text.get("generated_text", "")
    text = str(text)
    return text[len(prompt):] if text.startswith(prompt) else text


def stop(server: Server, timeout_s: float = 15) -> None:
    """Stop the server and every process it started (its CLI, uvicorn and the worker)."""
    services.stop(server, timeout_s)


def deploy_platform(cfg: WorkshopConfig, name: str, hf_folder: str) -> Any:
    """Create the platform deployment of ``mcli_yamls/deploy_llm.yaml`` with the ``mcli`` SDK (backend 'mcli').

    ``hf_folder`` is the Hugging Face folder in the object store (e.g. ``s3://bucket/workshop/models/finetuned``).
    The API token is read from MOSAICML_API_TOKEN, goes only into the SDK's request header and is never printed.
    """
    if cfg.backend != "mcli":
        raise DeployError("deploy_platform needs backend='mcli'; locally use start_server (as 05_deploy.ipynb does).")
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise DeployError(f"{TOKEN_VARIABLE} is not set: export it before starting Jupyter (see `mcli config`).")
    from mcli import InferenceDeploymentConfig, create_inference_deployment
    from mcli.api.engine.engine import MAPIConnection

    spec = runs.render("deploy_llm.yaml", runs.workshop_values(cfg, name, HF_OUTPUT_FOLDER=hf_folder))
    runs.platform_endpoint()  # a dead or malformed MOSAICML_API_ENDPOINT is named before anything is sent
    with MAPIConnection(api_key=token):
        return create_inference_deployment(InferenceDeploymentConfig.from_dict(spec))
