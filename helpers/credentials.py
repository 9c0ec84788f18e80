"""Keep credentials out of logs, outputs and child processes.

The workshop never prints a token: ``redact`` masks the value of every credential variable that mcli or an
object store reads, and ``child_environment`` is what a local job or a loopback service is started with.
"""

from __future__ import annotations

import os

from helpers.constants import SECRET_VARIABLES

PLATFORM_KEYS = ("MOSAICML_API_TOKEN", "MOSAICML_API_KEY")


def redact(text: str) -> str:
    """``text`` with the value of every credential variable (mcli's, the object stores') replaced by ***."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def child_environment(extra: dict[str, str] | None = None, keep_storage: bool = True) -> dict[str, str]:
    """This process's environment without credentials, plus ``extra``: what a local job or a service is given.

    The platform's API keys never pass. Object-store credentials pass only with ``keep_storage`` (a local job
    that writes to s3:// needs them; the model server and the web app do not).
    """
    drop = set(PLATFORM_KEYS) if keep_storage else set(SECRET_VARIABLES)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **(extra or {})}
