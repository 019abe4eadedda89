"""Which language a question is in, so the answer and its prompt can follow it."""

from __future__ import annotations

import re

CJK = re.compile(  # Han characters
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)
_LATIN = re.compile(r"[A-Za-z]+")
# The words that frame a sentence rather than name things: a question's language is theirs. English
# questions quote Chinese terms ("What is 调休?") and Chinese ones English terms ("RAG 是什么？");
# the terms say nothing about which language the asker reads.
_ENGLISH_FRAME_WORDS = (
    "what which who whom whose when where why how is are was were am do does did can could "
    "should would will shall may might must the a an of to in on at for with from by about and "
    "or not no there this that these those it its i you we they he she my your our their me us "
    "them"
)
_ENGLISH_FRAME = frozenset(_ENGLISH_FRAME_WORDS.split())
_CHINESE_FRAME = re.compile(  # Simplified and Traditional forms
    r"[什甚][么麼]|怎[么麼样樣]|如何|[为為]什[么麼]|多少|哪|[几幾]|[谁誰]|[吗嗎]|呢|吧|的|了|是|在|有|和|[与與]|或|"
    r"[请請]|能|可以|需要|要|[会會]|不|[没沒]|把|被|[给給]|[对對]|[从從]|到|按"
)


def detect_language(text: str) -> str:
    """A question's language, 'zh' or 'en': that of the words that frame it, else of most of its text.

    Frame words (English "what", "is", "the"...; Chinese 什么, 是, 的, 吗...) decide when one side has
    more of them; otherwise it is ``passage_language``.
    """
    words = _LATIN.findall(text)
    english = sum(word.lower() in _ENGLISH_FRAME for word in words)
    chinese = len(_CHINESE_FRAME.findall(text))
    if english != chinese:
        return "en" if english > chinese else "zh"
    return passage_language(text)


def passage_language(text: str) -> str:
    """'zh' when Chinese characters carry the text, else 'en' (what a chunk's ``language`` records).

    Chinese passages often hold English terms and code, so any real share of Han characters wins: one
    Han character weighs about as much as one English word.
    """
    han = len(CJK.findall(text))
    return "zh" if han and han >= 0.5 * len(_LATIN.findall(text)) else "en"
