"""Text-to-MDS throughput: the workshop's helpers against LLM Foundry's convert_text_to_mds on the same files.

Both tokenize the offline corpus (the sdists of mosaicml, mosaicml-streaming and llm-foundry, fetched by step 1
if needed) with the embedded generator's tokenizer, concatenate to ``--max-seq-len`` and write zstd MDS. The
helpers also split by file into train/validation/test and keep the last partial sample; LLM Foundry writes one
folder and drops it. Each runs ``--repeats`` times, alternating; the best time of each is reported.

    .venv/bin/python benchmarks/bench_mds.py [--work-dir DIR] [--max-seq-len 512] [--repeats 3] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import mds, models, repos  # noqa: E402
from helpers.config import REPO_ROOT, load_config  # noqa: E402


def run_helpers(cfg, max_seq_len: int) -> tuple[float, int, int]:
    start = time.perf_counter()
    conv = mds.convert_text(cfg, dataset="bench_codebase", max_seq_len=max_seq_len, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    return seconds, sum(s.tokens for s in conv.splits.values()), sum(s.samples for s in conv.splits.values())


def run_llmfoundry(cfg, max_seq_len: int, processes: int, eos: str) -> tuple[float, int, int]:
    from llmfoundry.command_utils import convert_text_to_mds

    out = Path(tempfile.mkdtemp(prefix="bench-foundry-", dir=cfg.work_dir)) / "mds"
    try:
        start = time.perf_counter()
        convert_text_to_mds(tokenizer_name=models.prepare_generator(cfg), output_folder=str(out),
                            input_folder=str(cfg.retrieval_data_dir), concat_tokens=max_seq_len, eos_text=eos,
                            bos_text="", no_wrap=False, compression="zstd", processes=processes, args_str="bench",
                            reprocess=True, trust_remote_code=False)
        seconds = time.perf_counter() - start
        samples = sum(s["samples"] for s in json.loads((out / "index.json").read_text())["shards"])
        return seconds, samples * max_seq_len, samples
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "workdir" / "bench"))
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="processes for convert_text_to_mds")
    args = parser.parse_args()

    cfg = load_config(work_dir=args.work_dir, manifest="offline_sdists.yaml")
    repos.download_sources(cfg, progress=False)
    records = list(repos.iter_records(cfg))
    eos = mds.load_tokenizer(cfg).eos_token
    print(f"corpus: {len(records)} files, {sum(r.bytes for r in records) / 1e6:.2f} MB from "
          f"{', '.join(repos.completed_sources(cfg))}; max_seq_len={args.max_seq_len}; {os.cpu_count()} CPUs")

    best: dict[str, tuple[float, int, int]] = {}
    for i in range(args.repeats):
        for name, run in (("helpers.mds.convert_text", lambda: run_helpers(cfg, args.max_seq_len)),
                          (f"llmfoundry convert_text_to_mds (processes={args.processes})",
                           lambda: run_llmfoundry(cfg, args.max_seq_len, args.processes, eos))):
            result = run()
            print(f"  run {i + 1}: {name}: {result[0]:.2f} s, {result[1]:,} tokens, {result[2]:,} samples")
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    print("\nbest of", args.repeats)
    rates = {}
    for name, (seconds, tokens, _samples) in best.items():
        rates[name] = tokens / seconds
        print(f"  {name:48s} {seconds:7.2f} s  {tokens:>10,} tokens  {rates[name]:>10,.0f} tokens/s")
    helpers_rate, foundry_rate = rates.values()
    print(f"\nratio helpers / llm-foundry: {helpers_rate / foundry_rate:.2f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
