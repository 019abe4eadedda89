"""Checking an answer's ``[n]`` markers against passage n.

A small model cites freely — a wrong number, or a number on a sentence the passage does not support.
Each marker is checked by lexical overlap: the content words (the keyword index's tokens) of the
sentence that carries it, against those of passage n. Cheap, deterministic and language-aware (jieba
for Chinese); a sentence sharing under ``min_overlap`` of its words with the passage is flagged, and
a marker pointing at no passage always is. The API returns the verdicts and the UI shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rag.keyword_index import tokenize

MARKER = re.compile(r"\[(\d{1,2})\]")  # a citation, "[n]"
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])|(?<=\.)\s")
# A period that ends no sentence: "U.K.", "e.g.", "Dr." (then the next word usually starts with a
# capital, so that alone cannot tell), or any period before a lower-case word ("approx. 30 seats").
_INITIALS = re.compile(r"(?:[A-Za-z]\.)+$")
_ABBREVIATION_WORDS = "mr mrs ms dr prof st no nos vs approx ca inc ltd co corp jr sr fig dept ext"
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# A bare verdict ("Yes [1].", "可以 [1]。") shares no word with the passage that backs it: it is not
# judged by its words (nothing left to judge counts as supported), the sentences around it are.
_VERDICT_WORDS = "yes no yeah nope correct right 是 是的 对 不 不是 可以 不可以 不能 能"
_VERDICTS = frozenset(_VERDICT_WORDS.split())


@dataclass(frozen=True)
class CitationCheck:
    index: int
    supported: bool
    overlap: float
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "supported": self.supported, "overlap": round(self.overlap, 3)}


def _sentences(answer: str) -> list[str]:
    """Sentences with their trailing markers kept ("... 33 seats [1]." stays one sentence).

    A sentence cut short at "U.K." would be judged by half its words, and its marker by none of them.
    """
    parts: list[str] = []
    for part in _SENTENCE_END.split(answer):
        if parts and _continues(parts[-1], part):
            parts[-1] += " " + part
        else:
            parts.append(part)
    parts = [part for part in parts if part and part.strip()]
    merged: list[str] = []
    for part in parts:
        if merged and MARKER.fullmatch(part.strip().rstrip("。.!?！？;；")):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def _continues(before: str, after: str) -> bool:
    """Whether the period ending ``before`` (split off ``after`` at a space) ends no sentence."""
    if not before.endswith(".") or not after[:1].strip():
        return False
    if after[0].islower():
        return True
    word = before.rsplit(None, 1)[-1]
    return bool(_INITIALS.fullmatch(word)) or word[:-1].lower() in _ABBREVIATIONS


def check_citations(
    answer: str, sources: list[dict[str, Any]], *, min_overlap: float = 0.5
) -> list[CitationCheck]:
    """One verdict per distinct (sentence, marker) pair, in answer order."""
    passages = {source["index"]: set(tokenize(source["text"])) for source in sources}
    checks: list[CitationCheck] = []
    for sentence in _sentences(answer):
        markers = [int(number) for number in MARKER.findall(sentence)]
        if not markers:
            continue
        words = set(tokenize(MARKER.sub(" ", sentence))) - _VERDICTS
        for index in dict.fromkeys(markers):
            passage = passages.get(index)
            if passage is None:
                checks.append(CitationCheck(index, False, 0.0, sentence.strip()))
                continue
            overlap = len(words & passage) / len(words) if words else 1.0
            checks.append(CitationCheck(index, overlap >= min_overlap, overlap, sentence.strip()))
    return checks
