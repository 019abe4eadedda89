"""Names in a question that the passages found for it must mention for it to be answerable from them.

A question about the "Beijing office", "API v3" or "SSML tags" cannot be answered from passages that
never mention Beijing, v3 or SSML, however close they come in embedding space to the Hangzhou office or
API v2. Retrieval scores do not separate such on-topic questions from answerable ones (measured on the
evaluation set), and the 0.5B model, given the near passages, answers from them: the Hangzhou shuttle
times for the Beijing office. So the relevance gate also refuses a question that names something its
best passages do not contain (``rag.retrieval``).

Only terms that keep their spelling across languages and paraphrase count: Latin tokens with a digit
(``v3``, ``SEV1``, ``C3``), acronyms (``SSML``, ``VPN``), capitalised hyphenated compounds (``Wi-Fi``),
version numbers (``3.2.0``, and ``5.0`` where the question calls it a version: ``5.0 版本``,
``version 4.3``, ``升级到 4.1``), and in Chinese questions the place and organisation names jieba tags
(``北京``; not its person names: it tags verbs such as 容纳 as one, and not the common words its
dictionary also tags as places, such as 东西 "things" or 日志 "log": ``place_stopwords.txt``). Plain
capitalised English words do not count, nor do capitals English writes as words ("OK", "8 AM",
"ASAP", "the FAQ") (an English question's "Hangzhou" or "Lanjing Logistics" is
written in Chinese in a Chinese document), nor do other numbers (a question's "12,000 yuan" or "3.5
days" is the asker's own figure).

A place is also accounted for by a passage that covers places by category ("其他城市", "All other
cities"): a price table's row for other provincial capitals answers a question about Chengdu without
writing 成都, and only the model can tell.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from rag.chinese_text import fold
from rag.language import detect_language

_LATIN_TERM = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"[A-Za-z]+[0-9][A-Za-z0-9]*|[0-9]+[A-Za-z][A-Za-z0-9]*"  # v3, SEV1, C3, 4K
    r"|[A-Z]{2,}[0-9]*"  # API, SSML, XCE
    r"|[A-Z][a-z]*(?:-[A-Z][a-z]*)+"  # Wi-Fi
    r")(?![A-Za-z0-9])(?!\.\d)"  # not the v4 of v4.1: that is a version
)
# A version: three-part always, two-part only with a word saying it is one (a question's "3.5 days" is not).
_VERSION_TERM = re.compile(
    r"(?:版本|升级到|升级至|\bversion|\brelease|\bupgrade to|(?<![A-Za-z])v)\s*"
    r"(?P<named>\d+\.\d+(?:\.\d+)*)(?![\d.]*\d)"
    r"|(?<![\d.])(?P<dotted>\d+\.\d+\.\d+)(?![\d.]*\d)"
    r"|(?<![\d.])(?P<suffixed>\d+\.\d+)(?=\s*(?:版|version|release))",
    re.IGNORECASE,
)
_VERSION = re.compile(r"\d+(?:\.\d+)+")
# Capitalised words inside a sentence: names, in an English question ("the Shanghai office").
_CAPITALISED = re.compile(r"(?<![.?!:]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_NOT_NAMES = (  # capitalised in English, yet not names
    "monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays "
    "fridays saturdays sundays january february march april may june july august september october "
    "november december english chinese mandarin cantonese internet mr mrs ms dr christmas easter "
    "thanksgiving halloween"
)
_CAPITALISED_WORDS = frozenset(_NOT_NAMES.split())
_CHINESE_NAME_TAGS = frozenset({"ns", "nt"})  # jieba: place, organisation
_PLACE_CATEGORY = re.compile(
    r"(?:其他|其余|其它)[^，。；|\n]{0,6}(?:城市|地区|省|国家)"
    r"|\b(?:all\s+)?other\b[^.;|\n]{0,16}\b(?:cities|countries|regions)\b",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def _chinese_tagger() -> ModuleType:
    """jieba's part-of-speech tagger, loaded on first use (its model takes about a second).

    jieba's log level is kbqa's from ``rag.keyword_index``, which retrieval always imports first.
    """
    import jieba.posseg

    return jieba.posseg


@lru_cache(maxsize=1)
def _place_stopwords() -> frozenset[str]:
    """Common words that jieba's dictionary tags as places or organisations (one per line)."""
    path = Path(__file__).with_name("place_stopwords.txt")
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


# Capitals that English writes as ordinary words, not names: "Is it OK to…", "at 8 AM", "ASAP",
# "the FAQ". A knowledge base that can answer such a question need not write them.
_COMMON_CAPITALS = frozenset(
    "OK OKAY ASAP AM PM FAQ FAQS ID IDS ETA FYI TBD TBA RSVP DIY AKA ETC VS PS NB PLS THX".split()  # noqa: SIM905
)


_CLOCK = re.compile(r"\d{1,2}(?:am|pm)", re.IGNORECASE)  # "8AM" is a time, not a code


def _latin_terms(question: str) -> list[str]:
    return [
        match.group()
        for match in _LATIN_TERM.finditer(question)
        if match.group() not in _COMMON_CAPITALS and not _CLOCK.fullmatch(match.group())
    ]


def _versions(question: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in _VERSION_TERM.finditer(question)]


@lru_cache(maxsize=256)
def _places(question: str) -> tuple[str, ...]:
    """Place and organisation names in a Chinese question (none in another language).

    Cached: the gate asks for them twice per question (as terms, and to accept category rows), and
    jieba's tagger is the costly part of it.
    """
    if detect_language(question) != "zh":
        return ()
    stopwords = _place_stopwords()
    return tuple(
        pair.word
        for pair in _chinese_tagger().cut(question)
        if pair.flag in _CHINESE_NAME_TAGS and len(pair.word) >= 2 and pair.word not in stopwords
    )


def named_terms(question: str) -> list[str]:
    """The question's terms that a knowledge base able to answer it must contain, once each."""
    return list(dict.fromkeys([*_latin_terms(question), *_versions(question), *_places(question)]))


def unmentioned_term(
    question: str, passages: str, translation: str | None = None, *, english_passages: bool = False
) -> str | None:
    """The first of the question's named terms that ``passages`` neither write nor cover by category.

    An English question's capitalised names are checked through its Chinese ``translation``: a name
    the passages do not write in English ("Shanghai") counts as missing when the translation names
    a place or organisation they do not write either (上海). Either alone is too weak: Chinese
    passages write "Hangzhou" as 杭州, and the small model's translations keep half their words in
    English.

    An English question's acronym that its Chinese translation does not keep was translated: it is a
    word ("SMS", written 短信 in a Chinese passage), not a name (a Chinese translation keeps "SSML").

    With ``english_passages`` (every passage is in English), an English question's capitalised names
    must be written in them as they are asked, translation or not.
    """
    # A passage writes 廣州 or ｖ３ where the question writes 广州 or v3, and jieba's dictionary tags
    # places in Simplified script only.
    question, passages = fold(question), fold(passages)
    translation = fold(translation) if translation else translation
    places = set(_places(question))
    by_category = _PLACE_CATEGORY.search(passages) is not None
    into_chinese = translation and detect_language(question) == "en" and detect_language(translation) == "zh"
    chinese = translation if into_chinese else ""  # the Chinese translation of an English question
    translated_words: set[str] = set()
    if chinese:
        translated_words = {
            term for term in _latin_terms(question) if term.isalpha() and not mentions(chinese, term)
        }
    for term in named_terms(question):
        if term in translated_words:
            continue
        if not mentions(passages, term) and not (term in places and by_category):
            return term
    if chinese and not by_category:
        names = [match.group() for match in _CAPITALISED.finditer(question)]
        unknown = [name for name in names if not mentions(passages, name)]
        if unknown and any(not mentions(passages, place) for place in _places(chinese)):
            return unknown[0]
    if english_passages and not by_category and detect_language(question) == "en":
        return _unwritten_name(question, passages)
    return None


def _unwritten_name(question: str, passages: str) -> str | None:
    """The capitalised name of an English question when English passages write none of its names
    ("the hotel limit in London" over a table of Paris and Berlin): in English, a name is written as
    it is asked, so none of the translation's help is needed. A question naming several ("Outlook,
    Teams or Zoom") is kept if the passages write one of them, and a name counts as written when one
    of its words is ("the Travel Policy" over "travel expenses"), compared as keyword tokens
    ("Fridays" is "Friday"). Days, months, holidays and languages are capitalised words, not names;
    a hyphenated compound ("Wi-Fi") is checked as a term, not here."""
    from rag.keyword_index import tokenize  # a light import once retrieval runs; kept out of module load

    written = set(tokenize(passages))
    names = []
    for match in _CAPITALISED.finditer(question):
        if "-" in (question[match.start() - 1 : match.start()], question[match.end() : match.end() + 1]):
            continue
        words = [word for word in match.group().split() if word.lower() not in _CAPITALISED_WORDS]
        if not words:
            continue
        if set(tokenize(" ".join(words))) & written:
            return None
        names.append(" ".join(words))
    return names[0] if names else None


@lru_cache(maxsize=256)
def _mention_pattern(term: str) -> re.Pattern[str]:
    if _VERSION.fullmatch(term):  # 4.1 is in 4.1.0 and v4.1, not in 14.1 or 4.10
        return re.compile(rf"(?<![\d.]){re.escape(term)}(?!\d)")
    parts = [re.escape(part) for part in term.split("-")]
    body = r"[-\s]?".join(parts)  # Wi-Fi, WiFi, Wi Fi
    if term.isascii():  # whole tokens only: "V3" is not in "SEV3"
        body = rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"
    return re.compile(body, re.IGNORECASE)


_INNER_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")


def mentions(text: str, term: str) -> bool:
    """Whether ``text`` writes ``term``, in any letter case, with or without hyphens: the question's
    "WIFI" is the passage's "Wi-Fi", as the question's "Wi-Fi" is the passage's "WiFi"."""
    pattern = _mention_pattern(term)
    return pattern.search(text) is not None or pattern.search(_INNER_HYPHEN.sub("", text)) is not None
