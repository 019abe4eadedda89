"""Prompt templates kept as text files under ``prompts/<language>/`` so they can be edited without code."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate

LANGUAGES = ("zh", "en")

# "<" that would open or close the <context> block, and the "<|" / "|>" of chat-template tokens such as
# Qwen's <|im_start|>, which the LLM server would otherwise read as a real turn boundary.
_FORGEABLE = re.compile(r"<(?=\s*/?\s*context\b)|<(?=\|)|(?<=\|)>", re.IGNORECASE)


@lru_cache(maxsize=64)
def read_prompt(prompts_dir: Path, language: str, name: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"no prompts for language {language!r}; have {', '.join(LANGUAGES)}")
    path = prompts_dir / language / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} is missing")
    return path.read_text(encoding="utf-8").strip()


def answer_prompt(prompts_dir: Path, language: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", read_prompt(prompts_dir, language, "answer.system")),
            ("human", read_prompt(prompts_dir, language, "answer.user")),
        ]
    )


def format_location(source: object, page: object) -> str:
    """'file p.N' for paginated sources, else the file alone."""
    return f"{source} p.{page}" if page is not None else str(source)


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


def format_context(prompts_dir: Path, language: str, documents: list[Document]) -> str:
    """Number the chunks from 1 in the order given; the numbers are what the answer cites."""
    template = read_prompt(prompts_dir, language, "source")
    return "\n\n".join(
        template.format(
            index=number,
            location=quote_untrusted(location(document)),
            text=quote_untrusted(document.page_content.strip()),
        )
        for number, document in enumerate(documents, start=1)
    )
