"""Write files and folders so that a reader never sees half of them: a unique temporary name, then a rename.

An interrupted step (Ctrl-C, a crash, SIGTERM) leaves either the old complete result or the new one, never a
mix; staging names are unique per call, so two processes building the same thing do not trample each other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.errors import BusyError


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically."""
    return write_text(path, json.dumps(data, default=str, ensure_ascii=False))


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not valid JSON (a marker that does not count)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


SWAP_ATTEMPTS = 20


def replace_dir(staging: Path, final: Path) -> None:
    """Move a completed ``staging`` folder to ``final``, swapping out any previous ``final`` in one rename.

    Two writers may finish at once (two index builds, two forced downloads): whoever renames second finds
    ``final`` already moved away, or back in place, and simply tries again, so the last one to finish wins and
    nothing half-written is ever at ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(SWAP_ATTEMPTS):
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
        try:
            if final.exists() or final.is_symlink():
                with contextlib.suppress(FileNotFoundError):  # another writer moved it away first
                    os.replace(final, old / final.name)
            os.replace(staging, final)
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # not "another writer's folder is back in place"
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise BusyError(f"{final} kept changing while it was being replaced (other runs writing it?); run the step again.")


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh hidden sibling folder of ``final``; on success it replaces ``final``, on any error it is removed.

    >>> with staged_dir(out) as tmp:          # write everything into tmp ...
    ...     (tmp / "model.bin").write_bytes(data)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield staging
        replace_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def cleanup_on_terminate() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` while the block runs, so its ``finally`` clean-ups run as on Ctrl-C.

    Without this, ``kill PID`` (or a closing terminal) ends Python at once and leaves staging folders behind.
    Only the main thread can own signal handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
