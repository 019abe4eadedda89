"""ReusingEmbeddings: each distinct text embedded once, in slices that report progress, and every
vector handed back for its own text whatever order the slices took."""

from __future__ import annotations

from ingest.vector_reuse import ReusingEmbeddings


class _LengthEmbedder:
    """A stand-in model whose vector names its text, so a mismatch cannot hide."""

    batch_size = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(len(text)), float(sum(map(ord, text)))] for text in texts]


def test_vectors_follow_their_texts_through_sorting_and_slices() -> None:
    inner = _LengthEmbedder()
    reported: list[int] = []
    reusing = ReusingEmbeddings(inner, on_embedded=reported.append)
    texts = [f"text {'x' * (n * 7 % 45)} {n}" for n in range(70)] + ["text  0", "text  0"]  # copies
    vectors = reusing.embed_documents(texts)
    assert vectors == [[float(len(t)), float(sum(map(ord, t)))] for t in texts]
    assert [len(call) for call in inner.calls] == [32, 32, 6]  # 16 batches of 2 per report
    assert reported == [32, 32, 6]
    lengths = [len(text) for call in inner.calls for text in call]
    assert lengths == sorted(lengths, reverse=True)  # longest first, across the slices
    assert reusing.embed_documents(texts[:3]) == vectors[:3] and len(inner.calls) == 3  # remembered


def test_without_a_progress_callback_the_texts_go_in_one_call() -> None:
    inner = _LengthEmbedder()
    ReusingEmbeddings(inner).embed_documents([f"t{n}" for n in range(100)])
    assert [len(call) for call in inner.calls] == [100]


def test_an_embedder_with_worker_threads_gets_a_batch_per_worker_in_each_slice() -> None:
    inner = _LengthEmbedder()
    inner.workers = 2  # type: ignore[attr-defined]
    ReusingEmbeddings(inner, on_embedded=lambda _: None).embed_documents([f"t{n}" for n in range(100)])
    assert [len(call) for call in inner.calls] == [64, 36]  # 16 batches of 2 for each of 2 workers
