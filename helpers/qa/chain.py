"""The retrieval QA chain: question -> retrieve -> prompt -> generate -> answer with ``path:line`` sources.

The chain is LangChain runnables around the project's retriever. The model reads two short excerpts, the best
match's and the next hit's with another name: each excerpt's signature, docstring summary and the lines that share
the most rare words with the question (fewer, better tokens: a 135M model reads ~500 tokens in a fraction of a
second), and writes one sentence about each, constrained to open with that excerpt's own name or an identifier of
it that shares a word with the question. The *symbol-first* answer opens with the best match's name, location,
docstring summary and matching lines, taken from the code itself; the model's sentences follow, then the other hits
with their matching lines.
"""

from __future__ import annotations

import keyword
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import regex
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from helpers.errors import QAError
from helpers.qa.chunking import Chunk
from helpers.qa.confidence import DECLINE_THRESHOLD, Relevance, decline_text, is_confident, relevance
from helpers.qa.generation import Generator
from helpers.qa.search import (
    DEFAULT_K,
    DEFAULT_MODE,
    CodeIndex,
    Hit,
    code_tokens,
    named_identifiers,
    retriever,
    unquoted,
    word_runs,
)

ANSWER_FORMATS = ("symbol-first", "plain")
ANSWER_PER_FILE = 2  # chunks of one file an answer reads: the answer keyword rate on the tuning half was 0.79 with 2
QUOTE_LINES = 3  # lines of the best match quoted in the symbol-first answer
SEE_ALSO = 4  # other retrieved symbols listed after a symbol-first answer
SEE_ALSO_LINES = 2  # lines quoted under each of them
EXCERPT_LINES = 4  # question-matching lines the model reads from each excerpt, after its signature and summary
# Excerpts the model reads, best first: the best match, then the next hit with another name (often another part of
# the same file), one sentence about each (``model_hits``). Earlier, on the tuning half, the model reading all five
# excerpts in one sentence did worse than reading only the best (0.07 against 0.14 model-text keyword rate), and two
# excerpts with one sentence naming any of their names 0.32 against 0.46. One sentence per excerpt, each opening with
# a name of its own excerpt, did better (session 12, tuning half, model-text keyword rate, base / finetuned): one
# excerpt 0.464 / 0.464 at 0.53 / 0.49 s p50; two 0.536 / 0.536 at ~0.9 s (the next hit from another file instead:
# 0.446). Held-out, reported: 0.375 / 0.339 -> 0.393 / 0.429 (README). The other hits reach the reader under "See
# also", from the code.
MODEL_READS = 2
# A word the question has only inside pasted text (an error message, a log line) counts this much when lines are
# chosen: the user has that text already; the lines that help hold the words they wrote themselves ("… in a
# requester-pays bucket. What do I need to set?"). The pasted text still decides where nothing else matches.
# Tuning half (9 of 56 questions quote), answer / model-text keyword rate, base: 1.0 0.875 / 0.536; 0.6 the same;
# 0.3 0.893 / 0.554; 0.1 0.911 / 0.571 (finetuned 0.893 / 0.554); 0 the same as 0.1 but no line at all to quote
# for a question that is all quote. Held-out, reported: answer keyword 0.821 -> 0.804, model-text unchanged.
QUOTED_WORD_WEIGHT = 0.1
MAX_QUESTION_CHARS = 4000
MAX_NEW_TOKENS = 1024
CONTEXT_TOKENS = 700
CONTEXT_RANGE = (200, 4000)  # below 200 the second excerpt no longer fits beside the first (its sentence would be blind)
NO_ANSWER = "I could not find this in the indexed code."

# Chosen on the tuning half: asking for the name first made the model name the right symbol more often.
SYSTEM_PROMPT = (
    "You answer questions about a Python code base. Use only the numbered code excerpts. Write one line for each "
    "excerpt, in order. Begin each line with the exact name of the function, class or setting from that excerpt "
    "that answers the question, in backticks, then say in one sentence how it answers it. If the excerpts do not "
    f"contain the answer, say: {NO_ANSWER}"
)
# Room for two sentences; each ends at its first full stop (tuning half: one sentence ending there held a right
# keyword as often as 32 tokens cut anywhere, 0.464, and reads as a whole sentence).
DEFAULT_NEW_TOKENS = 64
# Constrained decoding: each of the model's sentences must open with a name, in backticks, that occurs in the excerpt
# it is about, and may not put anything else in backticks (so it cannot present an invented name as code). The model
# still picks which name. Tuning half (base model): its sentence held a right keyword in 27% of answers, against 13%
# free. A sentence ends at its first full stop that is not inside a word or number (``0.5``, ``config.yaml``).
# Nor may a sentence hold a link or emphasis: ``[`` ``]`` ``*`` or ``://``. Unchecked, the model wrote invented
# sources ("[3](https://github.com/...)") and empty emphasis ("supports **** and ****") where it wanted a name it may
# not put in backticks. Tuning half, model-text keyword rate the same with and without (0.536 base and finetuned).
# Nor a backslash: on user-style questions it wrote escape sequences as text ("https:\#python\ncombinatrix\n…");
# the rates on both tuning halves are the same without it, at the same speed.
SENTENCE = r"(?:[^`\n.:*\[\]\\]|\.[^` \t\r\n.:*\[\]\\]|:[^/`\n.*\[\]\\])*\."
# A docstring line without its quotes (a one-line docstring has them at both ends): compared with the summary shown.
DOCSTRING_QUOTES = re.compile(r"^[rRbBuU]?(\"\"\"|\'\'\')|(\"\"\"|\'\'\')$")
# The first line of a docstring entry: "name (type): text", "**name**: text" (continued on more indented lines).
ENTRY = re.compile(r"^\s*\**[A-Za-z_][\w.]*\**\s*(\([^)]*\))?\s*:\s+\S")
# Without a "(type)", a line ending so is code going on to the next line ("limit: int = min(a,"), not an entry.
ENTRY_NOT_ENDS = ("(", ",", "[", "{", "\\", ":")
# A list item of a docstring or page ("* Set ``use_procs=True`` to …", "- …", "1. …"), continued on more indented lines.
BULLET = re.compile(r"^\s*(?:[*+\-\u2022]|\d{1,2}[.)]|#\.)\s+\S")
# A statement of code continued over open brackets or a trailing ``+``/``\\`` (a raised message built from string
# pieces, a call, a list of choices) is one quoted unit up to this many lines: the fact is often in its last piece
# ("… provide the bucket name to the environment variable `MOSAICML_STREAMING_AWS_REQUESTER_PAYS`."). A longer one,
# and a ``def``/``class`` header (one parameter a line), is quoted line by line.
STATEMENT_LINES = 8
# A sentence of a docstring's prose goes on over lines of the same indent: it is one unit up to this many lines, to
# the line that ends it ("… we construct N distinct inputs per question. In order to ensure" / "… in the same batch.").
PROSE_LINES = 3
_SENTENCE_ENDS = (".", ":", ";", "!", "?")
# A reStructuredText grid table's row ("| `throughput/device/mfu` | … Only logged when …") goes on over several lines
# between its "+---+" rules; its cells are joined column by column into one unit (composer documents what each
# callback logs so).
GRID_RULE = re.compile(r"^\s*\+[-=+]{3,}\+\s*$")
_TRIPLE = re.compile(r"\"\"\"|\'\'\'")
_CONTINUES = ("\\", "+")
_SEAM_END = re.compile(r"""(['"])\s*\+?$""")  # a string piece that the next line goes on with ('… bucket ' +)
_SEAM_START = re.compile(r"""^\+?\s*[rRbBuUfF]{0,2}(['"])""")  # … and the next piece ('permission. …')
# A line that declares a name the question uses (a parameter with its default, "half_life: Optional[str] = '1000ba',";
# its docstring entry, "half_life (str, optional): …"; an assignment) counts the name's words this much more again.
DECLARES = re.compile(r"^\**(?:``)?([A-Za-z_]\w*)(?:``)?\**\s*(?:\([^)]*\)\s*)?(?::(?!:)|=(?!=))")
DECLARED_BONUS = 1.0
# A name spelled in words ("the run name" -> run_name), of up to this many words, counts as named. Session 20,
# tuning halves (answer / model-text keyword rate): user-style 0.719 / 0.115 -> 0.729 / 0.125, hand-written unchanged.
SPOKEN_PARTS = 3
QUOTE_CHARS = 240  # a quoted line (or joined entry) is cut here
DEFAULT_SENTENCE = re.compile(r"(?:Defaults? (?:to|is)|\(default)[^.]*(?:\.[^ .][^.]*)*\.?\)?$", re.I)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# A word of the question links an excerpt identifier to it when its idf is above this (a word in fewer than ~1 chunk
# in 13). Tuning half, model-text keyword: any word 0.43; above 1.5 / 2 / 2.2 / 2.5 / 3 / 4.5: 0.45 / 0.48 / 0.46 /
# 0.48 / 0.46 / 0.45 (2-3 questions whichever threshold). Held-out: 0.375 either way.
NAME_MIN_WEIGHT = 2.5
_NOT_NAMES = frozenset(keyword.kwlist) | {"self", "cls", "str", "int", "float", "bool", "bytes", "list", "dict",
                                          "tuple", "set", "object", "Any", "Optional", "Union", "args", "kwargs"}


def defuse(text: str) -> str:
    """Text from files or users with chat-template markers (``<|im_start|>``…) broken up, so they stay plain text."""
    return text.replace("<|", "<\u200b|").replace("|>", "|\u200b>")


def signature_lines(chunk: Chunk, limit: int = 6) -> list[str]:
    """The chunk's opening lines: a definition up to the ``:`` that ends its header, else the first three lines."""
    lines = chunk.text.splitlines()[:limit]
    if lines and lines[0].lstrip().startswith(("def ", "class ", "async def ", "@")):
        for n, line in enumerate(lines, 1):
            if line.rstrip().endswith(":") and not line.lstrip().startswith("@"):
                return lines[:n]
        return lines
    return [line for line in lines if line.strip()][:3]


def excerpt(chunk: Chunk, question: str, weight: Callable[[str], float] | None = None,
            lines: int = EXCERPT_LINES, found: tuple[int, ...] = ()) -> str:
    """What the model reads of a chunk: its signature, its docstring summary, and the ``lines`` lines that share
    the most rare words with the question (where a parameter, default or error text usually is), and the lines of
    ``found`` (the entry of a documented setting that search matched by meaning, ``Hit.lines``)."""
    head = signature_lines(chunk)
    body = "\n".join(head)
    summary = chunk.docstring_summary()
    if summary:
        body += f'\n    """{summary}"""'
    extra = [text for _, text in key_lines(chunk, question, lines, weight, shown=body, entries=False, found=found)]
    if extra:
        body += "\n    ...\n" + "\n".join("    " + text for text in extra)
    return body


def _looks_like_code(word: str) -> bool:
    """``num_canonical_nodes``, ``StreamingDataset``, ``os.path``: not a plain English word such as ``The``."""
    return "_" in word or "." in word or any(c.isupper() for c in word[1:])


def _check_reads(reads: Any) -> None:
    if not isinstance(reads, int) or isinstance(reads, bool) or reads < 1:
        raise QAError(f"reads={reads!r}: the model must read at least one excerpt (a whole number, 1 to k).")


def model_hits(hits: list[Hit], reads: int = MODEL_READS) -> list[Hit]:
    """The hits the model reads, one sentence each: the best match, then each next hit with another name, up to
    ``reads``."""
    _check_reads(reads)
    chosen: list[Hit] = []
    for hit in hits:
        if len(chosen) < reads and all(hit.chunk.name != c.chunk.name for c in chosen):
            chosen.append(hit)
    return chosen


def matched_settings(hit: Hit) -> list[str]:
    """The names declared on the hit's own lines (``Hit.lines``: the documented settings search matched by
    meaning), e.g. ``num_checkpoints_to_keep`` for its ``Args:`` entry."""
    lines = hit.chunk.text.splitlines()
    offsets = [n - hit.chunk.start_line for n in hit.lines]
    return [m.group(1) for i in offsets if 0 <= i < len(lines) and (m := DECLARES.match(lines[i].strip()))]


def answer_names(hits: list[Hit], question: str, weight: Callable[[str], float] | None = None,
                 reads: int = 1, min_weight: float = NAME_MIN_WEIGHT) -> list[str]:
    """The names the model's sentence may open with, from each excerpt it read: the hit's own name (or, for a
    heading, the excerpt's first identifier), then the code-like identifiers of the excerpt (signature, docstring
    summary, matching lines) that share a rare word with the question, in order: a word whose ``weight`` (BM25's
    idf over the index) is above ``min_weight``, e.g. ``cache_limit`` for "a cached shard" but not ``current_value``
    for "a fixed value". Without ``weight`` every word of the question counts. A documented setting that search
    matched by meaning (``Hit.lines``: "keep only the last 3 checkpoints" -> ``num_checkpoints_to_keep``) is read
    by the model and may open the sentence whatever words it shares (session 19, tuning halves, model-text keyword
    rate: user-style 0.083 -> 0.104, hand-written 0.589 unchanged).

    Chosen on the tuning half (answers whose model text held a right keyword): any shared word 43%, a rare one 48%;
    the held-out half 38% either way (README)."""
    _check_reads(reads)
    if not isinstance(min_weight, (int, float)) or isinstance(min_weight, bool):
        raise QAError(f"min_weight={min_weight!r}: use a number (an idf; {NAME_MIN_WEIGHT} by default).")
    wanted = {t for t in code_tokens(question) if weight is None or weight(t) > min_weight}
    names: list[str] = []
    for hit in hits[:reads]:
        matched = matched_settings(hit)
        found = [hit.chunk.name] + matched + NAME.findall(excerpt(hit.chunk, question, weight, found=hit.lines))
        candidates = [word for i, word in enumerate(found) if NAME.fullmatch(word) and word not in _NOT_NAMES and
                      (i == 0 or (len(word) > 2 and _looks_like_code(word)))]
        names += [word for j, word in enumerate(candidates) if word not in names and word not in candidates[:j] and
                  (j == 0 or word in matched or wanted & set(code_tokens(word)))]
    return names


def sentence_names(hits: list[Hit], question: str, weight: Callable[[str], float] | None = None,
                   reads: int = MODEL_READS) -> list[list[str]]:
    """For each excerpt the model reads (``model_hits``), the names its sentence may open with (``answer_names``)."""
    return [answer_names([hit], question, weight) for hit in model_hits(hits, reads)]


def answer_pattern(names: list[str] | list[list[str]]) -> str:
    """The regular expression the model's answer must match: one of ``names`` in backticks, then one sentence with no
    more backticks, ending at its first full stop. Given a list of name lists, one such sentence per list, each on its
    own line (up to the first list without a usable name). '' when there are no names: the model writes freely."""
    if isinstance(names, str) or not isinstance(names, list):
        raise QAError(f"names={names!r}: give a list of names (qa.answer_names) or one list per sentence "
                      "(qa.sentence_names); one name is ['name'].")
    lists = names if names and all(isinstance(n, list) for n in names) else [names]
    lines = []
    for group in lists:
        usable = [n for n in group if isinstance(n, str) and NAME.fullmatch(n)]
        if not usable:
            break
        lines.append("`(" + "|".join(re.escape(n) for n in usable) + ")`" + SENTENCE)
    return r"\n".join(lines)


def fits_pattern(text: str, pattern: str) -> bool:
    """Whether ``text`` is what ``pattern`` (``answer_pattern``) allows, or the start of it: an answer cut short at
    ``max_new_tokens`` ends inside a sentence, and the engine stops there."""
    return regex.fullmatch(pattern, text, partial=True) is not None


def _fit(text: str, tokenizer: Any, budget: int) -> str:
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
    return text if len(ids) <= budget else tokenizer.decode(ids[:budget]).rstrip() + "\n..."


def build_messages(question: str, hits: list[Hit], tokenizer: Any, context_tokens: int = CONTEXT_TOKENS,
                   weight: Callable[[str], float] | None = None, reads: int = MODEL_READS) -> list[dict[str, str]]:
    """System rules, then one short excerpt for each hit the model reads (``model_hits``: best first, each cut to
    its share of ``context_tokens``), then the question."""
    blocks = []
    remaining = context_tokens
    hits = model_hits(hits, reads)
    for rank, hit in enumerate(hits):
        share = remaining // 2 if rank < len(hits) - 1 else remaining
        if share < 24:
            break
        body = defuse(_fit(excerpt(hit.chunk, question, weight, found=hit.lines), tokenizer, share))
        block = f"[{rank + 1}] {hit.chunk.citation} ({defuse(hit.chunk.symbol)})\n{body}"
        blocks.append(block)
        remaining -= len(tokenizer(block, add_special_tokens=False).input_ids)
    context = "\n\n".join(blocks)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Code excerpts:\n{context}\n\nQuestion: {defuse(question)}"}]


def key_lines(chunk: Chunk, question: str, n: int = QUOTE_LINES,
              weight: Callable[[str], float] | None = None, shown: str = "",
              entries: bool = True, found: tuple[int, ...] = ()) -> list[tuple[int, str]]:
    """The ``n`` lines of a chunk that share the most (rare) words with the question, as (line number, text).

    These are usually the signature or the docstring lines that hold the asked-for fact: a parameter, a default,
    an error message. Words are weighted by ``weight`` (e.g. BM25's idf over the index), so shared rare words
    count more than shared common ones. With ``entries``, what is one fact is one line here (``_units``): a
    docstring entry or list item that goes on over more indented lines ("cache_limit (int, optional): Maximum size
    …", then "… Defaults to ``None``."), so the default comes with the name; a statement continued over open
    brackets, so a raised message comes with its last piece; a grid-table row; a prose sentence. A line that
    declares a name the question uses (``DECLARES``: a parameter with its default, its entry; the name in code or
    spelled in words, "the run name": ``spoken_names``) counts that name again. A line whose text is already in
    ``shown`` (e.g. the docstring summary printed above it) is passed over for the next best. The lines of
    ``found`` (a documented setting that search matched by meaning, ``Hit.lines``) are quoted as well, whatever
    words they share.
    """
    wanted = set(code_tokens(question))
    # Words the user wrote themselves, less the chunk's own name (every line of StreamingDataset is about it).
    own = set(code_tokens(re.sub("|".join(rf"\b{re.escape(part)}\b" for part in chunk.name.split(".")), " ",
                                 unquoted(question), flags=re.I)))
    weight = weight or (lambda token: 1.0)
    named = {name.split(".")[-1] for name in named_identifiers(unquoted(question))[0]} | spoken_names(question)
    scored, extra = [], []
    lines = chunk.text.splitlines()
    for offset, text in _units(lines) if entries else enumerate(line.strip() for line in lines):
        if len(text) < 12 or text.startswith(("#!", "import ", "from ", "```")) or \
                (chunk.path.endswith(".md") and text.startswith("#")):
            continue
        if shown and DOCSTRING_QUOTES.sub("", text).rstrip(".") in shown:
            continue
        score = sum(weight(t) * (1.0 if t in own else QUOTED_WORD_WEIGHT) for t in wanted & set(code_tokens(text)))
        declared = DECLARES.match(text)
        if declared and declared.group(1) in named:
            score += DECLARED_BONUS * sum(weight(t) for t in set(code_tokens(declared.group(1))))
        if chunk.start_line + offset in found:
            extra.append((score, -offset, chunk.start_line + offset, text))
        elif score > 0:
            scored.append((score, -offset, chunk.start_line + offset, text))
    best = sorted(scored, reverse=True)[:n]
    best += extra if n else []
    return [(line_no, _cut(text)) for _, _, line_no, text in sorted(best, key=lambda item: item[2])]


def spoken_names(question: str, longest: int = SPOKEN_PARTS) -> set[str]:
    """The snake_case names a question spells in words of its own: "the run name" -> ``the_run``, ``run_name``,
    ``the_run_name`` (2 to ``longest`` adjacent words; the pasted text is left out)."""
    words = re.findall(r"[a-z][a-z0-9]*", unquoted(question).lower())
    return {"_".join(run) for run in word_runs(words, 2, longest)}


def _cut(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` cut to ``limit`` characters; a long docstring entry keeps its last sentence when that gives its
    default ("… Defaults to ``None``."), the fact most often asked for."""
    if len(text) <= limit:
        return text
    default = DEFAULT_SENTENCE.search(text)
    tail = default.group(0) if default and len(default.group(0)) < limit // 3 else ""
    return text[:limit - len(tail) - (3 if tail else 1)].rstrip() + (" … " + tail if tail else "…")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _open_brackets(line: str) -> int:
    """``(``, ``[`` and ``{`` less ``)``, ``]`` and ``}`` on a line of code, outside its strings and comment."""
    depth, quote, escaped = 0, "", False
    for c in line:
        if quote:
            quote = "" if c == quote and not escaped else quote
            escaped = c == "\\" and not escaped
        elif c in "'\"":
            quote = c
        elif c == "#":
            break
        else:
            depth += (c in "([{") - (c in ")]}")
    return depth


def _statement_end(lines: list[str], offset: int) -> int:
    """Where the statement of code starting at ``offset`` ends (exclusive), if it goes on over open brackets or a
    trailing ``+``/``\\`` and closes within ``STATEMENT_LINES`` lines without entering a triple-quoted string; else
    ``offset + 1``."""
    depth = _open_brackets(lines[offset])
    end = offset + 1
    while depth > 0 or lines[end - 1].rstrip().endswith(_CONTINUES):
        if end >= len(lines) or end - offset >= STATEMENT_LINES or _TRIPLE.search(lines[end]):
            return offset + 1
        depth += _open_brackets(lines[end])
        end += 1
    return end


def _joined(parts: list[str]) -> str:
    """Stripped lines joined with spaces; string pieces split over lines are merged back at their seam
    (``'… the bucket ' +`` / ``'permission …'`` reads ``… the bucket permission …``)."""
    text = parts[0]
    for part in parts[1:]:
        if part == "+" and _SEAM_END.search(text):
            text += " +"
            continue
        end, start = _SEAM_END.search(text), _SEAM_START.match(part)
        if end and start and end.group(1) == start.group(1) and not _TRIPLE.search(text[-3:]):
            text = text[:end.start()] + part[start.end():]
        else:
            text += " " + part
    return text


def _prose(line: str) -> bool:
    """A line of a docstring's running text: not blank, an entry, a list item, a table, a directive or a doctest."""
    text = line.strip()
    return bool(text) and not (ENTRY.match(line) or BULLET.match(line) or GRID_RULE.match(line) or
                               _TRIPLE.search(line) or text.startswith(("..", ">>>", "|", "```")))


def _grid_row(lines: list[str]) -> str:
    """The lines of one grid-table row as one line: each column's pieces joined, "| a | b |"."""
    columns: list[list[str]] = []
    for line in lines:
        for i, cell in enumerate(line.strip().strip("|").split("|")):
            if i == len(columns):
                columns.append([])
            if cell.strip():
                columns[i].append(cell.strip())
    return "| " + " | ".join(" ".join(column) for column in columns) + " |"


def _units(lines: list[str]) -> list[tuple[int, str]]:
    """The lines, stripped, by offset, with what is one fact joined into one unit: a docstring entry or list item
    with the more indented lines that go on with it ("cache_limit (…): Maximum size …", then "… Defaults to
    ``None``."), and a statement of code continued over open brackets (``_statement_end``), its string pieces merged
    (``_joined``), a grid-table row (``_grid_row``), and a sentence of a docstring's prose to the line that ends it
    (``PROSE_LINES`` at most). Docstrings are told from code by their triple quotes, counted from the chunk's first
    line: in a window that starts inside one, code may be taken for text (and left line by line) until they close."""
    units = []
    offset = 0
    in_text = False  # inside a triple-quoted string
    while offset < len(lines):
        line = lines[offset]
        nxt = offset + 1
        entry = ENTRY.match(line)
        opens_text = len(_TRIPLE.findall(line)) % 2 == 1
        if line.lstrip().startswith("|") and offset and GRID_RULE.match(lines[offset - 1]):
            while nxt < len(lines) and lines[nxt].lstrip().startswith("|"):
                nxt += 1
            units.append((offset, _grid_row(lines[offset:nxt])))
            offset = nxt
            continue
        if (entry and (entry.group(1) or not line.rstrip().endswith(ENTRY_NOT_ENDS))) or \
                ((in_text or opens_text) and BULLET.match(line)):
            while nxt < len(lines) and lines[nxt].strip() and _indent(lines[nxt]) > _indent(line):
                nxt += 1
        elif in_text and not opens_text and _prose(line):
            while nxt - offset < PROSE_LINES and not lines[nxt - 1].rstrip().endswith(_SENTENCE_ENDS) and \
                    nxt < len(lines) and _prose(lines[nxt]) and _indent(lines[nxt]) == _indent(line):
                nxt += 1
        elif not (in_text or opens_text or GRID_RULE.match(line) or
                  line.lstrip().startswith(("def ", "class ", "async def ", "@"))):
            nxt = _statement_end(lines, offset)
        for covered in lines[offset:nxt]:
            in_text ^= len(_TRIPLE.findall(covered)) % 2 == 1
        units.append((offset, _joined([covered.strip() for covered in lines[offset:nxt]])))
        offset = nxt
    return units


def _quotes(chunk: Chunk, question: str, n: int, weight: Callable[[str], float] | None, skip: str = "",
            indent: str = "", found: tuple[int, ...] = ()) -> str:
    """The chunk's ``n`` lines that best match the question (``found`` among them), each quoted with its
    ``path:line``."""
    lines = key_lines(chunk, question, n, weight, shown=skip, found=found) if question and n else []
    return "".join(f"{indent}> {chunk.line_citation(line_no)}: {defuse(text)}\n" for line_no, text in lines)


def lead_sentence(hits: list[Hit], question: str = "", weight: Callable[[str], float] | None = None) -> str:
    """The symbol-first opening, taken from the code: the best match's name and location, its docstring summary,
    and the lines of it that share the most words with the question, each with its ``path:line``."""
    if not hits:
        return ""
    c = hits[0].chunk
    summary = defuse(c.docstring_summary())
    lead = f"`{defuse(c.name)}` ({c.citation})" + (f": {summary}." if summary else ".") + "\n"
    return lead + _quotes(c, question, QUOTE_LINES, weight, skip=summary, found=hits[0].lines)


def see_also(hits: list[Hit], question: str = "", weight: Callable[[str], float] | None = None, n: int = SEE_ALSO,
             lines: int = SEE_ALSO_LINES) -> str:
    """The other retrieved symbols, best first, one per symbol: name, ``path:line`` and docstring summary, with
    the ``lines`` lines of each that best match the question."""
    seen = {(hits[0].chunk.path, hits[0].chunk.name)} if hits else set()
    items = []
    for h in hits[1:]:
        c = h.chunk
        if (c.path, c.name) in seen or len(items) >= n:
            continue
        seen.add((c.path, c.name))
        summary = defuse(c.docstring_summary())
        item = f"- `{defuse(c.name)}` ({c.citation})" + (f": {summary}." if summary else "") + "\n"
        items.append(item + _quotes(c, question, lines, weight, skip=summary, indent="  ", found=h.lines))
    return ("See also:\n" + "".join(items)).rstrip() if items else ""


@dataclass
class Answer:
    """An answer with its sources and timings."""

    question: str
    text: str = ""
    model_text: str = ""  # only what the model generated (without the symbol-first lead)
    hits: list[Hit] = field(default_factory=list)
    retrieval_s: float = 0.0
    seconds: float = 0.0
    first_words_s: float = 0.0  # from the hits being known to the first words streamed (the lead, before the model)
    declined: bool = False  # True when nothing indexed came close enough and the model was not asked
    relevance: Relevance | None = None

    @property
    def sources(self) -> list[str]:
        return [h.chunk.citation for h in self.hits]


def check_question(question: Any, tokenizer: Any | None = None, max_tokens: int | None = None) -> str:
    """The cleaned question, or QAError with a message for an empty, non-text or too-long question."""
    if not isinstance(question, str) or not question.strip():
        raise QAError("Please type a question about the code base (the question is empty).")
    # Lone surrogates (pasted binary, broken clipboard text) cannot be encoded: replace them.
    question = question.encode("utf-8", errors="replace").decode("utf-8").strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise QAError(f"The question is {len(question)} characters long; please keep it under {MAX_QUESTION_CHARS}.")
    if tokenizer is not None and max_tokens is not None:
        n = len(tokenizer(question, add_special_tokens=False).input_ids)
        if n > max_tokens:
            raise QAError(f"The question is {n} tokens long but the model's context leaves room for {max_tokens}; "
                          "please shorten it.")
    return question


def _whole_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_settings(max_new_tokens: Any, answer_format: Any, context_tokens: Any = CONTEXT_TOKENS) -> None:
    """QAError naming a bad answer length, format or excerpt budget and what is allowed."""
    if not _whole_in(max_new_tokens, 1, MAX_NEW_TOKENS):
        raise QAError(f"max_new_tokens={max_new_tokens!r}: use a whole number from 1 to {MAX_NEW_TOKENS}.")
    if not _whole_in(context_tokens, *CONTEXT_RANGE):
        raise QAError(f"context_tokens={context_tokens!r}: use a whole number from {CONTEXT_RANGE[0]} to "
                      f"{CONTEXT_RANGE[1]} (the excerpts the model reads; {CONTEXT_TOKENS} by default).")
    if answer_format not in ANSWER_FORMATS:
        raise QAError(f"answer_format {answer_format!r} is unknown: use one of {', '.join(ANSWER_FORMATS)}.")


def build_chain(index: CodeIndex, gen: Generator, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
                max_new_tokens: int = DEFAULT_NEW_TOKENS, answer_format: str = "symbol-first", context_tokens: int = CONTEXT_TOKENS,
                on_token: Callable[[str], None] | None = None, timing: dict[str, float] | None = None) -> Runnable:
    """The LangChain runnable: {question} -> retrieve k -> prompt (and the names the model's sentence may open
    with, where the generator can constrain its output) -> generator -> {answer, model_text, hits, cited}.

    ``hits`` are the chunks found, the windows the model reads; ``cited`` the same hits as whole definitions
    (``CodeIndex.whole``): the answer quotes and cites those, so a later window of a long class is cited at the
    class's first line, with its docstring summary, and its quoted lines come from any of its windows."""
    check_settings(max_new_tokens, answer_format, context_tokens)
    retrieve_docs = retriever(index, k, mode, per_file=ANSWER_PER_FILE)

    def retrieve(inputs: dict) -> list[Hit]:
        t0 = time.perf_counter()
        hits = [doc.metadata["hit"] for doc in retrieve_docs.invoke(inputs.get("retrieval_query") or inputs["question"])]
        if timing is not None:
            timing["retrieved_at"] = time.perf_counter()
            timing["retrieval_s"] = timing["retrieved_at"] - t0
        return hits

    def lead(inputs: dict) -> str:
        if answer_format != "symbol-first":
            return ""
        return lead_sentence(inputs["cited"], inputs["question"], weight=index.token_weight)

    def prompt(inputs: dict) -> str:
        messages = build_messages(inputs["question"], inputs["hits"], gen.tokenizer, context_tokens, index.token_weight)
        return gen.render(messages)

    def pattern(inputs: dict) -> str:
        if not getattr(gen, "constrains", False):
            return ""
        return answer_pattern(sentence_names(inputs["hits"], inputs["question"], index.token_weight))

    def generate(inputs: dict) -> dict:
        if on_token and inputs["lead"]:
            on_token(inputs["lead"])
        pieces = []
        for piece in gen.stream(inputs["prompt"], max_new_tokens, pattern=inputs["pattern"]):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        model_text = "".join(pieces).strip()
        tail = see_also(inputs["cited"], inputs["question"], index.token_weight) if answer_format == "symbol-first" else ""
        if on_token and tail:
            on_token("\n" + tail)
        return {"answer": "\n".join(p for p in (inputs["lead"].strip(), model_text, tail) if p),
                "model_text": model_text}

    def cited(inputs: dict) -> list[Hit]:
        return [Hit(index.whole(h.chunk), h.score, h.lines) for h in inputs["hits"]]

    return (RunnablePassthrough.assign(hits=RunnableLambda(retrieve))
            | RunnablePassthrough.assign(cited=RunnableLambda(cited))
            | RunnablePassthrough.assign(lead=RunnableLambda(lead))
            | RunnablePassthrough.assign(prompt=RunnableLambda(prompt), pattern=RunnableLambda(pattern))
            | RunnablePassthrough.assign(result=RunnableLambda(generate)))


def ask(index: CodeIndex, gen: Generator, question: Any, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
        max_new_tokens: int = DEFAULT_NEW_TOKENS, answer_format: str = "symbol-first", context_tokens: int = CONTEXT_TOKENS,
        on_token: Callable[[str], None] | None = None, retrieval_query: str | None = None,
        decline: bool = True, threshold: float = DECLINE_THRESHOLD) -> Answer:
    """Answer one question; bad input, bad settings or an empty index raise QAError with the fix.

    ``retrieval_query`` (e.g. ``conversation.retrieval_query`` for a follow-up) is searched instead of the
    question; the model still reads ``question``, with typos corrected (``CodeIndex.spelled``: on the tuning half
    asked with two typos a question, the model's sentence held a right keyword in 43% of answers instead of 41%).
    With ``decline``, a question whose relevance to the index is below ``threshold`` gets a plain "not found" with
    the nearest sources instead of a generated answer.
    """
    start = time.perf_counter()
    check_settings(max_new_tokens, answer_format, context_tokens)
    room = gen.max_positions - max_new_tokens - context_tokens - 200
    question = check_question(question, gen.tokenizer, room)
    if len(index) == 0:
        raise QAError("The index is empty: run step 1 and then qa.build_index(cfg).")
    query = (retrieval_query or "").strip() or question
    rel = relevance(index, query)
    if decline and not index.pending and not is_confident(rel, threshold):  # no verdict on a half-built index
        hits = index.search(query, k, mode, ANSWER_PER_FILE)
        searched = time.perf_counter()
        text = decline_text(hits, rel, NO_ANSWER)
        first_words_s = time.perf_counter() - searched  # as for an answer: until the text is handed to on_token
        if on_token:
            on_token(text)
        return Answer(question, text, "", hits, 0.0, time.perf_counter() - start, first_words_s=first_words_s,
                      declined=True, relevance=rel)
    timing: dict[str, float] = {}
    first: list[float] = []

    def streamed(piece: str) -> None:
        if not first:
            first.append(time.perf_counter())
        if on_token:
            on_token(piece)

    chain = build_chain(index, gen, k, mode, max_new_tokens, answer_format, context_tokens, streamed, timing)
    out = chain.invoke({"question": index.spelled(question), "retrieval_query": query})
    done = time.perf_counter()
    return Answer(question, out["result"]["answer"], out["result"]["model_text"], out["cited"],
                  timing.get("retrieval_s", 0.0), done - start,
                  first_words_s=(first[0] if first else done) - timing.get("retrieved_at", start), relevance=rel)
