"""Step 8: an ipywidgets panel for asking questions about the code base, usable in Jupyter and in Voilà.

``build_panel(cfg)`` returns one widget that reads like a chat: every question stays on screen with its answer,
newest at the bottom, until *Clear*. An answer is Markdown (the model writes `names` in backticks and code in
fences) and is rendered as it streams in, code blocks coloured by pygments; under it the sources as
``path:line``, each unfolding to its highlighted snippet. A short follow-up ("and what is its default?") is
searched together with the previous turn (``qa.retrieval_query``), while the model reads the question as typed;
when search corrected a typo (``CodeIndex.spelled``), a note under the question shows what it searched for.
Settings: k, max new tokens, retrieval mode, model, follow-ups on or off. Answering runs in a background thread
so the kernel stays responsive; a second question while one is running is refused politely.

Nothing from a file, the model or the user is ever pasted into markup by hand: Markdown goes through
markdown-it-py with raw HTML disabled, code through pygments (which escapes it), and the few bits of page
structure are Jinja2 templates with autoescaping, so ``<script>`` in an answer or a source shows as text.
"""

from __future__ import annotations

import functools
import html
import os
import re
import threading
import time
import warnings
from typing import Any

import ipywidgets as widgets
from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_by_name, get_lexer_for_filename
from pygments.util import ClassNotFound

from helpers import qa
from helpers.config import WorkshopConfig
from helpers.errors import WorkshopError

BUSY_MESSAGE = "Still answering the previous question: please wait for it to finish."
APP_VARIABLE = "WORKSHOP_WEB_APP"  # set by helpers.app in the Voilà kernel's environment


def in_web_app() -> bool:
    """True inside the Voilà web app (``make app``), where only the real panel is shown."""
    return os.environ.get(APP_VARIABLE) == "1"


def escape(text: str) -> str:
    """HTML-escape text for an attribute or a page (the templates below do this themselves)."""
    return html.escape(text, quote=True)


# ---------------------------------------------------------------------------------------------- code and Markdown

_TOKENS = HtmlFormatter(noclasses=True, nowrap=True)  # coloured <span>s with inline styles: no stylesheet needed


@functools.lru_cache(maxsize=256)
def _lexer(language: str = "", filename: str = "") -> Lexer | None:
    """The pygments lexer for a fence's language or a file's name; None when pygments knows neither."""
    try:
        if language:
            return get_lexer_by_name(language, stripnl=False)
        if filename:
            return get_lexer_for_filename(filename, stripnl=False)
    except ClassNotFound:
        pass
    return None


def highlight_code(code: str, language: str) -> str:
    """Coloured, escaped HTML for a Markdown code fence; "" for an unknown language (markdown-it escapes it)."""
    lexer = _lexer(language=language.strip().lower()) if language.strip() else None
    return highlight(code, lexer, _TOKENS) if lexer else ""


def _underscores_stay_text(state: Any) -> None:
    """Only ``*`` makes emphasis: ``__init__.py`` or ``_private`` in a path or a name keep their underscores."""
    for block in state.tokens:
        for token in block.children or []:
            if token.type in ("em_open", "em_close", "strong_open", "strong_close") and token.markup.startswith("_"):
                token.type, token.tag, token.nesting, token.content = "text", "", 0, token.markup


def markdown_renderer() -> MarkdownIt:
    """CommonMark with raw HTML off (``<script>`` stays text), line breaks kept, fences highlighted, no images."""
    md = MarkdownIt("commonmark", {"html": False, "breaks": True,
                                   "highlight": lambda code, lang, _attrs: highlight_code(code, lang)})
    md.disable("image")  # an answer never makes the page load a remote picture
    md.core.ruler.push("underscores_stay_text", _underscores_stay_text)
    return md


MARKDOWN = markdown_renderer()
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def tidy_markdown(text: str) -> str:
    """Small repairs to model Markdown, line by line outside code fences: a ``>`` quote ends before the next
    unquoted line (the symbol-first answer quotes code lines, then goes on in plain text), and a line with an odd
    number of backticks (an answer cut off, or still streaming, inside `code`) gets its code span closed."""
    lines, in_fence = text.split("\n"), False
    out: list[str] = []
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            if line.count("`") % 2:
                line += "`"
            if line.startswith(">") and i + 1 < len(lines) and lines[i + 1].strip() and \
                    not lines[i + 1].startswith(">"):
                line += "\n"
        out.append(line)
    return "\n".join(out)


def render_markdown(text: str) -> Markup:
    """An answer's Markdown (see ``tidy_markdown``) as safe HTML."""
    return Markup(MARKDOWN.render(tidy_markdown(text)))


def highlight_snippet(text: str, path: str, first_line: int = 1) -> Markup:
    """A source snippet coloured by its file type, numbered from its first line in the file; escaped.
    A documentation page (its path is its URL) is kept as Markdown-like text."""
    lexer = _lexer(filename="page.md" if "://" in path else os.path.basename(path)) or TextLexer(stripnl=False)
    formatter = HtmlFormatter(noclasses=True, linenos="inline", linenostart=first_line, cssclass="qa-snippet")
    return Markup(highlight(text, lexer, formatter))


# ---------------------------------------------------------------------------------------------- templates

_TEMPLATES = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

STYLE = """<style>
.qa-panel .qa-turn { border-top: 1px solid #e3e3e3; padding: .4em 0; }
.qa-panel .qa-turn-question { background: #eef3fb; border-radius: 6px; padding: .2em .6em; line-height: 1.5; }
.qa-panel .qa-answer-text, .qa-panel .qa-sources { line-height: 1.5; }
.qa-panel .qa-answer-text p { margin: .3em 0; }
.qa-panel .qa-answer-text code { background: #f2f2f2; border-radius: 3px; padding: 0 .2em; }
.qa-panel .qa-answer-text pre, .qa-panel .qa-snippet pre { background: #f6f8fa; border-radius: 4px; padding: .5em .7em;
  overflow: auto; max-height: 20em; white-space: pre; line-height: 1.3; }
.qa-panel .qa-answer-text pre code { background: none; padding: 0; }
.qa-panel .qa-answer-text blockquote { margin: .3em 0; padding-left: .7em; border-left: 3px solid #ccc; color: #444; }
.qa-panel .qa-note { color: #777; font-size: 85%; }
</style>"""

_STATE = _TEMPLATES.from_string('<span class="qa-state" data-state="{{ state }}">{{ text }}</span>')
_QUESTION = _TEMPLATES.from_string("""\
<div class="qa-turn-question"><b>Q:</b> {{ question }}
{% if query %}
<div class="qa-note qa-followup" title="{{ query }}">follow-up: also searched for “{{ previous }}”</div>
{% endif %}
{% if spelled %}
<div class="qa-note qa-spelled">typos corrected, searched as “{{ spelled }}”</div>
{% endif %}
</div>""")
_ANSWER = _TEMPLATES.from_string("""\
<div class="qa-answer-text">{{ body }}</div>
{% if note %}<div class="qa-note">{{ note }}</div>{% endif %}""")
_SOURCES = _TEMPLATES.from_string("""\
{% if sources %}
<b>Sources</b><ol style="margin-top:0">
{% for c, code in sources %}
<li><details><summary><code class="qa-source">{{ c.citation }}</code> {{ c.symbol }} <small>({{ c.source }})</small></summary>
{{ code }}</details></li>
{% endfor %}
</ol>
{% endif %}""")


def _state(state: str, text: str) -> str:
    """Status line; ``data-state`` (idle, working, done, error) lets a browser test wait for the end."""
    return _STATE.render(state=state, text=text)


def answer_html(text: str, note: str = "") -> str:
    """An answer (Markdown, possibly still streaming) rendered, with an optional note (time, error) under it."""
    return _ANSWER.render(body=render_markdown(text), note=note)


def sources_html(hits: list[qa.Hit]) -> str:
    """Sources as a list of ``path:line`` (symbol), each with its highlighted snippet in a collapsible block."""
    return _SOURCES.render(sources=[(h.chunk, highlight_snippet(h.chunk.text, h.chunk.path, h.chunk.start_line))
                                    for h in hits])


def question_html(question: str, query: str = "", spelled: str = "") -> str:
    """The question of a turn; when retrieval searched a longer text (a follow-up), a note says with what, and
    when it corrected typos (``spelled``: the corrected question), another note shows the question it searched."""
    previous = query.split("\n", 2)[1] if query and "\n" in query else ""
    return _QUESTION.render(question=question, query=query if previous else "", previous=previous,
                            spelled=spelled if spelled != question else "")


# ---------------------------------------------------------------------------------------------- widgets


def _index_stamp(cfg: WorkshopConfig) -> int:
    """When the index on disk was last swapped in (0 when there is none): a newer one replaces a partial one."""
    try:
        return (cfg.index_dir / qa.META_FILE).stat().st_mtime_ns
    except OSError:
        return 0


class Turn(widgets.VBox):
    """One question of the conversation with its (streamed) answer and its sources."""

    def __init__(self, question: str, query: str = ""):
        self.question = question
        self.query = query or question  # what retrieval searches for
        self.text = ""  # the answer's Markdown so far
        self.result: qa.Answer | None = None
        self.asked = widgets.HTML(question_html(question, query if query != question else ""))
        self.asked.add_class("qa-asked")
        self.answer = widgets.HTML(answer_html(""))
        self.answer.add_class("qa-answer")
        self.sources = widgets.HTML("")
        self.sources.add_class("qa-sources")
        super().__init__([self.asked, self.answer, self.sources])
        self.add_class("qa-turn")

    def show(self, text: str) -> None:
        """The answer so far (called for every streamed piece)."""
        self.text = text
        self.answer.value = answer_html(text)

    def finish(self, result: qa.Answer, note: str) -> None:
        self.result = result
        self.text = result.text
        self.answer.value = answer_html(result.text, note)
        self.sources.value = sources_html(result.hits)

    def fail(self, message: str) -> None:
        self.answer.value = answer_html(self.text, f"No answer: {message}")


class QAPanel(widgets.VBox):
    """The question-answering panel; its child widgets are attributes so tests can drive them.

    ``turns`` holds the conversation; ``answer`` and ``sources`` are the newest turn's widgets.
    """

    def __init__(self, cfg: WorkshopConfig, index: qa.CodeIndex | None = None, endpoint_url: str = "",
                 model: str = "base", k: int = qa.DEFAULT_K, max_new_tokens: int = qa.DEFAULT_NEW_TOKENS, mode: str = qa.DEFAULT_MODE,
                 multi_part: bool = False, decline: bool = True):
        self.cfg = cfg
        self._index = index
        self._index_stamp = _index_stamp(cfg)
        self._lock = threading.Lock()
        self.busy = False
        self.done = threading.Event()
        self.last_answer: qa.Answer | None = None
        self.thread: threading.Thread | None = None
        self.turns: list[Turn] = []
        self._no_turn = Turn("")

        self.question = widgets.Text(placeholder="Ask about the code, e.g. How are shard files downloaded?",
                                     layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.question.add_class("qa-question")
        self.ask_button = widgets.Button(description="Ask", button_style="primary", icon="search")
        self.ask_button.add_class("qa-ask")
        self.clear_button = widgets.Button(description="Clear", icon="trash", tooltip="Start a new conversation")
        self.clear_button.add_class("qa-clear")
        choices = list(qa.model_choices(cfg)) + ["endpoint"]
        self.k = widgets.IntSlider(value=k, min=1, max=10, description="k chunks")
        self.max_new_tokens = widgets.IntSlider(value=max_new_tokens, min=16, max=256, step=16, description="new tokens")
        self.mode = widgets.Dropdown(options=list(qa.MODES), value=mode, description="retrieval")
        self.model = widgets.Dropdown(options=choices, value=model if model in choices else "base", description="model")
        self.endpoint = widgets.Text(value=endpoint_url, placeholder="http://127.0.0.1:5001", description="endpoint")
        self.follow_ups = widgets.Checkbox(value=True, indent=False,
                                           description="search follow-ups with the previous question")
        self.multi_part = widgets.Checkbox(value=multi_part, indent=False, description="split multi-part questions")
        self.decline = widgets.Checkbox(value=decline, indent=False, description="decline when unsure")
        # on/off behaviours of the answer, one checkbox each
        self.switches = widgets.HBox([self.follow_ups, self.multi_part, self.decline])
        self.status = widgets.HTML(_state("idle", "Type a question and press Enter."))
        self.status.add_class("qa-status")
        self.conversation = widgets.VBox([])
        self.conversation.add_class("qa-conversation")

        self.ask_button.on_click(lambda _: self.submit())
        self.clear_button.on_click(lambda _: self.clear())
        with warnings.catch_warnings():
            # Text.on_submit fires on Enter only (observing 'value' would also fire when the box loses focus).
            warnings.simplefilter("ignore", DeprecationWarning)
            self.question.on_submit(lambda _: self.submit())

        settings = widgets.Accordion(children=[widgets.VBox([
            widgets.HBox([self.k, self.max_new_tokens]), widgets.HBox([self.mode, self.model]), self.endpoint,
            self.switches])])
        settings.set_title(0, "Settings")
        settings.selected_index = None
        super().__init__([widgets.HTML(STYLE), widgets.HTML("<h3 style='margin:0'>Ask the code base</h3>"),
                          self.conversation, widgets.HBox([self.question, self.ask_button, self.clear_button]),
                          self.status, settings], layout=widgets.Layout(max_width="60em"))
        self.add_class("qa-panel")

    # ------------------------------------------------------------------------------------------ state

    @property
    def answer(self) -> widgets.HTML:
        """The newest turn's answer widget."""
        return (self.turns[-1] if self.turns else self._no_turn).answer

    @property
    def sources(self) -> widgets.HTML:
        """The newest turn's sources widget."""
        return (self.turns[-1] if self.turns else self._no_turn).sources

    @property
    def history(self) -> list[tuple[str, str]]:
        """The answered turns as (question, answer text), oldest first."""
        return [(t.question, t.text) for t in self.turns if t.result is not None]

    # ------------------------------------------------------------------------------------------ actions

    def submit(self) -> bool:
        """Start answering the current question in a thread; False (and a polite message) if one is running."""
        with self._lock:
            if self.busy:
                self.status.value = _state("working", BUSY_MESSAGE)
                return False
            self.busy = True
            self.done.clear()
        question = self.question.value
        turn = None
        if question.strip():
            query = qa.retrieval_query(question, self.history) if self.follow_ups.value else question
            turn = Turn(question, query)
            self.turns.append(turn)
            self.conversation.children = (*self.conversation.children, turn)
            self.question.value = ""
        self.thread = threading.Thread(target=self._work, args=(question, turn), daemon=True)
        self.thread.start()
        return True

    def clear(self) -> bool:
        """Forget the conversation (refused while a question is being answered)."""
        with self._lock:
            if self.busy:
                self.status.value = _state("working", BUSY_MESSAGE)
                return False
            self.turns = []
            self.conversation.children = ()
            self.last_answer = None
            self.status.value = _state("idle", "Conversation cleared. Type a question and press Enter.")
        return True

    def wait(self, timeout: float = 300) -> bool:
        """Block until the running question is answered (for tests and scripts)."""
        return self.done.wait(timeout)

    def _load(self) -> tuple[qa.CodeIndex, Any]:
        stamp = _index_stamp(self.cfg)
        if self._index is None or (self._index.pending and stamp != self._index_stamp):  # the full index landed
            self.status.value = _state("working", "Loading the index…")
            self._index, self._index_stamp = qa.CodeIndex.load(self.cfg), stamp
        if self.model.value != "endpoint":
            self.status.value = _state("working", f"Loading the {self.model.value} model…")
        gen = qa.generator(self.cfg, self.model.value, endpoint_url=self.endpoint.value.strip())
        return self._index, gen

    def _work(self, question: str, turn: Turn | None) -> None:
        start = time.perf_counter()
        pieces: list[str] = []
        self.last_answer = None
        try:
            qa.check_question(question)
            assert turn is not None  # a non-empty question always has its turn
            index, gen = self._load()
            spelled = index.spelled(question)
            if spelled != question:
                turn.asked.value = question_html(question, turn.query if turn.query != question else "", spelled)
            self.status.value = _state("working", "Answering…")

            def on_token(piece: str) -> None:
                pieces.append(piece)
                turn.show("".join(pieces))
                self.status.value = _state("working", f"Answering… {time.perf_counter() - start:.1f} s")

            settings = {"k": self.k.value, "mode": self.mode.value, "max_new_tokens": self.max_new_tokens.value,
                        "on_token": on_token, "decline": self.decline.value}
            if self.multi_part.value and len(qa.split_question(question)) > 1:
                ans = qa.ask_multipart(index, gen, question, **settings)  # each part searched on its own
            else:
                ans = qa.ask(index, gen, question, retrieval_query=turn.query, **settings)
            self.last_answer = ans
            seconds = time.perf_counter() - start
            turn.finish(ans, f"{seconds:.1f} s · {self.model.value} model")
            lexical = (f" Lexical search only: {index.pending:,} chunks are still being embedded for dense search."
                       if index.pending else "")
            self.status.value = _state("done", f"Answered in {seconds:.1f} s "
                                               f"(retrieval {ans.retrieval_s * 1000:.0f} ms).{lexical}")
        except WorkshopError as err:
            self.status.value = _state("error", str(err))
            if turn is not None:
                turn.fail(str(err))
        except Exception as err:  # noqa: BLE001 - shown in the panel instead of dying silently in a thread
            self.status.value = _state("error", f"Something went wrong: {type(err).__name__}: {err}")
            if turn is not None:
                turn.fail(type(err).__name__)
        finally:
            with self._lock:
                self.busy = False
                self.done.set()


def build_panel(cfg: WorkshopConfig, **kwargs: Any) -> QAPanel:
    """The panel as one widget (display it, or let Voilà render it); see QAPanel for the options."""
    return QAPanel(cfg, **kwargs)
