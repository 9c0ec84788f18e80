"""Step 4: composer's converter turns a real Composer checkpoint into a Hugging Face folder that loads and
generates offline; a missing or corrupt checkpoint is an error naming its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import convert, finetune, models
from tests.test_finetune import RUN_NAME, tiny_cfg, tiny_run  # noqa: F401 (session fixtures: one tiny run)


def test_checkpoint_converts_to_a_folder_that_loads_and_generates(tiny_cfg, tiny_run, tmp_path) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = finetune.latest_checkpoint(finetune.checkpoint_folder(tiny_cfg, RUN_NAME))
    folder = convert.composer_to_hf(checkpoint, tmp_path / "finetuned", progress=False)
    assert convert.is_ready(folder) and (folder / "model.safetensors").is_file()
    assert not (tmp_path / "finetuned.tmp").exists() and not list(Path.cwd().glob("tokenizer-save-dir-*"))

    # The weights are the trained ones from the checkpoint, not the base model's.
    trained = convert.load_checkpoint_safely(checkpoint)["state"]["model"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(models.prepare_generator(tiny_cfg, progress=False))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[name], trained["model." + name])
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name]), "training changed nothing"

    # The tokenizer survived the trip: code round-trips exactly and generation stops at <|im_end|>.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    code = "def f(a, b):\n    return {'a': a, \"b\": b}  # ok?\n"
    assert tokenizer.decode(tokenizer(code)["input_ids"]) == code
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    # Set up for answering, not training: a training config says use_cache=False (every token would recompute
    # the prompt); the converted folder keeps the KV cache on, EOS from the tokenizer, no BOS.
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    assert config["use_cache"] is True and generation.get("use_cache", True) is True
    assert generation["eos_token_id"] == tokenizer.eos_token_id and generation.get("bos_token_id") is None
    # Training cut inputs at max_seq_len and its tokenizer says so; answering reads ~410-token prompts, and a tokenizer
    # limited to the training length warns on each ("Token indices sequence length is longer than …").
    assert tokenizer.model_max_length == config["max_position_embeddings"] > 1024, tokenizer.model_max_length
    answers = convert.generate(folder, convert.QUESTIONS[:1], max_new_tokens=12, engine="transformers")
    assert len(answers) == 1 and answers[0].strip()


def test_missing_checkpoint_names_the_path(tmp_path) -> None:
    missing = tmp_path / "checkpoints" / "ep0-ba9-rank0.pt"
    with pytest.raises(convert.CheckpointError, match=str(missing)):
        convert.composer_to_hf(missing, tmp_path / "out", progress=False)
    with pytest.raises(convert.CheckpointError, match=str(tmp_path / "checkpoints")):
        finetune.latest_checkpoint(tmp_path / "checkpoints")
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint_names_the_path_and_writes_nothing(tmp_path) -> None:
    corrupt = tmp_path / "ep0-ba2-rank0.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(convert.CheckpointError) as err:
        convert.composer_to_hf(corrupt, tmp_path / "out", progress=False)
    assert str(corrupt) in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()
    not_hf = tmp_path / "plain.pt"
    torch.save({"state": {"model": {}}}, not_hf)  # a torch file, but no Hugging Face model inside
    with pytest.raises(convert.CheckpointError, match=str(not_hf)):
        convert.composer_to_hf(not_hf, tmp_path / "out", progress=False)


@pytest.mark.slow
def test_notebook_writes_the_finetuned_folder_later_steps_load(series_runner, work_dir) -> None:
    from helpers.config import load_config

    series_runner.run("04_convert_to_hf.ipynb")
    cfg = load_config(work_dir=work_dir)
    folder = convert.finetuned_dir(cfg)
    assert folder == cfg.models_dir / "finetuned" and convert.is_ready(folder)
    answers = convert.generate(folder, convert.QUESTIONS[:1], max_new_tokens=8)
    assert answers[0].strip()
