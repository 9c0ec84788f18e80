"""Benchmark the chat abilities beyond the plain chain: declining, multi-part questions, the reference scorer.

Prints, in one run on the full index:
* declining: the relevance threshold chosen on the tuning half, and per half the share of off-topic questions
  declined and of on-topic (hand-written) questions wrongly declined;
* multi-part questions: the plain chain against splitting, per half: share of parts answered (a keyword of the
  part in the answer), of questions with every part answered and cited, and p50 seconds;
* the reference-format scorer on the hand-written questions written as ``{"context", "continuation"}`` lines
  (the continuation is the answering symbol): exact match, close match, keyword, p50 seconds.

    .venv/bin/python benchmarks/bench_chat.py [--work-dir DIR] [--multipart 0] [--reference 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from helpers import evaluate, qa, scoring  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "workdir"))
    parser.add_argument("--multipart", type=int, default=0, help="multi-part questions per half (0: all)")
    parser.add_argument("--reference", type=int, default=0, help="reference lines to score (0: all)")
    args = parser.parse_args()
    cfg = load_config(work_dir=args.work_dir)
    index = qa.CodeIndex.load(cfg)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; index of {len(index)} chunks")

    table, threshold = evaluate.evaluate_declining(index, evaluate.load_eval_set(), evaluate.load_offtopic())
    print(f"\nDeclining: threshold chosen on the tuning half {threshold:.2f} (default {qa.DECLINE_THRESHOLD:.2f})")
    print(evaluate.declining_summary(table).to_string())

    gen = qa.generator(cfg, "base")
    questions = evaluate.load_multipart()
    if args.multipart:
        questions = [q for half in evaluate.HALVES for q in [x for x in questions if x.half == half][:args.multipart]]
    rows = evaluate.evaluate_multipart(index, gen, questions)
    summary = evaluate.multipart_summary(rows)
    print("\nMulti-part questions (plain chain vs split):")
    print(summary.to_string())

    with tempfile.TemporaryDirectory() as tmp:
        path = evaluate.write_reference_jsonl(evaluate.load_eval_set(), Path(tmp) / "hand.jsonl")
        scored = scoring.score_reference(path, lambda q: qa.ask(index, gen, q).text, limit=args.reference)
    print("\nReference-format scorer on the hand-written questions (continuation = answering symbol):")
    print(pd.DataFrame({"chain": scoring.reference_summary(scored)}).T.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
