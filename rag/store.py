"""Chroma access: one collection per knowledge base, each remembering the embedding model that built it.

Embedded ``PersistentClient`` under the data dir by default; ``HttpClient`` when ``chroma_host`` is set,
so several app replicas can share one server. Querying a collection with a different embedding model
would return silent garbage, so opening one with a mismatched model raises instead.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import chromadb
import httpx
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma

from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings, packaged_spec

MODEL_KEY = "embedding_model"
DIMENSION_KEY = "embedding_dimension"
_KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
_PAGE = 5000


class StoreError(RuntimeError):
    """Base of the errors a caller can show the user as they are."""


class StoreUnavailableError(StoreError):
    """The Chroma server cannot be reached."""


class KnowledgeBaseNotFoundError(StoreError, LookupError):
    """No collection of that name."""


class KnowledgeBaseExistsError(StoreError):
    """Creating a knowledge base whose name is taken (in any letter case)."""


class EmbeddingMismatchError(StoreError):
    """The collection was built with another embedding model than the one configured now."""


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    embedding_model: str | None
    dimension: int | None
    chunks: int
    files: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "kb": self.name,
            "files": self.files,
            "chunks": self.chunks,
            "embedding_model": self.embedding_model,
            "dimension": self.dimension,
        }


def validate_kb_name(name: str) -> str:
    """Knowledge-base names become collection names, so they follow Chroma's rules (3-63 safe chars)."""
    if not _KB_NAME.match(name or "") or ".." in name:
        raise ValueError(
            f"invalid knowledge base name {name!r}: use 3-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    if _is_ipv4(name):  # Chroma refuses these too
        raise ValueError(f"invalid knowledge base name {name!r}: it must not be an IP address")
    return name


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def chroma_client(settings: Settings) -> chromadb.ClientAPI:
    """The embedded client, or one for the Chroma server that fails fast and clearly while it is down.

    Creating an ``HttpClient`` asks the server for its tenant, so it raises ``StoreUnavailableError``
    while the server is down (callers simply ask again later); a client made while it was up keeps
    working once a restarted server answers again, since its connection pool reconnects.
    """
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if not settings.chroma_host:
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    where = f"{settings.chroma_host}:{settings.chroma_port}"
    try:
        client = chromadb.HttpClient(
            host=settings.chroma_host,
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
            settings=chroma_settings,
        )
    except Exception as error:
        raise StoreUnavailableError(f"cannot reach the Chroma server at {where}: {error}") from error
    _guard_requests(
        client, where, httpx.Timeout(settings.chroma_timeout_s, connect=settings.chroma_connect_timeout_s)
    )
    return client


def _guard_requests(client: chromadb.ClientAPI, where: str, timeout: httpx.Timeout) -> None:
    """Give every request of an HTTP client a timeout, and turn its connection failures into ours.

    chromadb's HTTP client waits forever (``timeout=None``) and lets ``httpx`` errors escape from
    whichever call met the outage (a collection's query deep in a retriever, a count in the keyword
    index, ...), where they would be a 500. All of its requests pass through one method of its server
    API object (chromadb 1.5, pinned), so wrapping that one covers them all; with another chromadb
    that lacks it the client is left as it is.
    """
    server = getattr(client, "_server", None)
    send = getattr(server, "_make_request", None)
    if send is None or getattr(send, "kbqa_guarded", False):
        return

    def guarded(method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        try:
            return send(method, path, **kwargs)
        except httpx.TransportError as error:  # refused, reset, timed out: the server is not there
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise StoreUnavailableError(
                f"the Chroma server at {where} is not reachable ({reason})"
            ) from error

    guarded.kbqa_guarded = True  # type: ignore[attr-defined]
    server._make_request = guarded  # type: ignore[union-attr]


def _get_collection(client: chromadb.ClientAPI, kb: str) -> Any | None:
    try:
        return client.get_collection(kb)
    except chromadb.errors.NotFoundError:
        return None
    except ValueError as error:  # older clients say "does not exist" through ValueError
        if "does not exist" in str(error):
            return None
        raise


def find_collection(client: chromadb.ClientAPI, kb: str) -> Any | None:
    """The collection of ``kb``, or None: one lookup, for callers that cache what they build on it."""
    return _get_collection(client, validate_kb_name(kb))


def knowledge_base_exists(client: chromadb.ClientAPI, kb: str) -> bool:
    return find_collection(client, kb) is not None


def _names(client: chromadb.ClientAPI) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in client.list_collections()]


def _namesake(names: list[str], kb: str) -> str | None:
    """The knowledge base whose name differs from ``kb`` in letter case only, if there is one."""
    for name in names:
        if name != kb and name.casefold() == kb.casefold():
            return name
    return None


def _likely_meant(client: chromadb.ClientAPI, kb: str) -> str | None:
    """The existing name a mistyped ``kb`` most likely meant: its case variant, else the closest
    spelling (a letter or two swapped, dropped or added), else None."""
    names = _names(client)
    namesake = _namesake(names, kb)
    if namesake is not None:
        return namesake
    folded = {name.casefold(): name for name in names}
    close = difflib.get_close_matches(kb.casefold(), list(folded), n=1, cutoff=0.75)
    return folded[close[0]] if close else None


def missing_knowledge_base(
    client: chromadb.ClientAPI, kb: str, advice: str = ""
) -> KnowledgeBaseNotFoundError:
    """The error for a name that is not there, naming the one the user most likely meant ("Default"
    for "default", "sample" for "sampel"; Chroma's names are case-sensitive, people's memory of them
    is not), else ``advice``."""
    meant = _likely_meant(client, kb)
    hint = f"; did you mean {meant!r}?" if meant else advice
    return KnowledgeBaseNotFoundError(f"knowledge base {kb!r} does not exist{hint}")


def open_vector_store(
    client: chromadb.ClientAPI, kb: str, embeddings: SentenceTransformerEmbeddings, *, create: bool
) -> Chroma:
    """Open (or, with ``create``, make) the collection of ``kb``, refusing a different embedding model."""
    validate_kb_name(kb)
    collection = _get_collection(client, kb)
    if collection is None:
        if not create:
            raise missing_knowledge_base(client, kb, "; ingest documents into it first")
        namesake = _namesake(_names(client), kb)
        if namesake is not None:
            # a second knowledge base a typo apart would split one collection of documents in two
            # (and, on a case-insensitive disk, share the keyword index's folder)
            raise KnowledgeBaseExistsError(
                f"knowledge base {namesake!r} exists; a name differing from it only in letter case "
                f"({kb!r}) is refused: use {namesake!r}"
            )
        metadata = {MODEL_KEY: embeddings.name, DIMENSION_KEY: embeddings.dimension}
        return Chroma(
            client=client,
            collection_name=kb,
            embedding_function=embeddings,
            collection_metadata=metadata,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
    stored_model = (collection.metadata or {}).get(MODEL_KEY)
    stored_dim = (collection.metadata or {}).get(DIMENSION_KEY)
    if stored_model != embeddings.name or stored_dim != embeddings.dimension:
        original = packaged_spec(str(stored_model)) or stored_model
        raise EmbeddingMismatchError(
            f"knowledge base {kb!r} was built with embedding model {stored_model!r} "
            f"(dimension {stored_dim}), "
            f"but the configured model is {embeddings.name!r} (dimension {embeddings.dimension}); "
            f"set KBQA_EMBEDDING_MODEL={original} to use it, or ingest into a new knowledge base "
            "(or delete this one: python -m rag delete --kb NAME)"
        )
    return Chroma(
        client=client,
        collection_name=kb,
        embedding_function=embeddings,
        create_collection_if_not_exists=False,
    )


def _count_sources(collection: Any) -> int:
    sources: set[str] = set()
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        metadatas = page.get("metadatas") or []
        sources.update(str(meta.get("source")) for meta in metadatas if meta)
        if len(metadatas) < _PAGE:
            return len(sources)
        offset += _PAGE


def _info(collection: Any) -> KnowledgeBaseInfo:
    metadata = collection.metadata or {}
    return KnowledgeBaseInfo(
        name=collection.name,
        embedding_model=metadata.get(MODEL_KEY),
        dimension=metadata.get(DIMENSION_KEY),
        chunks=collection.count(),
        files=_count_sources(collection),
    )


def knowledge_base_info(client: chromadb.ClientAPI, kb: str) -> KnowledgeBaseInfo:
    collection = _get_collection(client, validate_kb_name(kb))
    if collection is None:
        raise missing_knowledge_base(client, kb)
    return _info(collection)


def list_knowledge_bases(client: chromadb.ClientAPI) -> list[KnowledgeBaseInfo]:
    """Every kbqa collection (those recording an embedding model); others on a shared server are ignored."""
    infos = []
    for collection in client.list_collections():
        try:
            if isinstance(collection, str):  # some client versions list names only
                collection = client.get_collection(collection)
            if MODEL_KEY in (collection.metadata or {}):
                infos.append(_info(collection))
        except chromadb.errors.NotFoundError:  # deleted while the list was read: no longer one of them
            continue
    return sorted(infos, key=lambda info: info.name)
