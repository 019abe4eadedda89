"""A PDF's headings, told by their font size or by its outline, so its chunks know their section as
Word's and HTML's do.

A PDF's text keeps no heading marks: "住宿标准" over a paragraph is only a line set larger than the
body text. pypdf reports the size of each piece of text it reads (its ``visitor_text``), at no cost
beyond the reading itself, so a line set clearly larger than the document's body text, short and
not ending a sentence, is taken for a heading; its level is the rank of its size among the headings'
sizes. A line set wholly in bold at the body size is one too, ranked below the larger ones, unless
bold is how much of the body text is set: Word users style headings bold as often as larger.

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
from typing import Any

from ingest.pdf_tables import is_table_row

# A heading is set at least this much larger than the body text (Word: 11 pt body, 13-16 pt headings).
_LARGER = 1.15
_MAX_TITLE = 80  # characters; a longer line is a paragraph set large (a pull quote, a cover page blurb)
_SENTENCE_END = re.compile(r"[。！？；，、.!?;,:：]$")
_WORDS = re.compile(r"[^\W\d_]", re.UNICODE)  # a letter or a CJK character: not a bare page number
# When more of a document's lines than this look like headings, its "body" is not its text (slides,
# a form): no headings are marked rather than half the text.
_MOST = 0.4
# A font's name says bold: "Arial-BoldMT", "SimSun,Bold", "SourceHanSansCN-Heavy", "Roboto-Black".
_BOLD_NAME = re.compile(r"bold|heavy|black", re.IGNORECASE)
_BOLD_WEIGHT = 600  # a font descriptor's /FontWeight from semibold up
# Bold marks headings only where little of the body-size text is bold; beyond this share it is the
# document's emphasis, or its body font.
_BOLD_SHARE = 0.25
# A bold line this long, of its page's longest, filled the width: a bold paragraph wrapped there, as
# ``ingest.loaders.unwrap_lines`` judges a line break.
_FULL_LINE = 0.75
# On a scan, a line is a heading when its OCR box is this much taller than the body text's: box
# heights vary with the glyphs and brackets in a line (body lines 12.5-15 pt for 11.5 pt text, 17.5
# for a short English one), headings printed at 15-20 pt measure 18-23 pt.
_SCAN_LARGER = 1.3
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


def is_bold(font: Any) -> bool:
    """Whether a pypdf font resource is a bold face, by its name or its descriptor's weight (of a
    composite font, its descendant's); a font that cannot be read is not."""
    try:
        font = font.get_object()
        if _BOLD_NAME.search(str(font.get("/BaseFont", ""))):
            return True
        descendants = font.get("/DescendantFonts")
        face = descendants.get_object()[0].get_object() if descendants else font
        descriptor = face.get("/FontDescriptor")
        weight = descriptor.get_object().get("/FontWeight") if descriptor else None
        return weight is not None and float(weight) >= _BOLD_WEIGHT
    except Exception:  # a damaged font dictionary: its text was read, its weight is unknown
        return False


class LineSizes:
    """Collects what ``PageObject.extract_text(visitor_text=...)`` reads, with the size it is set in
    and whether its font is bold."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, float, bool]] = []
        self._bold: dict[int, bool] = {}  # by the font resource's id: a page sets few fonts

    def __call__(
        self, text: str, cm: Sequence[float], tm: Sequence[float], font: object, size: float
    ) -> None:
        # the font's size scaled by the text and graphics matrices' vertical axes
        scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
        if id(font) not in self._bold:
            self._bold[id(font)] = font is not None and is_bold(font)
        self.pieces.append((text, abs(size * scale), self._bold[id(font)]))

    def lines(self, text: str) -> list[tuple[str, float, bool]] | None:
        """(line, its largest size, whether all of it is bold) for each line of ``text``, the page as
        pypdf read it; None when the pieces do not spell that text (then its lines are not judged)."""
        if "".join(piece for piece, _, _ in self.pieces) != text:
            return None
        sized: list[tuple[str, float, bool]] = []
        line, largest, bold = "", 0.0, True
        for piece, size, piece_bold in self.pieces:
            parts = piece.split("\n")
            for at, part in enumerate(parts):
                line += part
                if part.strip():
                    largest = max(largest, size)
                    bold = bold and piece_bold
                if at < len(parts) - 1:
                    sized.append((line, largest, bold and bool(line.strip())))
                    line, largest, bold = "", 0.0, True
        sized.append((line, largest, bold and bool(line.strip())))
        return sized


def heading_levels(pages: dict[int, list[tuple[str, float, bool]]]) -> dict[int, dict[str, int]]:
    """For each page, its heading lines (stripped) and their levels (1 = largest), given each page's
    (line, size, bold) triples. The body size is the one most characters of the document are set in."""
    weight: Counter[float] = Counter()
    for lines in pages.values():
        for line, size, _ in lines:
            weight[round(size, 1)] += len(line.strip())
    if not weight:
        return {}
    body = weight.most_common(1)[0][0]
    bold_body = sum(
        len(line.strip())
        for lines in pages.values()
        for line, size, bold in lines
        if bold and round(size, 1) == body
    )
    bold_marks = bold_body <= _BOLD_SHARE * weight[body]

    def bold_title(line: str, size: float, bold: bool, full: float) -> bool:
        return bold_marks and bold and round(size, 1) >= body and len(line.strip()) < full

    longest = {
        number: max((len(line.strip()) for line, _, _ in lines), default=0) for number, lines in pages.items()
    }
    found = {
        number: [
            (line.strip(), round(size, 1))
            for line, size, bold in lines
            if (size >= _LARGER * body or bold_title(line, size, bold, _FULL_LINE * longest[number]))
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


def scan_heading_levels(pages: dict[int, list[tuple[str, float]]]) -> dict[int, dict[str, int]]:
    """For each scanned page, its heading lines (stripped), all at level 1, given each page's (line,
    OCR box height) pairs: a line clearly taller than the body text that is short and does not end a
    sentence. Box heights tell a heading but not its depth (a 20 pt title measured as a 17 pt
    heading does), so all are one level, as bold headings are."""
    heights = sorted(
        (height, len(line.strip())) for lines in pages.values() for line, height in lines if line.strip()
    )
    total = sum(weight for _, weight in heights)
    if not total:
        return {}
    seen, body = 0, heights[0][0]
    for height, weight in heights:  # the median height, by characters: the body text's
        seen += weight
        if seen >= total / 2:
            body = height
            break
    found = {
        number: [
            line.strip()
            for line, height in lines
            if height >= _SCAN_LARGER * body
            and 0 < len(line.strip()) <= _MAX_TITLE
            and not is_table_row(line)
            and _WORDS.search(line)
            and not _SENTENCE_END.search(line.strip())
        ]
        for number, lines in pages.items()
    }
    if sum(len(titles) for titles in found.values()) > _MOST * sum(len(lines) for lines in pages.values()):
        return {}
    return {number: dict.fromkeys(titles, 1) for number, titles in found.items() if titles}


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
