"""KnowledgeBaseService's uploads and reads against real Chroma and the real embedder, where they meet
other writers: another ingestion holding the knowledge base, its deletion, a second upload of the same
name, the app stopping with jobs queued. Whatever happens, the stored files and the index agree."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import rag.store
from ingest.manifest import FOLDER, UPLOAD
from ingest.pipeline import IngestSummary, staging_folder_name
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings
from rag.jobs import IngestJob, JobReporter
from rag.locking import IngestionLock
from rag.service import KnowledgeBaseService, UploadTooLargeError
from rag.store import KnowledgeBaseNotFoundError
from tests.conftest import make_settings

KB = "svc-kb"
OLD = "# 住宿\n\n住宿标准为一线城市每晚六百元，其他城市每晚四百元。\n"
NEW = OLD.replace("六百元", "九百元")


@pytest.fixture
def service(settings: Settings, embeddings: SentenceTransformerEmbeddings) -> Iterator[KnowledgeBaseService]:
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    knowledge.create_knowledge_base(KB)
    yield knowledge
    knowledge.close()


def _upload(service: KnowledgeBaseService, name: str, text: str) -> IngestJob:
    return service.upload(KB, [(name, io.BytesIO(text.encode()))])


def _finished(service: KnowledgeBaseService, job: IngestJob) -> IngestJob:
    done = service.jobs.wait(job.id, 120)
    assert done is not None and done.finished
    return done


def _texts(service: KnowledgeBaseService, source: str) -> list[str]:
    found = service.client.get_collection(KB).get(where={"source": source}, include=["documents"])
    return sorted(found["documents"] or [])


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


@contextmanager
def _held_by_another_writer(settings: Settings) -> Iterator[None]:
    """The knowledge base's lock held by another thread (refused like another process would be)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with IngestionLock(settings.data_dir, KB).hold("ingest folder docs/"):
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def _block_worker(service: KnowledgeBaseService) -> threading.Event:
    """Occupy the one job worker until the returned event is set (or the queue stops)."""
    release = threading.Event()

    def work(report: JobReporter) -> IngestSummary:
        while not (release.is_set() or report.stopping.is_set()):
            release.wait(0.02)
        return IngestSummary(kb=KB)

    service.jobs.submit(KB, [], work)
    return release


def _stored_files(settings: Settings) -> list[str]:
    """Everything under the upload folder, staging included."""
    folder = settings.uploads_dir / KB
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_an_upload_waits_for_another_writer_and_then_goes_in(
    service: KnowledgeBaseService, settings: Settings
) -> None:
    with _held_by_another_writer(settings):
        job = _upload(service, "a.md", NEW)
        _until(lambda: job.waiting is not None)
        shown = job.as_dict()
        assert shown["status"] == "queued" and "ingest folder docs/" in shown["waiting"]
        assert not (settings.uploads_dir / KB / "a.md").exists()  # staged, not in place yet
    done = _finished(service, job)
    assert done.status == "succeeded" and done.waiting is None
    assert any("九百元" in text for text in _texts(service, "a.md"))
    assert _stored_files(settings) == ["a.md"]


def test_a_failed_upload_keeps_the_indexed_version_in_place(
    embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", upload_lock_wait_s=0.2)
    service = KnowledgeBaseService(settings, embeddings=embeddings)
    service.create_knowledge_base(KB)
    try:
        assert _finished(service, _upload(service, "a.md", OLD)).status == "succeeded"
        stored = settings.uploads_dir / KB / "a.md"
        indexed = _texts(service, "a.md")

        with _held_by_another_writer(settings):  # the wait runs out
            busy = _finished(service, _upload(service, "a.md", NEW))
        assert busy.status == "failed" and "being written by another ingestion" in busy.error
        assert stored.read_text(encoding="utf-8") == OLD and _texts(service, "a.md") == indexed

        empty = _finished(service, _upload(service, "a.md", "\n\n"))  # nothing to index
        assert empty.status == "failed"
        assert stored.read_text(encoding="utf-8") == OLD and _texts(service, "a.md") == indexed
        assert service.list_documents(KB)[0]["bytes"] == stored.stat().st_size

        bad_new = _finished(service, _upload(service, "b.md", "\n\n"))  # a new file that fails goes
        assert bad_new.status == "failed" and _stored_files(settings) == ["a.md"]
        # Nothing is left to repair: the next ingestion finds stored files and index agreeing.
        assert _finished(service, _upload(service, "c.md", OLD)).summary["reread"] == 0
    finally:
        service.close()


def test_an_upload_queued_when_its_knowledge_base_is_deleted_does_not_bring_it_back(
    service: KnowledgeBaseService,
) -> None:
    release = _block_worker(service)
    job = _upload(service, "a.md", OLD)
    service.delete_knowledge_base(KB)
    release.set()
    done = _finished(service, job)
    assert done.status == "failed" and "was deleted" in done.error
    assert KB not in service.knowledge_base_names()
    # A knowledge base made again takes uploads as a new one does.
    service.create_knowledge_base(KB)
    assert _finished(service, _upload(service, "a.md", OLD)).status == "succeeded"


def test_two_uploads_of_one_name_at_once_stage_apart(
    service: KnowledgeBaseService, settings: Settings
) -> None:
    """Each upload stages in a folder of its own: neither writes into, nor removes, the other's file."""
    first_block, second_done = threading.Event(), threading.Event()

    class Interleaved(io.RawIOBase):
        """Sends one block, then waits for the second upload to end before sending the rest."""

        def __init__(self, text: str) -> None:
            self.parts = [text.encode()[:10], text.encode()[10:]]

        def read(self, size: int = -1) -> bytes:
            if len(self.parts) == 1:
                first_block.set()
                assert second_done.wait(30)
            return self.parts.pop(0) if self.parts else b""

    results: dict[str, IngestJob] = {}

    def first() -> None:
        results["first"] = service.upload(KB, [("a.md", Interleaved(NEW))])  # type: ignore[list-item]

    uploading = threading.Thread(target=first)
    uploading.start()
    assert first_block.wait(30)
    results["second"] = _upload(service, "a.md", OLD)
    with pytest.raises(UploadTooLargeError):  # a failing upload of the same name leaves the first be
        service.upload(KB, [("a.md", io.BytesIO(b"x" * (settings.max_upload_bytes + 1)))])
    second_done.set()
    uploading.join(30)
    assert _finished(service, results["second"]).status == "succeeded"
    assert _finished(service, results["first"]).status == "succeeded"  # queued last, so it is current
    assert (settings.uploads_dir / KB / "a.md").read_text(encoding="utf-8") == NEW
    assert any("九百元" in text for text in _texts(service, "a.md"))
    assert not any("六百元" in text for text in _texts(service, "a.md"))
    assert _stored_files(settings) == ["a.md"]


def test_uploads_cancelled_when_the_app_stops_are_ingested_by_the_next_ingestion(
    settings: Settings, embeddings: SentenceTransformerEmbeddings
) -> None:
    service = KnowledgeBaseService(settings, embeddings=embeddings)
    service.create_knowledge_base(KB)
    _block_worker(service)
    job = _upload(service, "a.md", OLD)
    service.close()
    assert job.status == "failed" and "app stopped" in job.error
    assert _stored_files(settings) == ["a.md"]  # handed over, not yet indexed
    assert service.list_documents(KB) == []

    restarted = KnowledgeBaseService(settings, embeddings=embeddings)
    try:
        summary = _finished(restarted, _upload(restarted, "b.md", NEW)).summary
        assert (summary["added"], summary["reread"]) == (1, 1)
        listed = {document["source"]: document for document in restarted.list_documents(KB)}
        assert sorted(listed) == ["a.md", "b.md"] and listed["a.md"]["origin"] == UPLOAD
        assert _texts(restarted, "a.md") and listed["a.md"]["chunks"] == len(_texts(restarted, "a.md"))
    finally:
        restarted.close()


def test_an_upload_waiting_when_the_app_stops_says_its_files_were_handed_over(
    settings: Settings, embeddings: SentenceTransformerEmbeddings
) -> None:
    service = KnowledgeBaseService(settings, embeddings=embeddings)
    service.create_knowledge_base(KB)
    with _held_by_another_writer(settings):
        job = _upload(service, "a.md", OLD)
        _until(lambda: job.waiting is not None)
        service.close()
    assert job.status == "failed" and "next ingestion" in (job.error or "")
    assert _stored_files(settings) == ["a.md"]  # handed over, for the next ingestion


def test_uploads_staged_by_an_app_that_was_killed_are_ingested_by_the_next_ingestion(
    service: KnowledgeBaseService, settings: Settings
) -> None:
    """A killed app hands nothing over; its staging folder names its process, which is gone, or (an
    app restarted in a container is PID 1 again) was started at another time."""
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    staging = settings.uploads_dir / KB / ".staging"
    abandoned = {
        f"{gone.stdout.strip()}-0-abandoned": "a.md",
        f"{os.getpid()}-1-before-a-restart": "d.md",  # this pid, another process start
        staging_folder_name("running"): "c.md",  # a job of this (live) process: not touched
    }
    for folder, name in abandoned.items():
        (staging / folder).mkdir(parents=True)
        (staging / folder / name).write_text(OLD, encoding="utf-8")
    older = staging / f"{gone.stdout.strip()}-0-older"
    older.mkdir()
    (older / "b.md").write_text("# 旧\n\n早先上传、被新版取代的内容。\n", encoding="utf-8")
    os.utime(older / "b.md", (1, 1))
    summary = _finished(service, _upload(service, "b.md", NEW)).summary
    assert (summary["added"], summary["reread"]) == (1, 2)
    assert sorted(document["source"] for document in service.list_documents(KB)) == ["a.md", "b.md", "d.md"]
    assert any("九百元" in text for text in _texts(service, "b.md"))  # the older staged copy did not win
    assert _stored_files(settings) == [
        f".staging/{staging_folder_name('running')}/c.md",
        "a.md",
        "b.md",
        "d.md",
    ]


def test_a_name_that_became_a_folder_document_while_queued_is_refused_by_the_job(
    service: KnowledgeBaseService, settings: Settings, tmp_path: Path
) -> None:
    release = _block_worker(service)
    job = _upload(service, "leave.md", NEW)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text(OLD, encoding="utf-8")
    service.ingestor.ingest_folder(folder, KB, progress=False)
    release.set()
    done = _finished(service, job)
    assert done.status == "failed" and "from an ingested folder" in done.error
    assert service.ingestor.manifest.records(KB)["leave.md"].origin == FOLDER
    assert any("六百元" in text for text in _texts(service, "leave.md"))
    assert _stored_files(settings) == []


def test_a_knowledge_base_deleted_while_it_is_read_is_not_found(
    service: KnowledgeBaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _finished(service, _upload(service, "a.md", OLD)).status == "succeeded"
    service.create_knowledge_base("svc-other")
    opened = service.retriever

    def deleted_after_opening(kb: str, **options: object) -> object:
        retriever = opened(kb, **options)  # type: ignore[arg-type]
        service.client.delete_collection(kb)  # by another request or process, meanwhile
        return retriever

    monkeypatch.setattr(service, "retriever", deleted_after_opening)
    with pytest.raises(KnowledgeBaseNotFoundError, match="was deleted"):
        service.search(KB, "住宿标准")

    info = rag.store._info
    to_delete = ["svc-other"]

    def deleted_while_read(collection: object) -> object:
        if to_delete:
            service.client.delete_collection(to_delete.pop())
        return info(collection)

    monkeypatch.setattr(rag.store, "_info", deleted_while_read)
    with pytest.raises(KnowledgeBaseNotFoundError):
        service.stats("svc-other")
    service.create_knowledge_base("svc-other")
    to_delete.append("svc-other")
    assert service.stats() == []  # gone while listed: not listed
