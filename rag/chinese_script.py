"""Traditional and Simplified Chinese folded into one script, so either finds the other.

A Taiwan or Hong Kong document writes 員工請假 where a mainland question writes 员工请假: jieba cuts
different tokens, BM25 finds no shared term, and the named-terms gate (``rag.named_terms``) sees a
question's 广州 missing from passages that say 廣州. Every text kbqa matches by its words (keyword
index and query, named terms, citation overlap) is therefore compared in Simplified script; the
stored chunk text stays exactly as the document wrote it. OpenCC's phrase-aware ``t2s`` conversion is
used rather than a character table, which gets one-to-many characters wrong (乾隆 stays 乾隆, 乾燥 becomes
干燥).
"""

from __future__ import annotations

from functools import lru_cache

import opencc

from rag.language import CJK


@lru_cache(maxsize=1)
def _traditional_to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """``text`` with Traditional characters in Simplified form; text without Han characters as it is."""
    if not CJK.search(text):
        return text
    return _traditional_to_simplified().convert(text)


@lru_cache(maxsize=1)
def _simplified_to_traditional() -> opencc.OpenCC:
    return opencc.OpenCC("s2tw")  # Taiwan's standard characters (為, 裡), the most widely read form


def to_traditional(text: str) -> str:
    """``text`` with Simplified characters in Traditional form (Taiwan standard); the rest as it is."""
    if not CJK.search(text):
        return text
    return _simplified_to_traditional().convert(text)


def is_traditional(text: str) -> bool:
    """Whether ``text`` is written in Traditional script: more of its characters change when it is
    folded to Simplified than when it is converted to Traditional. Text that reads the same in both
    (中文, 年假) counts as Simplified, the script the packaged model answers in."""
    if not CJK.search(text):
        return False
    return _changed(text, to_simplified(text)) > _changed(text, to_traditional(text))


def _changed(text: str, converted: str) -> int:
    if len(converted) != len(text):  # a phrase rule changed the length: count it as one change
        return 1 + sum(a != b for a, b in zip(text, converted, strict=False))
    return sum(a != b for a, b in zip(text, converted, strict=True))


class TraditionalStream:
    """An answer streamed in pieces, converted to Traditional script as it arrives.

    The conversion picks a character by its phrase (头发 → 頭髮, 发展 → 發展), and a piece may end in
    the middle of one, so a run of Han characters at a piece's end is held back until a character
    that ends it (punctuation, a space, Latin text) arrives, or it grows past ``HOLD``.
    """

    HOLD = 24  # characters; past it all but the last few are sent (a clause rarely runs longer)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        cut = len(text)
        while cut and CJK.match(text[cut - 1]):
            cut -= 1
        if len(text) - cut > self.HOLD:
            cut = len(text) - 4
        self._held = text[cut:]
        return to_traditional(text[:cut])

    def flush(self) -> str:
        held, self._held = self._held, ""
        return to_traditional(held)
