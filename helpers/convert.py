"""Step 4: turn the final Composer checkpoint of step 3 into a Hugging Face folder, and compare answers.

A Composer checkpoint holds the model's weights together with the training state (and, for a Hugging Face
model, its config and tokenizer). Composer's own ``write_huggingface_pretrained_from_composer_checkpoint`` — the
function LLM Foundry's ``scripts/inference/convert_composer_to_hf.py`` builds on — writes the ordinary Hugging
Face folder that transformers, LangChain and serving stacks load. Locally we call it directly; on the platform
``mcli_yamls/convert_checkpoint_to_huggingface.yaml`` runs LLM Foundry's script at the pinned tag.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from helpers import models, runs
from helpers.config import WorkshopConfig
from helpers.constants import FINETUNED_MODEL, NOTEBOOKS, READY_MARKER, run_first
from helpers.errors import CheckpointError, ConfigError
from helpers.files import read_json, staged_dir, write_json
from helpers.finetune import DEFAULT_RUN_NAME, checkpoint_folder, latest_checkpoint, perplexity
from helpers.models import finetuned_dir, is_ready

CONVERT_YAML = "convert_checkpoint_to_huggingface.yaml"
# Besides tensors and plain containers, a workshop checkpoint names only these (checked by the restricted loader).
SAFE_GLOBAL_NAMES = ("torch.torch_version.TorchVersion",)
QUESTIONS = (
    "What does Composer's Trainer class do?",
    "How do I write a dataset in MDS format with the streaming library?",
    "Which command trains a model with LLM Foundry?",
)


__all__ = ["CheckpointError", "composer_to_hf", "convert", "finetuned_dir", "finetuned_perplexity", "finetuned_scratch",
           "is_ready", "local_checkpoint", "side_by_side"]


def load_checkpoint_safely(checkpoint: str | Path) -> dict[str, Any]:
    """Load a Composer checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only.

    A checkpoint is a pickle, and a full unpickling runs whatever code the file names. The restricted loader
    refuses any file that names code outside the few types a checkpoint of this workshop holds, so a file from
    elsewhere is proven harmless (or refused) before composer's converter unpickles it fully.
    """
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"no Composer checkpoint at {checkpoint}: {run_first(3)}.")
    try:
        # Read the pickle's opcodes (nothing runs) for every code reference it holds.
        named = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint)
                 if g not in SAFE_GLOBAL_NAMES]
        if named:
            raise CheckpointError(
                f"{checkpoint} names code to run while loading ({', '.join(named[:5])}), which a checkpoint of this "
                f"workshop never does; it was not unpickled. Use a checkpoint written by {NOTEBOOKS[3]}.")
        from torch.torch_version import TorchVersion

        with torch.serialization.safe_globals([TorchVersion]):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{checkpoint} was refused by the restricted loader ({' '.join(str(err).split())[:200]}"
                              f"); it was not unpickled. Use a checkpoint written by {NOTEBOOKS[3]}.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{checkpoint} is not a readable Composer checkpoint ({type(err).__name__}: "
                              f"{str(err)[:160]}); {run_first(3)}.") from None
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise CheckpointError(f"{checkpoint} is not a Composer checkpoint (no 'state' section): {run_first(3)}.")
    return state


def checkpoint_summary(checkpoint: str | Path) -> dict[str, Any]:
    """What a Composer checkpoint holds: its top-level keys, the state's keys, and weight count and size."""
    import torch

    state = load_checkpoint_safely(checkpoint)
    weights = state["state"].get("model", {})
    tensors = [t for t in weights.values() if isinstance(t, torch.Tensor)]
    return {"top-level keys": sorted(state), "state keys": sorted(state["state"]),
            "weight tensors": len(tensors), "parameters": sum(t.numel() for t in tensors),
            "MB": round(Path(checkpoint).stat().st_size / 2**20, 1)}


def composer_to_hf(checkpoint: str | Path, output: Path, progress: bool = True) -> Path:
    """Convert one Composer checkpoint into a Hugging Face folder at ``output`` (temp folder, then rename).

    The checkpoint is first loaded with the restricted loader (nothing in it can run); the folder gets a
    generation setup for answering, not training: KV cache on, EOS and padding from the tokenizer, and a tokenizer
    whose longest input is the model's context rather than the training length.
    """
    from composer.models import write_huggingface_pretrained_from_composer_checkpoint
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = Path(checkpoint)
    load_checkpoint_safely(checkpoint)
    steps = tqdm(total=3, desc="Composer → Hugging Face", disable=not progress)
    start = time.perf_counter()
    with staged_dir(output) as tmp:
        steps.set_postfix_str("reading checkpoint")
        scratch = tmp / "scratch"  # composer unpacks the tokenizer into the working directory: keep it in here
        scratch.mkdir()
        try:
            with contextlib.chdir(scratch):
                write_huggingface_pretrained_from_composer_checkpoint(
                    str(checkpoint.resolve()), tmp.resolve(), local_checkpoint_save_location=scratch / "checkpoint.pt")
        except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, TypeError,
                OSError) as err:
            raise CheckpointError(f"{checkpoint} is not a readable Composer checkpoint of a Hugging Face model "
                                  f"({type(err).__name__}: {str(err)[:200]}); re-run notebooks/{NOTEBOOKS[3]}.") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        steps.update()
        # Re-save as safetensors with a generation config, the form every later step expects.
        steps.set_postfix_str("writing safetensors")
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(tmp)
        model.config.use_cache = True  # training turns the KV cache off; answering 20x slower without it
        model.generation_config.use_cache = True
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = None
        (tmp / "pytorch_model.bin").unlink(missing_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        # Training set the tokenizer's longest input to max_seq_len (128): every prompt longer than that printed
        # "Token indices sequence length is longer than the specified maximum …", though the model takes its whole
        # context. Only this key changes; the tokenizer files (and so its chat template) stay as trained.
        tokenizer_config = read_json(tmp / "tokenizer_config.json")
        if isinstance(tokenizer_config, dict):
            tokenizer_config["model_max_length"] = int(model.config.max_position_embeddings)
            write_json(tmp / "tokenizer_config.json", tokenizer_config)
        steps.update()
        steps.set_postfix_str("finishing")
        write_json(tmp / READY_MARKER, {"checkpoint": str(checkpoint), "seconds": time.perf_counter() - start})
    steps.update()
    steps.close()
    return output


def convert(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME, checkpoint: str | Path | None = None,
            progress: bool = True) -> Path | runs.RunResult:
    """Convert the run's final checkpoint: here with composer's function, or on the platform with the yaml."""
    output = finetuned_dir(cfg)
    if cfg.backend == "mcli":
        target = cfg.storage_path("models", FINETUNED_MODEL)
        values = {"CHECKPOINT_PATH": str(checkpoint or checkpoint_folder(cfg, run_name) + "/latest-rank0.pt"),
                  "HF_OUTPUT_FOLDER": target}
        return runs.run(CONVERT_YAML, cfg, f"convert-{run_name}", values=values, progress=progress)
    folder = composer_to_hf(checkpoint or local_checkpoint(cfg, run_name), output, progress)
    models.prepare_openvino(folder, progress=progress)  # the fast form that steps 5 and 6 answer with
    return folder


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
        raise CheckpointError(f"no Composer checkpoint at {remote}: {run_first(3)}") from None
    return local


def generate(model_path: str | Path, questions: tuple[str, ...] | list[str] = QUESTIONS,
             max_new_tokens: int = 60, engine: str = "openvino") -> list[str]:
    """Greedy answers of one model to each question, through its chat template (no retrieval), on ``engine``:
    the model's OpenVINO export (made once per model folder, as step 6 answers) or transformers."""
    # Loads LangChain: only needed for this comparison.
    from helpers.qa.generation import ENGINES, OpenVINOGenerator, TransformersGenerator

    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is unknown: use one of {', '.join(ENGINES)}.")
    gen = OpenVINOGenerator(str(model_path)) if engine == "openvino" else TransformersGenerator(str(model_path))
    return ["".join(gen.stream(gen.render([{"role": "user", "content": q}]), max_new_tokens)).strip()
            for q in questions]


def side_by_side(base_path: str | Path, finetuned_path: str | Path,
                 questions: tuple[str, ...] | list[str] = QUESTIONS, max_new_tokens: int = 60):
    """A table with one row per question: the base model's answer next to the finetuned model's."""
    import pandas as pd

    return pd.DataFrame({"question": list(questions),
                         "base": generate(base_path, questions, max_new_tokens),
                         "finetuned": generate(finetuned_path, questions, max_new_tokens)}).set_index("question")


def finetuned_scratch(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME) -> Path:
    """The run's final checkpoint as a scratch Hugging Face folder, runs/<run_name>/hf-eval (converted once per checkpoint)."""
    checkpoint = local_checkpoint(cfg, run_name)
    scratch = cfg.runs_dir / run_name / "hf-eval"
    marker = scratch / READY_MARKER
    if not marker.is_file() or marker.stat().st_mtime < checkpoint.stat().st_mtime:
        composer_to_hf(checkpoint, scratch, progress=False)
    return scratch


def finetuned_perplexity(cfg: WorkshopConfig, run_name: str = DEFAULT_RUN_NAME, **kwargs: Any) -> float:
    """Perplexity of the run's final checkpoint, converted to a scratch Hugging Face folder in runs/<run_name>/."""
    return perplexity(finetuned_scratch(cfg, run_name), cfg, **kwargs)
