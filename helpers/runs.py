"""Run an MCLI yaml from mcli_yamls/ in one of two places: on this machine, or on the MosaicML platform.

Each job is one yaml, the single source of truth. Its ``<PLACEHOLDER>`` fields are filled from the workshop
configuration; then either the ``local`` backend runs the yaml's ``command`` in a subprocess, with the
``parameters`` section written to a local file standing in for ``/mnt/config/parameters.yaml``, or the ``mcli``
backend submits the very same run with the ``mcli`` SDK. The API token is read from the environment by the SDK
call only; it is never written into a rendered yaml, a log or an error message.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.config import REPO_ROOT, WorkshopConfig
from helpers.constants import TOKEN_VARIABLE
from helpers.credentials import child_environment, redact
from helpers.errors import RunFailed, RunSpecError
from helpers.files import cleanup_on_terminate, read_json, write_json, write_text

YAMLS_DIR = REPO_ROOT / "mcli_yamls"
PLATFORM_PARAMETERS = "/mnt/config/parameters.yaml"
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")
# Every placeholder the yamls may use, with what fills it (shown when one is missing).
KNOWN_PLACEHOLDERS: dict[str, str] = {
    "RUN_NAME": "the run name (argument run_name)",
    "CLUSTER": "the platform cluster (setting `cluster` / WORKSHOP_CLUSTER)",
    "STORAGE_ROOT": "the storage root (setting `storage_root`)",
    "CLOUD": "the object-store scheme, s3/gs/oci (from an s3://, gs:// or oci:// storage_root)",
    "BUCKET": "the bucket name (from an s3://, gs:// or oci:// storage_root)",
    "MODEL_NAME": "the model to train or serve (setting `generator_model`)",
    "DATA_NAME_MDS": "the MDS folder under <STORAGE_ROOT>/mds/ (argument data_name)",
    "PATH_TO_TXT_FOLDER": "the folder with train/, validation/, test/ of text files (staged by helpers.mds_jobs)",
    "PATH_TO_JSONL_FOLDER": "the folder with train.jsonl, validation.jsonl, test.jsonl (staged by helpers.mds_jobs)",
    "MAX_SEQ_LEN": "tokens per converted sample (argument max_seq_len)",
    "CHECKPOINT_PATH": "the Composer checkpoint to convert (argument checkpoint)",
    "HF_OUTPUT_FOLDER": "where the Hugging Face folder goes (argument output)",
    "MLFLOW_TRACKING_URI": "the MLflow tracking store (MLFLOW_TRACKING_URI, or file:// under work_dir locally)",
}
# Hub name of the embedded generator, for the platform (its nodes can reach the Hub; this laptop need not).
EMBEDDED_GENERATOR_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
DELETE = object()  # an override value that removes the key (None sets YAML null)
BATCH_PATTERN = re.compile(r"\[batch=(\d+)/(\d+)\]")


RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RESULT_FILE = "result.json"


@dataclass
class RunResult:
    """What a finished job left behind: exit code, log, and the outputs its yaml names."""

    name: str
    backend: str
    returncode: int
    log_path: Path | None
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    parameters_path: Path | None = None
    status: str = "COMPLETED"
    reused: bool = False  # True when an identical finished local run was returned instead of running again


def yaml_file(name: str | Path) -> Path:
    """The yaml ``name`` refers to: a path, or a path relative to mcli_yamls/ (``.yaml`` optional)."""
    path = Path(name)
    for candidate in (path, YAMLS_DIR / path, YAMLS_DIR / path.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    available = sorted(str(p.relative_to(YAMLS_DIR)) for p in YAMLS_DIR.rglob("*.yaml"))
    raise RunSpecError(f"no MCLI yaml {str(name)!r}: choose one of {', '.join(available)}")


def load_spec(name: str | Path) -> dict[str, Any]:
    """The yaml as a dictionary, placeholders still in place."""
    path = yaml_file(name)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RunSpecError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(spec, dict) or "name" not in spec:
        raise RunSpecError(f"{path} is not an MCLI run yaml: it needs at least `name`, `image`, `command`")
    return spec


def workshop_values(cfg: WorkshopConfig, run_name: str = "", **extra: Any) -> dict[str, Any]:
    """Placeholder values derived from the configuration, plus ``extra`` (e.g. DATA_NAME_MDS='codebase')."""
    values: dict[str, Any] = {"RUN_NAME": run_name, "CLUSTER": cfg.cluster, "STORAGE_ROOT": cfg.storage_root}
    if cfg.is_remote:
        scheme, rest = cfg.storage_root.split("://", 1)
        values.update(CLOUD=scheme, BUCKET=rest.split("/", 1)[0])
    if cfg.backend == "mcli":
        values["MODEL_NAME"] = EMBEDDED_GENERATOR_HUB if cfg.generator_is_embedded else cfg.generator_model
        values["MLFLOW_TRACKING_URI"] = os.environ.get("MLFLOW_TRACKING_URI", "databricks")
    else:
        values["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri(cfg)
    values.update({key.upper(): value for key, value in extra.items()})
    return values


def mlflow_tracking_uri(cfg: WorkshopConfig) -> str:
    """The local MLflow file store every local run logs to: ``file://<work_dir>/mlruns``."""
    return (cfg.work_dir / "mlruns").as_uri()


def _walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_strings(value)


def _fill(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole:  # a value that is only a placeholder takes the value's own type (an int stays an int)
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    return node


def _apply_override(spec: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = spec
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise RunSpecError(f"override {dotted!r}: {key!r} is not a section of the yaml")
    if value is DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


def used_sections(backend: str) -> tuple[str, ...]:
    """The parts of a yaml a backend uses: locally only ``name``, ``command`` and ``parameters`` matter."""
    return ("name", "command", "parameters") if backend == "local" else ()


def render(name: str | Path, values: dict[str, Any], overrides: dict[str, Any] | None = None,
           backend: str = "mcli") -> dict[str, Any]:
    """The yaml with ``overrides`` (dotted keys; ``DELETE`` removes one) applied and every placeholder filled.

    Raises RunSpecError listing every placeholder that is unknown or has no value, before anything runs.
    """
    spec = copy.deepcopy(load_spec(name))
    for dotted, value in (overrides or {}).items():
        _apply_override(spec, dotted, value)
    sections = used_sections(backend)
    checked = {k: v for k, v in spec.items() if not sections or k in sections}
    found = {m.group(1) for text in _walk_strings(checked) for m in PLACEHOLDER.finditer(text)}
    unknown = sorted(found - set(KNOWN_PLACEHOLDERS))
    missing = sorted(p for p in found & set(KNOWN_PLACEHOLDERS) if values.get(p) in (None, ""))
    if unknown or missing:
        lines = [f"{yaml_file(name).name} cannot run yet:"]
        lines += [f"  <{p}> is not a known placeholder (known: {', '.join(KNOWN_PLACEHOLDERS)})" for p in unknown]
        lines += [f"  <{p}> has no value: set {KNOWN_PLACEHOLDERS[p]}" for p in missing]
        raise RunSpecError("\n".join(lines))
    filled = _fill(checked, values)
    return {**spec, **filled} if sections else filled


def write_yaml(spec: dict[str, Any], path: Path) -> Path:
    """Write a rendered yaml (temp file, then rename) so it can be read or submitted with ``mcli run -f``."""
    return write_text(path, yaml.safe_dump(spec, sort_keys=False))


class _LogView:
    """Shows a running job: a progress bar over batches plus its last log lines, updated in place."""

    def __init__(self, name: str, tail: int, progress: bool):
        from tqdm.auto import tqdm

        self.lines: collections.deque[str] = collections.deque(maxlen=tail)
        self.bar = tqdm(total=None, desc=name, unit="batch", disable=not progress)
        self.handle = None
        self.last_draw = 0.0
        if progress:
            try:
                from IPython import get_ipython
                from IPython.display import Pretty, display

                if get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None:
                    self.handle = display(Pretty(""), display_id=True)
            except ImportError:
                pass
        self.progress = progress

    def add(self, line: str) -> None:
        line = redact(line.rstrip())
        self.lines.append(line)
        match = BATCH_PATTERN.search(line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            if self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.refresh()
        if not self.progress:
            return
        if self.handle is None:
            print(line, flush=True)
        elif time.monotonic() - self.last_draw > 1.0:
            self.draw()

    def draw(self) -> None:
        if self.handle is not None:
            from IPython.display import Pretty

            self.handle.update(Pretty("\n".join(self.lines)))
            self.last_draw = time.monotonic()

    def close(self) -> None:
        self.draw()
        self.bar.close()


def _stop(process: subprocess.Popen) -> None:
    """Stop the job's whole process group (background children too): SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so only live members keep the group alive
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def run_local(spec: dict[str, Any], run_dir: Path, progress: bool = True, tail: int = 15,
              env: dict[str, str] | None = None) -> RunResult:
    """Run a rendered yaml's ``command`` here, its ``parameters`` in ``run_dir/parameters.yaml``.

    The log streams to ``run_dir/run.log`` and into the notebook; a failure raises RunFailed with the last
    lines; interrupting (Ctrl-C, or the kernel's stop button) stops the job and everything it started.
    """
    if not str(spec.get("command", "")).strip():
        raise RunSpecError(f"run {spec.get('name')!r} has no `command` to run")
    run_dir.mkdir(parents=True, exist_ok=True)
    params_path = write_yaml(spec.get("parameters") or {}, run_dir / "parameters.yaml")
    command = spec["command"].replace(PLATFORM_PARAMETERS, str(params_path))
    log_path = run_dir / "run.log"
    bin_dir = str(Path(sys.executable).parent)  # the venv's entry points: llmfoundry, composer, ...
    child_env = child_environment({"PYTHONUNBUFFERED": "1", **(env or {})})  # no platform token for a local job
    child_env["PATH"] = bin_dir + os.pathsep + child_env.get("PATH", "")
    view = _LogView(spec["name"], tail, progress)
    start = time.perf_counter()
    with open(log_path, "w") as log, cleanup_on_terminate():
        process = subprocess.Popen(["bash", "-c", command], cwd=run_dir, env=child_env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(redact(line))
                log.flush()
                view.add(line)
            returncode = process.wait()
        except BaseException:  # Ctrl-C, SIGTERM (as SystemExit) or an error: never leave the job running
            _stop(process)
            view.close()
            raise
    view.close()
    seconds = time.perf_counter() - start
    if returncode != 0:
        last = "\n".join(log_path.read_text().splitlines()[-tail * 2:])
        raise RunFailed(f"run {spec['name']!r} failed with exit code {returncode} after {seconds:.0f} s. "
                        f"Last lines of {log_path}:\n{last}")
    return RunResult(spec["name"], "local", returncode, log_path, seconds, _outputs(spec), params_path)


def _outputs(spec: dict[str, Any]) -> dict[str, str]:
    params = spec.get("parameters") or {}
    return {key: str(params[key]) for key in ("save_folder", "output_folder", "out_root") if params.get(key)}


def platform_endpoint(timeout_s: float = 5.0) -> str:
    """The MosaicML API endpoint mcli will call; RunSpecError naming it when nothing listens there.

    Checked before any SDK call: the SDK's worker thread would otherwise wait on a dead endpoint and keep the
    Python process from exiting.
    """
    from mcli.config import MCLIConfig

    endpoint = MCLIConfig.load_config().endpoint
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        raise RunSpecError(f"the MosaicML API endpoint {endpoint} cannot be reached ({err}); check the network, or "
                           "MOSAICML_API_ENDPOINT if you set it.") from None
    return endpoint


def submit_mcli(spec: dict[str, Any], follow: bool = True, wait: bool = True, poll_s: float = 10.0,
                timeout_s: float | None = None) -> RunResult:
    """Submit a rendered yaml to the MosaicML platform with the mcli SDK, then follow it to the end.

    The token comes from MOSAICML_API_TOKEN and goes only into the SDK's request header.
    """
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise RunSpecError(f"backend 'mcli' needs {TOKEN_VARIABLE} in the environment (see `mcli config`); "
                           "set it before starting Jupyter, never in a notebook cell")
    from mcli import RunConfig, RunStatus, create_run, follow_run_logs, get_run
    from mcli.api.engine.engine import MAPIConnection

    endpoint = platform_endpoint()
    start = time.perf_counter()
    try:
        with MAPIConnection(api_key=token):
            run = create_run(RunConfig.from_dict(copy.deepcopy(spec)))
            print(f"Submitted {run.name} (status {run.status.value}); follow it with: mcli logs -f {run.name}")
            if follow:
                for line in follow_run_logs(run):
                    print(redact(line), end="", flush=True)
            while wait and not run.status.is_terminal():
                if timeout_s is not None and time.perf_counter() - start > timeout_s:
                    break
                time.sleep(poll_s)
                run = get_run(run.name)
    except (TimeoutError, OSError) as err:
        raise RunFailed(f"the MosaicML API at {endpoint} did not answer ({type(err).__name__}: {err or 'timed out'}); "
                        "check the network, or MOSAICML_API_ENDPOINT if you set it.") from None
    status = run.status.value
    if wait and run.status == RunStatus.FAILED:
        raise RunFailed(f"platform run {run.name} failed ({run.reason or 'no reason given'}): see `mcli logs {run.name}`")
    return RunResult(run.name, "mcli", 0 if status == "COMPLETED" else 1, None, time.perf_counter() - start,
                     _outputs(spec), None, status)


def _stamp(spec: dict[str, Any], inputs: list[Path]) -> dict[str, Any]:
    """What decides whether two local runs are the same: the rendered yaml and the size/mtime of input files."""
    files = {str(p): [p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else None for p in inputs}
    return json.loads(json.dumps({"spec": spec, "inputs": files}, default=str))


def _output_present(value: str) -> bool:
    """A local output path that exists (a folder must not be empty); remote URIs are trusted."""
    if "://" in str(value):
        return True
    path = Path(value)
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _save_result(result: RunResult, stamp: dict[str, Any], run_dir: Path) -> None:
    """Remember a finished local run and what it ran on, so an identical re-run can reuse it."""
    record = {"stamp": stamp, "name": result.name, "returncode": result.returncode, "seconds": result.seconds,
              "log_path": str(result.log_path) if result.log_path else None, "outputs": result.outputs,
              "parameters_path": str(result.parameters_path) if result.parameters_path else None}
    write_json(run_dir / RESULT_FILE, record)


def finished_run(stamp: dict[str, Any], run_dir: Path) -> RunResult | None:
    """The saved result of a successful local run with the same ``stamp`` whose outputs still exist, else None."""
    record = read_json(run_dir / RESULT_FILE)
    if not isinstance(record, dict):
        return None
    if record.get("returncode") != 0 or record.get("stamp") != stamp:
        return None
    if not all(_output_present(v) for v in (record.get("outputs") or {}).values()):
        return None
    def optional_path(key: str) -> Path | None:
        return Path(record[key]) if record.get(key) else None

    return RunResult(record["name"], "local", 0, optional_path("log_path"), record["seconds"], record["outputs"],
                     optional_path("parameters_path"), "COMPLETED", reused=True)


def run(name: str | Path, cfg: WorkshopConfig, run_name: str, values: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None, progress: bool = True, reuse: bool = False,
        inputs: list[Path] | None = None, clear: list[Path] | None = None, **submit_kwargs: Any) -> RunResult:
    """Render ``name`` from the configuration and run it on ``cfg.backend``; the rendered yaml is kept in runs/.

    With ``reuse``, a local run whose rendered yaml and ``inputs`` files are unchanged since it last finished (and
    whose outputs are still there) is not run again: its saved result is returned, so a re-run costs nothing.
    ``clear`` names local folders removed just before a local job starts (never when a finished run is reused),
    for commands that refuse to write into a folder holding an earlier output.
    """
    if not isinstance(run_name, str) or not RUN_NAME_RE.match(run_name):
        raise RunSpecError(f"run_name={run_name!r} is not allowed: use letters, digits, '.', '_' or '-' (no '/', "
                           "no '..'), starting with a letter or digit, e.g. 'finetune-codebase'.")
    all_values = {**workshop_values(cfg, run_name), **{k.upper(): v for k, v in (values or {}).items()}}
    spec = render(name, all_values, overrides, backend=cfg.backend)
    run_dir = cfg.runs_dir / run_name
    stamp = _stamp(spec, inputs or [])
    if cfg.backend == "local" and reuse and (previous := finished_run(stamp, run_dir)):
        print(f"Reusing the finished run in {run_dir} (same yaml, outputs present); pass reuse=False to run again.")
        return previous
    write_yaml(spec, run_dir / "rendered.yaml")
    if cfg.backend == "local":
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        for folder in clear or []:
            shutil.rmtree(folder, ignore_errors=True)
        result = run_local(spec, run_dir, progress=progress)
        _save_result(result, stamp, run_dir)
        return result
    return submit_mcli(spec, **submit_kwargs)
