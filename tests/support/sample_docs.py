"""Write real PDF and DOCX files for tests, and regenerate the binary files of ``knowledge/``.

Loader tests need genuine files produced by the same kind of tools users have (reportlab, python-docx),
not mocks of ``pypdf``/``docx``: the bugs worth catching live in the real parsing (page order, CJK font
encodings, tables). The writers are deterministic, so regenerating ``knowledge/`` from
``tests.support.knowledge_text`` gives byte-identical files and a clean ``git diff``::

    python -m tests.support.sample_docs            # rewrite knowledge/*.pdf and knowledge/*.docx
    python -m tests.support.sample_docs --out DIR  # write them somewhere else
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import docx
from docx.oxml import OxmlElement
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from tests.support.knowledge_text import DOCXS, PDFS

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE_DIR = REPO_ROOT / "knowledge"

# reportlab's built-in CID font: needs no font file and pypdf maps its glyphs back to Unicode.
CJK_FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
FONT_SIZE = 11
LEADING = 16
MARGIN = 56  # points; about 2 cm
# Fixed timestamp so regenerated DOCX files are byte-identical (python-docx stamps "now" otherwise).
FIXED_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

_CJK_CHAR = "\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
# A CJK character on its own, a run of other non-space characters with its trailing spaces, or spaces.
_TOKEN = re.compile(rf"[{_CJK_CHAR}]|[^\s{_CJK_CHAR}]+[ \t]*|[ \t]+")
# Punctuation that must not start a line; it hangs into the right margin instead.
_NO_LINE_START = set("，。、；：！？）》」』】,.;:!?)")

PathLike = str | os.PathLike[str]


def write_pdf(path: PathLike, pages: Sequence[str], *, cjk: bool = False, title: str | None = None) -> Path:
    """Write an A4 PDF with one page per string and return its path.

    Newlines in a page string start a new line (a blank line leaves a gap); longer lines are wrapped
    to the page width, at spaces for Latin text and between characters for Chinese. ``cjk=True`` sets
    the page in the built-in STSong-Light CID font, which is needed for any Chinese character.
    A page whose text does not fit raises ``ValueError`` rather than silently spilling onto an
    extra page, so a test can rely on ``len(pages)`` being the page count.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    font = register_cjk_font() if cjk else LATIN_FONT
    width, height = A4
    max_lines = int((height - 2 * MARGIN) // LEADING)
    # invariant=True drops the creation date and random document id: same input, same bytes.
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    if title:
        pdf.setTitle(title)
    pdf.setAuthor("kbqa test suite")
    for number, page in enumerate(pages, start=1):
        lines = wrap_text(page, font, FONT_SIZE, width - 2 * MARGIN)
        if len(lines) > max_lines:
            raise ValueError(f"page {number} needs {len(lines)} lines, only {max_lines} fit")
        text = pdf.beginText(MARGIN, height - MARGIN - FONT_SIZE)
        text.setFont(font, FONT_SIZE, leading=LEADING)
        for line in lines:
            text.textLine(line)
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()
    return path


def write_pdf_table(
    path: PathLike,
    before: str,
    rows: Sequence[Sequence[str]],
    after: str = "",
    *,
    cjk: bool = False,
    bold_head: bool = False,
    ruled: bool = True,
    repeat_head: bool = True,
) -> Path:
    """Write an A4 PDF: a paragraph, a table, a paragraph, as a word processor exports one. A table
    too long for a page goes on over the next, its first row repeated at the top of each unless not
    ``repeat_head``.

    ``ruled`` draws the grid around every cell (most exported tables have one); without it the
    cells are only aligned. ``bold_head`` sets the first row in Helvetica-Bold (Latin text only:
    reportlab has no bold CID font). A cell's "\\n" is a line break inside the cell.
    """
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    font = register_cjk_font() if cjk else LATIN_FONT
    body = ParagraphStyle("body", fontName=font, fontSize=FONT_SIZE, leading=LEADING)
    style = [("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), FONT_SIZE)]
    if ruled:
        style.append(("GRID", (0, 0), (-1, -1), 0.5, colors.black))
    if bold_head:
        style.append(("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"))
    table = Table([list(row) for row in rows], style=TableStyle(style), repeatRows=int(repeat_head))
    flow = [Paragraph(before, body), Spacer(1, LEADING), table]
    if after:
        flow += [Spacer(1, LEADING), Paragraph(after, body)]
    SimpleDocTemplate(str(path), pagesize=A4, invariant=True, author="kbqa test suite").build(flow)
    return path


def write_pdf_outline(
    path: PathLike,
    blocks: Sequence[tuple[int, str]],
    *,
    cjk: bool = False,
    bookmarks: Sequence[tuple[int, str]] | None = None,
    one_size: bool = False,
    bold: bool = False,
) -> Path:
    """Write an A4 PDF of headings and paragraphs as a word processor exports one: ``(level, text)``
    blocks, level 0 a paragraph in the body size, level 1-3 a heading set larger the lower its level
    (20, 16, 13 pt over 11 pt; all 11 pt with ``one_size``), in Helvetica-Bold with ``bold`` (Latin
    text only: reportlab has no bold CID font), and ``(0, "\\f")`` a page break.

    ``bookmarks`` writes the PDF's outline: for each heading block in order, ``(depth, title)`` (Word
    writes the heading's text; a LaTeX class leaves its number out), or ``(0, "")`` for none.
    """
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    font = register_cjk_font() if cjk else LATIN_FONT
    sizes = {0: FONT_SIZE, 1: 20, 2: 16, 3: 13}
    styles = {
        level: ParagraphStyle(
            f"level{level}",
            fontName="Helvetica-Bold" if bold and level else font,
            fontSize=FONT_SIZE if one_size else size,
            leading=(FONT_SIZE if one_size else size) * 1.4,
            spaceAfter=4,
        )
        for level, size in sizes.items()
    }
    flow = [PageBreak() if text == "\f" else Paragraph(text, styles[level]) for level, text in blocks]
    marks = iter(bookmarks or [])
    entries = {
        id(flowable): next(marks)
        for flowable, (level, _) in zip(flow, blocks, strict=True)
        if level and bookmarks is not None
    }

    class _Outlined(SimpleDocTemplate):
        def afterFlowable(self, flowable: object) -> None:  # reportlab's hook, after each block
            depth, title = entries.get(id(flowable), (0, ""))
            if depth:
                key = f"heading{id(flowable)}"
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(title, key, depth - 1, closed=False)

    _Outlined(str(path), pagesize=A4, invariant=True, author="kbqa test suite").build(flow)
    return path


def wrap_text(text: str, font: str, size: float, max_width: float) -> list[str]:
    """Break ``text`` into lines no wider than ``max_width`` points (closing punctuation may hang)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for token in _TOKEN.findall(paragraph):
            candidate = line + token
            fits = pdfmetrics.stringWidth(candidate.rstrip(), font, size) <= max_width
            if fits or not line.strip() or token[0] in _NO_LINE_START:
                line = candidate
            else:
                lines.append(line.rstrip())
                line = token.lstrip()
            while pdfmetrics.stringWidth(line.rstrip(), font, size) > max_width and len(line) > 1:
                # A single token wider than the page (a long URL): cut it where it overflows.
                cut = _longest_fitting_prefix(line, font, size, max_width)
                if cut == len(line.rstrip()) or line[cut:].strip() in _NO_LINE_START:
                    break
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def _longest_fitting_prefix(line: str, font: str, size: float, max_width: float) -> int:
    for end in range(len(line), 0, -1):
        if pdfmetrics.stringWidth(line[:end], font, size) <= max_width:
            return max(end, 1)
    return 1


def register_cjk_font() -> str:
    """Register STSong-Light once; reportlab keeps fonts in a process-wide registry."""
    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    return CJK_FONT


def write_docx(
    path: PathLike,
    paragraphs: Sequence[str],
    *,
    heading: str | None = None,
    table: Sequence[Sequence[str]] | None = None,
    marked_head: bool = False,
) -> Path:
    """Write a DOCX: optional level-1 heading, the paragraphs, then optional table (first row = header,
    bold; with ``marked_head`` also Word's "Repeat as header row" mark, ``w:tblHeader``).

    Rows of ``table`` must all have the same number of cells. The file is byte-for-byte reproducible
    (fixed core-property dates and zip timestamps), so regenerated fixtures do not show up as changed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = docx.Document()
    properties = document.core_properties
    properties.author = properties.last_modified_by = "kbqa test suite"
    properties.title = heading or ""
    properties.created = properties.modified = FIXED_TIME.replace(tzinfo=None)
    properties.revision = 1
    if heading:
        document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        columns = len(table[0])
        if any(len(row) != columns for row in table):
            raise ValueError("every table row needs the same number of cells")
        grid = document.add_table(rows=len(table), cols=columns)
        grid.style = "Table Grid"
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
        for cell in grid.rows[0].cells:
            for run in cell.paragraphs[0].runs:
                run.bold = True
        if marked_head:
            grid.rows[0]._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))
    document.save(str(path))
    _freeze_zip_timestamps(path)
    return path


def _freeze_zip_timestamps(path: Path) -> None:
    """Rewrite a zip with every member dated FIXED_TIME, keeping member order and compression."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    stamp = FIXED_TIME.timetuple()[:6]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            frozen = zipfile.ZipInfo(info.filename, date_time=stamp)
            frozen.compress_type = info.compress_type
            frozen.external_attr = info.external_attr
            target.writestr(frozen, data)


def write_knowledge_binaries(out_dir: Path = KNOWLEDGE_DIR) -> list[Path]:
    """(Re)write every PDF and DOCX of the sample knowledge base under ``out_dir``."""
    written = [write_pdf(out_dir / pdf.path, pdf.pages, cjk=pdf.cjk, title=pdf.title) for pdf in PDFS]
    written += [
        write_docx(out_dir / doc.path, doc.paragraphs, heading=doc.heading, table=doc.table or None)
        for doc in DOCXS
    ]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: regenerate the binaries of knowledge/ (or of ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=KNOWLEDGE_DIR, help="knowledge folder to write into")
    args = parser.parse_args(argv)
    for path in write_knowledge_binaries(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
