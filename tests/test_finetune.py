"""Step 3: a real (tiny) LLM Foundry run on CPU through the local backend, its MLflow metrics and perplexity.

The training data is a small MDS written here the way step 2 writes it (a ``tokens`` column of the generator's
token ids, concatenated source files), from the source of the installed ``composer`` package, so this module
does not depend on the notebooks having run.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import finetune, models
from helpers.config import load_config

TINY = finetune.LocalTraining(max_batches=3, batch_size=2, max_seq_len=64, eval_interval=3, eval_batches=1)
RUN_NAME = "test-tiny-finetune"


def write_code_mds(cfg, samples_per_split: int = 24, seq_len: int = 128) -> None:
    """A train/validation/test MDS of concatenated composer source files, as step 2 lays it out."""
    import composer
    from streaming import MDSWriter
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.prepare_generator(cfg, progress=False))
    files = sorted(Path(composer.__file__).parent.rglob("*.py"))
    random.Random(cfg.seed).shuffle(files)
    for split_index, split in enumerate(finetune.SPLITS):
        ids: list[int] = []
        for path in files[split_index::3]:
            ids += tokenizer(path.read_text())["input_ids"] + [tokenizer.eos_token_id]
            if len(ids) >= samples_per_split * seq_len:
                break
        with MDSWriter(out=finetune.mds_split(cfg, split), columns={"tokens": "ndarray:int32"}, compression="zstd") as out:
            for start in range(0, samples_per_split * seq_len, seq_len):
                out.write({"tokens": np.asarray(ids[start:start + seq_len], dtype=np.int32)})


@pytest.fixture(scope="session")
def tiny_cfg(work_dir, tmp_path_factory):
    """The session's work folder (models cached there) with its own storage holding the code MDS."""
    cfg = load_config(work_dir=work_dir, storage_root=str(tmp_path_factory.mktemp("finetune-storage")))
    write_code_mds(cfg)
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tiny_cfg):
    """Three optimizer steps (the first warms up from lr 0) of the finetuning yaml, run locally by `llmfoundry train` (about a minute)."""
    model_path = models.prepare_generator(tiny_cfg, progress=False)
    return finetune.train(tiny_cfg, model_path, TINY, run_name=RUN_NAME, progress=False)


def test_local_training_writes_a_checkpoint_and_mlflow_metrics(tiny_cfg, tiny_run) -> None:
    assert tiny_run.returncode == 0 and tiny_run.backend == "local"
    assert tiny_run.outputs["save_folder"] == finetune.checkpoint_folder(tiny_cfg, RUN_NAME)
    checkpoint = finetune.latest_checkpoint(finetune.checkpoint_folder(tiny_cfg, RUN_NAME))
    assert checkpoint.name == "ep0-ba3-rank0.pt" and checkpoint.stat().st_size > 100e6

    params = yaml.safe_load(tiny_run.parameters_path.read_text())
    assert params["precision"] == "fp32" and "fsdp_config" not in params and params["max_seq_len"] == 64
    assert params["model"]["pretrained_model_name_or_path"] == models.prepare_generator(tiny_cfg, progress=False)
    assert params["train_loader"]["dataset"]["local"] == tiny_cfg.storage_path("mds", "codebase")
    assert params["loggers"]["mlflow"]["tracking_uri"].startswith("file://")

    metrics = finetune.run_metrics(tiny_cfg, RUN_NAME)
    losses = metrics["loss/train/total"]
    assert [step for step, _ in losses] == [0, 1, 2] and all(0 < v < 20 for _, v in losses)
    assert metrics["metrics/eval/LanguagePerplexity"], "no validation perplexity was logged"
    figure = finetune.plot_metrics(metrics)
    assert len(figure.axes) == 2 and figure.axes[0].lines[0].get_xydata().shape == (3, 2)
    speed = finetune.throughput(tiny_run, TINY, metrics)
    assert speed["tokens"] == 3 * 2 * 64 and 0 < speed["tokens_per_s"] < speed["train_tokens_per_s"]


def test_perplexity_of_the_base_model_on_code(tiny_cfg) -> None:
    model_path = models.prepare_generator(tiny_cfg, progress=False)
    ppl = finetune.perplexity(model_path, tiny_cfg, "test", max_seq_len=64, max_samples=8, progress=False)
    # A model trained on web text and code finds Python far from random (a uniform guess scores 49152).
    assert math.isfinite(ppl) and 1.0 < ppl < 200.0


def test_missing_data_stops_before_training(tmp_path) -> None:
    cfg = load_config(work_dir=tmp_path / "work")
    with pytest.raises(finetune.DataNotReady) as err:
        finetune.train(cfg, "unused-model-path", TINY, run_name="never")
    assert cfg.storage_path("mds", "codebase", "train") in str(err.value) and "02_convert_to_mds" in str(err.value)
    assert not (cfg.runs_dir / "never").exists()
    with pytest.raises(finetune.DataNotReady, match="index.json"):
        finetune.perplexity("unused-model-path", cfg)


def test_cpu_profile_for_the_qa_yaml_streams_into_a_fresh_cache(tmp_path) -> None:
    cfg = load_config(work_dir=tmp_path / "work")
    overrides = finetune.local_overrides(cfg, "/models/smol", TINY, "qa-run", finetune.QA_DATA_NAME, finetune.QA_YAML)
    from helpers import runs

    spec = runs.render(finetune.QA_YAML, {**runs.workshop_values(cfg, "qa-run"), "MODEL_NAME": "/models/smol",
                                          "DATA_NAME_MDS": finetune.QA_DATA_NAME}, overrides, backend="local")
    dataset = spec["parameters"]["train_loader"]["dataset"]
    assert spec["parameters"]["train_loader"]["name"] == "finetuning"
    assert dataset["remote"] == cfg.storage_path("mds", "codebase_qa")
    assert dataset["local"] == str(cfg.work_dir / "cache" / "mds" / "codebase_qa" / "qa-run")
    assert "packing_ratio" not in dataset and dataset["max_seq_len"] == TINY.max_seq_len
    assert spec["parameters"]["precision"] == "fp32" and "fsdp_config" not in spec["parameters"]
    assert spec["compute"]["cluster"] == "<CLUSTER>", "a local run leaves the platform fields alone"
