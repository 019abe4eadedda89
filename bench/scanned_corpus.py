"""Write the evaluation corpus as scans, to measure what OCR gives (docs/BENCHMARKS.md, "Scanned PDF
pages read by OCR").

Each Markdown and text file becomes a PDF of page images and nothing else, as a scanner or a phone
app makes one: its text drawn in Noto Sans SC at 150 dpi (``tests/support/scans.py``), headings
larger (Markdown's "#" to "###" at 20, 17 and 15 pt over 11.5 pt body text), table rows as their
cells side by side, list items after a bullet, emphasis marks dropped. The HTML files are copied as
they are, so the evaluation sets run over it unchanged::

    .venv/bin/python -m bench.scanned_corpus /tmp/evalscan-corpus
    .venv/bin/python ingest/run.py /tmp/evalscan-corpus --kb evalscan
    .venv/bin/python -m bench.retrieval_sets dev heldout --kb evalscan
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from bench.pdf_corpus import CORPUS, HEADING, ITEM, TABLE_RULE

_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|`(.+?)`")
BODY = 24  # pixels at 150 dpi
HEADINGS = {1: 42, 2: 36, 3: 31}  # 20, 17 and 15 pt


def paragraphs(text: str) -> list[tuple[str, int]]:
    """The file's lines as they would be printed: (text, size in pixels)."""
    out: list[tuple[str, int]] = []
    for line in text.split("\n"):
        line = _EMPHASIS.sub(lambda found: found.group(1) or found.group(2), line.rstrip())
        heading = HEADING.match(line)
        if heading:
            out.append((heading.group(2), HEADINGS.get(len(heading.group(1)), BODY)))
        elif line.startswith("|"):
            if not TABLE_RULE.match(line):
                out.append(("    ".join(cell.strip() for cell in line.strip().strip("|").split("|")), BODY))
        elif ITEM.match(line):
            out.append(("• " + ITEM.sub("", line), BODY))
        else:
            out.append((line, BODY))
    return out


def main(argv: list[str] | None = None) -> int:
    from tests.support.scans import page_images, write_images_pdf

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(CORPUS, args.out)
    pages = 0
    for source in sorted([*args.out.rglob("*.md"), *args.out.rglob("*.txt")]):
        images = page_images(paragraphs(source.read_text(encoding="utf-8")))
        write_images_pdf(source.with_suffix(".pdf"), images)
        source.unlink()
        pages += len(images)
    print(f"{pages} scanned pages written in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
