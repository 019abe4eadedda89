"""The text of scanned PDF pages, read by OCR.

Much of what a Chinese office keeps as PDF is scanned: signed regulations, stamped notices, contracts.
Such a page carries an image and no text, so pypdf reads nothing and the file used to be reported
unreadable. These pages are now rendered (pypdfium2, already installed for pdfplumber) and read by
RapidOCR: PP-OCR's Chinese-and-English detection and recognition models, packaged in its wheel, run
by onnxruntime on the CPU, nothing fetched from a hub.

The OCR boxes come back one per run of text; boxes whose heights overlap are a line, read left to
right, and lines top to bottom. A line's height tells a heading printed larger, as a font size does
on a page with text (``ingest.pdf_headings.scan_heading_levels``). The rest of PDF reading (running
headers, unwrapped lines, numbered titles) then treats the page as it treats any other.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Rendered at 2× (144 dpi): PP-OCR reads 10.5 pt body text reliably from there, and RapidOCR shrinks
# anything above 2,000 pixels a side anyway. A page larger than A3 is rendered smaller, never above
# _MAX_SIDE pixels: a poster-sized page must not cost gigabytes.
_SCALE = 2.0
_MAX_SIDE = 2400
# A page whose text layer holds fewer characters than this but draws an image is read by OCR too: a
# scan stamped with a page number or "Scanned by …" still has all its text in the image.
FEW_CHARACTERS = 16
# An image larger than this is not decoded (an A3 page scanned at 600 dpi is 70 million pixels): a
# hostile file's tiny stream may declare an image of gigabytes.
MAX_IMAGE_PIXELS = 100_000_000

_engine: Any = None
# Guards the engine's loading and each page it reads: ingestion jobs of two knowledge bases may run
# at once in the app, and OCR keeps every core busy anyway.
_engine_lock = threading.Lock()


class OCRUnavailableError(RuntimeError):
    """The OCR package cannot be loaded; the message says why, for the file's reason."""


def largest_image(page: Any) -> int | None:
    """The pixel count of the largest image a pypdf page draws (an image XObject in its resources),
    None when it draws none: a scan's only content. Read from the image's dictionary, not decoded. A
    page whose resources cannot be read counts as drawing none."""
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        objects = resources.get("/XObject") if resources else None
        objects = objects.get_object() if objects is not None else None
        if not objects:
            return None
        sizes = [0]
        for reference in objects.values():
            image = reference.get_object()
            if image.get("/Subtype") == "/Image":
                sizes.append(int(image.get("/Width", 0)) * int(image.get("/Height", 0)))
        return max(sizes)
    except Exception:  # a damaged resource dictionary: its text was read, its images are extra
        return None


def _reader() -> Any:
    """The OCR engine, loaded once per process (under a second) and only when a scan needs it."""
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as error:  # pragma: no cover - the package is a pinned dependency
                raise OCRUnavailableError(f"the OCR package is not installed ({error})") from error
            # no text-direction classifier: a scan's lines run one way, and the classifier turned
            # some upright English lines over and read them as garbage ("Ad iiv" for "Admins create")
            _engine = RapidOCR(params={"Global.log_level": "warning", "Global.use_cls": False})
        return _engine


def _lines(boxes: Sequence[Any], texts: Sequence[str]) -> list[tuple[str, float]]:
    """The OCR runs as lines, each with its height (the median of its runs' heights, in the
    rendering's pixels): a run joins the line whose vertical extent holds its middle."""
    runs = sorted(
        (min(point[1] for point in box), max(point[1] for point in box), min(point[0] for point in box), text)
        for box, text in zip(boxes, texts, strict=True)
        if text.strip()
    )
    lines: list[tuple[float, float, list[tuple[float, str, float]]]] = []
    for top, bottom, left, text in runs:
        middle = (top + bottom) / 2
        for at, (line_top, line_bottom, parts) in enumerate(lines):
            if line_top <= middle <= line_bottom:
                parts.append((left, text, bottom - top))
                lines[at] = (min(line_top, top), max(line_bottom, bottom), parts)
                break
        else:
            lines.append((top, bottom, [(left, text, bottom - top)]))
    return [
        (" ".join(text.strip() for _, text, _ in sorted(parts)), statistics.median(h for _, _, h in parts))
        for _, _, parts in lines
    ]


def read_pages(
    path: Path, numbers: Sequence[int]
) -> Iterator[tuple[int, list[tuple[str, float]] | Exception]]:
    """(page number, its lines with their heights in points, or why it could not be read) for each
    of ``numbers`` (1-based), in order; raises ``OCRUnavailableError`` before the first page when
    OCR cannot run at all. The heights tell headings printed larger (``ingest.pdf_headings``)."""
    import pypdfium2 as pdfium

    engine = _reader()
    try:
        document = pdfium.PdfDocument(path)
    except Exception as error:  # pypdf read the file, pdfium cannot: its scans stay unread
        for number in numbers:
            yield number, error
        return
    try:
        for number in numbers:
            try:
                page = document[number - 1]
                width, height = page.get_size()
                scale = min(_SCALE, _MAX_SIDE / max(width, height, 1.0))
                image = page.render(scale=scale).to_pil()
                with _engine_lock:
                    found = engine(image)
                lines = _lines(found.boxes, found.txts) if found.txts else []
                yield number, [(line, size / scale) for line, size in lines]
            except Exception as error:  # one unreadable scan must not cost the others
                yield number, error
    finally:
        document.close()
