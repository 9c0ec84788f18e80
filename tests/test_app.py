"""The QA panel as a web app: Voilà serves it, and a real Chromium uses it the way a person would."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from helpers import app, qa, services
from helpers.browser import CHROMIUM, ask, launch, open_panel, sources
from helpers.config import REPO_ROOT, load_config

ARTEFACTS = REPO_ROOT / "workdir" / "test-artefacts"
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
        chromium = launch(p)
        yield chromium
        chromium.close()


def test_browser_asks_a_question_and_a_follow_up(voila, browser):
    page, dialogs = open_panel(browser, voila.url + "/")
    first = ask(page, "How do I write samples to a dataset in MDS format?")
    listed = sources(page)
    assert first.strip(), "no answer text"
    assert listed and all(SOURCE_RE.search(s) for s in listed), f"sources are not path:line: {listed}"
    answer = page.locator(".qa-turn .qa-answer-text").first
    assert answer.locator("code, pre").count() > 0, "the answer's Markdown was not rendered"

    second = ask(page, "and which compression does it support?")
    turns = page.locator(".qa-turn")
    assert second.strip() and turns.count() == 2, "the follow-up did not become a second turn"
    assert turns.nth(0).is_visible() and turns.nth(1).is_visible(), "an earlier turn disappeared"
    assert turns.nth(0).bounding_box()["y"] < turns.nth(1).bounding_box()["y"], "the newest turn is not at the bottom"
    assert turns.nth(1).locator(".qa-followup").count() == 1, "the follow-up was not searched with the first question"
    text = page.locator("body").inner_text()
    assert first.strip().splitlines()[0] in text and "```" not in text, "raw Markdown on screen"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "qa_panel.png"), full_page=True)

    page.locator(".qa-clear").first.click()
    page.wait_for_function("() => document.querySelectorAll('.qa-turn').length === 0", timeout=30_000)
    assert not dialogs


def test_hostile_markup_is_shown_as_text(voila, browser):
    page, dialogs = open_panel(browser, voila.url + "/")
    ask(page, "What markup does render_banner return for a title?")
    citations = page.locator(".qa-source").all_inner_texts()
    assert any("banner.py" in c for c in citations), f"the hostile file was not retrieved: {citations}"
    page.locator("summary", has_text="banner.py").first.click()
    text = page.locator("body").inner_text()
    assert "<script>" in text and "onerror=" in text, "the markup is not shown as text"
    assert page.evaluate("window.__pwned === undefined"), "a script from the document ran"
    assert page.locator("img[src='x'], marquee, .qa-panel script").count() == 0, "document markup became elements"
    assert not dialogs, f"the page opened dialogs: {dialogs}"
    assert "```" not in text, "raw Markdown on screen"
    page.screenshot(path=str(ARTEFACTS / "qa_panel_hostile.png"), full_page=True)


def test_port_in_use_is_a_clear_error(app_config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(services.ServiceError, match="already in use"):
            app.serve(app_config, port=s.getsockname()[1])


def test_make_app_stops_voila_when_it_is_killed(app_config):
    """`python -m helpers.app` (what `make app` runs) stops its Voilà server on SIGTERM, as on Ctrl-C."""
    port = services.free_port()
    env = {**os.environ, **app.kernel_environment(app_config)}
    proc = subprocess.Popen([sys.executable, "-m", "helpers.app", "--port", str(port)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if app.ANNOUNCEMENT in line:
                break
        said = "".join(seen[-15:])
        assert not services.port_is_free(port), f"the panel was not served; the app said:\n{said}"
        children = psutil.Process(proc.pid).children(recursive=True)  # Voilà, and the embedding if it is running
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"processes outlived the app: {[p.cmdline()[:4] for p in alive]}"
        deadline = time.monotonic() + 30
        while not services.port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert services.port_is_free(port), f"Voilà kept running after the app was killed (exit {proc.returncode})"
    finally:
        proc.kill()


def test_vectors_are_made_by_a_low_priority_process(app_config, tmp_path):
    """On a lexical-first index, `make app` leaves the embedding to a process at niceness 19, which completes it."""
    cfg = load_config(work_dir=tmp_path, manifest=str(app_config.manifest_path))
    shutil.copytree(app_config.retrieval_data_dir, cfg.retrieval_data_dir)
    cfg.models_dir.parent.mkdir(parents=True, exist_ok=True)
    cfg.models_dir.symlink_to(app_config.models_dir, target_is_directory=True)
    qa.build_index(cfg, progress=False, embed=False)
    assert qa.CodeIndex.load(cfg).pending > 0
    proc = app.embed_in_background(cfg)
    try:
        niceness = psutil.Process(proc.pid).nice()
        deadline = time.monotonic() + 10
        while niceness != 19 and proc.poll() is None and time.monotonic() < deadline:  # `nice` sets it, then runs Python
            time.sleep(0.05)
            niceness = psutil.Process(proc.pid).nice()
        assert niceness == 19, f"the embedding runs at niceness {niceness}"
        assert proc.wait(timeout=600) == 0, f"the embedding process failed (exit {proc.returncode})"
    finally:
        proc.kill()
    assert qa.CodeIndex.load(cfg).pending == 0, "chunks are still without vectors"
