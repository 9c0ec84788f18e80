"""The papermill runner behind `make workshop`: a failing cell is reported with its error, not hidden."""

from __future__ import annotations

import nbformat

from helpers import series


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_run_notebook_passes_parameters_and_reports_failure(tmp_path):
    ok = _notebook(tmp_path / "01_ok.ipynb", "value = 1", "assert value == 2, 'parameter not applied'")
    bad = _notebook(tmp_path / "02_bad.ipynb", "value = 1", "raise ValueError('broken step')")
    good = series.run_notebook(ok, tmp_path / "out", {"value": 2})
    failed = series.run_notebook(bad, tmp_path / "out", {})
    assert good.status == "ok" and good.output.exists()
    assert failed.status == "failed" and "broken step" in failed.error
    table = series.summary([good, failed])
    assert "01_ok.ipynb" in table and "failed" in table and "total" in table


def test_every_notebook_has_a_budget_and_the_summary_marks_overruns(tmp_path):
    assert set(series.BUDGET_S) == {p.name for p in series.notebooks()}
    slow = series.StepResult("03_finetune.ipynb", series.BUDGET_S["03_finetune.ipynb"] + 1, "ok", tmp_path)
    fast = series.StepResult("00_setup.ipynb", 1.0, "ok", tmp_path)
    table = series.summary([slow, fast])
    assert "over budget" in table.splitlines()[2] and "over budget" not in table.splitlines()[3]


def test_time_lines_state_the_measured_seconds_within_2x():
    for path in series.notebooks():
        stated = series.stated_seconds(path)
        assert stated is not None, f"{path.name}: no 'Time on the defaults | about N s/min' line"
        measured = series.MEASURED_S[path.name]
        assert measured / 2 <= stated <= measured * 2, f"{path.name} says {stated:.0f} s, measured {measured} s"

