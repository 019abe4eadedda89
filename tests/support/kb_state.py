"""Everything a knowledge base's state consists of, read from disk, for "equals one clean run" checks.

Run as ``python -m tests.support.kb_state DATA_DIR KB`` it prints the snapshot as JSON, so a test can
read the state in a fresh process: Chroma's embedded client caches per path inside one process, and
the point is to see exactly what the next process would see.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings


def snapshot(data_dir: Path, kb: str) -> dict[str, Any]:
    client = chromadb.PersistentClient(
        path=str(data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    stored = client.get_collection(kb).get(include=["documents", "metadatas"])
    chunks = {
        chunk_id: {"text": text, "metadata": metadata}
        for chunk_id, text, metadata in zip(
            stored["ids"], stored["documents"], stored["metadatas"], strict=True
        )
    }
    with sqlite3.connect(data_dir / "index.sqlite") as db:
        records = sorted(
            db.execute(
                "SELECT key, group_id FROM upsertion_record WHERE namespace = ?", (f"kbqa/{kb}",)
            ).fetchall()
        )
        files = sorted(
            db.execute(
                "SELECT source, sha256, size, chunks, origin FROM kbqa_files WHERE kb = ?", (kb,)
            ).fetchall()
        )
    keyword = data_dir / "keyword" / kb
    keyword_ids = json.loads((keyword / "ids.json").read_text(encoding="utf-8"))
    vocabulary = json.loads((keyword / "vocab.index.json").read_text(encoding="utf-8"))
    return {
        "chunks": chunks,
        "records": [list(row) for row in records],
        "files": [list(row) for row in files],
        "keyword_ids": sorted(keyword_ids),
        "keyword_count": json.loads((keyword / "state.json").read_text(encoding="utf-8"))["count"],
        "keyword_vocabulary": sorted(vocabulary),
        "keyword_stale": (keyword.parent / f"{kb}.stale").exists(),
    }


if __name__ == "__main__":
    print(json.dumps(snapshot(Path(sys.argv[1]), sys.argv[2]), ensure_ascii=False))
