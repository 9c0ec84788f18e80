"""Background services on loopback (the model server, the Voilà app): start, wait until healthy, stop.

Each service runs in its own process group, so stopping it also stops the workers it spawned, and every service a
Python process started is stopped when that process exits (a notebook kernel shutting down included).
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from helpers.credentials import child_environment
from helpers.errors import ServiceError

HOST = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` (checked by binding it briefly, as the server will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like the servers themselves, allow a port whose old connections linger in TIME_WAIT; a listener blocks.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the operating system says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int:
    """HTTP status of a GET on ``url``, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback URLs built here
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


@dataclass
class Service:
    """A running background process: its base URL, process and log file."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path
    started_s: float = 0.0

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_RUNNING: list[Service] = []


def check_port(port: int, host: str = HOST) -> None:
    """Refuse non-loopback hosts, impossible ports and ports already taken, with the fix in the message."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ServiceError(f"port {port!r} is not a TCP port: use a number from 1024 to 65535, e.g. {free_port()}.")
    if host not in LOOPBACK:
        raise ServiceError(f"host {host!r}: the workshop serves on loopback only (127.0.0.1).")
    if not port_is_free(port, host):
        raise ServiceError(f"port {port} on {host} is already in use (another server?): stop it, or pass a "
                           f"different port, e.g. port={free_port(host)}.")


def start(name: str, cmd: list[str], port: int, health_path: str, log: Path, env: dict[str, str] | None = None,
          timeout_s: float = 300, host: str = HOST, cwd: Path | None = None) -> Service:
    """Start ``cmd`` in the background and wait until ``health_path`` answers 200; raise with its log otherwise."""
    check_port(port, host)
    log.parent.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    with open(log, "w") as fh:
        process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=child_environment(env, keep_storage=False), cwd=cwd)
    service = Service(name, f"http://{host}:{port}", process, log)
    _RUNNING.append(service)
    while time.perf_counter() - begin < timeout_s:
        if not service.running:
            tail = service.log_tail()
            stop(service)
            hint = " (the port was taken meanwhile)" if "address already in use" in tail.lower() else ""
            raise ServiceError(f"the {name} exited during start-up{hint}; its log {log} ends with:\n{tail}")
        if http_status(service.url + health_path) == 200:
            service.started_s = time.perf_counter() - begin
            return service
        time.sleep(0.5)
    stop(service)
    raise ServiceError(f"the {name} did not answer {service.url}{health_path} within {timeout_s:.0f} s; see {log}.")


def stop_process(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """Stop ``process`` and every process it started (SIGTERM, then SIGKILL for any that linger)."""
    try:
        root = psutil.Process(process.pid)
        procs = [root, *root.children(recursive=True)]  # e.g. a CLI, its server and the server's workers/kernels
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def stop(service: Service, timeout_s: float = 15) -> None:
    """Stop the service and every process it started (SIGTERM, then SIGKILL for any that linger)."""
    stop_process(service.process, timeout_s)
    if service in _RUNNING:
        _RUNNING.remove(service)


@atexit.register
def stop_all() -> None:
    """Stop every service this process started (runs on interpreter or kernel shutdown)."""
    for service in list(_RUNNING):
        stop(service)
