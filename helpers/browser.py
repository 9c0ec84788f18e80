"""Drive the served QA panel with a real Chromium, as a person would: open it, type a question, read the answer.

Used by the web-app tests and by ``benchmarks/bench_quickpath.py``; needs Debian's ``chromium`` and Playwright.
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
WAIT_MS = 300_000


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, started by a running Playwright (``with sync_playwright() as p: launch(p)``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def open_panel(browser: Any, url: str, timeout_ms: int = WAIT_MS) -> tuple[Any, list[str]]:
    """A new page showing the panel at ``url`` once its widgets are up; the list collects any dialog it opens."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector(".qa-state", timeout=timeout_ms)
    return page, dialogs


def ask(page: Any, question: str, timeout_ms: int = WAIT_MS) -> str:
    """Type a question, press Enter, wait until its turn (a new one, at the bottom) is answered; its answer text."""
    before = page.locator(".qa-turn").count()
    box = page.locator(".qa-question input, .qa-question textarea").first
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        """n => {
            const s = document.querySelector('.qa-state');
            const a = document.querySelectorAll('.qa-turn .qa-answer-text');
            return s && s.dataset.state === 'done' && a.length === n + 1 && a[n].innerText.trim();
        }""", arg=before, timeout=timeout_ms)
    return page.locator(".qa-turn .qa-answer-text").nth(before).inner_text()


def sources(page: Any, turn: int = 0) -> list[str]:
    """The ``path:line`` sources listed under one turn of the conversation."""
    return page.locator(".qa-turn").nth(turn).locator(".qa-source").all_inner_texts()
