"""The RAG chain as one LangChain Runnable: condense → retrieve → (refuse | prompt → LLM) → answer.

Input ``{"question": str, "history": [(role, text), ...]}`` (history optional, oldest first). Output
(and, when streamed, the keys as they become known): ``language``, ``query`` (the standalone query
retrieval used), ``documents``, ``sources``, ``context`` first — so a UI can show sources before the
answer starts — then ``answer`` in text deltas, and last, only when the finished answer answers nothing
(rag.answer_check), ``withdrawn``: ``{"reason", "original", "replacement"}``, the replacement being the
refusal that callers show or return instead.

A follow-up such as "and how many seats does it have?" retrieves nothing useful on its own, so with a
history the LLM first rewrites it into a standalone question; that question is both the retrieval
query and what the answer prompt asks. When retrieval finds nothing relevant the answer is the
refusal text of the question's language and no LLM is called: a small model asked to answer from
irrelevant context invents, so "not in the knowledge base" is decided by retrieval scores.

A question written in Traditional Chinese is answered in Traditional script (``traditional_answers``):
the small model writes Simplified whatever it is asked, so its answer is converted as it streams, and
the refusal with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator
from langchain_core.runnables.utils import AddableDict

from rag.answer_check import check_answer
from rag.chinese_text import TraditionalStream, bare, script_of, to_traditional
from rag.config import Settings
from rag.language import detect_language
from rag.prompts import (
    answer_prompt,
    condense_prompt,
    example_texts,
    format_context,
    format_history,
    quote_untrusted,
    read_prompt,
)
from rag.small_talk import small_talk


def source_dict(index: int, document: Document) -> dict[str, Any]:
    """The public shape of one cited passage (CLI ``ask --json``, the API and the UI)."""
    return {
        "index": index,
        "source": document.metadata.get("source"),
        "page": document.metadata.get("page"),
        "section": document.metadata.get("section"),
        "text": document.page_content,
        "score": document.metadata.get("score"),
    }


def _first_line(text: str) -> str:
    """A model's reply up to its first line break: small models append explanations after it."""
    return next((line.strip() for line in text.strip().splitlines() if line.strip()), "")


def _standalone(text: str, fallback: str, earlier: Iterable[str] = ()) -> str:
    """The rewritten question, or the original when the model returned nothing usable.

    A rewrite that only repeats an earlier question of the user's is not usable: the small model
    often answers "And in Beijing?" after a question about Hangzhou with the Hangzhou question
    itself, which then gets the Hangzhou answer (and "Beijing", which no document mentions, is never
    checked). The follow-up as typed, searched after the previous message too, keeps the new part.
    """
    line = _first_line(text)
    for prefix in ("独立的问题：", "独立问题：", "Standalone question:", "Question:"):
        line = line.removeprefix(prefix).strip()
    if not 2 <= len(line) <= 4 * len(fallback) + 200:
        return fallback
    said = bare(line)
    if said != bare(fallback) and any(said == bare(question) for question in earlier):
        return fallback
    return line


@lru_cache(maxsize=8)
def _answer_prompt(prompts_dir: Path, language: str) -> ChatPromptTemplate:
    """The answer template, parsed once per language instead of once per question."""
    return answer_prompt(prompts_dir, language)


def make_translator(
    llm: BaseChatModel, prompts_dir: Path, *, only_from: str | None = None
) -> Callable[[str], str | None]:
    """Question → the same question in the other language (zh ↔ en), for cross-lingual retrieval.

    An English question about Chinese documents shares no words with them and, with small embedders,
    little meaning either; searching with both wordings and fusing the results finds the passage.
    ``only_from="en"`` translates English questions only (a Chinese question gains nothing from an
    English twin on a Chinese corpus, and its noise cost paraphrase questions in our measurements).
    """

    @lru_cache(maxsize=256)  # evaluation and retries ask again; a translation does not change
    def translate(question: str) -> str | None:
        source = detect_language(question)
        if only_from is not None and source != only_from:
            return None
        target = "en" if source == "zh" else "zh"
        prompt = read_prompt(prompts_dir, target, "translate").format(question=question)
        line = _first_line(StrOutputParser().invoke(llm.invoke(prompt)))
        return line if 2 <= len(line) <= 4 * len(question) + 100 else None

    return translate


_KEPT_HISTORY = "kept_history"  # the history the steps use, worked out once per question
_STEP_ONLY = ("language", _KEPT_HISTORY)  # not echoed with the inputs (language is yielded on its own)


class _RagSteps:
    """The steps of one question, shared by the chain's sync run (``invoke``, ``stream``: CLI, evaluation)
    and its async run (``ainvoke``, ``astream``: the API and the UI), which differ only in how they
    call the retriever and the LLMs.
    """

    def __init__(
        self, retriever: BaseRetriever, llm: BaseChatModel, settings: Settings, rewriter: BaseChatModel
    ) -> None:
        self.retriever = retriever
        self.llm = llm
        self.settings = settings
        self.rewriter = rewriter

    def start(self, inputs: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        language = detect_language(inputs["question"]) if settings.language == "auto" else settings.language
        return {**inputs, "language": language, _KEPT_HISTORY: self._kept_history(inputs)}

    def traditional(self, values: dict[str, Any]) -> bool:
        """Whether the answer is written in Traditional script: it is in Chinese and the question is
        written in Traditional script, or (a follow-up such as "那年假呢？" reads the same in both) the
        latest earlier user message that shows a script is."""
        if not self.settings.traditional_answers or values["language"] != "zh":
            return False
        earlier = [text for role, text in reversed(self._history(values)) if role == "user"]
        scripts = (script_of(text) for text in [values["question"], *earlier])
        return next((script for script in scripts if script), None) == "traditional"

    def script(self, values: dict[str, Any]) -> Callable[[str], str]:
        """The conversion of whole texts (the refusal) to the answer's script."""
        return to_traditional if self.traditional(values) else str

    def answer_text(self, values: dict[str, Any]) -> _AnswerText:
        """Where the LLM's answer pieces go on their way out, converted to the answer's script."""
        return _AnswerText(TraditionalStream() if self.traditional(values) else None)

    @staticmethod
    def _history(values: dict[str, Any]) -> list[Any]:
        return values[_KEPT_HISTORY]

    def _kept_history(self, inputs: dict[str, Any]) -> list[Any]:
        """The last ``history_turns`` messages before the question (none when that is 0), less small
        talk: after "你好" and its greeting, "年假有几天？" is a first question, not a follow-up."""
        turns = self.settings.history_turns
        if not turns:
            return []
        kept: list[Any] = []
        skip_reply = False
        for role, text in inputs.get("history") or []:
            if role == "user":
                skip_reply = small_talk(text) is not None
                if skip_reply:
                    continue
            elif skip_reply:
                skip_reply = False
                continue
            kept.append((role, text))
        return kept[-turns:]

    def asked_before(self, values: dict[str, Any]) -> list[str]:
        """The user's previous question, which a failed rewrite of a follow-up repeats; an older one
        may be what "back to the first question" rightly rewrites into."""
        asked = [text for role, text in self._history(values) if role == "user"]
        return asked[-1:]

    def condenser(self, values: dict[str, Any]) -> Runnable | None:
        """The follow-up rewriter (prompt → LLM → text) when there is a history, else None."""
        history = self._history(values)
        if not history:
            return None
        language = values["language"]
        prompt = condense_prompt(self.settings.prompts_dir, language)
        shown = format_history(history, language, self.settings.history_message_chars)
        return prompt.partial(history=shown) | self.rewriter | StrOutputParser()

    def searcher(self, values: dict[str, Any]) -> BaseRetriever:
        """The retriever, told the follow-up as typed after the user's previous message when there is
        a history: the small LLM's rewrite often drops what "那成都呢？" or "who approves it?" refers
        to, and that text still holds it (``KnowledgeBaseRetriever.context``)."""
        earlier = [text for role, text in self._history(values) if role == "user" and text.strip()]
        if not earlier or not self.settings.followup_context or not hasattr(self.retriever, "context"):
            return self.retriever
        return self.retriever.model_copy(update={"context": f"{earlier[-1]} {values['question']}"})

    def found(self, values: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The sources and the numbered context of the retrieved documents."""
        documents = values["documents"]
        sources = [source_dict(number, document) for number, document in enumerate(documents, start=1)]
        return sources, format_context(self.settings.prompts_dir, values["language"], documents)

    def answerer(self, values: dict[str, Any]) -> Runnable | None:
        """prompt → LLM (message chunks, whose last carries the finish reason), or None when nothing
        relevant was found (the answer is the refusal)."""
        if not values["documents"]:
            return None
        return _answer_prompt(self.settings.prompts_dir, values["language"]) | self.llm

    def refusal(self, values: dict[str, Any]) -> str:
        return self.script(values)(read_prompt(self.settings.prompts_dir, values["language"], "refusal"))

    @staticmethod
    def answer_inputs(values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "question": quote_untrusted(values["query"])}

    def small_talk_reply(self, values: dict[str, Any], kind: str) -> Iterator[AddableDict]:
        """Small talk (a greeting, thanks, goodbye or "ok") gets its line (``prompts/LANG/KIND.txt``):
        no rewrite, no search, no LLM, no sources."""
        values.update(query=values["question"], documents=[], sources=[], context="", small_talk=kind)
        for key in ("query", "documents", "sources", "context", "small_talk"):
            yield AddableDict({key: values[key]})
        yield AddableDict(
            answer=self.script(values)(read_prompt(self.settings.prompts_dir, values["language"], kind))
        )

    def run(self, chunks: Iterator[dict[str, Any]], config: RunnableConfig) -> Iterator[AddableDict]:
        values = self.start(_merged(chunks))
        yield AddableDict({key: value for key, value in values.items() if key not in _STEP_ONLY})
        yield AddableDict(language=values["language"])
        if (kind := small_talk(values["question"])) is not None:
            yield from self.small_talk_reply(values, kind)
            return
        condense = self.condenser(values)
        query = values["question"]
        if condense is not None:
            query = _standalone(
                condense.invoke({"question": query}, config), query, self.asked_before(values)
            )
        values["query"] = query
        yield AddableDict(query=query)
        values["documents"] = self.searcher(values).invoke(query, config)
        yield AddableDict(documents=values["documents"])
        yield from self._found(values)
        answer = self.answerer(values)
        if answer is None:
            yield AddableDict(answer=self.refusal(values))
            return
        text = self.answer_text(values)
        finish: str | None = None
        for chunk in answer.stream(self.answer_inputs(values), config):
            finish = _finish_reason(chunk) or finish
            if piece := text.add(chunk.text):  # the message chunk's text, as StrOutputParser gives it
                yield AddableDict(answer=piece)
        if rest := text.end():
            yield AddableDict(answer=rest)
        yield from self._checked(values, text.whole, finish)

    async def arun(
        self, chunks: AsyncIterator[dict[str, Any]], config: RunnableConfig
    ) -> AsyncIterator[AddableDict]:
        values = self.start(_merged([chunk async for chunk in chunks]))
        yield AddableDict({key: value for key, value in values.items() if key not in _STEP_ONLY})
        yield AddableDict(language=values["language"])
        if (kind := small_talk(values["question"])) is not None:
            for chunk in self.small_talk_reply(values, kind):
                yield chunk
            return
        condense = self.condenser(values)
        query = values["question"]
        if condense is not None:
            rewrite = await condense.ainvoke({"question": query}, config)
            query = _standalone(rewrite, query, self.asked_before(values))
        values["query"] = query
        yield AddableDict(query=query)
        values["documents"] = await self.searcher(values).ainvoke(query, config)
        yield AddableDict(documents=values["documents"])
        for chunk in self._found(values):
            yield chunk
        answer = self.answerer(values)
        if answer is None:
            yield AddableDict(answer=self.refusal(values))
            return
        text = self.answer_text(values)
        finish: str | None = None
        async for chunk in answer.astream(self.answer_inputs(values), config):
            finish = _finish_reason(chunk) or finish
            if piece := text.add(chunk.text):  # the message chunk's text, as StrOutputParser gives it
                yield AddableDict(answer=piece)
        if rest := text.end():
            yield AddableDict(answer=rest)
        for checked in self._checked(values, text.whole, finish):
            yield checked

    def _checked(self, values: dict[str, Any], answer: str, finish: str | None) -> Iterator[AddableDict]:
        """``withdrawn`` (rag.answer_check) after the answer when it answers nothing; else nothing.

        An answer the LLM cut off at ``max_tokens`` (finish reason ``length``) is not judged: "The
        shuttle bus" is where a three-token answer stops, not an answer that restates the question,
        and replacing it by "the knowledge base does not contain this" would tell the user something false.
        """
        if not self.settings.withdraw_empty_answers or finish == "length":
            return
        language = values["language"]
        withdrawal = check_answer(
            answer,
            self.refusal(values),
            questions=[values["question"], values["query"]],
            sources=values["sources"],
            examples=example_texts(self.settings.prompts_dir, language),
        )
        if withdrawal is not None:
            yield AddableDict(withdrawn=withdrawal.as_dict())

    def _found(self, values: dict[str, Any]) -> Iterator[AddableDict]:
        values["sources"], values["context"] = self.found(values)
        yield AddableDict(sources=values["sources"])
        yield AddableDict(context=values["context"])


class _AnswerText:
    """The LLM's answer as it streams, in the answer's script (``convert``, or as written), and whole."""

    def __init__(self, convert: TraditionalStream | None) -> None:
        self.convert = convert
        self.pieces: list[str] = []

    def add(self, piece: str) -> str:
        """What to send for this piece of the LLM's text (empty while a conversion holds it back)."""
        if piece and self.convert is not None:
            piece = self.convert.feed(piece)
        self.pieces.append(piece)
        return piece

    def end(self) -> str:
        """What the conversion still holds once the LLM has finished."""
        rest = self.convert.flush() if self.convert is not None else ""
        self.pieces.append(rest)
        return rest

    @property
    def whole(self) -> str:
        """The answer as sent, for the answer check."""
        return "".join(self.pieces)


def _finish_reason(chunk: Any) -> str | None:
    return (getattr(chunk, "response_metadata", None) or {}).get("finish_reason")


def _merged(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The chain's input (one dict, or the pieces of one when it is fed a stream)."""
    inputs: dict[str, Any] = {}
    for chunk in chunks:
        inputs.update(chunk)
    return inputs


def build_rag_chain(
    retriever: BaseRetriever,
    llm: BaseChatModel,
    settings: Settings,
    *,
    condense_llm: BaseChatModel | None = None,
) -> Runnable:
    """``condense_llm`` (default ``llm``) rewrites follow-ups; give it a low temperature and few tokens.

    One generator drives the steps and calls the retriever and the LLMs as child runs, rather than a
    pipe of five ``RunnablePassthrough.assign`` steps: streamed, each of those layers passes every
    chunk through its own tee and tasks, and each plain-function step ran on a worker thread. With an
    instant retriever and LLM the pipe took 33 ms to its first answer chunk (15 ms with its steps
    kept on the event loop), the generator 3-4 ms. The streamed keys and their order, the result of
    ``invoke``, and the child runs of the retriever and the LLMs that callbacks see are unchanged.
    """
    steps = _RagSteps(retriever, llm, settings, condense_llm or llm)
    return RunnableGenerator(steps.run, steps.arun, name="kbqa_rag")
