"""helpers.qa.search: identifier-aware tokens, the three retrievers, and the LangChain retriever."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import qa


def test_code_tokens_split_identifiers_and_stem_words() -> None:
    tokens = set(qa.code_tokens("ShardDownloader.num_canonical_nodes"))
    assert {"shard", "canon", "node", "num"} <= tokens and len(tokens) == 7, tokens
    # Users ask with other forms of the code's words: both sides are stemmed, so they meet.
    asked = set(qa.code_tokens("How are downloaded shards cached?"))
    code = set(qa.code_tokens("def download(self, shard):\n    self.cache[shard] = fetch()"))
    assert {"download", "shard", "cach"} <= asked & code
    assert not {"how", "are"} & asked, "stop words are dropped"


@pytest.mark.parametrize("mode", qa.MODES)
def test_each_retriever_finds_the_answering_chunk(tiny_index, mode) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    hits = index.search("How is a shard file copied from the bucket into the local cache?", 3, mode)
    assert hits and hits[0].chunk.path == "tiny/download.py"
    assert any(h.chunk.symbol == "ShardDownloader.download" for h in hits)
    docs = qa.retriever(index, k=2, mode=mode).invoke("merge several index.json files")
    assert docs[0].metadata["symbol"] == "merge_index_files" and docs[0].metadata["start_line"] > 1
    assert docs[0].metadata["citation"] == docs[0].metadata["hit"].chunk.citation


@pytest.mark.parametrize(("k", "mode", "message"), [(-1, "hybrid", "k=-1"), (0, "bm25", "k=0"), ("3", "dense", "k='3'"),
                                                    (4, "fuzzy", "mode 'fuzzy'")])
def test_bad_search_settings_are_named(tiny_index, k, mode, message) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    with pytest.raises(qa.QAError, match=message):
        index.search("download", k, mode)
    with pytest.raises(qa.QAError, match=message):
        qa.retriever(index, k, mode)


def test_tests_and_examples_are_recognised() -> None:
    from helpers.qa.search import is_test_or_example

    assert is_test_or_example("tests/test_trainer.py") and is_test_or_example("streaming/tests/x.py")
    assert is_test_or_example("examples/run.yaml") and is_test_or_example("pkg/foo_test.py")
    assert not is_test_or_example("composer/trainer/trainer.py") and not is_test_or_example("contest/latest.py")


def test_library_preference_reorders_but_never_hides(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    baseline = index.search("shard download cache", 10, "hybrid")
    for hit in baseline:  # pretend the best file is a test file
        hit.chunk.path, original = "tests/" + hit.chunk.path, hit.chunk.path
        break
    try:
        index.test_weight = 0.1
        reranked = index.search("shard download cache", 10, "hybrid")
        assert reranked[0].chunk is not baseline[0].chunk, "the test file should lose first place"
        everything = index.search("shard download cache", len(index), "hybrid")
        assert any(h.chunk is baseline[0].chunk for h in everything), "but stay findable"
    finally:
        baseline[0].chunk.path = original
        index.test_weight = 1.0


def test_a_file_that_matches_in_several_places_gains(tiny_index) -> None:
    """In each ranking, a file's best hit gains FILE_EVIDENCE times its next best hits' scores; the others keep
    theirs, and the ranking is re-sorted."""
    from helpers.qa.search import FILE_EVIDENCE_CHUNKS

    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    question = "How does the downloader retry and evict shards from the local cache?"
    for plain in (index.bm25(question, 50), index.dense(question, 50)):
        lifted = {id(h.chunk): h.score for h in index._with_file_evidence(plain)}
        assert set(lifted) == {id(h.chunk) for h in plain}
        gained = 0
        for path in {h.chunk.path for h in plain}:
            same = [h for h in plain if h.chunk.path == path]  # best first
            extra = index.file_evidence * sum(h.score for h in same[1:1 + FILE_EVIDENCE_CHUNKS])
            assert lifted[id(same[0].chunk)] == pytest.approx(same[0].score + extra)
            assert all(lifted[id(h.chunk)] == h.score for h in same[1:]), "a file's other hits keep their scores"
            gained += extra > 0
        assert gained, "no file matched in more than one place: the test question is too narrow"
        ordered = [h.score for h in index._with_file_evidence(plain)]
        assert ordered == sorted(ordered, reverse=True)


def _lexical_index(cfg, files: dict[str, str]) -> qa.CodeIndex:
    """The tiny corpus (so that BM25 has words to weigh) plus ``files``, without vectors: hybrid search is BM25 and
    the rankings for quotes and names."""
    import faiss

    chunks = [c for path, text in files.items() for c in qa.chunk_file("t", path, text)]
    return qa.CodeIndex(cfg, chunks + qa.CodeIndex.load(cfg).chunks, faiss.IndexFlatIP(384))


def _weight_decides(index: qa.CodeIndex, weight: str, question: str, without: str, with_: str) -> None:
    """With the ranking ``weight`` names at 0, ``without`` comes first (BM25 alone prefers it); at 1, ``with_`` does,
    in hybrid and BM25 search."""
    setattr(index, weight, 0.0)
    assert index.search(question, 2, "hybrid")[0].chunk.path == without, f"{without} should win without {weight}"
    setattr(index, weight, 1.0)
    for mode in ("hybrid", "bm25"):
        assert index.search(question, 2, mode)[0].chunk.path == with_, f"{weight} should lift {with_} ({mode})"


def test_quoted_text_is_words_of_three_or_more() -> None:
    from helpers.qa.search import quoted_words

    question = ("Resuming fails with 'Timestamp mismatch: batch 12 differs'. I don't know why, and `max_duration` "
                "or '10ep' didn't help; \"the bucket path or permission\" too.")
    assert quoted_words(question) == [["timestamp", "mismatch", "batch", "12", "differs"],
                                      ["the", "bucket", "path", "or", "permission"]]
    assert quoted_words("Why doesn't the model's cache work?") == []
    assert quoted_words("Training stops with\nValueError: Batch 3 is not divisible\nWhat now?") == [
        ["batch", "3", "is", "not", "divisible"]]
    # Pasted on the question's own line, a message ends where the user's words begin: a sentence end before a word
    # in lower case, or a dash; those words are the user's own (``unquoted``), not pasted text.
    for tail in (". i launch it on spot instances, how do i set it?", " - how do i set it?", " \u2014 how do i set it?"):
        asked = "ValueError: When autoresume=True, the `run_name` must be specified" + tail
        assert quoted_words(asked) == [["when", "autoresume", "true", "the", "run", "name", "must", "be", "specified"]]
        assert "how do i set it?" in qa.unquoted(asked) and "autoresume" not in qa.unquoted(asked), asked
        assert "ValueError" not in qa.unquoted(asked), "the class name is pasted too: every raise shares it"
    assert quoted_words("ValueError: Cache limit is too low. Increase `cache_limit`.") == [
        ["cache", "limit", "is", "too", "low", "increase", "cache", "limit"]], "its sentences open in capitals"


def test_a_quoted_error_message_finds_where_it_is_raised(tiny_index) -> None:
    """The message is built from string pieces on several lines (as real code does); another file uses the same
    words more often but not in that order. The quote lifts the raising chunk to first place."""
    cfg, _, _ = tiny_index
    raising = ("def check(batch, ranks):\n    if batch % ranks:\n        raise ValueError(f'Global batch size {batch} '"
               " +\n                         f'is not evenly divisible by the initial total ' +\n"
               "                         'number of devices.')\n")
    chatty = ("def plan(devices, batch):\n    \"\"\"Devices and batch: the number of devices, the initial devices, the "
              "total devices, the batch divisible by devices, evenly, devices.\"\"\"\n    return devices, batch\n")
    index = _lexical_index(cfg, {"t/partition.py": raising, "t/planner.py": chatty})
    question = "Resuming fails with 'is not evenly divisible by the initial total number of devices'. Why?"
    _weight_decides(index, "quote_weight", question, without="t/planner.py", with_="t/partition.py")
    unquoted = question.replace("'", "")
    assert index.search(unquoted, 2, "hybrid")[0].chunk.path == "t/planner.py", "only quoted text counts"
    pasted = "Resuming fails:\nValueError: Global batch size 12 is not evenly divisible by the initial total number of devices."
    assert index.search(pasted, 2, "hybrid")[0].chunk.path == "t/partition.py", "or a pasted exception's message"


def test_a_pasted_message_with_its_values_filled_in_is_searched_on_its_own(tiny_index) -> None:
    """A pasted message carries the values of the user's run (``['/tmp/cache/train']``), so few runs of its words
    match the code's f-string and the quote ranking passes it by; the user's own words around it match another
    file better. BM25 over the pasted text alone (``pasted_weight``) finds the line that raises it."""
    cfg, _, _ = tiny_index
    raising = ("def check_dirs(dirs, other):\n    if dirs == other:\n        raise ValueError(f'Reused local "
               "directory: {dirs} vs {other}. Provide a different one.')\n")
    chatty = ("def restart_after_crash(node):\n    \"\"\"After a job crashed, every new run on the node fails at "
              "first; the previous job, the new run, the dataset init, nothing else running: a crashed job.\"\"\"\n"
              "    return node\n")
    index = _lexical_index(cfg, {"t/prefix.py": raising, "t/restart.py": chatty})
    question = ("after my previous job crashed, every new run on that node fails at dataset init with `ValueError: "
                "Reused local directory: ['/tmp/cache/train'] vs ['/tmp/cache/train']. Provide a different one.` -- "
                "nothing else is running. what's going on?")
    assert index.quoted(question, index.bm25(question, 100)) == [], "too few of the quote's runs are the code's"
    _weight_decides(index, "pasted_weight", question, without="t/restart.py", with_="t/prefix.py")


def test_words_of_conversation_do_not_pull_prose_ahead_of_the_code(tiny_index) -> None:
    """A user writes "we really want", "is there actually anything": rare in code, so BM25 would weigh them high and
    put a page that chats the same way ahead of the function that does what is asked. They are left out of the
    question's terms; in identifiers and other words (``my_cache``, "actual") they stay."""
    from helpers.qa.search import question_terms

    cfg, _, _ = tiny_index
    prose = ("# Welcome\n\nWe really want you to try it: actually, anything you need is here. If there is "
             "something you want, please say hi, we are sure you will find it. Thanks!\n")
    code = ("def evict_coldest(cache):\n    \"\"\"Evict the coldest cached shard from the cache.\"\"\"\n"
            "    return cache.pop()\n")
    index = _lexical_index(cfg, {"t/README.md": prose, "t/evict.py": code})
    question = "we really want to evict a cached shard ourselves, is there actually anything for that? thanks!"
    for mode in ("bm25", "hybrid"):
        assert index.search(question, 2, mode)[0].chunk.path == "t/evict.py", mode
    assert question_terms("We don't want my_cache, I've tried: the actual value") == \
        ["my_cach", "my", "cach", "actual", "valu"], "stems of what is left"


def test_names_of_code_in_a_question() -> None:
    from helpers.qa.search import named_identifiers

    code, words = named_identifiers("Where is `predownload` used, and how do MDSWriter and Trainer.fit call "
                                    "upload_file? Ask the Trainer.")
    assert code == {"predownload", "MDSWriter", "Trainer.fit", "upload_file"}
    assert words == {"Trainer"}, "'Ask' opens a sentence: not a name"
    assert named_identifiers("How is the Trainer told to stop?") == (set(), {"Trainer"})
    assert named_identifiers("cache_limit") == ({"cache_limit"}, set())
    assert named_identifiers("predownload") == ({"predownload"}, set()), "a one-word question is a name"
    assert named_identifiers("How are shards downloaded?") == (set(), set())


def test_a_question_naming_code_finds_its_definition(tiny_index) -> None:
    """Another file calls the function by name again and again; asked by its name or a parameter's, its definition
    comes first (a parameter only if it is rare in the index). A capitalised word finds a class only (never a
    function that happens to share the word)."""
    cfg, _, _ = tiny_index
    defining = ('def resolve_mirror(url, keep_local=False):\n    """Pick the closest copy of a remote folder."""\n'
                '    return url\n\n\nclass Mirror:\n    """A remote folder."""\n\n\n'
                'def Mirrored(url):\n    return url\n')
    calling = ("def sync(urls):\n    \"\"\"Use resolve_mirror to resolve each mirror; how to use it.\"\"\"\n"
               + "".join(f"    m{i} = resolve_mirror(urls[{i}], keep_local=True)  # use the resolved mirror\n"
                         for i in range(6))
               + "    return m0\n")
    filler = "".join(f"def helper_{i}(batch_size):\n    return batch_size\n\n\n" for i in range(120))
    index = _lexical_index(cfg, {"t/mirrors.py": defining, "t/sync.py": calling, "t/helpers.py": filler})
    question = "How do I use resolve_mirror?"
    _weight_decides(index, "defined_weight", question, without="t/sync.py", with_="t/mirrors.py")
    assert index.search(question, 1)[0].chunk.symbol == "resolve_mirror"
    parameter = "What is the default value of keep_local?"  # a parameter: the function that declares it
    _weight_decides(index, "defined_weight", parameter, without="t/sync.py", with_="t/mirrors.py")
    assert index.defined("Why does batch_size 64 fail?", []) == [], "a parameter of 120 functions points nowhere"
    top = index.search("Where is the Mirror defined?", 2, "hybrid")[0].chunk
    assert (top.path, top.symbol) == ("t/mirrors.py", "Mirror")
    qualified = index.defined("What is mirrors_lib.t.mirrors.resolve_mirror?", [])
    assert [h.chunk.symbol for h in qualified] == ["resolve_mirror"], "a qualified name, by its longest indexed tail"
    assert index.defined("How is the Mirrored copy made?", []) == [], "a capitalised word finds classes, not functions"
    assert [h.chunk.symbol for h in index.defined("How is `Mirrored` made?", [])] == ["Mirrored"]
    assert index.defined("How are shards downloaded?", []) == []


def test_a_pasted_traceback_points_at_the_line_that_raised(tiny_index, tmp_path, monkeypatch) -> None:
    """A real traceback from running corpus files: the outer frame's function talks about the error at length, but
    the innermost frame (where it was raised) is what the traceback points at first."""
    import importlib
    import traceback

    from helpers.qa.search import traceback_frames

    cfg, _, _ = tiny_index
    workers = ("def start_workers(count):\n    for rank in range(count):\n        check_worker(rank)\n\n\n"
               "def check_worker(rank):\n    code = rank * 7\n    if code:\n"
               "        raise RuntimeError(f'worker {rank} exited with code {code}')\n")
    runner = ("from t.workers import start_workers\n\n\ndef run_all(count):\n    \"\"\"Start the workers; when a "
              "worker exited with a code, the job dies: check the worker's exit code, restart workers, job dies "
              "again when a worker exited.\"\"\"\n    start_workers(count)\n")
    (tmp_path / "t").mkdir()
    for name, text in (("workers.py", workers), ("runner.py", runner), ("__init__.py", "")):
        (tmp_path / "t" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("t.runner").run_all(3)
    except RuntimeError:
        # As a user's own paths, not pytest's numbered temporary folder or the clone's: their digits ("pytest-9") are words BM25 matches
        # in a chunk's header ("lines 6-9"), so the test passed or failed by the folder's number.
        pasted = traceback.format_exc().replace(str(tmp_path), "/home/user/project").replace(
            str(Path(__file__).resolve().parent), "/home/user/tests")
    question = f"My job dies with this, why?\n{pasted}"
    frames = traceback_frames(question)
    assert [(line, name) for _, line, name in frames[:3]] == [(9, "check_worker"), (3, "start_workers"), (6, "run_all")]
    index = _lexical_index(cfg, {"t/workers.py": workers, "t/runner.py": runner})
    assert [h.chunk.symbol for h in index.traced(question)] == ["check_worker", "start_workers", "run_all"]
    assert index.search(question, 1)[0].chunk.symbol == "check_worker", "the innermost frame first"
    # Frames alone (some consoles print no source lines), and the names they hold not looked up: the frames decide.
    bare = "\n".join(line for line in question.splitlines() if not line.startswith("    "))
    index.defined_weight = 0.0
    _weight_decides(index, "traceback_weight", bare, without="t/runner.py", with_="t/workers.py")
    moved = question.replace("line 9,", "line 900,")  # another version of the file: the frame's function
    assert [h.chunk.symbol for h in index.traced(moved)][0] == "check_worker"
    assert index.traced("No traceback here") == []


def test_one_edit_is_one_edit_away() -> None:
    from helpers.qa.spelling import one_edit

    near = one_edit("Shard")
    assert {"shad", "shards", "sharp", "hsard", "sahrd"} <= near, "dropped, added, changed, swapped"
    assert "shard" not in near and "shrads" not in near and "sha" not in near
    assert all(w == w.lower() for w in near)


def test_a_dictionary_word_is_not_a_typo() -> None:
    """In a small index without 'score', 'score' is still an English word (the embedder's vocabulary), not a typo of
    the indexed 'core'; 'scroe' is one."""
    from helpers.qa.spelling import correct

    rarity = {"core": 2.0, "score": 3.0}.get
    assert correct("Keep the score", {"core": 2.0}.get, lambda w: None) == "Keep the core"
    assert correct("Keep the score", {"core": 2.0}.get, lambda w: None, is_word={"score"}.__contains__) == \
        "Keep the score"
    assert correct("Keep the scroe", rarity, lambda w: None, is_word={"score"}.__contains__) == "Keep the score"



def test_pasted_gibberish_is_looked_up_a_few_words_at_most() -> None:
    from helpers.qa.spelling import MAX_LETTERS, MAX_LOOKUPS, correct

    fixed = correct(" ".join(["scroe"] * 20), {"score": 1.0}.get, lambda w: None).split()
    assert fixed.count("score") == MAX_LOOKUPS and fixed.count("scroe") == 20 - MAX_LOOKUPS
    long_word = "scroe" + "x" * MAX_LETTERS
    assert correct(long_word, {"score": 1.0}.get, lambda w: None) == long_word


def test_typos_are_corrected_against_the_index(tiny_index) -> None:
    """A misspelled name finds its definition; a known word is never 'corrected' to a more common neighbour; of two
    indexed neighbours the more common wins; a word with no neighbour stays as typed; relevance reads the
    corrected question."""
    cfg, _, _ = tiny_index
    defining = 'class TokenAccuracy:\n    """Share of tokens predicted right."""\n\n    def update(self, preds):\n' \
               '        return preds\n'
    striped = "".join(f"def stripe_{i}(stripe):\n    return stripe  # stripe\n\n\n" for i in range(8))
    strive = "def halts():\n    return 'strive'  # replacing\n\n\ndef halt():\n    return 'halt halt halt'\n"
    index = _lexical_index(cfg, {"t/metrics.py": defining, "t/stripes.py": striped, "t/strive.py": strive})
    assert index.spelled("How do I use TokenAccuacy?") == "How do I use TokenAccuracy?"
    assert index.search("How do I use TokenAccuacy?", 1)[0].chunk.symbol == "TokenAccuracy"
    assert index.spelled("Which callback halts a run?") == "Which callback halts a run?", "a known word stays"
    assert index.spelled("Where is each strie kept?") == "Where is each stripe kept?", "the more common neighbour"
    assert index.spelled("Where is Strie kept?") == "Where is Stripe kept?", "a capital stays a capital"
    assert index.spelled("Is qwzxvbn defined?") == "Is qwzxvbn defined?", "no neighbour: as typed"
    with pytest.raises(qa.QAError, match="must be text, not bytes"):
        index.search(b"How do I use TokenAccuacy?", 1)
    assert index.spelled("Which cls or self?") == "Which cls or self?", "short and stop words stay"
    assert index.spelled("whats a stripe") == "whats a stripe", "a stop word's other form is not a typo"
    assert index.spelled("Whcih stripe?") == "Which stripe?", "a misspelled stop word is the stop word"
    assert index.spelled("Which stripe replaying?") == "Which stripe replaying?", "an English word in another form"
    # Without the correction the misspelled name finds nothing to define it.
    assert index.defined("How do I use TokenAccuacy?", []) == []


def test_relevance_reads_the_corrected_question(tiny_index) -> None:
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    typed, fixed = "How does the ShardDownlaoder evict a shard?", "How does the ShardDownloader evict a shard?"
    assert index.spelled(typed) == fixed
    assert qa.relevance(index, typed) == qa.relevance(index, fixed)


def test_a_class_named_in_words_is_a_name(tiny_index) -> None:
    """'the shard downloader' names ShardDownloader; words that spell a function (merge index files) or one word
    (a downloader) do not."""
    cfg, _, _ = tiny_index
    index = qa.CodeIndex.load(cfg)
    assert index.spoken_classes("What does the shard downloader do?") == {"ShardDownloader"}
    assert index.spoken_classes("How do I use a Shard Downloader?") == {"ShardDownloader"}
    assert index.spoken_classes("what does sharddownloader do") == {"ShardDownloader"}, "typed in lower case"
    assert index.spoken_classes("How do I merge index files?") == set(), "functions are not taken from words"
    assert index.spoken_classes("What does the downloader do?") == set()
    names = [h.chunk.symbol for h in index.defined("What does the shard downloader do?", [])]
    assert names == ["ShardDownloader"]


def test_a_file_named_by_its_path_comes_first(tiny_index) -> None:
    """'t/loader.py' names that file (another file says 'loader' far more often); 'util.py' names both files that end
    so; a tail shared by more than FILE_MAX_MATCHES files names none; paths in a pasted traceback are the traceback's."""
    from helpers.qa.search import FILE_MAX_MATCHES

    cfg, _, _ = tiny_index
    files = {"t/loader.py": 'def load(path):\n    """Read one record."""\n    return open(path).read()\n',
             "t/chatty.py": "def loaders(loader):\n    # the loader, a loader of loaders, load the loader\n    return loader\n",
             "t/util.py": "def a():\n    return 1\n", "u/util.py": "def b():\n    return 2\n"}
    files |= {f"v{i}/common.py": f"def c{i}():\n    return {i}\n" for i in range(FILE_MAX_MATCHES + 1)}
    index = _lexical_index(cfg, files)
    question = "What does the loader in t/loader.py do?"
    _weight_decides(index, "defined_weight", question, without="t/chatty.py", with_="t/loader.py")
    assert [c.path for c in index.named_files("Compare util.py with ./t/loader.py", [])] == \
        ["t/util.py", "u/util.py", "t/loader.py"]
    assert index.named_files("What is in common.py?", []) == [], "too many files end so"
    assert index.named_files('Traceback:\n  File "/x/t/loader.py", line 3, in load\nOSError: gone', []) == []


def test_of_equal_scores_the_definition_comes_first(tiny_index) -> None:
    """With the name ranking at a quarter of BM25's weight, the chunk that only uses Zebra (BM25 first) and the class
    (BM25 second, name ranking first) score the same; the class comes first."""
    cfg, _, _ = tiny_index
    index = _lexical_index(cfg, {"t/feed.py": "def feed(zebra):\n    # use the zebra, use it\n    return zebra(zebra)\n",
                                 "t/zebra.py": 'class Zebra:\n    """A striped horse."""\n'})
    question = "How do I use Zebra?"
    assert [h.chunk.path for h in index.bm25(question, 2)] == ["t/feed.py", "t/zebra.py"]
    index.defined_weight = 0.25
    first, second = index.search(question, 2, "bm25")
    assert round(first.score, 9) == round(second.score, 9), "the setting should make a tie"
    assert (first.chunk.path, second.chunk.path) == ("t/zebra.py", "t/feed.py")


def test_a_custom_thing_asked_for_ranks_the_class_to_subclass(tiny_index) -> None:
    """'How do I write a custom callback?' lifts the class that three indexed classes derive from above a function
    that says the question's rarer words; a class fewer derive from is no such class, and a question that asks for
    nothing custom gets no such ranking."""
    cfg, _, _ = tiny_index
    files = {"t/callback.py": 'class Callback:\n    """Hooks run at each event of the loop."""\n',
             "t/noops.py": "".join(f'class Noop{i}(Callback):\n    """Does nothing {i}."""\n\n\n' for i in range(3)),
             "t/rare.py": "class Rare:\n    pass\n\n\nclass Once(Rare):\n    pass\n",
             "t/hook.py": "def custom_hook(handler):\n    # write a custom handler for a custom message\n    return handler\n"}
    index = _lexical_index(cfg, files)
    assert [(n, word, c.name) for n, word, c in qa.base_classes(index.chunks)] == [(3, "callback", "Callback")]
    assert qa.asked_bases("How do I write a custom callback?") == {"callback"}
    assert qa.asked_bases("Can I plug in my own Loggers?") == {"logger"}, "stems, any case"
    question = "How do I write a custom callback?"
    _weight_decides(index, "base_weight", question, without="t/hook.py", with_="t/callback.py")
    assert index.bases("Which callback stops the run?") == [] and index.bases("A custom rare thing") == []


def test_a_kind_of_class_asked_for_is_a_ranking(tiny_index) -> None:
    """'Which callback …' lifts the Callback subclass above a function that says the question's words more often;
    a class's kinds are the last words of its bases' names and its own, shared by at least KIND_MIN_CLASSES classes;
    a question that asks for no kind gets no such ranking."""
    cfg, _, _ = tiny_index
    callbacks = "".join(f'class Noop{i}(Callback):\n    """Does nothing {i}."""\n\n\n' for i in range(2))
    files = {"t/callbacks.py": "class Callback:\n    pass\n\n\n" + callbacks,
             "t/stop.py": 'class Halter(Callback):\n    """Ends the run once a value crosses a bound."""\n',
             "t/helpers.py": "def stop_run(run, metric):\n    # stop the run when the metric stops the run; stop it\n"
                             "    return run.stop(metric)\n"}
    index = _lexical_index(cfg, files)
    kinds = qa.class_kinds(index.chunks)
    assert sorted(sorted(words) for words in kinds.values() if "callback" in words) == [["callback"]] * 4
    assert qa.asked_kinds("Which callback can stop the run?") == {"callback"}, "'can' is a stop word"
    assert qa.asked_kinds("Is there a logger-destination that writes files?") == {"logger", "destin"}, "stems"
    question = "Which callback can stop the run when the metric crosses a bound?"
    _weight_decides(index, "kind_weight", question, without="t/helpers.py", with_="t/stop.py")
    assert index.of_kind("How do I stop the run when the metric crosses a bound?", index.bm25(question, 50)) == []
