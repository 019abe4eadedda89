"""BM25 keyword index over real Chroma: Chinese segmentation, persistence, staying in sync."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag import keyword_index
from rag.keyword_index import KeywordIndex, keyword_folder, tokenize

KB = "keywords"


def test_tokenize_segments_chinese_and_drops_stop_words() -> None:
    tokens = tokenize("公司的班车有多少个座位？How many seats does the Q1 bus have, v2.3?")
    assert {"班车", "座位", "seat", "q1", "bus", "v2.3"} <= set(tokens)
    assert not {"的", "多少", "how", "the", "does"} & set(tokens)


def test_english_words_match_across_accents_apostrophes_plurals_hyphens_and_digit_groups() -> None:
    assert tokenize("Café in Zürich") == tokenize("cafe in zurich") == tokenize("cafes in Zurich")
    assert tokenize("the employee’s leaves") == tokenize("an employee's leave")
    for plural, singular in [
        ("policies", "policy"),
        ("cookies", "cookie"),
        ("caches", "cache"),
        ("buses", "bus"),
    ]:
        assert tokenize(plural) == tokenize(singular)
    assert "wifi" in tokenize("Wi-Fi") and "wifi" in tokenize("WiFi")
    assert {"xk4471", "4471"} <= set(tokenize("XK-4471"))
    assert "1200" in tokenize("above $1,200") and "1200" in tokenize("above 1200")
    assert {"401", "403"} <= set(tokenize("HTTP 401,403 errors"))  # a list of codes, not 401403 alone
    assert tokenize("ports 80,443,8080") == ["port", "80", "443", "8080"]
    assert tokenize("v2.3 and 1,5") == ["v2.3", "1", "5"]


def test_traditional_and_simplified_chinese_tokenize_alike() -> None:
    assert tokenize("會議室預約請通過系統進行") == tokenize("会议室预约请通过系统进行")


def _ingest(ingestor: Ingestor, folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingestor.ingest_folder(folder, KB, progress=False)


def _index(ingestor: Ingestor) -> KeywordIndex:
    return KeywordIndex(
        keyword_folder(ingestor.settings.data_dir, KB),
        ingestor.client.get_collection(KB),
        vector_limit=ingestor.settings.exact_search_max_chunks,
    )


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


def test_either_script_finds_the_other(ingestor: Ingestor, tmp_path: Path) -> None:
    _ingest(
        ingestor,
        tmp_path / "docs",
        {"taipei.md": "臺北辦公室的會議室需要提前一天預約。", "beijing.md": "北京办公室的停车场在地下二层。"},
    )
    index = _index(ingestor)
    assert _sources(ingestor, index, "会议室要提前多久预约")[0] == "taipei.md"
    assert _sources(ingestor, index, "停車場在哪一層")[0] == "beijing.md"


def test_an_index_built_by_an_older_tokenizer_is_rebuilt(ingestor: Ingestor, tmp_path: Path) -> None:
    """Its tokens would not match a query's (Traditional text indexed unfolded), so it is not current."""
    _ingest(ingestor, tmp_path / "docs", {"taipei.md": "臺北辦公室的會議室需要提前一天預約。"})
    index = _index(ingestor)
    state_file = keyword_folder(ingestor.settings.data_dir, KB) / "state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["tokenizer"] == keyword_index.TOKENIZER_VERSION
    del state["tokenizer"]  # as kbqa wrote it before it had a version
    state_file.write_text(json.dumps(state), encoding="utf-8")
    assert not index.is_current()
    assert _sources(ingestor, _index(ingestor), "会议室预约") == ["taipei.md"]  # rebuilt on query
    assert json.loads(state_file.read_text(encoding="utf-8"))["tokenizer"] == keyword_index.TOKENIZER_VERSION


def _add_chunk(ingestor: Ingestor, chunk_id: str, text: str) -> None:
    """A chunk written behind the index's back, as another process's ingestion writes it."""
    collection = ingestor.client.get_collection(KB)
    vector = ingestor.embeddings.embed_documents([text])
    collection.add(ids=[chunk_id], documents=[text], embeddings=vector, metadatas=[{"source": "x.md"}])


class _CountingCollection:
    """The collection, counting how often a query asks Chroma for its size."""

    def __init__(self, collection: object) -> None:
        self._collection, self.counts = collection, 0

    def count(self) -> int:
        self.counts += 1
        return self._collection.count()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._collection, name)


def test_queries_check_freshness_cheaply_yet_see_another_rebuild_at_once(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    collection = _CountingCollection(ingestor.client.get_collection(KB))
    index = KeywordIndex(keyword_folder(ingestor.settings.data_dir, KB), collection)
    assert _sources(ingestor, index, "报销") == ["a.md"]
    counted = collection.counts
    for _ in range(5):
        assert _sources(ingestor, index, "报销") == ["a.md"]
    assert collection.counts == counted  # within RECOUNT_S: two stats per query, no count

    _add_chunk(ingestor, "new-1", "观澜会议室在九楼。")
    _index(ingestor).rebuild()  # another process (or the ingestor's own instance) rebuilt it
    assert _sources(ingestor, index, "观澜会议室") == ["x.md"]  # the state file changed: reloaded


def test_a_stale_marker_is_seen_by_the_next_query(ingestor: Ingestor, tmp_path: Path) -> None:
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    index = _index(ingestor)
    assert _sources(ingestor, index, "报销") == ["a.md"]
    _index(ingestor).mark_stale()  # an ingestion about to write, killed after writing
    _add_chunk(ingestor, "new-2", "听涛会议室在十楼。")
    assert _sources(ingestor, index, "听涛会议室") == ["x.md"]  # rebuilt by this query
    assert not keyword_folder(ingestor.settings.data_dir, KB).with_name(f"{KB}.stale").exists()


def test_a_query_rebuild_does_not_put_an_older_index_over_an_ingestion_s(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query rebuilds a stale index without the write lock; an ingestion that starts and finishes
    meanwhile swaps in the newer index, and the query's older one must not replace it afterwards."""
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    query_side = _index(ingestor)
    query_side.mark_stale()
    ingestion_side = _index(ingestor)
    swap = KeywordIndex._swap_in

    def ingestion_finishes_first(
        self: KeywordIndex, staging: Path, base: object = keyword_index._ANY
    ) -> bool:
        if self is query_side:  # the query's index is built; before it is swapped in, an ingestion runs
            _add_chunk(ingestor, "new-3", "临湖会议室在八楼。")
            ingestion_side.rebuild()
        return swap(self, staging, base)

    monkeypatch.setattr(KeywordIndex, "_swap_in", ingestion_finishes_first)
    assert query_side.search("报销", 5)  # rebuilds (stale marker), then loads what is on disk
    monkeypatch.setattr(KeywordIndex, "_swap_in", swap)
    assert _sources(ingestor, _index(ingestor), "临湖会议室") == ["x.md"]
    assert _sources(ingestor, query_side, "临湖会议室") == ["x.md"]
    leftovers = [
        p.name for p in keyword_folder(ingestor.settings.data_dir, KB).parent.iterdir() if p.is_dir()
    ]
    assert leftovers == [KB]  # the dropped build is removed


def test_questions_on_a_stale_index_start_one_rebuild(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    index = _index(ingestor)
    assert _sources(ingestor, index, "报销") == ["a.md"]
    index.mark_stale()
    rebuild = KeywordIndex.rebuild
    started: list[str] = []

    def slow_rebuild(self: KeywordIndex, **options: bool) -> int:
        started.append(threading.current_thread().name)
        time.sleep(0.5)
        return rebuild(self, **options)

    monkeypatch.setattr(KeywordIndex, "rebuild", slow_rebuild)
    threads = [threading.Thread(target=index.search, args=("报销", 5), name=f"q{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1
    assert _sources(ingestor, index, "报销") == ["a.md"]
    assert len(started) == 1


def test_a_count_drift_without_marker_is_seen_within_recount_s(
    ingestor: Ingestor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。"})
    index = _index(ingestor)
    assert _sources(ingestor, index, "报销") == ["a.md"]
    _add_chunk(ingestor, "new-3", "望海会议室在八楼。")  # no marker: only the count tells
    later = time.monotonic() + keyword_index.RECOUNT_S + 0.1
    monkeypatch.setattr(keyword_index, "time", SimpleNamespace(monotonic=lambda: later))
    assert _sources(ingestor, index, "望海会议室") == ["x.md"]


def _exact_order(ingestor: Ingestor, query: list[float]) -> list[tuple[str, float]]:
    """Every chunk by cosine similarity to ``query``, computed here from Chroma's stored vectors."""
    stored = ingestor.client.get_collection(KB).get(include=["embeddings"])
    target = np.asarray(query) / np.linalg.norm(query)
    scored = [
        (chunk_id, float(np.dot(np.asarray(vector) / np.linalg.norm(vector), target)))
        for chunk_id, vector in zip(stored["ids"], stored["embeddings"], strict=True)
    ]
    return sorted(scored, key=lambda pair: -pair[1])


def test_a_small_knowledge_base_is_searched_exactly_and_follows_ingestion(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    files = {
        "rooms.md": "观澜会议室在九楼，可容纳二十人。",
        "bus.txt": "The Q1 shuttle bus has 33 seats.",
        "leave.md": "员工每年享有十五天带薪年假。",
    }
    _ingest(ingestor, folder, files)
    index = _index(ingestor)
    query = ingestor.embeddings.embed_query("会议室在几楼？")
    nearest = index.nearest(np.asarray(query), 2)
    expected = _exact_order(ingestor, query)[:2]
    assert nearest is not None and [chunk_id for chunk_id, _ in nearest] == [i for i, _ in expected]
    assert [score for _, score in nearest] == pytest.approx([score for _, score in expected], abs=1e-5)

    (folder / "canteen.md").write_text("员工食堂在三楼，午餐补贴每天二十五元。", encoding="utf-8")
    (folder / "rooms.md").unlink()
    ingestor.ingest_folder(folder, KB, progress=False)
    query = ingestor.embeddings.embed_query("食堂在几楼？")
    nearest = index.nearest(np.asarray(query), 10)  # the same instance sees the rebuilt copy
    assert nearest is not None and len(nearest) == 3  # rooms.md's chunk is gone, canteen.md's is in
    assert [chunk_id for chunk_id, _ in nearest] == [i for i, _ in _exact_order(ingestor, query)]


def test_a_lost_index_of_a_small_knowledge_base_is_rebuilt_by_its_next_exact_search(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """A vector-only knowledge base never asks for BM25, so the exact search must notice the loss."""
    _ingest(ingestor, tmp_path / "docs", {"leave.md": "员工每年享有十五天带薪年假。"})
    folder = keyword_folder(ingestor.settings.data_dir, KB)
    shutil.rmtree(folder)
    query = np.asarray(ingestor.embeddings.embed_query("年假有几天？"))
    nearest = _index(ingestor).nearest(query, 1)
    assert nearest is not None and (folder / "vectors.npy").is_file()
    too_large = KeywordIndex(folder, ingestor.client.get_collection(KB), vector_limit=0)
    assert too_large.nearest(query, 1) is None


def test_an_ingestion_with_nothing_changed_adds_a_missing_exact_copy(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """A knowledge base indexed before kbqa kept the vector copy (or whose copy was deleted) gets one
    from the next ingestion, even with no file changed: queries alone would stay on HNSW."""
    folder = tmp_path / "docs"
    _ingest(ingestor, folder, {"a.md": "报销须在三十天内提交。", "b.md": "年假十五天。"})
    copy = keyword_folder(ingestor.settings.data_dir, KB) / "vectors.npy"
    copy.unlink()
    index = _index(ingestor)
    assert not index.is_current()
    assert index.nearest(np.asarray(ingestor.embeddings.embed_query("报销")), 5) is None  # no rebuild

    report = ingestor.ingest_folder(folder, KB, progress=False)
    assert len(report.unchanged) == 2 and copy.is_file() and index.is_current()
    nearest = index.nearest(np.asarray(ingestor.embeddings.embed_query("报销")), 5)
    assert nearest is not None and len(nearest) == 2


@pytest.mark.parametrize("limit", [0, 1])
def test_no_exact_copy_when_off_or_the_knowledge_base_is_larger(
    ingestor: Ingestor, tmp_path: Path, limit: int
) -> None:
    settings = ingestor.settings.model_copy(update={"exact_search_max_chunks": limit})
    ingestor = Ingestor(settings, ingestor.embeddings)
    _ingest(ingestor, tmp_path / "docs", {"a.md": "报销须在三十天内提交。", "b.md": "年假十五天。"})
    assert not (keyword_folder(ingestor.settings.data_dir, KB) / "vectors.npy").exists()
    folder = keyword_folder(ingestor.settings.data_dir, KB)
    index = KeywordIndex(folder, ingestor.client.get_collection(KB), vector_limit=100)  # would use one
    assert index.nearest(np.asarray(ingestor.embeddings.embed_query("报销")), 5) is None
    assert _sources(ingestor, index, "报销") == ["a.md"]  # the keyword side works as before
