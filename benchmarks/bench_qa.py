"""Benchmark steps 6-7 on the offline corpus: index build, incremental rebuild, retrieval and answer latency, quality.

Prints: full index build seconds (target <= 60 s on 2 cores), rebuild after one file changes (target <= 5 s),
retrieval p50 ms per mode, answer p50/p95 seconds at 64 new tokens with ~700 context tokens (target <= 1.5 s) for
float32 and bfloat16, recall@5 / MRR per mode and the answer keyword rate (plain vs symbol-first).

    .venv/bin/python benchmarks/bench_qa.py [--work-dir DIR] [--answers 20] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import evaluate, models, qa, repos  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "workdir" / "bench-qa"))
    parser.add_argument("--manifest", default="offline_sdists.yaml")
    parser.add_argument("--answers", type=int, default=20, help="hand-written questions for the answer keyword rate")
    parser.add_argument("--runs", type=int, default=10, help="timed answers per dtype")
    parser.add_argument("--skip-build", action="store_true", help="reuse the index already in the work dir")
    args = parser.parse_args()
    cfg = load_config(work_dir=args.work_dir, manifest=args.manifest)
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")

    repos.download_sources(cfg, progress=False)
    records = list(repos.iter_records(cfg))
    mb = sum(r.bytes for r in records) / 1e6
    if not args.skip_build:
        shutil.rmtree(cfg.index_dir, ignore_errors=True)
        stats = qa.build_index(cfg, records, progress=False)
        print(f"index build: {stats.seconds:.1f} s for {stats.files} files ({mb:.1f} MB), {stats.chunks} chunks")

    # Incremental rebuild: change one file, rebuild, then restore it (and rebuild again to leave the index as it was).
    target = next(r for r in records if r.path.endswith(".py") and r.lines > 200)
    original = target.text_file.read_text(encoding="utf-8")
    try:
        target.text_file.write_text(original + "\n\ndef bench_added():\n    \"\"\"Added by the benchmark.\"\"\"\n")
        inc = qa.build_index(cfg, records, progress=False)
        print(f"incremental rebuild after changing {target.path}: {inc.seconds:.2f} s "
              f"({inc.embedded} chunks embedded, {inc.reused} reused)")
    finally:
        target.text_file.write_text(original)
        qa.build_index(cfg, records, progress=False)

    t0 = time.perf_counter()
    index = qa.CodeIndex.load(cfg)
    print(f"index load: {time.perf_counter() - t0:.2f} s")
    hand = evaluate.load_eval_set()
    questions = hand + evaluate.docstring_questions(index.chunks, n=30, seed=cfg.seed)
    for mode in qa.MODES:
        index.search("warm up", 4, mode)
    rows = evaluate.evaluate_retrieval(index, questions)
    summary = evaluate.retrieval_summary(rows)
    for (mode, origin), row in summary.iterrows():
        print(f"retrieval {mode:6s} {origin:9s}: recall@5 {row['recall@5']:.3f}  MRR {row['MRR']:.3f}  "
              f"p50 {row['p50 ms']:.0f} ms  ({int(row['questions'])} questions)")

    for dtype in ("float32", "bfloat16"):
        gen = qa.TransformersGenerator(qa_model_folder(cfg), dtype=dtype)
        times, prompt_tokens = [], []
        for q in (hand * 2)[: args.runs + 1]:
            hits = index.search(q.question, qa.DEFAULT_K, qa.DEFAULT_MODE)
            prompt = gen.render(qa.build_messages(q.question, hits, gen.tokenizer, context_tokens=700))
            t0 = time.perf_counter()
            "".join(gen.stream(prompt, max_new_tokens=64))
            times.append(time.perf_counter() - t0)
            prompt_tokens.append(gen.count_tokens(prompt))
        times = times[1:]  # the first call warms up
        print(f"answer latency {dtype}: p50 {statistics.median(times):.2f} s, p95 {pct(times, 0.95):.2f} s "
              f"(64 new tokens, prompt p50 {statistics.median(prompt_tokens):.0f} tokens, {len(times)} runs)")
        del gen

    gen = qa.generator(cfg, "base")
    answer_set = hand[: args.answers]
    answers = []
    for fmt in ("plain", "symbol-first"):
        answers.append(evaluate.evaluate_answers(index, gen, answer_set, fmt, answer_format=fmt, progress=False))
    import pandas as pd

    table = evaluate.answer_summary(pd.concat(answers))
    for setting, row in table.iterrows():
        print(f"answers {setting:12s}: context keyword {row['context keyword']:.2f}, answer keyword "
              f"{row['answer keyword']:.2f}, model-text keyword {row['model-text keyword']:.2f}, cites a right file "
              f"{row['cites a right file']:.2f}, p50 {row['p50 s']:.2f} s ({int(row['questions'])} questions)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


def qa_model_folder(cfg) -> str:
    return models.model_folder(cfg, "base")


if __name__ == "__main__":
    sys.exit(main())
