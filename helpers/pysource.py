"""Small facts read from Python source text: a file's dotted module name, a docstring's first sentence, and the
names a definition declares (a function's parameters, a class's attributes)."""

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


def node_docstring(node: ast.AST) -> str:
    """The docstring of a parsed module, class or function, else '' (also for any other kind of node)."""
    try:
        return ast.get_docstring(node) or ""  # type: ignore[arg-type]
    except TypeError:
        return ""


def docstring_of(code: str, definition: bool) -> str:
    """The docstring of the first definition in ``code`` (``definition``) or of the code as a module, else ''."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    return node_docstring(tree.body[0] if definition and tree.body else tree)


def _header(lines: list[str]) -> str:
    """A function's header: from its ``def`` line to the ``:`` that closes it (decorators left out)."""
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def "))), None)
    if start is None:
        return ""
    depth = 0
    for end in range(start, len(lines)):
        code = re.sub(r"#.*$", "", lines[end])
        depth += code.count("(") + code.count("[") - code.count(")") - code.count("]")
        if depth <= 0 and code.rstrip().endswith(":"):
            return "\n".join(lines[start:end + 1])
    return ""


def declared_names(code: str, class_window: bool = False) -> list[str]:
    """The names the first definition in ``code`` declares: a function's parameters (not ``self``/``cls``), or the
    attributes a class body assigns (``cache_limit: int = 0``, dataclass fields); [] for anything else. With
    ``class_window``, ``code`` is a later window of a long class body (a config dataclass of 80 fields)."""
    lines = textwrap.dedent(code).splitlines()
    if class_window:
        return _assigned_in_body(lines)
    start = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("@")), 0)
    first = lines[start].lstrip() if lines else ""
    try:
        if first.startswith(("def ", "async def ")):
            node = ast.parse(textwrap.dedent(_header(lines)) + "\n    pass").body[0]
            args = node.args  # type: ignore[attr-defined]
            found = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            return [name for name in found if name not in ("self", "cls")]
        if first.startswith("class "):
            try:
                node = ast.parse("\n".join(lines)).body[0]
            except SyntaxError:  # the first window of a long class (a config dataclass of 80 fields)
                return _assigned_in_body(lines[start + 1:])
            body = node.body  # type: ignore[attr-defined]
            names = [t.id for stmt in body if isinstance(stmt, (ast.Assign, ast.AnnAssign))
                     for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
                     if isinstance(t, ast.Name)]
            return list(dict.fromkeys(names))
    except (SyntaxError, ValueError, RecursionError, MemoryError, IndexError):
        return []
    return []


_ASSIGNED = re.compile(r"([A-Za-z_]\w*)\s*(?::[^=]*)?=|([A-Za-z_]\w*)\s*:\s*\S")


def _assigned_in_body(lines: list[str]) -> list[str]:
    """The names a class body assigns (``x: int = 1``, ``x = 1``, ``x: int``) in lines of it that do not parse as a
    whole: lines at the body's indentation (its first line's), outside strings."""
    body = [line for line in lines if line.strip()]
    if not body:
        return []
    indent = len(body[0]) - len(body[0].lstrip())
    names, quote = [], ""
    for line in body:
        text = line.strip()
        if quote:  # inside a docstring or another triple-quoted string
            quote = "" if text.count(quote) % 2 else quote
            continue
        opened = next((q for q in ('"""', "'''") if text.count(q) % 2), "")
        if opened:
            quote = opened
            continue
        if len(line) - len(line.lstrip()) == indent and not text.startswith(("#", "@", "def ", "class ")):
            match = _ASSIGNED.match(text)
            if match:
                names.append(match.group(1) or match.group(2))
    return list(dict.fromkeys(names))
