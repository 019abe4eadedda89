"""One chat turn over a knowledge base, as a stream of events both the HTTP API and the web UI consume.

The API speaks OpenAI's wire format and the UI speaks Gradio's, but what a turn *is* — split the
conversation into the question and its history, build the chat model with the caller's sampling,
run the RAG chain, count tokens, translate LLM failures — lives here once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from rag.answer_check import final_answer, is_refusal_turn
from rag.citations import check_citations
from rag.llm import LLMProvider, LLMUnavailableError, llm_errors
from rag.service import KnowledgeBaseService

Message = tuple[str, str]  # (role, text), roles "user" / "assistant"


@dataclass(frozen=True)
class ChatParams:
    """Per-request sampling; ``None`` keeps the configured default."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class SourcesFound:
    """Retrieval is done: these passages are what the answer may cite ([n] = index n)."""

    sources: list[dict[str, Any]]
    query: str


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class TurnFinished:
    finish_reason: str
    usage: Usage
    sources: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)  # rag.citations verdicts per [n]
    # The streamed answer answered nothing (rag.answer_check): {"reason", "original", "replacement"}.
    withdrawn: dict[str, str] | None = None
    # The turn's answer holds nothing from the documents (rag.answer_check.is_refusal_turn): its
    # sources, if any, were searched and back nothing.
    refused: bool = False
    small_talk: str | None = None  # rag.small_talk's kind ("greeting", ...): its line, nothing searched

    def final_answer(self, streamed: str) -> str:
        return final_answer(streamed, self.withdrawn)


ChatEvent = SourcesFound | AnswerDelta | TurnFinished


class MessageTooLongError(ValueError):
    """A message over ``max_message_chars``: refused before it reaches the embedder and the LLM."""


class _LLMCallRecorder(BaseCallbackHandler):
    """Adds up the tokens of every LLM call in a turn (condense + answer) and keeps the last stop reason.

    ``run_inline``: in an async run LangChain hands each event of a plain (sync) handler to a worker
    thread and waits for it, unless the handler runs inline. A turn had ~45 events before its first
    token and has one per streamed token; at 0.2-1.5 ms a hop on a busy two-core machine that was
    ~12 ms of the time to first token and ~0.3 ms per token. Its callbacks only add numbers, so they
    run inline, and chain and retriever events, which it ignores, are not sent to it at all.
    """

    run_inline = True

    @property
    def ignore_chain(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason = "stop"

    def on_llm_end(self, response: LLMResult, **_: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None) or {}
                self.prompt_tokens += int(usage.get("input_tokens", 0))
                self.completion_tokens += int(usage.get("output_tokens", 0))
                reason = (generation.generation_info or {}).get("finish_reason") or (
                    getattr(message, "response_metadata", None) or {}
                ).get("finish_reason")
                if reason:
                    self.finish_reason = reason


def split_conversation(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """The last user message is the question; earlier user/assistant turns are its history.

    Clients' system messages are not passed on: the answer prompt is kbqa's own, so a client cannot
    switch off "answer only from the documents".
    """
    turns = [(role, text) for role, text in messages if role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user":
        raise ValueError("the last message must be a user message holding the question")
    question = turns[-1][1].strip()
    if not question:
        raise ValueError("the question (the last user message) is empty")
    return question, [(role, text) for role, text in turns[:-1] if text.strip()]


class ChatService:
    def __init__(self, knowledge: KnowledgeBaseService, llm: LLMProvider) -> None:
        self.knowledge = knowledge
        self.llm = llm

    async def stream(
        self, kb: str, messages: Sequence[Message], params: ChatParams | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Sources first, then answer deltas, then one ``TurnFinished``.

        Raises ``KnowledgeBaseNotFoundError`` before anything else, then ``LLMUnavailableError`` (the
        server is down or too slow) or ``LLMRequestError`` (it refused the request).
        """
        params = params or ChatParams()
        limit = self.knowledge.settings.max_message_chars
        if any(len(text) > limit for _, text in messages):  # the web UI has no other limit
            raise MessageTooLongError(f"a message is longer than {limit} characters")
        question, history = split_conversation(messages)
        chain = await asyncio.to_thread(self._prepare, kb, params)
        recorder = _LLMCallRecorder()
        sources: list[dict[str, Any]] = []
        answer: list[str] = []
        withdrawn: dict[str, str] | None = None
        small_talk: str | None = None
        query = question
        with self._model_swaps(), llm_errors(self.llm.base_url):
            async for part in chain.astream(
                {"question": question, "history": history}, config={"callbacks": [recorder]}
            ):
                query = part.get("query", query)  # streamed keys arrive in separate chunks
                if "sources" in part:
                    sources = part["sources"]
                    yield SourcesFound(sources=sources, query=query)
                if part.get("answer"):
                    answer.append(part["answer"])
                    yield AnswerDelta(part["answer"])
                withdrawn = part.get("withdrawn", withdrawn)
                small_talk = part.get("small_talk", small_talk)
        yield TurnFinished(
            finish_reason=recorder.finish_reason,
            usage=Usage(recorder.prompt_tokens, recorder.completion_tokens),
            sources=sources,
            # a withdrawn answer's citations would judge text the client is told to replace
            citations=[]
            if withdrawn
            else [check.as_dict() for check in check_citations("".join(answer), sources)],
            withdrawn=withdrawn,
            refused=is_refusal_turn("".join(answer), sources, withdrawn),
            small_talk=small_talk,
        )

    @contextlib.contextmanager
    def _model_swaps(self) -> Iterator[None]:
        """A model the server no longer serves (its operator swapped it) is asked for again next time,
        instead of failing every request until kbqa restarts."""
        try:
            yield
        except LLMUnavailableError as error:
            if isinstance(error.__cause__, openai.NotFoundError):
                self.llm.forget_model()
            raise

    def _prepare(self, kb: str, params: ChatParams) -> Any:
        """The turn's chain, in one worker-thread hop (each hop waits its turn for a thread and the GIL).

        The knowledge base is checked first, so an unknown one fails before the LLM is asked anything.
        """
        self.knowledge.require_knowledge_base(kb)
        answer_llm, condense_llm = self._models(params)
        return self.knowledge.chain(kb, answer_llm, k=params.top_k, condense_llm=condense_llm)

    def _models(self, params: ChatParams) -> tuple[Any, Any]:
        answer = self.llm.chat_model(
            temperature=params.temperature, max_tokens=params.max_tokens, top_p=params.top_p, stop=params.stop
        )
        condense = self.llm.rewrite_model()
        return answer, condense
