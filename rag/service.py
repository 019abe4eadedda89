"""The operations every interface offers (CLI, HTTP API, web UI), in one place.

Interfaces stay thin: they translate their input into a call here and the result into their output,
so the API and the UI can never disagree about what "upload" or "delete" means. The service loads
the embedding model and opens Chroma lazily, once, and shares them between calls.

Uploads are staged, each in a folder of its own under ``uploads/KB/.staging/``, and put in place only
by their job, under the knowledge base's lock, right before they are indexed: a job that waits for
another writer, fails, or never runs leaves the stored file and the index agreeing (a failed file's
previous bytes are put back). A job still queued when the app stops hands its files over to the
upload folder, where the next ingestion of that knowledge base picks them up
(``ingest.pipeline.Ingestor._uploads_to_redo``); the staging folder is named after the process, so
that ingestion also takes over the files of an app that was killed before it could hand them over.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import chromadb
from langchain_chroma import Chroma
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from ingest.loaders import LOADERS, is_supported
from ingest.manifest import FOLDER, UPLOAD
from ingest.pipeline import UPLOAD_STAGING, Ingestor, IngestSummary, staging_folder_name
from rag.chain import build_rag_chain, make_translator
from rag.companion import CompanionEncoder, load_companion
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings, load_embeddings
from rag.jobs import IngestJob, IngestJobs, JobReporter
from rag.keyword_index import KeywordIndex, keyword_folder
from rag.locking import IngestionLock, LockWaitCancelledError
from rag.rerank import CrossEncoderReranker, load_reranker
from rag.retrieval import KnowledgeBaseRetriever
from rag.store import (
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    StoreError,
    chroma_client,
    find_collection,
    knowledge_base_exists,
    knowledge_base_info,
    list_knowledge_bases,
    missing_knowledge_base,
    open_vector_store,
    validate_kb_name,
)

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_COPY_BLOCK = 1 << 20


class UploadHandedOverError(RuntimeError):
    """An upload job that did not run to the end, its files left for the next ingestion to take."""


class DocumentNotFoundError(StoreError, LookupError):
    """No document of that source in the knowledge base."""


class UploadError(ValueError):
    """An upload the user must fix: bad file name, unsupported type."""


class UploadTooLargeError(UploadError):
    """The files of one upload exceed ``max_upload_bytes``."""


class UploadConflictError(UploadError):
    """An upload named like a document that came from an ingested folder (which it would replace)."""


def safe_upload_name(filename: str | None) -> str:
    """The bare file name an upload is stored under; never a path, so it cannot leave the KB's folder."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip()
    if not name or name.startswith(".") or len(name.encode("utf-8")) > 200:
        raise UploadError(f"invalid file name {filename!r}: give a plain name such as report.pdf")
    if not is_supported(Path(name)):
        raise UploadError(
            f"unsupported file type {Path(name).suffix or '(none)'} for {name!r}; "
            f"supported: {', '.join(sorted(LOADERS))}"
        )
    return name


@dataclass(frozen=True)
class _OpenKnowledgeBase:
    """What querying one knowledge base needs, built on the collection of that id."""

    collection_id: Any
    store: Chroma
    keyword: KeywordIndex


class KnowledgeBaseService:
    def __init__(
        self, settings: Settings, *, embeddings: SentenceTransformerEmbeddings | None = None
    ) -> None:
        """``embeddings``: an embedder already loaded elsewhere (tests, benchmarks) instead of loading one."""
        self.settings = settings
        self._open: dict[str, _OpenKnowledgeBase] = {}
        self._open_lock = threading.Lock()
        self._translators_lock = threading.Lock()
        # id(model) -> (model, its translator); holding the model keeps its id from being reused.
        self._translators: OrderedDict[int, tuple[BaseChatModel, Callable[[str], str | None]]] = OrderedDict()
        if embeddings is not None:
            self.__dict__["embeddings"] = embeddings  # fills the cached property below

    @cached_property
    def embeddings(self) -> SentenceTransformerEmbeddings:
        return load_embeddings(self.settings)

    @cached_property
    def companion(self) -> CompanionEncoder | None:
        return load_companion(self.settings.companion_model, self.embeddings)

    @property
    def retrieval_mode(self) -> str:
        """The configured mode, or with "auto" the one measured best for the embedding model."""
        mode = self.settings.retrieval_mode
        return mode if mode != "auto" else getattr(self.embeddings, "retrieval_mode", "hybrid")

    @cached_property
    def client(self) -> chromadb.ClientAPI:
        return chroma_client(self.settings)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.settings, self.embeddings, self.client)

    @cached_property
    def jobs(self) -> IngestJobs:
        return IngestJobs()

    # --- asking -----------------------------------------------------------------------------
    @cached_property
    def reranker(self) -> CrossEncoderReranker | None:
        return load_reranker(self.settings)

    def keyword_index(self, kb: str) -> KeywordIndex:
        """One per knowledge base, kept so its loaded BM25 model is reused across queries."""
        return self._opened(kb).keyword

    def _opened(self, kb: str) -> _OpenKnowledgeBase:
        """The vector store and keyword index of ``kb``, reused while its collection stays the same.

        One Chroma lookup per call (opening them anew took three, ~10 ms per question at 10k chunks);
        a knowledge base deleted and re-created, here or by another process, has a new collection id
        and is opened again, which also re-checks its embedding model.
        """
        collection = find_collection(self.client, kb)
        opened = self._open.get(kb)
        if collection is not None and opened is not None and opened.collection_id == collection.id:
            return opened
        with self._open_lock:
            store = open_vector_store(self.client, kb, self.embeddings, create=False)  # raises if gone
            collection = store._collection
            folder = keyword_folder(self.settings.data_dir, kb)
            keyword = KeywordIndex(
                folder,
                collection,
                IngestionLock(self.settings.data_dir, kb),
                vector_limit=self.settings.exact_search_max_chunks,
                companion=self.companion,
            )
            opened = _OpenKnowledgeBase(collection.id, store, keyword)
            self._open[kb] = opened
        return opened

    def retriever(
        self,
        kb: str,
        *,
        k: int | None = None,
        gated: bool = True,
        translate: Callable[[str], str | None] | None = None,
    ) -> KnowledgeBaseRetriever:
        """``gated`` drops chunks under ``min_relevance`` (for answering); ungated is plain top-k search.

        ``translate`` (see ``rag.chain.make_translator``) adds a search with the question in the other
        language.
        """
        settings = self.settings
        opened = self._opened(kb)
        threshold = settings.min_relevance
        if threshold is None:
            threshold = self.embeddings.min_relevance
        return KnowledgeBaseRetriever(
            store=opened.store,
            keyword=opened.keyword if self.retrieval_mode == "hybrid" else None,
            exact=opened.keyword,
            reranker=self.reranker,
            k=k or settings.top_k,
            candidates=settings.retrieval_candidates,
            rrf_k=settings.rrf_k,
            vector_weight=settings.vector_weight,
            keyword_weight=settings.keyword_weight,
            rerank_candidates=settings.rerank_candidates,
            min_relevance=threshold if gated else None,
            translate=translate,
            translation_weight=settings.translation_weight,
            translation_weight_to_english=settings.translation_weight_to_english,
            coverage_rank=settings.language_coverage_rank,
            translation_wait_s=settings.translation_wait_s,
            known_terms_required=gated and settings.refuse_unknown_terms,
            companion=self.companion,
            companion_weight=settings.companion_weight,
            companion_rrf_k=settings.companion_rrf_k,
        )

    def search(self, kb: str, question: str, *, k: int | None = None) -> list[dict[str, Any]]:
        """Top-k chunks, best first, as the ``query`` contract prints them."""
        with _deleted_meanwhile(kb):
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

    def chain(
        self,
        kb: str,
        llm: BaseChatModel,
        *,
        k: int | None = None,
        condense_llm: BaseChatModel | None = None,
    ) -> Runnable:
        translate = self.translator(condense_llm or llm)
        retriever = self.retriever(kb, k=k, translate=translate)
        return build_rag_chain(retriever, llm, self.settings, condense_llm=condense_llm)

    _KEPT_TRANSLATORS = 8

    def translator(self, llm: BaseChatModel) -> Callable[[str], str | None] | None:
        """The query translator answering uses, or None when ``query_translation`` is off.

        One per chat model, kept while the model is (``rag.llm.LLMProvider`` hands out the same
        condense model to every request), so a question asked again reuses its translation from the
        translator's cache instead of waiting for another LLM round trip before retrieval can finish
        (5-6 s per English question on the two-core CPU vLLM measured): the translation is asked at
        temperature 0 and does not change. A translator made per request threw its cache away after
        one question.
        """
        mode = self.settings.query_translation
        if mode == "off":
            return None
        with self._translators_lock:
            kept = self._translators.get(id(llm))
            if kept is not None and kept[0] is llm:
                self._translators.move_to_end(id(llm))
                return kept[1]
            only_from = "en" if mode == "en-to-zh" else None
            translate = make_translator(llm, self.settings.prompts_dir, only_from=only_from)
            self._translators[id(llm)] = (llm, translate)
            while len(self._translators) > self._KEPT_TRANSLATORS:
                self._translators.popitem(last=False)
            return translate

    # --- knowledge bases ----------------------------------------------------------------------
    def stats(self, kb: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        if kb is not None:
            with _deleted_meanwhile(kb):
                info = knowledge_base_info(self.client, kb).as_dict()
            info.pop("kb")
            return info
        return [info.as_dict() for info in list_knowledge_bases(self.client)]

    def knowledge_base_names(self) -> list[str]:
        return [info.name for info in list_knowledge_bases(self.client)]

    def require_knowledge_base(self, kb: str) -> str:
        if not knowledge_base_exists(self.client, validate_kb_name(kb)):
            raise missing_knowledge_base(self.client, kb)
        return kb

    def create_knowledge_base(self, kb: str) -> dict[str, Any]:
        if knowledge_base_exists(self.client, validate_kb_name(kb)):
            raise KnowledgeBaseExistsError(f"knowledge base {kb!r} already exists")
        open_vector_store(self.client, kb, self.embeddings, create=True)
        return knowledge_base_info(self.client, kb).as_dict()

    def delete_knowledge_base(self, kb: str) -> None:
        """The collection, its ingestion records and its uploaded files all go."""
        self.require_knowledge_base(kb)

        def drop() -> None:  # under the lock: a queued upload's job then finds its files gone too
            self.client.delete_collection(kb)
            shutil.rmtree(self._upload_folder(kb), ignore_errors=True)

        self.ingestor.forget_knowledge_base(kb, drop)
        self._open.pop(kb, None)

    # --- documents ----------------------------------------------------------------------------
    def list_documents(self, kb: str) -> list[dict[str, Any]]:
        self.require_knowledge_base(kb)
        return [
            {"source": record.source, "chunks": record.chunks, "bytes": record.size, "origin": record.origin}
            for record in self.ingestor.manifest.records(kb).values()
        ]

    def delete_document(self, kb: str, source: str) -> int:
        """Its chunks leave the index; an uploaded file also leaves the upload folder."""
        self.require_knowledge_base(kb)
        record = self.ingestor.manifest.records(kb).get(source)
        if record is None:
            raise DocumentNotFoundError(f"knowledge base {kb!r} has no document {source!r}")
        chunks = self.ingestor.delete_document(kb, source)
        if record.origin == UPLOAD:
            path = self._upload_folder(kb) / source
            if path.resolve().parent == self._upload_folder(kb).resolve():
                path.unlink(missing_ok=True)
        return chunks

    def upload(self, kb: str, files: list[tuple[str | None, BinaryIO]]) -> IngestJob:
        """Stage the files and queue their ingestion.

        Names are checked and sizes counted before anything is kept: a bad or oversized upload leaves
        no file behind. Each upload stages in a folder of its own, so two uploads of the same name at
        once never write one file; its job puts the files in place (see the module's docstring).
        """
        self.require_knowledge_base(kb)
        if not files:
            raise UploadError("no files in the upload")
        names = [safe_upload_name(filename) for filename, _ in files]
        if len(set(names)) != len(names):
            raise UploadError("the upload holds two files of the same name")
        taken = self._folder_documents(kb, names)
        if taken:
            raise UploadConflictError(_conflict_message(kb, taken))
        own = staging_folder_name(uuid.uuid4().hex)  # named after this process: see ingest.pipeline
        staging = _make_staging(self._upload_folder(kb) / UPLOAD_STAGING / own)
        budget = self.settings.max_upload_bytes
        try:
            for name, (_, stream) in zip(names, files, strict=True):
                with (staging / name).open("wb") as out:
                    while block := stream.read(_COPY_BLOCK):
                        budget -= len(block)
                        if budget < 0:
                            limit = self.settings.max_upload_bytes
                            raise UploadTooLargeError(
                                f"the upload is larger than the limit of {limit / 2**20:.1f} MB "
                                f"({limit:,} bytes, KBQA_MAX_UPLOAD_BYTES)"
                            )
                        out.write(block)
        except BaseException:
            _remove_staging(staging)
            raise
        return self.jobs.submit(
            kb,
            names,
            lambda report: self._ingest_uploads(kb, staging, names, report),
            on_cancel=lambda: self._hand_over(kb, staging, names),
        )

    def close(self) -> None:
        """Stop the upload queue at the app's exit: the running job finishes, queued ones hand their
        files over to the next ingestion (``IngestJobs.shutdown``)."""
        if "jobs" in self.__dict__:
            self.jobs.shutdown()

    def _ingest_uploads(self, kb: str, staging: Path, names: list[str], report: JobReporter) -> IngestSummary:
        """The job of one upload: wait (bounded) for the knowledge base's lock, then, holding it, put
        the staged files in place and ingest them.

        Waiting rather than failing: the files were accepted, and a CLI ingestion of the same
        knowledge base is no reason to drop them. Whatever happens, the staging folder goes.
        """
        try:
            with self.ingestor.lock(kb).hold(
                f"ingest {len(names)} uploaded file(s)",
                wait_s=self.settings.upload_lock_wait_s,
                on_wait=report.waiting,
                cancel=report.stopping.is_set,
            ):
                report.waiting(None)
                return self._ingest_staged(kb, staging, names, report)
        except LockWaitCancelledError as stopped:  # the app is stopping: as for a job that never ran
            self._hand_over(kb, staging, names)
            raise UploadHandedOverError(
                "the app stopped while this upload waited for another writer; the next ingestion of "
                "the knowledge base ingests its files"
            ) from stopped
        finally:
            _remove_staging(staging)

    def _ingest_staged(self, kb: str, staging: Path, names: list[str], report: JobReporter) -> IngestSummary:
        """Under the lock: put each staged file in place, keeping a link to the bytes it replaces,
        and ingest them; a file that fails (or all, when the ingestion raises) gets those bytes back,
        or is removed when it was new, so what is stored is what the index holds.

        Checked again here, as only here they cannot change: the knowledge base still exists (an
        upload queued before it was deleted fails rather than bringing it back, empty), and no name
        has become a folder's document meanwhile.
        """
        if not knowledge_base_exists(self.client, kb) or not staging.is_dir():
            raise KnowledgeBaseNotFoundError(
                f"knowledge base {kb!r} was deleted before this upload could be ingested"
            )
        taken = self._folder_documents(kb, names)
        report.refused(taken)
        folder = self._upload_folder(kb)
        placed: list[tuple[Path, Path | None]] = []  # (stored file, link to the bytes it replaced)
        try:
            for name in names:
                if name in taken:
                    continue
                final = folder / name
                previous = None
                if final.is_file():
                    previous = staging / f".{name}.previous"
                    _keep_bytes(final, previous)
                os.replace(staging / name, final)
                placed.append((final, previous))
            summary = self.ingestor.ingest_files(
                [(final, final.name) for final, _ in placed],
                kb,
                origin=UPLOAD,
                progress=False,
                on_file=report.file_done,
                on_chunks=report.chunks_embedded,
                create=False,
            )
        except BaseException:
            for final, previous in placed:
                _put_back(final, previous)
            raise
        failed = {source for source, _ in summary.failed}
        for final, previous in placed:
            if final.name in failed:
                _put_back(final, previous)
        if taken:
            summary.failed += [(name, _conflict_message(kb, [name])) for name in taken]
        return summary

    def _hand_over(self, kb: str, staging: Path, names: list[str]) -> None:
        """Put the files of a job that will not run (the app stops) in place, without indexing them:
        the next ingestion of ``kb`` finds them stored but not recorded as they are, and ingests
        them. A name that is a folder's document is dropped (it would be refused)."""
        if staging.is_dir():
            taken = self._folder_documents(kb, names)
            for name in names:
                if name not in taken and (staging / name).is_file():
                    os.replace(staging / name, self._upload_folder(kb) / name)
        _remove_staging(staging)

    def _folder_documents(self, kb: str, names: list[str]) -> list[str]:
        """The ``names`` that are documents of an ingested folder in ``kb``.

        Uploads and an ingested folder's files share one name space (a document's source). An upload
        replacing a folder's document would be undone by the folder's next ingestion and leave its
        file behind, so it is refused; replacing an earlier upload is an update.
        """
        records = self.ingestor.manifest.records(kb)
        return [name for name in names if name in records and records[name].origin == FOLDER]

    def _upload_folder(self, kb: str) -> Path:
        return self.settings.uploads_dir / validate_kb_name(kb)


def _conflict_message(kb: str, taken: list[str]) -> str:
    return (
        f"knowledge base {kb!r} already has {', '.join(map(repr, taken))} from an ingested folder: "
        "rename the file to upload it beside that document, or change it in the folder and "
        "ingest the folder again"
    )


def _keep_bytes(path: Path, keep: Path) -> None:
    """A second name for ``path``'s bytes (a hard link: no copy, same mtime), else a copy."""
    try:
        os.link(path, keep)
    except OSError:
        shutil.copy2(path, keep)


def _put_back(stored: Path, previous: Path | None) -> None:
    """Undo putting an upload in place: the bytes it replaced return, or a new file goes."""
    if previous is not None and previous.exists():
        os.replace(previous, stored)
    else:
        stored.unlink(missing_ok=True)


@contextmanager
def _deleted_meanwhile(kb: str) -> Iterator[None]:
    """A knowledge base deleted (by another request or process) between opening it and reading it
    is as missing as one that never was: Chroma's ``NotFoundError`` becomes ours (a 404, not a 500)."""
    try:
        yield
    except chromadb.errors.NotFoundError as error:
        raise KnowledgeBaseNotFoundError(f"knowledge base {kb!r} does not exist (it was deleted)") from error


def _make_staging(staging: Path) -> Path:
    """Make an upload's own staging folder; the shared parent may be removed, when it empties, by a
    job finishing right now, so making it is tried again."""
    for _ in range(5):
        try:
            staging.mkdir(parents=True)
            return staging
        except FileNotFoundError:
            continue
    staging.mkdir(parents=True)
    return staging


def _remove_staging(staging: Path) -> None:
    """An upload's staging folder goes, and the shared ``.staging`` with it once no upload uses it
    (the upload folder then holds only stored documents)."""
    shutil.rmtree(staging, ignore_errors=True)
    with suppress(OSError):  # another upload is staged there, or it is gone already
        staging.parent.rmdir()
