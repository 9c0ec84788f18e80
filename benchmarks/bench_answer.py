"""Benchmark answering: the OpenVINO engine against transformers fp32 on the same prompts, and answer quality.

Prints, in one run: for each engine and thread count, p50 seconds for a ~700-token prompt plus 64 new tokens,
time to the first piece, tokens/s, and the ratio to transformers measured in the same run (the machine may be
shared, so compare ratios); then, on the default settings, the answer keyword rate, model-text keyword rate,
right-file citation rate and p50/p95 seconds per half (tuning, held-out) of the hand-written questions and of the
user-style ones (``data_manifests/user_questions.yaml``) for the base and (when step 4 ran) the finetuned model.

    .venv/bin/python benchmarks/bench_answer.py [--work-dir DIR] [--runs 5] [--questions 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from helpers import evaluate, models, qa  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402


def timed_stream(gen: qa.Generator, prompt: str, max_new_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first piece, total seconds, new tokens) of one greedy answer."""
    start = time.perf_counter()
    first, pieces = None, []
    for piece in gen.stream(prompt, max_new_tokens):
        first = first or time.perf_counter() - start
        pieces.append(piece)
    total = time.perf_counter() - start
    return first or total, total, len(gen.tokenizer("".join(pieces), add_special_tokens=False).input_ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "workdir"))
    parser.add_argument("--runs", type=int, default=5, help="timed answers per engine and thread count")
    parser.add_argument("--questions", type=int, default=0, help="hand-written questions per half (0: all)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    cfg = load_config(work_dir=args.work_dir)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")
    index = qa.CodeIndex.load(cfg)  # built by 06_retrieval_qa.ipynb or benchmarks/bench_qa.py
    hand = [q for q in evaluate.question_set(index, docstring_n=0, seed=cfg.seed, user=True)
            if q.origin in ("hand", "user")]

    folder = models.model_folder(cfg, "base")
    prompts = []
    for q in hand[: args.runs + 1]:
        hits = index.search(q.question, qa.DEFAULT_K, qa.DEFAULT_MODE)
        tokenizer = qa.generation.load_tokenizer(folder)
        prompts.append(tokenizer.apply_chat_template(qa.build_messages(q.question, hits, tokenizer, reads=len(hits)),
                                                     tokenize=False, add_generation_prompt=True))
    reference: dict[int, float] = {}
    for threads in args.threads:
        for engine in ("transformers", "openvino"):
            gen = (qa.generation.TransformersGenerator(folder, threads=threads) if engine == "transformers"
                   else qa.generation.OpenVINOGenerator(folder, threads=threads))
            timed_stream(gen, prompts[0], 8)  # warm-up
            runs = [timed_stream(gen, p, 64) for p in prompts[1:]]
            p50 = statistics.median(r[1] for r in runs)
            reference.setdefault(threads, p50)
            tokens = sum(r[2] for r in runs) / sum(r[1] for r in runs)
            print(f"{engine:12s} {threads} thread(s): p50 {p50:.2f} s, first piece p50 "
                  f"{statistics.median(r[0] for r in runs):.2f} s, {tokens:.1f} tokens/s, "
                  f"{reference[threads] / p50:.1f}x transformers (prompt p50 "
                  f"{statistics.median(len(gen.tokenizer(p).input_ids) for p in prompts[1:]):.0f} tokens)")
            del gen

    chosen = [q for origin in ("hand", "user") for half in evaluate.HALVES
              for q in [x for x in hand if x.origin == origin and x.half == half][: args.questions or None]]
    rows = evaluate.compare_answers(index, chosen, ("base", "finetuned"), reuse=False, progress=False)
    print("\nanswers on the default settings (hand-written and user-style questions):")
    print(evaluate.answer_summary(rows, by=("setting", "origin", "half")).to_string())
    pd.set_option("display.width", 200)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
