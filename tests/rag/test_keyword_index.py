"""BM25 keyword index over real Chroma: Chinese segmentation, persistence, staying in sync."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import Ingestor
from rag.keyword_index import KeywordIndex, keyword_folder, tokenize

KB = "keywords"


def test_tokenize_segments_chinese_and_drops_stop_words() -> None:
    tokens = tokenize("公司的班车有多少个座位？How many seats does the Q1 bus have, v2.3?")
    assert {"班车", "座位", "seats", "q1", "bus", "v2.3"} <= set(tokens)
    assert not {"的", "多少", "how", "the", "does"} & set(tokens)


def _ingest(ingestor: Ingestor, folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingestor.ingest_folder(folder, KB, progress=False)


def _index(ingestor: Ingestor) -> KeywordIndex:
    return KeywordIndex(keyword_folder(ingestor.settings.data_dir, KB), ingestor.client.get_collection(KB))


def _sources(ingestor: Ingestor, index: KeywordIndex, query: str) -> list[str]:
    hits = index.search(query, 5)
    if not hits:
        return []
    found = ingestor.client.get_collection(KB).get(ids=[hit.id for hit in hits], include=["metadatas"])
    by_id = {
        chunk_id: meta["source"] for chunk_id, meta in zip(found["ids"], found["metadatas"], strict=True)
    }
    return [by_id[hit.id] for hit in hits]


def test_index_follows_ingest_update_and_delete(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _ingest(
        ingestor,
        folder,
        {"rooms.md": "观澜会议室在九楼，可容纳二十人。", "bus.txt": "The Q1 shuttle bus has 33 seats."},
    )
    assert keyword_folder(ingestor.settings.data_dir, KB).is_dir()  # persisted by the ingest run
    index = _index(ingestor)
    assert _sources(ingestor, index, "观澜会议室能坐几个人") == ["rooms.md"]
    assert _sources(ingestor, index, "Q1 seats") == ["bus.txt"]
    assert index.search("法国首都", 5) == [] and index.search("", 5) == []

    (folder / "rooms.md").write_text("听涛会议室在十楼。", encoding="utf-8")
    (folder / "bus.txt").unlink()
    ingestor.ingest_folder(folder, KB, progress=False)
    assert _sources(ingestor, index, "观澜") == []  # the old text is gone from the keyword side too
    assert _sources(ingestor, index, "听涛会议室") == ["rooms.md"]
    assert index.search("Q1 seats", 5) == []


def test_missing_or_stale_index_is_rebuilt_on_query(ingestor: Ingestor, tmp_path: Path) -> None:
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    index = _index(ingestor)
    index.delete()  # e.g. a run killed between writing Chroma and the index
    assert _sources(ingestor, index, "报销") == ["a.md"]
    other = _index(ingestor)  # another process's view: loads what is on disk
    assert _sources(ingestor, other, "报销") == ["a.md"]
