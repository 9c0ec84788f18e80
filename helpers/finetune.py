"""Step 3: tune the generator with LLM Foundry on one of the tutorial's datasets, and measure what it bought.

The training itself is one yaml run by ``helpers.runs``: ``mcli_yamls/finetune/finetune_composer_codebase.yaml``
for the code base (domain tuning), ``finetune_qa.yaml`` for question/answer pairs (the docstring pairs of step 2,
or CoQA). On the platform it runs as written (MPT-7B, GPUs, FSDP, bf16), here with CPU-sized overrides (the
embedded SmolLM2-135M, fp32, short sequences, tens of batches). Perplexity on the held-out test split, before and
after, says whether the model now finds the data less surprising; for question/answer data the *answer keyword
rate* also asks a few held-out questions and counts answers that hold a keyword of the reference answer. The
MLflow store holds the curves to plot.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import runs
from helpers.config import WorkshopConfig, load_config
from helpers.constants import QA_DATASET, SPLITS, TEXT_DATASET, run_first
from helpers.errors import CheckpointError, ConfigError, DataError, DataNotReady, NotReady, SourceUnavailable
from helpers.scoring import contains_keyword, reference_keywords

FINETUNE_YAML = "finetune/finetune_composer_codebase.yaml"
QA_YAML = "finetune/finetune_qa.yaml"      # instruction tuning on step 2's prompt/response pairs
DATA_NAME = TEXT_DATASET
QA_DATA_NAME = QA_DATASET
EXPERIMENT = "codebase-qa-workshop"
DEFAULT_RUN_NAME = "finetune-composer-codebase"
COQA_MANIFEST = "mosaicml_repos.yaml"   # the manifest whose qa_datasets entry says where CoQA is downloaded from
DOWNLOAD_TIMEOUT_S = 15.0              # an offline machine fails within this, naming the fix, instead of hanging
COQA_MAX_PAIRS = 5000                  # CoQA pairs a local run keeps (of about 108,000): plenty for tens of steps


@dataclass(frozen=True)
class TrainingData:
    """One dataset step 3 can train on: its MDS folder, the yaml that trains on it, and what kind of data it is."""

    name: str
    data_name: str      # the MDS dataset under <storage_root>/mds/
    yaml: str           # the finetuning yaml in mcli_yamls/
    kind: str           # 'text' (a `tokens` column) | 'qa' (`prompt`/`response` columns)
    run_name: str       # the default run name (checkpoint folder and MLflow run)
    description: str


DATASETS = {d.name: d for d in (
    TrainingData("codebase", TEXT_DATASET, FINETUNE_YAML, "text", DEFAULT_RUN_NAME,
                 "domain tuning on the code base (step 2's codebase MDS)"),
    TrainingData("codebase_qa", QA_DATASET, QA_YAML, "qa", "finetune-codebase-qa",
                 "instruction tuning on the docstring question/answer pairs (step 2's codebase_qa MDS, offline)"),
    TrainingData("coqa", "coqa", QA_YAML, "qa", "finetune-coqa",
                 "instruction tuning on CoQA, the tutorial's conversational QA set (downloaded: needs the network)"),
)}


def training_data(name: str) -> TrainingData:
    """The dataset called ``name``; ConfigError listing the choices for any other name."""
    if name not in DATASETS:
        choices = "; ".join(f"{d.name!r}: {d.description}" for d in DATASETS.values())
        raise ConfigError(f"dataset={name!r} is not one of step 3's datasets. Choose {choices}.")
    return DATASETS[name]


@dataclass
class LocalTraining:
    """The CPU-sized knobs of a local run (the yaml's own values are sized for 8 GPUs)."""

    max_batches: int = 30          # optimizer steps
    batch_size: int = 2            # samples per step
    max_seq_len: int = 128         # tokens per sample (<= the MDS sample length)
    lr: float = 1e-4
    eval_batches: int = 4          # validation batches per evaluation
    eval_interval: int = 10        # evaluate every this many steps

    @property
    def tokens(self) -> int:
        return self.max_batches * self.batch_size * self.max_seq_len


def mds_split(cfg: WorkshopConfig, split: str, data_name: str = DATA_NAME) -> str:
    """Where step 2 wrote ``split`` of the code-base MDS (a folder or an object-store URI)."""
    return cfg.storage_path("mds", data_name, split)


def check_data(cfg: WorkshopConfig, data_name: str = DATA_NAME) -> None:
    """Fail early, naming the folder and the fix, when a split of the step-2 MDS is missing locally."""
    if cfg.is_remote:
        return
    missing = [mds_split(cfg, s, data_name) for s in SPLITS if not (Path(mds_split(cfg, s, data_name)) / "index.json").is_file()]
    if missing:
        raise DataNotReady("no MDS dataset (index.json) in " + ", ".join(missing)
                           + f": {run_first(2)} with the same work_dir/storage_root")


def prepare_data(cfg: WorkshopConfig, data: TrainingData, max_seq_len: int, timeout_s: float = DOWNLOAD_TIMEOUT_S,
                 progress: bool = True) -> str:
    """The MDS dataset to train ``data`` on, checked: step 2's, or for CoQA the pairs that fit ``max_seq_len``.

    LLM Foundry's streaming ``finetuning`` loader stops on a pair whose prompt fills the whole sequence, and its
    converter drops such pairs; CoQA's prompts hold a whole story, so a local run keeps the pairs that fit.
    """
    name = data.data_name
    if data.name == "coqa" and not cfg.is_remote:
        name = prepare_coqa(cfg, max_seq_len, timeout_s=timeout_s, progress=progress)
    check_data(cfg, name)
    return name


def prepare_coqa(cfg: WorkshopConfig, max_seq_len: int, max_pairs: int = COQA_MAX_PAIRS,
                 manifest: str = COQA_MANIFEST, timeout_s: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> str:
    """The MDS dataset ``coqa_<max_seq_len>``: up to ``max_pairs`` CoQA pairs whose prompt and answer fit in
    ``max_seq_len`` tokens, from ``<work_dir>/qa/coqa.jsonl`` (step 2 with the online manifest), downloaded if missing.

    Without network access this fails within ``timeout_s`` with SourceUnavailable naming the offline dataset.
    """
    from helpers import mds, qa_dataset

    name = f"coqa_{max_seq_len}"
    if all((Path(mds_split(cfg, s, name)) / "index.json").is_file() for s in SPLITS):
        return name
    source = qa_dataset.qa_path(cfg, "coqa")
    if not source.is_file():
        try:
            qa_dataset.fetch_qa_datasets(dataclasses.replace(cfg, manifest=manifest), timeout=timeout_s)
        except SourceUnavailable as err:
            raise SourceUnavailable(f"dataset='coqa' downloads CoQA once, which needs the network: {err} On this "
                                    "machine train on dataset='codebase_qa' (step 2 builds it offline).") from None
        if not source.is_file():
            raise DataNotReady(f"{manifest} lists no qa_datasets entry named 'coqa': add CoQA's URL there (format: coqa).")
    tokenizer = mds.load_tokenizer(cfg)
    records, _, _ = mds.read_jsonl(source)
    fits = (r for r in records if len(r["prompt"]) + len(r["response"]) < 8 * max_seq_len  # a cheap filter first
            and len(tokenizer(r["prompt"] + r["response"])["input_ids"]) < max_seq_len)
    fitting = list(itertools.islice(fits, max_pairs))
    if len(fitting) < 30:
        raise DataError(f"only {len(fitting)} CoQA pairs fit in max_seq_len={max_seq_len} tokens (each prompt holds a "
                        "whole story): set max_seq_len to 512 or more for dataset='coqa'.")
    subset = qa_dataset.qa_path(cfg, name)
    qa_dataset.write_jsonl(fitting, subset)
    mds.convert_jsonl(cfg, subset, name, progress=progress)
    return name


def checkpoint_folder(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME) -> str:
    """Where the run's Composer checkpoints go: ``<storage_root>/checkpoints/<run_name>``."""
    return cfg.storage_path("checkpoints", run_name)


def local_overrides(cfg: WorkshopConfig, model_path: str, knobs: LocalTraining, run_name: str,
                    data_name: str = DATA_NAME, yaml: str = FINETUNE_YAML) -> dict[str, Any]:
    """Dotted overrides that turn the 8-GPU yaml into a CPU run of a few minutes."""
    seq = knobs.max_seq_len
    o: dict[str, Any] = {
        "parameters.max_seq_len": seq,
        "parameters.model.pretrained_model_name_or_path": model_path,
        "parameters.model.trust_remote_code": False,
        "parameters.tokenizer.name": model_path,
        "parameters.tokenizer.kwargs": {"model_max_length": seq},
        "parameters.precision": "fp32",          # CPUs have no fast bf16 path; fp32 is exact and simple
        "parameters.fsdp_config": runs.DELETE,          # one process, nothing to shard
        "parameters.global_train_batch_size": knobs.batch_size,
        "parameters.device_train_microbatch_size": knobs.batch_size,
        "parameters.device_eval_batch_size": knobs.batch_size,
        "parameters.max_duration": f"{knobs.max_batches}ba",
        "parameters.eval_interval": f"{knobs.eval_interval}ba",
        "parameters.eval_subset_num_batches": knobs.eval_batches,
        "parameters.optimizer.lr": knobs.lr,
        "parameters.scheduler.t_warmup": f"{max(1, knobs.max_batches // 10)}ba",
        "parameters.save_interval": f"{knobs.max_batches}ba",
        "parameters.save_folder": checkpoint_folder(cfg, run_name),
        "parameters.save_weights_only": True,    # 0.5 GB of weights instead of 1.6 GB with optimizer state
        "parameters.callbacks.speed_monitor.window_size": max(2, min(5, knobs.max_batches // 2)),  # tokens/s after this many steps
    }
    loaders = runs.load_spec(yaml)["parameters"]
    for loader in ("train_loader", "eval_loader"):
        o[f"parameters.{loader}.num_workers"] = 0       # no worker processes on a 2-core laptop
        o[f"parameters.{loader}.prefetch_factor"] = None  # (these two only mean something with workers)
        o[f"parameters.{loader}.persistent_workers"] = False
        o[f"parameters.{loader}.dataset.max_seq_len"] = seq
        if loaders[loader]["name"] == "finetuning":  # this loader streams from `remote` into a fresh cache
            o[f"parameters.{loader}.dataset.local"] = str(cfg.work_dir / "cache" / "mds" / data_name / run_name)
            o[f"parameters.{loader}.dataset.packing_ratio"] = runs.DELETE  # packing profiles batches: slow on CPU
        elif cfg.is_remote:  # stream from the bucket into a cache inside the work folder
            o[f"parameters.{loader}.dataset.local"] = str(cfg.work_dir / "cache" / "mds" / data_name)
        else:               # the data is already on this disk: read it in place
            o[f"parameters.{loader}.dataset.local"] = cfg.storage_path("mds", data_name)
            o[f"parameters.{loader}.dataset.remote"] = runs.DELETE
    return o


def settings_table(cfg: WorkshopConfig, model_path: str, knobs: LocalTraining, run_name: str = DEFAULT_RUN_NAME,
                   data_name: str = DATA_NAME, yaml: str = FINETUNE_YAML):
    """What the local overrides change: each setting as the platform yaml has it (MPT-7B, 8 GPUs) and as run here."""
    import pandas as pd

    platform_cfg = load_config(work_dir=cfg.work_dir, backend="mcli", storage_root="s3://BUCKET/workshop",
                               cluster="CLUSTER", generator_model="mosaicml/mpt-7b")
    platform = runs.render(yaml, {**runs.workshop_values(platform_cfg, run_name), "DATA_NAME_MDS": data_name})
    rows = []
    for dotted, value in local_overrides(cfg, model_path, knobs, run_name, data_name, yaml).items():
        *parents, leaf = dotted.split(".")
        node: Any = platform
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        rows.append((dotted.removeprefix("parameters."), node.get(leaf, "—") if isinstance(node, dict) else "—",
                     "(removed)" if value is runs.DELETE else value))
    return pd.DataFrame(rows, columns=["setting", "platform (MPT-7B, 8 GPUs)", "this machine"]).set_index("setting")


def train(cfg: WorkshopConfig, model_path: str, knobs: LocalTraining | None = None,
          run_name: str = DEFAULT_RUN_NAME, data_name: str = DATA_NAME, progress: bool = True,
          yaml: str = FINETUNE_YAML, reuse: bool = True, **submit_kwargs: Any) -> runs.RunResult:
    """Run the finetuning yaml on ``cfg.backend``: locally with CPU-sized ``knobs``, or as written on the platform.

    Locally, an identical finished run is reused (``reuse=False`` trains again), so re-running the series is quick.
    """
    values = {"DATA_NAME_MDS": data_name, "MODEL_NAME": model_path if cfg.backend == "local" else None}
    values = {k: v for k, v in values.items() if v is not None}
    overrides: dict[str, Any] = {}
    if cfg.backend == "local":
        check_data(cfg, data_name)
        overrides = local_overrides(cfg, model_path, knobs or LocalTraining(), run_name, data_name, yaml)
        shutil.rmtree(cfg.work_dir / "cache" / "mds" / data_name / run_name, ignore_errors=True)
    # A re-run with the same settings, data and model reuses the finished run instead of training again.
    inputs = [Path(mds_split(cfg, s, data_name)) / "index.json" for s in SPLITS if not cfg.is_remote]
    inputs += [Path(model_path) / "model.safetensors"] if Path(model_path).is_dir() else []
    return runs.run(yaml, cfg, run_name, values=values, overrides=overrides, progress=progress, reuse=reuse,
                    inputs=inputs, **submit_kwargs)


def latest_checkpoint(folder: str | Path) -> Path:
    """The newest Composer checkpoint (``*.pt``) in a local checkpoint folder; names the folder if none."""
    folder = Path(folder)
    symlink = folder / "latest-rank0.pt"
    if symlink.exists():
        return symlink.resolve()
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not found:
        raise CheckpointError(f"no Composer checkpoint (*.pt) in {folder}: {run_first(3)}")
    return found[-1]


def open_split(cfg: WorkshopConfig, split: str, data_name: str = DATA_NAME, batch_size: int = 1):
    """Streaming's dataset over one split of a step-2 MDS (remote: through a cache in the work folder), unshuffled."""
    from streaming import StreamingDataset

    path = mds_split(cfg, split, data_name)
    if cfg.is_remote:
        return StreamingDataset(remote=path, local=str(cfg.work_dir / "cache" / "mds" / data_name / split),
                                shuffle=False, batch_size=batch_size)
    if not (Path(path) / "index.json").is_file():
        raise DataNotReady(f"no MDS dataset (index.json) in {path}: {run_first(2)}")
    return StreamingDataset(local=path, shuffle=False, batch_size=batch_size)


def scored_sequence(sample: dict[str, Any], tokenizer: Any, max_seq_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one MDS sample, the labels -100 where nothing is scored.

    Code (a ``tokens`` sample) is scored on every token. A question/answer pair is tokenized and stitched by LLM
    Foundry's own finetuning code, so, as in training, only the response (and the EOS after it) is scored.
    """
    import numpy as np

    if "tokens" in sample:
        ids = np.asarray(sample["tokens"][:max_seq_len], dtype=np.int64).tolist()
        return ids, ids
    from llmfoundry.data.finetuning.collator import stitch_turns_decoder_only
    from llmfoundry.data.finetuning.tasks import tokenize_formatted_example

    turns = tokenize_formatted_example({"prompt": sample["prompt"], "response": sample["response"]}, tokenizer)
    ids, labels = stitch_turns_decoder_only(turns["turns"], target_prompts="none", target_responses="last",
                                            eos_token_id=tokenizer.eos_token_id)
    return ids[:max_seq_len], labels[:max_seq_len]  # the collator truncates the same way


def perplexity(model_path: str | Path, cfg: WorkshopConfig, split: str = "test", max_seq_len: int = 256,
               max_samples: int = 64, batch_size: int = 8, data_name: str = DATA_NAME,
               progress: bool = True) -> float:
    """exp(mean next-token loss) of a Hugging Face model on the first ``max_samples`` samples of an MDS split.

    For question/answer data the loss covers the response tokens only, given the prompt.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = mds_split(cfg, split, data_name)
    dataset = open_split(cfg, split, data_name, batch_size)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    tokenizer.model_max_length = 1 << 40  # pairs are cut to max_seq_len after stitching; silence the length warning
    count = min(max_samples, len(dataset))
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in tqdm(range(0, count, batch_size), desc=f"perplexity on {split}", disable=not progress):
            pairs = [scored_sequence(dataset[i], tokenizer, max_seq_len) for i in range(start, min(start + batch_size, count))]
            pairs = [(ids, labels) for ids, labels in pairs if any(label != -100 for label in labels[1:])]
            if not pairs:
                continue
            pad = torch.nn.utils.rnn.pad_sequence
            ids = pad([torch.tensor(i) for i, _ in pairs], batch_first=True, padding_value=0)
            labels = pad([torch.tensor(lab) for _, lab in pairs], batch_first=True, padding_value=-100)
            mask = pad([torch.ones(len(i), dtype=torch.long) for i, _ in pairs], batch_first=True)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:]
            total_nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                                           ignore_index=-100, reduction="sum").item()
            total_tokens += int((targets != -100).sum())
    if total_tokens == 0:
        raise DataNotReady(f"the {split} split at {path} has no tokens to score")
    return math.exp(total_nll / total_tokens)


# ---------------------------------------------------------------------------------------------- answer keyword rate


def held_out_pairs(cfg: WorkshopConfig, data_name: str = QA_DATA_NAME, split: str = "test",
                   n: int = 8) -> list[dict[str, str]]:
    """``n`` prompt/response pairs spread evenly over a held-out split of a question/answer MDS."""
    dataset = open_split(cfg, split, data_name)
    if "prompt" not in dataset[0]:
        raise DataNotReady(f"{mds_split(cfg, split, data_name)} holds no prompt/response pairs: choose a "
                           "question/answer dataset (codebase_qa, coqa).")
    step = max(1, len(dataset) // max(1, n))
    return [{"prompt": dataset[i]["prompt"], "response": dataset[i]["response"]}
            for i in range(0, len(dataset), step)][:n]


def answer_keywords(prompt: str, response: str) -> list[str]:
    """The keywords of a reference answer (``scoring.reference_keywords``) that its question does not already hold.

    A model that repeats the question's names earns nothing; when every keyword is in the question (CoQA's answers
    are spans of the story), all of them count.
    """
    keywords = reference_keywords(response)
    fresh = [k for k in keywords if k.lower() not in prompt.lower()]
    return fresh or keywords


def keyword_hits(pairs: list[dict[str, str]], answers: list[str]) -> list[bool]:
    """For each pair, whether the answer holds one of its reference answer's keywords."""
    if len(pairs) != len(answers):
        raise DataError(f"{len(pairs)} question/answer pairs but {len(answers)} answers: give one answer per pair.")
    return [contains_keyword(answer, answer_keywords(p["prompt"], p["response"])) for p, answer in zip(pairs, answers, strict=True)]


def answer_keyword_rate(model_path: str | Path, pairs: list[dict[str, str]], max_new_tokens: int = 48,
                        progress: bool = True):
    """One row per pair: the model's greedy answer, prompted as training shows the pairs, and whether it holds a keyword.

    Training sees the prompt's text followed by the response, so the model continues the bare prompt here (no
    chat template): before tuning that is unfamiliar, after it the format is learnt. The rate is ``rows['keyword'].mean()``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from helpers.qa.generation import TransformersGenerator

    generator = TransformersGenerator(str(model_path))
    answers = ["".join(generator.stream(p["prompt"], max_new_tokens)).strip()
               for p in tqdm(pairs, desc="answering held-out questions", disable=not progress)]
    return pd.DataFrame({"question": [p["prompt"][-200:] for p in pairs],
                         "keywords": [", ".join(answer_keywords(p["prompt"], p["response"])[:4]) for p in pairs],
                         "answer": answers, "keyword": keyword_hits(pairs, answers)})


def run_metrics(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME) -> dict[str, list[tuple[int, float]]]:
    """Every metric the latest MLflow run named ``run_name`` logged: name -> [(step, value), ...]."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs.mlflow_tracking_uri(cfg))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise NotReady(f"no MLflow experiment {EXPERIMENT!r} in {runs.mlflow_tracking_uri(cfg)}: {run_first(3)}")
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.runName = '{run_name}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise NotReady(f"no MLflow run named {run_name!r} in {runs.mlflow_tracking_uri(cfg)}: {run_first(3)}")
    run = found[0]
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics}


def throughput(result: runs.RunResult, knobs: LocalTraining,
               metrics: dict[str, list[tuple[int, float]]] | None = None) -> dict[str, float]:
    """Wall time and tokens/second of a finished local run: overall, and during training steps (speed_monitor)."""
    speed = {"wall_s": result.seconds, "tokens": knobs.tokens, "tokens_per_s": knobs.tokens / result.seconds}
    steady = [value for _, value in (metrics or {}).get("throughput/tokens_per_sec", [])]
    if steady:
        speed["train_tokens_per_s"] = sum(steady) / len(steady)
    return speed


def plot_metrics(metrics: dict[str, list[tuple[int, float]]]):
    """Training loss and validation perplexity against step, side by side (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    panels = (("loss/train/total", "training loss"), ("metrics/eval/LanguagePerplexity", "validation perplexity"))
    for ax, (key, title) in zip(axes, panels, strict=False):
        points = metrics.get(key, [])
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o" if len(points) < 20 else None)
        ax.set_title(title)
        ax.set_xlabel("batch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


