"""Step 3: a real (tiny) LLM Foundry run on CPU through the local backend, its MLflow metrics and perplexity.

The training data is a small MDS written here the way step 2 writes it (a ``tokens`` column of the generator's
token ids, concatenated source files), from the source of the installed ``composer`` package, so this module
does not depend on the notebooks having run.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import finetune, mds, models, qa_dataset, repos, series
from helpers.config import load_config
from helpers.errors import ConfigError, DataError, SourceUnavailable
from tests.conftest import SMOKE_PARAMETERS

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
    with pytest.raises(finetune.DataNotReady, match="no prompt/response pairs"):
        finetune.held_out_pairs(tiny_cfg, data_name="codebase")


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


# ---------------------------------------------------------------------------------------------- question/answer data


@pytest.fixture(scope="module")
def qa_cfg(tmp_path_factory, generator_dir):
    """Real docstring question/answer pairs (about composer's callbacks), written to MDS as step 2 writes them."""
    import composer

    root = tmp_path_factory.mktemp("qa-source")
    shutil.copytree(Path(composer.__file__).parent / "callbacks", root / "composer" / "callbacks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    manifest = root / "manifest.yaml"
    manifest.write_text(f"sources: [{{name: composer, local: {root}}}]\n")
    work = tmp_path_factory.mktemp("qa-work")
    (work / "models").symlink_to(generator_dir.parent, target_is_directory=True)
    cfg = load_config(work_dir=work, manifest=str(manifest))
    repos.download_sources(cfg, progress=False)
    path, _ = qa_dataset.build_qa_jsonl(cfg)
    mds.convert_jsonl(cfg, path, finetune.QA_DATA_NAME, progress=False)
    return cfg


def test_answer_keyword_rate_on_real_docstring_pairs(qa_cfg) -> None:
    pairs = finetune.held_out_pairs(qa_cfg, split="train", n=8)
    assert len(pairs) == 8 and len({p["prompt"] for p in pairs}) == 8
    # The reference answer holds its own keywords; an answer that only repeats the question holds none.
    assert finetune.keyword_hits(pairs, [p["response"] for p in pairs]) == [True] * 8
    assert finetune.keyword_hits(pairs, [p["prompt"] for p in pairs]) == [False] * 8
    # Another pair's answer mostly misses: the rate tells right answers from fluent wrong ones.
    shifted = [pairs[(i + 4) % 8]["response"] for i in range(8)]
    assert sum(finetune.keyword_hits(pairs, shifted)) <= 4
    where = next(p for p in pairs if p["prompt"].startswith("Where is"))
    name = re.search(r"`(.+?)`", where["prompt"]).group(1)
    keywords = finetune.answer_keywords(where["prompt"], where["response"])
    assert name not in keywords and any(k.endswith(".py") for k in keywords), keywords
    # CoQA's answers are spans of the story in the prompt: then its words count anyway.
    assert finetune.answer_keywords("The cat was white.\n\nQ: What colour was the cat?\nA:", " white") == ["white"]
    with pytest.raises(DataError, match="one answer per pair"):
        finetune.keyword_hits(pairs, [])


def test_question_answer_perplexity_scores_the_answers_and_the_model_answers(qa_cfg, generator_dir) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(generator_dir)
    ids, labels = finetune.scored_sequence({"prompt": "What is `x`?", "response": " It is one."}, tokenizer, 64)
    prompt = len(tokenizer("What is `x`?")["input_ids"])
    assert labels[:prompt] == [-100] * prompt and labels[prompt:] == ids[prompt:] and ids[-1] == tokenizer.eos_token_id
    ppl = finetune.perplexity(generator_dir, qa_cfg, "validation", max_seq_len=128, max_samples=8,
                              data_name=finetune.QA_DATA_NAME, progress=False)
    assert math.isfinite(ppl) and 1.0 < ppl < 1000.0
    pairs = finetune.held_out_pairs(qa_cfg, split="validation", n=2)
    rows = finetune.answer_keyword_rate(generator_dir, pairs, max_new_tokens=8, progress=False)
    assert list(rows.columns) == ["question", "keywords", "answer", "keyword"] and len(rows) == 2
    assert rows["answer"].str.len().gt(0).all() and rows["keyword"].isin([True, False]).all()


def test_coqa_offline_fails_fast_naming_the_offline_dataset(tmp_path) -> None:
    with socket.socket() as silent:  # accepts the connection, never answers: a network that hangs
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        manifest = tmp_path / "online.yaml"
        manifest.write_text(f"sources: [{{name: x, local: {tmp_path}}}]\nqa_datasets:\n  - {{name: coqa, url: "
                            f"'http://127.0.0.1:{silent.getsockname()[1]}/coqa.json', format: coqa}}\n")
        cfg = load_config(work_dir=tmp_path / "work")
        start = time.perf_counter()
        with pytest.raises(SourceUnavailable, match="dataset='codebase_qa'"):
            finetune.prepare_coqa(cfg, 512, manifest=str(manifest), timeout_s=1)
        assert time.perf_counter() - start < 10
    with pytest.raises(ConfigError, match="codebase_qa"):
        finetune.training_data("pypi")


def test_coqa_keeps_the_pairs_that_fit_the_sequence(tmp_path, generator_dir) -> None:
    """LLM Foundry's streaming loader stops on a pair longer than max_seq_len: a local CoQA run keeps those that fit."""
    from transformers import AutoTokenizer

    stories = [{"id": f"s{i}", "story": "Tom has a red ball. " * (8 if i % 3 == 2 else 1 + i % 3),
                "questions": [{"input_text": "What does Tom have?"}, {"input_text": "What colour is it?"}],
                "answers": [{"input_text": "a ball"}, {"input_text": "red"}]} for i in range(40)]
    raw = tmp_path / "coqa.json"
    raw.write_text(json.dumps({"data": stories}))
    work = tmp_path / "work"
    work.mkdir()
    (work / "models").symlink_to(generator_dir.parent, target_is_directory=True)
    cfg = load_config(work_dir=work)
    total = qa_dataset.coqa_to_jsonl(raw, qa_dataset.qa_path(cfg, "coqa"))  # what step 2 writes when online
    assert finetune.prepare_coqa(cfg, 48, progress=False) == "coqa_48"
    tokenizer = AutoTokenizer.from_pretrained(generator_dir)
    kept = [split[i] for split in (finetune.open_split(cfg, s, "coqa_48") for s in finetune.SPLITS)
            for i in range(len(split))]
    assert 30 <= len(kept) < total
    assert all(len(tokenizer(p["prompt"] + p["response"])["input_ids"]) < 48 for p in kept)
    with pytest.raises(DataError, match="max_seq_len to 512"):
        finetune.prepare_coqa(cfg, 8, progress=False)


@pytest.mark.slow
def test_notebook_03_tunes_on_the_docstring_pairs(series_runner, work_dir) -> None:
    """03's smoke run with dataset="codebase_qa": finetune_qa.yaml on step 2's pairs, measured before and after."""
    series_runner.run("02_convert_to_mds.ipynb")
    notebook = next(p for p in series.notebooks() if p.name == "03_finetune.ipynb")
    params = {"work_dir": str(work_dir), **SMOKE_PARAMETERS[notebook.name], "dataset": "codebase_qa", "qa_pairs": 3,
              "max_new_tokens": 12}
    result = series.run_notebook(notebook, series_runner.output_dir / "codebase_qa", params)
    assert result.status == "ok", f"{result.error} (executed copy: {result.output})"
    cfg = load_config(work_dir=work_dir)
    run = finetune.DATASETS["codebase_qa"].run_name
    assert finetune.latest_checkpoint(finetune.checkpoint_folder(cfg, run)).name == "ep0-ba3-rank0.pt"
    used = yaml.safe_load((cfg.runs_dir / run / "parameters.yaml").read_text())
    assert used["train_loader"]["name"] == "finetuning"
    assert used["train_loader"]["dataset"]["remote"] == cfg.storage_path("mds", "codebase_qa")
    assert finetune.run_metrics(cfg, run)["loss/train/total"]
    cells = json.loads(result.output.read_text())["cells"]
    shown = "".join(str(o.get("text", "")) + json.dumps(o.get("data", {})) for c in cells for o in c.get("outputs", []))
    assert "answer keyword rate" in shown and "after tuning on codebase_qa" in shown
