"""Background ingestion jobs for uploads: queued, run one at a time, with progress a client can poll.

Uploading answers at once with a job; the files are parsed and embedded on a single worker thread so
that two uploads never write the same knowledge base at the same moment and a slow upload never
blocks the event loop that serves chats. A job waiting for another writer of its knowledge base (a CLI
ingestion in another process) reads ``queued`` with the reason in ``waiting``. Jobs still queued when
the app stops are cancelled: each one's ``on_cancel`` hands its files on (``rag.service`` puts them
where the next ingestion of that knowledge base picks them up).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ingest.pipeline import IngestSummary

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]


@dataclass
class IngestJob:
    id: str
    kb: str
    files: list[str]
    status: JobStatus = "queued"
    chunks_embedded: int = 0
    summary: dict[str, Any] | None = None
    error: str | None = None
    waiting: str | None = None  # why a job that was started is not running yet (another writer)
    settled: set[str] = field(default_factory=set)  # files read and indexed, or refused, so far
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def done(self) -> int:
        return len(self.settled)

    @property
    def current(self) -> str | None:
        """The file being read and indexed: files are read and reported in order, so while the job
        runs it is the first one neither done nor refused (a refused one is never read)."""
        if self.status != "running":
            return None
        return next((name for name in self.files if name not in self.settled), None)

    def as_dict(self) -> dict[str, Any]:
        total = len(self.files)
        return {
            "id": self.id,
            "object": "ingest.job",
            "kb": self.kb,
            "status": self.status,
            "files": list(self.files),
            "progress": {
                "done": self.done,
                "total": total,
                "current": self.current,
                "chunks_embedded": self.chunks_embedded,
            },
            "summary": self.summary,
            "error": self.error,
            "waiting": self.waiting,
            "created_at": int(self.created_at),
            "finished_at": int(self.finished_at) if self.finished_at else None,
        }


@dataclass
class JobReporter:
    """What the ingestion tells a running job: each file done, and chunks embedded so far."""

    job: IngestJob
    stopping: threading.Event = field(default_factory=threading.Event)

    def file_done(self, done: int, total: int, source: str) -> None:
        self.job.settled.add(source)

    def refused(self, names: list[str]) -> None:
        """``names`` will not be read (the job found them taken): done, as far as progress goes."""
        self.job.settled.update(names)

    def chunks_embedded(self, count: int) -> None:
        self.job.chunks_embedded = count

    def waiting(self, reason: str | None) -> None:
        """The job waits for ``reason`` (another writer of its knowledge base), or no longer (None):
        it reads ``queued`` meanwhile, since none of its files is being read yet."""
        self.job.waiting = reason
        self.job.status = "queued" if reason is not None else "running"


IngestWork = Callable[[JobReporter], IngestSummary]


class IngestJobs:
    """A one-worker queue; finished jobs are kept (the newest ``keep``) so clients can read results."""

    def __init__(self, keep: int = 500) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kbqa-ingest")
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._keep = keep
        self._on_cancel: dict[str, Callable[[], None]] = {}  # job id -> its hand-over, until it runs
        self._stopping = threading.Event()  # set by shutdown: a job waiting for a lock gives up

    def submit(
        self, kb: str, files: list[str], work: IngestWork, *, on_cancel: Callable[[], None] | None = None
    ) -> IngestJob:
        """Queue ``work``; ``on_cancel`` runs instead if the queue is shut down before the job starts."""
        job = IngestJob(id=f"job-{uuid.uuid4().hex[:16]}", kb=kb, files=files)
        with self._lock:
            self._jobs[job.id] = job
            if on_cancel is not None:
                self._on_cancel[job.id] = on_cancel
            self._forget_old()
        self._executor.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, kb: str | None = None) -> list[IngestJob]:
        with self._lock:
            jobs = [job for job in self._jobs.values() if kb is None or job.kb == kb]
        return sorted(jobs, key=lambda job: job.created_at, reverse=True)

    def wait(self, job_id: str, timeout_s: float) -> IngestJob | None:
        """Block until the job ends (for the CLI-like callers and tests); None if unknown."""
        deadline = time.monotonic() + timeout_s
        while (job := self.get(job_id)) is not None and not job.finished and time.monotonic() < deadline:
            time.sleep(0.1)
        return job

    def shutdown(self) -> list[IngestJob]:
        """Finish the running job, cancel the queued ones (each failed, its ``on_cancel`` called);
        returns the cancelled jobs. A running job that waits for another writer is told to stop
        waiting (``JobReporter.stopping``) and hands its files over itself."""
        self._executor.shutdown(wait=False, cancel_futures=True)  # no queued job starts after this
        self._stopping.set()
        self._executor.shutdown(wait=True)
        with self._lock:
            cancelled = [job for job in self._jobs.values() if job.status == "queued" and not job.finished]
            hand_overs = [self._on_cancel.pop(job.id, None) for job in cancelled]
        for job, hand_over in zip(cancelled, hand_overs, strict=True):
            job.status = "failed"
            job.error = (
                "the app stopped before this job ran; the next ingestion of the knowledge base "
                "ingests its files"
            )
            job.finished_at = time.time()
            if hand_over is not None:
                try:
                    hand_over()
                except Exception:  # one job's files must not keep the others' from being handed over
                    log.exception("handing over the files of cancelled job %s failed", job.id)
        return cancelled

    def _run(self, job: IngestJob, work: IngestWork) -> None:
        with self._lock:
            self._on_cancel.pop(job.id, None)
        job.status = "running"
        try:
            summary = work(JobReporter(job, self._stopping))
        except Exception as error:  # a job must end in a state a client can read, whatever happened
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        else:
            job.summary = summary.as_dict()
            ok = summary.added or summary.updated or summary.unchanged
            if ok or not summary.failed:
                job.status = "succeeded"
            else:
                job.status = "failed"
                job.error = "; ".join(f"{source}: {reason}" for source, reason in summary.failed)
        finally:
            job.waiting = None
            job.finished_at = time.time()

    def _forget_old(self) -> None:
        finished = [job for job in self._jobs.values() if job.finished]
        excess = len(self._jobs) - self._keep
        for job in itertools.islice(sorted(finished, key=lambda job: job.created_at), max(excess, 0)):
            del self._jobs[job.id]
