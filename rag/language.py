"""Which language a question is in, so the answer and its prompt can follow it."""

from __future__ import annotations

import re

CJK = re.compile(  # Han characters
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)
_LATIN = re.compile(r"[A-Za-z]+")


def detect_language(text: str) -> str:
    """'zh' when Chinese characters carry the text, else 'en'.

    Chinese questions often hold English terms ("RAG 是什么"), so any real share of Han characters
    wins: one Han character weighs about as much as one English word.
    """
    han = len(CJK.findall(text))
    words = len(_LATIN.findall(text))
    return "zh" if han and han >= 0.5 * words else "en"
