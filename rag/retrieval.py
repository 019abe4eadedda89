"""Retrieval over one knowledge base, as a LangChain ``BaseRetriever``.

Each returned document carries its relevance (cosine similarity, higher is better) in
``metadata["score"]`` so that the chain can gate on it and the CLI can print it. Chunks below
``min_relevance`` are dropped here, so every consumer sees the same definition of "nothing relevant".
"""

from __future__ import annotations

from langchain_chroma import Chroma
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class KnowledgeBaseRetriever(BaseRetriever):
    """Vector search in the knowledge base's Chroma collection, best first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Chroma
    k: int = 5
    min_relevance: float | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        # Collections are created with cosine space (rag.store), so similarity = 1 - distance.
        hits = self.store.similarity_search_with_score(query, k=self.k)
        documents = []
        for document, distance in hits:
            score = 1.0 - distance
            if self.min_relevance is not None and score < self.min_relevance:
                continue
            documents.append(
                Document(
                    id=document.id,
                    page_content=document.page_content,
                    metadata={**document.metadata, "score": float(score)},
                )
            )
        return documents
