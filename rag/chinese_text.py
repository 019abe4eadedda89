"""Chinese text as kbqa matches it (one script, one width) and as it writes an answer back.

A Taiwan or Hong Kong document writes 員工請假 where a mainland question writes 员工请假, and text typed
with a full-width input method writes ＡＰＩ ｖ３ and １５天 where another writes API v3 and 15天: jieba
and the BM25 tokenizer cut different tokens (full-width letters and digits none at all), and the
named-terms gate (``rag.named_terms``) sees a question's 广州 or v3 missing from passages that write
廣州 or ｖ３. Every text kbqa matches (what the embedders, the companion and the reranker read, keyword
tokens, named terms, citation overlap, ``rag eval``'s evidence and keywords) therefore goes through
``fold`` first; the stored chunk text stays exactly as the document wrote it. OpenCC's phrase-aware
``t2s`` conversion is used rather than a character table, which gets one-to-many characters wrong
(乾隆 stays 乾隆, 乾燥 becomes 干燥).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import opencc

from rag.language import CJK

# Full-width letters, digits and the marks inside versions and compounds (３．２, Ｗｉ－Ｆｉ) to ASCII,
# the ideographic space to a space. Full-width punctuation (，：？) is Chinese punctuation: left alone.
_HALF_WIDTH = str.maketrans(
    {chr(code + 0xFEE0): chr(code) for code in range(0x21, 0x7F) if chr(code).isalnum() or chr(code) in ".-_"}
    | {"\u3000": " "}
)


def fold(text: str) -> str:
    """``text`` as kbqa matches it: Simplified script, half-width letters and digits."""
    if text.isascii():
        return text
    return to_simplified(text.translate(_HALF_WIDTH))


def bare(text: str) -> str:
    """``text`` folded and case-folded, letters, digits and characters only: how two short phrases
    compare when script, width, case, spacing and punctuation may differ freely."""
    return "".join(char for char in fold(text).casefold() if char.isalnum())


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


@lru_cache(maxsize=1024)
def script_of(text: str) -> Literal["traditional", "simplified"] | None:
    """The script ``text`` is written in: the one whose conversion changes fewer of its characters.
    None when both change as many (中文 and 年假 read the same in both scripts) or it has no Han
    characters. Cached: a chat turn asks it of the same question several times."""
    if not CJK.search(text):
        return None
    to_simplified_changes = _changed(text, to_simplified(text))
    to_traditional_changes = _changed(text, to_traditional(text))
    if to_simplified_changes == to_traditional_changes:
        return None
    return "traditional" if to_simplified_changes > to_traditional_changes else "simplified"


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
