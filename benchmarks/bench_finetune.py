"""Benchmark step 3 on this machine: the workshop-sized local finetuning run and what it bought.

Prints the wall time and training throughput (tokens/second) of the default local run (notebook 03's
parameters), and the perplexity of the held-out test split before and after finetuning.

    .venv/bin/python benchmarks/bench_finetune.py                    # uses <work_dir> from notebooks 00-02
    .venv/bin/python benchmarks/bench_finetune.py --data-from workdir  # copy step 2's MDS from another work dir
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import convert, finetune, models  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    defaults = finetune.LocalTraining()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "workdir" / "bench-finetune")
    parser.add_argument("--data-from", type=Path, help="a work dir whose storage/mds/codebase (step 2) to copy in")
    parser.add_argument("--max-batches", type=int, default=defaults.max_batches)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval-samples", type=int, default=64, help="test samples scored before and after")
    args = parser.parse_args(argv)

    cfg = load_config(work_dir=args.work_dir)
    if args.data_from:
        source = Path(args.data_from) / "storage" / "mds" / finetune.DATA_NAME
        target = Path(cfg.storage_path("mds", finetune.DATA_NAME))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    finetune.check_data(cfg)
    knobs = finetune.LocalTraining(max_batches=args.max_batches, batch_size=args.batch_size,
                                   max_seq_len=args.max_seq_len, lr=args.lr,
                                   eval_interval=max(1, args.max_batches // 3))
    model_path = models.prepare_generator(cfg, progress=False)
    score = dict(split="test", max_seq_len=knobs.max_seq_len, max_samples=args.eval_samples, progress=False)

    start = time.perf_counter()
    before = finetune.perplexity(model_path, cfg, **score)
    ppl_seconds = time.perf_counter() - start
    result = finetune.train(cfg, model_path, knobs, run_name="bench-finetune", progress=False)
    speed = finetune.throughput(result, knobs, finetune.run_metrics(cfg, "bench-finetune"))
    after = convert.finetuned_perplexity(cfg, "bench-finetune", **score)

    print(f"machine: {os.cpu_count()} CPU cores; model {cfg.generator_model}; data {cfg.storage_path('mds', 'codebase')}")
    print(f"run: {knobs.max_batches} batches x {knobs.batch_size} samples x {knobs.max_seq_len} tokens, lr {knobs.lr}")
    print(f"wall time of `llmfoundry train` (start-up, training, evaluation, checkpoint): {speed['wall_s']:.0f} s")
    print(f"throughput over the whole run: {speed['tokens_per_s']:.1f} tokens/s ({speed['tokens']} tokens)")
    if "train_tokens_per_s" in speed:
        print(f"throughput while training (speed_monitor mean): {speed['train_tokens_per_s']:.1f} tokens/s")
    print(f"test perplexity ({args.eval_samples} samples, {ppl_seconds:.0f} s each): before {before:.2f}, "
          f"after {after:.2f} ({(after - before) / before:+.1%})")
    return 0 if after < before else 1


if __name__ == "__main__":
    sys.exit(main())
