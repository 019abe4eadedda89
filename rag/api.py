"""The HTTP API: OpenAI-compatible chat over knowledge bases, and knowledge-base management.

Routes only translate HTTP to calls on ``rag.chat.ChatService`` / ``rag.service.KnowledgeBaseService``
and their results back. Every error leaves in OpenAI's shape (``{"error": {message, type, param,
code}}``) with a status that says whose fault it is, so OpenAI clients raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Annotated, Any, TypeVar

from chromadb.errors import NotFoundError as ChromaNotFoundError
from fastapi import APIRouter, Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api_schema import (
    ChatCompletion,
    ChatCompletionRequest,
    Deleted,
    DocumentList,
    ErrorResponse,
    Health,
    IngestJobInfo,
    JobList,
    KnowledgeBase,
    KnowledgeBaseCreate,
    KnowledgeBaseList,
    ModelCard,
    ModelList,
    SearchRequest,
    SearchResults,
)
from rag.chat import AnswerDelta, ChatEvent, ChatParams, ChatService, SourcesFound, TurnFinished
from rag.config import Settings
from rag.embeddings import EmbeddingModelError
from rag.llm import ContextLengthError, LLMRequestError, LLMUnavailableError
from rag.locking import KnowledgeBaseBusyError
from rag.service import (
    DocumentNotFoundError,
    KnowledgeBaseService,
    UploadConflictError,
    UploadError,
    UploadTooLargeError,
)
from rag.store import (
    EmbeddingMismatchError,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    StoreError,
    StoreUnavailableError,
)

MODEL_PREFIX = "kbqa"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    503: "service_unavailable",
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in _STATUS_TYPES
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kind = _STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error_response(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def _as_api_error(error: Exception) -> ApiError:
    """The one table from service errors to HTTP statuses."""
    match error:
        case ApiError():
            return error
        case KnowledgeBaseNotFoundError():
            return ApiError(404, str(error), code="knowledge_base_not_found")
        case ChromaNotFoundError():  # a collection deleted while a request was reading it
            message = f"the knowledge base does not exist (it was deleted): {error}"
            return ApiError(404, message, code="knowledge_base_not_found")
        case DocumentNotFoundError():
            return ApiError(404, str(error), code="document_not_found")
        case KnowledgeBaseExistsError():
            return ApiError(409, str(error), code="knowledge_base_exists")
        case UploadConflictError():
            return ApiError(409, str(error), code="document_exists")
        case UploadTooLargeError():
            return ApiError(413, str(error), code="upload_too_large")
        case LLMUnavailableError() | StoreUnavailableError():
            return ApiError(503, str(error), code="backend_unavailable")
        case EmbeddingMismatchError():
            return ApiError(409, str(error), code="embedding_mismatch")
        case KnowledgeBaseBusyError():
            return ApiError(409, str(error), code="knowledge_base_busy")
        case EmbeddingModelError():
            return ApiError(503, str(error), code="embedding_model_unavailable")
        case ContextLengthError():  # OpenAI's code and param for a prompt that does not fit
            return ApiError(400, str(error), code="context_length_exceeded", param="messages")
        case LLMRequestError() | UploadError() | ValueError():
            return ApiError(400, str(error), code="invalid_request")
    return ApiError(500, f"internal error: {type(error).__name__}", code="internal_error")


def knowledge_base_of(model: str, default_kb: str) -> str:
    """``kbqa`` → the default knowledge base; ``kbqa:NAME`` → NAME."""
    if model == MODEL_PREFIX:
        return default_kb
    prefix, _, name = model.partition(":")
    if prefix == MODEL_PREFIX and name:
        return name
    raise ApiError(
        404,
        f"model {model!r} does not exist: use 'kbqa' (default knowledge base) or 'kbqa:NAME' "
        "(see GET /v1/models)",
        code="model_not_found",
        param="model",
    )


_FIELD_NAME = re.compile(r"[A-Za-z_]\w*|\d+")


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    """The first problem, named by its field's path (``messages.0.content``) as OpenAI names ``param``.

    Pydantic's location also holds the union member or validator tried (``str``,
    ``function-after[_encodable(), str]``); those are its internals, not the request's fields.
    """
    first = error.errors()[0] if error.errors() else {}
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "model_attributes_type" and tuple(first.get("loc", ())) == ("body",):
        return "the request body must be a JSON object (send it with Content-Type: application/json)", None
    loc = tuple(first.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]  # where the field was sent, not part of its name (a body field may be "query")
    location = [
        str(part)
        for part in loc
        if _FIELD_NAME.fullmatch(str(part))
        and str(part) not in ("str", "list", "int", "float", "bool", "dict", "none")
    ]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    return (f"{param}: {message}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return _error_response(400, message, "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = getattr(error, "code", None)  # set by _BodyTooLarge
        if code is None and error.status_code == 400:  # a body FastAPI could not parse at all
            code = "invalid_request"
        return _error_response(error.status_code, str(error.detail), code, None, error.headers)

    async def _service(_: Request, error: Exception) -> JSONResponse:
        api_error = _as_api_error(error)
        return _error_response(
            api_error.status, api_error.message, api_error.code, api_error.param, api_error.headers
        )

    # Expected failures get their own handlers: Starlette re-raises (and logs as a crash) whatever
    # only the catch-all ``Exception`` handler answers, which must stay for genuine bugs.
    expected_errors = (
        ApiError,
        StoreError,
        ChromaNotFoundError,
        LLMUnavailableError,
        EmbeddingModelError,
        ValueError,
    )
    for expected in (*expected_errors, Exception):
        app.add_exception_handler(expected, _service)


_BEARER = HTTPBearer(auto_error=False, description="KBQA_API_KEY, when the server sets one")


def _auth_dependency(settings: Settings) -> Any:
    async def require_key(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> None:
        if not settings.api_key:
            return
        given = credentials.credentials if credentials else request.headers.get("x-api-key", "")
        if not secrets.compare_digest(given.encode(), settings.api_key.encode()):
            message = "missing or wrong API key (send 'Authorization: Bearer KEY')"
            raise ApiError(401, message, code="invalid_api_key")

    return require_key


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def _public_sources(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "index": source["index"],
            "source": source["source"],
            "page": source["page"],
            "section": source.get("section"),
            "snippet": source["text"],
            "score": None if source["score"] is None else round(float(source["score"]), 6),
        }
        for source in sources
    ]


def build_api(settings: Settings, knowledge: KnowledgeBaseService, chat: ChatService) -> FastAPI:
    app = FastAPI(
        title="kbqa",
        description="Answers from your documents, with citations. OpenAI-compatible chat under /v1.",
        version="0.1.0",
    )
    install_error_handlers(app)
    auth = Depends(_auth_dependency(settings))
    v1 = APIRouter(prefix="/v1", dependencies=[auth], responses=_ERROR_RESPONSES)

    @app.get("/health", response_model=Health, tags=["health"])
    async def health() -> dict[str, Any]:
        """Always 200 while the app serves; the body says whether Chroma and the LLM answer."""

        def chroma() -> dict[str, Any]:
            try:
                knowledge.client.heartbeat()
                return {"reachable": True}
            except Exception as error:
                return {"reachable": False, "error": str(error)}

        def llm() -> dict[str, Any]:
            try:
                return {"reachable": True, "url": chat.llm.base_url, "model": chat.llm.check()}
            except LLMUnavailableError as error:
                return {"reachable": False, "url": chat.llm.base_url, "error": str(error)}

        chroma_state, llm_state = await asyncio.gather(asyncio.to_thread(chroma), asyncio.to_thread(llm))
        return {"status": "ok", "chroma": chroma_state, "llm": llm_state}

    async def model_ids() -> list[str]:
        names = await asyncio.to_thread(knowledge.knowledge_base_names)
        ids = [MODEL_PREFIX] if settings.default_kb in names else []
        return ids + [f"{MODEL_PREFIX}:{name}" for name in names]

    def model_card(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "kbqa"}

    @v1.get("/models", response_model=ModelList, tags=["openai"])
    async def models() -> dict[str, Any]:
        """Each knowledge base is a model `kbqa:NAME`; `kbqa` is the default one."""
        return {"object": "list", "data": [model_card(model_id) for model_id in await model_ids()]}

    @v1.get("/models/{model_id}", response_model=ModelCard, tags=["openai"])
    async def model(model_id: str) -> dict[str, Any]:
        """One model of the list, as OpenAI's `models.retrieve` asks for it (404 when it is not listed)."""
        if model_id not in await model_ids():
            knowledge_base_of(model_id, settings.default_kb)  # 404 model_not_found for a foreign name
            message = f"model {model_id!r} does not exist (see GET /v1/models)"
            raise ApiError(404, message, code="model_not_found", param="model")
        return model_card(model_id)

    @v1.post(
        "/chat/completions",
        response_model=ChatCompletion,
        tags=["openai"],
        responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"}},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """OpenAI's chat completions; the cited passages come back in the extra field `sources`."""
        kb = knowledge_base_of(body.model, settings.default_kb)
        messages = [(message.role, message.text()) for message in body.messages]
        if any(len(text) > settings.max_message_chars for _, text in messages):
            limit = settings.max_message_chars
            message = f"a message is longer than {limit} characters"
            raise ApiError(400, message, code="message_too_long", param="messages")
        params = ChatParams(
            temperature=body.temperature,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            top_p=body.top_p,
            stop=body.stop,  # type: ignore[arg-type]  # the validator made it a list
            top_k=body.top_k,
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        events = chat.stream(kb, messages, params)
        if not body.stream:
            return await unless_disconnected(request, _complete(events, completion_id, created, body.model))
        # Run until the first answer token (or the end) before answering, so that an unknown
        # knowledge base or an unreachable LLM is a proper 404/503 rather than a broken stream.
        head: list[ChatEvent] = []
        async for event in events:
            head.append(event)
            if isinstance(event, AnswerDelta | TurnFinished):
                break
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _stream(head, events, completion_id, created, body.model, include_usage)
        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    # --- knowledge-base management -------------------------------------------------------------
    @v1.get("/knowledge_bases", response_model=KnowledgeBaseList, tags=["knowledge bases"])
    async def list_knowledge_bases() -> dict[str, Any]:
        return {"object": "list", "data": await asyncio.to_thread(knowledge.stats)}

    @v1.post("/knowledge_bases", response_model=KnowledgeBase, status_code=201, tags=["knowledge bases"])
    async def create_knowledge_base(body: KnowledgeBaseCreate) -> dict[str, Any]:
        return await asyncio.to_thread(knowledge.create_knowledge_base, body.name)

    @v1.delete("/knowledge_bases/{kb}", response_model=Deleted, tags=["knowledge bases"])
    async def delete_knowledge_base(kb: str) -> dict[str, Any]:
        """The knowledge base, its chunks and its uploaded files."""
        await asyncio.to_thread(knowledge.delete_knowledge_base, kb)
        return {"deleted": True, "id": kb}

    @v1.get("/knowledge_bases/{kb}/documents", response_model=DocumentList, tags=["knowledge bases"])
    async def list_documents(kb: str) -> dict[str, Any]:
        return {"object": "list", "data": await asyncio.to_thread(knowledge.list_documents, kb)}

    kb_tags: list[str | Any] = ["knowledge bases"]

    @v1.post("/knowledge_bases/{kb}/documents", response_model=IngestJobInfo, status_code=202, tags=kb_tags)
    async def upload_documents(kb: str, files: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
        """Store the files and ingest them in the background; poll the returned job."""
        job = await asyncio.to_thread(knowledge.upload, kb, [(file.filename, file.file) for file in files])
        return job.as_dict()

    @v1.delete("/knowledge_bases/{kb}/documents/{source:path}", response_model=Deleted, tags=kb_tags)
    async def delete_document(kb: str, source: str) -> dict[str, Any]:
        """The document's chunks go with it (an uploaded file is removed too)."""
        chunks = await asyncio.to_thread(knowledge.delete_document, kb, source)
        return {"deleted": True, "id": source, "chunks": chunks}

    @v1.post("/knowledge_bases/{kb}/search", response_model=SearchResults, tags=kb_tags)
    async def search(kb: str, body: SearchRequest) -> dict[str, Any]:
        """Retrieval only, as `python -m rag query` prints it: the best chunks for a query, best first.

        No LLM and no relevance gate, so a caller that feeds its own model (or an agent's tool)
        gets the ranking with its scores and decides itself what is relevant enough.
        """
        if not body.query.strip():
            raise ApiError(400, "query: must not be blank", code="invalid_request", param="query")
        if len(body.query) > settings.max_message_chars:
            message = f"the query is longer than {settings.max_message_chars} characters"
            raise ApiError(400, message, code="message_too_long", param="query")
        hits = await asyncio.to_thread(knowledge.search, kb, body.query, k=body.k)
        return {"object": "list", "data": hits}

    @v1.get("/jobs", response_model=JobList, tags=["knowledge bases"])
    async def list_jobs(kb: str | None = None) -> dict[str, Any]:
        return {"object": "list", "data": [job.as_dict() for job in knowledge.jobs.list(kb)]}

    @v1.get("/jobs/{job_id}", response_model=IngestJobInfo, tags=["knowledge bases"])
    async def get_job(job_id: str) -> dict[str, Any]:
        job = knowledge.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no ingestion job {job_id!r}", code="job_not_found")
        return job.as_dict()

    # Without these, a path under /v1 that no route takes falls through to the web UI mounted at "/"
    # and comes back in Gradio's error shape instead of OpenAI's.
    @v1.api_route("", methods=_ALL_METHODS, include_in_schema=False)
    @v1.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
    async def unknown_route(request: Request) -> None:
        path = request.url.path
        allowed = sorted(
            {
                method
                for route in v1.routes
                if isinstance(route, APIRoute) and route.endpoint is not unknown_route
                if route.path_regex.match(path)
                for method in route.methods
            }
        )
        if allowed:
            message = f"{request.method} is not allowed on {path}; use {', '.join(allowed)}"
            raise ApiError(405, message, code="method_not_allowed", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no route {path}", code="unknown_route")

    app.include_router(v1)
    app.add_middleware(_BodyLimit, settings=settings)
    return app


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` while a body is read: FastAPI re-raises HTTP exceptions met there, so it
    reaches the error handlers and leaves as an OpenAI-shaped 413 instead of "error parsing the body"."""

    code = "request_too_large"


class _BodyLimit:
    """Caps request bodies under /v1: by Content-Length before anything is read, and by counting the
    bytes of a body sent without one (chunked), which would otherwise be read whole into memory.

    Uploads may be ``max_upload_bytes`` plus room for multipart framing; JSON bodies a conversation of
    messages at their longest, in UTF-8, with room.
    """

    _MULTIPART_SLACK = 64 * 1024

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.upload_limit = settings.max_upload_bytes + self._MULTIPART_SLACK
        self.json_limit = max(1 << 20, 16 * settings.max_message_chars)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        allowed = self.upload_limit if path.endswith("/documents") else self.json_limit
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > allowed:
            message = f"the request body of {length} bytes is larger than the {allowed} allowed"
            await _error_response(413, message, "request_too_large")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > allowed:
                    raise _BodyTooLarge(413, f"the request body is larger than the {allowed} bytes allowed")
            return message

        await self.app(scope, counted, send)


_DISCONNECT_POLL_S = 0.5
T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``, cancelled as soon as the client goes away: a whole answer that nobody waits for would
    keep the LLM generating (a streamed one stops when its stream is closed; this one has none)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ApiError(499, "the client closed the request", code="client_closed_request")
    finally:
        task.cancel()


async def _complete(events: AsyncIterator[ChatEvent], completion_id: str, created: int, model: str) -> dict:
    parts: list[str] = []
    finished: TurnFinished | None = None
    async for event in events:
        if isinstance(event, AnswerDelta):
            parts.append(event.text)
        elif isinstance(event, TurnFinished):
            finished = event
    assert finished is not None  # the chat service always ends with one
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": finished.final_answer("".join(parts))},
                "finish_reason": finished.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": finished.usage.as_dict(),
        "sources": _public_sources(finished.sources),
        "citations": finished.citations,
        "withdrawn": finished.withdrawn,
        "refused": finished.refused,
    }


async def _stream(
    head: list[ChatEvent],
    rest: AsyncIterator[ChatEvent],
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE chunks as OpenAI sends them: role, content deltas, finish_reason (+ sources), usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if include_usage:
            body["usage"] = None
        body.update(extra)
        return body

    async def events() -> AsyncIterator[ChatEvent]:
        for event in head:
            yield event
        async for event in rest:
            yield event

    yield _sse(chunk({"role": "assistant", "content": ""}))
    try:
        async for event in events():
            if isinstance(event, AnswerDelta):
                yield _sse(chunk({"content": event.text}))
            elif isinstance(event, TurnFinished):
                sources = _public_sources(event.sources)
                extra = {
                    "sources": sources,
                    "citations": event.citations,
                    "withdrawn": event.withdrawn,
                    "refused": event.refused,
                }
                yield _sse(chunk({}, event.finish_reason, **extra))
                if include_usage:
                    usage_chunk = chunk({}, usage=event.usage.as_dict())
                    usage_chunk["choices"] = []
                    yield _sse(usage_chunk)
            elif isinstance(event, SourcesFound):
                continue
    except Exception as error:  # headers are gone: the error travels as an SSE event clients raise on
        api_error = _as_api_error(error)
        yield _sse(error_body(api_error.status, api_error.message, api_error.code))
        return
    yield _sse("[DONE]")
