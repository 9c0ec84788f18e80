"""Small facts read from Python source text: a file's dotted module name and a docstring's first sentence."""

from __future__ import annotations

import ast
import re
import textwrap


def module_name(path: str) -> str | None:
    """Dotted module for a source path (``src/`` layouts handled), or None when it is not importable code."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def first_paragraph(docstring: str, limit: int = 600) -> str:
    """The first paragraph of a docstring on one line, cut at ``limit`` characters."""
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    return paragraph if len(paragraph) <= limit else paragraph[: limit - 1].rstrip() + "…"


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, without its final full stop."""
    paragraph = first_paragraph(docstring, limit=10_000)
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).rstrip(".")


def docstring_of(code: str, definition: bool) -> str:
    """The docstring of the first definition in ``code`` (``definition``) or of the code as a module, else ''."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    node = tree.body[0] if definition and tree.body else tree
    try:
        return ast.get_docstring(node) or ""  # type: ignore[arg-type]
    except TypeError:
        return ""
