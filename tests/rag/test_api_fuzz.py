"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis), over real HTTP.

Every operation the schema documents gets requests generated from it, valid ones (positive mode) and
ones that break it on purpose (negative mode: wrong types, missing fields, out-of-range numbers,
junk in paths and query strings). The contract: never a 5xx, and every 4xx in OpenAI's error shape, so
no input a client can send crashes the server or leaves an OpenAI client without a usable error.
Operations come from ``/openapi.json``, so a route added later is fuzzed without touching this file.

The run is bounded (``EXAMPLES`` per operation and mode, no shrinking) and deterministic
(``derandomize``: the same cases every run, no example database), so it is a regression test, not a
lottery; on this 2-core machine it takes about a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from rag.embeddings import SentenceTransformerEmbeddings
from tests.support.servers import FakeLLM, serve_knowledge

EXAMPLES = 25  # per operation and generation mode
# Headers that frame the HTTP message itself: a malformed one ("content-length: S6@N4f49", which
# negative mode generates) is refused by uvicorn's HTTP parser before any application code runs, with
# its own plain-text 400, so it tests the HTTP library, not kbqa.
FRAMING_HEADERS = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, embeddings: SentenceTransformerEmbeddings) -> Iterator[str]:
    with serve_knowledge(
        tmp_path_factory.mktemp("fuzz"),
        embeddings,
        FakeLLM("The shuttle bus has 33 seats [1]."),
        empty_kbs=["fuzz-kb"],
        max_upload_bytes=20_000,
        max_message_chars=4_000,
    ) as server:
        yield server.url


def _violation(status: int, body: bytes) -> str | None:
    """What is wrong with a response, or None: no 5xx, and a 4xx carries exactly OpenAI's error object."""
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without OpenAI's error shape: {body[:300]!r}"
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"{status} error object has keys {sorted(error) if isinstance(error, dict) else error!r}"
    if not (isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)):
        return f"{status} error without message or type: {error!r}"
    return None


def _steer(case: Any, name: str | None, question: str) -> Any:
    """Point a valid case at things that exist, some of the time.

    Random model and knowledge-base names are all 404s and random conversations rarely end with a
    question, which would leave the chat pipeline (embedder, retrieval, LLM, SSE) and the document
    routes unfuzzed; with ``name`` drawn from real ones and a generated question appended, the rest of
    the case still varies.
    """
    if name is None:
        return case
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "kbqa" if name == "default" else f"kbqa:{name}"
        if isinstance(case.body.get("messages"), list):
            case.body["messages"].append({"role": "user", "content": question})
    if case.path_parameters and "kb" in case.path_parameters:
        case.path_parameters["kb"] = name
    return case


def _fuzz(operation: Any, mode: GenerationMode, base_url: str) -> str | None:
    """Run the generated cases of one operation; the first violation, with a curl line to replay it."""
    found: list[str] = []
    cases = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        names = st.sampled_from([None, "default", "fuzz-kb"])
        cases = st.tuples(cases, names, st.text(min_size=1, max_size=300)).map(lambda drawn: _steer(*drawn))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time; the curl line replays it
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        if case.headers:
            case.headers = {
                name: value for name, value in case.headers.items() if name.lower() not in FRAMING_HEADERS
            }
        response = case.call(base_url=base_url, timeout=60)
        problem = _violation(response.status_code, response.content)
        if problem and not found:
            found.append(f"{problem}\n    {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:  # nothing to break: negative mode on an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE, operation.label
    return found[0] if found else None


def test_schema_generated_requests_never_crash_the_server(url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    # Destructive operations last, so chat and uploads are fuzzed against a knowledge base that exists.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    problems = [
        f"{operation.label} [{mode.value}]: {problem}"
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (problem := _fuzz(operation, mode, url))
    ]
    assert not problems, "\n".join(problems)
    assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"  # and it still serves
