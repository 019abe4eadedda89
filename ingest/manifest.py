"""Which files of a knowledge base were ingested, at which size, mtime and content hash.

LangChain's record manager tracks chunks; this table tracks files, which is what lets a re-run skip an
unchanged file without parsing it and notice a deleted file at all. A row is written as *pending*
(no hash) before a file's chunks are indexed and completed afterwards, so a run killed in between
leaves a row that the next run re-indexes or, if the file is gone, cleans up.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kbqa_files (
    kb TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT 'folder',
    reading TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kb, source)
)
"""
# Columns that databases written by an earlier kbqa lack: uploads came later, and so did recording
# how a file was read (a file read before that has reading '', which no current reading equals).
_ADDED_COLUMNS = {
    "origin": "ALTER TABLE kbqa_files ADD COLUMN origin TEXT NOT NULL DEFAULT 'folder'",
    "reading": "ALTER TABLE kbqa_files ADD COLUMN reading TEXT NOT NULL DEFAULT ''",
}

FOLDER = "folder"  # mirrored from an ingested folder: removed when gone from that folder
UPLOAD = "upload"  # uploaded through the API or UI: kept until deleted there


@dataclass(frozen=True)
class FileRecord:
    source: str
    sha256: str | None  # None = indexing started but not confirmed
    size: int
    mtime_ns: int
    chunks: int
    origin: str = FOLDER
    reading: str = ""  # how the file was turned into chunks (ingest.pipeline.reading_key)


class Manifest:
    """A small SQLite table beside the record manager's (same database file)."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db_path = db_path
        with self._connect() as connection:
            connection.execute(_SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(kbqa_files)")}
            for column, statement in _ADDED_COLUMNS.items():
                if column not in columns:
                    connection.execute(statement)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self._db_path, timeout=30)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def records(self, kb: str) -> dict[str, FileRecord]:
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT source, sha256, size, mtime_ns, chunks, origin, reading FROM kbqa_files WHERE kb = ? "
                "ORDER BY source",
                (kb,),
            ).fetchall()
        return {row[0]: FileRecord(*row) for row in rows}

    def put(self, kb: str, record: FileRecord) -> None:
        self.put_many(kb, [record])

    def put_many(self, kb: str, records: list[FileRecord]) -> None:
        """Write rows in one transaction: a batch of files is marked pending (or done) all at once."""
        with self._connect() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO kbqa_files (kb, source, sha256, size, mtime_ns, chunks, origin, "
                "reading) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(kb, *dataclasses.astuple(record)) for record in records],
            )

    def remove(self, kb: str, source: str) -> None:
        with self._connect() as connection:
            connection.execute("DELETE FROM kbqa_files WHERE kb = ? AND source = ?", (kb, source))

    def remove_kb(self, kb: str) -> None:
        with self._connect() as connection:
            connection.execute("DELETE FROM kbqa_files WHERE kb = ?", (kb,))
