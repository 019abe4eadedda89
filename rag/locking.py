"""One writer per knowledge base: the ingestion lock.

Two ingestions of the same knowledge base interleaving their Chroma, record-manager and keyword-index
writes could leave chunks that no record knows about, so every write (folder ingestion, upload, document
or knowledge-base deletion) holds this lock, and a second writer is refused at once with a message
naming the holder instead of waiting behind it. Only an upload job waits (``hold(wait_s=...)``, a
bounded wait): its files were accepted already, and failing them because a CLI run happened to be
writing would drop what the user sent. It is an OS file lock (``flock`` through ``filelock``):
the kernel drops it when its process dies, so a killed ingestion can never leave it stuck.

Within one process the lock is per thread (``filelock``'s thread-local mode): the thread that holds it
may take it again (a folder ingestion calling the file ingestion), any other thread is refused like
another process would be.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from rag.store import StoreError


class KnowledgeBaseBusyError(StoreError):
    """Another ingestion is writing this knowledge base right now."""


class LockWaitCancelledError(KnowledgeBaseBusyError):
    """A wait for the lock given up because the program is stopping (``hold(cancel=...)``)."""


class IngestionLock:
    """The write lock of knowledge base ``kb`` under ``data_dir/locks``."""

    def __init__(self, data_dir: Path, kb: str) -> None:
        folder = data_dir / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        self.kb = kb
        self._owner = folder / f"{kb}.owner"
        # One object per path and process, so re-entry in one thread counts instead of deadlocking.
        self._lock = FileLock(folder / f"{kb}.lock", is_singleton=True, blocking=False)

    @contextmanager
    def hold(
        self,
        what: str,
        *,
        wait_s: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Iterator[None]:
        """Hold the lock while ``what`` (e.g. "ingest folder docs/") runs; refuse if someone else does.

        With ``wait_s``, wait up to that long for the other writer instead, telling ``on_wait`` who it
        is once (a job shows it to the client polling it); refused only when the wait runs out, or
        with ``LockWaitCancelledError`` as soon as ``cancel()`` says so (the app is stopping: a wait
        must not hold up its exit).
        """
        try:
            self._lock.acquire()
        except Timeout:
            if wait_s <= 0:
                raise KnowledgeBaseBusyError(self._busy_message()) from None
            if on_wait is not None:
                on_wait(self._busy_message(waiting_s=wait_s))
            try:
                self._lock.acquire(timeout=wait_s, blocking=True, cancel_check=cancel)
            except Timeout:
                if cancel is not None and cancel():
                    raise LockWaitCancelledError(self._busy_message()) from None
                raise KnowledgeBaseBusyError(
                    self._busy_message() + f" (waited {wait_s:g} s for it)"
                ) from None
        try:
            if self._lock.lock_counter == 1:
                self._write_owner(what)
            yield
        finally:
            self._lock.release()

    def busy(self) -> bool:
        """Whether another process or thread is writing the knowledge base now (a snapshot)."""
        if self._lock.is_locked:  # this thread holds it
            return False
        try:
            self._lock.acquire()
        except Timeout:
            return True
        self._lock.release()
        return False

    def ensure_free(self) -> None:
        """Refuse early, before expensive work, when another writer holds the knowledge base."""
        if self.busy():
            raise KnowledgeBaseBusyError(self._busy_message())

    def _write_owner(self, what: str) -> None:
        owner = {"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}
        self._owner.write_text(json.dumps(owner, ensure_ascii=False), encoding="utf-8")

    def _busy_message(self, *, waiting_s: float | None = None) -> str:
        try:
            owner = json.loads(self._owner.read_text(encoding="utf-8"))
            holder = f" ({owner['what']}, pid {owner['pid']}, since {owner['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            holder = ""
        then = (
            f"waiting up to {waiting_s:g} s for it to finish"
            if waiting_s is not None
            else "try again when it has finished"
        )
        return f"knowledge base {self.kb!r} is being written by another ingestion{holder}; {then}"
