"""A PDF's headings told by their size or its outline (ingest.pdf_headings), on PDFs that reportlab
writes here."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders import HEADING_MARK, _pdf_outline, load_file
from ingest.pdf_headings import LineSizes, heading_levels, is_bold, outline_levels
from ingest.splitter import make_splitter, marked_sections, split_documents
from tests.support.sample_docs import write_pdf, write_pdf_outline

POLICY = [
    (1, "差旅管理制度"),
    (2, "住宿标准"),
    (0, "国内出差住宿费按城市分级报销，北京、上海每晚不超过 650 元，其他省会城市每晚不超过 480 元。"),
    (2, "交通"),
    (0, "出差地的市内交通凭电子发票实报实销，每人每天合计不超过 150 元。"),
    (0, "\f"),
    (0, "火车一律乘坐二等座，夜间乘车可乘坐卧铺。"),
    (3, "机票"),
    (0, "飞机一律乘坐经济舱。"),
]


def test_larger_lines_are_marked_as_headings_by_their_rank_of_size(tmp_path: Path) -> None:
    pages = load_file(write_pdf_outline(tmp_path / "travel.pdf", POLICY, cjk=True), "travel.pdf")
    first = pages[0].page_content.split("\n")
    assert first[:2] == [f"{HEADING_MARK}# 差旅管理制度", f"{HEADING_MARK}## 住宿标准"]
    assert f"{HEADING_MARK}## 交通" in first
    assert f"{HEADING_MARK}### 机票" in pages[1].page_content.split("\n")
    assert not any(line.startswith(HEADING_MARK) for line in first if "650" in line)  # body text stays


def test_chunks_start_with_their_section_path_also_after_a_page_break(tmp_path: Path) -> None:
    pages = load_file(write_pdf_outline(tmp_path / "travel.pdf", POLICY, cjk=True), "travel.pdf")
    chunks = split_documents(pages, make_splitter(500, 0))
    by_text = {chunk.page_content.split("\n", 1)[1]: chunk for chunk in chunks}
    trains = by_text["火车一律乘坐二等座，夜间乘车可乘坐卧铺。"]  # page 2, before its first heading
    assert trains.page_content.startswith("差旅管理制度 > 交通\n")
    assert trains.metadata["section"] == "差旅管理制度 > 交通" and trains.metadata["page"] == 2
    assert by_text["飞机一律乘坐经济舱。"].metadata["section"] == "差旅管理制度 > 交通 > 机票"
    assert not any(HEADING_MARK in chunk.page_content for chunk in chunks)


def test_without_chunk_headings_the_headings_are_lines_of_text(tmp_path: Path) -> None:
    pages = load_file(write_pdf_outline(tmp_path / "travel.pdf", POLICY, cjk=True), "travel.pdf")
    chunks = split_documents(pages, make_splitter(500, 0), headings=False)
    assert chunks[0].page_content.startswith("差旅管理制度\n住宿标准\n国内出差")
    assert "section" not in chunks[0].metadata


def test_a_pdf_set_in_one_size_has_no_headings(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "plain.pdf", ["Laptops\nLaptops are replaced every 48 months."])
    [page] = load_file(path, "plain.pdf")
    assert HEADING_MARK not in page.page_content


def test_what_a_heading_must_be() -> None:
    body = [("A paragraph of body text that goes on for a while.", 11.0, False)] * 6
    lines = {
        1: [
            ("Travel policy", 20.0, False),
            ("Rates apply from 1 March.", 16.0, False),  # ends a sentence: a large paragraph
            ("12", 16.0, False),  # a page number set large
            ("| Plan | Limit |", 16.0, False),  # a table row
            ("Hotels", 16.0, False),
            ("Note", 12.0, False),  # barely larger than the body: emphasis, not a heading
            ("Rates", 11.0, True),  # bold at the body size: a heading below the larger ones
            ("Important:", 11.0, True),  # a bold lead-in
            ("A bold paragraph of body text that goes on and on until it", 11.0, True),  # wraps here
            ("Small print", 9.0, True),  # bold below the body size: a caption
            *body,
        ]
    }
    assert heading_levels(lines) == {1: {"Travel policy": 1, "Hotels": 2, "Rates": 3}}
    slides = {1: [("Big title", 30.0, False), ("Another big line", 30.0, False), ("small print", 8.0, False)]}
    assert heading_levels(slides) == {}  # most lines large: no body to be larger than


def test_pieces_that_do_not_spell_the_page_are_not_judged() -> None:
    sizes = LineSizes()
    sizes("Title\n", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0], None, 20.0)
    sizes("Body", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0], None, 11.0)
    assert sizes.lines("Title\nBody") == [("Title", 20.0, False), ("Body", 11.0, False)]
    assert sizes.lines("Title\nBody text") is None


def test_a_heading_that_ends_a_page_opens_the_next() -> None:
    first, open_headings = marked_sections(f"Intro.\n{HEADING_MARK}# Hotels", [])
    assert first == [([], "Intro.")]
    second, _ = marked_sections("Up to 650 a night.", open_headings)
    assert second == [(["Hotels"], "Up to 650 a night.")]


def test_a_page_that_starts_with_a_heading_does_not_repeat_the_last_one_as_text() -> None:
    _, open_headings = marked_sections(f"{HEADING_MARK}# Hotels\nUp to 650 a night.", [])
    second, _ = marked_sections(f"{HEADING_MARK}# Meals\n100 a day.", open_headings)
    assert second == [(["Meals"], "100 a day.")]  # no ([], "Hotels") before it


# A handbook exported from Word with its headings in bold at the body size: only its outline (the
# bookmarks Word writes from heading styles) tells them from the text.
HANDBOOK = [
    (1, "1 Remote work"),
    (0, "Staff may work from home up to two days a week with their manager's approval."),
    (2, "1.1 Equipment"),
    (0, "The company lends a laptop and a monitor; a chair is reimbursed up to 150 euros."),
    (0, "\f"),
    (0, "Returned equipment is wiped before it is lent again."),
    (1, "2 Expenses"),
    (0, "Internet costs are reimbursed up to 30 euros a month."),
]


def test_an_outline_names_headings_set_in_the_body_size(tmp_path: Path) -> None:
    bookmarks = [(1, "1 Remote work"), (2, "1.1 Equipment"), (1, "2 Expenses")]
    path = write_pdf_outline(tmp_path / "handbook.pdf", HANDBOOK, bookmarks=bookmarks, one_size=True)
    pages = load_file(path, "handbook.pdf")
    assert pages[0].page_content.split("\n")[0] == f"{HEADING_MARK}# 1 Remote work"
    assert f"{HEADING_MARK}## 1.1 Equipment" in pages[0].page_content.split("\n")
    chunks = split_documents(pages, make_splitter(500, 0))
    sections = {chunk.page_content.split("\n")[-1]: chunk.metadata.get("section") for chunk in chunks}
    assert sections["Returned equipment is wiped before it is lent again."] == "1 Remote work > 1.1 Equipment"
    assert sections["Internet costs are reimbursed up to 30 euros a month."] == "2 Expenses"
    # without the outline the same file has no headings: all three lines are body text
    plain = load_file(write_pdf_outline(tmp_path / "plain.pdf", HANDBOOK, one_size=True), "plain.pdf")
    assert not any(HEADING_MARK in page.page_content for page in plain)


def test_an_outline_entry_without_its_number_names_the_numbered_line(tmp_path: Path) -> None:
    bookmarks = [(1, "Remote work"), (2, "Equipment"), (1, "Expenses")]  # as a LaTeX class writes them
    path = write_pdf_outline(tmp_path / "handbook.pdf", HANDBOOK, bookmarks=bookmarks, one_size=True)
    lines = [line for page in load_file(path, "handbook.pdf") for line in page.page_content.split("\n")]
    assert [line for line in lines if line.startswith(HEADING_MARK)] == [
        f"{HEADING_MARK}# 1 Remote work",
        f"{HEADING_MARK}## 1.1 Equipment",
        f"{HEADING_MARK}# 2 Expenses",
    ]


def test_sizes_win_over_an_outline_that_names_fewer_headings(tmp_path: Path) -> None:
    bookmarks = [(1, "差旅管理制度"), (0, ""), (0, ""), (0, "")]  # only the document's title
    path = write_pdf_outline(tmp_path / "travel.pdf", POLICY, cjk=True, bookmarks=bookmarks)
    pages = load_file(path, "travel.pdf")
    assert f"{HEADING_MARK}### 机票" in pages[1].page_content.split("\n")  # the sizes' levels


def test_what_an_outline_entry_names() -> None:
    pages = {
        1: ["Contents", "Remote work ....... 1", "1 Remote work", "Staff may work from home.", "Remote work"],
        2: ["Costs of working from home Expenses", "Chapter 2: Expenses"],
    }
    outline = [(1, 1, "Remote  WORK"), (2, 1, "Expenses")]
    # the first line that is the title, spacing, case and a number before it aside; not a longer line
    assert outline_levels(outline, pages) == {1: {"1 Remote work": 1}, 2: {"Chapter 2: Expenses": 1}}
    generic = [(1, 1, "Page 1"), (2, 1, "Page 2"), (2, 1, "Expenses")]  # a converter's bookmarks
    assert outline_levels(generic, pages) == {}  # most entries name no line: not the document's headings
    assert outline_levels([(3, 2, "Expenses")], pages) == {}  # found only on the page it points to


def test_an_unreadable_outline_leaves_the_text_as_read() -> None:
    class Damaged:
        @property
        def outline(self) -> list[object]:
            raise ValueError("broken /Outlines dictionary")

    assert _pdf_outline(Damaged()) == []


def test_lines_in_bold_at_the_body_size_are_headings_unless_bold_is_the_body(tmp_path: Path) -> None:
    path = write_pdf_outline(tmp_path / "handbook.pdf", HANDBOOK, one_size=True, bold=True)
    headings = [
        line
        for page in load_file(path, "handbook.pdf")
        for line in page.page_content.split("\n")
        if line.startswith(HEADING_MARK)
    ]
    # one level: bold tells a heading, not its depth
    assert headings == [
        f"{HEADING_MARK}# 1 Remote work",
        f"{HEADING_MARK}# 1.1 Equipment",
        f"{HEADING_MARK}# 2 Expenses",
    ]
    emphatic = [(1, text) for level, text in HANDBOOK if text != "\f"]  # every line bold
    [page] = load_file(
        write_pdf_outline(tmp_path / "bold.pdf", emphatic, one_size=True, bold=True), "bold.pdf"
    )
    assert HEADING_MARK not in page.page_content


def test_a_font_is_bold_by_its_name_or_its_weight() -> None:
    from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject

    def font(name: str, weight: int | None = None) -> DictionaryObject:
        descriptor = DictionaryObject()
        if weight is not None:
            descriptor[NameObject("/FontWeight")] = NumberObject(weight)
        face = DictionaryObject({NameObject("/BaseFont"): NameObject(name)})
        face[NameObject("/FontDescriptor")] = descriptor
        return face

    assert is_bold(font("/ABCDEF+Arial-BoldMT")) and is_bold(font("/SimSun,Bold"))
    assert is_bold(font("/ABCDEF+SourceHanSansCN-Medium", 700))
    assert not is_bold(font("/ABCDEF+SimSun", 400)) and not is_bold(font("/Helvetica"))
    composite = DictionaryObject({NameObject("/BaseFont"): NameObject("/ABCDEF+FZXBSJW")})
    composite[NameObject("/DescendantFonts")] = ArrayObject([font("/ABCDEF+FZXBSJW", 700)])
    assert is_bold(composite)  # a composite font's weight is its descendant's
    assert not is_bold(DictionaryObject({NameObject("/DescendantFonts"): NumberObject(3)}))  # damaged


def test_numbered_titles_at_the_body_size_go_under_a_title_set_larger(tmp_path: Path) -> None:
    """A regulation exported to PDF: its name set large, its chapters and sections at the body size."""
    blocks = [
        (1, "星河云计算采购管理办法"),
        (0, "（2024 年修订）"),  # under a name already marked, not taken for the document's name
        (0, "第一章 总则"),
        (0, "为规范公司采购行为，降低采购成本，根据国家有关法律法规，结合公司实际，制定本办法。"),
        (0, "第二章 采购流程"),
        (0, "第一节 申请"),
        (0, "采购需求由使用部门在系统中提出，单笔金额超过五万元的须附三家以上供应商的报价。"),
        (0, "第二节 审批"),
        (0, "单笔五万元以下由部门经理审批，五万元以上还须经财务总监审批后方可签订合同。"),
    ]
    pages = load_file(write_pdf_outline(tmp_path / "rules.pdf", blocks, cjk=True), "rules.pdf")
    chunks = split_documents(pages, make_splitter(500, 0))
    sections = {chunk.page_content.split("\n")[-1][:6]: chunk.metadata.get("section") for chunk in chunks}
    assert sections["为规范公司采"] == "星河云计算采购管理办法 > 第一章 总则"
    assert sections["单笔五万元以"] == "星河云计算采购管理办法 > 第二章 采购流程 > 第二节 审批"
    assert not any("修订" in (section or "") for section in sections.values())
