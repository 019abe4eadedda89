"""The companion embedder (real USE multilingual weights) and its place in the index and the retriever."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag.companion import CompanionEncoder, load_companion
from rag.keyword_index import KeywordIndex, keyword_folder
from rag.service import KnowledgeBaseService

KB = "companion"
FILES = {
    "leave.md": "# 休假制度\n\n员工每年享有十五天带薪年假，须在「禾苗」系统中申请。",
    "shuttle.txt": "The company shuttle bus has 33 seats and runs every 15 minutes.",
    "canteen.md": "# 食堂\n\n员工食堂在三楼，午餐补贴每天二十五元。",
}


@pytest.fixture(scope="module")
def encoder() -> CompanionEncoder:
    companion = load_companion("use-multilingual")
    assert companion is not None
    return companion


def test_vectors_are_unit_length_and_match_across_languages(encoder: CompanionEncoder) -> None:
    vectors = encoder.encode(["员工食堂在几楼？", "Which floor is the staff canteen on?", "班车有多少座位？"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[1] @ vectors[2]  # the translation is nearer than another topic
    assert encoder.encode([]).shape == (0, 512)
    traditional, simplified = encoder.encode(["員工食堂在幾樓？", "员工食堂在几楼？"])
    assert np.allclose(traditional, simplified, atol=1e-5)  # one script, as in the main embedder
    assert load_companion("none") is None
    assert load_companion("auto", object()) is None  # a model not measured with it: off

    class Measured:
        companion_fusion = True

    assert isinstance(load_companion("auto", Measured()), CompanionEncoder)
    with pytest.raises(ValueError, match="unknown companion"):
        load_companion("nope")


def test_a_batch_spread_over_threads_encodes_as_one_thread_does(encoder: CompanionEncoder) -> None:
    texts = [FILES["leave.md"], FILES["shuttle.txt"] * 3, FILES["canteen.md"], "班车有多少座位？", "canteen"]
    spread = CompanionEncoder(threads=2)
    names: list[str] = []
    spread.encode(texts[:1])  # loads the model
    model_encode = spread._model.encode
    spread._model.encode = lambda part: names.append(threading.current_thread().name) or model_encode(part)
    vectors = spread.encode(texts)
    assert sorted(names) == ["encode_0", "encode_1"]
    assert np.allclose(vectors, encoder.encode(texts), atol=1e-5)


class _Counting(CompanionEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        self.encoded.extend(texts)
        return super().encode(texts)


def _ingest(ingestor: Ingestor, folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingestor.ingest_folder(folder, KB, progress=False)


def test_the_index_keeps_companion_vectors_and_encodes_each_text_once(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    counting = _Counting()
    ingestor.companion = counting
    folder = tmp_path / "docs"
    _ingest(ingestor, folder, FILES)
    chunks = ingestor.client.get_collection(KB).count()
    assert len(counting.encoded) == chunks  # the first rebuild encodes every chunk
    folder_path = keyword_folder(ingestor.settings.data_dir, KB)
    assert np.load(folder_path / "companion.npy").shape == (chunks, 512)

    counting.encoded.clear()
    (folder / "bus2.txt").write_text("The night bus leaves at 22:30 from gate B.", encoding="utf-8")
    ingestor.ingest_folder(folder, KB, progress=False)
    assert counting.encoded == ["The night bus leaves at 22:30 from gate B."]  # the rest from the cache

    index = KeywordIndex(
        folder_path,
        ingestor.client.get_collection(KB),
        vector_limit=ingestor.settings.exact_search_max_chunks,
        companion=counting,
    )
    query = counting.encode(["When does the night bus leave?"])[0]
    nearest = index.nearest(query, 2, companion=True)
    assert nearest is not None
    found = ingestor.client.get_collection(KB).get(ids=[nearest[0][0]])["documents"]
    assert found == ["The night bus leaves at 22:30 from gate B."]

    (folder_path / "companion.npy").unlink()  # an index built before the companion: the next run adds it
    assert not index.is_current()
    ingestor.ingest_folder(folder, KB, progress=False)
    assert (folder_path / "companion.npy").is_file() and index.is_current()


def test_the_retriever_fuses_the_companion_and_can_do_without_it(ingestor: Ingestor, tmp_path: Path) -> None:
    settings = ingestor.settings.model_copy(update={"companion_model": "use-multilingual"})
    ingestor = Ingestor(settings, ingestor.embeddings)
    _ingest(ingestor, tmp_path / "docs", FILES)
    service = KnowledgeBaseService(settings, embeddings=ingestor.embeddings)
    assert service.companion is not None
    question = "How many seats does the shuttle bus have?"
    with_companion = service.retriever(KB, k=3, gated=False).invoke(question)
    assert with_companion[0].metadata["source"] == "shuttle.txt"

    settings = ingestor.settings.model_copy(update={"companion_model": "none"})
    plain = KnowledgeBaseService(settings, embeddings=ingestor.embeddings)
    assert plain.companion is None
    without = plain.retriever(KB, k=3, gated=False).invoke(question)
    assert without[0].metadata["source"] == "shuttle.txt"
    assert {d.id for d in with_companion} == {d.id for d in without}  # same three chunks, maybe reordered


class _Steered(KeywordIndex):
    """The real index, except that the companion's ranking is the one a test sets."""

    companion_ranking: tuple[str, ...] = ()

    def nearest(
        self, query_vector: np.ndarray, k: int, *, companion: bool = False
    ) -> list[tuple[str, float]] | None:
        if companion:
            return [(chunk_id, 0.9) for chunk_id in self.companion_ranking[:k]]
        return super().nearest(query_vector, k)


def test_companion_rankings_reorder_and_bring_in_chunks_the_gate_then_judges(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    update = {"retrieval_mode": "vector", "companion_model": "use-multilingual"}
    settings = ingestor.settings.model_copy(update=update)
    ingestor = Ingestor(settings, ingestor.embeddings)
    _ingest(ingestor, tmp_path / "docs", FILES)
    service = KnowledgeBaseService(settings, embeddings=ingestor.embeddings)
    question = "How many seats does the shuttle bus have?"

    def retriever(ranking: list[str], **fields: object):  # type: ignore[no-untyped-def]
        plain = service.retriever(KB, k=3, gated=False)
        steered = _Steered(
            plain.exact.folder, plain.exact.collection, vector_limit=100, companion=service.companion
        )
        steered.companion_ranking = tuple(ranking)
        return plain.model_copy(update={"exact": steered, **fields})

    base = [d.id for d in service.retriever(KB, k=3, gated=False).invoke(question)]
    assert len(base) == 3
    # The retriever's third chunk ranked first by the companion overtakes its first: 1/13 + 0.5/11 > 1/11.
    moved = [d.id for d in retriever([base[2]]).invoke(question)]
    assert moved == [base[2], base[0], base[1]]
    # A chunk the retriever's search never reached joins, text and score filled, when it passes the gate.
    narrow = retriever([base[1]], candidates=1, k=1, companion_weight=2.0)
    [joined] = narrow.invoke(question)
    assert joined.id == base[1] and joined.page_content and joined.metadata["score"] > 0
    gated = narrow.model_copy(update={"min_relevance": 0.999})
    assert gated.invoke(question) == []  # nothing passes so high a gate, the newcomer included
