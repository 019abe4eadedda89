"""Names in a question that the passages found for it must mention for it to be answerable from them.

A question about the "Beijing office", "API v3" or "SSML tags" cannot be answered from passages that
never mention Beijing, v3 or SSML, however close they come in embedding space to the Hangzhou office or
API v2. Retrieval scores do not separate such on-topic questions from answerable ones (measured on the
evaluation set), and the 0.5B model, given the near passages, answers from them: the Hangzhou shuttle
times for the Beijing office. So the relevance gate also refuses a question that names something its
best passages do not contain (``rag.retrieval``).

Only terms that keep their spelling across languages and paraphrase count: Latin tokens with a digit
(``v3``, ``SEV1``, ``C3``), acronyms (``SSML``, ``VPN``), capitalised hyphenated compounds (``Wi-Fi``),
and in Chinese questions the place and organisation names jieba tags (``北京``; not its person names:
it tags verbs such as 容纳 as one). Plain capitalised English words do not (an English question's
"Hangzhou" or "Lanjing Logistics" is written in Chinese in a Chinese document), nor do bare numbers (a
question's "12,000 yuan" is the asker's own figure).
"""

from __future__ import annotations

import re
from functools import lru_cache
from types import ModuleType

from rag.language import detect_language

_LATIN_TERM = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"[A-Za-z]+[0-9][A-Za-z0-9]*|[0-9]+[A-Za-z][A-Za-z0-9]*"  # v3, SEV1, C3, 4K
    r"|[A-Z]{2,}[0-9]*"  # API, SSML, XCE
    r"|[A-Z][a-z]*(?:-[A-Z][a-z]*)+"  # Wi-Fi
    r")(?![A-Za-z0-9])"
)
_CHINESE_NAME_TAGS = frozenset({"ns", "nt"})  # jieba: place, organisation


@lru_cache(maxsize=1)
def _chinese_tagger() -> ModuleType:
    """jieba's part-of-speech tagger, loaded on first use (its model takes about a second).

    jieba's log level is kbqa's from ``rag.keyword_index``, which retrieval always imports first.
    """
    import jieba.posseg

    return jieba.posseg


def named_terms(question: str) -> list[str]:
    """The question's terms that a knowledge base able to answer it must contain, in order, once each."""
    terms = [match.group() for match in _LATIN_TERM.finditer(question)]
    if detect_language(question) == "zh":
        terms += [
            pair.word
            for pair in _chinese_tagger().cut(question)
            if pair.flag in _CHINESE_NAME_TAGS and len(pair.word) >= 2
        ]
    return list(dict.fromkeys(terms))


@lru_cache(maxsize=256)
def _mention_pattern(term: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in term.split("-")]
    body = r"[-\s]?".join(parts)  # Wi-Fi, WiFi, Wi Fi
    if term.isascii():  # whole tokens only: "V3" is not in "SEV3"
        body = rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"
    return re.compile(body, re.IGNORECASE)


def mentions(text: str, term: str) -> bool:
    """Whether ``text`` writes ``term``, in any letter case, with or without its hyphens."""
    return _mention_pattern(term).search(text) is not None
