"""Benchmark retrieval on the offline corpus: index build, one-file rebuild, retrieval latency and quality.

Prints, in one run: the full index build (embedder export excluded, then included), the rebuild after one file
changes, retrieval p50 ms per mode, and recall@1/5/10 and MRR per mode on both halves of the hand-written
questions and of the user-style ones (tuning and held-out) and per package, plus the generated questions: from docstrings, by name (a function
or class, a parameter, a class in words), and the hand-written and named questions once more with typos.

    .venv/bin/python benchmarks/bench_qa.py [--work-dir DIR] [--skip-build] [--modes hybrid bm25 dense]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import evaluate, qa, repos  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402
from helpers.qa.embedding import embedder  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "workdir"))
    parser.add_argument("--manifest", default="offline_sdists.yaml")
    parser.add_argument("--skip-build", action="store_true", help="reuse the index already in the work dir")
    parser.add_argument("--modes", nargs="*", default=list(qa.MODES))
    args = parser.parse_args()
    cfg = load_config(work_dir=args.work_dir, manifest=args.manifest)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")

    repos.download_sources(cfg, progress=False)
    records = list(repos.iter_records(cfg))
    mb = sum(r.bytes for r in records) / 1e6
    if not args.skip_build:
        t0 = time.perf_counter()
        embedder(cfg)  # exported once per work folder, then loaded
        print(f"embedder ready (export or load): {time.perf_counter() - t0:.1f} s")
        shutil.rmtree(cfg.index_dir, ignore_errors=True)
        stats = qa.build_index(cfg, records, progress=False)
        print(f"full index build: {stats.seconds:.1f} s for {stats.files} files ({mb:.1f} MB), {stats.chunks} chunks "
              f"and {stats.settings} documented settings")

        target = next(r for r in records if r.path.endswith(".py") and r.lines > 200)
        original = target.text_file.read_bytes()
        try:
            target.text_file.write_text(original.decode() + '\n\ndef bench_added():\n    """Added by the benchmark."""\n')
            inc = qa.build_index(cfg, records, progress=False)
            print(f"rebuild after one file changes ({target.path}): {inc.seconds:.2f} s "
                  f"({inc.embedded} chunks embedded, {inc.reused} reused; "
                  f"{inc.settings_embedded} settings embedded)")
        finally:
            target.text_file.write_bytes(original)
            qa.build_index(cfg, records, progress=False)

    index = qa.CodeIndex.load(cfg)
    questions = evaluate.question_set(index, docstring_n=30, named_n=40, typos=True, seed=cfg.seed, user=True)
    for mode in args.modes:
        index.search("warm up", 4, mode)
    rows = evaluate.evaluate_retrieval(index, questions, modes=args.modes)
    summary = evaluate.retrieval_summary(rows, ks=(1, 5, 10), by=("mode", "origin", "half"))
    print("\nretrieval (recall@k, MRR, p50 ms) by mode, origin and half:")
    print(summary.to_string())
    hand = rows[rows["origin"].isin(["hand", "user"])]
    print("\nrecall@5 and MRR by mode, origin, half and package (hand-written and user-style questions):")
    per_package = evaluate.retrieval_summary(hand, ks=(5,), by=("mode", "origin", "half", "package"))
    print(per_package[["recall@5", "MRR", "questions"]].unstack("package").to_string())
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
