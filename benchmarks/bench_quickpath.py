"""Benchmark the quick path: `make app` from an empty work folder until a cited answer is on screen in Chromium.

Starts what `make app` runs (`python -m helpers.app`) on a fresh work folder, prints each line it says with the
seconds since start, opens the panel in Chromium as soon as it is announced, asks one question and waits for the
answer and its `path:line` sources; then stops the app (SIGTERM, as a closed terminal would). Set-up (`make setup`
on a fresh clone) comes before all this: add its time, measured separately, for "git clone to first answer".

    .venv/bin/python benchmarks/bench_quickpath.py [--work-dir DIR] [--question TEXT] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import app, services  # noqa: E402
from helpers.browser import CHROMIUM, ask, launch, open_panel, sources  # noqa: E402
from helpers.config import REPO_ROOT  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="", help="an empty or missing folder (default: a new temporary one)")
    parser.add_argument("--question", default="How do I limit the disk space the downloaded shards use?")
    parser.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="quickpath-"))
    if work.is_file() or (work.exists() and any(work.iterdir())):
        print(f"{work} is not empty: the quick path is measured from an empty work folder", file=sys.stderr)
        return 2
    port = services.free_port()
    env = {**os.environ, "WORKSHOP_WORK_DIR": str(work), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TQDM_DISABLE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as the Makefile runs it
    compiled = sum(1 for _ in Path(sys.prefix).rglob("*.pyc"))
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; "
          f"work folder {work}; {compiled:,} compiled modules cached in {sys.prefix} (0 on a fresh set-up)")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "helpers.app", "--port", str(port)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    announced = threading.Event()
    url: list[str] = []

    def relay() -> None:
        for line in proc.stdout:
            print(f"{time.perf_counter() - start:7.1f} s  {line.rstrip()}", flush=True)
            if app.ANNOUNCEMENT in line:
                url.append(line.split(app.ANNOUNCEMENT, 1)[1].split()[0])
                announced.set()
        announced.set()  # the app ended without serving

    threading.Thread(target=relay, daemon=True).start()
    try:
        announced.wait()
        if not url:
            print(f"the app stopped (exit {proc.wait()}) without serving the panel", file=sys.stderr)
            return 1
        served = time.perf_counter() - start
        from playwright.sync_api import TimeoutError as PageTimeout
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = launch(p)
            try:
                page, _ = open_panel(browser, url[0])
                ready = time.perf_counter() - start
                answer = ask(page, args.question)
            except PageTimeout as err:
                print(f"the panel at {url[0]} did not show or answer in time ({str(err).splitlines()[0]}); the "
                      f"app's log is named in its lines above", file=sys.stderr)
                return 1
            answered = time.perf_counter() - start
            cited = sources(page)
            browser.close()
        print(f"\nquestion: {args.question}\n{answer.strip()}\nsources: {', '.join(cited)}\n")
        print(f"panel served      {served:6.1f} s")
        print(f"panel on screen   {ready:6.1f} s  (Chromium opened it and its widgets are up)")
        print(f"first answer      {answered:6.1f} s  ({len(cited)} path:line sources)")
        return 0 if answer.strip() and cited else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
