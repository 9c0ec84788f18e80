"""The QA panel as a web app: Voilà serves it, and a real Chromium uses it the way a person would."""

from __future__ import annotations

import os
import re
import textwrap

import pytest

from helpers import app, services
from helpers.config import REPO_ROOT, load_config

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = REPO_ROOT / "workdir" / "test-artefacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SOURCE_RE = re.compile(r"\S+\.\w+:\d+")

# A source file whose text is markup: the app must show it as text and never run it.
HOSTILE = '''
    """Banner helpers used by the workshop's hostile-content check."""


    def render_banner(title: str) -> str:
        """Return the banner markup for a title: <script>window.__pwned = 1; alert("pwned")</script>
        followed by <img src="x" onerror="window.__pwned = 2; document.body.append(document.createElement('marquee'))"> as its icon."""
        return "<script>alert(1)</script><img src=x onerror=alert(2)>" + title
'''

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                       reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"),
]


@pytest.fixture(scope="module")
def app_config(tmp_path_factory, generator_dir):
    """A work folder with the smoke corpus plus a hostile local source; the generator is shared with the session."""
    work = tmp_path_factory.mktemp("app")
    (work / "models").mkdir()
    (work / "models" / generator_dir.name).symlink_to(generator_dir, target_is_directory=True)
    hostile = work / "hostile_src"
    hostile.mkdir()
    (hostile / "banner.py").write_text(textwrap.dedent(HOSTILE).lstrip())
    manifest = work / "manifest.yaml"
    smoke = (REPO_ROOT / "data_manifests" / "smoke_streaming.yaml").read_text()
    manifest.write_text(smoke.replace("sources:\n", f"sources:\n  - name: hostile\n    local: {hostile}\n", 1))
    return load_config(work_dir=work, manifest=str(manifest))


@pytest.fixture(scope="module")
def voila(app_config):
    app.prepare(app_config, progress=False)
    service = app.serve(app_config, port=services.free_port())
    yield service
    services.stop(service)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def _open_panel(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, timeout=240_000)
    page.wait_for_selector(".qa-state", timeout=240_000)
    return page, dialogs


def _ask(page, question: str, previous: str = "") -> str:
    """Type a question, press Enter, wait until the answer is complete (and differs from ``previous``)."""
    box = page.locator(".qa-question input, .qa-question textarea").first
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        """previous => {
            const s = document.querySelector('.qa-state');
            const a = document.querySelector('.qa-answer-text');
            return s && s.dataset.state === 'done' && a && a.innerText.trim() && a.innerText !== previous;
        }""", arg=previous, timeout=300_000)
    return page.locator(".qa-answer-text").inner_text()


def test_browser_asks_two_questions_and_sees_sources(voila, browser):
    page, dialogs = _open_panel(browser, voila.url + "/")
    first = _ask(page, "How do I write samples to a dataset in MDS format?")
    sources = page.locator(".qa-source").all_inner_texts()
    assert first.strip(), "no answer text"
    assert sources and all(SOURCE_RE.search(s) for s in sources), f"sources are not path:line: {sources}"

    second = _ask(page, "How are shards downloaded from remote storage?", previous=first)
    assert second.strip() and second != first
    assert page.locator(".qa-answer-text").count() == 1, "the first answer was not replaced"
    assert first not in page.locator("body").inner_text()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "qa_panel.png"), full_page=True)
    assert not dialogs


def test_hostile_markup_is_shown_as_text(voila, browser):
    page, dialogs = _open_panel(browser, voila.url + "/")
    _ask(page, "What markup does render_banner return for a title?")
    citations = page.locator(".qa-source").all_inner_texts()
    assert any("banner.py" in c for c in citations), f"the hostile file was not retrieved: {citations}"
    page.locator("summary", has_text="banner.py").first.click()
    text = page.locator("body").inner_text()
    assert "<script>" in text and "onerror=" in text, "the markup is not shown as text"
    assert page.evaluate("window.__pwned === undefined"), "a script from the document ran"
    assert page.locator("img[src='x'], marquee, .qa-panel script").count() == 0, "document markup became elements"
    assert not dialogs, f"the page opened dialogs: {dialogs}"
    page.screenshot(path=str(ARTEFACTS / "qa_panel_hostile.png"), full_page=True)


def test_port_in_use_is_a_clear_error(app_config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(services.ServiceError, match="already in use"):
            app.serve(app_config, port=s.getsockname()[1])

