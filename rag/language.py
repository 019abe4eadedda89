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
_ENGLISH_QUESTION_WORDS = (
    "what which who whom whose when where why how is are was were am do does did can could should "
    "would will shall may might must"
)
_ENGLISH_FRAME = frozenset(
    (
        _ENGLISH_QUESTION_WORDS + " the an of to in on at for with from by about and or not no there "
        "this that these those it its you we they he she my your our their me us them"
    ).split()
)
_ENGLISH_QUESTION = re.compile(  # "What is", "What's", "Where’s"
    rf"^\W*(?:{'|'.join(_ENGLISH_QUESTION_WORDS.split())})(?:['’]s)?\s", re.IGNORECASE
)
# Only words that are frame words wherever they stand: single characters such as 在 or 会 also sit
# inside terms (在职证明, 会议室), which an English question may quote.
_CHINESE_FRAME = re.compile(  # Simplified and Traditional forms
    r"[什甚][么麼]|怎[么麼样樣]|如何|[为為]什[么麼]|多少|哪|[几幾]|[谁誰]|[吗嗎]|呢|吧|的|了|是|可以|需要|[请請]问"
)
_ENGLISH_WORD = re.compile(r"[A-Za-z][a-z]+")  # not an acronym ("IT", "OA") nor a letter ("A股")


def detect_language(text: str) -> str:
    """A question's language, 'zh' or 'en': that of the words that frame it, else ``passage_language``.

    Chinese frame words (什么, 是, 的, 吗...) win when there are at least as many as English ones
    ("RAG 是什么？", '"Do not reply" 是什么意思？'); English wins when the question opens with a
    question word ("What is 调休?", "Is 在职证明 needed?") or, failing that, holds two or more of its
    frame words ("the", "of", "my"...) and more than Chinese ones. Keyword queries ("IT部门电话",
    "On-call 轮值制度") have neither and go by their characters.
    """
    chinese = len(_CHINESE_FRAME.findall(text))
    english = sum(word.lower() in _ENGLISH_FRAME for word in _ENGLISH_WORD.findall(text))
    if chinese and chinese >= english:
        return "zh"
    if _ENGLISH_QUESTION.match(text) or english >= 2:
        return "en"
    return passage_language(text)


def passage_language(text: str) -> str:
    """'zh' when Chinese characters carry the text, else 'en' (what a chunk's ``language`` records).

    Chinese passages often hold English terms and code, so any real share of Han characters wins: one
    Han character weighs about as much as one English word.
    """
    han = len(CJK.findall(text))
    return "zh" if han and han >= 0.5 * len(_LATIN.findall(text)) else "en"
