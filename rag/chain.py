"""The RAG chain as one LangChain Runnable: condense → retrieve → (refuse | prompt → LLM) → answer.

Input ``{"question": str, "history": [(role, text), ...]}`` (history optional, oldest first). Output
(and, when streamed, the keys as they become known): ``language``, ``query`` (the standalone query
retrieval used), ``documents``, ``sources``, ``context`` first — so a UI can show sources before the
answer starts — then ``answer`` in text deltas.

A follow-up such as "and how many seats does it have?" retrieves nothing useful on its own, so with a
history the LLM first rewrites it into a standalone question; that question is both the retrieval
query and what the answer prompt asks. When retrieval finds nothing relevant the answer is the
refusal text of the question's language and no LLM is called: a small model asked to answer from
irrelevant context invents, so "not in the knowledge base" is decided by retrieval scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from rag.config import Settings
from rag.language import detect_language
from rag.prompts import answer_prompt, format_context, quote_untrusted, read_prompt

_SPEAKERS = {"zh": {"user": "用户", "assistant": "助手"}, "en": {"user": "User", "assistant": "Assistant"}}


def source_dict(index: int, document: Document) -> dict[str, Any]:
    """The public shape of one cited passage (CLI ``ask --json``, the API and the UI)."""
    return {
        "index": index,
        "source": document.metadata.get("source"),
        "page": document.metadata.get("page"),
        "text": document.page_content,
        "score": document.metadata.get("score"),
    }


def format_history(history: Sequence[tuple[str, str]], language: str) -> str:
    speakers = _SPEAKERS.get(language, _SPEAKERS["en"])
    return "\n".join(f"{speakers.get(role, role)}: {' '.join(text.split())}" for role, text in history)


def _first_line(text: str) -> str:
    """A model's reply up to its first line break: small models append explanations after it."""
    return next((line.strip() for line in text.strip().splitlines() if line.strip()), "")


def _standalone(text: str, fallback: str) -> str:
    """The rewritten question, or the original when the model returned nothing usable."""
    line = _first_line(text)
    for prefix in ("独立的问题：", "独立问题：", "Standalone question:", "Question:"):
        line = line.removeprefix(prefix).strip()
    return line if 2 <= len(line) <= 4 * len(fallback) + 200 else fallback


def make_translator(
    llm: BaseChatModel, prompts_dir: Path, *, only_from: str | None = None
) -> Callable[[str], str | None]:
    """Question → the same question in the other language (zh ↔ en), for cross-lingual retrieval.

    An English question about Chinese documents shares no words with them and, with small embedders,
    little meaning either; searching with both wordings and fusing the results finds the passage.
    ``only_from="en"`` translates English questions only (a Chinese question gains nothing from an
    English twin on a Chinese corpus, and its noise cost paraphrase questions in our measurements).
    """

    @lru_cache(maxsize=256)  # evaluation and retries ask again; a translation does not change
    def translate(question: str) -> str | None:
        source = detect_language(question)
        if only_from is not None and source != only_from:
            return None
        target = "en" if source == "zh" else "zh"
        prompt = read_prompt(prompts_dir, target, "translate").format(question=question)
        line = _first_line(StrOutputParser().invoke(llm.invoke(prompt)))
        return line if 2 <= len(line) <= 4 * len(question) + 100 else None

    return translate


def build_rag_chain(
    retriever: BaseRetriever,
    llm: BaseChatModel,
    settings: Settings,
    *,
    condense_llm: BaseChatModel | None = None,
) -> Runnable:
    """``condense_llm`` (default ``llm``) rewrites follow-ups; give it a low temperature and few tokens."""
    prompts_dir = settings.prompts_dir
    rewriter = condense_llm or llm

    def language_of(inputs: dict[str, Any]) -> str:
        return detect_language(inputs["question"]) if settings.language == "auto" else settings.language

    def query_of(inputs: dict[str, Any]) -> Runnable | str:
        turns = settings.history_turns
        history = list(inputs.get("history") or [])[-turns:] if turns else []
        if not history:
            return inputs["question"]
        prompt = ChatPromptTemplate.from_messages(
            [("human", read_prompt(prompts_dir, inputs["language"], "condense"))]
        ).partial(history=format_history(history, inputs["language"]))
        question = inputs["question"]
        return (
            RunnableLambda(lambda _: {"question": question})
            | prompt
            | rewriter
            | StrOutputParser()
            | RunnableLambda(lambda text: _standalone(text, question))
        )

    def sources_of(inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [source_dict(number, document) for number, document in enumerate(inputs["documents"], start=1)]

    def context_of(inputs: dict[str, Any]) -> str:
        return format_context(prompts_dir, inputs["language"], inputs["documents"])

    def answer(inputs: dict[str, Any]) -> Runnable | str:
        if not inputs["documents"]:
            return read_prompt(prompts_dir, inputs["language"], "refusal")
        ask = RunnableLambda(lambda values: {**values, "question": quote_untrusted(values["query"])})
        return ask | answer_prompt(prompts_dir, inputs["language"]) | llm | StrOutputParser()

    return (
        RunnablePassthrough.assign(language=RunnableLambda(language_of))
        | RunnablePassthrough.assign(query=RunnableLambda(query_of))
        | RunnablePassthrough.assign(documents=RunnableLambda(lambda inputs: inputs["query"]) | retriever)
        | RunnablePassthrough.assign(sources=RunnableLambda(sources_of), context=RunnableLambda(context_of))
        | RunnablePassthrough.assign(answer=RunnableLambda(answer))
    ).with_config(run_name="kbqa_rag")
