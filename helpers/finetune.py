"""Step 3: domain-tune the generator on the code base with LLM Foundry, and measure what it bought.

The training itself is ``mcli_yamls/finetune/finetune_composer_codebase.yaml`` run by ``helpers.runs``: on the
platform as written (MPT-7B, GPUs, FSDP, bf16), here with CPU-sized overrides (the embedded SmolLM2-135M,
fp32, short sequences, tens of batches). Perplexity on the held-out test split, before and after, says
whether the model now finds the code base less surprising; the MLflow store holds the curves to plot.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import runs
from helpers.config import WorkshopConfig, load_config
from helpers.constants import QA_DATASET, SPLITS, TEXT_DATASET, run_first
from helpers.errors import CheckpointError, DataNotReady, NotReady

FINETUNE_YAML = "finetune/finetune_composer_codebase.yaml"
QA_YAML = "finetune/finetune_qa.yaml"      # instruction tuning on step 2's prompt/response pairs
DATA_NAME = TEXT_DATASET
QA_DATA_NAME = QA_DATASET
EXPERIMENT = "codebase-qa-workshop"
DEFAULT_RUN_NAME = "finetune-composer-codebase"

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


def settings_table(cfg: WorkshopConfig, model_path: str, knobs: LocalTraining, run_name: str = DEFAULT_RUN_NAME):
    """What the local overrides change: each setting as the platform yaml has it (MPT-7B, 8 GPUs) and as run here."""
    import pandas as pd

    platform_cfg = load_config(work_dir=cfg.work_dir, backend="mcli", storage_root="s3://BUCKET/workshop",
                               cluster="CLUSTER", generator_model="mosaicml/mpt-7b")
    platform = runs.render(FINETUNE_YAML, {**runs.workshop_values(platform_cfg, run_name), "DATA_NAME_MDS": DATA_NAME})
    rows = []
    for dotted, value in local_overrides(cfg, model_path, knobs, run_name).items():
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


def perplexity(model_path: str | Path, cfg: WorkshopConfig, split: str = "test", max_seq_len: int = 256,
               max_samples: int = 64, batch_size: int = 8, data_name: str = DATA_NAME,
               progress: bool = True) -> float:
    """exp(mean next-token loss) of a Hugging Face model on the first ``max_samples`` samples of an MDS split."""
    import numpy as np
    import torch
    from streaming import StreamingDataset
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    path = mds_split(cfg, split, data_name)
    if cfg.is_remote:
        dataset = StreamingDataset(remote=path, local=str(cfg.work_dir / "cache" / "mds" / data_name / split),
                                   shuffle=False, batch_size=batch_size)
    else:
        if not (Path(path) / "index.json").is_file():
            raise DataNotReady(f"no MDS dataset (index.json) in {path}: {run_first(2)}")
        dataset = StreamingDataset(local=path, shuffle=False, batch_size=batch_size)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), torch_dtype=torch.float32).eval()
    count = min(max_samples, len(dataset))
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in tqdm(range(0, count, batch_size), desc=f"perplexity on {split}", disable=not progress):
            rows = [torch.tensor(np.asarray(dataset[i]["tokens"][:max_seq_len], dtype=np.int64))
                    for i in range(start, min(start + batch_size, count))]
            ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)
            mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            total_nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                           ignore_index=-100, reduction="sum").item()
            total_tokens += int((labels != -100).sum())
    if total_tokens == 0:
        raise DataNotReady(f"the {split} split at {path} has no tokens to score")
    return math.exp(total_nll / total_tokens)


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


