"""The HTTP API over real uvicorn, real Chroma and the real embedder, with a fake chat model behind it.

The real-vLLM side (official openai client, LangChain's ChatOpenAI) is in tests/e2e/test_app_vllm.py;
here every contract the LLM does not decide is pinned: shapes, SSE framing, errors, management.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from rag.embeddings import SentenceTransformerEmbeddings
from rag.llm import LLMProvider
from rag.service import KnowledgeBaseService
from tests.conftest import free_port, make_settings
from tests.support.servers import (
    LEAVE,
    SHUTTLE,
    BrokenStreamLLM,
    FakeLLM,
    ServerThread,
    serve_knowledge,
    wait_job,
)

ANSWER = "The shuttle bus has 33 seats [1]."


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, embeddings: SentenceTransformerEmbeddings
) -> Iterator[tuple[str, FakeLLM, KnowledgeBaseService]]:
    llm = FakeLLM(ANSWER)
    with serve_knowledge(
        tmp_path_factory.mktemp("api"),
        embeddings,
        llm,
        more_documents={"leave.md": LEAVE},
        max_upload_bytes=200_000,
        max_message_chars=2_000,
    ) as running:
        yield running.url, llm, running.service


@pytest.fixture
def url(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> str:
    server[1].set_answers(ANSWER)
    return server[0]


def _chat(url: str, **body: Any) -> httpx.Response:
    payload = {
        "model": "kbqa",
        "messages": [{"role": "user", "content": "How many seats has the shuttle bus?"}],
    }
    payload.update(body)
    return httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=60)


def _assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def _sse_events(response: httpx.Response) -> list[Any]:
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# --- OpenAI surface ----------------------------------------------------------------------------
def test_models_lists_each_knowledge_base(url: str) -> None:
    body = httpx.get(f"{url}/v1/models").json()
    assert body["object"] == "list"
    ids = [model["id"] for model in body["data"]]
    assert ids[0] == "kbqa" and "kbqa:default" in ids
    assert all(model["object"] == "model" for model in body["data"])


def test_each_listed_model_can_be_retrieved_and_others_are_404(url: str) -> None:
    """OpenAI clients check a model with ``GET /v1/models/{id}`` (``client.models.retrieve``)."""
    for model_id in ("kbqa", "kbqa:default"):
        assert httpx.get(f"{url}/v1/models/{model_id}").json() == {
            "id": model_id, "object": "model", "created": 0, "owned_by": "kbqa"
        }  # fmt: skip
    for unknown in ("kbqa:nope", "gpt-4o"):
        error = _assert_error(httpx.get(f"{url}/v1/models/{unknown}"), 404)
        assert error["code"] == "model_not_found" and error["param"] == "model"


def test_non_streamed_completion_has_openai_shape_and_sources(url: str) -> None:
    response = _chat(url, temperature=0.3, max_tokens=40, top_p=0.9, stop=["\n\n"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "kbqa"
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": ANSWER}
    assert choice["finish_reason"] == "stop"
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    source = body["sources"][0]
    assert set(source) == {"index", "source", "page", "section", "snippet", "score"}
    assert body["citations"] == [{"index": 1, "supported": True, "overlap": 1.0}]
    assert (source["index"], source["source"], source["snippet"]) == (1, "shuttle.txt", SHUTTLE)


def test_sampling_parameters_reach_the_llm(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    url, llm, _ = server
    llm.calls.clear()
    _chat(url, temperature=0.7, max_tokens=33, top_p=0.5, stop="END").raise_for_status()
    answer_call = llm.calls[0]
    assert answer_call == {"temperature": 0.7, "max_tokens": 33, "top_p": 0.5, "stop": ["END"]}


def test_streamed_completion_is_framed_like_openai(url: str) -> None:
    response = _chat(url, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    events = _sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]]
    assert "".join(deltas) == ANSWER and len([d for d in deltas if d]) > 1
    finish = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    assert finish[0]["sources"][0]["source"] == "shuttle.txt"
    assert finish[0]["citations"] == [{"index": 1, "supported": True, "overlap": 1.0}]
    usage = chunks[-1]
    assert usage["choices"] == [] and set(usage["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


def test_a_withdrawn_answer_is_replaced_or_flagged(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    """An answer that only restates the question: the refusal is the content when the answer comes
    whole; streamed, the final chunk says so and carries the refusal. Both keep the original."""
    url, llm, _ = server
    hollow = "The shuttle bus has [1] seats."
    llm.set_answers(hollow)
    body = _chat(url).json()
    content = body["choices"][0]["message"]["content"]
    assert "does not contain" in content
    assert body["withdrawn"] == {
        "reason": "restates the question without adding an answer",
        "original": hollow,
        "replacement": content,
    }
    assert body["citations"] == [] and body["sources"] and body["refused"] is True  # searched, none cited
    chunks = _sse_events(_chat(url, stream=True))[:-1]
    deltas = [chunk["choices"][0]["delta"].get("content", "") for chunk in chunks]
    assert "".join(deltas) == hollow
    assert chunks[-1]["withdrawn"] == body["withdrawn"] and chunks[-1]["citations"] == []
    llm.set_answers(ANSWER)
    assert _chat(url).json()["withdrawn"] is None


def test_stream_without_usage_option_sends_no_usage(url: str) -> None:
    chunks = _sse_events(_chat(url, stream=True))[:-1]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_unrelated_question_is_refused_with_no_sources(url: str) -> None:
    body = _chat(url, messages=[{"role": "user", "content": "法国的首都是哪里？"}]).json()
    assert body["sources"] == [] and body["refused"] is True
    assert "知识库中没有找到" in body["choices"][0]["message"]["content"]


def test_a_greeting_is_answered_with_a_greeting(url: str) -> None:
    body = _chat(url, messages=[{"role": "user", "content": "你好"}]).json()
    assert body["choices"][0]["message"]["content"].startswith("你好！")
    assert (
        body["sources"] == [] and body["citations"] == [] and body["refused"] is True
    )  # nothing from the documents
    chunks = _sse_events(_chat(url, messages=[{"role": "user", "content": "Hi!"}], stream=True))[:-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).startswith("Hello!")
    assert chunks[-1]["sources"] == [] and chunks[-1]["refused"] is True


def test_the_models_own_refusal_is_flagged(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    url, llm, _ = server
    llm.set_answers("Not in the knowledge base; it does not contain this information.")
    body = _chat(url).json()
    assert body["refused"] is True and body["sources"]  # searched, backing nothing
    assert _sse_events(_chat(url, stream=True))[-2]["refused"] is True
    llm.set_answers(ANSWER)
    assert _chat(url).json()["refused"] is False


def test_follow_up_is_condensed_before_retrieval(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    url, llm, _ = server
    llm.set_answers("How many seats does the company shuttle bus have?", ANSWER)
    history = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Is there a company shuttle bus?"},
        {"role": "assistant", "content": "Yes, it leaves the north gate [1]."},
        {"role": "user", "content": [{"type": "text", "text": "And how many seats?"}]},
    ]
    body = _chat(url, messages=history).json()
    assert body["choices"][0]["message"]["content"] == ANSWER
    assert body["sources"][0]["source"] == "shuttle.txt"


def test_named_knowledge_base_is_addressed_by_model(url: str) -> None:
    body = _chat(url, model="kbqa:default").json()
    assert body["model"] == "kbqa:default" and body["sources"]


def test_health_reports_backends(url: str) -> None:
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok"
    assert body["chroma"]["reachable"] is True and body["llm"]["reachable"] is True


def test_openapi_documents_management_routes(url: str) -> None:
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/models",
        "/v1/knowledge_bases",
        "/v1/knowledge_bases/{kb}",
        "/v1/knowledge_bases/{kb}/documents",
        "/v1/knowledge_bases/{kb}/documents/{source}",
        "/v1/knowledge_bases/{kb}/search",
        "/v1/jobs/{job_id}",
    ):
        assert path in paths, path


def test_search_returns_the_query_commands_ranking(server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    url, llm, service = server
    asked = len(llm.calls)
    response = httpx.post(f"{url}/v1/knowledge_bases/default/search", json={"query": "年假有几天？", "k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["data"] == service.search("default", "年假有几天？", k=2)
    assert [hit["source"] for hit in body["data"]] == ["leave.md", "shuttle.txt"]
    assert set(body["data"][0]) == {"text", "source", "page", "score"}
    assert body["data"][0]["text"] == service.search("default", "年假", k=1)[0]["text"]
    # Retrieval only: no LLM call, and no gate — an unrelated query still gets the ranking.
    search_url = f"{url}/v1/knowledge_bases/default/search"
    unrelated = httpx.post(search_url, json={"query": "quantum chromodynamics"})
    assert unrelated.status_code == 200 and unrelated.json()["data"]
    assert len(llm.calls) == asked


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("nosuchkb", {"query": "seats"}, 404, None),
        ("default", {"query": "   "}, 400, "query"),
        ("default", {"query": "seats", "k": 0}, 400, "k"),
        ("default", {"query": "seats", "k": 51}, 400, "k"),
        ("default", {"query": "x" * 2_001}, 400, "query"),
        ("default", {}, 400, "query"),
    ],
)
def test_bad_searches_are_refused(
    url: str, path: str, body: dict[str, Any], status: int, param: str | None
) -> None:
    error = _assert_error(httpx.post(f"{url}/v1/knowledge_bases/{path}/search", json=body), status)
    if param is not None:
        assert error["param"] == param, error


def test_web_ui_is_served_at_root(url: str) -> None:
    response = httpx.get(f"{url}/")
    assert response.status_code == 200 and "<html" in response.text.lower()


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "json_body"),
    [
        ("{not json", None),
        (None, {"messages": [{"role": "user", "content": "hi"}]}),  # no model
        (None, {"model": "kbqa"}),  # no messages
        (None, {"model": "kbqa", "messages": []}),
        (None, {"model": "kbqa", "messages": "hi"}),
        (None, {"model": "kbqa", "messages": [{"role": "wizard", "content": "hi"}]}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": 42}]}),
        (None, {"model": "kbqa", "messages": [{"role": "assistant", "content": "last is not a question"}]}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "   "}]}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "hi"}], "stream": "yes please"}),
        (None, {"model": "kbqa", "messages": [{"role": "user", "content": "x" * 2_001}]}),
        (None, [1, 2, 3]),
    ],
)
def test_malformed_chat_requests_are_400(url: str, content: str | None, json_body: Any) -> None:
    if content is not None:
        response = httpx.post(
            f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )
    else:
        response = httpx.post(f"{url}/v1/chat/completions", json=json_body)
    error = _assert_error(response, 400)
    assert error["type"] == "invalid_request_error"


def test_json_output_and_tools_are_refused_by_name_not_ignored(url: str) -> None:
    """A client asking for JSON or a tool call learns why it gets neither, instead of prose it cannot
    parse; what kbqa does anyway (text, no tools) is accepted as OpenAI clients send it."""
    error = _assert_error(_chat(url, response_format={"type": "json_object"}), 400)
    assert error["param"] == "response_format" and "json_object" in error["message"]
    assert "prose" in error["message"]
    error = _assert_error(_chat(url, tools=[{"type": "function", "function": {"name": "lookup"}}]), 400)
    assert error["param"] == "tools" and "tools are not supported" in error["message"]
    assert _assert_error(_chat(url, tool_choice="required"), 400)["param"] == "tool_choice"
    accepted = _chat(url, response_format={"type": "text"}, tools=[], tool_choice="none", max_tokens=8)
    assert accepted.status_code == 200, accepted.text


def test_unknown_model_and_unknown_knowledge_base_are_404(url: str) -> None:
    assert _assert_error(_chat(url, model="gpt-4o"), 404)["code"] == "model_not_found"
    assert _assert_error(_chat(url, model="kbqa:nosuchkb"), 404)["code"] == "knowledge_base_not_found"
    assert _assert_error(_chat(url, model="kbqa:nosuchkb", stream=True), 404)
    assert _assert_error(httpx.get(f"{url}/v1/nothing-here"), 404)
    assert _assert_error(httpx.get(f"{url}/v1/knowledge_bases/nosuchkb/documents"), 404)


def test_huge_request_body_is_refused(url: str) -> None:
    body = {"model": "kbqa", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    _assert_error(httpx.post(f"{url}/v1/chat/completions", json=body), 413)


def test_api_key_is_required_when_set(tmp_path: Path, embeddings: SentenceTransformerEmbeddings) -> None:
    settings = make_settings(tmp_path / "data", api_key="s3cret")
    app = create_app(
        settings,
        manage_llm=False,
        knowledge=KnowledgeBaseService(settings, embeddings=embeddings),
        llm=FakeLLM("ok"),
    )  # type: ignore[arg-type]
    with ServerThread(app, free_port()) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for method, path in (
                ("GET", "/v1/models"),
                ("GET", "/v1/knowledge_bases"),
                ("POST", "/v1/chat/completions"),
            ):
                response = httpx.request(method, f"{server.url}{path}", headers=headers, json={})
                assert _assert_error(response, 401)["code"] == "invalid_api_key"
        ok = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key
        # The web UI asks for the key as its sign-in password.
        assert httpx.get(f"{server.url}/config").status_code == 401
        with httpx.Client(base_url=server.url) as browser:
            wrong = browser.post("/login", data={"username": "me", "password": "guess"})
            assert wrong.status_code >= 400
            signed_in = browser.post("/login", data={"username": "me", "password": "s3cret"})
            assert signed_in.status_code == 200 and signed_in.json()["success"] is True
            assert browser.get("/config").status_code == 200


def test_unreachable_llm_is_a_quick_503(
    server: tuple[str, FakeLLM, KnowledgeBaseService], tmp_path: Path
) -> None:
    _, _, service = server
    settings = service.settings.model_copy(update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    app = create_app(settings, manage_llm=False, knowledge=service, llm=LLMProvider(settings))
    with ServerThread(app, free_port()) as down:
        for stream in (False, True):
            started = time.monotonic()
            error = _assert_error(_chat(down.url, stream=stream), 503)
            assert time.monotonic() - started < 10
            assert error["code"] == "backend_unavailable" and "not reachable" in error["message"]
        health = httpx.get(f"{down.url}/health").json()
        assert health["llm"]["reachable"] is False and health["chroma"]["reachable"] is True


# --- knowledge-base management ------------------------------------------------------------------
def test_upload_ingest_answer_delete(url: str) -> None:
    kb = "uploads-kb"
    created = httpx.post(f"{url}/v1/knowledge_bases", json={"name": kb})
    assert created.status_code == 201 and created.json()["chunks"] == 0
    _assert_error(httpx.post(f"{url}/v1/knowledge_bases", json={"name": kb}), 409)
    assert f"kbqa:{kb}" in [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]

    text = "The Orion meeting room is on floor 9 and seats 14 people."
    files = {"files": ("../../rooms.md", io.BytesIO(text.encode()), "text/markdown")}
    response = httpx.post(f"{url}/v1/knowledge_bases/{kb}/documents", files=files)
    assert response.status_code == 202, response.text
    job = wait_job(url, response.json())
    assert job["status"] == "succeeded" and job["progress"]["done"] == job["progress"]["total"] == 1
    assert job["progress"]["current"] is None and job["progress"]["chunks_embedded"] >= 1
    assert job["files"] == ["rooms.md"]  # the path was dropped: uploads stay in the KB's folder

    documents = httpx.get(f"{url}/v1/knowledge_bases/{kb}/documents").json()["data"]
    assert documents == [{"source": "rooms.md", "chunks": 1, "bytes": len(text), "origin": "upload"}]
    question = [{"role": "user", "content": "How many people does the Orion meeting room seat?"}]
    body = _chat(url, model=f"kbqa:{kb}", messages=question).json()
    assert body["sources"] and body["sources"][0]["snippet"] == text

    deleted = httpx.delete(f"{url}/v1/knowledge_bases/{kb}/documents/rooms.md")
    assert deleted.json() == {"deleted": True, "id": "rooms.md", "chunks": 1}
    _assert_error(httpx.delete(f"{url}/v1/knowledge_bases/{kb}/documents/rooms.md"), 404)
    assert httpx.get(f"{url}/v1/knowledge_bases/{kb}/documents").json()["data"] == []
    body = _chat(url, model=f"kbqa:{kb}", messages=question).json()
    assert body["sources"] == []

    assert httpx.delete(f"{url}/v1/knowledge_bases/{kb}").json() == {
        "deleted": True,
        "id": kb,
        "chunks": None,
    }
    _assert_error(httpx.delete(f"{url}/v1/knowledge_bases/{kb}"), 404)
    _assert_error(_chat(url, model=f"kbqa:{kb}"), 404)


def test_bad_uploads_are_refused(url: str, server: tuple[str, FakeLLM, KnowledgeBaseService]) -> None:
    kb_url = f"{url}/v1/knowledge_bases/default/documents"
    error = _assert_error(httpx.post(kb_url, files={"files": ("tool.exe", b"MZ")}), 400)
    assert "unsupported file type" in error["message"]
    _assert_error(httpx.post(kb_url, files={"files": (".hidden.md", b"x")}), 400)
    _assert_error(httpx.post(kb_url, data={"note": "no files"}), 400)
    _assert_error(
        httpx.post(f"{url}/v1/knowledge_bases/nosuchkb/documents", files={"files": ("a.md", b"x")}), 404
    )
    big = {"files": ("big.txt", b"x" * 300_000)}
    assert _assert_error(httpx.post(kb_url, files=big), 413)["code"] in (
        "upload_too_large",
        "request_too_large",
    )
    _assert_error(httpx.post(f"{url}/v1/knowledge_bases", json={"name": "../etc"}), 400)
    uploads = server[2].settings.uploads_dir / "default"
    assert not uploads.exists() or not any(uploads.iterdir())  # nothing half-written was kept


def test_uploads_survive_re_ingesting_the_folder(
    server: tuple[str, FakeLLM, KnowledgeBaseService], tmp_path: Path
) -> None:
    url, _, service = server
    kb = "mixed-kb"
    httpx.post(f"{url}/v1/knowledge_bases", json={"name": kb}).raise_for_status()
    job = httpx.post(
        f"{url}/v1/knowledge_bases/{kb}/documents", files={"files": ("up.txt", b"uploaded fact")}
    )
    assert wait_job(url, job.json())["status"] == "succeeded"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("folder fact", encoding="utf-8")
    (folder / "up.txt").write_text("the folder's own up.txt", encoding="utf-8")
    summary = service.ingestor.ingest_folder(folder, kb, progress=False)
    assert summary.deleted == []
    # Uploads and the folder share one name space: neither replaces the other's document.
    assert summary.added == ["a.txt"] and [source for source, _ in summary.failed] == ["up.txt"]
    documents = httpx.get(f"{url}/v1/knowledge_bases/{kb}/documents").json()["data"]
    origins = {(doc["source"], doc["origin"]) for doc in documents}
    assert origins == {("up.txt", "upload"), ("a.txt", "folder")}
    clash = httpx.post(f"{url}/v1/knowledge_bases/{kb}/documents", files={"files": ("a.txt", b"replaced")})
    error = _assert_error(clash, 409)
    assert error["code"] == "document_exists" and "'a.txt'" in error["message"]
    assert not (service.settings.uploads_dir / kb / "a.txt").exists()
    again = httpx.post(f"{url}/v1/knowledge_bases/{kb}/documents", files={"files": ("up.txt", b"new fact")})
    assert wait_job(url, again.json())["summary"]["updated"] == 1  # an upload may replace an upload
    httpx.delete(f"{url}/v1/knowledge_bases/{kb}").raise_for_status()


def test_an_upload_that_cannot_be_ingested_is_not_kept(
    server: tuple[str, FakeLLM, KnowledgeBaseService],
) -> None:
    """A file the job reports as failed is in no document list, so no delete could reach it."""
    url, _, service = server
    kb = "failed-uploads-kb"
    httpx.post(f"{url}/v1/knowledge_bases", json={"name": kb}).raise_for_status()
    files = [
        ("files", (name, content))
        for name, content in [("empty.md", b""), ("broken.pdf", b"%PDF-1.4 no"), ("ok.md", b"ok")]
    ]
    job = wait_job(url, httpx.post(f"{url}/v1/knowledge_bases/{kb}/documents", files=files).json())
    assert sorted(failure["source"] for failure in job["summary"]["failed"]) == ["broken.pdf", "empty.md"]
    assert sorted(path.name for path in (service.settings.uploads_dir / kb).iterdir()) == ["ok.md"]
    httpx.delete(f"{url}/v1/knowledge_bases/{kb}").raise_for_status()


def test_llm_lost_mid_stream_ends_with_an_error_event(
    server: tuple[str, FakeLLM, KnowledgeBaseService],
) -> None:
    _, _, service = server
    app = create_app(service.settings, manage_llm=False, knowledge=service, llm=BrokenStreamLLM())  # type: ignore[arg-type]
    with ServerThread(app, free_port()) as broken:
        started = time.monotonic()
        response = _chat(broken.url, stream=True)
        assert response.status_code == 200 and time.monotonic() - started < 30
        events = _sse_events(response)
        assert "[DONE]" not in events
        assert events[-1]["error"]["type"] == "service_unavailable"
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e.get("choices"))
        assert text.startswith("The shuttle bus")
        # The official client raises on the error event instead of hanging or returning half an answer.
        from openai import APIError, OpenAI

        client = OpenAI(base_url=f"{broken.url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="kbqa",
            messages=[{"role": "user", "content": "How many seats has the shuttle bus?"}],
            stream=True,
        )
        with pytest.raises(APIError):
            list(stream)
        assert httpx.get(f"{broken.url}/health").status_code == 200  # and the app keeps serving


def test_a_knowledge_base_deleted_while_a_request_reads_it_is_404() -> None:
    """Chroma's own NotFoundError (a collection deleted between opening and reading it) is the same
    404 as an unknown knowledge base, not a 500."""
    from chromadb.errors import NotFoundError

    from rag.api import _as_api_error

    error = _as_api_error(NotFoundError("Collection [1234] does not exist."))
    assert (error.status, error.code) == (404, "knowledge_base_not_found")


def test_a_whole_answer_is_cancelled_when_its_client_goes_away() -> None:
    """A non-streamed request whose client gave up must not keep the LLM generating."""
    import asyncio

    from rag.api import ApiError, unless_disconnected

    class GoneClient:
        async def is_disconnected(self) -> bool:
            return True

    class WaitingClient:
        async def is_disconnected(self) -> bool:
            return False

    async def main() -> tuple[bool, str]:
        cancelled = asyncio.Event()

        async def answer() -> str:
            try:
                await asyncio.sleep(60)  # an LLM still generating
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        with pytest.raises(ApiError):
            await unless_disconnected(GoneClient(), answer())  # type: ignore[arg-type]
        await asyncio.sleep(0)
        done = await unless_disconnected(WaitingClient(), asyncio.sleep(0.01, result="whole"))  # type: ignore[arg-type]
        return cancelled.is_set(), done

    assert asyncio.run(main()) == (True, "whole")
