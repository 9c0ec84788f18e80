"""Step 8: drive the ipywidgets panel from Python — type, click, wait — on a small real index and the base model."""

from __future__ import annotations

import pytest

from helpers import panel


@pytest.fixture(scope="module")
def app(tiny_index):
    cfg, _, _ = tiny_index
    return panel.build_panel(cfg, max_new_tokens=24)


def test_panel_answers_with_sources(app) -> None:
    app.question.value = "How is a shard file copied from the bucket into the local cache?"
    app.ask_button.click()
    assert app.wait(300), "no answer within 5 minutes"
    assert 'data-state="done"' in app.status.value, app.status.value
    result = app.last_answer
    assert result is not None and result.text.strip() and result.model_text.strip()
    assert "tiny/download.py:" in app.sources.value and "<details>" in app.sources.value
    assert panel.escape(result.text) in app.answer.value
    assert "Answered in" in app.status.value


def test_second_question_while_busy_is_refused(app) -> None:
    app.question.value = "What combines index files of several folders?"
    assert app.submit()
    assert not app.submit(), "a second question was accepted while the first was running"
    assert panel.BUSY_MESSAGE in app.status.value
    assert app.wait(300)
    assert 'data-state="done"' in app.status.value
    assert "merge_index_files" in app.sources.value


def test_empty_question_gets_a_message(app) -> None:
    app.question.value = "   "
    app.ask_button.click()
    assert app.wait(60)
    assert 'data-state="error"' in app.status.value and "empty" in app.status.value


def test_bad_settings_show_a_message_not_a_traceback(app) -> None:
    app.question.value = "How is a shard downloaded?"
    app.model.options = [*app.model.options, "missing-model"]
    app.model.value = "missing-model"
    try:
        app.ask_button.click()
        assert app.wait(60)
        assert 'data-state="error"' in app.status.value and "unknown" in app.status.value, app.status.value
        assert "Traceback" not in app.status.value
    finally:
        app.model.value = "base"


def test_document_text_is_escaped(app) -> None:
    app.question.value = "Which function returns the banner with a script?"
    app.ask_button.click()
    assert app.wait(300)
    assert "tiny/banner.py" in app.sources.value, app.sources.value
    assert "<script>" not in app.sources.value and "&lt;script&gt;" in app.sources.value
    assert "<img" not in app.sources.value and "<script>" not in app.answer.value and "<img" not in app.answer.value
