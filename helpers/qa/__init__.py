"""Step 6: retrieval question answering over the flattened code, as a small package with one job per module.

* ``chunking``   — cut files along their structure into chunks that remember ``path:line``
* ``embedding``  — the sentence embedder (LangChain ``Embeddings``)
* ``index``      — the FAISS + SQLite index on disk, built incrementally, no pickle
* ``documented`` — the settings a docstring documents, one passage each, embedded beside the chunks
* ``search``     — dense, BM25 and hybrid search, and the LangChain retriever
* ``spelling``   — typos in a question, corrected against the words of the index
* ``generation`` — the ``Generator`` protocol and the models behind it
* ``chain``      — the prompt, the LangChain chain, ``ask`` and ``Answer``
* ``confidence`` — how close a question comes to the index, and declining when nothing is close enough
* ``multipart``  — questions that ask several things: split, answer each part, combine
* ``conversation`` — follow-up questions: what to search for when a question leans on the previous turn
"""

from helpers.errors import QAError
from helpers.qa.chain import (
    ANSWER_FORMATS,
    ANSWER_PER_FILE,
    DEFAULT_NEW_TOKENS,
    MODEL_READS,
    NO_ANSWER,
    SYSTEM_PROMPT,
    Answer,
    answer_names,
    answer_pattern,
    ask,
    build_chain,
    build_messages,
    check_question,
    defuse,
    excerpt,
    fits_pattern,
    key_lines,
    lead_sentence,
    model_hits,
    see_also,
    sentence_names,
)
from helpers.qa.chunking import CHUNKER_VERSION, Chunk, chunk_file, file_hash, whole_definitions
from helpers.qa.confidence import DECLINE_THRESHOLD, Relevance, relevance
from helpers.qa.conversation import cited_symbols, is_follow_up, retrieval_query
from helpers.qa.documented import Documented, documented_settings, setting_passages
from helpers.qa.embedding import Embedder, embedder
from helpers.qa.generation import (
    EndpointGenerator,
    Generator,
    TransformersGenerator,
    generator,
    model_choices,
)
from helpers.qa.index import INDEX_FILE, META_FILE, SETTINGS_FILE, BuildStats, Settings, build_index, load_index
from helpers.qa.multipart import ask_multipart, split_question
from helpers.qa.search import (
    DEFAULT_K,
    DEFAULT_MODE,
    MODES,
    NOT_KINDS,
    CodeIndex,
    CodeRetriever,
    Hit,
    asked_bases,
    asked_kinds,
    base_classes,
    class_kinds,
    code_tokens,
    hit_document,
    name_parts,
    retriever,
    unquoted,
)

__all__ = [
    "ANSWER_FORMATS", "ANSWER_PER_FILE", "DEFAULT_NEW_TOKENS", "CHUNKER_VERSION", "DEFAULT_K", "DEFAULT_MODE",
    "INDEX_FILE", "META_FILE", "SETTINGS_FILE", "Settings", "MODES", "MODEL_READS", "NOT_KINDS",
    "NO_ANSWER", "SYSTEM_PROMPT", "Answer", "BuildStats", "Chunk", "CodeIndex", "CodeRetriever", "Embedder",
    "EndpointGenerator", "Generator", "Hit", "QAError", "TransformersGenerator", "answer_names", "answer_pattern", "ask", "asked_bases", "asked_kinds", "base_classes", "build_chain",
    "build_index", "build_messages", "check_question", "chunk_file", "cited_symbols", "class_kinds", "code_tokens", "defuse", "embedder", "excerpt",
    "file_hash", "fits_pattern", "generator", "hit_document", "is_follow_up", "key_lines", "lead_sentence", "model_hits", "name_parts", "see_also", "sentence_names", "load_index", "model_choices", "retriever", "whole_definitions",
    "retrieval_query", "unquoted", "DECLINE_THRESHOLD", "Relevance", "relevance", "ask_multipart", "split_question",
    "Documented", "documented_settings", "setting_passages",
]
