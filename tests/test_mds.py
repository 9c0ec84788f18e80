"""Step 2: MDS conversion keeps text exactly, splits deterministically, rejects bad JSONL and works with S3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import mds, mds_jobs, models, repos
from helpers.config import load_config
from tests.conftest import small_corpus


@pytest.fixture(scope="module")
def models_dir(work_dir: Path) -> Path:
    """The session's prepared generator folder, shared by the small corpora below."""
    models.prepare_generator(load_config(work_dir=work_dir))
    return work_dir / "models"


def decoded_stream(cfg, dataset: str, split: str, tokenizer) -> str:
    return tokenizer.decode(np.concatenate(list(mds.iter_split_tokens(cfg, dataset, split))).tolist())


def expected_stream(cfg, keys: list[str], eos: str) -> str:
    texts = {f"{r.source}/{r.path}": r.read_text() for r in repos.iter_records(cfg)}
    return "".join(texts[k] + eos for k in keys)


def test_assign_splits_is_seeded_and_order_free():
    keys = [f"src/file_{i}.py" for i in range(200)]
    a = mds.assign_splits(keys, seed=17)
    shuffled = list(reversed(keys))
    b = mds.assign_splits(shuffled, seed=17)
    assert {s: {keys[i] for i in idx} for s, idx in a.items()} == {s: {shuffled[i] for i in idx} for s, idx in b.items()}
    assert [len(a[s]) for s in mds.SPLITS] == [180, 10, 10]
    assert sorted(i for idx in a.values() for i in idx) == list(range(200))
    c = mds.assign_splits(keys, seed=18)
    assert set(a["validation"]) != set(c["validation"])
    tiny = mds.assign_splits(["x", "y", "z"], seed=1)
    assert all(len(tiny[s]) == 1 for s in mds.SPLITS)
    with pytest.raises(ValueError, match="fractions"):
        mds.assign_splits(keys, seed=1, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unique"):
        mds.assign_splits(["a", "a", "b"], seed=1)


def test_text_round_trip_is_exact(tmp_path, models_dir):
    cfg = small_corpus(tmp_path, models_dir)
    conv = mds.convert_text(cfg, max_seq_len=16, progress=False)
    tokenizer = mds.load_tokenizer(cfg)
    n_files = len(list(repos.iter_records(cfg)))
    assert sum(s.documents for s in conv.splits.values()) == n_files
    for split, stats in conv.splits.items():
        assert stats.samples > 0
        lengths = [len(t) for t in mds.iter_split_tokens(cfg, "codebase", split)]
        assert all(n == 16 for n in lengths[:-1]) and 0 < lengths[-1] <= 16
        assert sum(lengths) == stats.tokens == sum(stats.doc_tokens) + stats.documents
        # Independent of the helpers' own check: the decoded split is the files' text joined by EOS.
        assert decoded_stream(cfg, "codebase", split, tokenizer) == expected_stream(cfg, stats.keys, tokenizer.eos_token)
        assert mds.verify_text_split(cfg, "codebase", split, tokenizer) == []
    # Literal special-token text inside a file is ordinary text, not a document boundary.
    all_keys = [k for s in conv.splits.values() for k in s.keys]
    assert "tricky/indent.py" in all_keys and "tricky/template.yaml" in all_keys
    # Re-running with the same inputs reuses the output; overwrite converts again to the same result.
    assert mds.convert_text(cfg, max_seq_len=16, progress=False).reused
    again = mds.convert_text(cfg, max_seq_len=16, overwrite=True, progress=False)
    assert not again.reused and {s: v.keys for s, v in again.splits.items()} == {s: v.keys for s, v in conv.splits.items()}
    # MDS to MDS: re-cutting keeps the token stream of every split.
    longer = mds.reconcat(cfg, "codebase", "codebase_40", 40, progress=False)
    for split in mds.SPLITS:
        a = np.concatenate(list(mds.iter_split_tokens(cfg, "codebase", split)))
        b = np.concatenate(list(mds.iter_split_tokens(cfg, "codebase_40", split)))
        assert np.array_equal(a, b)
        assert longer.splits[split].samples == -(-len(a) // 40)


def test_split_is_deterministic_across_runs_and_seeded(tmp_path, models_dir):
    first = small_corpus(tmp_path / "one", models_dir)
    second = small_corpus(tmp_path / "two", models_dir)
    other_seed = small_corpus(tmp_path / "three", models_dir, seed=99)
    a = mds.convert_text(first, max_seq_len=32, progress=False)
    b = mds.convert_text(second, max_seq_len=32, progress=False)
    c = mds.convert_text(other_seed, max_seq_len=32, progress=False)
    assert {s: v.keys for s, v in a.splits.items()} == {s: v.keys for s, v in b.splits.items()}
    for split in mds.SPLITS:
        assert np.array_equal(np.concatenate(list(mds.iter_split_tokens(first, "codebase", split))),
                              np.concatenate(list(mds.iter_split_tokens(second, "codebase", split))))
    assert {s: v.keys for s, v in a.splits.items()} != {s: v.keys for s, v in c.splits.items()}


def test_llmfoundry_dataloaders_read_the_output(tmp_path, models_dir):
    from llmfoundry.data.finetuning.tasks import StreamingFinetuningDataset
    from llmfoundry.data.text_data import StreamingTextDataset

    cfg = small_corpus(tmp_path, models_dir)
    mds.convert_text(cfg, max_seq_len=16, progress=False)
    tokenizer = mds.load_tokenizer(cfg)
    text = StreamingTextDataset(tokenizer=tokenizer, max_seq_len=16, local=cfg.storage_path("mds", "codebase"),
                                split="train", shuffle=False, batch_size=1)
    assert text[0].shape == (16,)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"prompt": f"What is {i}?", "response": f" It is {i}."}) + "\n" for i in range(20)))
    mds.convert_jsonl(cfg, qa, "qa", progress=False)
    tuned = StreamingFinetuningDataset(tokenizer=tokenizer, local=cfg.storage_path("mds", "qa"), split="train",
                                       max_seq_len=64, shuffle=False, batch_size=1)
    turn = tuned[0]["turns"][0]
    assert tokenizer.decode(turn["input_ids"]).startswith("What is") and tokenizer.decode(turn["labels"]).startswith(" It is")


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a", "response": "b"}', '{"prompt": "a", "response": "b"', '{"prompt": "c", "response": "d"}'],
     ":2: not valid JSON"),
    (['{"prompt": "a", "response": 3}'], ":1: field 'response' must be a string"),
    (['{"prompt": "a"}'], ":1: field 'response' must be a string"),
    (['[1, 2]'], ":1: expected a JSON object"),
    (['{"question": "a"}'], ":1: needs a 'text' field"),
    (['{"text": "a"}', '', '{"prompt": "a", "response": "b"}'], ":3: a 'prompt_response' record"),
])
def test_malformed_jsonl_lines_are_named(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(mds.JsonlError) as err:
        mds.read_jsonl(path)
    assert str(path) + message in str(err.value)


def test_malformed_lines_can_be_skipped_and_counted(tmp_path, models_dir):
    path = tmp_path / "qa.jsonl"
    good = [{"prompt": f"q{i}", "response": f"a{i}", "source": "s", "path": f"f{i % 7}.py"} for i in range(40)]
    lines = [json.dumps(r) for r in good]
    lines.insert(5, "{broken")
    lines.insert(12, '{"prompt": 1, "response": "x"}')
    path.write_text("\n".join(lines) + "\n")
    records, style, skipped = mds.read_jsonl(path, on_error="skip")
    assert style == "prompt_response" and len(records) == 40 and skipped == [6, 13]
    cfg = small_corpus(tmp_path, models_dir, n_extra=0)
    conv = mds.convert_jsonl(cfg, path, "qa", on_error="skip", progress=False)
    assert conv.params["skipped_lines"] == [6, 13]
    back = []
    for split, stats in conv.splits.items():
        data = mds.open_split(cfg, "qa", split)
        rows = [data[i] for i in range(len(data))]
        assert len(rows) == stats.samples > 0
        back += [(r["prompt"], r["response"]) for r in rows]
        # All questions about one file land in the same split.
        assert not {k for k in stats.keys} & {k for s, o in conv.splits.items() if s != split for k in o.keys}
    assert sorted(back) == sorted((r["prompt"], r["response"]) for r in good)
    with pytest.raises(mds.JsonlError, match=":6:"):
        mds.convert_jsonl(cfg, path, "qa2", progress=False)


def test_text_jsonl_is_tokenized_like_files(tmp_path, models_dir):
    cfg = small_corpus(tmp_path, models_dir, n_extra=0)
    texts = [f"document {i}\n    indented {'x' * i}\n" for i in range(12)]
    path = tmp_path / "pretrain.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    conv = mds.convert_jsonl(cfg, path, "pretrain", max_seq_len=8, progress=False)
    tokenizer = mds.load_tokenizer(cfg)
    for split, stats in conv.splits.items():
        expected = "".join(texts[int(k[1:])] + tokenizer.eos_token for k in stats.keys)
        assert decoded_stream(cfg, "pretrain", split, tokenizer) == expected


def test_object_store_output_reads_back_with_streaming(tmp_path, models_dir, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="workshop")
    cfg = small_corpus(tmp_path, models_dir, storage_root="s3://workshop/run1")
    assert cfg.is_remote
    conv = mds.convert_text(cfg, max_seq_len=16, progress=False)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="workshop", Prefix="run1/mds/codebase/")["Contents"]}
    for split in mds.SPLITS:
        assert f"run1/mds/codebase/{split}/index.json" in keys
        assert any(k.startswith(f"run1/mds/codebase/{split}/shard.") for k in keys)
        assert conv.splits[split].path == f"s3://workshop/run1/mds/codebase/{split}"
    tokenizer = mds.load_tokenizer(cfg)
    for split, stats in conv.splits.items():
        assert decoded_stream(cfg, "codebase", split, tokenizer) == expected_stream(cfg, stats.keys, tokenizer.eos_token)
    assert not list((cfg.work_dir / "mds_cache").glob("codebase-*")), "local staging copies should be removed"


def test_notebook_round_trip_on_the_real_corpus(series_runner, work_dir):
    """02's smoke run on mosaicml-streaming's sdist: every split decodes back to its files exactly."""
    series_runner.run("02_convert_to_mds.ipynb")
    cfg = load_config(work_dir=work_dir)
    conv = mds.load_conversion(cfg, "codebase")
    assert conv is not None and conv.params["max_seq_len"] == 512
    tokenizer = mds.load_tokenizer(cfg)
    for split in mds.SPLITS:
        assert mds.verify_text_split(cfg, "codebase", split, tokenizer) == []
    assert sum(s.documents for s in conv.splits.values()) == len(list(repos.iter_records(cfg)))
    qa = mds.load_conversion(cfg, "codebase_qa")
    assert qa is not None and qa.kind == "prompt_response" and all(s.samples for s in qa.splits.values())


def qa_jsonl(path: Path, n: int = 40) -> Path:
    """Prompt/response pairs about seven files (so all questions about one file land in one split)."""
    path.write_text("".join(json.dumps({"prompt": f"What is q{i}?", "response": f" It is a{i}.", "source": "s",
                                        "path": f"f{i % 7}.py"}) + "\n" for i in range(n)))
    return path


def test_text_yaml_runs_here_and_writes_what_llmfoundry_reads(tmp_path, models_dir):
    """convert_txt_to_stream.yaml's own command, run by the local backend, on the staged splits (~1-2 min)."""
    from llmfoundry.data.text_data import StreamingTextDataset

    cfg = small_corpus(tmp_path, models_dir)
    job = mds_jobs.convert_text_job(cfg, max_seq_len=16, progress=False)
    assert job.result.backend == "local" and job.result.returncode == 0 and not job.result.reused
    command = yaml.safe_load((cfg.runs_dir / "convert-codebase" / "rendered.yaml").read_text())["command"]
    assert "<" not in command and f"--input-folder {job.staged.folder}/$split" in command
    text = job.conversion(cfg)
    assert text.params["converter"] == "yaml" and mds.check_conversion(text) == []
    # Each file sits in the split the in-process conversion gives it.
    keys = [f"{r.source}/{r.path}" for r in repos.iter_records(cfg)]
    expected = {split: sorted(keys[i] for i in idx) for split, idx in mds.assign_splits(keys, cfg.seed).items()}
    assert {split: sorted(stats.keys) for split, stats in text.splits.items()} == expected
    tokenizer = mds.load_tokenizer(cfg)
    for split, stats in text.splits.items():
        data = StreamingTextDataset(tokenizer=tokenizer, max_seq_len=16, local=cfg.storage_path("mds", "codebase"),
                                    split=split, shuffle=False, batch_size=1)
        assert len(data) == stats.samples > 0 and all(data[i].shape == (16,) for i in range(len(data)))
        # The files in LLM Foundry's reading order, text-mode newlines, less than one sample cut at the end.
        assert mds.verify_text_split(cfg, "codebase", split, tokenizer) == []
    # A second run with the same corpus and settings is the finished one, reused.
    again = mds_jobs.convert_text_job(cfg, max_seq_len=16, progress=False)
    assert again.result.reused and again.staged.folder == job.staged.folder and again.conversion(cfg).reused


def test_jsonl_yaml_runs_here_and_splits_like_the_helper(tmp_path, models_dir):
    """convert_jsonl_to_stream.yaml's own command on the staged pairs: the same splits as mds.convert_jsonl."""
    from llmfoundry.data.finetuning.tasks import StreamingFinetuningDataset

    cfg = small_corpus(tmp_path, models_dir, n_extra=0)
    path = qa_jsonl(tmp_path / "qa.jsonl")
    job = mds_jobs.convert_jsonl_job(cfg, path, "qa", progress=False)
    assert job.result.returncode == 0 and (job.staged.folder / "validation.jsonl").is_file()
    by_yaml = job.conversion(cfg)
    by_helper = mds.convert_jsonl(cfg, path, "qa_helper", progress=False)
    assert by_yaml.kind == "prompt_response" and mds.check_conversion(by_yaml) == []
    tokenizer = mds.load_tokenizer(cfg)
    for split in mds.SPLITS:
        assert by_yaml.splits[split].keys == by_helper.splits[split].keys
        written, helper = mds.open_split(cfg, "qa", split), mds.open_split(cfg, "qa_helper", split)
        assert len(written) == by_yaml.splits[split].samples > 0
        assert [(written[i]["prompt"], written[i]["response"]) for i in range(len(written))] == \
            [(helper[i]["prompt"], helper[i]["response"]) for i in range(len(helper))]
        tuned = StreamingFinetuningDataset(tokenizer=tokenizer, local=cfg.storage_path("mds", "qa"), split=split,
                                           max_seq_len=64, shuffle=False, batch_size=1)
        assert tokenizer.decode(tuned[0]["turns"][0]["labels"]).startswith(" It is a")
    text_records = tmp_path / "text.jsonl"
    text_records.write_text('{"text": "plain text goes through the text yaml"}\n')
    with pytest.raises(mds.DataError, match="prompt/response"):
        mds_jobs.stage_jsonl(cfg, text_records, "text")
