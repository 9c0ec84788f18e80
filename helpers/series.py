"""Run the numbered notebooks headless with papermill, as `make workshop` and the tests do.

Executed copies land in an output folder (outputs kept there, never in notebooks/), and a short summary says
how long each step took and whether it passed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.config import REPO_ROOT
from helpers.files import write_json

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# Seconds each step may take on the embedded defaults, on 2 cores, the first time: ten minutes for the series.
BUDGET_S = {"00_setup.ipynb": 90, "01_download_repos.ipynb": 25, "02_convert_to_mds.ipynb": 25,
            "03_finetune.ipynb": 150, "04_convert_to_hf.ipynb": 70, "05_deploy.ipynb": 35,
            "06_retrieval_qa.ipynb": 105, "07_evaluate.ipynb": 100, "08_qa_panel.ipynb": 25}
# Seconds each step took in the last whole `make workshop` from an empty work folder and an empty bytecode cache
# (2-core AMD EPYC Zen 4 with AVX-512, 24 GB, 2026-12-07; 380 s in all). On 2026-12-06 the same steps took 412 s
# (07 71 s, and 54 s in another run of the same code), on 2026-11-29 327 s (07 36 s, before typo and generated
# questions); since 2026-12-07 the model writes two sentences an answer, so 07's 24 answers take about twice as long
# (07's budget 75 -> 100 s). On a Zen 3 (AVX2 only), 06's embedding took ~2.5x as long. Each notebook's "Time on the
# defaults" line states its figure; a test keeps them within 2x.
MEASURED_S = {"00_setup.ipynb": 61, "01_download_repos.ipynb": 17, "02_convert_to_mds.ipynb": 18,
              "03_finetune.ipynb": 101, "04_convert_to_hf.ipynb": 46, "05_deploy.ipynb": 20,
              "06_retrieval_qa.ipynb": 30, "07_evaluate.ipynb": 77, "08_qa_panel.ipynb": 9}
SUMMARY_FILE = "summary.json"
_TIME_LINE = re.compile(r"\*\*Time on the defaults\*\* \| about (\d+(?:\.\d+)?) (s|min)\b")


def stated_seconds(path: Path) -> float | None:
    """The seconds a notebook's "Time on the defaults" line states ("about 40 s", "about 2.5 min"), if any."""
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                   if c["cell_type"] == "markdown")
    match = _TIME_LINE.search(text)
    if not match:
        return None
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


@dataclass
class StepResult:
    notebook: str
    seconds: float
    status: str  # "ok" or "failed"
    output: Path
    error: str = ""


def notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The series in order: every ``NN_name.ipynb`` in ``folder``."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, output_dir: Path, parameters: dict[str, Any] | None = None,
                 progress: bool = False, timeout_s: int | None = None) -> StepResult:
    """Execute one notebook with papermill; a failing cell is reported, not raised."""
    import papermill as pm

    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / path.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(output), parameters=parameters or {}, cwd=str(path.parent),
                            progress_bar=progress, kernel_name="python3", execution_timeout=timeout_s)
    except pm.PapermillExecutionError as err:
        return StepResult(path.name, time.perf_counter() - start, "failed", output,
                          f"{err.ename}: {err.evalue} (cell {err.exec_count})")
    return StepResult(path.name, time.perf_counter() - start, "ok", output)


def run_series(output_dir: Path, parameters: dict[str, dict[str, Any]] | None = None,
               stop_on_failure: bool = True, only: list[str] | None = None) -> list[StepResult]:
    """Run every notebook in order; ``parameters`` maps a notebook's file name to its overrides."""
    results: list[StepResult] = []
    for path in notebooks():
        if only and not any(path.name.startswith(prefix) for prefix in only):
            continue
        print(f"▶ {path.name} …", flush=True)
        result = run_notebook(path, output_dir, (parameters or {}).get(path.name), progress=True)
        results.append(result)
        print(f"  {result.status} in {result.seconds:.0f} s" + (f" — {result.error}" if result.error else ""), flush=True)
        if result.status != "ok" and stop_on_failure:
            break
    return results


def summary(results: list[StepResult]) -> str:
    """A plain-text table: notebook, seconds, the step's budget, status (over budget is marked)."""
    width = max([len(r.notebook) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  {'seconds':>8}  {'budget':>6}  status", "-" * (width + 26)]
    for r in results:
        budget = BUDGET_S.get(r.notebook)
        over = " (over budget)" if budget and r.seconds > budget else ""
        lines.append(f"{r.notebook:<{width}}  {r.seconds:>8.1f}  {budget or '':>6}  {r.status}{over}")
    lines.append(f"{'total':<{width}}  {sum(r.seconds for r in results):>8.1f}  {sum(BUDGET_S.values()):>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the workshop notebooks headless with papermill.")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "workdir" / "executed",
                        help="where executed copies are written (default: workdir/executed)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 00 01")
    args = parser.parse_args(argv)
    results = run_series(args.output_dir, only=args.only)
    print()
    print(summary(results))
    write_json(args.output_dir / SUMMARY_FILE, {r.notebook: {"seconds": round(r.seconds, 1), "status": r.status}
                                                for r in results})
    print(f"\nExecuted notebooks: {args.output_dir}")
    print("To step through the series yourself: .venv/bin/jupyter lab notebooks/")
    return 0 if results and all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
