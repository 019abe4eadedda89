"""The store against embedded Chroma and a real Chroma server: same behaviour through both clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings
from rag.store import (
    EmbeddingMismatchError,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    StoreUnavailableError,
    chroma_client,
    knowledge_base_info,
    list_knowledge_bases,
    open_vector_store,
    validate_kb_name,
)
from tests.conftest import free_port, make_settings


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "embedded":
        return make_settings(tmp_path / "data")
    host, port = request.getfixturevalue("chroma_server")
    return make_settings(tmp_path / "data", chroma_host=host, chroma_port=port)


def _unique(name: str, tmp_path: Path) -> str:
    """The server fixture is shared by the session, so collection names must not collide."""
    return f"{name}-{abs(hash(tmp_path)) % 10**8}"


def test_collection_records_its_embedding_model(
    store_settings: Settings, embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    kb = _unique("records", tmp_path)
    client = chroma_client(store_settings)
    store = open_vector_store(client, kb, embeddings, create=True)
    store.add_documents(
        [
            Document(page_content="报销须在 30 天内提交。", metadata={"source": "a.md"}),
            Document(page_content="Annual leave is 15 days.", metadata={"source": "b.txt", "page": 2}),
        ],
        ids=["1", "2"],
    )
    info = knowledge_base_info(client, kb)
    assert (info.embedding_model, info.dimension, info.chunks, info.files) == ("moka-ai/m3e-small", 512, 2, 2)
    assert kb in [item.name for item in list_knowledge_bases(client)]
    # Reopening with the same model works and finds the same data.
    again = open_vector_store(client, kb, embeddings, create=False)
    assert again.similarity_search("年假有几天", k=1)[0].page_content == "Annual leave is 15 days."


def test_other_embedding_model_is_refused(
    store_settings: Settings, embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    kb = _unique("mismatch", tmp_path)
    client = chroma_client(store_settings)
    open_vector_store(client, kb, embeddings, create=True)
    impostor = SentenceTransformerEmbeddings(embeddings._model, "someone/else")
    with pytest.raises(EmbeddingMismatchError, match="moka-ai/m3e-small"):
        open_vector_store(client, kb, impostor, create=False)


def test_missing_knowledge_base_is_a_clear_error(
    store_settings: Settings, embeddings: SentenceTransformerEmbeddings
) -> None:
    client = chroma_client(store_settings)
    with pytest.raises(KnowledgeBaseNotFoundError, match="does not exist"):
        open_vector_store(client, "never-made", embeddings, create=False)
    with pytest.raises(KnowledgeBaseNotFoundError):
        knowledge_base_info(client, "never-made")


def test_names_differing_only_in_case_are_one_knowledge_base_to_the_user(
    store_settings: Settings, embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    """A second knowledge base a letter case apart ("Policies", "policies") is a typo's empty copy."""
    kb = _unique("Policies", tmp_path)
    client = chroma_client(store_settings)
    open_vector_store(client, kb, embeddings, create=True)
    with pytest.raises(KnowledgeBaseExistsError, match=f"use '{kb}'"):
        open_vector_store(client, kb.lower(), embeddings, create=True)
    with pytest.raises(KnowledgeBaseNotFoundError, match=f"did you mean '{kb}'"):
        knowledge_base_info(client, kb.lower())
    assert kb.lower() not in [info.name for info in list_knowledge_bases(client)]


def test_a_misspelt_name_is_answered_with_the_one_meant(
    store_settings: Settings, embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    kb = _unique("handbook", tmp_path)
    client = chroma_client(store_settings)
    open_vector_store(client, kb, embeddings, create=True)
    with pytest.raises(KnowledgeBaseNotFoundError, match=f"did you mean '{kb}'"):
        knowledge_base_info(client, kb.replace("handbook", "handbok"))
    with pytest.raises(KnowledgeBaseNotFoundError) as unrelated:
        knowledge_base_info(client, "zz-nothing-like-it")
    assert "did you mean" not in str(unrelated.value)


@pytest.mark.parametrize(
    "name", ["ab", "-bad", "bad-", "has space", "a/b", "../x", "名字", "x" * 64, "", "1.2.3.4"]
)
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid knowledge base name"):
        validate_kb_name(name)


def test_unreachable_server_is_reported(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreUnavailableError, match="cannot reach the Chroma server"):
        chroma_client(settings)
