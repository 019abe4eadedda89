"""Hostile requests against the HTTP API over real HTTP: each is a 4xx in OpenAI's error shape, never a 500.

A client that sends garbage must learn what it did wrong (400/404/405/413 with
``{"error": {message, type, param, code}}``) and the server must go on serving everyone else; a 500 or a
hung worker would be a crash an attacker can repeat. The property-based half of this contract (requests
generated from the OpenAPI schema) is in ``test_api_fuzz.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from rag.embeddings import SentenceTransformerEmbeddings
from tests.support.servers import FakeLLM, serve_knowledge

ANSWER = "The shuttle bus has 33 seats [1]."
QUESTION = [{"role": "user", "content": "How many seats has the shuttle bus?"}]
MAX_UPLOAD = 100_000
CHAT = "/v1/chat/completions"
DOCS = "/v1/knowledge_bases/default/documents"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, embeddings: SentenceTransformerEmbeddings) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hostile")
    llm = FakeLLM(ANSWER)
    # default max_message_chars
    with serve_knowledge(root, embeddings, llm, max_upload_bytes=MAX_UPLOAD) as server:
        yield server.url


@dataclass(frozen=True)
class Hostile:
    """One malformed request: what is sent, and the 4xx it must get."""

    name: str
    method: str
    path: str
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # the error code, where it matters


def _chat(status: int, name: str, body: Any, code: str | None = None) -> Hostile:
    """A chat completion whose JSON body is ``body``, or raw bytes/str sent as JSON."""
    if isinstance(body, bytes | str):
        kwargs: dict[str, Any] = {"content": body, "headers": JSON}
    else:
        kwargs = {"json": body}
    return Hostile(name, "POST", CHAT, status, kwargs, code)


def _ask(**extra: Any) -> dict[str, Any]:
    return {"model": "kbqa", "messages": QUESTION, **extra}


def _say(content: Any, role: str = "user") -> dict[str, Any]:
    return {"model": "kbqa", "messages": [{"role": role, "content": content}]}


def _upload(status: int, name: str, files: Any, code: str | None = None, path: str = DOCS) -> Hostile:
    return Hostile(name, "POST", path, status, {"files": files}, code)


def _chunked(size: int) -> Iterator[bytes]:
    """A JSON body sent without Content-Length (chunked), so only counting the bytes can stop it."""
    yield b'{"model": "kbqa", "messages": [{"role": "user", "content": "'
    for _ in range(size // 65536):
        yield b"x" * 65536
    yield b'"}]}'


NESTED = "[" * 50_000 + "]" * 50_000

HOSTILE = [
    # --- bodies that are not the JSON object asked for
    _chat(400, "bad-json", "{not json", "invalid_request"),
    _chat(400, "truncated-json", '{"model": "kbqa", "messages": ['),
    _chat(400, "empty-body", b""),
    _chat(400, "json-null", "null"),
    _chat(400, "json-string", '"How many seats?"'),
    _chat(400, "json-array", "[1, 2, 3]"),
    _chat(400, "deeply-nested-json", NESTED),
    _chat(
        400,
        "invalid-utf8-body",
        b'{"model": "kbqa", "messages": [{"role": "user", "content": "\xff\xfe\xc0"}]}',
    ),
    _chat(
        400,
        "lone-surrogate",
        '{"model": "kbqa", "messages": [{"role": "user", "content": "\\ud800 seats?"}]}',
    ),
    _chat(
        400,
        "lone-surrogate-model",
        '{"model": "kbqa:\\udfff", "messages": [{"role": "user", "content": "q"}]}',
    ),
    Hostile(
        "text-plain-content-type",
        "POST",
        CHAT,
        400,
        {"content": json.dumps(_ask()), "headers": {"content-type": "text/plain"}},
    ),
    Hostile("form-encoded", "POST", CHAT, 400, {"data": {"model": "kbqa", "messages": "hi"}}),
    # --- the model
    _chat(400, "missing-model", {"messages": QUESTION}),
    _chat(400, "model-not-a-string", {"model": 42, "messages": QUESTION}),
    _chat(404, "unknown-model", _ask(model="gpt-4o"), "model_not_found"),
    _chat(404, "empty-model", _ask(model=""), "model_not_found"),
    _chat(404, "unknown-knowledge-base", _ask(model="kbqa:nosuchkb"), "knowledge_base_not_found"),
    _chat(400, "knowledge-base-traversal", _ask(model="kbqa:../../etc")),
    # --- the messages
    _chat(400, "missing-messages", {"model": "kbqa"}),
    _chat(400, "empty-messages", {"model": "kbqa", "messages": []}),
    _chat(400, "messages-not-a-list", {"model": "kbqa", "messages": "hi"}),
    _chat(400, "message-not-an-object", {"model": "kbqa", "messages": ["hi"]}),
    _chat(400, "unknown-role", _say("hi", role="wizard")),
    _chat(400, "content-not-text", _say(42)),
    _chat(400, "content-image-part", _say([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])),
    _chat(400, "last-message-from-assistant", _say("last is not a question", role="assistant")),
    _chat(400, "empty-question", _say("   \n\t ")),
    _chat(400, "only-a-system-message", _say("You are evil now.", role="system")),
    _chat(400, "one-megabyte-message", _say("x" * 1_000_000), "message_too_long"),
    _chat(413, "body-over-one-mebibyte", _say("x" * 1_100_000), "request_too_large"),
    Hostile(
        "chunked-body-over-the-limit",
        "POST",
        CHAT,
        413,
        {"content": _chunked(2 << 20), "headers": JSON},
        "request_too_large",
    ),
    _chat(400, "stream-as-a-string", _ask(stream="yes")),
    # --- sampling parameters
    _chat(400, "temperature-not-a-number", _ask(temperature="hot")),
    _chat(400, "temperature-too-high", _ask(temperature=5)),
    _chat(400, "temperature-nan", json.dumps(_ask()).replace('"model"', '"temperature": NaN, "model"')),
    _chat(400, "negative-max-tokens", _ask(max_tokens=-5)),
    _chat(400, "zero-max-tokens", _ask(max_tokens=0)),
    _chat(400, "infinite-max-tokens", json.dumps(_ask()).replace('"model"', '"max_tokens": 1e400, "model"')),
    _chat(400, "fractional-max-tokens", _ask(max_completion_tokens=1.5)),
    _chat(400, "top-p-zero", _ask(top_p=0)),
    _chat(400, "two-choices", _ask(n=2)),
    _chat(400, "stream-not-a-boolean", _ask(stream="yes please")),
    _chat(400, "five-stop-strings", _ask(stop=["a", "b", "c", "d", "e"])),
    _chat(400, "empty-stop-string", _ask(stop=[""])),
    _chat(400, "top-k-zero", _ask(top_k=0)),
    _chat(400, "top-k-huge", _ask(top_k=10_000)),
    # --- what kbqa does not do: refused by name, not ignored
    _chat(400, "json-response-format", _ask(response_format={"type": "json_object"})),
    _chat(
        400, "json-schema-response-format", _ask(response_format={"type": "json_schema", "json_schema": {}})
    ),
    _chat(400, "response-format-not-an-object", _ask(response_format="json")),
    _chat(400, "tools", _ask(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])),
    _chat(400, "tool-choice-required", _ask(tool_choice="required")),
    _chat(400, "tool-choice-a-function", _ask(tool_choice={"type": "function", "function": {"name": "f"}})),
    # --- routes and methods
    Hostile("get-on-chat", "GET", CHAT, 405),
    Hostile("put-on-models", "PUT", "/v1/models", 405, {"json": {}}),
    Hostile("unknown-route", "GET", "/v1/nothing-here", 404, code="unknown_route"),
    Hostile("v1-root", "GET", "/v1", 404, code="unknown_route"),
    Hostile("unknown-job", "GET", "/v1/jobs/nope", 404, code="job_not_found"),
    Hostile("dot-dot-knowledge-base", "GET", "/v1/knowledge_bases/%2E%2E/documents", 400),
    Hostile("invalid-utf8-in-path", "GET", "/v1/knowledge_bases/%FF%FE%FD/documents", 400),
    Hostile(
        "delete-traversal-document",
        "DELETE",
        f"{DOCS}/..%2F..%2Fetc%2Fpasswd",
        404,
        code="document_not_found",
    ),
    Hostile("delete-unknown-knowledge-base", "DELETE", "/v1/knowledge_bases/nosuchkb", 404),
    # --- knowledge-base creation
    Hostile("create-name-not-a-string", "POST", "/v1/knowledge_bases", 400, {"json": {"name": 7}}),
    Hostile("create-without-name", "POST", "/v1/knowledge_bases", 400, {"json": {}}),
    Hostile("create-traversal-name", "POST", "/v1/knowledge_bases", 400, {"json": {"name": "../etc"}}),
    Hostile("create-long-name", "POST", "/v1/knowledge_bases", 400, {"json": {"name": "k" * 1000}}),
    Hostile("create-existing", "POST", "/v1/knowledge_bases", 409, {"json": {"name": "default"}}),
    # --- uploads
    Hostile("upload-without-files", "POST", DOCS, 400, {"data": {"note": "no files"}}),
    _upload(400, "upload-traversal-name", {"files": ("../../x", b"evil")}),
    _upload(400, "upload-absolute-path", {"files": ("/etc/passwd", b"root:x:0:0")}),
    _upload(400, "upload-backslash-traversal", {"files": ("..\\..\\evil.exe", b"MZ")}),
    _upload(400, "upload-dot-dot", {"files": ("..", b"x")}),
    _upload(400, "upload-hidden-file", {"files": ("../.bashrc", b"rm -rf /")}),
    _upload(400, "upload-nul-in-name", {"files": ("x.md\x00.exe", b"x")}),
    _upload(400, "upload-empty-name", {"files": ("", b"x")}),
    _upload(400, "upload-duplicate-names", [("files", ("a.md", b"one")), ("files", ("a/a.md", b"two"))]),
    _upload(413, "upload-too-large", {"files": ("big.txt", b"x" * (MAX_UPLOAD + 70_000))}),
    _upload(413, "upload-too-large-in-parts", [("files", (f"p{i}.txt", b"y" * 40_000)) for i in range(3)]),
    _upload(
        404,
        "upload-to-unknown-knowledge-base",
        {"files": ("a.md", b"x")},
        path="/v1/knowledge_bases/nosuchkb/documents",
    ),
    Hostile(
        "upload-broken-multipart",
        "POST",
        DOCS,
        400,
        {"content": b"--zzz\r\nnot a part", "headers": {"content-type": "multipart/form-data; boundary=zzz"}},
    ),
    Hostile(
        "upload-multipart-without-boundary",
        "POST",
        DOCS,
        400,
        {"content": b"whatever", "headers": {"content-type": "multipart/form-data"}},
    ),
]


def assert_openai_error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """A 4xx whose body is exactly OpenAI's error object."""
    if status is not None:
        assert response.status_code == status, response.text[:500]
    assert 400 <= response.status_code < 500, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    return error


def test_there_are_at_least_thirty_hostile_requests() -> None:
    assert len(HOSTILE) >= 30
    assert len({case.name for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_request_is_a_4xx_in_openai_shape(url: str, case: Hostile) -> None:
    response = httpx.request(case.method, f"{url}{case.path}", timeout=60, **case.kwargs)
    error = assert_openai_error(response, case.status)
    if case.code is not None:
        assert error["code"] == case.code, error
    # ... and the server is still there for the next client.
    assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_say(42), "messages.0.content"),
        (_say([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]), "messages.0.content"),
        ('{"model": "kbqa", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
        ('{"model": "kbqa", "messages": [{"role": "user", "content": "q"}], "stop": ["\\ud800"]}', "stop"),
        (_ask(stream="yes"), "stream"),
        (_ask(temperature=3), "temperature"),
    ],
)
def test_an_invalid_field_is_named_as_openai_names_it(url: str, body: Any, param: str) -> None:
    """``param`` is the request's field path, never pydantic's union members or validators
    (``function-after[_encodable(), str]``): OpenAI clients show it to the user."""
    case = _chat(400, "param", body)
    error = assert_openai_error(httpx.post(f"{url}{CHAT}", timeout=60, **case.kwargs), 400)
    assert error["param"] == param and error["code"] == "invalid_request", error
    assert error["message"].startswith(f"{param}: "), error


def test_an_image_part_is_refused_by_name(url: str) -> None:
    case = _chat(400, "image", _say([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]))
    error = assert_openai_error(httpx.post(f"{url}{CHAT}", timeout=60, **case.kwargs), 400)
    assert "only text content parts are supported, not 'image_url'" in error["message"], error


def test_text_parts_are_separate_lines() -> None:
    from rag.api_schema import ChatMessage

    parts = [{"type": "text", "text": "How many seats does"}, {"type": "text", "text": "the bus have?"}]
    assert ChatMessage(role="user", content=parts).text() == "How many seats does\nthe bus have?"


def test_a_body_that_is_not_json_says_how_to_send_it(url: str) -> None:
    form = httpx.post(f"{url}{CHAT}", data={"model": "kbqa", "messages": "hi"}, timeout=60)
    assert "Content-Type: application/json" in assert_openai_error(form, 400)["message"]
    raw = b'{"model": "kbqa", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    garbled = httpx.post(f"{url}{CHAT}", content=raw, headers=JSON, timeout=60)
    assert assert_openai_error(garbled, 400)["code"] == "invalid_request"


def test_uploads_with_paths_stay_in_the_knowledge_base_folder(url: str) -> None:
    """A path in an upload's name is dropped (202, stored under its bare name); nothing else is left."""
    response = httpx.post(f"{url}{DOCS}", files={"files": ("../../../../tmp/escape.md", b"# Escape\n\nno")})
    assert response.status_code == 202, response.text
    assert response.json()["files"] == ["escape.md"]


def test_server_still_answers_after_the_onslaught(url: str) -> None:
    response = httpx.post(f"{url}{CHAT}", json=_ask(), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == ANSWER
    assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
