"""Every notebook runs headless under papermill with small parameters, and is committed without outputs."""

from __future__ import annotations

import json

import pytest

from helpers import series
from tests.conftest import SMOKE_PARAMETERS

NOTEBOOKS = series.notebooks()


def test_series_is_numbered_and_complete() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "00_setup.ipynb"
    missing = [n for n in names if n not in SMOKE_PARAMETERS]
    assert not missing, f"add smoke parameters for {missing} in tests/conftest.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path) -> None:
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_has_parameters_cell(path) -> None:
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    assert "work_dir" in "".join(tagged[0]["source"]), f"{path.name}: the parameters cell must define work_dir"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, series_runner) -> None:
    result = series_runner.run(path.name)
    assert result.status == "ok"
    assert result.output.exists()
