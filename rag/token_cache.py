"""Keyword tokens of every chunk text already tokenized, so a BM25 rebuild segments only new text.

jieba is the slow part of a keyword-index rebuild (about 1.5 ms per 500-character Chinese chunk here:
~2.5 minutes at 100k chunks), and every ingestion that changes one file rebuilds the whole index. Keyed
by a hash of the text as matched (folded: ``rag.chinese_text``), an entry cannot go stale while the
tokenizer stays the same: any text with that hash has those tokens. A change to what the tokenizer
makes of a folded text must therefore also drop the stored tokens: each tokenizer version has its
table (``tokens_vN``), and the tables of other versions are dropped. ``keep_only`` drops the entries of
texts no longer in the knowledge base, so the file tracks the knowledge base's size.

The same file keeps each text's companion-embedder vector (``rag.companion``) for the same reason: a
rebuild encodes only texts it has not seen.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {tokens} (text_hash BLOB PRIMARY KEY, tokens TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS companion (text_hash BLOB PRIMARY KEY, vector BLOB NOT NULL)"
)
_PARAMS = 500  # keys per IN (...) query; SQLite allows more, but long statements cost parse time


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TokenCache:
    """A small SQLite table of text hash → space-joined tokens (tokens never contain whitespace)."""

    def __init__(self, path: Path, tokenizer: int) -> None:
        """``tokenizer``: the version of the tokenizer whose tokens are kept (its own table)."""
        self.path = path  # created on first use: a query-side KeywordIndex may never rebuild
        self.table = f"tokens_v{tokenizer}"
        self._checked = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            with connection:
                connection.executescript(_SCHEMA.format(tokens=self.table))
                if not self._checked:  # another tokenizer's tokens would only take up room
                    listed = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tokens%'"
                    for (name,) in connection.execute(listed).fetchall():
                        if name != self.table:
                            connection.execute(f'DROP TABLE "{name}"')
                    self._checked = True
                yield connection
        finally:
            connection.close()

    def lookup(self, hashes: Sequence[bytes]) -> dict[bytes, list[str]]:
        rows = self._rows(f"SELECT text_hash, tokens FROM {self.table}", hashes)
        return {key: value.split(" ") if value else [] for key, value in rows}

    def _rows(self, select: str, hashes: Sequence[bytes]) -> list[tuple[bytes, Any]]:
        """``select``'s rows for these text hashes, asked a page of keys at a time."""
        rows: list[tuple[bytes, Any]] = []
        with self._connect() as connection:
            for start in range(0, len(hashes), _PARAMS):
                page = hashes[start : start + _PARAMS]
                marks = ",".join("?" * len(page))
                rows += connection.execute(f"{select} WHERE text_hash IN ({marks})", page).fetchall()
        return rows

    def store(self, entries: Iterable[tuple[bytes, list[str]]]) -> None:
        with self._connect() as connection:
            connection.executemany(
                f"INSERT OR REPLACE INTO {self.table} (text_hash, tokens) VALUES (?, ?)",
                ((key, " ".join(tokens)) for key, tokens in entries),
            )

    def lookup_vectors(self, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Companion vectors (float32) of the texts with these hashes that have one."""
        rows = self._rows("SELECT text_hash, vector FROM companion", hashes)
        return {key: np.frombuffer(value, dtype=np.float32) for key, value in rows}

    def store_vectors(self, entries: Iterable[tuple[bytes, np.ndarray]]) -> None:
        with self._connect() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO companion (text_hash, vector) VALUES (?, ?)",
                ((key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in entries),
            )

    def keep_only(self, hashes: Iterable[bytes]) -> None:
        """Forget every text not in ``hashes`` (the knowledge base's texts after a rebuild)."""
        with self._connect() as connection:
            connection.execute("CREATE TEMP TABLE keep (text_hash BLOB PRIMARY KEY)")
            connection.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((key,) for key in hashes))
            for table in (self.table, "companion"):
                connection.execute(f"DELETE FROM {table} WHERE text_hash NOT IN (SELECT text_hash FROM keep)")

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
