"""Run an ASGI app under a real uvicorn server on loopback, in a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.llm import REWRITE_SAMPLING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbeddings
    from rag.service import KnowledgeBaseService

SHUTTLE = "The company shuttle bus has 33 seats and leaves the north gate every 15 minutes."
LEAVE = "# 休假制度\n\n员工每年享有十五天带薪年假。"


class ServerThread:
    def __init__(self, app: Any, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)


class FakeLLM:
    """Stands in for ``rag.llm.LLMProvider``: every chat model answers the next of ``answers``, in turn.

    The models share one iterator, so with a history the condense call takes one answer and the
    answer call the next. ``calls`` records the sampling parameters each model was built with.
    """

    base_url = "fake://llm"

    def __init__(self, *answers: str) -> None:
        self.set_answers(*answers)
        self.calls: list[dict[str, Any]] = []

    def set_answers(self, *answers: str) -> None:
        self._answers: Iterator[AIMessage] = cycle([AIMessage(content=answer) for answer in answers])

    def check(self) -> str:
        return "fake"

    def chat_model(self, **params: Any) -> GenericFakeChatModel:
        self.calls.append(params)
        return GenericFakeChatModel(messages=self._answers)

    def rewrite_model(self) -> GenericFakeChatModel:
        return self.chat_model(**REWRITE_SAMPLING)


@dataclass(frozen=True)
class KnowledgeServer:
    """What ``serve_knowledge`` started: the app's base URL and the parts behind it."""

    url: str
    app: FastAPI
    service: KnowledgeBaseService
    settings: Settings


@contextlib.contextmanager
def serve_knowledge(
    root: Path,
    embeddings: SentenceTransformerEmbeddings,
    llm: FakeLLM,
    *,
    more_documents: Mapping[str, str] | None = None,
    empty_kbs: Sequence[str] = (),
    **overrides: object,
) -> Iterator[KnowledgeServer]:
    """The app under uvicorn over a default knowledge base of ``shuttle.txt`` (plus ``more_documents``).

    The documents are written to ``root / "docs"`` and ingested into ``root / "data"``, whose settings
    are the test profile with ``overrides``; ``empty_kbs`` are created with nothing in them; ``llm``
    stands in for the LLM server.
    """
    from app import create_app  # here, not above: modules that only need FakeLLM skip the app's imports
    from rag.service import KnowledgeBaseService
    from tests.conftest import free_port, make_settings

    docs = root / "docs"
    docs.mkdir()
    for name, text in {"shuttle.txt": SHUTTLE, **(more_documents or {})}.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = make_settings(root / "data", **overrides)
    service = KnowledgeBaseService(settings, embeddings=embeddings)
    service.ingestor.ingest_folder(docs, settings.default_kb, progress=False)
    for kb in empty_kbs:
        service.create_knowledge_base(kb)
    app = create_app(settings, manage_llm=False, knowledge=service, llm=llm)  # type: ignore[arg-type]
    with ServerThread(app, free_port()) as running:
        yield KnowledgeServer(running.url, app, service, settings)


def wait_job(url: str, job: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
    """Poll an ingestion job of the app at ``url`` until it has ended; returns its last state."""
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
    return job


class BrokenStreamLLM(FakeLLM):
    """Its models send the first words of an answer, then lose the server (as a killed vLLM would)."""

    def chat_model(self, **params: Any) -> GenericFakeChatModel:
        self.calls.append(params)
        return _BrokenModel(messages=iter([AIMessage(content="The shuttle bus has")]))


class _BrokenModel(GenericFakeChatModel):
    """Streams its one message, then fails the way the openai client does when the server is gone."""

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        import openai

        yield from super()._stream(*args, **kwargs)
        request = httpx.Request("POST", "http://fake/v1/chat/completions")
        raise openai.APIConnectionError(message="Connection error.", request=request)
