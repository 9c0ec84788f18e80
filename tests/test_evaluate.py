"""Step 6 evaluation: the evaluation set is well-formed and honest, and the metrics compute what they claim."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from helpers import evaluate, qa, repos
from helpers.config import load_config
from helpers.errors import EvalSetError
from tests.corpus import DOWNLOADER


def test_eval_set_has_enough_hand_written_questions_that_do_not_name_the_code() -> None:
    questions = evaluate.load_eval_set()
    assert len(questions) >= 30
    for q in questions:
        # Identifier-like keywords (CamelCase or snake_case) must not appear in the question itself.
        named = [k for k in q.keywords if re.search(r"[a-z][A-Z]|_", k) and k.lower() in q.question.lower()]
        assert not named, f"{q.question!r} names {named}"
        assert all(not f.startswith("/") and ".." not in f for f in q.files)


def test_malformed_eval_file_names_the_entry(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hand:\n  - question: What?\n    files: []\n    keywords: [x]\n")
    with pytest.raises(EvalSetError, match=r"hand\[0\].*files"):
        evaluate.load_eval_set(bad)


def test_user_style_questions_come_in_two_halves_and_prove_with_keywords_they_do_not_repeat(tmp_path) -> None:
    questions = evaluate.load_user_set()
    for half, each in (("tuning", 32), ("held-out", 16)):  # the tuning half holds the first and third batches
        by_package = pd.Series([q.package for q in questions if q.half == half]).value_counts().to_dict()
        assert by_package == {"composer": each, "streaming": each, "llm-foundry": each}, (half, by_package)
    assert {q.origin for q in questions} == {"user"}
    assert all(not f.startswith("/") and ".." not in f for q in questions for f in q.files)
    # A keyword the question contains is dropped while another is left (an answer repeating the question has it).
    mixed = tmp_path / "user.yaml"
    mixed.write_text("tuning:\n  - {question: 'Why does zstd fail?', files: [a.py], keywords: [zstd, CliCompressor]}\n"
                     "held-out:\n  - {question: 'What is zstd?', files: [a.py], keywords: [zstd]}\n")
    tuning, held_out = evaluate.load_user_set(mixed)
    assert (tuning.keywords, tuning.half, held_out.keywords, held_out.half) == (["CliCompressor"], "tuning", ["zstd"],
                                                                               "held-out")
    mixed.write_text("tuning:\n  - {question: 'Why?', files: [a.py], keywords: [x]}\nheld-out:\n  - {question: 'What?'}\n")
    with pytest.raises(EvalSetError, match=r"held-out\[0\].*files"):
        evaluate.load_user_set(mixed)


def test_docstring_questions_and_checks() -> None:
    chunks = qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)
    generated = evaluate.docstring_questions(chunks, n=10, seed=1)
    again = evaluate.docstring_questions(chunks[::-1], n=2, seed=1)
    assert again == evaluate.docstring_questions(chunks, n=2, seed=1), "the same questions in any chunk order"
    names = {q.keywords[0] for q in generated}
    assert names == {"ShardDownloader", "download", "evict", "merge_index_files"}
    for q in generated:
        assert q.origin == "docstring" and q.files == ["tiny/download.py"]
        assert q.keywords[0].lower() not in q.question.lower()
    assert evaluate.check_eval_set(generated, chunks) == []
    wrong = [evaluate.EvalQuestion("q", ["tiny/download.py"], ["NoSuchName"]),
             evaluate.EvalQuestion("q", ["other.py"], ["x"])]
    problems = evaluate.check_eval_set(wrong, chunks)
    assert len(problems) == 2 and "NoSuchName" in problems[0] and "not in the index" in problems[1]


def test_named_questions_ask_by_name_in_each_phrasing() -> None:
    """Public functions and classes, asked about by name; a name defined in two files is answered by both."""
    chunks = qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)
    other = "def evict(name):\n    return name\n\n\ndef _hidden():\n    pass\n"
    chunks += qa.chunk_file("tiny", "tiny/other.py", other)
    generated = evaluate.named_questions(chunks, n=10, seed=1)
    by_name = {q.keywords[0]: q for q in generated}
    assert set(by_name) == {"ShardDownloader", "download", "evict", "merge_index_files"}, "public names, 4+ letters"
    assert by_name["evict"].files == ["tiny/download.py", "tiny/other.py"]
    assert [q.question for q in generated] == [p.format(q.keywords[0]) for p, q in
                                              zip(evaluate.NAMED_PHRASINGS, generated, strict=True)]
    assert all(q.origin == "named" and q.half == "tuning" for q in generated)
    assert evaluate.check_eval_set(generated, chunks) == []
    assert len(evaluate.named_questions(chunks, n=2, seed=1)) == 2 and evaluate.named_questions(chunks, n=0) == []
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(EvalSetError, match=re.escape(f"n={bad!r}: ")):
            evaluate.named_questions(chunks, n=bad)


def test_parameter_questions_ask_about_names_declared_in_one_or_two_files() -> None:
    chunks = qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)  # declares chunk_bytes (a class attribute)
    for i in range(3):
        chunks += qa.chunk_file("tiny", f"tiny/f{i}.py", f"def fetch{i}(batch_size, cache_limit=0, keep_zip=False):\n"
                                                          "    return batch_size\n" if i < 2 else
                                f"def fetch{i}(batch_size, remote):\n    return remote\n")
    generated = evaluate.parameter_questions(chunks, n=10, seed=1)
    by_name = {q.keywords[0]: q for q in generated}
    assert set(by_name) == {"chunk_bytes", "cache_limit", "keep_zip"}, "with _, in at most two files"
    assert by_name["cache_limit"].files == ["tiny/f0.py", "tiny/f1.py"]
    assert [q.question for q in generated] == [p.format(q.keywords[0]) for p, q in
                                              zip(evaluate.PARAMETER_PHRASINGS, generated, strict=True)]
    assert all(q.origin == "parameter" for q in generated) and evaluate.check_eval_set(generated, chunks) == []


def test_spoken_questions_name_a_class_in_words() -> None:
    chunks = qa.chunk_file("tiny", "tiny/download.py", DOWNLOADER)  # ShardDownloader, and functions
    chunks += qa.chunk_file("tiny", "tiny/cache.py", "class Cache:\n    pass\n\n\nclass LRUShardCache(Cache):\n    pass\n")
    generated = evaluate.spoken_questions(chunks, n=10, seed=1)
    assert {q.keywords[0] for q in generated} == {"ShardDownloader", "LRUShardCache"}, "classes of two words or more"
    by_name = {q.keywords[0]: q for q in generated}
    assert " lru shard cache" in by_name["LRUShardCache"].question
    assert all(q.origin == "spoken" and q.keywords[0] not in q.question for q in generated)
    assert [q.question.replace(" ".join(qa.name_parts(q.keywords[0])), "{}") for q in generated] == \
        list(evaluate.SPOKEN_PHRASINGS[:len(generated)])


def test_custom_questions_ask_what_to_subclass() -> None:
    kids = "".join(f"class Tick{i}(Callback):\n    pass\n\n\nclass Err{i}(UserError):\n    pass\n\n\n" for i in range(3))
    kids += "class Lone(Tick0):\n    pass\n"  # Tick0 is derived from once: not a class to subclass
    chunks = qa.chunk_file("tiny", "lib/cb.py", "class Callback:\n    pass\n\n\n" + kids)
    chunks += qa.chunk_file("tiny", "lib/errors.py", "class UserError(Exception):\n    pass\n")
    chunks += qa.chunk_file("tiny", "lib/other_cb.py", "class Callback:\n    pass\n")
    generated = evaluate.custom_questions(chunks, n=10, seed=1)
    by_word = {q.question.split()[-1].rstrip("?"): q for q in generated}
    assert len(generated) == 2 and by_word["callback"].keywords == ["Callback"] and \
        by_word["error"].keywords == ["UserError"], "one question per word, for the classes three others derive from"
    assert by_word["callback"].files == ["lib/cb.py", "lib/other_cb.py"], "a class of that name anywhere answers"
    assert [q.question for q in generated] == [p.format(q.question.split()[-1].rstrip("?")) for p, q in
                                              zip(evaluate.CUSTOM_PHRASINGS, generated, strict=False)]
    assert all(q.origin == "custom" for q in generated) and evaluate.check_eval_set(generated, chunks) == []


def test_kind_questions_ask_for_a_kind_by_what_it_does() -> None:
    base = "class Callback:\n    pass\n\n\n"
    kids = "".join(f'class Tick{i}(Callback):\n    """Counts the ticks of clock number {i} in a run."""\n\n\n'
                   for i in range(3))
    chunks = qa.chunk_file("tiny", "lib/cb.py", base + kids + 'class Lone:\n    """A class of no kind at all, alone."""\n')
    generated = evaluate.kind_questions(chunks, n=10, seed=1)
    assert sorted(q.keywords[0] for q in generated) == ["Tick0", "Tick1", "Tick2"], "documented classes of a kind"
    by_name = {q.keywords[0]: q for q in generated}
    assert by_name["Tick1"].question == "Which callback does this: counts the ticks of clock number 1 in a run?"
    assert all(q.origin == "kind" and q.files == ["lib/cb.py"] for q in generated)
    assert evaluate.check_eval_set(generated, chunks) == []


def test_file_questions_ask_by_path() -> None:
    chunks = qa.chunk_file("tiny", "lib/tiny/download.py", DOWNLOADER)
    chunks += qa.chunk_file("tiny", "lib/tiny/other.py", "def _hidden():\n    pass\n\n\ndef visible():\n    pass\n")
    chunks += qa.chunk_file("tiny", "tests/test_x.py", "def test_x():\n    pass\n")
    generated = evaluate.file_questions(chunks, n=10, seed=1)
    assert sorted(q.files[0] for q in generated) == ["lib/tiny/download.py", "lib/tiny/other.py"], "library files"
    assert generated[0].question == evaluate.FILE_PHRASINGS[0].format(generated[0].files[0]), "the whole path"
    assert generated[1].question == evaluate.FILE_PHRASINGS[1].format("tiny/" + generated[1].files[0].split("/")[-1])
    assert {q.keywords[0] for q in generated} == {"ShardDownloader", "visible"}, "the first public name"
    assert all(q.origin == "file" for q in generated) and evaluate.check_eval_set(generated, chunks) == []


def test_misspelled_questions_have_two_slips_of_one_edit_each() -> None:
    from helpers.qa.spelling import one_edit

    questions = evaluate.load_eval_set()[:20]
    typed = evaluate.misspelled(questions, seed=3)
    assert [q.question for q in typed] == [q.question for q in evaluate.misspelled(questions, seed=3)], "seeded"
    for q, t in zip(questions, typed, strict=True):
        assert (t.origin, t.half, t.files, t.keywords) == (q.origin + "+typos", q.half, q.files, q.keywords)
        before, after = q.question.split(" "), t.question.split(" ")
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(changed) == evaluate.TYPO_WORDS, (q.question, t.question)
        for word, slip in changed:
            assert slip.lower() in one_edit(word), (word, slip)


def test_recall_and_mrr_arithmetic() -> None:
    rows = pd.DataFrame({"mode": ["dense"] * 4, "origin": ["hand"] * 4, "question": list("abcd"),
                         "rank": [1, 3, None, 6], "ms": [1.0, 2.0, 3.0, 4.0]})
    s = evaluate.retrieval_summary(rows, ks=(1, 5)).loc[("dense", "hand")]
    assert s["recall@1"] == 0.25 and s["recall@5"] == 0.5
    assert s["MRR"] == pytest.approx(round((1 + 1 / 3 + 0 + 1 / 6) / 4, 3))
    assert evaluate.contains_keyword("uses `CutMix` here", ["cutmix"]) and not evaluate.contains_keyword("x", ["y"])


@pytest.mark.slow
def test_eval_set_matches_the_corpus(series_runner, work_dir) -> None:
    """Every hand-written question's files exist in step 1's output and hold one of its keywords."""
    series_runner.run("01_download_repos.ipynb")
    cfg = load_config(work_dir=str(work_dir))
    records = list(repos.iter_records(cfg))
    present = {r.path for r in records}
    questions = [q for q in evaluate.load_eval_set() if q.files[0] in present]
    assert questions, "no evaluation question is about the corpus step 1 produced"
    chunks = [c for r in records if r.path in {f for q in questions for f in q.files}
              for c in qa.chunk_file(r.source, r.path, r.read_text())]
    assert evaluate.check_eval_set(questions, chunks) == []


def test_halves_are_fixed_balanced_and_disjoint() -> None:
    questions = evaluate.load_eval_set(seed=17)
    again = evaluate.load_eval_set(seed=17)
    assert [q.half for q in questions] == [q.half for q in again], "the split must not change between runs"
    for package in {q.package for q in questions}:
        halves = [q.half for q in questions if q.package == package]
        assert abs(halves.count("tuning") - halves.count("held-out")) <= 1, package
    assert {q.package for q in questions} >= {"composer", "streaming", "llm-foundry"}


def test_answer_evaluation_is_reused_only_for_the_same_settings(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    gen = qa.generator(cfg, "base")
    calls = []
    real_stream = gen.stream
    gen.stream = lambda *a, **kw: (calls.append(1), real_stream(*a, **kw))[1]
    try:
        questions = [evaluate.EvalQuestion(question="How is a shard file downloaded?", files=["tiny/download.py"],
                                           keywords=["download"], origin="hand")]
        first = evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=8, progress=False)
        again = evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=8, progress=False)
        assert len(calls) == 1 and again.to_dict("records") == first.to_dict("records")
        assert bool(first["cites a right file"].iloc[0]) and bool(first["answer keyword"].iloc[0])
        evaluate.evaluate_answers(index, gen, questions, "base", max_new_tokens=9, progress=False)
        assert len(calls) == 2, "a different setting must answer again"
    finally:
        del gen.stream


def test_multipart_and_offtopic_sets_load_in_halves(tmp_path) -> None:
    multipart, offtopic = evaluate.load_multipart(), evaluate.load_offtopic()
    assert len(multipart) >= 15 and all(len(q.parts) >= 2 for q in multipart)
    assert {q.half for q in multipart} == set(evaluate.HALVES) == {q.half for q in offtopic}
    assert len(offtopic) >= 30 and all(not q.files for q in offtopic)
    bad = tmp_path / "bad.yaml"
    bad.write_text("hand: []\nmultipart:\n  - question: A and B?\n    parts:\n      - {files: [a.py], keywords: [a]}\n")
    with pytest.raises(EvalSetError, match=r"multipart\[0\]: needs .* at least two parts"):
        evaluate.load_multipart(bad)
    bad.write_text("multipart:\n  - question: A and B?\n    parts:\n      - {files: [a.py], keywords: [a]}\n"
                   "      - {files: [b.py]}\n")
    with pytest.raises(EvalSetError, match=r"multipart\[0\].parts\[1\]: field 'keywords'"):
        evaluate.load_multipart(bad)


def test_question_set_names_a_bad_count(tiny_index) -> None:
    index = qa.CodeIndex.load(tiny_index[0])
    assert {q.origin for q in evaluate.question_set(index, docstring_n=2, named_n=2)} >= {"docstring", "named"}
    typed = evaluate.question_set(index, docstring_n=0, named_n=2, typos=True)
    assert "named+typos" in {q.origin for q in typed}, "(the tiny corpus answers no hand-written question)"
    for kwargs in ({"named_n": -3}, {"docstring_n": "30"}):
        (name, value), = kwargs.items()
        with pytest.raises(EvalSetError, match=re.escape(f"{name}={value!r}: ")):
            evaluate.question_set(index, **kwargs)


def test_declining_threshold_is_chosen_on_the_tuning_half(tiny_index) -> None:
    index = qa.CodeIndex.load(tiny_index[0])
    on = [evaluate.EvalQuestion(q, ["tiny/download.py"], ["x"], "hand", "tiny", half) for q, half in [
        ("Which method deletes a cached shard to keep disk usage under the limit?", "tuning"),
        ("How are the index files of several shard folders combined?", "tuning"),
        ("How does the downloader copy a shard file from the bucket?", "held-out")]]
    off = [evaluate.EvalQuestion(q, [], [], "offtopic", "offtopic", half) for q, half in [
        ("Who painted the Mona Lisa?", "tuning"), ("How long should I boil an egg?", "tuning"),
        ("Which planet has the most moons?", "held-out")]]
    table, threshold = evaluate.evaluate_declining(index, on, off)
    tuning = table[table["half"] == "tuning"]
    on_scores = tuning.loc[tuning["origin"] == "on-topic", "relevance"]
    off_scores = tuning.loc[tuning["origin"] == "off-topic", "relevance"]
    assert off_scores.max() < threshold <= on_scores.min()  # separates the tuning half
    summary = evaluate.declining_summary(table)
    assert summary.loc["tuning", "off-topic"] == 1.0 and summary.loc["tuning", "on-topic"] == 0.0
