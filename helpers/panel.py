"""Step 8: an ipywidgets panel for asking questions about the code base, usable in Jupyter and in Voilà.

``build_panel(cfg)`` returns one widget: a question box (Enter or the Ask button submits), the answer streamed
token by token, the sources as ``path:line`` with their snippets folded under each, the elapsed seconds, and the
settings (k, max new tokens, retrieval mode, model). Answering runs in a background thread so the kernel stays
responsive; a second question while one is running is refused politely. Every piece of document or model text is
HTML-escaped before it is shown.
"""

from __future__ import annotations

import html
import os
import threading
import time
import warnings
from typing import Any

import ipywidgets as widgets

from helpers import qa
from helpers.config import WorkshopConfig
from helpers.errors import WorkshopError

BUSY_MESSAGE = "Still answering the previous question: please wait for it to finish."


APP_VARIABLE = "WORKSHOP_WEB_APP"  # set by helpers.app in the Voilà kernel's environment


def in_web_app() -> bool:
    """True inside the Voilà web app (``make app``), where only the real panel is shown."""
    return os.environ.get(APP_VARIABLE) == "1"


def escape(text: str) -> str:
    """HTML-escape document or model text before it is shown in a page."""
    return html.escape(text, quote=True)


def _state(state: str, text: str) -> str:
    """Status line; ``data-state`` (idle, working, done, error) lets a browser test wait for the end."""
    return f'<span class="qa-state" data-state="{state}">{escape(text)}</span>'


def sources_html(hits: list[qa.Hit]) -> str:
    """Sources as a list of ``path:line`` (symbol), each with its snippet in a collapsible block; all escaped."""
    if not hits:
        return ""
    items = []
    for h in hits:
        c = h.chunk
        items.append(
            "<li><details><summary><code class='qa-source'>"
            f"{escape(c.citation)}</code> {escape(c.symbol)} <small>({escape(c.source)})</small></summary>"
            f"<pre style='white-space:pre-wrap;max-height:20em;overflow:auto'>{escape(c.text)}</pre></details></li>")
    return "<b>Sources</b><ol style='margin-top:0'>" + "".join(items) + "</ol>"


def answer_html(text: str) -> str:
    return f"<div class='qa-answer-text' style='white-space:pre-wrap'>{escape(text)}</div>"


class QAPanel(widgets.VBox):
    """The question-answering panel; its child widgets are attributes so tests can drive them."""

    def __init__(self, cfg: WorkshopConfig, index: qa.CodeIndex | None = None, endpoint_url: str = "",
                 model: str = "base", k: int = qa.DEFAULT_K, max_new_tokens: int = qa.DEFAULT_NEW_TOKENS, mode: str = qa.DEFAULT_MODE):
        self.cfg = cfg
        self._index = index
        self._lock = threading.Lock()
        self.busy = False
        self.done = threading.Event()
        self.last_answer: qa.Answer | None = None
        self.thread: threading.Thread | None = None

        self.question = widgets.Text(placeholder="Ask about the code, e.g. How are shard files downloaded?",
                                     layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.question.add_class("qa-question")
        self.ask_button = widgets.Button(description="Ask", button_style="primary", icon="search")
        self.ask_button.add_class("qa-ask")
        choices = list(qa.model_choices(cfg)) + ["endpoint"]
        self.k = widgets.IntSlider(value=k, min=1, max=10, description="k chunks")
        self.max_new_tokens = widgets.IntSlider(value=max_new_tokens, min=16, max=256, step=16, description="new tokens")
        self.mode = widgets.Dropdown(options=list(qa.MODES), value=mode, description="retrieval")
        self.model = widgets.Dropdown(options=choices, value=model if model in choices else "base", description="model")
        self.endpoint = widgets.Text(value=endpoint_url, placeholder="http://127.0.0.1:5001", description="endpoint")
        self.status = widgets.HTML(_state("idle", "Type a question and press Enter."))
        self.status.add_class("qa-status")
        self.answer = widgets.HTML(answer_html(""))
        self.answer.add_class("qa-answer")
        self.sources = widgets.HTML("")
        self.sources.add_class("qa-sources")

        self.ask_button.on_click(lambda _: self.submit())
        with warnings.catch_warnings():
            # Text.on_submit fires on Enter only (observing 'value' would also fire when the box loses focus).
            warnings.simplefilter("ignore", DeprecationWarning)
            self.question.on_submit(lambda _: self.submit())

        settings = widgets.Accordion(children=[widgets.VBox([
            widgets.HBox([self.k, self.max_new_tokens]), widgets.HBox([self.mode, self.model]), self.endpoint])])
        settings.set_title(0, "Settings")
        settings.selected_index = None
        super().__init__([widgets.HTML("<h3 style='margin:0'>Ask the code base</h3>"),
                          widgets.HBox([self.question, self.ask_button]), self.status, self.answer, self.sources,
                          settings], layout=widgets.Layout(max_width="60em"))
        self.add_class("qa-panel")

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
        self.answer.value = answer_html("")
        self.sources.value = ""
        self.thread = threading.Thread(target=self._work, args=(question,), daemon=True)
        self.thread.start()
        return True

    def wait(self, timeout: float = 300) -> bool:
        """Block until the running question is answered (for tests and scripts)."""
        return self.done.wait(timeout)

    def _load(self) -> tuple[qa.CodeIndex, Any]:
        if self._index is None:
            self.status.value = _state("working", "Loading the index…")
            self._index = qa.CodeIndex.load(self.cfg)
        if self.model.value != "endpoint":
            self.status.value = _state("working", f"Loading the {self.model.value} model…")
        gen = qa.generator(self.cfg, self.model.value, endpoint_url=self.endpoint.value.strip())
        return self._index, gen

    def _work(self, question: str) -> None:
        start = time.perf_counter()
        pieces: list[str] = []
        self.last_answer = None
        try:
            qa.check_question(question)
            index, gen = self._load()
            self.status.value = _state("working", "Answering…")

            def on_token(piece: str) -> None:
                pieces.append(piece)
                self.answer.value = answer_html("".join(pieces))
                self.status.value = _state("working", f"Answering… {time.perf_counter() - start:.1f} s")

            ans = qa.ask(index, gen, question, k=self.k.value, mode=self.mode.value,
                         max_new_tokens=self.max_new_tokens.value, on_token=on_token)
            self.last_answer = ans
            self.answer.value = answer_html(ans.text)
            self.sources.value = sources_html(ans.hits)
            self.status.value = _state("done", f"Answered in {time.perf_counter() - start:.1f} s "
                                               f"(retrieval {ans.retrieval_s * 1000:.0f} ms).")
        except WorkshopError as err:
            self.status.value = _state("error", str(err))
        except Exception as err:  # noqa: BLE001 - shown in the panel instead of dying silently in a thread
            self.status.value = _state("error", f"Something went wrong: {type(err).__name__}: {err}")
        finally:
            with self._lock:
                self.busy = False
                self.done.set()


def build_panel(cfg: WorkshopConfig, **kwargs: Any) -> QAPanel:
    """The panel as one widget (display it, or let Voilà render it); see QAPanel for the options."""
    return QAPanel(cfg, **kwargs)
