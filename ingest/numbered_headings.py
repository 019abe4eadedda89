"""Headings told by their numbering ("第三章 休假", "第一节 年假", "一、总则", "（二）境外差旅").

Chinese regulations, handbooks and reports are mostly typed in Word without heading styles, kept as
.txt, or exported to PDF in one font size: nothing marks their headings but the numbering every such
document uses. Without it, a chunk cut from "第五章 试用期管理" reads "病假期间按基本工资的 60% 发放"
and says nothing of the probation it is about; with it, the chunk knows its chapter as a Markdown
file's chunk knows its section.

These numbering forms count: chapter-like ones (编/部分/篇, 章, 节, 条 followed by a title), outline
ones ("一、", "（一）"), and the decimal numbering of standards, specifications and design documents
("3 术语和定义", "5.2 供电系统", "5.2.1 不间断电源"). Arabic "1." alone numbers list items as often as
headings, in every language: decimal titles count only in a document that has at least two of the
"N.M" kind, which lists do not have.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_NUMERAL = r"(?P<number>[一二三四五六七八九十百零〇两]+|\d{1,3})"
_CHINESE_NUMERAL = r"(?P<number>[一二三四五六七八九十百零〇两]+)"
# Coarse to fine: the order in which such documents nest them. A document's levels are the ranks of
# the kinds it uses, so "一、" is level 1 in a report without chapters and level 3 under 章 and 节.
_KINDS = (
    re.compile(rf"^第{_NUMERAL}(?:编|部分|篇)(?:\s+|(?=[^\s\d]))"),
    re.compile(rf"^第{_NUMERAL}章(?:\s+|(?=[^\s\d]))"),
    re.compile(rf"^第{_NUMERAL}节(?:\s+|(?=[^\s\d]))"),
    re.compile(rf"^第{_NUMERAL}条(?:\s+|(?=[^\s\d]))"),
    re.compile(rf"^{_CHINESE_NUMERAL}[、．]\s*"),
    re.compile(rf"^[（(]{_CHINESE_NUMERAL}[）)]\s*"),
)
# "5", "5.", "5、" or "5.2.1" (components after the first from 1: "10.0.0.1" is an address), then a
# separator; a "N.M" number may run straight on to its title ("5.2供电系统"). Its depth is the number
# of components; depths rank below the Chinese kinds, as "第一章" does over "1.1".
_DECIMAL = re.compile(r"^(?P<number>\d{1,2}(?:\.[1-9]\d?){0,4})(?P<separator>[.、．](?!\d)\s*|\s+)?")
# What follows a quantity's number directly ("1.5倍", "2.5米", "3.5万元"), never a title's first word.
_MEASURE_WORDS = frozenset("倍米元万亿秒克吨瓦伏")
_DECIMAL_KIND = len(_KINDS)  # the kind of a depth-1 decimal title; depth d is kind _DECIMAL_KIND + d - 1
_MAX_TITLE = 30  # characters, number included; an article's sentence or a wrapped line is longer
_MAX_DOCUMENT_TITLE = 40  # the first line, when it is this short and no sentence, names the document
# A title has no sentence in it: an item that says something ("（一）迟到的，扣款 50 元；") is text.
_SENTENCE_MARK = re.compile(r"[。！？；，：,.!?;:]")
_WORDS = re.compile(r"[^\W\d_]")  # a title names something: not "第一章 3" in a table of contents
# When numbered titles hold more of a document's characters than this, it is a list or an outline,
# not sections of text. (Lines would mislead: an outline-style regulation's sections are often one
# long paragraph each, so its title lines are 40 % of its lines but 6 % of its text.)
_MOST = 1 / 3


_DIGITS = {character: value for value, character in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}


def _value(numeral: str) -> int:
    """The value of a Chinese numeral as documents number with ("十二", "二十", "一百零五") or of digits."""
    if numeral.isdigit():
        return int(numeral)
    total, digit = 0, 0
    for character in numeral:
        if character == "百":
            total, digit = total + (digit or 1) * 100, 0
        elif character == "十":
            total, digit = total + (digit or 1) * 10, 0
        else:
            digit = _DIGITS[character]
    return total + digit


def _title(line: str) -> tuple[int, tuple[int, ...]] | None:
    """(kind, number) of a line that reads as a numbered title: its numbering's index into ``_KINDS``
    (``_DECIMAL_KIND`` and after for decimal depths) and the number it gives ((5, 2, 1) for "5.2.1")."""
    if len(line) > _MAX_TITLE:
        return None
    for kind, pattern in enumerate(_KINDS):
        found = pattern.match(line)
        if found is not None:
            return _named(line[found.end() :], kind, (_value(found.group("number")),))
    found = _DECIMAL.match(line)
    if found is None:
        return None
    number = tuple(int(part) for part in found.group("number").split("."))
    if found.group("separator") is None and (
        len(number) < 2 or not _WORDS.match(line, found.end()) or line[found.end()] in _MEASURE_WORDS
    ):
        return None  # "2024年", "1.5倍工资" or "2.5米以上" is a quantity, not a numbered title
    return _named(line[found.end() :], _DECIMAL_KIND + len(number) - 1, number)


def _named(title: str, kind: int, number: tuple[int, ...]) -> tuple[int, tuple[int, ...]] | None:
    """(kind, number) when what follows the number is a title: it names something (not "第一章 3" in a
    table of contents) and holds no sentence."""
    if _SENTENCE_MARK.search(title) or not _WORDS.search(title):
        return None
    return kind, number


def _next(title: tuple[int, tuple[int, ...]], step: int) -> tuple[int, tuple[int, ...]]:
    """The title numbered ``step`` after ``title`` in its kind: (3, (5, 2)) → (3, (5, 3))."""
    kind, number = title
    return kind, (*number[:-1], number[-1] + step)


@dataclass(frozen=True)
class NumberedHeadings:
    """What ``numbered_headings`` found in a file's lines."""

    levels: dict[int, int] = field(default_factory=dict)  # line index → heading level (1 = coarsest)
    # Whether the titles include decimal ones ("5.2 供电系统"): such a file's sections are named in
    # its chunks' metadata only (``ingest.splitter``).
    decimal: bool = False


def numbered_headings(lines: Sequence[str], *, name_first: bool = True) -> NumberedHeadings:
    """The heading level of each line of ``lines`` (by index) that is a numbered title.

    A title is short, holds no sentence, and does not stand next to the title numbered one before or
    after it: "（一）填写申请单" followed by "（二）部门审批" is a list, and a table of contents is a
    list of chapters (the "第一章 总则" after it starts the text). With fewer than two titles, or
    titles holding more than ``_MOST`` of the text, none are marked.

    A first line that is short and no sentence is the document's name, level 1 over all the
    numbered parts, as a Markdown file's "# " title is: on the regulations set (docs/BENCHMARKS.md)
    the packaged 0.5B answered 22 of 85 questions right with it in each chunk's path, 20 without.
    Not with ``name_first`` false: a file whose name is already a heading.
    """
    filled = [(number, line.strip()) for number, line in enumerate(lines) if line.strip()]
    found = [_title(line) for _, line in filled]
    titles: dict[int, int] = {}
    for at, (number, _) in enumerate(filled):
        title = found[at]
        if title is None:
            continue
        before = found[at - 1] if at else None
        after = found[at + 1] if at + 1 < len(found) else None
        if before != _next(title, -1) and after != _next(title, 1):
            titles[number] = title[0]
    if sum(kind > _DECIMAL_KIND for kind in titles.values()) < 2:  # no "N.M" structure: "1." are items
        titles = {number: kind for number, kind in titles.items() if kind < _DECIMAL_KIND}
    titled = sum(len(lines[number].strip()) for number in titles)
    if len(titles) < 2 or titled > _MOST * sum(len(line) for _, line in filled):
        return NumberedHeadings()
    decimal = any(kind >= _DECIMAL_KIND for kind in titles.values())
    ranks = {kind: rank for rank, kind in enumerate(sorted(set(titles.values())), 1)}
    levels = {number: min(ranks[kind], 6) for number, kind in titles.items()}
    first, line = filled[0]
    named = len(line) <= _MAX_DOCUMENT_TITLE and _WORDS.search(line) and not _SENTENCE_MARK.search(line)
    if first not in titles and named and name_first:
        # the document's name ("星河云计算采购与供应商管理办法") heads the path of all its parts
        levels = {number: min(level + 1, 6) for number, level in levels.items()} | {first: 1}
    return NumberedHeadings(levels, decimal)
