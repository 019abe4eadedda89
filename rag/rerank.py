"""Optional cross-encoder reranking of the fused candidates (sentence-transformers ``CrossEncoder``).

A trained reranker (production default: a bge-reranker from the hub) reads question and passage
together and orders candidates far better than either search alone. None ships inside a PyPI wheel,
so where the configured model is neither local, cached nor downloadable, reranking is switched off
with one warning and retrieval works exactly as without it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rag.chinese_text import fold
from rag.config import Settings
from rag.embeddings import (
    hub_reachable,
    limit_torch_threads,
    model_cache_folder,
    model_dtype,
    surely_uncached,
    with_dtype,
)

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Scores (query, passage) pairs; higher is more relevant. Both are read folded, as the embedders
    read them (``rag.chinese_text``), so a difference of script or width is not one of relevance."""

    def __init__(self, model: Any, name: str, *, batch_size: int = 16, dtype: str = "float32") -> None:
        self._model = with_dtype(model, model_dtype(dtype, model))
        self.name = name
        self.batch_size = batch_size

    def score(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        query = fold(query)
        pairs = [(query, fold(passage)) for passage in passages]
        scores = self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return [float(score) for score in scores]


_UNAVAILABLE = (
    "reranker %r is not cached here and the model hub is unreachable: retrieval runs without "
    "reranking (KBQA_RERANKER_MODEL=none turns it off without this warning)"
)


def load_reranker(settings: Settings) -> CrossEncoderReranker | None:
    """The configured reranker, or None (with a warning) when it cannot be had here."""
    spec = settings.reranker_model
    if not spec or spec.lower() == "none":
        return None
    local = Path(spec).expanduser()
    if not local.exists() and surely_uncached(spec, settings) and not hub_reachable(settings.hub_timeout_s):
        log.warning(_UNAVAILABLE, spec)  # said before importing sentence-transformers and torch for nothing
        return None
    from sentence_transformers import CrossEncoder

    limit_torch_threads(settings)
    device, folder, dtype = settings.embedding_device, model_cache_folder(settings), settings.reranker_dtype
    try:
        if local.exists():
            return CrossEncoderReranker(
                CrossEncoder(str(local), device=device, local_files_only=True), local.name, dtype=dtype
            )
        try:
            cached = CrossEncoder(spec, device=device, local_files_only=True, cache_folder=folder)
            return CrossEncoderReranker(cached, spec, dtype=dtype)
        except Exception:
            if not hub_reachable(settings.hub_timeout_s):
                log.warning(_UNAVAILABLE, spec)
                return None
        return CrossEncoderReranker(CrossEncoder(spec, device=device, cache_folder=folder), spec, dtype=dtype)
    except Exception as error:
        log.warning("reranker %r is not available here (%s): retrieval runs without reranking", spec, error)
        return None
