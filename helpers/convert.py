"""Step 4: turn the final Composer checkpoint of step 3 into a Hugging Face folder, and compare answers.

A Composer checkpoint holds the model's weights together with the training state (and, for a Hugging Face
model, its config and tokenizer). Composer's own ``write_huggingface_pretrained_from_composer_checkpoint`` — the
function LLM Foundry's ``scripts/inference/convert_composer_to_hf.py`` builds on — writes the ordinary Hugging
Face folder that transformers, LangChain and serving stacks load. Locally we call it directly; on the platform
``mcli_yamls/convert_checkpoint_to_huggingface.yaml`` runs LLM Foundry's script at the pinned tag.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import time
import zipfile
from pathlib import Path

from helpers import runs
from helpers.config import WorkshopConfig
from helpers.finetune import DEFAULT_RUN_NAME, checkpoint_folder, latest_checkpoint

CONVERT_YAML = "convert_checkpoint_to_huggingface.yaml"
READY_MARKER = ".workshop-ready.json"
QUESTIONS = (
    "What does Composer's Trainer class do?",
    "How do I write a dataset in MDS format with the streaming library?",
    "Which command trains a model with LLM Foundry?",
)


class CheckpointError(ValueError):
    """A checkpoint is missing or cannot be read as a Composer checkpoint; the message names the path."""


def finetuned_dir(cfg: WorkshopConfig) -> Path:
    """Where the finetuned Hugging Face folder lives: ``<work_dir>/models/finetuned`` (later steps load it)."""
    return cfg.models_dir / "finetuned"


def is_ready(folder: Path) -> bool:
    """True when ``folder`` holds a complete conversion (its marker is written last)."""
    return (folder / READY_MARKER).is_file()


def composer_to_hf(checkpoint: str | Path, output: Path, progress: bool = True) -> Path:
    """Convert one Composer checkpoint into a Hugging Face folder at ``output`` (temp folder, then rename)."""
    from composer.models import write_huggingface_pretrained_from_composer_checkpoint
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"no Composer checkpoint at {checkpoint}: run notebooks/03_finetune.ipynb first")
    steps = tqdm(total=3, desc="Composer → Hugging Face", disable=not progress)
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    steps.set_postfix_str("reading checkpoint")
    scratch = tmp / "scratch"  # composer unpacks the tokenizer into the working directory: keep it in here
    scratch.mkdir()
    try:
        with contextlib.chdir(scratch):
            write_huggingface_pretrained_from_composer_checkpoint(str(checkpoint.resolve()), tmp.resolve(),
                                                                  local_checkpoint_save_location=scratch / "checkpoint.pt")
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, TypeError, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{checkpoint} is not a readable Composer checkpoint of a Hugging Face model "
                              f"({type(err).__name__}: {str(err)[:200]}); re-run notebooks/03_finetune.ipynb") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps.update()
    # Re-save as safetensors with a generation config, the form every later step expects.
    steps.set_postfix_str("writing safetensors")
    tokenizer = AutoTokenizer.from_pretrained(tmp)
    model = AutoModelForCausalLM.from_pretrained(tmp)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    (tmp / "pytorch_model.bin").unlink()
    model.save_pretrained(tmp, safe_serialization=True)
    steps.update()
    steps.set_postfix_str("finishing")
    (tmp / READY_MARKER).write_text(json.dumps({"checkpoint": str(checkpoint), "seconds": time.perf_counter() - start}))
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    steps.update()
    steps.close()
    return output


def convert(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME, checkpoint: str | Path | None = None,
            progress: bool = True) -> Path | runs.RunResult:
    """Convert the run's final checkpoint: here with composer's function, or on the platform with the yaml."""
    output = finetuned_dir(cfg)
    if cfg.backend == "mcli":
        target = cfg.storage_path("models", "finetuned")
        values = {"CHECKPOINT_PATH": str(checkpoint or checkpoint_folder(cfg, run_name) + "/latest-rank0.pt"),
                  "HF_OUTPUT_FOLDER": target}
        return runs.run(CONVERT_YAML, cfg, f"convert-{run_name}", values=values, progress=progress)
    return composer_to_hf(checkpoint or local_checkpoint(cfg, run_name), output, progress)


def local_checkpoint(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME) -> Path:
    """The run's latest checkpoint as a local file, downloaded into the work folder when storage is remote."""
    if not cfg.is_remote:
        return latest_checkpoint(checkpoint_folder(cfg, run_name))
    from composer.utils import get_file

    remote = checkpoint_folder(cfg, run_name) + "/latest-rank0.pt"
    local = cfg.work_dir / "cache" / "checkpoints" / run_name / "latest-rank0.pt"
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        get_file(remote, str(local), overwrite=True)
    except FileNotFoundError:
        raise CheckpointError(f"no Composer checkpoint at {remote}: run notebooks/03_finetune.ipynb first") from None
    return local


def generate(model_path: str | Path, questions: tuple[str, ...] | list[str] = QUESTIONS,
             max_new_tokens: int = 60) -> list[str]:
    """Greedy answers of one model to each question, through its chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
    answers = []
    for question in questions:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def side_by_side(base_path: str | Path, finetuned_path: str | Path,
                 questions: tuple[str, ...] | list[str] = QUESTIONS, max_new_tokens: int = 60):
    """A table with one row per question: the base model's answer next to the finetuned model's."""
    import pandas as pd

    return pd.DataFrame({"question": list(questions),
                         "base": generate(base_path, questions, max_new_tokens),
                         "finetuned": generate(finetuned_path, questions, max_new_tokens)}).set_index("question")
