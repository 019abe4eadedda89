"""Scanned PDFs for the OCR tests and benchmark: text drawn into page images, saved as a PDF of images.

A scanner or a phone app makes a PDF whose pages are pictures and carry no text; pypdf reads nothing
from them. These files are made the same way: each page's text is drawn with Pillow in Noto Sans SC
(a real CJK font, from the ``justmytype-intl-cjk`` wheel, located without importing the package),
onto a white A4 page at 150 dpi, and Pillow writes the images as a PDF. A ``stamp`` adds a real
text layer with a few characters, as a scanning app's page number does.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter
from reportlab.pdfgen import canvas

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 110  # pixels, about 2 cm
SIZE = 24  # pixels: 11.5 pt at 150 dpi
LEADING = 40
_TOKEN = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|\S+\s*|\s+")


@cache
def cjk_font_path() -> Path:
    spec = importlib.util.find_spec("justmytype_intl_cjk")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("justmytype-intl-cjk is not installed (a dev dependency: make setup)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return next((root / "fonts" / "ofl" / "notosanssc").glob("NotoSansSC*.ttf"))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Noto Sans SC at ``size`` pixels, in its Regular weight (the variable font's default is Thin)."""
    font = ImageFont.truetype(str(cjk_font_path()), size)
    font.set_variation_by_axes([400])
    return font


def _wrapped(paragraph: str, font: ImageFont.FreeTypeFont) -> list[str]:
    """``paragraph`` broken into lines that fit between the margins: at spaces, or between Chinese
    characters."""
    width = PAGE[0] - 2 * MARGIN
    lines, line = [], ""
    for token in _TOKEN.findall(paragraph):
        if line and font.getlength((line + token).rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    return [*lines, line.rstrip()]


def page_images(paragraphs: Sequence[tuple[str, int]]) -> list[Image.Image]:
    """White A4 pages with ``paragraphs`` drawn on them, each (text, size in pixels), wrapped to the
    margins, as many pages as they take."""
    pages: list[Image.Image] = []
    y = PAGE[1]
    for paragraph, size in paragraphs:
        font = _font(size)
        for line in _wrapped(paragraph, font):
            step = LEADING * size // SIZE
            if y + step > PAGE[1] - MARGIN:
                pages.append(Image.new("L", PAGE, 255))
                y = MARGIN
            ImageDraw.Draw(pages[-1]).text((MARGIN, y), line, font=font, fill=0)
            y += step
    return pages or [Image.new("L", PAGE, 255)]


def page_image(text: str, size: int = SIZE) -> Image.Image:
    """One white A4 page with ``text`` drawn on it, wrapped to the margins; "\\n" starts a line."""
    [page] = page_images([(line, size) for line in text.split("\n")])
    return page


def write_images_pdf(path: Path, images: Sequence[Image.Image]) -> Path:
    """A PDF of page images and nothing else, as a scanner writes one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pages = [image.convert("RGB") for image in images]
    pages[0].save(path, "PDF", resolution=DPI, save_all=True, append_images=pages[1:])
    return path


def write_scanned_pdf(path: Path, pages: Sequence[str], *, stamp: str | None = None) -> Path:
    """Write a PDF whose pages are images of ``pages``' texts; with ``stamp``, each page also
    carries that text as a real, tiny text layer in its corner."""
    write_images_pdf(path, [page_image(text) for text in pages])
    if stamp is None:
        return path
    writer = PdfWriter(clone_from=path)
    for page in writer.pages:
        layer = io.BytesIO()
        sheet = canvas.Canvas(layer, pagesize=(float(page.mediabox.width), float(page.mediabox.height)))
        sheet.setFont("Helvetica", 6)
        sheet.drawString(20, 20, stamp)
        sheet.save()
        page.merge_page(PdfReader(layer).pages[0])
    with path.open("wb") as handle:
        writer.write(handle)
    return path
