"""Prompt templates kept as text files under ``prompts/<language>/`` so they can be edited without code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate

from ingest.splitter import TABLE_RULE
from rag.chinese_text import fold
from rag.citations import MARKER
from rag.language import CJK

LANGUAGES = ("zh", "en")
_SPEAKERS = {"zh": {"user": "用户", "assistant": "助手"}, "en": {"user": "User", "assistant": "Assistant"}}

# "<" that would open or close the <context> block, and the "<|" / "|>" of chat-template tokens such as
# Qwen's <|im_start|>, which the LLM server would otherwise read as a real turn boundary.
_FORGEABLE = re.compile(r"<(?=\s*/?\s*context\b)|<(?=\|)|(?<=\|)>", re.IGNORECASE)
# Sentences that address the model rather than the reader: "ignore previous instructions", a line posing
# as a system or assistant turn, "you must now reply ...". A small local model obeys them even inside
# clearly framed context (measured: Qwen2.5-0.5B answered "PWNED" to 2 of 3 questions), so they are
# replaced by a marker before the model sees them; a handbook never needs them to answer a question.
_INSTRUCTION_LIKE = re.compile(
    r"[^\n.!?。！？]*(?:"
    r"\b(?:ignore|disregard|forget)\b[^\n.!?]{0,40}\b(?:instructions?|prompts?|rules|context)\b"
    r"|\byou\s+(?:must|should|will)\s+now\b"
    r"|(?:忽略|无视|忘记|忘掉)[^\n。！？]{0,20}(?:指示|指令|提示|规则|要求)"
    r")[^\n.!?。！？]*[.!?。！？]?"
    r"|^[ \t]*(?:system|assistant|系统|助手)[ \t]*[:：].*$",
    re.IGNORECASE | re.MULTILINE,
)
INSTRUCTION_MARKER = "[instruction-like text omitted]"
_CELL_BORDER = re.compile(r"(?<!\\)\|")


@lru_cache(maxsize=64)
def read_prompt(prompts_dir: Path, language: str, name: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"no prompts for language {language!r}; have {', '.join(LANGUAGES)}")
    path = prompts_dir / language / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} is missing")
    return path.read_text(encoding="utf-8").strip()


def answer_prompt(prompts_dir: Path, language: str) -> ChatPromptTemplate:
    """System rules, the worked examples as earlier turns of the chat, then the question's own turn."""
    return ChatPromptTemplate.from_messages(
        [
            ("system", read_prompt(prompts_dir, language, "answer.system")),
            *example_turns(prompts_dir, language),
            ("human", read_prompt(prompts_dir, language, "answer.user")),
        ]
    )


def format_history(history: Sequence[Sequence[str]], language: str, max_chars: int | None = None) -> str:
    """(role, text) turns as the condense prompt shows them: one line each, the speaker named.

    With ``max_chars``, a longer message keeps only its start and end around " … ": a pasted email
    or a long answer in the history would otherwise push the rewrite prompt past the LLM's context
    window, and every later turn of that conversation would fail; what a follow-up refers to is
    almost always near a message's start (its subject) or end (its conclusion).
    """
    speakers = _SPEAKERS.get(language, _SPEAKERS["en"])
    return "\n".join(
        f"{speakers.get(role, role)}: {_clipped(' '.join(text.split()), max_chars)}" for role, text in history
    )


def _clipped(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    head = max_chars // 2
    return f"{text[:head]} … {text[len(text) - (max_chars - head) :]}"


@lru_cache(maxsize=8)
def condense_prompt(prompts_dir: Path, language: str) -> ChatPromptTemplate:
    """The follow-up rewrite: ``condense.examples.json``'s worked examples as earlier turns (each built
    through the ``condense`` template, its rewrite the reply), then the follow-up's own turn, whose
    ``history`` and ``question`` are left to fill."""
    template = read_prompt(prompts_dir, language, "condense")
    turns: list[BaseMessage] = []
    for example in _read_examples(
        prompts_dir / language / "condense.examples.json",
        "a JSON list of {history: [[role, text], ...], question, standalone}",
        _is_condense_example,
    ):
        text = template.format(
            history=format_history(example["history"], language), question=example["question"]
        )
        turns += [HumanMessage(text), AIMessage(example["standalone"])]
    return ChatPromptTemplate.from_messages([*turns, ("human", template)])


def _is_condense_example(example: object) -> bool:
    if not isinstance(example, dict):
        return False
    history = example.get("history")
    turns_ok = isinstance(history, list) and all(
        isinstance(turn, list) and len(turn) == 2 and all(isinstance(part, str) for part in turn)
        for turn in history
    )
    return turns_ok and all(isinstance(example.get(key), str) for key in ("question", "standalone"))


def _example_passage(passage: dict[str, str]) -> Document:
    """An example's passage as a chunk: with a ``section``, its text starts with it, as ingestion makes it."""
    section = passage.get("section")
    if not section:
        return Document(page_content=passage["text"], metadata={"source": passage["source"]})
    return Document(
        page_content=f"{section}\n{passage['text']}",
        metadata={"source": passage["source"], "section": section},
    )


def example_turns(prompts_dir: Path, language: str) -> list[BaseMessage]:
    """``answer.examples.json`` as finished chat turns: a user turn built like a real one, the answer.

    Why turns and not a line of the system prompt: the packaged 0.5B copied an example written into
    its rules as the answer to unrelated questions ("You can keep it for 14 days [1]."), while the same
    kind of example given as an earlier exchange, about a subject the documents never have, was
    followed as a pattern (measured in docs/BENCHMARKS.md). Each example is rendered through the
    same ``source`` and ``answer.user`` templates as a question, so editing them keeps the two alike.
    The file is optional. English ships one, two garden-club exchanges (a refusal, then a value with
    its citation): without them the packaged 0.5B refused nearly every English question, the passage
    first or not. Their cost: where the passages lack the answer, it now and then gives the example's
    answer instead of refusing (rag.answer_check withdraws such a copy). Chinese ships none: in Chinese the
    examples made the 0.5B refuse sample questions it answered without them, or stop refusing at all.
    """
    turns: list[BaseMessage] = []
    for example in _examples(prompts_dir, language):
        passages = [_example_passage(passage) for passage in example["passages"]]
        user = read_prompt(prompts_dir, language, "answer.user").format(
            context=format_context(prompts_dir, language, passages), question=example["question"]
        )
        turns += [HumanMessage(user), AIMessage(example["answer"])]
    return turns


@lru_cache(maxsize=16)
def example_texts(prompts_dir: Path, language: str) -> tuple[str, ...]:
    """Per worked example, the words a copy of it would repeat: its passages, and its answer when that
    cites one (a refusal example's answer is the refusal, which is no copy). ``rag.answer_check``
    withdraws an answer made of them."""
    texts = []
    for example in _examples(prompts_dir, language):
        parts = [str(passage["text"]) for passage in example["passages"]]
        if MARKER.search(example["answer"]):
            parts.append(example["answer"])
        texts.append("\n".join(parts))
    return tuple(texts)


def _examples(prompts_dir: Path, language: str) -> list[dict[str, Any]]:
    """The examples of ``answer.examples.json``, their shape checked (message names the file)."""
    return _read_examples(
        prompts_dir / language / "answer.examples.json",
        "a JSON list of {passages: [{source, section?, text}], question, answer}",
        _is_example,
    )


def _read_examples(path: Path, shape: str, valid: Callable[[object], bool]) -> list[dict[str, Any]]:
    """An optional examples file: [] when absent; a JSON list each of whose items is ``valid``, or a
    ``ValueError`` naming the file and the ``shape`` expected."""
    if not path.is_file():
        return []
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} must be {shape}: {error}") from error
    if not isinstance(examples, list) or not all(valid(example) for example in examples):
        raise ValueError(f"{path} must be {shape}")
    return examples


def _is_example(example: object) -> bool:
    def texts(item: object, *keys: str) -> bool:
        return isinstance(item, dict) and all(isinstance(item.get(key), str) for key in keys)

    passages = example.get("passages") if isinstance(example, dict) else None
    return (
        texts(example, "question", "answer")
        and isinstance(passages, list)
        and all(texts(passage, "source", "text") for passage in passages)
    )


def counted(count: int, noun: str) -> str:
    """'1 chunk', '3 chunks': the CLI and the web UI report counts in the same words."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_location(source: object, page: object, section: object = None) -> str:
    """'file p.N' for paginated sources, else the file alone; with ``section`` (what people read:
    the CLI, the web UI), its heading path after it, since three passages of one handbook are told
    apart by their sections, not by the file name."""
    where = f"{source} p.{page}" if page is not None else str(source)
    return f"{where} · {section}" if section else where


def location(document: Document) -> str:
    return format_location(document.metadata.get("source", "?"), document.metadata.get("page"))


def quote_untrusted(text: str) -> str:
    """Text from documents (or a client) made unable to break out of the prompt's framing.

    Passages sit between ``<context>`` and ``</context>``, and the system prompt says that what is
    inside is quoted material, never instructions. A document that contained ``</context>`` could end
    that block early and write what follows as if kbqa had; one with ``<|im_start|>system`` could open
    a new system turn. Their angle brackets become look-alikes (``‹/context>``, ``‹|im_start|›``), so
    the model still reads the words but no delimiter survives.
    """
    return _FORGEABLE.sub(lambda match: "‹" if match.group() == "<" else "›", text)


def omit_instructions(text: str) -> str:
    """A passage with its sentences that give the model orders replaced by ``INSTRUCTION_MARKER``."""
    return _INSTRUCTION_LIKE.sub(INSTRUCTION_MARKER, text)


def located_text(document: Document) -> tuple[str, str]:
    """Where a passage is from, with its section's heading path, and its text without that heading.

    Chunks of a sectioned document start with their heading path ("休假制度 > 年假"), so that search
    matches it. Shown to the LLM as the passage's first line, it was taken for the passage's content:
    the 0.5B answered 5 of the 60 dev questions with a heading path ("星帆监控平台发布说明 > 升级说明").
    Moved into the source line, it no longer was, in any answer (docs/BENCHMARKS.md).
    """
    where, text = location(document), document.page_content.strip()
    section = str(document.metadata.get("section") or "")
    if section and text.startswith(f"{section}\n"):
        return f"{where} ({section})", text[len(section) + 1 :].strip()
    return where, text


def _cells(line: str) -> list[str] | None:
    """A Markdown table row's cells, or None for a line that is no row."""
    row = line.strip()
    if "|" not in row:
        return None
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip() for cell in _CELL_BORDER.split(row)]


def tables_as_records(text: str) -> str:
    """Each row of a Markdown table written as one line that names its columns.

    "| 视频会议录像 | 90 天 |" under "| 数据类型 | 保留期限 |" becomes
    "数据类型：视频会议录像；保留期限：90 天".
    The packaged 0.5B misreads grids: over the 11 spent evaluation sets it answered 7 of the 34
    questions whose evidence is a table row right (103 of 254 others), and 15 of the 27 with that row
    in its passages wrongly, with values from other cells ("3 天" for that row, whose neighbours say
    3 年). With rows as records it answered 9 of the 34 right, 113 of 288 in all instead of 110, and
    refused as many unanswerable questions (docs/BENCHMARKS.md). Only what the LLM reads changes:
    the stored chunk, its citations and its sources keep the grid.
    A row whose cells do not match the head's is left as it is.
    """
    lines = text.split("\n")
    records: list[str] = []
    at = 0
    while at < len(lines):
        head = _cells(lines[at]) if at + 1 < len(lines) and TABLE_RULE.match(lines[at + 1]) else None
        end = at + 2
        while head and end < len(lines) and _cells(lines[end]) is not None:
            end += 1
        if not head or len(head) < 2 or end == at + 2:
            records.append(lines[at])
            at += 1
            continue
        colon, between = ("：", "；") if CJK.search("\n".join(lines[at:end])) else (": ", "; ")
        for line in lines[at + 2 : end]:
            cells = _cells(line) or []
            if len(cells) != len(head):
                records.append(line)
                continue
            pairs = [(label, value) for label, value in zip(head, cells, strict=True) if value]
            records.append(between.join(f"{name}{colon}{value}" if name else value for name, value in pairs))
        at = end
    return "\n".join(records)


def format_context(prompts_dir: Path, language: str, documents: list[Document]) -> str:
    """Number the chunks from 1 in the order given; the numbers are what the answer cites.

    The LLM reads them folded (``rag.chinese_text``: Simplified script, half-width letters), as
    retrieval did: over the evaluation corpus written in Traditional script the packaged model answered
    96 of 288 questions right from the passages as stored, against 113 from the same passages in
    Simplified script (docs/BENCHMARKS.md). Sources and citations still show the stored text.
    """
    template = read_prompt(prompts_dir, language, "source")
    passages = [tuple(map(fold, located_text(document))) for document in documents]
    return "\n\n".join(
        template.format(
            index=number,
            location=quote_untrusted(where),
            text=quote_untrusted(tables_as_records(omit_instructions(text))),
        )
        for number, (where, text) in enumerate(passages, start=1)
    )
