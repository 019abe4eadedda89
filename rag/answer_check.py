"""Withdrawing a finished answer that answers nothing, so the user gets the refusal instead.

Retrieval decides most refusals before the LLM is asked (rag.chain). What gets past it and still
answers nothing comes, with the packaged 0.5B, in three shapes, all read from evaluation answers:

- **the question restated**, its citation marker standing where the value should be: "采购部负责人叫
  [1]。", "根据资料，年终奖一般在 [1] 月份发放。", "[1]." — asked what, who, when or how many, it
  names no word the question did not already have (a question offering a choice, "A or B?", is
  exempt: its answer is one of its words);
- **a heading path** copied from the passages' source lines: "星帆监控平台发布说明 > 升级说明";
- **a number from nowhere**: "星帆的手机 App 最低支持 iOS 版本 13.0。" for a question the documents do
  not answer, the number in none of the passages (nor in the question). Passages' numbers are read
  in digits, Chinese numerals ("十五天" holds 15), small English number words and ordinals ("three
  days", "the first two hours") and times of day on either clock ("15:00" is "3 p.m.");
- **a worked example's answer**: the English prompt shows two example exchanges as earlier turns,
  and where the passages lack the answer the model now and then answers with the example's own
  ("Up to three days at a time [1].", "On the first Monday of each month [1]."), whose words come
  from the example rather than from any retrieved passage.

None of them can be right, so each is withdrawn once complete: where the answer is returned whole
(``ask --json``, the API without streaming, ``rag eval``) the refusal replaces it; where it was
streamed, the final event says so and carries the refusal, and the web UI swaps it in. The checks are
word sets (the keyword index's tokens, jieba for Chinese), cheap and deterministic; the first never
fires on a yes/no question ("可以吗？" answered "可以。"), and the last never when a retrieved passage
shares at least as many of the answer's words as the example does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.splitter import HEADING_SEPARATOR
from rag.chinese_text import fold
from rag.citations import MARKER
from rag.keyword_index import tokenize
from rag.language import CJK

# A sentence that ends as a question does.
_ENDS_AS_QUESTION = re.compile(r"[?？吗嗎呢]\W*$")
# A question that states something to confirm ("年假是5天？", "The bus leaves at 8:05?"): its own
# words, said back as a statement, answer it. "VPN地址？" states nothing.
_STATES_SOMETHING = re.compile(
    r"\d|是|有|\b(?:is|are|was|were|has|have|does|do|did|can|will)\b", re.IGNORECASE
)
# Question words: a question holding one asks for a value the answer has to add.
_ASKS_FOR_VALUE = re.compile(
    r"几|多少|什么|哪|谁|何时|怎么|怎样|如何|多久|多长|多大|多远|多高|多重"
    r"|\b(?:what|which|who|whom|whose|when|where|how|why)\b",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"还是|\bor\b", re.IGNORECASE)
# Lead-ins that carry no content ("根据资料，…", "Based on the information provided, …"), and verbs
# a restatement swaps for the question's ("has" for "have").
_LEAD_IN_WORDS = frozenset(
    tokenize(
        "根据资料 根据提供的资料 资料显示 信息 上下文 "
        "based on the context provided information according to the passages passage documents "
        "has have had"
    )
)
_NOT_TEXT = re.compile(r"[\W_]+")
# Of the answer's words, at least this share must come from one example for it to count as a copy.
_EXAMPLE_SHARE = 0.5

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?P<thousands>[kK](?![A-Za-z]))?")
# A time of day: "10:00", "9:30", "10 a.m.", "3pm", "3:30 PM" (not "2:1", a ratio, nor 12:00:00's seconds).
_CLOCK_TIME = re.compile(
    r"(?<![\d:.])(?:(?P<hour>1[0-2]|0?[1-9])(?::(?P<minute>[0-5]\d))?\s*(?:[ap]\.?\s?m\b\.?)"
    r"|(?P<hour24>[01]?\d|2[0-3]):(?P<minute24>[0-5]\d))(?![\d:])",
    re.IGNORECASE,
)
_CHINESE_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万]+")
_CHINESE_DIGITS = dict(zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000}
_ENGLISH_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_ENGLISH_NUMBERS = dict(zip(_ENGLISH_WORDS.split(), range(21), strict=True)) | {
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_ORDINALS = dict(
    zip(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split(),  # noqa: SIM905
        range(1, 13),
        strict=True,
    )
)
_ORDINAL = re.compile(r"\b(?:" + "|".join(_ORDINALS) + r")\b", re.IGNORECASE)
_ENGLISH_NUMBER = re.compile(r"\b(?:" + "|".join(_ENGLISH_NUMBERS) + r")\b", re.IGNORECASE)

RESTATES_QUESTION = "restates the question without adding an answer"
INVENTED_NUMBER = "states a number that none of the passages holds"
HEADING_PATH = "is only a heading path of a passage"
COPIES_EXAMPLE = "repeats a worked example of the prompt, not the passages"


@dataclass(frozen=True)
class Withdrawal:
    """Why an answer was withdrawn, what it was, and what replaces it (the refusal)."""

    reason: str
    original: str
    replacement: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "original": self.original, "replacement": self.replacement}


def _words(text: str) -> set[str]:
    return set(tokenize(MARKER.sub(" ", text))) - _LEAD_IN_WORDS


def _squashed(text: str) -> str:
    return _NOT_TEXT.sub("", MARKER.sub("", text)).lower()


def _asks_for_value(questions: Sequence[str]) -> bool:
    """A question word, and no choice offered ("A or B?": the answer is one of the question's words)."""
    return any(_ASKS_FOR_VALUE.search(q) for q in questions) and not any(_CHOICE.search(q) for q in questions)


def _all_asked(words: set[str], asked: set[str], questions: Sequence[str]) -> bool:
    """Every answer word is one of the question's; a Chinese one may be part of one ("天" of "几天"),
    since jieba cuts the same characters differently in the two sentences."""
    asked_text = "".join(questions)
    return all(word in asked or (CJK.match(word) and word in asked_text) for word in words)


def _number(text: str) -> str:
    """A number's canonical spelling: "1,500" and "1500", "13.0" and "13" are the same number."""
    digits = text.replace(",", "")
    whole, _, fraction = digits.partition(".")
    fraction = fraction.rstrip("0")
    return (whole.lstrip("0") or "0") + (f".{fraction}" if fraction else "")


def _chinese_numeral(text: str) -> int:
    """十五 → 15, 二十五 → 25, 三千二百 → 3200, 两万 → 20000 (enough for what a passage spells out)."""
    total = section = digit = 0
    for char in text:
        if char in _CHINESE_DIGITS:
            digit = _CHINESE_DIGITS[char]
        elif char in _CHINESE_UNITS:
            section += (digit or 1) * _CHINESE_UNITS[char]
            digit = 0
        else:  # 万
            total += (section + digit or 1) * 10_000
            section = digit = 0
    return total + section + digit


def _clock_times(text: str) -> tuple[set[str], str]:
    """The times of day ``text`` writes, each as "H:MM" on a 12-hour clock ("10:00", "10 a.m." and
    "22:00" are all "10:00"), and ``text`` without them. Which half of the day is not checked: a
    passage's "15:00" is the answer's "3 p.m.", and telling a wrong half apart is not worth
    withdrawing a right answer for."""
    times: set[str] = set()

    def found(match: re.Match[str]) -> str:
        hour, minute = (
            match.group("hour") or match.group("hour24"),
            match.group("minute") or match.group("minute24"),
        )
        times.add(f"{int(hour) % 12}:{minute or '00'}")
        return " "

    return times, _CLOCK_TIME.sub(found, text)


def _stated_numbers(text: str) -> set[str]:
    """The numbers an answer states: times of day as "time H:MM", other numbers canonically
    ("1,500" and "1500", "1.2k" and "1200" are one number)."""
    times, rest = _clock_times(MARKER.sub(" ", text))
    return {f"time {time}" for time in times} | _digits(rest)


def _digits(text: str) -> set[str]:
    """The numbers written in digits, canonically; "1.2k" is 1200."""
    numbers = set()
    for match in _NUMBER.finditer(text):
        value = _number(match.group().rstrip("kK"))
        numbers.add(_number(f"{float(value) * 1000:.3f}") if match.group("thousands") else value)
    return numbers


def _held_numbers(text: str) -> set[str]:
    """Every number ``text`` holds, however it is written: also each time of day as its hour on
    either clock ("15:00" holds 15, 3 and "time 3:00"), and ordinals ("first" holds 1)."""
    times, _ = _clock_times(text)
    held = _digits(text)
    held.update(f"time {time}" for time in times)
    for time in times:
        hour = int(time.partition(":")[0])
        held.update({str(hour), str(hour + 12), str(hour or 12)})
    held.update(str(_chinese_numeral(match)) for match in _CHINESE_NUMERAL.findall(text))
    held.update(str(_ENGLISH_NUMBERS[match.lower()]) for match in _ENGLISH_NUMBER.findall(text))
    held.update(str(_ORDINALS[match.lower()]) for match in _ORDINAL.findall(text))
    return held


def withdrawal_reason(
    answer: str,
    *,
    questions: Sequence[str],
    sources: Sequence[dict[str, Any]],
    examples: Sequence[str] = (),
) -> str | None:
    """Why ``answer`` answers nothing, or None when it stands.

    ``questions``: the user's question and the standalone query it was rewritten into (a follow-up
    is answered in the query's words). ``examples``: the text (passages and answer) of each worked
    example the answer prompt showed. All are compared folded (``rag.chinese_text``): the question
    words and numerals below are Simplified, and a Traditional-script question gets its answer in
    Traditional script.
    """
    if not answer.strip():
        return None
    answer = fold(answer)
    questions = [fold(question) for question in questions]
    examples = [fold(example) for example in examples]
    sources = [
        {"text": fold(str(source.get("text") or "")), "section": fold(str(source.get("section") or ""))}
        for source in sources
    ]
    words = _words(answer)
    asked = set().union(*(_words(question) for question in questions))
    if _asks_for_value(questions) and _all_asked(words, asked, questions):
        return RESTATES_QUESTION
    squashed = _squashed(answer)
    if squashed and any(_squashed(q) == squashed for q in questions if _echoes(answer, q)):
        return RESTATES_QUESTION
    sections = [str(source.get("section") or "") for source in sources]
    if any(_squashed(section) == squashed for section in sections if section) or (
        HEADING_SEPARATOR in answer and words <= asked | set().union(*(_words(s) for s in sections))
    ):
        return HEADING_PATH
    stated = _stated_numbers(answer)
    if stated:
        held = set().union(*(_held_numbers(text) for text in questions))
        for source in sources:
            held |= _held_numbers(str(source.get("text") or ""))
        if stated - held:
            return INVENTED_NUMBER
    if words and examples:
        copied = max(len(words & _words(example)) for example in examples)
        found = max((len(words & _words(str(source.get("text") or ""))) for source in sources), default=0)
        if copied >= _EXAMPLE_SHARE * len(words) and copied > found:
            return COPIES_EXAMPLE
    return None


# The refusal sentences the answer prompts ask the model for (``prompts/*/answer.system.txt``) and
# kbqa's own (``prompts/*/refusal.txt``) begin with the first three, in either script once folded; a
# larger model words its refusal its own way ("The context does not mention…", "There is no
# information about…", "资料中未提及…"), and those count too. They are narrow on purpose, since an
# answer read as a refusal loses its sources: the subject is what the model was given ("The
# information does not include your salary [1]." answers), the verb says it holds nothing, and "no
# information" ends there or says about what ("No information is provided to third parties" answers).
_GIVEN = (
    r"(?:(?:the |this )?(?:provided |given )?(?:context|documents?|passages?|knowledge base|sources?)"
    r"(?: provided| given| above)?|(?:the )?(?:provided|given) (?:information|materials?))"
)
_SAYS_NOTHING_ABOUT = r"(?: (?:about|on|regarding|of|in|that)\b|[.,;。，]|$)"
_MODEL_REFUSALS = re.compile(
    r"not in the knowledge base|知识库中没有|the knowledge base does not contain"
    r"|" + _GIVEN + r" (?:does not|doesn't|do not|don't|did not|didn't) "
    r"(?:contain|mention|say|include|provide|specify|state|cover|address)\b"
    r"|there (?:is|are) no (?:relevant )?(?:information|mention|details?|data)"
    + _SAYS_NOTHING_ABOUT
    + r"|no (?:relevant )?information (?:is |was )?(?:available|provided|found|given)"
    + _SAYS_NOTHING_ABOUT
    + r"|i (?:do not|don't|cannot|can't|could not|couldn't) (?:know|find|answer|tell)\b"
    r"|(?:根据)?(?:所?(?:提供|给出|给定)的)?(?:资料|文档|上下文|段落|材料)(?:中|里)?"
    r"(?:并)?(?:没有|未|不包含|无)(?:提及|提到|包含|找到|相关|关于|说明|给出)"
    r"|(?:没有|未能?)(?:找到|提及|提到)(?:相关|有关)的?(?:信息|内容|资料|说明)"
    r"|无法(?:根据|从)(?:所?(?:提供|给出|给定)的)?(?:资料|文档|上下文|段落|材料|信息)|无法回答"
)


def is_refusal_turn(streamed: str, sources: Sequence[Any], withdrawn: Mapping[str, str] | None) -> bool:
    """A turn whose answer holds nothing from the documents: no passage passed the gate (or, for a
    greeting, none was searched), the answer was withdrawn, or the model wrote its refusal sentence.
    The API, the web UI and ``ask --json`` all report it from here."""
    return not sources or withdrawn is not None or reads_as_refusal(streamed)


_REFUSAL_WRAPPING = re.compile(
    r"^(?:[\s\"'“”‘’「」『』*_>]|抱歉[，,]?|对不起[，,]?|(?:i'?m )?sorry[,，]?(?: but)?)+"
)
_GOES_ON = re.compile(r"但|不过|\bbut\b|\bhowever\b")
_REFUSAL_LENGTH = 70  # characters: the refusal sentences are 13-66; more is an answer


def reads_as_refusal(answer: str) -> bool:
    """The model answered with the refusal sentence its prompt gives it, and nothing else: it found no
    answer in the passages it was shown, so they back nothing. Quotes, bold and a short apology
    around it do not matter; an answer that starts so but goes on ("知识库中没有2024年的数据，但2023年
    的是5天 [1]。") answers in part, and is not one."""
    text = _REFUSAL_WRAPPING.sub("", fold(answer).strip().lower())
    if not _MODEL_REFUSALS.match(text) or _GOES_ON.search(text):
        return False
    return not MARKER.search(text) or len(MARKER.sub("", text)) <= _REFUSAL_LENGTH


def _echoes(answer: str, question: str) -> bool:
    """Whether an answer in the question's own words gives it back rather than confirming it: it is
    itself a question, or the question states nothing to confirm (a URL, a code, a bare term)."""
    return bool(_ENDS_AS_QUESTION.search(answer)) or not (
        _ENDS_AS_QUESTION.search(question) and _STATES_SOMETHING.search(question)
    )


def final_answer(streamed: str, withdrawn: Mapping[str, str] | None) -> str:
    """What a turn answers: the refusal replacing a withdrawn answer, else the streamed text."""
    return withdrawn["replacement"] if withdrawn else streamed.strip()


def check_answer(
    answer: str,
    refusal: str,
    *,
    questions: Sequence[str],
    sources: Sequence[dict[str, Any]],
    examples: Sequence[str] = (),
) -> Withdrawal | None:
    """A ``Withdrawal`` replacing ``answer`` with ``refusal``, or None when the answer stands."""
    reason = withdrawal_reason(answer, questions=questions, sources=sources, examples=examples)
    if reason is None:
        return None
    return Withdrawal(reason=reason, original=answer.strip(), replacement=refusal)
