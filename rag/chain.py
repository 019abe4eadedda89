"""The RAG chain as one LangChain Runnable: retrieve → (refuse | prompt → LLM) → answer with sources.

Input ``{"question": str}``. Output (and, when streamed, the keys as they become known):
``language``, ``documents``, ``sources``, ``context`` first — so a UI can show sources before the
answer starts — then ``answer`` in text deltas. When retrieval finds nothing relevant the answer is
the refusal text of the question's language and no LLM is called: a small model asked to answer from
irrelevant context invents, so "not in the knowledge base" is decided by retrieval scores.
"""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from rag.config import Settings
from rag.language import detect_language
from rag.prompts import answer_prompt, format_context, read_prompt


def source_dict(index: int, document: Document) -> dict[str, Any]:
    """The public shape of one cited passage (CLI ``ask --json`` and, later, the API)."""
    return {
        "index": index,
        "source": document.metadata.get("source"),
        "page": document.metadata.get("page"),
        "text": document.page_content,
        "score": document.metadata.get("score"),
    }


def build_rag_chain(retriever: BaseRetriever, llm: BaseChatModel, settings: Settings) -> Runnable:
    prompts_dir = settings.prompts_dir

    def language_of(inputs: dict[str, Any]) -> str:
        return detect_language(inputs["question"]) if settings.language == "auto" else settings.language

    def sources_of(inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [source_dict(number, document) for number, document in enumerate(inputs["documents"], start=1)]

    def context_of(inputs: dict[str, Any]) -> str:
        return format_context(prompts_dir, inputs["language"], inputs["documents"])

    def answer(inputs: dict[str, Any]) -> Runnable | str:
        if not inputs["documents"]:
            return read_prompt(prompts_dir, inputs["language"], "refusal")
        return answer_prompt(prompts_dir, inputs["language"]) | llm | StrOutputParser()

    return (
        RunnablePassthrough.assign(language=RunnableLambda(language_of))
        | RunnablePassthrough.assign(documents=RunnableLambda(lambda inputs: inputs["question"]) | retriever)
        | RunnablePassthrough.assign(sources=RunnableLambda(sources_of), context=RunnableLambda(context_of))
        | RunnablePassthrough.assign(answer=RunnableLambda(answer))
    ).with_config(run_name="kbqa_rag")
