"""Embed each distinct chunk text once: within an ingestion batch, and against what Chroma already holds.

Embedding is nearly all of ingestion's cost on a CPU. Folders hold copies (the same policy in two
departments' folders, a file moved to another folder, boilerplate sections), and every copy would be
embedded again, because LangChain's indexing API keys a chunk by its text *and* metadata (the source
differs). ``ReusingEmbeddings`` sits between the vector store and the real embedder: texts seen in the
current batch, or stored in the collection under the same content hash (``seed_from_store``), come
from there; only the rest reach the model, each distinct text once. Vectors are the same model's, so
nothing about retrieval changes. The memory is cleared per batch (``forget``), so it stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

_LOOKUP_PAGE = 500  # content hashes per Chroma lookup (keeps the query's $in list reasonable)
# Texts per call to the model between two progress reports, in the model's own batches: large
# enough that the model still sorts a good share of texts by length, small enough that a 300-page
# PDF's thousand chunks show progress every few seconds on a CPU.
_BATCHES_PER_REPORT = 16


class ReusingEmbeddings(Embeddings):
    """The wrapped embedder, plus vectors it has seen in this batch; its identity is the wrapped one's."""

    def __init__(self, inner: Any, on_embedded: Callable[[int], None] | None = None) -> None:
        """``on_embedded(n)`` is told each time n more texts went through the model."""
        self.inner = inner
        self.on_embedded = on_embedded
        self._known: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        # name, dimension, min_relevance, ...: whatever the store and the service ask of an embedder.
        return getattr(self.inner, name)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        # Longest first, as the model orders one call's texts itself (padding each of its batches to
        # texts of about the same length); sorted here, the slices between reports keep that order.
        missing = sorted(
            (text for text in dict.fromkeys(texts) if text not in self._known), key=len, reverse=True
        )
        step = len(missing) if self.on_embedded is None else _BATCHES_PER_REPORT * self._batch_size()
        for start in range(0, len(missing), max(step, 1)):
            part = missing[start : start + step]
            self._known.update(zip(part, self.inner.embed_documents(part), strict=True))
            if self.on_embedded is not None:
                self.on_embedded(len(part))
        return [self._known[text] for text in texts]

    def _batch_size(self) -> int:
        """Texts the model takes in one step: a batch per worker thread."""
        size = getattr(self.inner, "batch_size", None)
        workers = getattr(self.inner, "workers", 1)
        size = size if isinstance(size, int) and size > 0 else 32
        return size * (workers if isinstance(workers, int) and workers > 0 else 1)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    def seed_from_store(self, collection: Any, chunks: Sequence[Document]) -> None:
        """Remember the stored vectors of any of ``chunks`` whose text the collection already holds."""
        by_hash = {chunk.metadata.get("content_hash"): chunk.page_content for chunk in chunks}
        hashes = [value for value in by_hash if value]
        for start in range(0, len(hashes), _LOOKUP_PAGE):
            page = hashes[start : start + _LOOKUP_PAGE]
            found = collection.get(where={"content_hash": {"$in": page}}, include=["documents", "embeddings"])
            vectors = found["embeddings"]
            if vectors is None:
                continue
            for text, vector in zip(found["documents"] or [], vectors, strict=True):
                if text is not None and text not in self._known:
                    self._known[text] = [float(value) for value in vector]

    def forget(self) -> None:
        self._known.clear()
