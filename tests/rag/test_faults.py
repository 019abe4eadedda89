"""Backends failing under a running app, over real HTTP: the LLM server and the Chroma server go away.

Everything here is real except the model: uvicorn on loopback, the real ``rag.llm.LLMProvider`` and
LangChain's ``ChatOpenAI`` talking to a fake OpenAI-compatible server in its own process (killed with
SIGKILL like a crashed vLLM, restarted on the same port), and a `chroma run` server stopped and
restarted on the same port and data path. The contract: while a backend is down, requests get a
503 in OpenAI's error shape within seconds (not a 500, not a hang) and ``/health`` says which one is
down; once it is back, requests succeed again without restarting the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from rag.cli import chat_loop
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbeddings
from rag.llm import LLMProvider
from rag.service import KnowledgeBaseService
from tests.conftest import free_port, make_settings
from tests.support.chroma import ChromaServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.servers import ServerThread

ANSWER = "The shuttle bus has 33 seats [1]."
SHUTTLE = "The company shuttle bus has 33 seats and leaves the north gate every 15 minutes."
QUESTION = [{"role": "user", "content": "How many seats has the shuttle bus?"}]
QUICK_S = 5.0  # "within a few seconds"


def _docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "shuttle.txt").write_text(SHUTTLE, encoding="utf-8")
    return docs


def _chat(url: str, *, stream: bool = False, timeout: float = 60) -> httpx.Response:
    body = {"model": "kbqa", "messages": QUESTION, "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def _answer(response: httpx.Response) -> str:
    """The answer text of a JSON or SSE reply, asserting it completed."""
    assert response.status_code == 200, response.text
    if not response.headers["content-type"].startswith("text/event-stream"):
        return response.json()["choices"][0]["message"]["content"]
    events = _sse(response.text)
    assert events[-1] == "[DONE]", events[-1]
    chunks = [event for event in events[:-1] if event.get("choices")]
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)


def _sse(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def _assert_unavailable(response: httpx.Response, started: float) -> dict[str, Any]:
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "service_unavailable" and error["code"] == "backend_unavailable"
    assert elapsed < QUICK_S, f"took {elapsed:.1f} s"
    return error


# --- the LLM server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, embeddings: SentenceTransformerEmbeddings
) -> KnowledgeBaseService:
    """Embedded Chroma with one document; the LLM tests only vary the LLM."""
    root = tmp_path_factory.mktemp("faults-llm")
    settings = make_settings(root / "data")
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    knowledge.ingestor.ingest_folder(_docs(root), settings.default_kb, progress=False)
    return knowledge


def _app_for(service: KnowledgeBaseService, llm_url: str) -> Any:
    """The real LLMProvider (no fake injected) pointed at ``llm_url``."""
    settings = service.settings.model_copy(update={"llm_base_url": llm_url})
    return create_app(settings, manage_llm=False, knowledge=service)


def test_llm_down_is_a_quick_503_and_comes_back_without_restart(
    service: KnowledgeBaseService, tmp_path: Path
) -> None:
    llm = FakeOpenAIServer(free_port(), reply=ANSWER, log_path=tmp_path / "llm.log").start()
    try:
        with ServerThread(_app_for(service, llm.url), free_port()) as app:
            for stream in (False, True):
                assert _answer(_chat(app.url, stream=stream)) == ANSWER
            assert httpx.get(f"{app.url}/health").json()["llm"]["reachable"] is True

            llm.kill()
            for stream in (False, True, False):
                started = time.monotonic()
                error = _assert_unavailable(_chat(app.url, stream=stream), started)
                assert llm.url in error["message"]
            health = httpx.get(f"{app.url}/health", timeout=QUICK_S * 2)
            assert health.status_code == 200
            assert health.json()["llm"]["reachable"] is False and health.json()["chroma"]["reachable"] is True

            llm.start()  # same port, a new process: as vLLM restarted by its supervisor
            for stream in (False, True):
                assert _answer(_chat(app.url, stream=stream)) == ANSWER
            assert httpx.get(f"{app.url}/health").json()["llm"]["reachable"] is True
    finally:
        llm.stop()


def test_llm_killed_mid_stream_ends_the_stream_with_an_error_event(
    service: KnowledgeBaseService, tmp_path: Path
) -> None:
    words = " ".join(f"word{n}" for n in range(60))  # 60 tokens at 0.1 s: the kill lands mid-answer
    llm = FakeOpenAIServer(free_port(), reply=words, token_delay_s=0.1, log_path=tmp_path / "llm.log")
    llm.start()
    try:
        with ServerThread(_app_for(service, llm.url), free_port()) as app:
            body = {"model": "kbqa", "messages": QUESTION, "stream": True}
            events: list[Any] = []
            started = time.monotonic()
            with httpx.stream("POST", f"{app.url}/v1/chat/completions", json=body, timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    events.append(data if data == "[DONE]" else json.loads(data))
                    chunks = [e for e in events if isinstance(e, dict) and e.get("choices")]
                    if (
                        llm.running
                        and sum(bool(e["choices"][0]["delta"].get("content")) for e in chunks) >= 3
                    ):
                        llm.kill()
            assert time.monotonic() - started < 15, "the stream hung after the LLM died"
            assert "[DONE]" not in events
            assert events[-1]["error"]["type"] == "service_unavailable", events[-1]
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e.get("choices"))
            assert text.startswith("word0 word1 word2") and "word59" not in text
            assert httpx.get(f"{app.url}/health").status_code == 200

            llm.token_delay_s = 0.0
            llm.start()
            assert _answer(_chat(app.url, stream=True)) == words
    finally:
        llm.stop()


# --- the Chroma server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(free_port(), tmp_path_factory.mktemp("faults-chroma")).start()
    yield server
    server.stop()


def test_a_prompt_longer_than_the_models_context_is_a_400_saying_what_to_do(
    service: KnowledgeBaseService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vLLM refuses a prompt longer than its context; the client gets OpenAI's code and param for it and
    a message a user can act on, in the API and in the CLI (whose conversation goes on)."""
    llm = FakeOpenAIServer(free_port(), reply=ANSWER, max_prompt_chars=4000, log_path=tmp_path / "llm.log")
    long_question = [{"role": "user", "content": "How many seats has the shuttle bus? " + "Please. " * 600}]
    with llm, ServerThread(_app_for(service, llm.url), free_port()) as app:
        for stream in (False, True):
            body = {"model": "kbqa", "messages": long_question, "stream": stream}
            response = httpx.post(f"{app.url}/v1/chat/completions", json=body, timeout=60)
            assert response.status_code == 400
            error = response.json()["error"]
            assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
            assert "shorten the question" in error["message"] and "maximum context length" in error["message"]
        assert _answer(_chat(app.url)) == ANSWER  # a question that fits is answered as before

        provider = LLMProvider(service.settings.model_copy(update={"llm_base_url": llm.url}))
        chain = service.chain(service.settings.default_kb, provider.chat_model(), k=3)
        asked = iter([long_question[0]["content"], "How many seats has the shuttle bus?", ""])
        assert chat_loop(chain, lambda _: next(asked), llm_url=llm.url) == 0
        said = capsys.readouterr().out
        assert "error: the question, the conversation and the passages found are more" in said
        assert ANSWER in said  # the next question was still answered


@pytest.fixture(scope="module")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOpenAIServer]:
    log = tmp_path_factory.mktemp("faults-llm-log") / "llm.log"
    with FakeOpenAIServer(free_port(), reply=ANSWER, log_path=log) as server:
        yield server


def _server_settings(root: Path, chroma: ChromaServer, llm: FakeOpenAIServer) -> Settings:
    return make_settings(
        root / "data", chroma_host=chroma.host, chroma_port=chroma.port, llm_base_url=llm.url
    )


def _assert_store_down(url: str) -> None:
    """Every route that needs Chroma answers a quick 503; /health says Chroma is down."""
    for stream in (False, True):
        started = time.monotonic()
        error = _assert_unavailable(_chat(url, stream=stream), started)
        assert "Chroma" in error["message"], error
    for method, path, kwargs in (
        ("GET", "/v1/models", {}),
        ("GET", "/v1/knowledge_bases", {}),
        ("POST", "/v1/knowledge_bases", {"json": {"name": "new-kb"}}),
        ("DELETE", "/v1/knowledge_bases/default", {}),
        ("GET", "/v1/knowledge_bases/default/documents", {}),
        ("DELETE", "/v1/knowledge_bases/default/documents/shuttle.txt", {}),
        ("POST", "/v1/knowledge_bases/default/documents", {"files": {"files": ("a.md", b"# a")}}),
    ):
        started = time.monotonic()
        response = httpx.request(method, f"{url}{path}", timeout=30, **kwargs)
        _assert_unavailable(response, started)
    started = time.monotonic()
    health = httpx.get(f"{url}/health", timeout=30)
    assert health.status_code == 200 and time.monotonic() - started < QUICK_S
    assert health.json()["chroma"]["reachable"] is False and health.json()["llm"]["reachable"] is True


def _assert_store_up(url: str) -> None:
    for stream in (False, True):
        assert _answer(_chat(url, stream=stream)) == ANSWER
    body = _chat(url).json()
    assert body["sources"] and body["sources"][0]["source"] == "shuttle.txt"
    names = [kb["kb"] for kb in httpx.get(f"{url}/v1/knowledge_bases").json()["data"]]
    assert "default" in names
    documents = httpx.get(f"{url}/v1/knowledge_bases/default/documents").json()["data"]
    assert [document["source"] for document in documents] == ["shuttle.txt"]
    assert httpx.get(f"{url}/health").json()["chroma"]["reachable"] is True


def test_chroma_server_down_is_a_quick_503_and_comes_back_without_restart(
    chroma: ChromaServer,
    fake_llm: FakeOpenAIServer,
    embeddings: SentenceTransformerEmbeddings,
    tmp_path: Path,
) -> None:
    settings = _server_settings(tmp_path, chroma, fake_llm)
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    knowledge.ingestor.ingest_folder(_docs(tmp_path), settings.default_kb, progress=False)
    app = create_app(settings, manage_llm=False, knowledge=knowledge)
    try:
        with ServerThread(app, free_port()) as running:
            _assert_store_up(running.url)
            chroma.stop()
            _assert_store_down(running.url)
            chroma.start()  # same port, same data path
            _assert_store_up(running.url)
    finally:
        if not chroma.running:
            chroma.start()
        knowledge.client.delete_collection(settings.default_kb)


def test_app_started_while_chroma_is_down_recovers_when_it_comes_up(
    chroma: ChromaServer,
    fake_llm: FakeOpenAIServer,
    embeddings: SentenceTransformerEmbeddings,
    tmp_path: Path,
) -> None:
    settings = _server_settings(tmp_path, chroma, fake_llm)
    ingesting = KnowledgeBaseService(settings, embeddings=embeddings)
    ingesting.ingestor.ingest_folder(_docs(tmp_path), settings.default_kb, progress=False)
    chroma.stop()
    # A fresh service: its Chroma client is first asked for while the server is down.
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    app = create_app(settings, manage_llm=False, knowledge=knowledge)
    try:
        with ServerThread(app, free_port()) as running:
            _assert_store_down(running.url)
            chroma.start()
            _assert_store_up(running.url)
    finally:
        if not chroma.running:
            chroma.start()
        ingesting.client.delete_collection(settings.default_kb)


def test_hung_chroma_server_is_a_503_after_its_timeout(
    chroma: ChromaServer,
    fake_llm: FakeOpenAIServer,
    embeddings: SentenceTransformerEmbeddings,
    tmp_path: Path,
) -> None:
    """A server that accepts connections but never answers: chromadb's client alone would wait forever."""
    settings = _server_settings(tmp_path, chroma, fake_llm).model_copy(update={"chroma_timeout_s": 1.0})
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    knowledge.ingestor.ingest_folder(_docs(tmp_path), settings.default_kb, progress=False)
    app = create_app(settings, manage_llm=False, knowledge=knowledge)
    try:
        with ServerThread(app, free_port()) as running:
            _assert_store_up(running.url)
            chroma.pause()
            for stream in (False, True):
                started = time.monotonic()
                error = _assert_unavailable(_chat(running.url, stream=stream), started)
                assert "Timeout" in error["message"], error
            health = httpx.get(f"{running.url}/health", timeout=30).json()
            assert health["chroma"]["reachable"] is False
            chroma.resume()
            _assert_store_up(running.url)
    finally:
        if chroma.running:
            chroma.resume()
        else:
            chroma.start()
        knowledge.client.delete_collection(settings.default_kb)


def test_a_managed_llm_that_did_not_start_is_reported_as_such_not_as_still_loading(
    embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    """Waiting a minute mends a loading model, not a missing LLM environment: say which it is."""
    settings = make_settings(
        tmp_path / "data", llm_python=tmp_path / "no-llm-env" / "python", llm_port=free_port()
    )
    knowledge = KnowledgeBaseService(settings, embeddings=embeddings)
    app = create_app(settings, manage_llm=True, knowledge=knowledge)
    with ServerThread(app, free_port()) as running:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while True:
            llm = httpx.get(f"{running.url}/health", timeout=10).json()["llm"]
            if "did not start" in llm.get("error", "") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert llm["reachable"] is False and "did not start" in llm["error"]
    assert "still loading" not in llm["error"]
