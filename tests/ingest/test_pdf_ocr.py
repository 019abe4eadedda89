"""Scanned PDF pages read by OCR (ingest.pdf_ocr): real RapidOCR on PDFs of page images."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import NameObject, NumberObject

from ingest.loaders import HEADING_MARK, LoadError, LoadLimits, load_file
from ingest.pdf_headings import scan_heading_levels
from ingest.pdf_ocr import _lines
from ingest.splitter import make_splitter, split_documents
from tests.support.sample_docs import write_pdf
from tests.support.scans import page_images, write_images_pdf, write_scanned_pdf

RULES = (
    "第一章 总则\n"
    "国内出差住宿费按城市分级报销，北京、上海每晚不超过 650 元，其他省会城市每晚不超过 480 元。\n"
    "第二章 交通\n"
    "火车一律乘坐二等座，夜间乘车可乘坐卧铺。"
)


def squashed(text: str) -> str:
    return "".join(text.split())


def test_a_scanned_chinese_page_is_read_with_its_numbered_titles(tmp_path: Path) -> None:
    path = write_scanned_pdf(tmp_path / "scan.pdf", [RULES, "Laptops are replaced every 48 months."])
    first, second = load_file(path, "scan.pdf")
    assert first.metadata == {"page": 1, "ocr": True, "source": "scan.pdf", "file_type": "pdf"}
    text = squashed(first.page_content)
    assert "北京、上海每晚不超过650元" in text and "火车一律乘坐二等座，夜间乘车可乘坐卧铺。" in text
    titles = [line for line in first.page_content.split("\n") if line.startswith(HEADING_MARK)]
    assert [squashed(line) for line in titles] == [f"{HEADING_MARK}#第一章总则", f"{HEADING_MARK}#第二章交通"]
    assert second.page_content == "Laptops are replaced every 48 months." and second.metadata["page"] == 2


def test_headings_printed_larger_on_a_scan_name_its_sections(tmp_path: Path) -> None:
    body = "国内出差住宿费按城市分级报销，北京、上海每晚不超过 650 元。两人同行原则上合住一间标准间。"
    trains = "火车一律乘坐二等座，夜间乘车可乘坐卧铺，单程超过六小时的可乘坐一等座。"
    printed = [("差旅管理制度", 42), ("住宿标准", 36), (body, 24), (body, 24), ("交通", 36), (trains, 24)]
    path = write_images_pdf(tmp_path / "scan.pdf", page_images(printed))
    chunks = split_documents(load_file(path, "scan.pdf"), make_splitter(500, 0))
    sections = {
        squashed(chunk.page_content.split("\n")[-1]): chunk.metadata.get("section") for chunk in chunks
    }
    # one level: a box's height tells a heading, not its depth
    assert sections[squashed(body)] == "住宿标准" and sections[squashed(trains)] == "交通"


def test_what_a_scanned_heading_must_be() -> None:
    body = [("一段正文，说明住宿标准按城市分级，北京上海每晚不超过六百五十元", 13.0)] * 5
    lines = {
        1: [
            ("住宿标准", 19.0),
            ("Rates apply from 1 March.", 20.0),  # ends a sentence
            ("（CFO）审批", 15.0),  # brackets make a line's box taller, not enough for a heading
            ("12", 20.0),  # a page number
            *body,
        ]
    }
    assert scan_heading_levels(lines) == {1: {"住宿标准": 1}}
    assert scan_heading_levels({1: [("大字", 30.0), ("也是大字", 30.0), ("小字", 10.0)]}) == {}  # no body


def test_a_scan_stamped_with_a_page_number_is_still_read(tmp_path: Path) -> None:
    path = write_scanned_pdf(tmp_path / "stamped.pdf", [RULES], stamp="- 1 -")
    [page] = load_file(path, "stamped.pdf")
    assert page.metadata["ocr"] is True and "每晚不超过650元" in squashed(page.page_content)


def test_text_pages_and_scanned_pages_keep_their_order(tmp_path: Path) -> None:
    text = load_file(write_pdf(tmp_path / "text.pdf", ["Meals are paid up to 100 euros a day."]), "t.pdf")
    scan = write_scanned_pdf(tmp_path / "scan.pdf", ["Hotels are paid up to 650 euros a night."])
    merged = PdfWriter()
    merged.append(str(tmp_path / "text.pdf"))
    merged.append(str(scan))
    merged.append(str(tmp_path / "text.pdf"))
    with (tmp_path / "mixed.pdf").open("wb") as handle:
        merged.write(handle)
    pages = load_file(tmp_path / "mixed.pdf", "mixed.pdf")
    assert [(page.metadata["page"], page.metadata.get("ocr", False)) for page in pages] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    assert pages[1].page_content == "Hotels are paid up to 650 euros a night."
    assert pages[0].page_content == text[0].page_content


def test_with_ocr_off_a_scan_is_reported_with_the_setting_to_turn(tmp_path: Path) -> None:
    path = write_scanned_pdf(tmp_path / "scan.pdf", [RULES])
    limits = LoadLimits(50, 5_000_000, 5000, ocr=False)
    with pytest.raises(LoadError, match=r"no extractable text \(scanned images\? OCR is off: KBQA_OCR\)"):
        load_file(path, "scan.pdf", limits)
    stamped = write_scanned_pdf(tmp_path / "stamped.pdf", [RULES], stamp="- 1 -")
    [page] = load_file(stamped, "stamped.pdf", limits)  # what text the page has is kept
    assert page.page_content == "- 1 -" and "ocr" not in page.metadata


def test_a_blank_scan_is_reported(tmp_path: Path) -> None:
    path = write_scanned_pdf(tmp_path / "blank.pdf", [""])
    with pytest.raises(LoadError, match=r"no extractable text: OCR read no text in its 1 scanned page\(s\)"):
        load_file(path, "blank.pdf")


def _with_huge_image(source: Path, target: Path) -> Path:
    """``source`` with its first page's image declaring 200,000 pixels a row: the stream stays small."""
    writer = PdfWriter(clone_from=source)
    for image in writer.pages[0]["/Resources"]["/XObject"].values():
        image.get_object()[NameObject("/Width")] = NumberObject(200_000)
    writer.write(target)
    return target


def test_an_image_too_large_to_decode_is_reported_not_rendered(tmp_path: Path) -> None:
    stamped = write_scanned_pdf(tmp_path / "stamped.pdf", [RULES], stamp="- 1 -")
    [page] = load_file(_with_huge_image(stamped, tmp_path / "huge-stamped.pdf"), "huge-stamped.pdf")
    assert page.page_content == "- 1 -" and "ocr" not in page.metadata  # its text layer, and a warning
    bare = _with_huge_image(write_scanned_pdf(tmp_path / "bare.pdf", [RULES]), tmp_path / "huge.pdf")
    with pytest.raises(
        LoadError, match=r"page 1: its image is too large to read by OCR \(350,800,000 pixels\)"
    ):
        load_file(bare, "huge.pdf")


def test_ocr_runs_are_put_together_into_lines() -> None:
    def box(left: float, top: float, right: float, bottom: float) -> list[list[float]]:
        return [[left, top], [right, top], [right, bottom], [left, bottom]]

    boxes = [box(300, 102, 500, 128), box(10, 100, 200, 130), box(10, 150, 400, 180), box(10, 300, 90, 330)]
    texts = ["650 元", "住宿标准", "火车一律乘坐二等座", "  "]
    # a line is the runs whose middles fall in its height, left to right, with their median height;
    # empty runs are dropped
    assert _lines(boxes, texts) == [("住宿标准 650 元", 28.0), ("火车一律乘坐二等座", 30.0)]


def test_a_scan_the_renderer_cannot_open_leaves_the_text_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdfium2

    def refuse(*args: object, **kwargs: object) -> None:
        raise pypdfium2.PdfiumError("Failed to load document (PDFium: Incorrect password error).")

    path = write_pdf(tmp_path / "text.pdf", ["Meals are paid up to 100 euros a day."])
    merged = PdfWriter()
    merged.append(str(path))
    merged.append(str(write_scanned_pdf(tmp_path / "scan.pdf", [RULES])))
    merged.write(tmp_path / "mixed.pdf")
    monkeypatch.setattr(pypdfium2, "PdfDocument", refuse)
    [page] = load_file(tmp_path / "mixed.pdf", "mixed.pdf")  # the scan is left out with a warning
    assert page.page_content == "Meals are paid up to 100 euros a day."
