"""Incremental ingestion against real Chroma and the real embedder: exact counts, never a duplicate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ingest.loaders import LoadError
from ingest.manifest import UPLOAD, FileRecord
from ingest.pipeline import EmptyFolderError, Ingestor, IngestSummary, record_manager
from rag.embeddings import SentenceTransformerEmbeddings
from rag.store import KnowledgeBaseNotFoundError, find_collection, knowledge_base_info
from tests.conftest import make_settings
from tests.support.sample_docs import write_docx, write_pdf

KB = "pipeline"


def _write_corpus(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "leave.md").write_text("# 休假\n\n" + "员工每年有十五天年假。" * 30, encoding="utf-8")
    (folder / "sub" / "office.txt").write_bytes(("会议室「观澜」可容纳二十人。" * 25).encode("gbk"))
    write_pdf(
        folder / "guide.pdf", ["Laptops are replaced every 48 months. " * 8, "Helpdesk extension 8021. " * 8]
    )
    write_docx(
        folder / "sub" / "policy.docx", ["Claims must be filed within 30 days. " * 10], heading="Expenses"
    )


def _stored(ingestor: Ingestor) -> dict[str, dict]:
    """Every stored chunk by id: the ground truth, straight from Chroma."""
    collection = ingestor.client.get_collection(KB)
    data = collection.get(include=["documents", "metadatas"])
    return {
        id_: {"text": text, **meta}
        for id_, text, meta in zip(data["ids"], data["documents"], data["metadatas"], strict=True)
    }


def _assert_no_duplicates(stored: dict[str, dict]) -> None:
    keys = [(chunk["source"], chunk["chunk"], chunk["text"]) for chunk in stored.values()]
    assert len(keys) == len(set(keys))


def _fresh_count(folder: Path, ingestor: Ingestor, tmp_path: Path) -> int:
    """How many chunks a clean ingest of ``folder`` gives, in a separate data dir."""
    clean = Ingestor(
        ingestor.settings.model_copy(update={"data_dir": tmp_path / "clean"}), ingestor.embeddings
    )
    return clean.ingest_folder(folder, KB, progress=False).chunks_written


def test_first_run_adds_every_file(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert sorted(summary.added) == ["guide.pdf", "leave.md", "sub/office.txt", "sub/policy.docx"]
    assert (summary.updated, summary.unchanged, summary.deleted, summary.failed) == ([], [], [], [])
    stored = _stored(ingestor)
    assert summary.chunks_written == len(stored) > 4
    _assert_no_duplicates(stored)
    assert {chunk["page"] for chunk in stored.values() if chunk["source"] == "guide.pdf"} == {1, 2}
    assert all(len(chunk["text"]) <= ingestor.settings.chunk_size for chunk in stored.values())
    info = knowledge_base_info(ingestor.client, KB)
    assert (info.files, info.chunks) == (4, len(stored))


def test_rerun_writes_nothing(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = _stored(ingestor)
    # A touched but identical file is recognised by its hash.
    os.utime(folder / "leave.md", ns=(1, 1))
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert len(summary.unchanged) == 4
    assert summary.added == summary.updated == summary.deleted == []
    assert summary.chunks_written == summary.chunks_deleted == 0
    assert _stored(ingestor) == before


def test_changed_file_replaces_its_chunks(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    (folder / "leave.md").write_text("# 休假\n\n" + "员工每年有二十天年假。" * 12, encoding="utf-8")
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert summary.updated == ["leave.md"]
    assert len(summary.unchanged) == 3
    stored = _stored(ingestor)
    leave = [chunk["text"] for chunk in stored.values() if chunk["source"] == "leave.md"]
    assert leave and all("十五天" not in text for text in leave)
    assert any("二十天" in text for text in leave)
    assert len(stored) == _fresh_count(folder, ingestor, tmp_path)
    _assert_no_duplicates(stored)


def test_an_empty_folder_never_empties_a_knowledge_base(ingestor: Ingestor, tmp_path: Path) -> None:
    """An unmounted share or a mistyped path looks like a folder whose files were all deleted."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = _stored(ingestor)
    empty = tmp_path / "mnt"
    empty.mkdir()
    (empty / "notes.xyz").write_text("not a type kbqa reads", encoding="utf-8")
    with pytest.raises(EmptyFolderError, match="4 document\\(s\\) of knowledge base 'pipeline' were kept"):
        ingestor.ingest_folder(empty, KB, progress=False)
    assert _stored(ingestor) == before
    for path in folder.rglob("*.*"):
        path.unlink()
    with pytest.raises(EmptyFolderError):  # emptied on purpose: one delete command does it
        ingestor.ingest_folder(folder, KB, progress=False)


def test_deleted_file_loses_its_chunks(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    (folder / "sub" / "office.txt").unlink()
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert summary.deleted == ["sub/office.txt"]
    assert summary.chunks_deleted > 0
    stored = _stored(ingestor)
    assert all(chunk["source"] != "sub/office.txt" for chunk in stored.values())
    assert len(stored) == _fresh_count(folder, ingestor, tmp_path)
    manager = record_manager(ingestor.settings, KB)
    assert manager.list_keys(group_ids=["sub/office.txt"]) == []
    assert sorted(manager.list_keys()) == sorted(stored)


def test_full_rebuild_keeps_exactly_one_copy(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    first = ingestor.ingest_folder(folder, KB, progress=False)
    summary = ingestor.ingest_folder(folder, KB, full=True, progress=False)
    assert sorted(summary.updated) == sorted(first.added)
    stored = _stored(ingestor)
    assert len(stored) == first.chunks_written
    _assert_no_duplicates(stored)


def test_bad_files_are_reported_and_good_ones_still_ingested(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    (folder / "empty.md").write_bytes(b"")
    (folder / "junk.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "table.xlsx").write_bytes(b"PK")
    (folder / ".hidden.md").write_text("hidden", encoding="utf-8")
    (folder / "~$policy.docx").write_bytes(b"\x00lock")  # Word's lock file beside an open document
    (folder / "mac.txt").write_bytes("旧版 Mac 文件。\r第二行。".encode())
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    failed = dict(summary.failed)
    assert set(failed) == {"broken.pdf", "empty.md", "junk.txt"}
    assert "PDF" in failed["broken.pdf"]
    assert "empty" in failed["empty.md"]
    assert "binary" in failed["junk.txt"]
    assert dict(summary.skipped) == {"table.xlsx": "unsupported file type .xlsx"}
    assert len(summary.added) == 5
    assert {chunk["source"] for chunk in _stored(ingestor).values()} == set(summary.added)
    [mac] = [chunk["text"] for chunk in _stored(ingestor).values() if chunk["source"] == "mac.txt"]
    assert mac == "旧版 Mac 文件。\n第二行。"


def test_file_that_turns_bad_keeps_its_last_good_version(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = _stored(ingestor)
    (folder / "guide.pdf").write_bytes(b"%PDF-1.4 truncated")
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert [source for source, _ in summary.failed] == ["guide.pdf"]
    assert summary.failed[0][1].endswith("the version indexed before stays searchable")
    assert _stored(ingestor) == before


def test_a_knowledge_base_that_lost_its_chunks_is_ingested_again(ingestor: Ingestor, tmp_path: Path) -> None:
    """Deleting the Chroma data (or the collection) must not leave the ingestion records claiming
    every file is indexed: the next run finds them "unchanged" and the knowledge base stays empty."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    first = ingestor.ingest_folder(folder, KB, progress=False)
    ingestor.client.delete_collection(KB)
    again = ingestor.ingest_folder(folder, KB, progress=False)
    assert sorted(again.added) == sorted(first.added) and again.unchanged == []
    assert again.chunks_written == first.chunks_written == len(_stored(ingestor))
    _assert_no_duplicates(_stored(ingestor))
    assert ingestor.ingest_folder(folder, KB, progress=False).chunks_written == 0  # and settled


def _upload_folder(ingestor: Ingestor) -> Path:
    """The knowledge base's upload folder, made, as ``rag.service`` stores uploads there."""
    uploads = ingestor.settings.uploads_dir / KB
    uploads.mkdir(parents=True)
    return uploads


def test_uploads_come_back_when_the_knowledge_base_lost_its_chunks(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """Uploaded documents are in no folder, so only their stored files can bring them back."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    uploads = _upload_folder(ingestor)
    (uploads / "memo.txt").write_text("备忘：周五下午三点消防演习。" * 20, encoding="utf-8")
    (uploads / "gone.txt").write_text("This upload's file will be missing. " * 20, encoding="utf-8")
    uploaded = [(uploads / name, name) for name in ("memo.txt", "gone.txt")]
    ingestor.ingest_files(uploaded, KB, origin=UPLOAD, progress=False)
    (uploads / "gone.txt").unlink()
    before = {(c["source"], c["text"]) for c in _stored(ingestor).values() if c["source"] != "gone.txt"}

    ingestor.client.delete_collection(KB)
    again = ingestor.ingest_folder(folder, KB, progress=False)
    assert again.reread == ["memo.txt"] and "gone.txt" not in again.added
    assert {(c["source"], c["text"]) for c in _stored(ingestor).values()} == before
    assert ingestor.manifest.records(KB)["memo.txt"].origin == UPLOAD
    _assert_no_duplicates(_stored(ingestor))
    settled = ingestor.ingest_folder(folder, KB, progress=False)
    assert settled.chunks_written == 0 and settled.added == []


def test_unreadable_file_is_reported(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    (folder / "leave.md").chmod(0)
    if os.geteuid() == 0:  # root reads every file regardless of its mode: make the read fail instead
        original = Path.read_bytes

        def read_bytes(path: Path) -> bytes:
            if path.name == "leave.md":
                raise PermissionError(13, "Permission denied", str(path))
            return original(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert dict(summary.failed)["leave.md"].startswith(("permission denied", "cannot read"))
    assert len(summary.added) == 3


def test_symlink_loop_does_not_trap_the_walk(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "dangling.md").symlink_to(folder / "missing.md")
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    assert len(summary.added) == 4
    assert dict(summary.skipped)["dangling.md"].startswith("not a regular file")


def test_missing_folder_is_an_error(ingestor: Ingestor, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ingestor.ingest_folder(tmp_path / "nope", KB, progress=False)


def test_summary_as_dict_counts() -> None:
    summary = IngestSummary(kb="x", added=["a"], failed=[("b", "why")])
    assert summary.as_dict()["added"] == 1
    assert summary.as_dict()["failed"] == [{"source": "b", "reason": "why"}]
    assert summary.ingested_any


def test_ingest_files_adds_without_mirroring_and_reports_progress(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nThe Orion room seats fourteen.", encoding="utf-8")
    seen: list[tuple[int, int, str]] = []
    summary = ingestor.ingest_files(
        [(extra, "extra.md")], KB, origin="upload", progress=False, on_file=lambda *p: seen.append(p)
    )
    assert summary.added == ["extra.md"] and summary.deleted == []
    assert seen == [(1, 1, "extra.md")]
    sources = {chunk["source"] for chunk in _stored(ingestor).values()}
    assert sources == {"guide.pdf", "leave.md", "sub/office.txt", "sub/policy.docx", "extra.md"}
    # Mirroring the folder again leaves the uploaded document alone.
    assert ingestor.ingest_folder(folder, KB, progress=False).deleted == []
    assert ingestor.manifest.records(KB)["extra.md"].origin == "upload"


def test_delete_document_and_forget_knowledge_base(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = len(_stored(ingestor))
    removed = ingestor.delete_document(KB, "leave.md")
    assert removed > 0 and len(_stored(ingestor)) == before - removed
    assert "leave.md" not in ingestor.manifest.records(KB)
    assert record_manager(ingestor.settings, KB).list_keys(group_ids=["leave.md"]) == []
    ingestor.forget_knowledge_base(KB)
    assert ingestor.manifest.records(KB) == {}
    assert record_manager(ingestor.settings, KB).list_keys() == []


def test_manifest_written_before_uploads_existed_gains_the_origin_column(tmp_path: Path) -> None:
    import sqlite3

    from ingest.manifest import Manifest

    db = tmp_path / "index.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE kbqa_files (kb TEXT NOT NULL, source TEXT NOT NULL, sha256 TEXT, "
            "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, chunks INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (kb, source))"
        )
        connection.execute("INSERT INTO kbqa_files VALUES ('kb', 'a.md', 'abc', 3, 1, 2)")
    record = Manifest(db).records("kb")["a.md"]
    assert (record.sha256, record.chunks, record.origin, record.reading) == ("abc", 2, "folder", "")


class _CountingEmbeddings:
    """The real embedder, recording every list of texts that reaches it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return self.inner.embed_documents(texts)  # type: ignore[attr-defined]

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


def _counting_ingestor(ingestor: Ingestor, **overrides: object) -> tuple[Ingestor, _CountingEmbeddings]:
    counting = _CountingEmbeddings(ingestor.embeddings)
    settings = ingestor.settings.model_copy(update=overrides)
    return Ingestor(settings, counting, client=ingestor.client), counting  # type: ignore[arg-type]


def test_copies_of_a_file_are_embedded_once(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "hr").mkdir(parents=True)
    (folder / "shared").mkdir()
    text = "# 报销\n\n" + "差旅费用须在出差结束后三十天内提交报销申请。" * 20
    (folder / "hr" / "expenses.md").write_text(text, encoding="utf-8")
    (folder / "shared" / "expenses-copy.md").write_text(text, encoding="utf-8")
    counted, counting = _counting_ingestor(ingestor)
    summary = counted.ingest_folder(folder, KB, progress=False)
    stored = _stored(counted)
    by_source = {
        source: sorted(c["text"] for c in stored.values() if c["source"] == source)
        for source in ("hr/expenses.md", "shared/expenses-copy.md")
    }
    assert by_source["hr/expenses.md"] == by_source["shared/expenses-copy.md"]  # both files searchable
    assert summary.chunks_written == len(stored) == 2 * len(by_source["hr/expenses.md"])
    assert sorted(counting.texts) == sorted(set(by_source["hr/expenses.md"]))  # each text embedded once


def test_small_files_share_one_embedding_call(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for number in range(12):
        (folder / f"room{number:02d}.txt").write_text(f"Room {number} seats {number + 4} people.", "utf-8")
    counted, counting = _counting_ingestor(ingestor)
    seen: list[tuple[int, int, str]] = []
    files = sorted((path, path.name) for path in folder.iterdir())
    summary = counted.ingest_files(files, KB, progress=False, on_file=lambda *p: seen.append(p))
    assert len(summary.added) == 12 and summary.chunks_written == 12
    assert len(counting.calls) == 1 and len(counting.texts) == 12  # one batch, not twelve calls
    assert seen == [(number, 12, f"room{number - 1:02d}.txt") for number in range(1, 13)]

    one_by_one, counting = _counting_ingestor(ingestor, ingest_batch_chunks=1)
    one_by_one.ingest_files(files, "pipeline-one-by-one", progress=False)  # a fresh collection
    assert len(counting.calls) == 12


def test_a_large_file_reports_its_chunks_as_they_are_embedded(ingestor: Ingestor, tmp_path: Path) -> None:
    """A 300-page PDF is minutes of embedding: progress must move inside the file, not only after it."""
    manual = tmp_path / "manual.txt"
    manual.write_text(
        "\n\n".join(
            f"Section {n}: the pump model P{n} runs at {n * 10} litres per minute." * 3 for n in range(40)
        ),
        encoding="utf-8",
    )
    counted, counting = _counting_ingestor(ingestor)
    counting.batch_size = 1  # the model's batch: 16 of them between two reports
    files_done: list[tuple[int, int, str]] = []
    embedded: list[int] = []
    summary = counted.ingest_files(
        [(manual, "manual.txt")],
        "pipeline-progress",
        progress=False,
        on_file=lambda *p: files_done.append(p),
        on_chunks=embedded.append,
    )
    chunks = summary.chunks_written
    assert chunks > 32
    assert embedded == [*range(16, chunks, 16), chunks]  # a report every 16 chunks, then the last
    calls = [len(call) for call in counting.calls]
    assert calls == [16] * (len(embedded) - 1) + [chunks - 16 * (len(embedded) - 1)]
    assert files_done == [(1, 1, "manual.txt")]


def test_moved_file_takes_its_vectors_from_the_store(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = {c["text"]: c for c in _stored(ingestor).values() if c["source"] == "leave.md"}
    (folder / "archive").mkdir()
    (folder / "leave.md").rename(folder / "archive" / "leave.md")
    counted, counting = _counting_ingestor(ingestor)
    summary = counted.ingest_folder(folder, KB, progress=False)
    assert summary.added == ["archive/leave.md"] and summary.deleted == ["leave.md"]
    assert counting.texts == []  # nothing new to embed: the stored vectors were reused
    after = {c["text"] for c in _stored(ingestor).values() if c["source"] == "archive/leave.md"}
    assert after == set(before)
    moved = ingestor.client.get_collection(KB).get(
        where={"source": "archive/leave.md"}, include=["documents", "embeddings"]
    )
    fresh = ingestor.embeddings.embed_documents(moved["documents"])
    assert np.allclose(np.array(moved["embeddings"]), np.array(fresh), atol=1e-5)  # the model's own vectors


def _forget_how_files_were_read(ingestor: Ingestor) -> None:
    """Make every manifest row look written by a kbqa from before files' readings were recorded."""
    import sqlite3

    with sqlite3.connect(ingestor.settings.index_db) as connection:
        connection.execute("UPDATE kbqa_files SET reading = ''")


def test_files_read_by_an_earlier_kbqa_are_read_again_without_embedding_again(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """A loader that now reads a file differently (a Word heading that became a section path) reaches
    a knowledge base at its next run, not only after --full; chunks that read the same keep their vectors."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = _stored(ingestor)
    _forget_how_files_were_read(ingestor)
    counted, counting = _counting_ingestor(ingestor)
    summary = counted.ingest_folder(folder, KB, progress=False)
    assert sorted(summary.updated) == ["guide.pdf", "leave.md", "sub/office.txt", "sub/policy.docx"]
    assert summary.chunks_written == summary.chunks_deleted == 0 and counting.texts == []
    assert _stored(ingestor) == before
    assert {record.reading for record in ingestor.manifest.records(KB).values()} == {ingestor.reading}
    assert ingestor.ingest_folder(folder, KB, progress=False).unchanged  # and then it is settled


def test_an_unchanged_file_that_the_new_reading_fails_keeps_its_chunks_and_is_not_retried(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.pipeline

    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    before = _stored(ingestor)
    _forget_how_files_were_read(ingestor)
    real_load = ingest.pipeline.load_file

    def failing_on_the_pdf(path: Path, source: str, limits: object) -> list:
        if source == "guide.pdf":
            raise LoadError("a reading the new loader cannot do")
        return real_load(path, source, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest.pipeline, "load_file", failing_on_the_pdf)
    first = ingestor.ingest_folder(folder, KB, progress=False)
    assert [source for source, _ in first.failed] == ["guide.pdf"] and _stored(ingestor) == before
    second = ingestor.ingest_folder(folder, KB, progress=False)
    assert second.failed == [] and len(second.unchanged) == 4


def test_new_chunk_settings_read_every_file_again(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    smaller, _ = _counting_ingestor(ingestor, chunk_size=200, chunk_overlap=20)
    summary = smaller.ingest_folder(folder, KB, progress=False)
    assert len(summary.updated) == 4 and summary.chunks_written > 0
    stored = _stored(ingestor)
    assert all(len(chunk["text"]) <= 200 for chunk in stored.values())
    _assert_no_duplicates(stored)
    assert len(stored) == _fresh_count(folder, smaller, tmp_path)


def test_uploads_read_by_an_earlier_kbqa_are_read_again_by_the_next_ingestion(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """No folder run holds an upload, so whichever ingestion comes next reads it again; counted
    apart, so that an upload that fails cannot look ingested."""
    uploads = _upload_folder(ingestor)
    for name in ("memo.txt", "plan.txt"):
        (uploads / name).write_text(f"{name}：周五下午三点消防演习。" * 20, encoding="utf-8")
    stored = [(uploads / name, name) for name in ("memo.txt", "plan.txt")]
    ingestor.ingest_files(stored, KB, origin=UPLOAD, progress=False)
    _forget_how_files_were_read(ingestor)
    (uploads / "bad.txt").write_bytes(b"")
    summary = ingestor.ingest_files([(uploads / "bad.txt", "bad.txt")], KB, origin=UPLOAD, progress=False)
    assert sorted(summary.reread) == ["memo.txt", "plan.txt"]
    assert (summary.added, summary.updated, [source for source, _ in summary.failed]) == ([], [], ["bad.txt"])
    assert summary.as_dict()["reread"] == 2

    # Re-uploading one of two uploads read the old way reads the other once (it once recursed forever).
    _forget_how_files_were_read(ingestor)
    again = ingestor.ingest_files([stored[0]], KB, origin=UPLOAD, progress=False)
    assert (again.updated, again.reread) == (["memo.txt"], ["plan.txt"])
    records = ingestor.manifest.records(KB)
    assert {(r.origin, r.reading) for r in records.values()} == {(UPLOAD, ingestor.reading)}
    _assert_no_duplicates(_stored(ingestor))


def test_run_killed_inside_a_batch_is_redone(ingestor: Ingestor, tmp_path: Path) -> None:
    """A failure while a batch is written leaves every file of that batch pending, and the next run
    redoes them all: the crash-safety protocol holds per batch, not only per file."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    broken, _ = _counting_ingestor(ingestor)

    def fail(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedder died")

    broken.embeddings.embed_documents = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="embedder died"):
        broken.ingest_folder(folder, KB, progress=False)
    pending = ingestor.manifest.records(KB)
    assert pending and all(record.sha256 is None for record in pending.values())
    summary = ingestor.ingest_folder(folder, KB, progress=False)
    # Nothing of the first run reached Chroma, so its records are dropped and every file is added.
    assert sorted(summary.added) == sorted(pending) and summary.updated == []
    stored = _stored(ingestor)
    _assert_no_duplicates(stored)
    assert len(stored) == _fresh_count(folder, ingestor, tmp_path)


def _sources_in_chroma(ingestor: Ingestor) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chunk in _stored(ingestor).values():
        counts[chunk["source"]] = counts.get(chunk["source"], 0) + 1
    return counts


def test_an_upload_cut_off_mid_ingestion_is_redone_by_the_next_ingestion(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """An upload job killed (or failing) while its chunks were written leaves a pending row: listed
    with its chunks while Chroma has none. No folder run holds it and upload jobs read only their own
    files, so whichever ingestion comes next redoes it, counted in ``reread``."""
    folder = tmp_path / "docs"
    _write_corpus(folder)
    ingestor.ingest_folder(folder, KB, progress=False)
    uploads = _upload_folder(ingestor)
    (uploads / "policy.md").write_text("# 年假\n\n员工入职满一年后享有五天带薪年假。" * 10, encoding="utf-8")
    broken, _ = _counting_ingestor(ingestor)

    def fail(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedder died")

    broken.embeddings.embed_documents = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="embedder died"):
        broken.ingest_files([(uploads / "policy.md", "policy.md")], KB, origin=UPLOAD, progress=False)
    assert ingestor.manifest.records(KB)["policy.md"].sha256 is None
    assert "policy.md" not in _sources_in_chroma(ingestor)

    again = ingestor.ingest_folder(folder, KB, progress=False)
    assert again.reread == ["policy.md"] and again.added == [] and again.updated == []
    record = ingestor.manifest.records(KB)["policy.md"]
    assert record.sha256 is not None and record.origin == UPLOAD
    assert _sources_in_chroma(ingestor)["policy.md"] == record.chunks > 0
    _assert_no_duplicates(_stored(ingestor))
    assert ingestor.ingest_folder(folder, KB, progress=False).reread == []  # settled


def test_stored_uploads_the_index_does_not_hold_are_ingested_by_the_next_upload(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """A stored upload with no row (handed over by an app that stopped before its job ran) or
    changed since its row is ingested; a pending upload whose file is gone is removed; a stored file
    that cannot be read and has no indexed version goes, rather than failing every later run."""
    uploads = _upload_folder(ingestor)
    for name in ("memo.txt", "plan.txt", "gone.txt"):
        (uploads / name).write_text(f"{name}：周五下午三点消防演习。" * 20, encoding="utf-8")
    ingestor.ingest_files(
        [(uploads / name, name) for name in ("memo.txt", "plan.txt", "gone.txt")],
        KB,
        origin=UPLOAD,
        progress=False,
    )
    (uploads / "plan.txt").write_text(
        "计划：下周一上午九点全员大会。" * 20, encoding="utf-8"
    )  # changed, no job
    (uploads / "handed.txt").write_text("交接：新门禁卡下周发放。" * 20, encoding="utf-8")  # no row at all
    (uploads / "broken.txt").write_bytes(b"")  # no row, and nothing to index
    gone = ingestor.manifest.records(KB)["gone.txt"]
    ingestor.manifest.put(KB, FileRecord("gone.txt", None, gone.size, gone.mtime_ns, gone.chunks, UPLOAD))
    (uploads / "gone.txt").unlink()
    (uploads / "new.txt").write_text("新文件：食堂周六休息。" * 20, encoding="utf-8")

    summary = ingestor.ingest_files([(uploads / "new.txt", "new.txt")], KB, origin=UPLOAD, progress=False)
    assert summary.added == ["new.txt"]
    assert sorted(summary.reread) == ["handed.txt", "plan.txt"]
    assert [source for source, _ in summary.failed] == ["broken.txt"]
    assert not (uploads / "broken.txt").exists()
    records = ingestor.manifest.records(KB)
    assert sorted(records) == ["handed.txt", "memo.txt", "new.txt", "plan.txt"]
    assert all(record.sha256 for record in records.values())
    in_chroma = _sources_in_chroma(ingestor)
    assert in_chroma == {source: record.chunks for source, record in records.items()}
    assert any("全员大会" in chunk["text"] for chunk in _stored(ingestor).values())
    settled = ingestor.ingest_files([(uploads / "new.txt", "new.txt")], KB, origin=UPLOAD, progress=False)
    assert (settled.reread, settled.failed, settled.chunks_written) == ([], [], 0)


def test_a_handed_over_replacement_that_fails_is_reported_once_and_the_indexed_version_stays(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    uploads = _upload_folder(ingestor)
    (uploads / "memo.txt").write_text("备忘：周五下午三点消防演习。" * 20, encoding="utf-8")
    ingestor.ingest_files([(uploads / "memo.txt", "memo.txt")], KB, origin=UPLOAD, progress=False)
    (uploads / "memo.txt").write_bytes(b"")  # its replacement, handed over at an app's exit: broken
    (uploads / "new.txt").write_text("新文件：食堂周六休息。" * 20, encoding="utf-8")
    first = ingestor.ingest_files([(uploads / "new.txt", "new.txt")], KB, origin=UPLOAD, progress=False)
    assert [source for source, _ in first.failed] == ["memo.txt"]
    assert any("消防演习" in chunk["text"] for chunk in _stored(ingestor).values())
    again = ingestor.ingest_files([(uploads / "new.txt", "new.txt")], KB, origin=UPLOAD, progress=False)
    assert (again.failed, again.reread) == ([], [])


def test_ingest_files_without_create_refuses_a_missing_knowledge_base(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """An upload queued before its knowledge base was deleted must not bring it back, empty."""
    path = tmp_path / "memo.txt"
    path.write_text("备忘：周五下午三点消防演习。" * 20, encoding="utf-8")
    with pytest.raises(KnowledgeBaseNotFoundError):
        ingestor.ingest_files([(path, "memo.txt")], KB, origin=UPLOAD, progress=False, create=False)
    assert find_collection(ingestor.client, KB) is None and ingestor.manifest.records(KB) == {}


def test_editing_one_chunk_of_a_large_file_writes_only_that_chunk(ingestor: Ingestor, tmp_path: Path) -> None:
    """A file of more chunks than one index() sub-batch: its old chunks are cleaned once, after all its
    new ones are in (incremental cleanup per sub-batch deleted and rewrote 22 of 30 for one edit)."""
    small, _ = _counting_ingestor(ingestor, ingest_batch_chunks=8)
    folder = tmp_path / "docs"
    folder.mkdir()
    paragraphs = [
        f"## 第{i}节\n\n第{i}条：员工应当遵守第{i}项制度，违反者按第{i}号文件处理，并记录在案。"
        for i in range(30)
    ]
    (folder / "big.md").write_text("# 手册\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    first = small.ingest_folder(folder, KB, progress=False)
    assert first.chunks_written == 30
    paragraphs[-1] = paragraphs[-1].replace("记录在案", "通报批评")
    (folder / "big.md").write_text("# 手册\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    edited = small.ingest_folder(folder, KB, progress=False)
    assert (edited.updated, edited.chunks_written, edited.chunks_deleted) == (["big.md"], 1, 1)
    stored = _stored(small)
    assert len(stored) == 30 and len(record_manager(small.settings, KB).list_keys()) == 30
    assert any("通报批评" in chunk["text"] for chunk in stored.values())


def test_companion_encodes_with_the_threads_torch_has(
    tmp_path: Path, embeddings: SentenceTransformerEmbeddings
) -> None:
    """A batch ingestion (torch_threads 0: every core) encodes the companion's passages on every core;
    the app's ingestions (1 thread) leave the other core to questions."""

    def companion_threads(torch_threads: int) -> int:
        settings = make_settings(
            tmp_path / "data", companion_model="use-multilingual", torch_threads=torch_threads
        )
        companion = Ingestor(settings, embeddings).companion
        assert companion is not None
        return companion.threads

    assert companion_threads(1) == 1
    assert companion_threads(2) == 2
    assert companion_threads(0) == (os.cpu_count() or 1)
