"""The settings a docstring documents, one short passage each, so a question about a setting finds its line.

Users mostly ask about settings in their own words ("keep only the last 3 checkpoints locally"), and the answer
is one entry of a long ``Args:`` list: ``save_num_checkpoints_to_keep (int, optional): The number of checkpoints
to keep locally …``. In a chunk that documents forty parameters those words are a small share of its text, and
the embedder reads only the chunk's first 64 word pieces, so neither search sees the entry. Here each entry of a
Google-style ``Args:`` / ``Attributes:`` section (the style of composer, streaming and llm-foundry) and each
reST ``:param name:`` line becomes a passage of its own, with the line it starts on, and is embedded beside the
chunks (``index.build_index``): a question close in meaning to one entry finds the chunk that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from helpers.qa.chunking import Chunk

SECTIONS = ("Args", "Arguments", "Parameters", "Params", "Keyword Args", "Keyword Arguments", "Kwargs",
            "Attributes", "Other Parameters", "Fields")
_SECTION = re.compile(r"^(\s*)(?:" + "|".join(SECTIONS) + r")\s*:\s*$")
_ENTRY = re.compile(r"^(\s*)\*{0,2}([A-Za-z_]\w*)\s*(?:\(.*?\))?\s*:(?:\s+(.*))?$")  # name (type): text
_REST = re.compile(r"^(\s*):(?:param|ivar|cvar|var)\s+(?:[\w\[\], .]+\s+)?\*{0,2}([A-Za-z_]\w*)\s*:\s*(.*)$")
_QUOTES = ('"""', "'''")


@dataclass(frozen=True)
class Documented:
    """One documented setting: its name, the line its entry starts on, and the entry's text (joined lines)."""

    name: str
    line: int
    text: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _continued(lines: list[tuple[int, str]], i: int, deeper_than: int) -> tuple[list[str], int]:
    """The stripped lines from ``i`` on that are indented more than ``deeper_than`` (blank lines inside an entry
    kept out), and the index after them."""
    out: list[str] = []
    while i < len(lines):
        text = lines[i][1]
        if text.strip() and (_indent(text) <= deeper_than or text.strip().startswith(_QUOTES)):
            break
        if text.strip():
            out.append(text.strip())
        i += 1
    return out, i


def documented_settings(lines: Iterable[tuple[int, str]]) -> list[Documented]:
    """Each documented parameter or attribute in a file's ``(line number, text)`` lines, in file order."""
    rows = list(lines)
    found: list[Documented] = []
    i = 0
    while i < len(rows):
        number, text = rows[i]
        if ":" not in text:  # neither a section heading nor a :param line (most lines: a third of the time)
            i += 1
            continue
        rest = _REST.match(text)
        if rest:
            more, i = _continued(rows, i + 1, len(rest.group(1)))
            found.append(Documented(rest.group(2), number, " ".join([rest.group(3), *more]).strip()))
            continue
        section = _SECTION.match(text)
        i += 1
        if not section:
            continue
        base, entry_indent = len(section.group(1)), -1
        while i < len(rows):
            number, text = rows[i]
            if not text.strip():
                i += 1
                continue
            if _indent(text) <= base or text.strip().startswith(_QUOTES):
                break
            entry = _ENTRY.match(text)
            if (entry_indent < 0 and not entry) or _indent(text) < entry_indent:
                break  # prose under the heading, or text outside the entries
            if entry_indent >= 0 and _indent(text) > entry_indent:
                i += 1  # deeper text no entry owns
                continue
            entry_indent = _indent(text)
            more, i = _continued(rows, i + 1, entry_indent)
            if entry:  # an entry line the pattern does not read is passed over with its text
                found.append(Documented(entry.group(2), number, " ".join([entry.group(3) or "", *more]).strip()))
    return found


def setting_passages(chunks: list[Chunk]) -> list[tuple[int, Documented]]:
    """Each documented setting in the Python files of ``chunks`` (an index's chunks, in any order), with the
    position in ``chunks`` of the chunk holding its first line: the narrowest, when a class head and a method
    both do. A file's lines are read back from its chunks."""
    by_path: dict[tuple[str, str], list[int]] = {}
    for row, c in enumerate(chunks):
        if c.path.endswith(".py"):
            by_path.setdefault((c.source, c.path), []).append(row)
    out: list[tuple[int, Documented]] = []
    for rows in by_path.values():
        lines: dict[int, str] = {}
        for row in sorted(rows, key=lambda r: chunks[r].start_line):
            for n, line in enumerate(chunks[row].text.split("\n"), start=chunks[row].start_line):
                lines.setdefault(n, line)
        for doc in documented_settings(sorted(lines.items())):
            holding = [r for r in rows if chunks[r].start_line <= doc.line <= chunks[r].end_line]
            if holding and doc.text:
                out.append((min(holding, key=lambda r: chunks[r].end_line - chunks[r].start_line), doc))
    return out


def passage_text(owner: Chunk, doc: Documented) -> str:
    """What the embedder reads of a setting: the name of the class or function it belongs to, its own name and its
    entry (``Trainer save_num_checkpoints_to_keep: The number of checkpoints to keep locally …``)."""
    return f"{owner.name.split('.')[0]} {doc.name}: {doc.text}"
