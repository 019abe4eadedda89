"""The operations every interface offers (CLI now, HTTP API and UI later), in one place.

Interfaces stay thin: they translate their input into a call here and the result into their output.
The service loads the embedding model and opens Chroma lazily, once, and shares them between calls.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import chromadb
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from rag.chain import build_rag_chain
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings, load_embeddings
from rag.retrieval import KnowledgeBaseRetriever
from rag.store import (
    chroma_client,
    knowledge_base_info,
    list_knowledge_bases,
    open_vector_store,
)


class KnowledgeBaseService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def embeddings(self) -> SentenceTransformerEmbeddings:
        return load_embeddings(self.settings)

    @cached_property
    def client(self) -> chromadb.ClientAPI:
        return chroma_client(self.settings)

    def retriever(self, kb: str, *, k: int | None = None, gated: bool = True) -> KnowledgeBaseRetriever:
        """``gated`` drops chunks under ``min_relevance`` (for answering); ungated is plain top-k search."""
        store = open_vector_store(self.client, kb, self.embeddings, create=False)
        threshold = self.settings.min_relevance
        if threshold is None:
            threshold = self.embeddings.min_relevance
        return KnowledgeBaseRetriever(
            store=store, k=k or self.settings.top_k, min_relevance=threshold if gated else None
        )

    def search(self, kb: str, question: str, *, k: int | None = None) -> list[dict[str, Any]]:
        """Top-k chunks, best first, as the ``query`` contract prints them."""
        documents = self.retriever(kb, k=k, gated=False).invoke(question)
        return [
            {
                "text": document.page_content,
                "source": document.metadata.get("source"),
                "page": document.metadata.get("page"),
                "score": round(document.metadata["score"], 6),
            }
            for document in documents
        ]

    def stats(self, kb: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        if kb is not None:
            info = knowledge_base_info(self.client, kb).as_dict()
            info.pop("kb")
            return info
        return [info.as_dict() for info in list_knowledge_bases(self.client)]

    def chain(self, kb: str, llm: BaseChatModel, *, k: int | None = None) -> Runnable:
        return build_rag_chain(self.retriever(kb, k=k), llm, self.settings)
