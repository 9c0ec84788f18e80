"""The code base keeps its shape: lint-clean, no import cycles, one error family, one map of the series."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import constants, series
from helpers.config import REPO_ROOT
from helpers.errors import WorkshopError

HELPERS = REPO_ROOT / "helpers"
MODULES = sorted("helpers." + ".".join(p.relative_to(HELPERS).with_suffix("").parts)
                 for p in HELPERS.rglob("*.py") if p.name != "__init__.py")
BUILTIN_ERRORS = {"ValueError", "RuntimeError", "LookupError", "KeyError", "FileNotFoundError", "OSError",
                  "TypeError", "AssertionError", "Exception"}


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "helpers", "tests", "benchmarks", "notebooks"],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path: Path) -> set[str]:
    """helpers modules that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("helpers"))
    return {m for m in found if m in MODULES or m in ("helpers.qa",)}


def test_no_import_cycles_among_helpers() -> None:
    graph = {m: _imports(REPO_ROOT / (m.replace(".", "/") + ".py")) for m in MODULES}
    graph["helpers.qa"] = _imports(HELPERS / "qa" / "__init__.py")
    # A package's modules may import their siblings; a cycle is a module reaching itself through others.
    def reach(start: str) -> set[str]:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    cycles = [m for m in graph if m in reach(m)]
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_every_project_error_derives_from_workshop_error() -> None:
    strays = []
    for name in MODULES:
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name and not issubclass(cls, WorkshopError):
                strays.append(f"{name}.{cls_name}")
    assert not strays, f"error classes outside the WorkshopError family: {strays}"


@pytest.mark.parametrize("name", MODULES)
def test_no_bare_builtin_raises(name: str) -> None:
    """User-facing conditions raise a named WorkshopError, never a bare ValueError/FileNotFoundError/…"""
    tree = ast.parse((REPO_ROOT / (name.replace(".", "/") + ".py")).read_text())
    bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
            and isinstance(node.exc.func, ast.Name) and node.exc.func.id in BUILTIN_ERRORS]
    assert not bare, f"{name}: bare built-in raise on line(s) {bare}"


def test_series_map_matches_the_notebooks() -> None:
    assert list(constants.NOTEBOOKS.values()) == [p.name for p in series.notebooks()]
    messages = [constants.run_first(step) for step in constants.NOTEBOOKS]
    assert all((REPO_ROOT / m.split()[1]).is_file() for m in messages)


def test_package_reexports_its_api() -> None:
    from helpers import qa

    missing = [n for n in qa.__all__ if not hasattr(qa, n)]
    assert not missing and {"ask", "build_chain", "CodeIndex", "Generator", "retriever"} <= set(qa.__all__)
