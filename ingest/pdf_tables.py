"""Ruled tables of a PDF page as Markdown rows, in place of the cell-per-line text pypdf gives.

pypdf reads a ruled table one cell per line ("城市\\n住宿标准\\n北京\\n600\\n…"), so a chunk of it says
neither which row a value is on nor what its column means, and the 0.5B answers such grids worst of
all (``rag.prompts.tables_as_records``). pdfplumber finds a table from the lines drawn around its
cells and gives it row by row; its rows replace the same text in pypdf's page, so everything outside
the tables reads exactly as before. A table found only by its text's alignment is not looked for:
that guess also takes columns of prose and two-column pages for tables.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A page's content draws lines or rectangles ("x y l", "x y w h re"): only then can it hold a ruled
# table. pypdf has the decoded stream at hand already, and pdfplumber takes 30-70 ms a page
# to parse one, so pages of plain text are not handed to it.
_PATH_OPERATOR = re.compile(rb"\d\s+(?:re|l)\s")
_CJK_EDGE = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
_DIGIT = re.compile(r"\d")
# More lines than this make a drawing (a floor plan, a chart), not a table page, and pdfplumber's
# search for cells takes ~0.1 s per 1,000 of them.
_MAX_PATHS = 10_000
_BOLD = ("bold", "black", "heavy", "demi", "simhei", "heiti")  # not YaHei, a body face too


def may_hold_table(content: bytes) -> bool:
    """Whether a page's decoded content stream draws the lines that a ruled table needs, and not so
    many that it is a drawing."""
    count = 0
    for _ in _PATH_OPERATOR.finditer(content):
        count += 1
        if count > _MAX_PATHS:
            return False
    return count > 0


def looks_like_table(cells: Sequence[Sequence[str | None]]) -> bool:
    """Whether pdfplumber's grid holds a table's text: two rows and two columns with text, and text
    in at least half the cells of those rows (a cell merged away, None, is not counted). Crossing
    lines of a drawing or a box around a paragraph make grids too, of one row or of empty cells."""
    rows = [row for row in cells if any(cell and cell.strip() for cell in row)]
    filled = [[bool(cell and cell.strip()) for cell in row if cell is not None] for row in rows]
    columns = {at for row in rows for at, cell in enumerate(row) if cell and cell.strip()}
    cells_seen = sum(len(row) for row in filled)
    return len(rows) >= 2 and len(columns) >= 2 and 2 * sum(map(sum, filled)) >= cells_seen


def _cell_text(cell: str | None) -> str:
    """A cell on one line: its wrapped lines joined (without a space between Chinese characters),
    and a "|" inside it escaped, since "|" separates the cells."""
    lines = [line.strip() for line in (cell or "").splitlines() if line.strip()]
    text = ""
    for line in lines:
        joiner = "" if not text or (_CJK_EDGE.match(text[-1]) and _CJK_EDGE.match(line[0])) else " "
        text += joiner + line
    return text.replace("|", "\\|")


def _bold(chars: Iterable[dict[str, Any]]) -> bool:
    names = [str(char.get("fontname", "")).lower() for char in chars if str(char.get("text", "")).strip()]
    return bool(names) and all(any(mark in name for mark in _BOLD) for name in names)


def has_head(rows: Sequence[Sequence[str]], first_row_bold: bool = False, others_bold: bool = False) -> bool:
    """Whether a table's first row names its columns. A PDF does not say so (HTML has ``<th>``, Word
    "Repeat as header row"), and a first row of data taken for a head would label every other row
    with its values. So it must look like one: set in a bold face that the rows under it are not,
    or heading a column of numbers without being a number itself ("住宿标准（元/晚）" over 600, 450).
    """
    first, rest = rows[0], rows[1:]
    if not rest or not all(first) or len(set(first)) < len(first):
        return False
    if first_row_bold and not others_bold:
        return True
    for column, label in enumerate(first):
        values = [row[column] for row in rest if column < len(row) and row[column]]
        if values and not _DIGIT.search(label) and all(_DIGIT.search(value) for value in values):
            return True
    return False


def markdown_rows(cells: Sequence[Sequence[str | None]], head: bool) -> list[str]:
    """A table's rows as bordered Markdown rows ("| a | b |"; a cell merged away stays empty, so
    every row keeps its columns), with the rule under the head when there is one."""
    rows = [[_cell_text(cell) for cell in row] for row in cells]
    lines = [f"| {' | '.join(row)} |" for row in rows if any(row)]
    return _headed(lines, len(rows[0])) if head else lines


def _headed(lines: list[str], columns: int) -> list[str]:
    """Table rows with the Markdown rule under the first, which names the columns."""
    return [lines[0], "| " + " | ".join(["---"] * columns) + " |", *lines[1:]] if len(lines) > 1 else lines


def is_table_row(line: str) -> bool:
    """Whether a line of a PDF page is one of ``markdown_rows``' rows (or their rule)."""
    return line.lstrip().startswith("|")


def _squeezed(text: str) -> tuple[str, list[int]]:
    """``text`` without whitespace, and where each of its characters is in ``text``."""
    kept = [(at, char) for at, char in enumerate(text) if not char.isspace()]
    return "".join(char for _, char in kept), [at for at, _ in kept]


def replace_table(
    text: str, cells: Sequence[Sequence[str | None]], rows: list[str], start: int = 0
) -> tuple[str, int]:
    """``text`` with the run of lines that spells out ``cells`` (whitespace aside, in reading order)
    replaced by ``rows``, and where the search for the next table may begin; ``text`` unchanged and
    ``start`` when pypdf's text does not hold the table's cells in that order."""
    squeezed, where = _squeezed(text)
    wanted = "".join("".join((cell or "").split()) for row in cells for cell in row)
    first = next((at for at, offset in enumerate(where) if offset >= start), len(where))
    found = squeezed.find(wanted, first) if wanted else -1
    if found < 0:
        return text, start
    begin, end = where[found], where[found + len(wanted) - 1] + 1
    line_start = text.rfind("\n", 0, begin) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    before = text[:begin] if text[line_start:begin].strip() else text[:line_start]
    after = text[end:] if text[end:line_end].strip() else text[line_end:]
    block = "\n".join(rows)
    before, after = before.rstrip(" \t"), after.lstrip(" \t")
    before = before if not before or before.endswith("\n") else before + "\n"
    after = after if not after or after.startswith("\n") else "\n" + after
    return before + block + after, len(before) + len(block)


# A table that ends this close to the foot of its page (a fraction of the page's height), followed
# by one this close to the top of the next, is one table broken by the page break.
_PAGE_EDGE = 0.25


@dataclass
class _Open:
    """The last table of the page before: its head rows (head and rule) and column count."""

    head: list[str]
    columns: int


def with_tables(path: Path, texts: dict[int, str]) -> dict[int, str]:
    """The pages of ``texts`` (page number → pypdf's text) that hold ruled tables, their tables as
    Markdown rows; pages without one are not in the result. A table that pypdf's text does not hold
    cell for cell is left as pypdf read it. Failing here never fails the file: pypdf has read it."""
    import pdfplumber

    found: dict[int, str] = {}
    try:
        with pdfplumber.open(path) as pdf:
            running: _Open | None = None
            for number, text in texts.items():
                page = pdf.pages[number - 1]
                try:
                    replaced, running = _page_with_tables(
                        page, text, running if number - 1 in texts else None
                    )
                finally:
                    page.close()
                if replaced != text:
                    found[number] = replaced
    except Exception as error:  # a parser other than pypdf may choke where pypdf did not
        log.warning(
            "%s: tables not read (%s: %s); its text is kept as read", path.name, type(error).__name__, error
        )
    return found


def _page_with_tables(page: Any, text: str, running: _Open | None) -> tuple[str, _Open | None]:
    """The page's text with its tables as rows, and the table it leaves open at its foot, if any.

    ``running`` is the table the page before left open: a first table at the top of this page with
    as many columns and no head of its own goes on with it, and gets its head, as a table whose
    head row the PDF repeats on each page does (the splitter repeats it in each chunk).
    """
    start = 0
    left_open: _Open | None = None
    grids = [(table, table.extract()) for table in page.find_tables()]
    tables = [(table, cells) for table, cells in grids if looks_like_table(cells)]
    for at, (table, cells) in enumerate(tables):
        # (a row's text, whether it is set in bold) for the rows with text, top to bottom
        rows = [
            (
                [_cell_text(cell) for cell in row],
                box is not None and _bold(page.crop(box, strict=False).chars),
            )
            for row, box in zip(cells, (row.bbox for row in table.rows), strict=False)
        ]
        rows = [(texts, bold) for texts, bold in rows if any(texts)]
        head = has_head(
            [texts for texts, _ in rows],
            first_row_bold=rows[0][1],
            others_bold=any(bold for _, bold in rows[1:]),
        )
        top, bottom = table.bbox[1] - page.bbox[1], page.bbox[3] - table.bbox[3]
        near_top = at == 0 and top < _PAGE_EDGE * page.height
        carried = running.head if running and near_top and running.columns == len(cells[0]) else None
        lines = markdown_rows(cells, head=False)
        head = head or (carried is not None and lines[0] == carried[0])  # the PDF repeats its head
        if head:
            lines = _headed(lines, len(cells[0]))
        elif carried is not None:
            lines, head = [*carried, *lines], True
        if at == len(tables) - 1 and head and bottom < _PAGE_EDGE * page.height:
            left_open = _Open(lines[:2], len(cells[0]))
        text, start = replace_table(text, cells, lines, start)
    return text, left_open
