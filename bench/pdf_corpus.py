"""Write the evaluation corpus with its Markdown files that hold tables as PDFs, to measure PDF reading.

The evaluation corpus has no PDFs, yet PDF is what most knowledge bases are made of. This copy turns
each Markdown file with a table into the PDF a word processor would export: headings as larger
paragraphs (16/14/12 pt over 10.5 pt body text), list items as "•" paragraphs, tables ruled around
every cell with their head row repeated on each page. The other files are copied as they are, so
the evaluation sets run over it unchanged (docs/BENCHMARKS.md, "PDF tables read row by row").
``--headings body`` sets the headings at the body size (as Word exports headings styled bold, not
larger), ``--headings outline`` does too and writes the PDF's outline (the bookmarks Word writes from
heading styles), to measure what an outline gives (docs/BENCHMARKS.md, "A PDF's outline")::

    .venv/bin/python -m bench.pdf_corpus /tmp/evalpdf-corpus [--headings sized|body|outline]
    .venv/bin/python ingest/run.py /tmp/evalpdf-corpus --kb evalpdf
    .venv/bin/python -m bench.retrieval_sets dev heldout --kb evalpdf
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from rag.config import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "bench" / "eval" / "corpus"
# Markdown as the corpus writes it (bench/scanned_corpus.py reads it the same way)
HEADING = re.compile(r"^(#{1,6})\s+(.*)")
TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")
ITEM = re.compile(r"^\s*[-*]\s+")
_INLINE = re.compile(r"\*\*(.+?)\*\*|`(.+?)`")


def _inline(text: str) -> str:
    """Markdown emphasis and code as plain text, escaped for reportlab's paragraph markup."""
    return html.escape(_INLINE.sub(lambda found: found.group(1) or found.group(2), text), quote=False)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_to_pdf(markdown: str, target: Path, headings: str = "sized") -> None:
    """Write ``markdown`` as a PDF; ``headings`` as in the module's docstring."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    from tests.support.sample_docs import register_cjk_font

    font = register_cjk_font()  # STSong-Light has Latin glyphs too
    body = ParagraphStyle("body", fontName=font, fontSize=10.5, leading=15)
    cell = ParagraphStyle("cell", fontName=font, fontSize=9.5, leading=13)
    heads = {  # 16, 14 and 12 pt for the corpus's three levels
        level: ParagraphStyle(
            f"h{level}", fontName=font, fontSize=18 - 2 * level, leading=24 - 2 * level, spaceBefore=6
        )
        if headings == "sized"
        else ParagraphStyle(f"h{level}", parent=body, spaceBefore=6)
        for level in range(1, 7)
    }
    outline: dict[int, tuple[int, str]] = {}  # a heading paragraph's id → its depth and title
    previous = 0
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    flow: list[Any] = []
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            flow.extend([Paragraph(_inline(" ".join(paragraph)), body), Spacer(1, 4)])
            paragraph.clear()

    lines = markdown.split("\n")
    at = 0
    while at < len(lines):
        line = lines[at]
        if line.startswith("|"):
            close_paragraph()
            rows = []
            while at < len(lines) and lines[at].startswith("|"):
                if not TABLE_RULE.match(lines[at]):
                    rows.append([Paragraph(_inline(text), cell) for text in _cells(lines[at])])
                at += 1
            flow.extend([Table(rows, repeatRows=1, style=grid), Spacer(1, 6)])
            continue
        heading = HEADING.match(line)
        if heading:
            close_paragraph()
            title = Paragraph(_inline(heading.group(2)), heads[len(heading.group(1))])
            # an outline entry is at most one level below the entry before it
            previous = min(len(heading.group(1)), previous + 1)
            outline[id(title)] = (previous, heading.group(2))
            flow.append(title)
        elif not line.strip():
            close_paragraph()
        elif ITEM.match(line):
            close_paragraph()
            paragraph.append("• " + ITEM.sub("", line))
        else:
            paragraph.append(line.strip())
        at += 1
    close_paragraph()

    class Outlined(SimpleDocTemplate):
        def afterFlowable(self, flowable: Any) -> None:  # reportlab's hook, after each block
            if headings == "outline" and id(flowable) in outline:
                depth, text = outline[id(flowable)]
                self.canv.bookmarkPage(f"h{id(flowable)}")
                self.canv.addOutlineEntry(text, f"h{id(flowable)}", depth - 1, closed=False)

    Outlined(str(target), pagesize=A4, invariant=True).build(flow)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument(
        "--headings",
        choices=("sized", "body", "outline"),
        default="sized",
        help="headings set larger (default), at the body size, or at the body size with an outline",
    )
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(CORPUS, args.out)
    written = []
    for markdown in sorted(args.out.rglob("*.md")):
        text = markdown.read_text(encoding="utf-8")
        if any(line.startswith("|") for line in text.split("\n")):
            markdown_to_pdf(text, markdown.with_suffix(".pdf"), args.headings)
            markdown.unlink()
            written.append(markdown.with_suffix(".pdf").relative_to(args.out))
    print(f"{len(written)} files written as PDFs in {args.out}: {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
