"""helpers.qa.generation: choosing a generator, and the generation setup of a model folder."""

from __future__ import annotations

import re

import pytest

from helpers import deploy, models, qa
from helpers.config import load_config
from helpers.errors import ModelNotAvailable


def test_unknown_or_missing_generators_are_named(tmp_path, generator_dir) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / generator_dir.name).symlink_to(generator_dir, target_is_directory=True)
    cfg = load_config(work_dir=tmp_path)  # the base model only: step 4 has not run here
    with pytest.raises(qa.QAError, match="'gpt-5' is unknown"):
        qa.generator(cfg, "gpt-5")
    with pytest.raises(qa.QAError, match="needs the server's URL"):
        qa.generator(cfg, "endpoint")
    with pytest.raises(ModelNotAvailable, match="04_convert_to_hf"):
        qa.generator(cfg, "finetuned")
    assert qa.model_choices(cfg) == {"base": "base"}


def test_base_generator_streams_greedy_text(tiny_index) -> None:
    cfg, _, _ = tiny_index
    gen = qa.generator(cfg, "base")
    assert gen is qa.generator(cfg, "base"), "generators are cached"
    prompt = gen.render([{"role": "user", "content": "Name a Python keyword."}])
    first = "".join(gen.stream(prompt, 8))
    assert first.strip() and first == "".join(gen.stream(prompt, 8)), "greedy decoding is deterministic"


def test_a_pattern_constrains_what_the_model_writes(tiny_index, capfd) -> None:
    cfg, _, _ = tiny_index
    gen = qa.generator(cfg, "base")
    prompt = gen.render([{"role": "user", "content": "Which function downloads a shard? One sentence."}])
    pattern = qa.answer_pattern([["download_shard", "S3Downloader.fetch"], ["evict"]])
    capfd.readouterr()
    text = "".join(gen.stream(prompt, 16, pattern=pattern))
    assert qa.fits_pattern(text, pattern), text  # the sentence may be cut short at 16 tokens
    assert "Warning" not in capfd.readouterr().err, "the engine compiles the chain's patterns without complaint"
    assert text.split("`")[1] in ("download_shard", "S3Downloader.fetch") and text.count("`") == 2
    free = "".join(gen.stream(prompt, 16))
    assert not qa.fits_pattern(free, pattern), "without a pattern the model writes freely"
    # Python's re rejects the first two before the engine sees them; the engine itself rejects the third.
    for bad, reason in (("(((", "missing \\)"), ("`[z-a]`", "bad character range"), ("a[\n]b", "newline")):
        with pytest.raises(qa.QAError, match=f"pattern {re.escape(repr(bad))} is not a regular expression .*{reason}"):
            "".join(gen.stream(prompt, 4, pattern=bad))
    assert "".join(gen.stream(prompt, 16, pattern=pattern)) == text, "the generator still works after a bad pattern"
    # A client of the step-5 server checks the same way before sending anything (no server runs at this URL).
    endpoint = qa.EndpointGenerator(f"http://127.0.0.1:{deploy.free_port()}", models.prepare_generator(cfg, progress=False))
    with pytest.raises(qa.QAError, match=r"pattern '\(\(\(' is not a regular expression"):
        "".join(endpoint.stream(prompt, 4, pattern="((("))
