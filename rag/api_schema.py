"""Pydantic models of the HTTP API: OpenAI's chat-completions shapes (plus ``sources``) and KB management.

Requests are validated here so a malformed one is a 400 before any work starts; responses are
declared so the OpenAPI schema documents them. Fields OpenAI clients send that kbqa does not use
(``frequency_penalty``, ``user``, ...) are accepted and ignored rather than rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator


def _encodable(text: str) -> str:
    """JSON's ``\\ud800`` escapes decode to lone surrogates that no UTF-8 encoder (tokenizer, Chroma,
    the response itself) accepts; refusing them here keeps them from surfacing later as a 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"not valid Unicode text (lone surrogate at position {error.start})") from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[TextPart] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        """An image or audio part is named as such, not reported as "should be a valid string"."""
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind != "text":
                    raise ValueError(f"only text content parts are supported, not {kind!r}")
        return content

    def text(self) -> str:
        if isinstance(self.content, list):
            # separate parts are separate lines (as vLLM joins them), not one run-on word
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: Text = Field(description="`kbqa` for the default knowledge base, `kbqa:NAME` for another.")
    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation; the last user message is the question."
    )
    stream: StrictBool = False  # as OpenAI: "yes" or 1 is a 400, not streaming
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: Text | list[Text] | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only one choice is supported.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="kbqa extension: passages retrieved.")
    # Accepted only where they ask for what kbqa does anyway: silently ignoring a request for JSON or
    # for a tool call would hand the client prose it then fails to parse, with no word why.
    response_format: dict[str, Any] | None = Field(
        default=None, description='Only {"type": "text"}: answers are prose with [n] citations.'
    )
    tools: list[Any] | None = Field(default=None, description="Only none: kbqa calls no tools.")
    tool_choice: Any = Field(default=None, description='Only "none" or "auto" (with no tools).')

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, response_format: dict[str, Any] | None) -> dict[str, Any] | None:
        kind = (response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(
                f"response_format {kind!r} is not supported: kbqa answers in prose from the documents, "
                'with [n] citations; send {"type": "text"} or leave it out'
            )
        return response_format

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tools are not supported: kbqa answers from its documents and calls no tools")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _no_tool_choice(cls, choice: Any) -> Any:
        if choice not in (None, "none", "auto"):
            raise ValueError('tool_choice must be "none" or "auto": kbqa calls no tools')
        return choice

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str] | None:
        if stop is None:
            return None
        stops = [stop] if isinstance(stop, str) else stop
        if len(stops) > 4 or any(not item for item in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops


class Source(BaseModel):
    index: int = Field(description="The number the answer cites as [index].")
    source: str | None = Field(description="The file, relative to its knowledge base.")
    page: int | None = Field(description="PDF page (1-based), null for other formats.")
    section: str | None = Field(
        default=None, description="Heading path of the passage's section ('A > B'), null where none."
    )
    snippet: str = Field(description="The passage as stored.")
    score: float | None = Field(description="Relevance (cosine similarity).")


class Citation(BaseModel):
    index: int = Field(description="The n of a [n] marker in the answer.")
    supported: bool = Field(description="False when passage n does not back the sentence citing it.")
    overlap: float = Field(description="Share of the sentence's content words found in passage n.")


class Withdrawal(BaseModel):
    reason: str = Field(description="Why the model's answer answers nothing (rag.answer_check).")
    original: str = Field(description="The model's answer, as streamed.")
    replacement: str = Field(description="The refusal that replaces it (the message content).")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    sources: list[Source] = Field(description="kbqa extension: the passages the answer may cite.")
    citations: list[Citation] = Field(description="kbqa extension: each [n] in the answer, checked.")
    withdrawn: Withdrawal | None = Field(
        default=None,
        description="kbqa extension: set when the model's answer was replaced by the refusal (its "
        "citations are then not checked: empty).",
    )
    refused: bool = Field(
        default=False,
        description="kbqa extension: the answer holds nothing from the documents: a refusal (no relevant "
        "passage, the model's own refusal sentence, or a withdrawn answer; the sources are then the passages "
        'searched, not backing), or the line bare small talk gets (a greeting, thanks, goodbye or "ok").',
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kbqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class KnowledgeBaseCreate(BaseModel):
    name: Text = Field(description="3-63 letters, digits, '.', '_' or '-'.")


class KnowledgeBase(BaseModel):
    kb: str
    files: int
    chunks: int
    embedding_model: str | None
    dimension: int | None


class KnowledgeBaseList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KnowledgeBase]


class DocumentInfo(BaseModel):
    source: str
    chunks: int
    bytes: int
    origin: Literal["folder", "upload"]


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentInfo]


class Deleted(BaseModel):
    deleted: bool = True
    id: str
    chunks: int | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: Text = Field(min_length=1, description="The question or search text.")
    k: int | None = Field(default=None, ge=1, le=50, description="How many chunks (default: KBQA_TOP_K).")


class SearchHit(BaseModel):
    text: str = Field(description="The chunk text exactly as stored.")
    source: str | None = Field(description="The file, relative to its knowledge base.")
    page: int | None = Field(description="PDF page (1-based), null for other formats.")
    score: float


class SearchResults(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchHit]


class JobProgress(BaseModel):
    done: int = Field(description="Files finished.")
    total: int = Field(description="Files in the job.")
    current: str | None = Field(description="The file being read and indexed; null when queued or finished.")
    chunks_embedded: int = Field(description="Chunks embedded so far (a large file is many).")


class IngestJobInfo(BaseModel):
    id: str
    object: Literal["ingest.job"] = "ingest.job"
    kb: str
    status: Literal["queued", "running", "succeeded", "failed"]
    files: list[str]
    progress: JobProgress
    summary: dict[str, Any] | None
    error: str | None
    waiting: str | None = Field(
        default=None,
        description="Set while the job waits for another writer of its knowledge base (status queued).",
    )
    created_at: int
    finished_at: int | None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[IngestJobInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    chroma: dict[str, Any]
    llm: dict[str, Any]
