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
