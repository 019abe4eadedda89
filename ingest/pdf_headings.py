"""A PDF's headings, told by their font size or by its outline, so its chunks know their section as
Word's and HTML's do.

A PDF's text keeps no heading marks: "住宿标准" over a paragraph is only a line set larger than the
body text. pypdf reports the size of each piece of text it reads (its ``visitor_text``), at no cost
beyond the reading itself, so a line set clearly larger than the document's body text, short and
not ending a sentence, is taken for a heading; its level is the rank of its size among the headings'
sizes.

Many PDFs also carry an outline (the bookmarks a viewer shows beside the page): Word writes one from
its heading styles, LaTeX from its sections. It names each heading, its depth and its page, also
where the heading is set in bold at the body size, which sizes cannot tell, and for every level a
document has, where sizes may set two levels alike.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from ingest.pdf_tables import is_table_row

# A heading is set at least this much larger than the body text (Word: 11 pt body, 13-16 pt headings).
_LARGER = 1.15
_MAX_TITLE = 80  # characters; a longer line is a paragraph set large (a pull quote, a cover page blurb)
_SENTENCE_END = re.compile(r"[。！？；，、.!?;,:：]$")
_WORDS = re.compile(r"[^\W\d_]", re.UNICODE)  # a letter or a CJK character: not a bare page number
# When more of a document's lines than this look like headings, its "body" is not its text (slides,
# a form): no headings are marked rather than half the text.
_MOST = 0.4
# What may stand before an outline entry's title on its line: the number Word's list numbering or a
# LaTeX class prints and leaves out of the bookmark ("3.2", "第三章", "(二)", "A.", "Chapter 4").
_NUMBERING = re.compile(
    r"(?:chapter|section|part|appendix|附录)?"
    r"(?:第?[\d一二三四五六七八九十百零〇两]+(?:[.．][\d]+)*[编篇部分章节条]?|[(（][\d一二三四五六七八九十]+[)）]|[a-z]|[ivx]+)"
    r"[.、．:：)）]?"
)
# An outline is used when at least this share of its entries is found on the page it points to;
# below, its titles are not the document's (a converter's generic "Page 1", "Section 2").
_MATCHED = 0.5


class LineSizes:
    """Collects what ``PageObject.extract_text(visitor_text=...)`` reads, with the size it is set in."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, float]] = []

    def __call__(
        self, text: str, cm: Sequence[float], tm: Sequence[float], font: object, size: float
    ) -> None:
        # the font's size scaled by the text and graphics matrices' vertical axes
        scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
        self.pieces.append((text, abs(size * scale)))

    def lines(self, text: str) -> list[tuple[str, float]] | None:
        """(line, its largest size) for each line of ``text``, the page as pypdf read it; None when
        the pieces do not spell that text (then the page's lines are not judged)."""
        if "".join(piece for piece, _ in self.pieces) != text:
            return None
        sized: list[tuple[str, float]] = []
        line, largest = "", 0.0
        for piece, size in self.pieces:
            parts = piece.split("\n")
            for at, part in enumerate(parts):
                line += part
                if part.strip():
                    largest = max(largest, size)
                if at < len(parts) - 1:
                    sized.append((line, largest))
                    line, largest = "", 0.0
        sized.append((line, largest))
        return sized


def heading_levels(pages: dict[int, list[tuple[str, float]]]) -> dict[int, dict[str, int]]:
    """For each page, its heading lines (stripped) and their levels (1 = largest), given each page's
    (line, size) pairs. The body size is the one most characters of the document are set in."""
    weight: Counter[float] = Counter()
    for lines in pages.values():
        for line, size in lines:
            weight[round(size, 1)] += len(line.strip())
    if not weight:
        return {}
    body = weight.most_common(1)[0][0]
    found = {
        number: [
            (line.strip(), round(size, 1))
            for line, size in lines
            if size >= _LARGER * body
            and 0 < len(line.strip()) <= _MAX_TITLE
            and not is_table_row(line)
            and _WORDS.search(line)
            and not _SENTENCE_END.search(line.strip())
        ]
        for number, lines in pages.items()
    }
    count = sum(len(lines) for lines in found.values())
    if count > _MOST * sum(len(lines) for lines in pages.values()):
        return {}
    ranks = {
        size: level
        for level, size in enumerate(
            sorted({s for lines in found.values() for _, s in lines}, reverse=True), 1
        )
    }
    return {
        number: {title: min(ranks[size], 6) for title, size in lines}
        for number, lines in found.items()
        if lines
    }


def _squashed(text: str) -> str:
    return "".join(text.split()).casefold()


def outline_levels(
    outline: Sequence[tuple[int, int, str]], pages: dict[int, list[str]]
) -> dict[int, dict[str, int]]:
    """For each page, the lines (stripped) that entries of ``outline`` name and their levels (the
    entry's depth, 1 = top), in ``heading_levels``'s form; given the outline as (page, depth, title)
    entries and each page's lines. Nothing when less than half of the entries are found.

    An entry names the first line on its page that reads as its title, spacing and letter case
    aside, or as its title after a number (``_NUMBERING``).
    """
    if not outline:
        return {}
    found: dict[int, dict[str, int]] = {}
    matched = 0
    for number, depth, title in outline:
        wanted = _squashed(title)
        if not wanted:
            continue
        for line in pages.get(number, []):
            text = _squashed(line)
            if text == wanted or (
                text.endswith(wanted) and _NUMBERING.fullmatch(text[: len(text) - len(wanted)])
            ):
                found.setdefault(number, {})[line.strip()] = min(depth, 6)
                matched += 1
                break
    return found if matched >= _MATCHED * len(outline) else {}
