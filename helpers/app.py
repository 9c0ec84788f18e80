"""The QA panel as a standalone web app: Voilà serves ``08_qa_panel.ipynb`` showing only the panel.

``python -m helpers.app`` (``make app``) first makes sure the panel has what it needs — the generator, the
flattened sources and the search index, built on the embedded defaults when missing — printing progress in the
terminal, so the browser never waits on a blank page. Then it serves the notebook on loopback until Ctrl-C.
A first index is built lexical-first: the panel is served as soon as the chunks are in (BM25 answers), and the
vectors for dense search are made while it runs, by a second process at the lowest CPU priority (so the page
loads and answers as if the cores were free); the panel switches to hybrid search when they land.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import models, panel, qa, repos, services
from helpers.config import WorkshopConfig, load_config
from helpers.constants import NOTEBOOKS
from helpers.errors import ServiceError, WorkshopError
from helpers.files import cleanup_on_terminate
from helpers.qa.index import missing_vectors
from helpers.series import NOTEBOOKS_DIR

APP_NOTEBOOK = NOTEBOOKS_DIR / NOTEBOOKS[8]
DEFAULT_PORT = 8866
ANNOUNCEMENT = "The QA panel is at "  # then the URL: what a script waiting for the panel looks for


def _corpus_and_embedder(cfg: WorkshopConfig) -> None:
    """Step 1's sources and the embedder's OpenVINO export: mostly reading and writing files, so they run beside
    the generator's conversion, which keeps the cores busy."""
    if not repos.completed_sources(cfg):
        repos.download_sources(cfg, progress=False)
    qa.embedder(cfg)
    print("   corpus and embedder ready", flush=True)


def prepare(cfg: WorkshopConfig, progress: bool = True) -> bool:
    """Build whatever the panel needs and is missing: generator folder and its OpenVINO export, step-1 sources,
    search index. With no index yet, the index is built *lexical-first* (chunks and BM25 in seconds, no vectors)
    and True is returned: call ``qa.build_index(cfg)`` once the panel is up to add the vectors."""
    print("1/3 generator model and its OpenVINO export; beside it, 2/3 the corpus (step 1) and the embedder …",
          flush=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        side = pool.submit(_corpus_and_embedder, cfg)
        folder = models.prepare_generator(cfg, progress=progress)
        if cfg.generator_is_embedded:
            models.prepare_openvino(folder, progress=progress)
        side.result()  # its error, if any, is raised here
    try:
        chunks, faiss_index = qa.load_index(cfg)
        pending = int(missing_vectors(faiss_index, chunks=chunks).sum())  # left by an interrupted lexical-first start
    except (WorkshopError, OSError):
        pending = -1  # no usable index yet
    if pending:
        print("3/3 search index, lexical first: the panel answers with BM25 while the vectors are made …", flush=True)
        qa.build_index(cfg, progress=progress, embed=False)
        return True
    print("3/3 search index (step 6; only new or changed files are embedded) …", flush=True)
    qa.build_index(cfg, progress=progress)
    return False


def kernel_environment(cfg: WorkshopConfig) -> dict[str, str]:
    """The WORKSHOP_* variables that make the app's notebook kernel see this configuration."""
    return {"WORKSHOP_WORK_DIR": str(cfg.work_dir), "WORKSHOP_STORAGE_ROOT": cfg.storage_root,
            "WORKSHOP_MANIFEST": str(cfg.manifest_path), "WORKSHOP_GENERATOR_MODEL": cfg.generator_model,
            "WORKSHOP_EMBEDDING_MODEL": cfg.embedding_model, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", panel.APP_VARIABLE: "1"}


def serve(cfg: WorkshopConfig, port: int = DEFAULT_PORT, timeout_s: float = 120) -> services.Service:
    """Start Voilà on 127.0.0.1:``port`` serving the panel notebook; returns once the server answers."""
    if not APP_NOTEBOOK.is_file():
        raise ServiceError(f"{APP_NOTEBOOK} is missing: the app serves the step-8 notebook.")
    cmd = [sys.executable, "-m", "voila", str(APP_NOTEBOOK), "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--strip_sources=True", "--show_tracebacks=False",
           "--TemplateExporter.exclude_markdown=True",  # the notebook's prose stays in JupyterLab; the page is the panel
           f"--Voila.root_dir={NOTEBOOKS_DIR}"]
    return services.start("Voilà app", cmd, port, "/voila/static/favicon.ico", cfg.work_dir / "app" / f"voila-{port}.log",
                          env=kernel_environment(cfg), timeout_s=timeout_s, cwd=NOTEBOOKS_DIR)


def embed_in_background(cfg: WorkshopConfig) -> subprocess.Popen:
    """A process that adds the missing vectors to the index (``--embed-only``) at the lowest CPU priority: the
    page and the answers get the cores first (measured: the panel came on screen 37 s after being served while an
    in-process embedding shared the cores). Niceness is set with ``nice`` before the process starts, so it covers
    every thread the embedder opens."""
    cmd = [sys.executable, "-m", "helpers.app", "--embed-only"]
    if shutil.which("nice"):
        cmd = ["nice", "-n", "19", *cmd]
    return subprocess.Popen(cmd, env={**os.environ, **kernel_environment(cfg)})


def embed_only(work_dir: str = "", manifest: str = "") -> int:
    """Embed the chunks that have no vector yet (what ``embed_in_background`` runs); 2 with the error if it fails.
    Stopped (Ctrl-C, or the app ending), it leaves the index as it was: the next start embeds again."""
    try:
        with cleanup_on_terminate():
            qa.build_index(load_config(work_dir=work_dir, manifest=manifest))
    except (KeyboardInterrupt, SystemExit):
        return 130
    except WorkshopError as err:
        print(f"error: dense search was not built ({err}); the panel keeps answering with BM25.", file=sys.stderr,
              flush=True)
        return 2
    print("Dense search ready: the panel uses hybrid search from its next question.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the code-base QA panel as a web app (Voilà, loopback).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--work-dir", default="", help="the series' work folder (default: WORKSHOP_WORK_DIR or workdir/)")
    parser.add_argument("--manifest", default="", help="corpus manifest used when the corpus must be built")
    parser.add_argument("--embed-only", action="store_true", help=argparse.SUPPRESS)  # the background embedding
    args = parser.parse_args(argv)
    if args.embed_only:
        return embed_only(args.work_dir, args.manifest)
    with cleanup_on_terminate():  # `kill` or a closed terminal stops Voilà too, as Ctrl-C does (also mid-start)
        try:
            cfg = load_config(work_dir=args.work_dir, manifest=args.manifest)
            services.check_port(args.port)
            vectors_pending = prepare(cfg)
            app = serve(cfg, args.port)
        except WorkshopError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"\n{ANNOUNCEMENT}{app.url}/  (Ctrl-C stops it; log: {app.log})", flush=True)
        embedding = None
        try:
            if vectors_pending:
                print("Embedding the chunks for dense search (low priority); until this ends the panel answers with "
                      "BM25 alone …", flush=True)
                embedding = embed_in_background(cfg)
            while app.running:
                if embedding is not None and embedding.poll() is not None:
                    embedding = None  # it said how it ended
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping …")
        finally:
            if embedding is not None and embedding.poll() is None:
                services.stop_process(embedding, timeout_s=30)
            services.stop(app)
    return 0 if not app.running else 1


if __name__ == "__main__":
    sys.exit(main())
