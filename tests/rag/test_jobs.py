"""The background ingestion queue: one job at a time, progress visible, every job ends readable."""

from __future__ import annotations

import threading

from ingest.pipeline import IngestSummary
from rag.jobs import IngestJobs, JobReporter


def test_job_reports_progress_and_summary() -> None:
    jobs = IngestJobs()
    release = threading.Event()
    halfway = threading.Event()

    started = threading.Event()
    go_on = threading.Event()

    def work(report: JobReporter) -> IngestSummary:
        started.set()
        go_on.wait(10)
        report.chunks_embedded(3)
        report.file_done(1, 2, "a.md")
        report.chunks_embedded(4)
        halfway.set()
        release.wait(10)
        report.file_done(2, 2, "b.md")
        return IngestSummary(kb="kb", added=["a.md", "b.md"], chunks_written=5)

    job = jobs.submit("kb", ["a.md", "b.md"], work)
    assert started.wait(10)
    first = jobs.get(job.id).as_dict()
    assert first["status"] == "running"
    assert first["progress"] == {"done": 0, "total": 2, "current": "a.md", "chunks_embedded": 0}
    go_on.set()
    assert halfway.wait(10)
    running = jobs.get(job.id).as_dict()
    assert running["progress"] == {"done": 1, "total": 2, "current": "b.md", "chunks_embedded": 4}
    release.set()
    done = jobs.wait(job.id, 10).as_dict()
    assert done["status"] == "succeeded" and done["summary"]["chunks_written"] == 5
    assert done["progress"]["current"] is None and done["finished_at"] is not None
    jobs.shutdown()


def test_a_refused_file_is_done_and_not_current() -> None:
    """A name the job refuses (a folder's document took it meanwhile) is never read: progress counts it
    done, and the file in progress is the next one, not the refused one."""
    jobs = IngestJobs()
    checked, go_on = threading.Event(), threading.Event()

    def work(report: JobReporter) -> IngestSummary:
        report.refused(["a.md"])
        report.file_done(1, 2, "b.md")  # the pipeline counts only the files it reads
        checked.set()
        go_on.wait(10)
        report.file_done(2, 2, "c.md")
        return IngestSummary(kb="kb", added=["b.md", "c.md"], failed=[("a.md", "taken")])

    job = jobs.submit("kb", ["a.md", "b.md", "c.md"], work)
    assert checked.wait(10)
    assert jobs.get(job.id).as_dict()["progress"] == {
        "done": 2,
        "total": 3,
        "current": "c.md",
        "chunks_embedded": 0,
    }
    go_on.set()
    assert jobs.wait(job.id, 10).as_dict()["progress"]["done"] == 3
    jobs.shutdown()


def test_failures_end_the_job_as_failed_with_a_reason() -> None:
    jobs = IngestJobs()

    def crash(_: JobReporter) -> IngestSummary:
        raise OSError("disk full")

    def all_bad(_: JobReporter) -> IngestSummary:
        return IngestSummary(kb="kb", failed=[("x.pdf", "the PDF is encrypted")])

    crashed = jobs.wait(jobs.submit("kb", ["a.md"], crash).id, 10)
    assert crashed.status == "failed" and "disk full" in crashed.error
    bad = jobs.wait(jobs.submit("kb", ["x.pdf"], all_bad).id, 10)
    assert bad.status == "failed" and "x.pdf: the PDF is encrypted" in bad.error
    assert [job.id for job in jobs.list("kb")] == [bad.id, crashed.id]  # newest first
    assert jobs.list("other") == []
    jobs.shutdown()


def test_jobs_run_one_at_a_time() -> None:
    jobs = IngestJobs()
    active = 0
    overlap = False
    lock = threading.Lock()

    def work(_: JobReporter) -> IngestSummary:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = overlap or active > 1
        threading.Event().wait(0.05)
        with lock:
            active -= 1
        return IngestSummary(kb="kb")

    ids = [jobs.submit("kb", [], work).id for _ in range(4)]
    assert all(jobs.wait(job_id, 10).status == "succeeded" for job_id in ids)
    assert not overlap
    jobs.shutdown()


def test_old_finished_jobs_are_forgotten() -> None:
    jobs = IngestJobs(keep=3)
    ids = [jobs.submit("kb", [], lambda _: IngestSummary(kb="kb")).id for _ in range(3)]
    for job_id in ids:
        jobs.wait(job_id, 10)
    jobs.submit("kb", [], lambda _: IngestSummary(kb="kb"))
    assert jobs.get(ids[0]) is None and len(jobs.list()) == 3
    jobs.shutdown()


def test_a_job_waiting_for_another_writer_reads_queued_with_the_reason() -> None:
    jobs = IngestJobs()
    waiting = threading.Event()
    go_on = threading.Event()

    def work(report: JobReporter) -> IngestSummary:
        report.waiting("knowledge base 'kb' is being written by another ingestion")
        waiting.set()
        go_on.wait(10)
        report.waiting(None)
        return IngestSummary(kb="kb", added=["a.md"])

    job = jobs.submit("kb", ["a.md"], work)
    assert waiting.wait(10)
    shown = jobs.get(job.id).as_dict()
    assert shown["status"] == "queued" and "another ingestion" in shown["waiting"]
    go_on.set()
    done = jobs.wait(job.id, 10).as_dict()
    assert done["status"] == "succeeded" and done["waiting"] is None
    jobs.shutdown()


def test_shutdown_cancels_queued_jobs_and_hands_their_files_over() -> None:
    """A job still queued when the app stops never runs: it ends failed, saying so, and its
    ``on_cancel`` runs (the service puts its files where the next ingestion takes them)."""
    jobs = IngestJobs()
    started = threading.Event()
    handed: list[str] = []

    def block(report: JobReporter) -> IngestSummary:
        started.set()
        report.stopping.wait(10)  # set by shutdown once the queued jobs are cancelled
        return IngestSummary(kb="kb", added=["a.md"])

    running = jobs.submit("kb", ["a.md"], block, on_cancel=lambda: handed.append("a.md"))
    assert started.wait(10)
    queued = jobs.submit(
        "kb", ["b.md"], lambda _: IngestSummary(kb="kb"), on_cancel=lambda: handed.append("b.md")
    )
    cancelled = jobs.shutdown()
    assert [job.id for job in cancelled] == [queued.id] and handed == ["b.md"]
    assert jobs.get(running.id).status == "succeeded"
    assert jobs.get(queued.id).status == "failed" and "app stopped" in jobs.get(queued.id).error


def test_shutdown_stops_a_job_waiting_for_a_lock() -> None:
    jobs = IngestJobs()
    started = threading.Event()

    def wait_for_lock(report: JobReporter) -> IngestSummary:
        started.set()
        assert report.stopping.wait(10)  # what IngestionLock.hold(cancel=...) polls
        raise RuntimeError("stopped waiting")

    job = jobs.submit("kb", ["a.md"], wait_for_lock)
    assert started.wait(10)
    jobs.shutdown()
    assert jobs.get(job.id).status == "failed" and "stopped waiting" in jobs.get(job.id).error
