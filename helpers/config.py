"""One workshop configuration shared by every notebook.

Values come from three layers, later ones winning: the defaults below, environment variables named
``WORKSHOP_<FIELD>`` (e.g. ``WORKSHOP_BACKEND=mcli``), and keyword overrides (a notebook's parameters cell).
Every value is checked once, here, so a typo fails with a message naming the setting and what it accepts.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from helpers.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

BACKENDS = ("local", "mcli")
REMOTE_SCHEMES = ("s3", "gs", "oci")

# Embedded models: shipped inside PyPI packages, so the workshop runs offline with no account.
EMBEDDED_GENERATOR = "smollm2-135m-instruct"
EMBEDDED_EMBEDDING = "all-minilm-l6-v2"


def _storage_scheme(uri: str) -> str | None:
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return match.group(1).lower() if match else None


def _check_work_dir(value: Any) -> Path:
    """The work folder as an absolute path, refused with the fix when it cannot hold the series' files."""
    raw = str(value)
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~someone who has no account here
        path = Path(raw)
    if raw.startswith("~") and str(path).startswith("~"):
        raise ConfigError(f"work_dir={raw!r}: no such user's home folder; give an existing folder's path.")
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"work_dir={raw!r} is a file, not a folder: choose a folder (it is created if missing).")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"work_dir={raw!r}: {probe} is not writable; choose a folder you can write to "
                          "(WORKSHOP_WORK_DIR or the notebook's work_dir parameter).")
    return path


@dataclass(frozen=True)
class WorkshopConfig:
    """Every setting a notebook may change; see the README's configuration table for each one."""

    work_dir: Path = field(default=REPO_ROOT / "workdir", metadata={"help": "local folder for everything the series writes"})
    backend: str = field(default="local", metadata={"help": "where jobs run: 'local' or 'mcli' (MosaicML platform)"})
    storage_root: str = field(default="", metadata={"help": "where MDS data and checkpoints go: a local folder (default: <work_dir>/storage) or s3://, gs://, oci:// URI"})
    generator_model: str = field(default=EMBEDDED_GENERATOR, metadata={"help": "causal LM to finetune and answer with"})
    embedding_model: str = field(default=EMBEDDED_EMBEDDING, metadata={"help": "sentence embedding model for retrieval"})
    manifest: str = field(default="offline_sdists.yaml", metadata={"help": "corpus manifest in data_manifests/ (or a path)"})
    cluster: str = field(default="", metadata={"help": "MosaicML platform cluster (backend 'mcli' only)"})
    seed: int = field(default=17, metadata={"help": "seed for splits, shuffling and sampling"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "work_dir", _check_work_dir(self.work_dir))
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not supported: use one of {', '.join(BACKENDS)}.")
        root = self.storage_root or str(self.work_dir / "storage")
        scheme = _storage_scheme(root)
        if scheme is not None and scheme not in REMOTE_SCHEMES:
            raise ConfigError(
                f"storage_root={root!r} uses scheme {scheme!r}: use a local folder or one of "
                + ", ".join(f"{s}://BUCKET/path" for s in REMOTE_SCHEMES) + "."
            )
        if scheme is not None and not re.match(rf"^{scheme}://[^/]+", root, re.IGNORECASE):
            raise ConfigError(f"storage_root={root!r} has no bucket: write it as {scheme}://BUCKET/path.")
        if scheme is None:
            root = str(Path(root).expanduser().resolve())
        object.__setattr__(self, "storage_root", root.rstrip("/"))
        if self.backend == "mcli" and scheme is None:
            raise ConfigError(
                "backend='mcli' needs a shared object store: set storage_root to s3://, gs:// or oci:// "
                "(the platform's nodes cannot see this machine's folders)."
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed={self.seed!r} must be a whole number.")
        for name in ("generator_model", "embedding_model", "manifest"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"{name} is empty: give a value (default {getattr(WorkshopConfig, name)!r}).")

    # Derived locations: one place decides where each step reads and writes.
    @property
    def is_remote(self) -> bool:
        """True when storage_root is an object-store URI rather than a local folder."""
        return _storage_scheme(self.storage_root) is not None

    @property
    def retrieval_data_dir(self) -> Path:
        return self.work_dir / "retrieval_data"

    @property
    def models_dir(self) -> Path:
        return self.work_dir / "models"

    @property
    def runs_dir(self) -> Path:
        return self.work_dir / "runs"

    @property
    def index_dir(self) -> Path:
        return self.work_dir / "index"

    def storage_path(self, *parts: str) -> str:
        """A path (or URI) below storage_root, e.g. ``cfg.storage_path('mds', 'composer')``."""
        return "/".join([self.storage_root, *parts])

    @property
    def manifest_path(self) -> Path:
        candidate = Path(self.manifest).expanduser()
        if candidate.is_absolute() or candidate.exists():
            return candidate.resolve()
        return REPO_ROOT / "data_manifests" / self.manifest

    @property
    def generator_is_embedded(self) -> bool:
        return self.generator_model == EMBEDDED_GENERATOR

    def as_table(self) -> list[tuple[str, str, str]]:
        """(setting, value, help) rows for display in a notebook."""
        return [(f.name, str(getattr(self, f.name)), f.metadata.get("help", "")) for f in fields(self)]


def _coerce(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"WORKSHOP_{name.upper()}={raw!r} must be true or false.")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"WORKSHOP_{name.upper()}={raw!r} must be a whole number.") from None
    return raw


def load_config(**overrides: Any) -> WorkshopConfig:
    """The active configuration: defaults, then ``WORKSHOP_*`` environment variables, then ``overrides``.

    Overrides that are ``None`` or ``""`` are ignored, so a notebook can pass its parameters straight through.
    """
    known = {f.name: f for f in fields(WorkshopConfig)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: the settings are {', '.join(known)}.")
    values: dict[str, Any] = {}
    for name, f in known.items():
        raw = os.environ.get(f"WORKSHOP_{name.upper()}")
        if raw not in (None, ""):
            default = f.default if f.default is not dataclasses.MISSING else None
            values[name] = _coerce(name, raw, default)
    values.update({k: v for k, v in overrides.items() if v is not None and v != ""})
    return WorkshopConfig(**values)
