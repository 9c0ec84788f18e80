"""The workshop configuration: layering of defaults, environment and overrides, and its error messages."""

from __future__ import annotations

import pytest

from helpers.config import REPO_ROOT, ConfigError, load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("WORK_DIR", "BACKEND", "STORAGE_ROOT", "GENERATOR_MODEL", "SEED", "CLUSTER", "MANIFEST"):
        monkeypatch.delenv(f"WORKSHOP_{name}", raising=False)


def test_defaults_are_local_and_embedded():
    cfg = load_config()
    assert cfg.backend == "local"
    assert cfg.work_dir == REPO_ROOT / "workdir"
    assert cfg.storage_root == str(REPO_ROOT / "workdir" / "storage")
    assert cfg.generator_is_embedded and not cfg.is_remote
    assert cfg.manifest_path == REPO_ROOT / "data_manifests" / "offline_sdists.yaml"


def test_environment_then_overrides_win(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSHOP_WORK_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("WORKSHOP_SEED", "5")
    cfg = load_config()
    assert cfg.work_dir == tmp_path / "from-env" and cfg.seed == 5
    cfg = load_config(work_dir=tmp_path / "from-notebook", seed=9)
    assert cfg.work_dir == tmp_path / "from-notebook" and cfg.seed == 9
    # Empty notebook parameters fall through to the environment.
    assert load_config(work_dir="", seed=None).work_dir == tmp_path / "from-env"


def test_object_store_root_and_paths():
    cfg = load_config(storage_root="s3://my-bucket/workshop/")
    assert cfg.is_remote
    assert cfg.storage_path("mds", "codebase", "train") == "s3://my-bucket/workshop/mds/codebase/train"


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"backend": "cloud"}, ["backend", "local", "mcli"]),
        ({"storage_root": "ftp://host/x"}, ["storage_root", "s3://", "gs://", "oci://"]),
        ({"storage_root": "s3://"}, ["storage_root", "bucket"]),
        ({"backend": "mcli"}, ["mcli", "storage_root", "object store"]),
        ({"generator_model": "  "}, ["generator_model"]),
        ({"colour": "blue"}, ["colour", "work_dir", "backend"]),
    ],
)
def test_bad_values_name_the_setting_and_the_choices(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(**overrides)
    for word in words:
        assert word in str(err.value)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("WORKSHOP_SEED", "seventeen")
    with pytest.raises(ConfigError, match="WORKSHOP_SEED"):
        load_config()
