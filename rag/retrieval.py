"""Retrieval over one knowledge base, as a LangChain ``BaseRetriever``: vector + keyword, fused, reranked.

1. vector search (cosine; exact over the keyword index's copy of the vectors for knowledge bases up
   to ``exact_search_max_chunks``, else Chroma's HNSW) and BM25 keyword search (``rag.keyword_index``)
   each give their best ``candidates`` chunks;
   a follow-up's ``context`` (set by ``rag.chain``: the follow-up after the user's previous message)
   is searched the same way, its lists fused beside the question's at full weight;
2. reciprocal rank fusion merges the two lists: a chunk scores ``weight / (rrf_k + rank)`` per list
   it is in, so agreement between the searches wins and neither score scale has to be calibrated;
3. a cross-encoder, when configured, reorders the best ``rerank_candidates`` fused chunks;
4. language coverage, when the question was also searched in a translation that is not fused
   (weight 0, the default both ways): the best passage the translation found in its own language is
   moved up to ``coverage_rank``, so an English question about a Chinese passage, or a question
   whose answer spans a Chinese and an English document, sees it (the original question's list is
   dominated by passages in its own language, even with a multilingual embedder), while the
   passages in the question's own language keep their ranks. A fused translation already ranks its
   passages, and moving one more up only displaced a passage the LLM needed;
5. the relevance gate: every candidate's cosine similarity to the question is known (keyword-only hits
   get theirs from their stored vectors). With ``min_relevance`` set, a chunk stays if it reaches it,
   or if it also matched keywords and comes within ``keyword_margin`` of it (an exact-term match makes
   it relevant where embeddings are weak); when none is left the chain refuses. With
   ``known_terms_required``, it also returns nothing for a question naming a term (``rag.named_terms``;
   an English question's names with their translation) that none of the ``term_window`` best
   candidates contains, counted after language coverage, since the covering passage is shown too:
   the question is about something near what the knowledge base holds, not about what it holds;
6. the companion (``rag.companion``), when configured and the knowledge base keeps its vectors: the
   order so far (its best ``candidates``) is fused once more, at ``companion_rrf_k``, with the
   companion embedder's rankings for the question and for its translation, each weighted
   ``companion_weight``. A chunk only the companion found joins if it passes the relevance gate.
   Measured as this second stage (docs/BENCHMARKS.md); fused into step 2 instead, as a third list
   of the first fusion, it ranked worse on every held-out set;
7. copies: a text already ranked (the same passage stored for a copied or linked file) is left out.

Each returned document carries its cosine similarity in ``metadata["score"]`` (the ``query``
contract's score), plus ``fusion``, ``vector_rank`` and ``keyword_rank`` for inspection.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_chroma import Chroma
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.companion import CompanionEncoder
from rag.keyword_index import KeywordIndex
from rag.language import detect_language, passage_language
from rag.named_terms import unmentioned_term
from rag.rerank import CrossEncoderReranker


@dataclass(frozen=True)
class _PendingTranslation:
    """The question's translation ("" for none, or for one that only repeats the question), then its
    embedding (None for ""), each set by the translation's thread when made."""

    text: Future[str]
    vector: Future[np.ndarray | None]


@dataclass
class _Candidate:
    document: Document
    cosine: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    fusion: float = 0.0
    rerank: float | None = None
    translation_fusion: float = 0.0  # the translated question's own (unweighted) fusion score

    @property
    def language(self) -> str:
        return str(self.document.metadata.get("language") or passage_language(self.document.page_content))


def _named_text(document: Document) -> str:
    """What a passage names: its text, and its document's title and section, which a Word or HTML
    chunk keeps in metadata only (a question about "the VPN section" names a heading)."""
    meta = document.metadata
    named = (meta.get(key) for key in ("title", "section"))
    return " ".join([document.page_content, *(str(value) for value in named if value)])


class KnowledgeBaseRetriever(BaseRetriever):
    """Hybrid search in one knowledge base, best first; ``keyword=None`` is vector search alone."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Chroma
    keyword: KeywordIndex | None = None
    exact: KeywordIndex | None = None  # its exact vector copy, when it keeps one, replaces HNSW search
    reranker: CrossEncoderReranker | None = None
    k: int = 5
    candidates: int = 20
    rrf_k: int = 60
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    rerank_candidates: int = 12
    min_relevance: float | None = None
    keyword_margin: float = 0.05
    translate: Callable[[str], str | None] | None = None  # question -> the same in the other language
    translation_weight: float = 0.0  # an English question's Chinese translation counts this much
    translation_weight_to_english: float = 0.0  # a Chinese question's English translation, likewise
    coverage_rank: int = 3  # an unfused translation's best passage in its language gets at least this rank
    translation_wait_s: float | None = None  # after the question's own search; None = until it is done
    companion: CompanionEncoder | None = None  # its rankings are fused into the final order (step 6)
    companion_weight: float = 0.5
    companion_rrf_k: int = 10
    known_terms_required: bool = False  # refuse questions naming what the best candidates never mention
    term_window: int = 5
    context: str | None = None  # a follow-up with the message it follows: searched too, fused at weight 1

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        pool: dict[str, _Candidate] = {}
        vectors: list[np.ndarray] = []
        target = "zh" if detect_language(query) == "en" else "en"
        translation = self._start_translation(query, target)
        self._search(query, 1.0, pool, vectors)
        translated, translated_vector = self._translation_result(translation)
        share = self.translation_weight if target == "zh" else self.translation_weight_to_english
        if translated:
            self._search(translated, share, pool, vectors, translation=True, query_vector=translated_vector)
        if self.context and self.context.strip() != query.strip():
            self._search(self.context, 1.0, pool, vectors)
        self._fill_keyword_only(pool, vectors)

        ranked = sorted(pool.values(), key=lambda c: c.fusion, reverse=True)
        if self.reranker is not None and ranked:
            head = ranked[: max(self.rerank_candidates, self.k)]
            for candidate, score in zip(
                head, self.reranker.score(query, [c.document.page_content for c in head]), strict=True
            ):
                candidate.rerank = score
            ranked = sorted(head, key=lambda c: c.rerank or 0.0, reverse=True) + ranked[len(head) :]
        covered = bool(translated and self.coverage_rank and share == 0)
        if self.known_terms_required:
            window = self._cover_language(ranked, target) if covered else ranked
            if self._unmentioned_term(query, window, translated) is not None:
                return []
        if self.min_relevance is not None:
            ranked = [c for c in ranked if self._relevant(c)]
        if covered:
            ranked = self._cover_language(ranked, target)
        if self.companion is not None:
            ranked = self._with_companion(
                ranked, [query, translated] if translated else [query], pool, vectors
            )
        return [self._document(candidate) for candidate in _distinct(ranked)[: self.k]]

    def _with_companion(
        self,
        ranked: list[_Candidate],
        texts: list[str],
        pool: dict[str, _Candidate],
        vectors: list[np.ndarray],
    ) -> list[_Candidate]:
        """``ranked``'s best ``candidates`` fused with the companion's rankings of ``texts`` (step 6)."""
        assert self.companion is not None
        width = max(self.candidates, self.k)
        lists = []
        for vector in self.companion.encode(texts):
            hits = self.exact.nearest(vector, width, companion=True) if self.exact is not None else None
            if hits is None:
                return ranked  # no companion copy: a large knowledge base, or an index built without
            lists.append([chunk_id for chunk_id, _ in hits])
        allowed = {str(candidate.document.id): candidate for candidate in ranked}
        scores: dict[str, float] = {}  # insertion order, the retriever's first, breaks ties
        for rank, candidate in enumerate(ranked[:width], start=1):
            scores[str(candidate.document.id)] = 1.0 / (self.companion_rrf_k + rank)
        for chunk_ids in lists:
            for rank, chunk_id in enumerate(chunk_ids, start=1):
                share = self.companion_weight / (self.companion_rrf_k + rank)
                scores[chunk_id] = scores.get(chunk_id, 0.0) + share
        # Chunks in the pool but not in ``ranked`` were gated out; only unseen ones may join.
        newcomers = {
            chunk_id: _Candidate(Document(page_content="")) for chunk_id in scores if chunk_id not in pool
        }
        self._fill(newcomers, vectors)
        for chunk_id, candidate in newcomers.items():
            if candidate.cosine is not None and (self.min_relevance is None or self._relevant(candidate)):
                allowed[chunk_id] = candidate
        fused = sorted(
            (chunk_id for chunk_id in scores if chunk_id in allowed), key=scores.__getitem__, reverse=True
        )
        rest = [candidate for candidate in ranked[width:] if str(candidate.document.id) not in scores]
        return [allowed[chunk_id] for chunk_id in fused] + rest

    def _translation_result(self, pending: _PendingTranslation | None) -> tuple[str, np.ndarray | None]:
        """The translation and its embedding, or ("", None) when there is none or it is not back
        within ``translation_wait_s`` (the embedding of one that is back is always waited for).

        A late translation is not lost: it finishes on its thread and the translator caches it, so
        the question asked again is searched in both languages.
        """
        if pending is None:
            return "", None
        try:
            text = pending.text.result(timeout=self.translation_wait_s)
        except TimeoutError:
            return "", None
        return text, pending.vector.result()

    def _cover_language(self, ranked: list[_Candidate], language: str) -> list[_Candidate]:
        """``ranked`` with the translation's best passage in ``language`` at ``coverage_rank`` or better."""
        found = [c for c in ranked if c.translation_fusion > 0 and c.language == language]
        if not found:
            return ranked
        best = max(found, key=lambda c: c.translation_fusion)
        place = self.coverage_rank - 1
        if ranked.index(best) <= place:
            return ranked
        rest = [c for c in ranked if c is not best]
        return [*rest[:place], best, *rest[place:]]

    def _unmentioned_term(self, query: str, ranked: list[_Candidate], translation: str) -> str | None:
        """The first of the question's named terms that none of the best ``term_window`` candidates contains.

        The best candidates, not the whole knowledge base: measured on the evaluation set, the Beijing
        of "the Beijing office's shuttle" and the v3 of "API v3's rate limit" each occur somewhere in
        it (a hotel price table, another product's release notes), but not among the passages that a
        search for those questions finds. Five and not the final top-k: a question spanning two
        passages may find only one of them in its top 3, yet names what the other holds (with ten,
        the Beijing hotel-price row was among them).
        """
        best = ranked[: self.term_window]
        window = " ".join(_named_text(c.document) for c in best)
        english = bool(best) and all(c.language == "en" for c in best)
        return unmentioned_term(query, window, translation, english_passages=english)

    def _holds_language(self, language: str) -> bool:
        """Whether the knowledge base has passages in ``language`` (translating into another is wasted).

        Chunks carry their language in metadata since it was introduced; a knowledge base ingested
        before carries none, and then every language counts as held.
        """
        if self.store.get(where={"language": language}, limit=1, include=[])["ids"]:
            return True
        return not self.store.get(where={"language": {"$in": ["zh", "en"]}}, limit=1, include=[])["ids"]

    def _start_translation(self, query: str, target: str) -> _PendingTranslation | None:
        """The question's translation, and its embedding, made on a thread of their own while the
        question itself is searched.

        Translating is an LLM round trip (seconds on a CPU vLLM); the question's own embedding and
        searches (25-40 ms here) no longer wait for it. A cached translation is embedded there too,
        beside the question's own embedding: the two no longer take turns (~15 ms each with the e5
        engine on its one thread). The thread runs in this one's context, so the LLM call stays a
        child of this run for callbacks (token counts), and its errors are raised here. A knowledge
        base without passages in the ``target`` language is not worth the round trip.
        """
        if self.translate is None:
            return None
        pending = _PendingTranslation(Future(), Future())
        context = contextvars.copy_context()
        translate = self.translate

        def translation() -> str:
            text = (translate(query) or "").strip() if self._holds_language(target) else ""
            return "" if text == query.strip() else text  # the question itself: nothing new to search

        def embedding(text: str) -> np.ndarray | None:
            return self._query_vector(text) if text else None

        def work() -> None:
            try:
                text = context.run(translation)
            except BaseException as error:
                pending.text.set_exception(error)
                return
            pending.text.set_result(text)
            try:
                pending.vector.set_result(embedding(text))
            except BaseException as error:
                pending.vector.set_exception(error)

        threading.Thread(target=work, name="kbqa-translate", daemon=True).start()
        return pending

    def _search(
        self,
        text: str,
        share: float,
        pool: dict[str, _Candidate],
        vectors: list[np.ndarray],
        *,
        translation: bool = False,
        query_vector: np.ndarray | None = None,
    ) -> None:
        """Vector and keyword search for ``text``; their ranks go into ``pool``, weighted by ``share``.

        A ``translation``'s own fusion score is also kept apart, for language coverage.
        ``query_vector``: ``text``'s embedding where it was made already.
        """
        width = max(self.candidates, self.k)
        if query_vector is None:
            query_vector = self._query_vector(text)
        vectors.append(query_vector)
        for rank, (document, similarity) in enumerate(self._nearest(query_vector, width), start=1):
            candidate = pool.setdefault(str(document.id), _Candidate(document))
            candidate.cosine = max(candidate.cosine or -1.0, similarity)
            candidate.vector_rank = min(candidate.vector_rank or rank, rank)
            candidate.fusion += share * self.vector_weight / (self.rrf_k + rank)
            if translation:
                candidate.translation_fusion += self.vector_weight / (self.rrf_k + rank)
        if self.keyword is not None:
            for hit in self.keyword.search(text, width):
                candidate = pool.setdefault(hit.id, _Candidate(Document(page_content="")))
                candidate.keyword_rank = min(candidate.keyword_rank or hit.rank, hit.rank)
                candidate.fusion += share * self.keyword_weight / (self.rrf_k + hit.rank)
                if translation:
                    candidate.translation_fusion += self.keyword_weight / (self.rrf_k + hit.rank)

    def _query_vector(self, text: str) -> np.ndarray:
        return np.asarray(self.store.embeddings.embed_query(text), dtype=np.float32)

    def _nearest(self, query_vector: np.ndarray, width: int) -> list[tuple[Document, float]]:
        """The ``width`` chunks nearest to ``query_vector`` with their cosine similarity, best first.

        Exact over the keyword index's copy of the vectors where it keeps one (small knowledge bases),
        else Chroma's approximate search; chunks the copy names that are gone from Chroma (an ingestion
        is replacing them) are skipped, as keyword hits are.
        """
        exact = self.exact.nearest(query_vector, width) if self.exact is not None else None
        if exact is None:
            # Collections are created with cosine space (rag.store), so similarity = 1 - distance.
            hits = self.store.similarity_search_by_vector_with_relevance_scores(
                query_vector.tolist(), k=width
            )
            return [(document, 1.0 - float(distance)) for document, distance in hits]
        found: dict[str, Any] = self.store.get(
            ids=[chunk_id for chunk_id, _ in exact], include=["documents", "metadatas"]
        )
        documents = {
            chunk_id: Document(id=chunk_id, page_content=text or "", metadata=metadata or {})
            for chunk_id, text, metadata in zip(
                found["ids"], found["documents"], found["metadatas"], strict=True
            )
        }
        return [(documents[chunk_id], similarity) for chunk_id, similarity in exact if chunk_id in documents]

    def _relevant(self, candidate: _Candidate) -> bool:
        assert self.min_relevance is not None
        cosine = candidate.cosine or 0.0
        if cosine >= self.min_relevance:
            return True
        return candidate.keyword_rank is not None and cosine >= self.min_relevance - self.keyword_margin

    def _fill_keyword_only(self, pool: dict[str, _Candidate], query_vectors: list[np.ndarray]) -> None:
        """Fetch text, metadata and stored vector of chunks only the keyword search found."""
        missing = {chunk_id: candidate for chunk_id, candidate in pool.items() if candidate.cosine is None}
        self._fill(missing, query_vectors)
        for chunk_id in [chunk_id for chunk_id, candidate in missing.items() if candidate.cosine is None]:
            del pool[chunk_id]  # indexed but gone from Chroma: the index is being rebuilt

    def _fill(self, candidates: dict[str, _Candidate], query_vectors: list[np.ndarray]) -> None:
        """Text, metadata and cosine similarity (from the stored vector) of chunks found by id only;
        one gone from Chroma keeps ``cosine`` None."""
        if not candidates:
            return
        found: dict[str, Any] = self.store.get(
            ids=list(candidates), include=["documents", "metadatas", "embeddings"]
        )
        for chunk_id, text, metadata, vector in zip(
            found["ids"], found["documents"], found["metadatas"], found["embeddings"], strict=True
        ):
            candidate = candidates[chunk_id]
            candidate.document = Document(id=chunk_id, page_content=text or "", metadata=metadata or {})
            stored = np.asarray(vector, dtype=np.float32)
            candidate.cosine = max(float(np.dot(stored, query_vector)) for query_vector in query_vectors)

    @staticmethod
    def _document(candidate: _Candidate) -> Document:
        metadata = {
            **candidate.document.metadata,
            "score": float(candidate.cosine or 0.0),
            "fusion": candidate.fusion,
            "vector_rank": candidate.vector_rank,
            "keyword_rank": candidate.keyword_rank,
        }
        if candidate.rerank is not None:
            metadata["rerank_score"] = candidate.rerank
        return Document(
            id=candidate.document.id, page_content=candidate.document.page_content, metadata=metadata
        )


def _distinct(ranked: list[_Candidate]) -> list[_Candidate]:
    """``ranked`` without the later copies of a text: the same passage stored for two files (a copied
    or linked document) would fill two of the few places the LLM reads, and says nothing new there."""
    seen: set[str] = set()
    distinct = []
    for candidate in ranked:
        text = candidate.document.page_content
        if text not in seen:
            seen.add(text)
            distinct.append(candidate)
    return distinct
