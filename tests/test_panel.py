"""Step 8: the panel renders answers as Markdown and every piece of text escaped; driven from Python — type,
click, wait — on a small real index and the base model, it keeps the conversation and answers follow-ups."""

from __future__ import annotations

import pytest

from helpers import panel, qa

HOSTILE_ANSWER = ('`render_banner` (tiny/banner.py:1) returns <script>window.x = 1</script> and '
                  '<img src=x onerror="alert(1)">; see [this](javascript:alert(2)) ![pic](http://example.com/p.png)\n'
                  '```python\nreturn "<script>alert(3)</script>"\n```')


def _hit(text: str, path: str = "tiny/banner.py", symbol: str = "render_banner") -> qa.Hit:
    return qa.Hit(qa.Chunk("tiny", path, 3, 3 + text.count("\n"), symbol, "function", text), 1.0)


# ---------------------------------------------------------------------------------------------- rendering (no model)

def test_markdown_becomes_code_blocks_and_inline_code() -> None:
    html = panel.answer_html("Use `MDSWriter`:\n\n```python\nwith MDSWriter(out='x', columns={'a': 'int'}) as w:\n"
                             "    w.write({'a': 1})\n```\nThen **read** it.")
    assert "<code>MDSWriter</code>" in html
    assert '<pre><code class="language-python">' in html and "```" not in html
    assert '<span style="color' in html, "the fenced code is not highlighted"
    assert "<strong>read</strong>" in html and 'class="qa-answer-text"' in html


def test_markup_in_an_answer_stays_text() -> None:
    html = panel.answer_html(HOSTILE_ANSWER, note="<b>1.0 s</b>")
    assert "<script" not in html and "<img" not in html and "<b>1.0 s" not in html
    assert "&lt;script&gt;window.x = 1&lt;/script&gt;" in html and "onerror=" in html  # shown, as text
    assert 'href="javascript' not in html  # markdown-it refuses the link; images are not rendered at all
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # inside the highlighted fence too


def test_a_streamed_half_answer_renders() -> None:
    html = panel.answer_html("`ShardDownloader` (tiny/download.py:8): Downloads.\n> tiny/download.py:9: x\nIt ```py")
    assert "<code>ShardDownloader</code>" in html and "<blockquote>" in html
    assert html.index("</blockquote>") < html.index("It "), "the model's text was pulled into the quote"


def test_paths_keep_underscores_and_a_cut_code_span_is_closed() -> None:
    html = panel.answer_html("`mds` (streaming/base/format/mds/__init__.py:4): see __all__ and **this**.\n"
                             "The helper `get_line_\nSee also: `banner` (tiny/banner.py:1).")
    assert "mds/__init__.py:4" in html and "__all__" in html and "<strong>this</strong>" in html
    assert "<code>get_line_</code>" in html and "<code>banner</code>" in html


def test_sources_are_highlighted_and_escaped() -> None:
    code = 'def render_banner():\n    """<script>alert(1)</script> <img src=x onerror=alert(2)>"""\n    return 1\n'
    html = panel.sources_html([_hit(code), _hit("max_duration: 10ep\n", "conf/<b>.yaml", "<i>max</i>")])
    assert "<details>" in html and '<code class="qa-source">tiny/banner.py:3</code>' in html
    assert "<script" not in html and "<img" not in html and "<b>.yaml" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;max&lt;/i&gt;" in html
    assert '<span style="color' in html and ">def</span>" in html, "the snippet is not highlighted"
    assert panel.sources_html([]).strip() == ""


def test_follow_up_note_is_escaped() -> None:
    html = panel.question_html("and <b>its</b> default?", "and <b>its</b> default?\nWhat is \"<i>\"?\nx")
    assert "<b>its" not in html and "<i>" not in html and "qa-followup" in html and "&lt;i&gt;" in html
    html = panel.question_html("What does <b>Shrd</b> do?", spelled="What does <b>Shard</b> do?")
    assert "qa-spelled" in html and "<b>Shard" not in html and "&lt;b&gt;Shard&lt;/b&gt;" in html
    assert "qa-spelled" not in panel.question_html("as typed", spelled="as typed"), "nothing corrected, no note"


# ---------------------------------------------------------------------------------------------- the panel

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
    assert result is not None and result.text.strip()
    assert "tiny/download.py:" in app.sources.value and "<details>" in app.sources.value
    assert str(panel.render_markdown(result.text)) in app.answer.value
    assert "<code>" in app.answer.value  # the symbol-first answer names the match in backticks
    assert "Answered in" in app.status.value
    assert app.question.value == "", "the box is not emptied for the next question"


def test_panel_answers_from_a_lexical_first_index_and_picks_up_the_vectors(tiny_index, tmp_path) -> None:
    from helpers.config import load_config
    from tests.corpus import write_corpus

    cfg, _, _ = tiny_index
    cfg2 = load_config(work_dir=str(tmp_path))
    (tmp_path / "models").symlink_to(cfg.models_dir, target_is_directory=True)
    records = write_corpus(tmp_path)
    qa.build_index(cfg2, records, progress=False, embed=False)
    quick = panel.build_panel(cfg2, max_new_tokens=16)
    quick.question.value = "Which method deletes a cached shard to stay under the cache limit?"
    quick.ask_button.click()
    assert quick.wait(300) and 'data-state="done"' in quick.status.value, quick.status.value
    assert "Lexical search only" in quick.status.value and "ShardDownloader.evict" in quick.last_answer.text
    qa.build_index(cfg2, records, progress=False)  # what `make app` does while the panel is up
    quick.question.value = "How is a shard file copied from the bucket into the local cache?"
    quick.ask_button.click()
    assert quick.wait(300) and 'data-state="done"' in quick.status.value, quick.status.value
    assert "Lexical search only" not in quick.status.value and quick._index.pending == 0


def test_conversation_keeps_turns_and_answers_a_follow_up(app) -> None:
    app.clear()
    app.question.value = "Which method deletes a cached shard to stay under the cache limit?"
    assert app.submit() and app.wait(300)
    first = app.turns[0]
    app.question.value = "and what does it return?"
    assert app.submit() and app.wait(300)
    assert 'data-state="done"' in app.status.value, app.status.value
    assert len(app.turns) == 2 and list(app.conversation.children) == app.turns
    follow_up = app.turns[1]
    assert first.result is not None and first.answer.value.strip() and follow_up.result is not None
    assert follow_up.query.startswith("and what does it return?\nWhich method deletes")
    assert "qa-followup" in follow_up.asked.value and follow_up.result.question == "and what does it return?"
    assert "evict" in follow_up.sources.value
    assert app.history == [(t.question, t.text) for t in app.turns]
    app.question.value = "What does ShardDownlaoder.evict do?"
    assert app.submit() and app.wait(300)
    typed = app.turns[-1]
    assert "qa-spelled" in typed.asked.value and "ShardDownloader.evict" in typed.asked.value, typed.asked.value
    assert "evict" in typed.sources.value

    assert app.clear()
    assert app.turns == [] and app.conversation.children == () and app.history == []
    assert 'data-state="idle"' in app.status.value


def test_switches_split_multi_part_questions_and_decline_off_topic_ones(app) -> None:
    app.clear()
    app.multi_part.value = True
    try:
        app.question.value = "Which method deletes a cached shard, and how are index files of shard folders combined?"
        assert app.submit() and app.wait(300)
        text = app.last_answer.text
        assert text.startswith("**1. Which method deletes a cached shard?**") and "**2. How are index files" in text
        assert "evict" in app.sources.value and "merge_index_files" in app.sources.value  # each part's sources
    finally:
        app.multi_part.value = False
    app.question.value = "Can you recommend a good recipe for banana bread?"
    assert app.submit() and app.wait(300)
    assert app.last_answer.declined and qa.NO_ANSWER in app.answer.value
    app.decline.value = False
    try:
        app.question.value = "Can you recommend a good recipe for banana bread?"
        assert app.submit() and app.wait(300)
        assert not app.last_answer.declined and app.last_answer.model_text
    finally:
        app.decline.value = True
    app.clear()


def test_second_question_while_busy_is_refused(app) -> None:
    app.question.value = "What combines index files of several folders?"
    assert app.submit()
    assert not app.submit(), "a second question was accepted while the first was running"
    assert panel.BUSY_MESSAGE in app.status.value
    assert not app.clear(), "the conversation was cleared while a question was being answered"
    assert app.wait(300)
    assert 'data-state="done"' in app.status.value
    assert "merge_index_files" in app.sources.value


def test_empty_question_gets_a_message(app) -> None:
    turns = len(app.turns)
    app.question.value = "   "
    app.ask_button.click()
    assert app.wait(60)
    assert 'data-state="error"' in app.status.value and "empty" in app.status.value
    assert len(app.turns) == turns, "an empty question became a turn"


def test_bad_settings_show_a_message_not_a_traceback(app) -> None:
    app.question.value = "How is a shard downloaded?"
    app.model.options = [*app.model.options, "missing-model"]
    app.model.value = "missing-model"
    try:
        app.ask_button.click()
        assert app.wait(60)
        assert 'data-state="error"' in app.status.value and "unknown" in app.status.value, app.status.value
        assert "Traceback" not in app.status.value and "No answer" in app.answer.value
        assert all(q != "How is a shard downloaded?" for q, _ in app.history), "a failed turn is used for follow-ups"
    finally:
        app.model.value = "base"


def test_document_text_is_escaped(app) -> None:
    app.question.value = "Which function returns the banner with a script?"
    app.ask_button.click()
    assert app.wait(300)
    assert "tiny/banner.py" in app.sources.value, app.sources.value
    assert "<script>" not in app.sources.value and "&lt;script&gt;" in app.sources.value
    assert "<img" not in app.sources.value and "<script>" not in app.answer.value and "<img" not in app.answer.value
