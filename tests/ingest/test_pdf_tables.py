"""Ruled PDF tables read row by row (ingest.pdf_tables), on PDFs that reportlab writes here."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ingest import pdf_tables
from ingest.loaders import load_file
from ingest.pdf_tables import has_head, looks_like_table, markdown_rows, may_hold_table, replace_table
from ingest.splitter import make_splitter, split_documents
from rag.prompts import tables_as_records
from tests.support.sample_docs import write_pdf, write_pdf_table

HOTELS = [["城市", "住宿标准（元/晚）", "餐补（元/天）"], ["北京", "600", "100"], ["杭州", "450", "80"]]


def test_a_ruled_chinese_table_reads_as_markdown_rows_between_its_paragraphs(tmp_path: Path) -> None:
    path = write_pdf_table(
        tmp_path / "travel.pdf", "各城市的住宿标准如下：", HOTELS, "超标需部门经理审批。", cjk=True
    )
    [page] = load_file(path, "travel.pdf")
    assert page.page_content.split("\n") == [
        "各城市的住宿标准如下：",
        "| 城市 | 住宿标准（元/晚） | 餐补（元/天） |",
        "| --- | --- | --- |",  # the head names a column of numbers: it is a head
        "| 北京 | 600 | 100 |",
        "| 杭州 | 450 | 80 |",
        "超标需部门经理审批。",
    ]
    assert page.metadata["page"] == 1


def test_the_llm_reads_each_row_as_a_record(tmp_path: Path) -> None:
    path = write_pdf_table(tmp_path / "travel.pdf", "住宿标准：", HOTELS, cjk=True)
    [page] = load_file(path, "travel.pdf")
    assert "城市：杭州；住宿标准（元/晚）：450；餐补（元/天）：80" in tables_as_records(page.page_content)


def test_a_bold_first_row_is_a_head_even_over_numbered_columns(tmp_path: Path) -> None:
    rows = [["Plan", "2024", "2025"], ["Free", "5", "8"], ["Pro", "50", "80"]]
    path = write_pdf_table(
        tmp_path / "plans.pdf", "Rate limits by plan.", rows, "Ask support.", bold_head=True
    )
    lines = load_file(path, "plans.pdf")[0].page_content.split("\n")
    assert lines[1:4] == ["| Plan | 2024 | 2025 |", "| --- | --- | --- |", "| Free | 5 | 8 |"]
    plain = write_pdf_table(tmp_path / "plain.pdf", "Rate limits by plan.", rows, "Ask support.")
    assert "| --- | --- | --- |" not in load_file(plain, "plain.pdf")[0].page_content


def test_a_first_row_of_data_gets_no_head_rule(tmp_path: Path) -> None:
    rows = [["北京", "600"], ["上海", "600"], ["杭州", "450"]]
    path = write_pdf_table(tmp_path / "cities.pdf", "各城市标准：", rows, "以上为标准。", cjk=True)
    lines = load_file(path, "cities.pdf")[0].page_content.split("\n")
    assert lines == ["各城市标准：", "| 北京 | 600 |", "| 上海 | 600 |", "| 杭州 | 450 |", "以上为标准。"]


def test_wrapped_cells_are_joined_and_a_bar_inside_a_cell_is_escaped(tmp_path: Path) -> None:
    rows = [["Item", "Note"], ["Laptop", "Replaced every\n48 months"], ["Switch", "port a|b"]]
    path = write_pdf_table(tmp_path / "kit.pdf", "Equipment.", rows, "End.")
    lines = load_file(path, "kit.pdf")[0].page_content.split("\n")
    assert "| Laptop | Replaced every 48 months |" in lines
    assert "| Switch | port a\\|b |" in lines


def test_a_table_without_drawn_lines_and_plain_pages_are_read_as_before(tmp_path: Path) -> None:
    rows = [["Plan", "Limit"], ["Free", "5"], ["Pro", "50"]]
    aligned = write_pdf_table(tmp_path / "aligned.pdf", "Aligned only.", rows, "End.", ruled=False)
    assert "|" not in load_file(aligned, "aligned.pdf")[0].page_content
    text = write_pdf(tmp_path / "text.pdf", ["Laptops are replaced every 48 months."])
    assert load_file(text, "text.pdf")[0].page_content == "Laptops are replaced every 48 months."


def test_a_long_table_repeats_its_head_in_every_chunk(tmp_path: Path) -> None:
    rows = [["Office", "Seats"], *[[f"Room {number}", str(number + 10)] for number in range(1, 25)]]
    path = write_pdf_table(tmp_path / "rooms.pdf", "Meeting rooms.", rows, "Book in the calendar.")
    chunks = split_documents(load_file(path, "rooms.pdf"), make_splitter(160, 0))
    continued = [chunk for chunk in chunks if "| Room 20 |" in chunk.page_content]
    assert continued and continued[0].page_content.startswith("| Office | Seats |\n| --- | --- |\n")


@pytest.mark.parametrize("repeated", [True, False], ids=["head-repeated-by-the-pdf", "head-on-page-1-only"])
def test_a_table_over_several_pages_keeps_its_head_on_each(tmp_path: Path, repeated: bool) -> None:
    rows = [
        ["工号", "工位"],
        *[[f"E{number:04d}", f"{number % 9 + 1}F-{number:03d}"] for number in range(120)],
    ]
    path = write_pdf_table(
        tmp_path / "desks.pdf", "工位表。", rows, "如需调整，请联系行政部。", cjk=True, repeat_head=repeated
    )
    pages = load_file(path, "desks.pdf")
    assert len(pages) >= 3  # so the repeated head looks like a running header to the loader
    for page in pages:
        lines = page.page_content.split("\n")
        start = 1 if page.metadata["page"] == 1 else 0
        assert lines[start : start + 2] == ["| 工号 | 工位 |", "| --- | --- |"]
        assert lines.count("| 工号 | 工位 |") == 1
    rows_read = [line for page in pages for line in page.page_content.split("\n") if line.startswith("| E")]
    assert len(rows_read) == 120 and rows_read[-1] == "| E0119 | 3F-119 |"


def test_a_new_table_at_the_top_of_a_page_does_not_take_the_head_of_the_one_before(tmp_path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import PageBreak, SimpleDocTemplate, Table, TableStyle

    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)])
    seats = Table([["Room", "Seats"], *[[f"Room {n}", str(n + 4)] for n in range(36)]], style=grid)
    phones = Table([["Lobby", "8000", "1F"], ["IT desk", "8021", "3F"]], style=grid)  # 3 columns
    path = tmp_path / "rooms.pdf"
    SimpleDocTemplate(str(path), pagesize=A4, invariant=True).build([seats, PageBreak(), phones])
    pages = load_file(path, "rooms.pdf")
    assert pages[-1].page_content.split("\n") == ["| Lobby | 8000 | 1F |", "| IT desk | 8021 | 3F |"]


def test_a_parser_failure_keeps_the_text_pypdf_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pdfplumber

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("unsupported object stream")

    path = write_pdf_table(tmp_path / "travel.pdf", "住宿标准：", HOTELS, cjk=True)
    monkeypatch.setattr(pdfplumber, "open", broken)
    with caplog.at_level(logging.WARNING, logger=pdf_tables.__name__):
        [page] = load_file(path, "travel.pdf")
    assert "|" not in page.page_content and "450" in page.page_content
    assert "tables not read (ValueError: unsupported object stream)" in caplog.text


def test_only_pages_that_draw_lines_are_looked_at() -> None:
    assert may_hold_table(b"BT /F1 11 Tf 56 770 Td (Hello) Tj ET\n56 700 200 20 re S\n")
    assert may_hold_table(b"0.5 w 56 700 m 300 700 l S\n")
    assert not may_hold_table(b"BT /F1 11 Tf 56 770 Td (Hello) Tj ET\n")


def test_crossing_lines_of_a_drawing_are_no_table(tmp_path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path = tmp_path / "plan.pdf"
    drawing = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    drawing.drawString(56, 800, "Floor plan of level 9.")
    for step in range(1, 60):  # a grid of walls with one label inside it
        drawing.line(40 + 8 * step, 100, 40 + 8 * step, 700)
        drawing.line(40, 100 + 10 * step, 540, 100 + 10 * step)
    drawing.drawString(300, 400, "Lift")
    drawing.showPage()
    drawing.save()
    [page] = load_file(path, "plan.pdf")
    assert "|" not in page.page_content and "Floor plan of level 9." in page.page_content


def test_a_grid_must_hold_a_tables_text() -> None:
    assert looks_like_table([["Plan", "Limit"], ["Free", "5"]])
    assert looks_like_table([["Region", None, None], ["East", "5", ""], ["West", "", "7"]])  # merged head
    assert not looks_like_table([["drawing.", "", "", ""], ["", "", "", ""]])  # one row of text
    assert not looks_like_table([["A box around a paragraph."]])
    assert not looks_like_table([["a", "", "", ""], ["", "", "", "b"]])  # mostly empty cells
    assert not may_hold_table(b"0 0 m 10 10 l S\n" * 10_001)  # a drawing, not a table page


def test_a_head_must_look_like_one() -> None:
    assert has_head([["Plan", "Limit"], ["Free", "5"], ["Pro", "50"]])
    assert not has_head([["Plan", "Note"], ["Free", "none"]])  # nothing says so
    assert has_head([["Plan", "Note"], ["Free", "none"]], first_row_bold=True)
    assert not has_head([["Plan", "Note"], ["Free", "none"]], first_row_bold=True, others_bold=True)
    assert not has_head([["Plan", ""], ["Free", "5"]])  # a head names every column
    assert not has_head([["Limit", "Limit"], ["5", "6"]])


def test_a_table_that_the_text_does_not_hold_leaves_it_unchanged() -> None:
    text = "Before.\nPlan\nLimit\nFree\n5\nAfter."
    cells = [["Plan", "Limit"], ["Free", "5"]]
    replaced, _ = replace_table(text, cells, markdown_rows(cells, head=True))
    assert replaced == "Before.\n| Plan | Limit |\n| --- | --- |\n| Free | 5 |\nAfter."
    other = [["Plan", "Limit"], ["Team", "9"]]
    assert replace_table(text, other, markdown_rows(other, head=True)) == (text, 0)


def test_text_beside_a_table_on_its_lines_is_kept() -> None:
    cells = [["A", "B"], ["1", "2"]]
    replaced, _ = replace_table("See: A B\n1 2 and more", cells, markdown_rows(cells, head=False))
    assert replaced == "See:\n| A | B |\n| 1 | 2 |\nand more"
