"""Generators: whatever turns a rendered prompt into text, behind one small protocol.

Every generator renders chat messages with the model's own template (``render``), counts tokens, and streams
the answer piece by piece (``stream``), so the chain and the panel do not care whether the model runs in this
process or behind the step-5 HTTP server.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from helpers import deploy, models
from helpers.config import WorkshopConfig
from helpers.errors import ModelNotAvailable, QAError

GENERATOR_CHOICES = ("base", "finetuned", "endpoint")
ENGINES = ("openvino", "transformers")
DEFAULT_ENGINE = "openvino"  # ~4x transformers fp32 on 2 cores, the same tokens (benchmarks/bench_answer.py)
REPETITION_PENALTY = 1.1


class Generator(Protocol):
    """What the chain needs from a model."""

    tokenizer: Any  # a Hugging Face tokenizer: counts tokens and renders the chat template
    max_positions: int  # the longest prompt + answer the model takes, in tokens
    constrains: bool  # whether ``stream`` honours ``pattern`` (constrained decoding)

    def render(self, messages: list[dict[str, str]], answer_prefix: str = "") -> str:
        """The chat-template text the model continues (with an optional start of the assistant's answer)."""

    def stream(self, prompt: str, max_new_tokens: int = 64, pattern: str = "") -> Iterator[str]:
        """Yield pieces of the answer as the model produces them; with ``pattern`` (a regular expression), the
        answer is decoded so that it matches it (only where ``constrains`` is True)."""


class _ChatTemplate:
    """Rendering and counting with a Hugging Face tokenizer's chat template (shared by every generator)."""

    tokenizer: Any

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)

    def render(self, messages: list[dict[str, str]], answer_prefix: str = "") -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + answer_prefix


def load_tokenizer(folder: str) -> Any:
    """The tokenizer of a model folder, or ModelNotAvailable naming the folder."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ModelNotAvailable(f"the tokenizer in {folder} does not load ({str(err)[:160]}): prepare the model "
                                "again (00_setup.ipynb, or 04_convert_to_hf.ipynb for the finetuned one).") from None


class TransformersGenerator(_ChatTemplate):
    """A Hugging Face model in this process with transformers: greedy decoding with a KV cache (no constraints)."""

    constrains = False

    def __init__(self, folder: str, threads: int | None = None, dtype: str = "float32"):
        import torch
        from transformers import AutoModelForCausalLM

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = load_tokenizer(folder)
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
        except (OSError, ValueError) as err:
            raise ModelNotAvailable(f"the model folder {folder} does not load ({str(err)[:160]}); prepare it again "
                                    "(00_setup.ipynb, or 04_convert_to_hf.ipynb for the finetuned one).") from None
        model.config.use_cache = True  # a training config may say False: every token would recompute the prompt
        self.model = model.eval()
        self.folder = folder
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()

    def stream(self, prompt: str, max_new_tokens: int = 64, pattern: str = "") -> Iterator[str]:
        """Yield decoded text pieces as the model produces them (generation runs in a background thread)."""
        import torch
        from transformers import TextIteratorStreamer

        if pattern:
            raise QAError("the transformers engine cannot constrain an answer to a pattern: use engine='openvino'.")

        # The template's markers must become control tokens here; text from files was defused by the chain first.
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=False,
                                        repetition_penalty=REPETITION_PENALTY,
                                        pad_token_id=self.tokenizer.pad_token_id)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]


def _bad_pattern(pattern: str, reason: str) -> QAError:
    return QAError(f"pattern {pattern!r} is not a regular expression the engine can follow ({reason}); "
                   "qa.answer_pattern(names) makes one that is.")


def check_pattern(pattern: str) -> None:
    """QAError naming ``pattern`` when Python's ``re`` cannot compile it. Checked before an engine sees it, in this
    process or on the step-5 server: after two patterns the engine rejected in a row, its next answer drifted."""
    if pattern:
        try:
            re.compile(pattern)
        except re.error as err:
            raise _bad_pattern(pattern, str(err)) from None


class OpenVINOGenerator(_ChatTemplate):
    """The model's int8 OpenVINO export run by openvino-genai: the fastest CPU engine measured for it.

    The prompt is rendered and tokenized with the Hugging Face tokenizer (so the token ids are exactly those
    transformers would see) and handed over as ids; pieces of text stream back through a callback. A ``pattern``
    becomes openvino-genai's structured output (a regular expression the answer must match, enforced token by token).
    """

    constrains = True

    def __init__(self, hf_folder: str, threads: int | None = None):
        import openvino_genai as ov_genai

        self.folder = str(models.prepare_openvino(hf_folder, progress=False))
        self.tokenizer = load_tokenizer(hf_folder)
        properties: dict[str, Any] = {"CACHE_DIR": str(Path(self.folder) / ".ov-cache")}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        try:
            self.pipeline = ov_genai.LLMPipeline(self.folder, "CPU", **properties)
        except RuntimeError as err:
            raise ModelNotAvailable(f"the OpenVINO model in {self.folder} does not load ({str(err)[:160]}); delete "
                                    "that folder and it is exported again.") from None
        config = json.loads((Path(hf_folder) / "config.json").read_text())
        self.max_positions = int(config.get("max_position_embeddings", 2048))
        self._lock = threading.Lock()

    def _config(self, max_new_tokens: int, pattern: str = "") -> Any:
        import openvino_genai as ov_genai

        config = self.pipeline.get_generation_config()
        config.max_new_tokens = max_new_tokens
        config.do_sample = False
        config.repetition_penalty = REPETITION_PENALTY
        config.eos_token_id = self.tokenizer.eos_token_id
        config.stop_token_ids = {self.tokenizer.eos_token_id}
        config.apply_chat_template = False  # the prompt is rendered already
        if pattern:
            config.structured_output_config = ov_genai.StructuredOutputConfig(regex=pattern)
        return config

    def stream(self, prompt: str, max_new_tokens: int = 64, pattern: str = "") -> Iterator[str]:
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        check_pattern(pattern)
        ids = np.asarray([self.tokenizer(prompt, add_special_tokens=False).input_ids], dtype=np.int64)
        inputs = ov_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        pieces: queue.Queue[str | None] = queue.Queue()
        errors: list[BaseException] = []

        def on_text(piece: str) -> Any:
            pieces.put(piece)
            return ov_genai.StreamingStatus.RUNNING

        def work() -> None:
            try:
                with self._lock:
                    self.pipeline.generate(inputs, self._config(max_new_tokens, pattern), on_text)
            except RuntimeError as err:
                # xgrammar compiles the pattern inside generate: "…/regex_converter.cc:75: Regex parsing error …"
                grammar = re.search(r"/(?:regex_converter|grammar_parser)\.cc:\d+: (.*)", str(err)) if pattern else None
                errors.append(_bad_pattern(pattern, grammar.group(1).strip()) if grammar else err)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(err)
            pieces.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (piece := pieces.get()) is not None:
            yield piece
        if errors:
            raise errors[0]


class EndpointGenerator(_ChatTemplate):
    """The step-5 model server: the prompt is rendered here and sent to its /invocations route (the server runs
    openvino-genai, so it takes a ``pattern`` too)."""

    constrains = True

    def __init__(self, url: str, template_folder: str):
        self.url = url.rstrip("/")
        self.tokenizer = load_tokenizer(template_folder)
        self.max_positions = 8192

    def stream(self, prompt: str, max_new_tokens: int = 64, pattern: str = "") -> Iterator[str]:
        check_pattern(pattern)
        yield deploy.query(self.url, prompt, max_new_tokens=max_new_tokens, pattern=pattern)


def model_choices(cfg: WorkshopConfig) -> dict[str, str]:
    """Label -> generator choice for the models available now: 'base', and 'finetuned' once step 4 ran."""
    choices = {"base": "base"}
    if models.finetuned_ready(cfg):
        choices["finetuned"] = "finetuned"
    return choices


_GENERATORS: dict[tuple, Generator] = {}


def generator(cfg: WorkshopConfig, choice: str = "base", endpoint_url: str = "",
              engine: str = DEFAULT_ENGINE) -> Generator:
    """A cached generator: 'base' (the embedded model), 'finetuned' (step 4) or 'endpoint' (step 5's server).

    Local models run on ``engine``: 'openvino' (their int8 OpenVINO export, made once) or 'transformers'.
    """
    if engine not in ENGINES:
        raise QAError(f"engine {engine!r} is unknown: use one of {', '.join(ENGINES)}.")
    if choice not in GENERATOR_CHOICES:
        raise QAError(f"model {choice!r} is unknown: use one of {', '.join(GENERATOR_CHOICES)}.")
    if choice == "endpoint":
        if not endpoint_url:
            raise QAError("choice 'endpoint' needs the server's URL (see 05_deploy.ipynb), e.g. http://127.0.0.1:5001.")
        key: tuple = ("endpoint", endpoint_url)
        if key not in _GENERATORS:
            _GENERATORS[key] = EndpointGenerator(endpoint_url, models.prepare_generator(cfg, progress=False))
        return _GENERATORS[key]
    folder = models.model_folder(cfg, choice)
    weights = Path(folder) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    if not Path(folder).is_dir():
        engine = "transformers"  # a Hub model (e.g. mosaicml/mpt-7b on a GPU machine) has no local folder to export
    key = (engine, folder, stamp)  # a re-converted model is a new generator
    if key not in _GENERATORS:
        _GENERATORS[key] = OpenVINOGenerator(folder) if engine == "openvino" else TransformersGenerator(folder)
    return _GENERATORS[key]
