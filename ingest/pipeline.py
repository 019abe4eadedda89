"""Incremental ingestion of a folder into one knowledge base.

Duplicate policy, stated: a knowledge base mirrors its folder. Unchanged files (same size and mtime,
or same content hash) are skipped without parsing; a changed file's chunks are replaced through
LangChain's ``index(cleanup="scoped_full")``, which re-embeds only chunks that really changed; a file
gone from the folder has its chunks deleted; chunk ids are content hashes, so nothing is ever stored
twice. A file that fails to load is reported and keeps the chunks of its last good version. A file
read by an earlier kbqa, or with other chunk settings, is read again (``reading_key``): its unchanged
chunks keep their vectors, so only what reads differently is embedded.

Crash safety: a run may be killed at any instant and the next run ends in the state one clean run
would have left. Every write holds the knowledge base's ingestion lock (``rag.locking``), so runs never
interleave. A file's manifest row is written *pending* before its chunks and completed after them, so
the next run redoes a file that was cut off; chunk ids are content hashes, so redoing upserts instead
of duplicating; chunks Chroma got before the record manager heard of them (a kill between the two
writes) are found by their ``source`` metadata and removed when that file is redone or deleted; and the
keyword index is marked stale before the first chunk changes, so it is rebuilt even if the run died
before its final rebuild. Uploads are in no folder, so whichever ingestion of the knowledge base comes
next (a folder run or another upload) redoes the stored uploads that the index does not hold as they
are on disk: left pending, never recorded, or changed since their row (``_uploads_to_redo``).

A file's chunks are written by one ``index()`` call with ``scoped_full`` cleanup: its old chunks are
deleted once, after all its new ones are in. (``incremental`` cleans up after every sub-batch of
``batch_size`` chunks, and so deleted and rewrote the not-yet-seen chunks of any file larger than one.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import chromadb
from langchain_chroma import Chroma
from langchain_classic.indexes import SQLRecordManager
from langchain_core.documents import Document
from langchain_core.indexing import index
from tqdm import tqdm

from ingest.loaders import (
    LoadError,
    LoadLimits,
    is_supported,
    load_file,
    not_regular_reason,
    os_error_reason,
)
from ingest.manifest import FOLDER, UPLOAD, FileRecord, Manifest
from ingest.splitter import make_splitter, split_documents
from ingest.vector_reuse import ReusingEmbeddings
from rag.companion import load_companion
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings, embedding_workers
from rag.keyword_index import KeywordIndex, keyword_folder
from rag.locking import IngestionLock
from rag.store import (
    chroma_client,
    find_collection,
    knowledge_base_exists,
    missing_knowledge_base,
    open_vector_store,
    validate_kb_name,
)

log = logging.getLogger(__name__)

# Called after each file with (files done, files in all, that file's source).
ProgressCallback = Callable[[int, int, str], None]
# Called as the embedder works with the number of chunks embedded so far in this run: one large file
# (a 300-page PDF) is minutes of embedding on a CPU, and a per-file count would sit still meanwhile.
ChunkProgressCallback = Callable[[int], None]
# Files read (loaded and split) ahead of the one being embedded; bounds the memory parsing may hold.
_READ_AHEAD = 4


class EmptyFolderError(RuntimeError):
    """A folder with no document to ingest, for a knowledge base that holds documents of a folder."""


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
    reread: list[str] = field(default_factory=list)  # other stored uploads read again (lost, or read before)
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    def absorb(self, other: IngestSummary) -> None:
        """Count a nested run over other stored uploads (brought back after a lost collection, or read
        by an earlier kbqa) as this run's work, in ``reread``: apart from the files the run was given,
        so that they cannot make it look as if those were ingested."""
        self.reread += other.added + other.updated + other.unchanged
        self.failed += other.failed
        self.chunks_written += other.chunks_written
        self.chunks_deleted += other.chunks_deleted

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
            "reread": len(self.reread),
            "chunks_written": self.chunks_written,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class _FileRead:
    """One file as the reader thread found it: unchanged (no chunks), failed, or split into chunks."""

    path: Path
    source: str
    previous: FileRecord | None
    sha: str | None
    size: int
    mtime_ns: int
    chunks: list[Document] | None = None
    failure: str | None = None


@dataclass(frozen=True)
class _BatchTarget:
    """Where one run writes: opened once per run, not once per file."""

    kb: str
    store: Chroma
    manager: SQLRecordManager
    vectors: ReusingEmbeddings
    keyword_index: KeywordIndex


UPLOAD_STAGING = ".staging"
"""The folder, inside a knowledge base's upload folder, where each accepted upload waits for its job,
in a folder named after the process that accepted it (``staging_folder_name``, ``rag.service``)."""


def staging_folder_name(unique: str) -> str:
    """``<pid>-<start>-<unique>``: the process, and when it started, so that a later process given
    the same pid (an app restarted in a container is PID 1 again) is not taken for it."""
    return f"{os.getpid()}-{_process_start(os.getpid())}-{unique}"


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), or "0" where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "0"
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else "0"  # field 22 of the line: starttime


def _adopt_abandoned_uploads(uploads: Path, records: dict[str, FileRecord]) -> None:
    """Put in place the files staged by a process that is gone: an app killed before their jobs ran
    (a clean stop hands them over itself), so that this ingestion ingests them as it does any
    unrecorded upload instead of leaving them hidden and lost. A name that is now a folder's
    document is dropped, as its job would have refused it."""
    try:
        with os.scandir(uploads / UPLOAD_STAGING) as listing:
            folders = [Path(entry.path) for entry in listing if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for folder in folders:
        owner, _, rest = folder.name.partition("-")
        started = rest.partition("-")[0]
        if not owner.isdigit() or _process_alive(int(owner), started):
            continue
        log.warning("ingesting the uploads an earlier app left unindexed in %s", folder)
        for path in folder.iterdir():
            record = records.get(path.name)
            if path.name.startswith(".") or not path.is_file() or (record and record.origin != UPLOAD):
                continue  # (".NAME.previous": the bytes an upload was replacing)
            stored = uploads / path.name
            try:  # a file stored since (a later upload of the same name) is newer: it stays
                newer = stored.stat().st_mtime_ns >= path.stat().st_mtime_ns
            except FileNotFoundError:
                newer = False
            if not newer:
                os.replace(path, stored)
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # empty now, unless a live upload is staged there
        (uploads / UPLOAD_STAGING).rmdir()


def _process_alive(pid: int, started: str) -> bool:
    """Whether process ``pid`` runs, and is the one that started at ``started`` (where known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        pass
    now = _process_start(pid)
    return started in ("", "0") or now == "0" or now == started


READING_VERSION = 8
"""Raise it when a loader or the splitter turns an unchanged file into different chunks (version 2:
Word and HTML headings name their chunks' sections, an HTML page's menus and site header and footer
are left out, its table rows kept together; 3: so are a Word table's rows; 4: a "--- | ---" rule
under an HTML table's ``<th>`` row and a Word table's marked head row; 5: a PDF's ruled tables read
row by row, ``ingest.pdf_tables``, and its headings told by their size, ``ingest.pdf_headings``;
6: numbered titles as headings where a file marks none, ``ingest.numbered_headings``; 7: decimal
titles name sections, and a PDF page starting with a heading no longer repeats the one left open;
8: a PDF's outline names its headings where it names more than sizes tell, lines wholly in bold
at the body size are headings, numbered titles go under them, scanned pages are read by OCR, and
Chinese lines wrapped before a number, a bracket or a comma are joined),
so knowledge bases ingested before get the new reading at their next ingestion instead of only
after ``--full``."""


def reading_key(settings: Settings) -> str:
    """How files are turned into chunks now: the reading version and the chunk settings. A file whose
    manifest row records another key is read again even when its bytes did not change."""
    headings = "headings" if settings.chunk_headings else "plain"
    return f"v{READING_VERSION} {settings.chunk_size}/{settings.chunk_overlap} {headings}"


def record_manager(settings: Settings, kb: str) -> SQLRecordManager:
    settings.index_db.parent.mkdir(parents=True, exist_ok=True)
    manager = SQLRecordManager(f"kbqa/{kb}", db_url=f"sqlite:///{settings.index_db.resolve()}")
    manager.create_schema()
    return manager


def scan_folder(folder: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Supported files under ``folder`` (sorted, as (path, relative source)) and the skipped ones.

    Hidden files and folders are ignored; links to folders are reported and not followed, so a link
    loop cannot trap the walk. Everything the walk cannot take gets a reason in ``skipped``: a folder
    it may not open, a symlink loop or dangling link, a FIFO or device (reading one would block or
    never end), a name that is not UTF-8 (it could not be stored or printed). The walk keeps its own
    stack rather than recursing, so no folder depth can exhaust Python's recursion limit.
    """
    files: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    stack = [folder]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            skipped.append((_printable(directory, folder), f"cannot open folder: {os_error_reason(error)}"))
            continue
        subfolders: list[Path] = []
        for entry in entries:
            if entry.name.startswith((".", "~$")):  # hidden, or an open Office document's lock file
                continue
            path = Path(entry.path)
            source = _printable(path, folder)
            if source != path.relative_to(folder).as_posix():
                skipped.append((source, "file name is not valid UTF-8 (rename it)"))
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(path)
                    continue
                reason = _not_a_file(path)
            except OSError as error:
                reason = os_error_reason(error)
            if reason is None and not is_supported(path):
                reason = f"unsupported file type {path.suffix or '(none)'}"
            if reason is None:
                files.append((path, source))
            else:
                skipped.append((source, reason))
        stack.extend(reversed(subfolders))
    return files, skipped


def _printable(path: Path, folder: Path) -> str:
    """The source name of ``path``; bytes that are not UTF-8 shown as \\xNN (surrogates cannot be stored)."""
    relative = path.relative_to(folder).as_posix() if path != folder else "."
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (not a folder itself) cannot be read as a document, or None for a regular file."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        try:
            info = path.stat()
        except OSError as error:
            if error.errno == errno.ELOOP:
                return "not a regular file (symlink loop)"
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                return "not a regular file (broken symbolic link: its target is missing)"
            raise
        if stat.S_ISDIR(info.st_mode):
            return "symbolic link to a folder (not followed)"
    if not stat.S_ISREG(info.st_mode):
        return not_regular_reason(info.st_mode)
    return None


def file_sha256(path: Path) -> str:
    """Content hash, read in 1 MB blocks so a big file costs no memory.

    An unreadable file raises ``LoadError("permission denied")``: hashing is the first read of a
    file, and the user needs that reason, not the errno text.
    """
    digest = hashlib.sha256()
    try:
        handle = path.open("rb")
    except PermissionError as error:
        raise LoadError("permission denied") from error
    with handle:
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
        self.limits = LoadLimits.from_settings(settings)
        self.manifest = Manifest(settings.index_db)
        self.reading = reading_key(settings)
        # The keyword-index rebuild keeps the companion's vectors too (rag.companion), encoded in bulk
        # by as many threads as a CPU embedder has (the CLI: one per core; the app: 1).
        threads = embedding_workers(settings)
        self.companion = load_companion(settings.companion_model, embeddings, threads=threads)

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
        with self.lock(kb).hold(f"ingest folder {folder}"):
            return self._ingest_folder(folder, kb, full=full, progress=progress)

    def _ingest_folder(self, folder: Path, kb: str, *, full: bool, progress: bool) -> IngestSummary:
        started = time.monotonic()
        new = not knowledge_base_exists(self.client, kb)
        files, skipped = scan_folder(folder)
        known = self.manifest.records(kb)
        kept = sum(record.origin == FOLDER for record in known.values())
        if not files and kept:
            # An unmounted share or a mistyped path is empty too: mirroring it would delete every
            # document, which a user who means that can do in one command instead.
            raise EmptyFolderError(
                f"{folder} holds no document to ingest, so the {kept} document(s) of knowledge base "
                f"{kb!r} were kept; to remove them, run: python -m rag delete --kb {kb}"
            )
        # A document uploaded under the same name is not the folder's to replace (nor to delete).
        uploaded = [source for _, source in files if source in known and known[source].origin == UPLOAD]
        own = [(path, source) for path, source in files if source not in uploaded]
        summary = self.ingest_files(own, kb, full=full, progress=progress, refresh_keyword_index=False)
        summary.skipped = skipped
        summary.failed += [
            (source, "a document of this name was uploaded to the knowledge base; rename one of them")
            for source in uploaded
        ]

        store = open_vector_store(self.client, kb, self.embeddings, create=True)
        manager = record_manager(self.settings, kb)
        present = {source for _, source in files}
        # A folder or link that cannot be read now is not proof that its files are gone: keep them.
        unreadable = tuple(source for source, _ in skipped)
        known = self.manifest.records(kb)
        for source in sorted(set(known) - present):
            hidden = source in unreadable or source.startswith(tuple(f"{s}/" for s in unreadable))
            if known[source].origin == FOLDER and not hidden:
                summary.chunks_deleted += self._delete_source(source, kb, store, manager)
                summary.deleted.append(source)
        self._refresh_keyword_index(kb, summary, force=full)
        if new and not summary.ingested_any:
            # A mistyped or empty folder must not leave an empty knowledge base behind to be listed.
            self.forget_knowledge_base(kb, lambda: self.client.delete_collection(kb))
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
        on_chunks: ChunkProgressCallback | None = None,
        refresh_keyword_index: bool = True,
        create: bool = True,
    ) -> IngestSummary:
        """Add or update these (path, source) files in ``kb``; other documents of ``kb`` are untouched.

        ``refresh_keyword_index=False`` leaves the BM25 index to the caller (a folder run rebuilds it
        once, after its deletions too). ``create=False`` raises ``KnowledgeBaseNotFoundError`` for a
        knowledge base that does not exist instead of making it (an upload queued before its
        knowledge base was deleted must not bring it back).
        """
        validate_kb_name(kb)
        with self.lock(kb).hold(f"ingest {len(files)} file(s)"):
            return self._ingest_files(
                files,
                kb,
                full=full,
                origin=origin,
                progress=progress,
                on_file=on_file,
                on_chunks=on_chunks,
                refresh_keyword_index=refresh_keyword_index,
                create=create,
            )

    def _ingest_files(
        self,
        files: Sequence[tuple[Path, str]],
        kb: str,
        *,
        full: bool,
        origin: str,
        progress: bool,
        on_file: ProgressCallback | None,
        refresh_keyword_index: bool,
        on_chunks: ChunkProgressCallback | None = None,
        recover_uploads: bool = True,
        create: bool = True,
    ) -> IngestSummary:
        """Read files ahead in a thread, gather their chunks into batches, write each batch at once.

        One embedding call per batch of ``ingest_batch_chunks`` chunks (from many small files) lets the
        embedder sort by length and pad less; the reader thread parses the next files while the
        embedder (which releases the GIL) works. A file counts as done for ``on_file`` once its batch
        is written.
        """
        started = time.monotonic()
        summary = IngestSummary(kb=kb)
        ours = {source for _, source in files}
        if not create and not knowledge_base_exists(self.client, kb):
            raise missing_knowledge_base(self.client, kb)
        if recover_uploads:
            # No folder run brings uploads back or reads them again: their files are only in the
            # upload folder, so the ingestion that finds them lost, read by an earlier kbqa, or left
            # half done does it.
            lost = [item for item in self._forget_records_without_chunks(kb) if item[1] not in ours]
            self._ingest_uploads_again(kb, lost, summary, full=True, progress=progress)
            # after the lost ones are back: they are recorded as they are on disk now
            redo, gone = self._uploads_to_redo(kb, ours)
            if gone:
                summary.chunks_deleted += self._drop_uploads(kb, gone)
            self._ingest_uploads_again(kb, redo, summary, full=False, progress=progress)
        embedded = 0
        latest = ""

        def note(*, refresh: bool) -> None:
            bar.set_postfix_str(f"{latest}, {embedded} chunks embedded", refresh=refresh)

        def writing(files: list[_FileRead]) -> None:
            """Name the files whose chunks are being embedded and written (not the last one read ahead,
            which may be an unchanged file that needs no work)."""
            nonlocal latest
            more = f" and {len(files) - 1} more" if len(files) > 1 else ""
            latest = files[0].source[-40:] + more
            note(refresh=True)

        def chunks_embedded(count: int) -> None:
            nonlocal embedded
            embedded += count
            note(refresh=True)
            if on_chunks is not None:
                on_chunks(embedded)

        vectors = ReusingEmbeddings(self.embeddings, on_embedded=chunks_embedded)
        target = _BatchTarget(
            kb,
            open_vector_store(self.client, kb, vectors, create=create),  # type: ignore[arg-type]
            record_manager(self.settings, kb),
            vectors,
            self.keyword_index(kb),
        )
        known = self.manifest.records(kb)
        batch: list[_FileRead] = []
        batch_chunks = 0  # chunks in batch, kept as files join it instead of summed again per file
        waiting: list[str] = []
        done = 0

        def report() -> None:
            nonlocal done
            for source in waiting:
                done += 1
                bar.update(1)
                if on_file is not None:
                    on_file(done, len(files), source)
            waiting.clear()

        # Files count as done when their chunks are written, not when read: the bar then moves as the
        # work does, and its note counts chunks while a large file is embedded.
        bar = tqdm(total=len(files), desc=f"ingest {kb}", unit="file", disable=not progress)
        try:
            for read in self._read_ahead(files, known, full=full):
                waiting.append(read.source)
                if read.chunks is not None:
                    batch.append(read)
                    batch_chunks += len(read.chunks)
                else:
                    self._record_without_chunks(read, kb, summary, origin)
                if batch_chunks >= self.settings.ingest_batch_chunks:
                    writing(batch)
                    self._write_batch(batch, target, summary, full=full, origin=origin)
                    batch, batch_chunks = [], 0
                if not batch:
                    report()
            if batch:
                writing(batch)
                self._write_batch(batch, target, summary, full=full, origin=origin)
            report()
        finally:
            bar.close()  # also when a file's batch fails: the error is not printed into the bar
        if refresh_keyword_index:
            self._refresh_keyword_index(kb, summary, force=full)
        summary.seconds = time.monotonic() - started
        return summary

    def delete_document(self, kb: str, source: str) -> int:
        """Remove one document's chunks and its manifest row; returns how many chunks went."""
        with self.lock(validate_kb_name(kb)).hold(f"delete document {source}"):
            store = open_vector_store(self.client, kb, self.embeddings, create=False)
            removed = self._delete_source(source, kb, store, record_manager(self.settings, kb))
            self.keyword_index(kb).rebuild()
            return removed

    def forget_knowledge_base(self, kb: str, drop_collection: Callable[[], None] | None = None) -> None:
        """Drop the collection (``drop_collection``) and the ingestion records of ``kb``, under its lock."""
        with self.lock(validate_kb_name(kb)).hold("delete knowledge base"):
            if drop_collection is not None:
                drop_collection()
            manager = record_manager(self.settings, kb)
            keys = manager.list_keys()
            if keys:
                manager.delete_keys(keys)
            self.manifest.remove_kb(kb)
            KeywordIndex(keyword_folder(self.settings.data_dir, kb), None).delete()

    def _forget_records_without_chunks(self, kb: str) -> list[tuple[Path, str]]:
        """Drop ingestion records that describe chunks the knowledge base no longer has; returns the
        (path, source) of the uploaded documents among them whose files are still stored.

        Deleting ``data/chroma`` (or its collection, or pointing ``KBQA_CHROMA_HOST`` at a new
        server) leaves the records claiming every file is indexed: each would be "unchanged" and the
        knowledge base would stay empty. Without its collection, or with an empty one where the records
        count chunks, every file is ingested again instead; a folder's files by its next run, the
        uploads (which no folder holds) by the caller, from the upload folder.
        """
        records = self.manifest.records(kb)
        if not records:
            return []
        collection = find_collection(self.client, kb)
        if collection is not None and (collection.count() or not any(r.chunks for r in records.values())):
            return []
        log.warning("knowledge base %s lost its chunks (collection gone or empty): ingesting all again", kb)
        uploads = self.settings.uploads_dir / kb
        stored = [
            (uploads / source, source)
            for source, record in sorted(records.items())
            if record.origin == UPLOAD and (uploads / source).is_file()
        ]
        self.forget_knowledge_base(kb)
        return stored

    def _uploads_to_redo(self, kb: str, ours: set[str]) -> tuple[list[tuple[Path, str]], list[str]]:
        """The stored uploads of ``kb`` (other than ``ours``) that the index does not hold as they are
        on disk, as (path, source); and the uploads left pending whose file is gone, as sources.

        To redo: a file read another way than files are now; one whose row is pending (an ingestion
        killed, or failed, while writing it: its chunks may be missing or half written); one with no
        row, or changed on disk since its row (a job stopped between putting the file in place and
        indexing it, or files handed over by an app that stopped before their job ran). A stored file
        named like a folder's document is left alone: it is not the upload's to replace.
        """
        uploads = self.settings.uploads_dir / kb
        records = self.manifest.records(kb)
        _adopt_abandoned_uploads(uploads, records)
        try:
            with os.scandir(uploads) as listing:
                stored = {
                    entry.name: entry.stat(follow_symlinks=False)
                    for entry in listing
                    if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)
                }
        except OSError:  # no upload folder (yet), or none readable: nothing stored to redo
            stored = {}
        redo = []
        for source, info in sorted(stored.items()):
            record = records.get(source)
            if source in ours or (record is not None and record.origin != UPLOAD):
                continue
            if (
                record is None
                or record.sha256 is None
                or record.reading != self.reading
                or (record.size, record.mtime_ns) != (info.st_size, info.st_mtime_ns)
            ):
                redo.append((uploads / source, source))
        gone = [
            source
            for source, record in sorted(records.items())
            if record.origin == UPLOAD
            and record.sha256 is None
            and source not in ours
            and source not in stored
        ]
        return redo, gone

    def _ingest_uploads_again(
        self, kb: str, uploads: list[tuple[Path, str]], summary: IngestSummary, *, full: bool, progress: bool
    ) -> None:
        """Ingest stored uploads that an earlier run left lost (``full``: their vectors are gone too)
        or unfinished, into ``summary`` (as ``reread``); one that cannot be read is dropped."""
        if not uploads:
            return
        log.warning("ingesting the %d uploaded document(s) of %s again", len(uploads), kb)
        again = self._ingest_files(
            uploads,
            kb,
            full=full,
            origin=UPLOAD,
            progress=progress,
            on_file=None,
            refresh_keyword_index=False,
            recover_uploads=False,
        )
        summary.absorb(again)
        self._forget_failed_uploads(kb, again)

    def _drop_uploads(self, kb: str, sources: list[str]) -> int:
        """Remove the chunks and rows of uploads whose ingestion died and whose file is gone."""
        log.warning("removing %d half-ingested upload(s) of %s whose file is gone", len(sources), kb)
        store = open_vector_store(self.client, kb, self.embeddings, create=True)
        manager = record_manager(self.settings, kb)
        return sum(self._delete_source(source, kb, store, manager) for source in sources)

    def _forget_failed_uploads(self, kb: str, summary: IngestSummary) -> None:
        """A stored upload that a recovery could not read, with no complete row, goes (chunks, row,
        file), as a failed upload's file does: else every later ingestion would retry it and report
        it failed, and it would be listed nowhere to be deleted."""
        records = self.manifest.records(kb)
        for source, _ in summary.failed:
            record = records.get(source)
            if record is not None and record.sha256 is not None:
                # Its last good version stays indexed; the failing bytes that replaced it (handed over
                # at an app's exit) are recorded as seen, so later runs do not retry and report them.
                with contextlib.suppress(OSError):
                    info = (self.settings.uploads_dir / kb / source).stat()
                    self.manifest.put(
                        kb, dataclasses.replace(record, size=info.st_size, mtime_ns=info.st_mtime_ns)
                    )
                continue
            if record is not None:
                summary.chunks_deleted += self._drop_uploads(kb, [source])
            (self.settings.uploads_dir / kb / source).unlink(missing_ok=True)

    def lock(self, kb: str) -> IngestionLock:
        return IngestionLock(self.settings.data_dir, kb)

    def keyword_index(self, kb: str) -> KeywordIndex:
        return KeywordIndex(
            keyword_folder(self.settings.data_dir, kb),
            self.client.get_collection(kb),
            self.lock(kb),
            vector_limit=self.settings.exact_search_max_chunks,
            companion=self.companion,
        )

    def _refresh_keyword_index(self, kb: str, summary: IngestSummary, *, force: bool) -> None:
        """Rebuild BM25 when chunks changed (or it is missing or marked stale by a killed run)."""
        index = self.keyword_index(kb)
        changed = summary.chunks_written or summary.chunks_deleted or force
        if changed or not index.is_current():
            index.rebuild()

    def _read_ahead(
        self, files: Sequence[tuple[Path, str]], known: dict[str, FileRecord], *, full: bool
    ) -> Iterator[_FileRead]:
        """``_read`` of each file in order, computed up to ``_READ_AHEAD`` files ahead in one thread."""
        pending: deque[Future[_FileRead]] = deque()
        queue = iter(files)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kbqa-read") as reader:

            def submit() -> None:
                item = next(queue, None)
                if item is not None:
                    pending.append(reader.submit(self._read, *item, known.get(item[1]), full))

            try:
                for _ in range(_READ_AHEAD):
                    submit()
                while pending:
                    read = pending.popleft().result()
                    submit()
                    yield read
            finally:
                for future in pending:  # the consumer stopped early (an error): drop queued reads
                    future.cancel()

    def _read(self, path: Path, source: str, previous: FileRecord | None, full: bool) -> _FileRead:
        """Decide whether a file changed and, if so, load and split it; touches no shared state."""
        sha = None
        try:
            stat = path.stat()
            read = _FileRead(path, source, previous, None, stat.st_size, stat.st_mtime_ns)
            if not full and previous and previous.sha256 and previous.reading == self.reading:
                if (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                    return read
                read.sha = file_sha256(path)
                if read.sha == previous.sha256:
                    return read  # same content, new mtime: only the manifest row changes
            else:
                read.sha = sha = file_sha256(path)
            read.chunks = split_documents(
                load_file(path, source, self.limits), self.splitter, headings=self.settings.chunk_headings
            )
            if not read.chunks:
                raise LoadError("no text to index (only headings or blank lines)")
        except LoadError as error:  # the content hash, when known, says whether the bytes changed
            return _FileRead(path, source, previous, sha, 0, 0, failure=str(error))
        except OSError as error:
            reason = f"cannot read file ({error.strerror or error})"
            return _FileRead(path, source, previous, None, 0, 0, failure=reason)
        return read

    def _record_without_chunks(self, read: _FileRead, kb: str, summary: IngestSummary, origin: str) -> None:
        """An unchanged file (its row refreshed if only its mtime moved) or a failed one."""
        if read.failure is not None:
            kept = "; the version indexed before stays searchable" if read.previous is not None else ""
            summary.failed.append((read.source, read.failure + kept))
            if read.previous is not None and read.previous.sha256 and read.sha == read.previous.sha256:
                # Unchanged bytes that only today's reading fails on: the indexed version stays, and
                # the file is not read again (and reported again) on every later run.
                self.manifest.put(kb, dataclasses.replace(read.previous, reading=self.reading))
            return
        previous = read.previous
        if previous is not None and read.sha is not None:
            self.manifest.put(
                kb,
                FileRecord(
                    read.source, read.sha, read.size, read.mtime_ns, previous.chunks, origin, self.reading
                ),
            )
        summary.unchanged.append(read.source)

    def _write_batch(
        self, batch: list[_FileRead], target: _BatchTarget, summary: IngestSummary, *, full: bool, origin: str
    ) -> None:
        """Index the chunks of several files in one go, under the crash-safety protocol of this module.

        Every file's manifest row is pending before the first chunk is written and complete only after
        the last, so a kill anywhere in between makes the next run redo the whole batch.
        """
        kb = target.kb
        target.keyword_index.mark_stale()
        self.manifest.put_many(
            kb,
            [
                FileRecord(r.source, None, r.size, r.mtime_ns, len(r.chunks or ()), origin, self.reading)
                for r in batch
            ],
        )
        chunks = [chunk for read in batch for chunk in read.chunks or ()]
        if not full:  # --full means "embed again", so stored vectors are not reused then
            target.vectors.seed_from_store(target.store._collection, chunks)
        try:
            result = index(
                chunks,
                target.manager,
                target.store,
                # Not "incremental": it cleans up per sub-batch of batch_size, deleting (and then
                # rewriting) the chunks of a large file that the later sub-batches still hold.
                cleanup="scoped_full",
                source_id_key="source",
                key_encoder="sha256",
                force_update=full,
                batch_size=max(self.settings.ingest_batch_chunks, self.embeddings.batch_size),
            )
        finally:
            target.vectors.forget()
        for read in batch:
            if read.previous is not None and read.previous.sha256 is None:  # an earlier run died writing it
                summary.chunks_deleted += self._delete_orphans(read.source, target.store, target.manager)
        self.manifest.put_many(
            kb,
            [
                FileRecord(r.source, r.sha, r.size, r.mtime_ns, len(r.chunks or ()), origin, self.reading)
                for r in batch
            ],
        )
        summary.chunks_written += result["num_added"] + result["num_updated"]
        summary.chunks_deleted += result["num_deleted"]
        for read in batch:
            (summary.updated if read.previous else summary.added).append(read.source)

    def _delete_source(self, source: str, kb: str, store: Chroma, manager: SQLRecordManager) -> int:
        self.keyword_index(kb).mark_stale()
        keys = manager.list_keys(group_ids=[source])
        if keys:
            store.delete(ids=keys)
            manager.delete_keys(keys)
        orphans = self._delete_orphans(source, store, manager)
        self.manifest.remove(kb, source)
        return len(keys) + orphans

    @staticmethod
    def _delete_orphans(source: str, store: Chroma, manager: SQLRecordManager) -> int:
        """Delete chunks of ``source`` in Chroma that the record manager does not know.

        They exist only when a run was killed after Chroma stored a batch and before the record
        manager recorded it; nothing else would ever remove them.
        """
        stored = set(store.get(where={"source": source}, include=[])["ids"])
        orphans = sorted(stored - set(manager.list_keys(group_ids=[source])))
        if orphans:
            store.delete(ids=orphans)
            log.info("removed %d chunk(s) of %s left by an interrupted run", len(orphans), source)
        return len(orphans)
