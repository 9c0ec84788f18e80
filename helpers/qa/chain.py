"""The retrieval QA chain: question -> retrieve -> prompt -> generate -> answer with ``path:line`` sources.

The chain is LangChain runnables around the project's retriever. The prompt gives the excerpts best first (the
best one gets the largest share of the token budget, signature and docstring first) and asks for a short answer
that names the function or class. The *symbol-first* answer opens with the best match's name, location and
docstring summary, taken from the code itself, and the model continues from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from helpers.errors import QAError
from helpers.qa.chunking import Chunk
from helpers.qa.generation import Generator
from helpers.qa.search import DEFAULT_K, DEFAULT_MODE, CodeIndex, Hit, retriever

ANSWER_FORMATS = ("symbol-first", "plain")
MAX_QUESTION_CHARS = 4000
MAX_NEW_TOKENS = 1024
CONTEXT_TOKENS = 700
NO_ANSWER = "I could not find this in the indexed code."

SYSTEM_PROMPT = (
    "You answer questions about a Python code base using only the numbered code excerpts given. "
    "Answer in one or two sentences. Name the function or class that does it and quote its identifiers exactly. "
    f"If the excerpts do not contain the answer, say: {NO_ANSWER}"
)


def defuse(text: str) -> str:
    """Text from files or users with chat-template markers (``<|im_start|>``…) broken up, so they stay plain text."""
    return text.replace("<|", "<\u200b|").replace("|>", "|\u200b>")


def _excerpt(chunk: Chunk, tokenizer: Any, budget: int) -> str:
    """The chunk's first lines (signature and docstring come first) cut to ``budget`` tokens."""
    ids = tokenizer(chunk.text, add_special_tokens=False, split_special_tokens=True).input_ids
    if len(ids) <= budget:
        return chunk.text
    return tokenizer.decode(ids[:budget]).rstrip() + "\n..."


def build_messages(question: str, hits: list[Hit], tokenizer: Any,
                   context_tokens: int = CONTEXT_TOKENS) -> list[dict[str, str]]:
    """System rules, then the excerpts (best first, the best one given the largest share), then the question."""
    blocks = []
    remaining = context_tokens
    for rank, hit in enumerate(hits):
        share = remaining // 2 if rank < len(hits) - 1 else remaining
        if share < 24:
            break
        body = defuse(_excerpt(hit.chunk, tokenizer, share))
        block = f"[{rank + 1}] {hit.chunk.citation} ({defuse(hit.chunk.symbol)})\n{body}"
        blocks.append(block)
        remaining -= len(tokenizer(block, add_special_tokens=False).input_ids)
    context = "\n\n".join(blocks)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Code excerpts:\n{context}\n\nQuestion: {defuse(question)}"}]


def lead_sentence(hits: list[Hit]) -> str:
    """The symbol-first opening: the best-matching symbol, its location and docstring summary, from retrieval."""
    if not hits:
        return ""
    c = hits[0].chunk
    summary = defuse(c.docstring_summary())
    return f"`{defuse(c.name)}` in {c.citation}" + (f": {summary}." if summary else ".") + "\n"


@dataclass
class Answer:
    """An answer with its sources and timings."""

    question: str
    text: str = ""
    model_text: str = ""  # only what the model generated (without the symbol-first lead)
    hits: list[Hit] = field(default_factory=list)
    retrieval_s: float = 0.0
    seconds: float = 0.0

    @property
    def sources(self) -> list[str]:
        return [h.chunk.citation for h in self.hits]


def check_question(question: Any, tokenizer: Any | None = None, max_tokens: int | None = None) -> str:
    """The cleaned question, or QAError with a message for an empty, non-text or too-long question."""
    if not isinstance(question, str) or not question.strip():
        raise QAError("Please type a question about the code base (the question is empty).")
    # Lone surrogates (pasted binary, broken clipboard text) cannot be encoded: replace them.
    question = question.encode("utf-8", errors="replace").decode("utf-8").strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise QAError(f"The question is {len(question)} characters long; please keep it under {MAX_QUESTION_CHARS}.")
    if tokenizer is not None and max_tokens is not None:
        n = len(tokenizer(question, add_special_tokens=False).input_ids)
        if n > max_tokens:
            raise QAError(f"The question is {n} tokens long but the model's context leaves room for {max_tokens}; "
                          "please shorten it.")
    return question


def check_settings(max_new_tokens: Any, answer_format: Any) -> None:
    """QAError naming a bad answer length or format and what is allowed."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or \
            not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise QAError(f"max_new_tokens={max_new_tokens!r}: use a whole number from 1 to {MAX_NEW_TOKENS}.")
    if answer_format not in ANSWER_FORMATS:
        raise QAError(f"answer_format {answer_format!r} is unknown: use one of {', '.join(ANSWER_FORMATS)}.")


def build_chain(index: CodeIndex, gen: Generator, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
                max_new_tokens: int = 64, answer_format: str = "symbol-first", context_tokens: int = CONTEXT_TOKENS,
                on_token: Callable[[str], None] | None = None, timing: dict[str, float] | None = None) -> Runnable:
    """The LangChain runnable: {question} -> retrieve k -> prompt -> generator -> {answer, model_text, hits}."""
    check_settings(max_new_tokens, answer_format)
    retrieve_docs = retriever(index, k, mode)

    def retrieve(inputs: dict) -> list[Hit]:
        t0 = time.perf_counter()
        hits = [doc.metadata["hit"] for doc in retrieve_docs.invoke(inputs["question"])]
        if timing is not None:
            timing["retrieval_s"] = time.perf_counter() - t0
        return hits

    def lead(inputs: dict) -> str:
        return lead_sentence(inputs["hits"]) if answer_format == "symbol-first" else ""

    def prompt(inputs: dict) -> str:
        messages = build_messages(inputs["question"], inputs["hits"], gen.tokenizer, context_tokens)
        return gen.render(messages, inputs["lead"])

    def generate(inputs: dict) -> dict:
        if on_token and inputs["lead"]:
            on_token(inputs["lead"])
        pieces = []
        for piece in gen.stream(inputs["prompt"], max_new_tokens):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        model_text = "".join(pieces).strip()
        return {"answer": (inputs["lead"] + model_text).strip(), "model_text": model_text}

    return (RunnablePassthrough.assign(hits=RunnableLambda(retrieve))
            | RunnablePassthrough.assign(lead=RunnableLambda(lead))
            | RunnablePassthrough.assign(prompt=RunnableLambda(prompt))
            | RunnablePassthrough.assign(result=RunnableLambda(generate)))


def ask(index: CodeIndex, gen: Generator, question: Any, k: int = DEFAULT_K, mode: str = DEFAULT_MODE,
        max_new_tokens: int = 64, answer_format: str = "symbol-first", context_tokens: int = CONTEXT_TOKENS,
        on_token: Callable[[str], None] | None = None) -> Answer:
    """Answer one question; bad input, bad settings or an empty index raise QAError with the fix."""
    start = time.perf_counter()
    check_settings(max_new_tokens, answer_format)
    room = gen.max_positions - max_new_tokens - context_tokens - 200
    question = check_question(question, gen.tokenizer, room)
    if len(index) == 0:
        raise QAError("The index is empty: run step 1 and then qa.build_index(cfg).")
    timing: dict[str, float] = {}
    chain = build_chain(index, gen, k, mode, max_new_tokens, answer_format, context_tokens, on_token, timing)
    out = chain.invoke({"question": question})
    return Answer(question, out["result"]["answer"], out["result"]["model_text"], out["hits"],
                  timing.get("retrieval_s", 0.0), time.perf_counter() - start)
