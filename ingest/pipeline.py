"""Incremental ingestion of a folder into one knowledge base.

Duplicate policy, stated: a knowledge base mirrors its folder. Unchanged files (same size and mtime,
or same content hash) are skipped without parsing; a changed file's chunks are replaced through
LangChain's ``index(cleanup="incremental")``, which re-embeds only chunks that really changed; a file
gone from the folder has its chunks deleted; chunk ids are content hashes, so nothing is ever stored
twice. A file that fails to load is reported and keeps the chunks of its last good version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chromadb
from langchain_chroma import Chroma
from langchain_classic.indexes import SQLRecordManager
from langchain_core.indexing import index
from tqdm import tqdm

from ingest.loaders import LoadError, is_supported, load_file
from ingest.manifest import FOLDER, FileRecord, Manifest
from ingest.splitter import make_splitter, split_documents
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings
from rag.keyword_index import KeywordIndex, keyword_folder
from rag.store import chroma_client, open_vector_store, validate_kb_name

log = logging.getLogger(__name__)

# Called after each file with (files done, files in all, that file's source).
ProgressCallback = Callable[[int, int, str], None]


@dataclass
class IngestSummary:
    """What one run did; ``failed`` and ``skipped`` hold (source, reason) pairs."""

    kb: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    @property
    def ingested_any(self) -> bool:
        return bool(self.added or self.updated or self.unchanged or self.deleted)

    def as_dict(self) -> dict[str, object]:
        return {
            "kb": self.kb,
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
            "failed": [{"source": source, "reason": reason} for source, reason in self.failed],
            "skipped": [{"source": source, "reason": reason} for source, reason in self.skipped],
            "chunks_written": self.chunks_written,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 2),
        }


def record_manager(settings: Settings, kb: str) -> SQLRecordManager:
    settings.index_db.parent.mkdir(parents=True, exist_ok=True)
    manager = SQLRecordManager(f"kbqa/{kb}", db_url=f"sqlite:///{settings.index_db.resolve()}")
    manager.create_schema()
    return manager


def scan_folder(folder: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Supported files under ``folder`` (sorted, as (path, relative source)) and the skipped ones.

    Hidden files and folders are ignored; symlinked folders are not followed, so a link loop cannot
    trap the walk.
    """
    files: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            source = path.relative_to(folder).as_posix()
            if not is_supported(path):
                skipped.append((source, f"unsupported file type {path.suffix or '(none)'}"))
            elif not path.is_file():
                skipped.append((source, "not a regular file (broken link?)"))
            else:
                files.append((path, source))
    return files, skipped


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Ingestor:
    """Holds the long-lived pieces (embedder, Chroma client, splitter) so several runs can share them."""

    def __init__(
        self,
        settings: Settings,
        embeddings: SentenceTransformerEmbeddings,
        client: chromadb.ClientAPI | None = None,
    ) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self.client = client if client is not None else chroma_client(settings)
        self.splitter = make_splitter(settings.chunk_size, settings.chunk_overlap)
        self.manifest = Manifest(settings.index_db)

    def ingest_folder(
        self, folder: Path, kb: str, *, full: bool = False, progress: bool = True
    ) -> IngestSummary:
        """Bring knowledge base ``kb`` in line with ``folder``; ``full`` re-reads and re-embeds every file.

        Uploaded documents (origin ``upload``) are not part of any folder, so mirroring leaves them be.
        """
        validate_kb_name(kb)
        if not folder.exists():
            raise FileNotFoundError(f"folder {folder} does not exist")
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        started = time.monotonic()
        files, skipped = scan_folder(folder)
        summary = self.ingest_files(files, kb, full=full, progress=progress, refresh_keyword_index=False)
        summary.skipped = skipped

        store = open_vector_store(self.client, kb, self.embeddings, create=True)
        manager = record_manager(self.settings, kb)
        present = {source for _, source in files}
        known = self.manifest.records(kb)
        for source in sorted(set(known) - present):
            if known[source].origin == FOLDER:
                summary.chunks_deleted += self._delete_source(source, kb, store, manager)
                summary.deleted.append(source)
        self._refresh_keyword_index(kb, summary, force=full)
        summary.seconds = time.monotonic() - started
        return summary

    def ingest_files(
        self,
        files: Sequence[tuple[Path, str]],
        kb: str,
        *,
        full: bool = False,
        origin: str = FOLDER,
        progress: bool = True,
        on_file: ProgressCallback | None = None,
        refresh_keyword_index: bool = True,
    ) -> IngestSummary:
        """Add or update these (path, source) files in ``kb``; other documents of ``kb`` are untouched.

        ``refresh_keyword_index=False`` leaves the BM25 index to the caller (a folder run rebuilds it
        once, after its deletions too).
        """
        validate_kb_name(kb)
        started = time.monotonic()
        summary = IngestSummary(kb=kb)
        store = open_vector_store(self.client, kb, self.embeddings, create=True)
        manager = record_manager(self.settings, kb)
        known = self.manifest.records(kb)

        bar = tqdm(files, desc=f"ingest {kb}", unit="file", disable=not progress)
        for done, (path, source) in enumerate(bar, start=1):
            bar.set_postfix_str(source[-40:], refresh=False)
            self._ingest_file(
                path, source, kb, known.get(source), store, manager, summary, full=full, origin=origin
            )
            if on_file is not None:
                on_file(done, len(files), source)
        if refresh_keyword_index:
            self._refresh_keyword_index(kb, summary, force=full)
        summary.seconds = time.monotonic() - started
        return summary

    def delete_document(self, kb: str, source: str) -> int:
        """Remove one document's chunks and its manifest row; returns how many chunks went."""
        store = open_vector_store(self.client, validate_kb_name(kb), self.embeddings, create=False)
        removed = self._delete_source(source, kb, store, record_manager(self.settings, kb))
        self.keyword_index(kb).rebuild()
        return removed

    def forget_knowledge_base(self, kb: str) -> None:
        """Drop the ingestion records of ``kb`` (its collection is deleted by the caller)."""
        manager = record_manager(self.settings, validate_kb_name(kb))
        keys = manager.list_keys()
        if keys:
            manager.delete_keys(keys)
        self.manifest.remove_kb(kb)
        KeywordIndex(keyword_folder(self.settings.data_dir, kb), None).delete()

    def keyword_index(self, kb: str) -> KeywordIndex:
        return KeywordIndex(keyword_folder(self.settings.data_dir, kb), self.client.get_collection(kb))

    def _refresh_keyword_index(self, kb: str, summary: IngestSummary, *, force: bool) -> None:
        """Rebuild BM25 when chunks changed (or it is missing), so keyword search matches Chroma."""
        index = self.keyword_index(kb)
        changed = summary.chunks_written or summary.chunks_deleted or force
        if changed or not index.is_current():
            index.rebuild()

    def _ingest_file(
        self,
        path: Path,
        source: str,
        kb: str,
        previous: FileRecord | None,
        store: Chroma,
        manager: SQLRecordManager,
        summary: IngestSummary,
        *,
        full: bool,
        origin: str,
    ) -> None:
        try:
            stat = path.stat()
            if not full and previous and previous.sha256:
                if (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                    summary.unchanged.append(source)
                    return
                sha = file_sha256(path)
                if sha == previous.sha256:
                    self.manifest.put(
                        kb,
                        FileRecord(source, sha, stat.st_size, stat.st_mtime_ns, previous.chunks, origin),
                    )
                    summary.unchanged.append(source)
                    return
            else:
                sha = file_sha256(path)
            chunks = split_documents(
                load_file(path, source), self.splitter, headings=self.settings.chunk_headings
            )
        except LoadError as error:
            summary.failed.append((source, str(error)))
            return
        except OSError as error:
            summary.failed.append((source, f"cannot read file ({error.strerror or error})"))
            return

        self.manifest.put(kb, FileRecord(source, None, stat.st_size, stat.st_mtime_ns, len(chunks), origin))
        result = index(
            chunks,
            manager,
            store,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
            force_update=full,
            batch_size=max(self.settings.embedding_batch_size, 64),
        )
        self.manifest.put(kb, FileRecord(source, sha, stat.st_size, stat.st_mtime_ns, len(chunks), origin))
        summary.chunks_written += result["num_added"] + result["num_updated"]
        summary.chunks_deleted += result["num_deleted"]
        (summary.updated if previous else summary.added).append(source)

    def _delete_source(self, source: str, kb: str, store: Chroma, manager: SQLRecordManager) -> int:
        keys = manager.list_keys(group_ids=[source])
        if keys:
            store.delete(ids=keys)
            manager.delete_keys(keys)
        self.manifest.remove(kb, source)
        return len(keys)
