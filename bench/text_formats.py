"""Write a folder of plain-text documents as the PDFs and Word files they usually come as.

Chinese regulations are mostly typed in Word without heading styles and handed round as PDFs
exported in one font size, so their numbered titles ("第二章 考勤管理") are all that marks their
structure. This writes each ``.txt`` of a folder twice, line for line: as a PDF with every line a
10.5 pt paragraph, and as a .docx with every line a paragraph in Word's "Normal" style. The
regulations corpus's sets then run over either copy (docs/BENCHMARKS.md, "Numbered titles")::

    .venv/bin/python -m bench.text_formats bench/eval/regulations/corpus /tmp/reg-pdf --pdf
    .venv/bin/python ingest/run.py /tmp/reg-pdf --kb regpdf
    .venv/bin/python -m bench.retrieval_sets regulations/dev --kb regpdf
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
from pathlib import Path
from typing import Any


def text_to_pdf(text: str, target: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    from tests.support.sample_docs import register_cjk_font

    body = ParagraphStyle("body", fontName=register_cjk_font(), fontSize=10.5, leading=15)
    flow: list[Any] = []
    for line in text.split("\n"):
        if line.strip():
            flow.append(Paragraph(html.escape(line.strip(), quote=False), body))
        else:
            flow.append(Spacer(1, 6))
    SimpleDocTemplate(str(target), pagesize=A4, invariant=True).build(flow)


def text_to_docx(text: str, target: Path) -> None:
    import docx

    document = docx.Document()
    for line in text.split("\n"):
        if line.strip():
            document.add_paragraph(line.strip())
    document.save(str(target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", type=Path, help="folder of .txt documents")
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--pdf", action="store_true", help="write PDFs")
    kind.add_argument("--docx", action="store_true", help="write Word files")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    suffix, write = (".pdf", text_to_pdf) if args.pdf else (".docx", text_to_docx)
    sources = sorted(args.source.rglob("*.txt"))
    for source in sources:
        target = args.out / source.relative_to(args.source).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        write(source.read_text(encoding="utf-8"), target)
    print(f"{len(sources)} files written as {suffix} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
