"""Each loader on real files generated here: PDF (pypdf), DOCX, HTML and text in many encodings."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4

from ingest.loaders import (
    HEADING_MARK,
    LoadError,
    decode_text,
    heading_line,
    is_supported,
    load_file,
    unwrap_lines,
)
from ingest.splitter import make_splitter, split_documents
from tests.support.sample_docs import CJK_FONT, FONT_SIZE, MARGIN, wrap_text, write_docx, write_pdf

ZH = "知识库问答系统把文档切成小块。每个块都会计算向量！检索时取回最相关的几块？"


def test_pdf_pages_carry_their_numbers(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "guide.pdf", ["Laptops are replaced every 48 months.", "Helpdesk extension 8021."]
    )
    documents = load_file(path, "sub/guide.pdf")
    assert [doc.metadata["page"] for doc in documents] == [1, 2]
    assert "48 months" in documents[0].page_content
    assert "8021" in documents[1].page_content
    assert all(doc.metadata["source"] == "sub/guide.pdf" for doc in documents)
    assert documents[0].metadata["file_type"] == "pdf"


def test_chinese_pdf_text_comes_back(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "zh.pdf", [ZH], cjk=True)
    text = "".join(load_file(path, "zh.pdf")[0].page_content.split())
    assert "知识库问答系统把文档切成小块" in text


def test_encrypted_pdf_is_reported(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", ["secret"])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="pw", owner_password="owner")
    locked = tmp_path / "locked.pdf"
    with locked.open("wb") as handle:
        writer.write(handle)
    with pytest.raises(LoadError, match="encrypted PDF"):
        load_file(locked, "locked.pdf")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_a_pdf_encrypted_with_an_owner_password_only_is_read(tmp_path: Path, algorithm: str) -> None:
    # AES needs the cryptography package (it comes with pdfplumber): without it such a file failed
    plain = write_pdf(tmp_path / "plain.pdf", ["Laptops are replaced every 48 months."])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm=algorithm)
    locked = tmp_path / "locked.pdf"
    with locked.open("wb") as handle:
        writer.write(handle)
    assert load_file(locked, "locked.pdf")[0].page_content == "Laptops are replaced every 48 months."


@pytest.mark.parametrize(
    "content",
    [b"", b"%PDF-1.7\n garbage that is not a pdf", b"this is not a PDF at all"],
    ids=["empty", "garbage", "not-pdf"],
)
def test_corrupt_pdf_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(content)
    with pytest.raises(LoadError, match="PDF"):
        load_file(path, "bad.pdf")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP archive"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "web page"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "it is a PNG image"),
        ("年假规定：员工每年享有十五天年假。".encode(), "plain text"),
        (("<html><body>" + "页面不存在" * 100).encode()[:1100], "web page"),  # a character cut at 1 KB
        (b"\xd9\xd2\x00\x13\xfe", "other binary data"),
    ],
)
def test_a_file_that_is_no_pdf_is_said_to_be_what_it_is(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "renamed.pdf"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=said) as raised:
        load_file(path, "renamed.pdf")
    assert "\\x" not in str(raised.value)  # no raw bytes


def test_truncated_pdf_is_reported_or_partially_read(tmp_path: Path) -> None:
    full = write_pdf(tmp_path / "full.pdf", ["page one text", "page two text"]).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(full[: len(full) // 3])
    with pytest.raises(LoadError):
        load_file(path, "cut.pdf")


def test_pdf_without_text_is_reported(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    path = tmp_path / "blank.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    with pytest.raises(LoadError, match="no extractable text"):
        load_file(path, "blank.pdf")


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("gbk", b""),
        ("gb18030", b""),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16-le", b""),
    ],
)
def test_text_encodings_decode_without_mojibake(tmp_path: Path, encoding: str, prefix: bytes) -> None:
    text = f"# 休假制度\n\n{ZH}\nAnnual leave: 15 days.\n"
    path = tmp_path / "doc.txt"
    path.write_bytes(prefix + text.encode(encoding))
    [document] = load_file(path, "doc.txt")
    assert document.page_content == text


def test_short_gbk_text_is_not_mistaken_for_another_encoding() -> None:
    assert decode_text("会议室「观澜」可容纳 20 人。".encode("gbk"))[0] == "会议室「观澜」可容纳 20 人。"


def test_latin1_text_still_decodes() -> None:
    text, encoding = decode_text("Café crème, déjà vu, naïve façade.".encode("latin-1"))
    assert text == "Café crème, déjà vu, naïve façade."
    assert encoding != "gb18030"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty document"),
        (b"  \n\t \r\n ", "empty document"),
        (bytes(range(256)) * 8, "binary data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 20, "binary data"),
    ],
    ids=["zero-bytes", "whitespace", "all-bytes", "png-named-txt"],
)
def test_junk_text_files_are_reported(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "junk.txt"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load_file(path, "junk.txt")


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    path = write_docx(
        tmp_path / "leave.docx",
        ["年假须在「禾苗」系统申请。", "婚假 13 天。"],
        heading="休假制度",
        table=[["工龄", "年假"], ["1-2 年", "5 天"]],
    )
    [document] = load_file(path, "leave.docx")
    for fragment in ("休假制度", "「禾苗」", "婚假 13 天", "工龄 | 年假\n1-2 年 | 5 天"):
        assert fragment in document.page_content
    # Word's "Repeat as header row" marks a head; a bold first row alone does not
    table = [["工龄", "年假"], ["1-2 年", "5 天"]]
    marked = write_docx(tmp_path / "marked.docx", [], table=table, marked_head=True)
    assert load_file(marked, "marked.docx")[0].page_content == "工龄 | 年假\n--- | ---\n1-2 年 | 5 天"


def test_a_long_word_table_repeats_its_head_row_in_every_chunk(tmp_path: Path) -> None:
    """Rows on consecutive lines, as an HTML table's are, so the splitter can carry the head row."""
    rows = [[f"城市{n:02d}", f"{400 + n * 10} 元"] for n in range(30)]
    path = write_docx(
        tmp_path / "hotel.docx", ["住宿标准如下。"], heading="住宿", table=[["城市", "每晚上限"], *rows]
    )
    documents = load_file(path, "hotel.docx")
    assert "城市 | 每晚上限\n城市00 | 400 元\n城市01 | 410 元" in documents[0].page_content
    chunks = split_documents(documents, make_splitter(120, 0))
    with_rows = [chunk for chunk in chunks if "城市1" in chunk.page_content or "城市2" in chunk.page_content]
    assert len(with_rows) > 1 and all("城市 | 每晚上限" in chunk.page_content for chunk in with_rows)


def test_docx_keeps_document_order_and_the_text_python_docx_paragraphs_miss(tmp_path: Path) -> None:
    """A table stays under the heading it follows; a merged cell counts once; text in a nested
    table, a content control or a tracked insertion is kept, tracked deletions are not."""
    import docx
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    document = docx.Document()
    document.add_heading("交通标准", level=1)
    document.add_paragraph("高铁二等座。")
    document.add_heading("住宿标准", level=1)
    table = document.add_table(rows=2, cols=3)
    header = table.rows[0].cells
    header[0].merge(header[2]).text = "住宿标准（元/晚）"
    for cell, value in zip(table.rows[1].cells, ("经理", "600", "450"), strict=True):
        cell.text = value
    table.rows[1].cells[0].add_table(rows=1, cols=1).rows[0].cells[0].text = "值班电话6688"
    document.add_paragraph("以上为上限。")
    body = document.element.body
    body.insert(
        len(body) - 1,
        parse_xml(f'<w:sdt {w}><w:sdtContent><w:p><w:r><w:t>合同编号HT-2024-001</w:t></w:r></w:p>'
                  "</w:sdtContent></w:sdt>"),
    )  # fmt: skip
    body.insert(
        len(body) - 1,
        parse_xml(f'<w:p {w}><w:r><w:t>保修期为</w:t></w:r><w:ins w:id="1" w:author="a">'
                  '<w:r><w:t>三年</w:t></w:r></w:ins><w:del w:id="2" w:author="a">'
                  "<w:r><w:delText>一年</w:delText></w:r></w:del></w:p>"),
    )  # fmt: skip
    path = tmp_path / "rules.docx"
    document.save(str(path))
    [loaded] = load_file(path, "rules.docx")
    text = loaded.page_content
    assert text.index("高铁二等座") < text.index("住宿标准（元/晚）") < text.index("以上为上限")
    assert text.count("住宿标准（元/晚）") == 1
    assert "经理 值班电话6688 | 600 | 450" in text
    assert "合同编号HT-2024-001" in text and "保修期为三年" in text and "一年" not in text


def test_corrupt_docx_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LoadError, match="not a readable DOCX"):
        load_file(path, "bad.docx")


def test_html_keeps_text_and_title_drops_scripts(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>班车</title><style>p{color:red}</style>"
        "<script>var tracking = 'SHOULD_NOT_APPEAR';</script></head>"
        "<body><h1>Shuttle</h1><p>The bus has 33 seats.</p><script>alert('x')</script></body></html>",
        encoding="utf-8",
    )
    [document] = load_file(path, "page.html")
    assert "The bus has 33 seats." in document.page_content
    assert "SHOULD_NOT_APPEAR" not in document.page_content
    assert "color:red" not in document.page_content
    assert document.metadata["title"] == "班车"


def test_gbk_html_with_meta_charset(tmp_path: Path) -> None:
    path = tmp_path / "gbk.html"
    path.write_bytes(
        '<html><head><meta charset="gbk"></head><body><p>观澜会议室</p></body></html>'.encode("gbk")
    )
    assert "观澜会议室" in load_file(path, "gbk.html")[0].page_content


def test_unsupported_types() -> None:
    assert is_supported(Path("a.PDF")) and is_supported(Path("b.markdown")) and is_supported(Path("c.htm"))
    assert not is_supported(Path("d.xlsx")) and not is_supported(Path("Makefile"))
    with pytest.raises(LoadError, match="unsupported"):
        load_file(Path("d.xlsx"), "d.xlsx")


def test_html_inline_markup_does_not_break_a_line_and_table_rows_stay_rows(tmp_path: Path) -> None:
    path = tmp_path / "contact.html"
    path.write_text(
        "<html><body><h1>联系我们</h1><p>请拨打<b>客服</b>电话<span>400</span>-<span>800</span>-<span>1234</span>"
        "</p><table><tr><th>姓名</th><th>分机</th></tr><tr><td>张三</td><td>8001</td></tr></table>"
        "<p>First line<br>second line</p></body></html>",
        encoding="utf-8",
    )
    lines = load_file(path, "contact.html")[0].page_content.splitlines()
    for line in (
        heading_line(1, "联系我们"),
        "请拨打客服电话400-800-1234",
        "姓名 | 分机",
        "张三 | 8001",
        "First line",
        "second line",
    ):
        assert line in lines
    # a table's rows are one run, and a head row of <th> cells gets the Markdown rule under it
    assert lines[lines.index("姓名 | 分机") :][:3] == ["姓名 | 分机", "--- | ---", "张三 | 8001"]


def _html_text(tmp_path: Path, html: str) -> str:
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    return load_file(tmp_path / "page.html", "page.html")[0].page_content


def test_html_source_line_breaks_are_spaces_and_pre_keeps_its_lines(tmp_path: Path) -> None:
    text = _html_text(
        tmp_path,
        "<html><body><p>The shuttle leaves\n   at 18:00 from\n gate B.</p>\n<table>\n"
        "  <tr>\n <th>Line</th>\n <th>Time</th></tr>\n  <tr><td>H1</td><td>8:00</td></tr>\n"
        "  <tr><td>H2</td><td>8:10</td></tr>\n</table><pre>kbqa ingest\n  --full</pre></body></html>",
    )
    assert "The shuttle leaves at 18:00 from gate B." in text
    assert "Line | Time\n--- | ---\nH1 | 8:00\nH2 | 8:10" in text
    assert "kbqa ingest\n--full" in text
    # Word's "Save as HTML" and Confluence put each cell in a <p>: the row stays one line.
    exported = _html_text(
        tmp_path,
        "<table><tr><th><p>城市</p></th><th><p>上限</p></th></tr><tr><td><p>上海</p></td><td><p>600</p></td></tr>"
        "<tr><td>Pudong<br>airport</td><td>450</td></tr></table>",
    )
    assert exported == "城市 | 上限\n--- | ---\n上海 | 600\nPudong airport | 450"
    heading = "<h2>Annual<br>leave<a class='headerlink' href='#annual-leave'>¶</a></h2><p>15 days.</p>"
    assert _html_text(tmp_path, heading) == f"{heading_line(2, 'Annual leave')}\n\n15 days."


def test_only_a_table_head_the_page_marks_gets_a_rule(tmp_path: Path) -> None:
    """A first row of data is no head: its cells would name every other row's in the answer prompt."""
    plain = "<table><tr><td>H1</td><td>8:00</td></tr><tr><td>H2</td><td>8:10</td></tr></table>"
    assert _html_text(tmp_path, plain) == "H1 | 8:00\nH2 | 8:10"
    mixed = "<table><tr><th>H1</th><td>8:00</td></tr><tr><th>H2</th><td>8:10</td></tr></table>"
    assert _html_text(tmp_path, mixed) == "H1 | 8:00\nH2 | 8:10"
    alone = "<table><tr><th>Line</th><th>Time</th></tr></table><p>No service today.</p>"
    assert _html_text(tmp_path, alone) == "Line | Time\n\nNo service today."
    nested = (
        "<table><thead><tr><th>Office</th><th>Lines</th></tr></thead><tbody><tr><td>Hangzhou</td><td>"
        "<table><tr><th>Line</th></tr><tr><td>H1</td></tr></table></td></tr></tbody></table>"
    )
    assert _html_text(tmp_path, nested).startswith("Office | Lines\n--- | ---\nHangzhou |")


def test_html_headings_name_the_sections_of_chunks(tmp_path: Path) -> None:
    path = tmp_path / "policy.html"
    path.write_text(
        "<html><body><h1>差旅<b>制度</b></h1><p>总则。</p><h2>住宿</h2><p>上海每晚 600 元。</p>"
        "<h2>交通</h2><p>高铁二等座。</p></body></html>",
        encoding="utf-8",
    )
    documents = load_file(path, "policy.html")
    assert documents[0].page_content.splitlines()[0] == heading_line(1, "差旅制度")
    # The chunks are cut as the page reads, each naming the section it starts in (measured: split
    # by section, with or without the path in the text, cost answers; docs/BENCHMARKS.md).
    chunks = split_documents(documents, make_splitter(15, 0))
    assert [(chunk.metadata.get("section"), chunk.page_content) for chunk in chunks] == [
        ("差旅制度", "差旅制度\n\n总则。\n\n住宿"),
        ("差旅制度 > 住宿", "上海每晚 600 元。"),
        ("差旅制度 > 交通", "交通\n\n高铁二等座。"),
    ]
    unnamed = split_documents(documents, make_splitter(15, 0), headings=False)  # KBQA_CHUNK_HEADINGS=false
    assert [chunk.page_content for chunk in unnamed] == [chunk.page_content for chunk in chunks]
    assert not any("section" in chunk.metadata for chunk in unnamed)


def test_a_literal_hash_line_in_html_or_word_is_text_not_a_heading(tmp_path: Path) -> None:
    """A shell comment in a code sample is no section title; only the loaders' own marks are."""
    import docx

    page = "<h2>Install</h2><pre># fetch the wheels\npip install kbqa</pre>"
    (tmp_path / "install.html").write_text(page, encoding="utf-8")
    document = docx.Document()
    document.add_paragraph("# 1 号会议室")
    document.add_paragraph("可容纳 20 人。")
    document.save(str(tmp_path / "rooms.docx"))
    chunks = [  # one file at a time, as ingestion splits them
        chunk
        for name in ("install.html", "rooms.docx")
        for chunk in split_documents(load_file(tmp_path / name, name), make_splitter(500, 50))
    ]
    assert [(chunk.metadata.get("section"), chunk.page_content) for chunk in chunks] == [
        ("Install", "Install\n\n# fetch the wheels\npip install kbqa"),
        (None, "# 1 号会议室\n\n可容纳 20 人。"),
    ]


def test_html_site_navigation_header_and_footer_are_left_out(tmp_path: Path) -> None:
    """The site's menu and copyright line are not the page's text; an article's own header is."""
    text = _html_text(
        tmp_path,
        "<html><body><header><a>Xinghe intranet</a></header><nav><a>Home</a> <a>HR</a></nav>"
        '<div role="navigation">Breadcrumbs</div><article><header><h1>Parking</h1><p>Updated May</p>'
        "</header><p>Parking costs 10 yuan a day.</p></article><footer>© 2024 Xinghe</footer></body></html>",
    )
    assert (
        "Parking costs 10 yuan a day." in text
        and heading_line(1, "Parking") in text
        and "Updated May" in text
    )
    for site_text in ("Xinghe intranet", "Home", "Breadcrumbs", "© 2024"):
        assert site_text not in text
    main = "<body><div>Menu item</div><main hidden>Old</main><main><p>Only this.</p></main></body>"
    assert _html_text(tmp_path, main) == "Only this."
    quote = "<footer>Site</footer><blockquote><p>Be kind.</p><footer>Founder</footer></blockquote>"
    assert _html_text(tmp_path, quote) == "Be kind.\n\nFounder"  # a quotation's own footer stays
    header_only = "<html><body><header><p>Office hours 9-18.</p></header></body></html>"
    assert _html_text(tmp_path, header_only) == "Office hours 9-18."


def test_docx_headings_name_the_sections_of_chunks(tmp_path: Path) -> None:
    """Word marks a heading by its style: built-in "heading N", an outline level, or a custom style
    based on one; the "Title" style names the document."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    document = docx.Document()
    document.add_paragraph("员工手册", style="Title")
    document.add_heading("休假制度", level=1)
    document.add_paragraph("年假 5 天。")
    custom = document.styles.add_style("我的小节", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 2"]
    document.add_paragraph("婚假", style=custom)
    document.add_paragraph("婚假 13 天。")
    document.element.body.insert(
        len(document.element.body) - 1,
        parse_xml(f'<w:p {w}><w:pPr><w:outlineLvl w:val="0"/></w:pPr><w:r><w:t>报销制度</w:t></w:r></w:p>'),
    )
    document.add_paragraph("发票须在 30 天内提交。")
    path = tmp_path / "handbook.docx"
    document.save(str(path))
    [loaded] = load_file(path, "handbook.docx")
    assert loaded.metadata["title"] == "员工手册"
    marked = [
        heading_line(1, "休假制度"),
        "年假 5 天。",
        heading_line(2, "婚假"),
        "婚假 13 天。",
        heading_line(1, "报销制度"),
    ]
    assert "\n\n".join(marked) in loaded.page_content
    chunks = split_documents([loaded], make_splitter(20, 0))  # a chunk's section: the one it starts in
    assert [(chunk.metadata.get("section"), chunk.page_content) for chunk in chunks] == [
        (None, "员工手册\n\n休假制度"),
        ("休假制度", "年假 5 天。\n\n婚假"),
        ("休假制度 > 婚假", "婚假 13 天。\n\n报销制度"),
        ("报销制度", "发票须在 30 天内提交。"),
    ]


def test_html_declared_charset_wins_over_a_guess(tmp_path: Path) -> None:
    """A short Shift-JIS page reads as GB18030 mojibake by guessing; its <meta> says what it is."""
    path = tmp_path / "rules.html"
    text = "就業規則：有給休暇は年十日。"
    path.write_bytes(
        f'<html><head><meta charset="shift_jis"></head><body><p>{text}</p></body></html>'.encode("shift_jis")
    )
    assert load_file(path, "rules.html")[0].page_content == text


def test_pdf_line_wraps_inside_a_sentence_are_undone() -> None:
    """Lines that fill the width were wrapped; a short line (a heading) keeps its break."""
    chinese = "第一章 总则\n员工出差乘坐高铁二等座，住宿的差\n旅标准为每晚六百元。"
    assert unwrap_lines(chinese) == "第一章 总则\n员工出差乘坐高铁二等座，住宿的差旅标准为每晚六百元。"
    english = "Parking\nThe visitor office lies at the\nfar end of parking lot C."
    assert unwrap_lines(english) == "Parking\nThe visitor office lies at the far end of parking lot C."


def test_chinese_lines_wrapped_before_a_number_a_bracket_or_punctuation_are_joined() -> None:
    """In Chinese text a line also breaks before a number, a Latin word, a bracket or a comma that
    hangs over; such a break is a wrap unless a sentence ends there or an item starts after it."""
    lines = [
        "出差地的市内交通凭电子发票实报实销，但每人每天合计不超过 150",  # a number before its unit
        "元。审批权限按单次出差的预计总费用划分，在部门总监审批后还须报首席财务官（",
        "CFO）审批。超过 20,000 元的差旅须由财务共享中心复核并在系统中登记后方可",
        "，报销。下列情形不予报销：",  # a comma carried over; then a colon ends the lead-in
        "1. 未经审批发生的差旅费用；超过标准部分的住宿费用以及其他与公务无关的支出",
        "（二）逾期提交的报销单据；超过六十个自然日仍未提交的费用原则上不再受理",
    ]
    assert unwrap_lines("\n".join(lines)).split("\n") == [
        "出差地的市内交通凭电子发票实报实销，但每人每天合计不超过 150元。"
        "审批权限按单次出差的预计总费用划分，在部门总监审批后还须报首席财务官（CFO）审批。"
        "超过 20,000 元的差旅须由财务共享中心复核并在系统中登记后方可，报销。下列情形不予报销：",
        lines[4],  # items keep their breaks
        lines[5],
    ]
    heading = f"{HEADING_MARK}# 出差审批与报销的总体要求以及各级审批权限的具体划分方法说明"
    assert unwrap_lines(f"{heading}\n员工出差前须提交申请。") == f"{heading}\n员工出差前须提交申请。"


def test_a_full_line_is_judged_by_its_printed_width() -> None:
    """A line of Chinese characters prints twice as wide as as many Latin letters: beside a line of
    English words, counting characters made a full Chinese line look short."""
    english = "Expenses are reimbursed in CNY at the rate of the day (Bank of China)."  # 70 letters
    chinese = "审批权限按单次出差的预计总费用划分：五千元以下由部门经理审批，五千元（含）至"  # 38 characters
    assert unwrap_lines(f"{english}\n{chinese}\n20,000 元由部门总监审批。") == (
        f"{english}\n{chinese}20,000 元由部门总监审批。"
    )


@pytest.mark.parametrize("text", ["員工請假規則：請假須經主管核准。", "颱風停班停課依政府公告辦理。"])
def test_a_short_big5_text_is_read_as_traditional_chinese(text: str) -> None:
    """One Big5 sentence was guessed as a Japanese code page (mojibake); Chinese is tried first."""
    assert decode_text(text.encode("big5")) == (text, "big5")


JAPANESE = (
    "東京本社の会議室は三階にあります。予約は社内システムから行ってください。\n"
    "受付時間：午前九時から午後六時まで。"
)


@pytest.mark.parametrize("encoding", ["shift_jis", "cp932", "euc_jp", "iso2022_jp"])
def test_japanese_legacy_encodings_are_not_read_as_chinese(tmp_path: Path, encoding: str) -> None:
    """Shift-JIS and EUC-JP bytes also decode as GB18030 or Big5, into ideographs that pass for
    Chinese: the file's kana tell them apart. ISO-2022-JP is 7-bit and passed for ASCII text."""
    path = tmp_path / "guide.txt"
    path.write_bytes(JAPANESE.encode(encoding))
    assert load_file(path, "guide.txt")[0].page_content == JAPANESE


def test_a_short_shift_jis_line_with_one_kana_is_japanese() -> None:
    text = "就業規則：有給休暇は年十日。"
    assert decode_text(text.encode("shift_jis"))[0] == text


@pytest.mark.parametrize("text", ["設備維護", "僅限內部使用", "我們的個人設備"])
def test_short_traditional_chinese_in_gbk_is_not_read_as_shift_jis(text: str) -> None:
    """們 個 備 僅 are GBK extension characters whose lead byte is a Shift-JIS kana lead byte: read as
    Shift-JIS they give a kana or two amid half-width katakana, which real Japanese text rarely has."""
    assert decode_text(text.encode("gbk"))[0] == text


def test_japanese_with_some_half_width_katakana_is_still_japanese() -> None:
    text = "東京本社の会議室は三階にあります。ﾃｽﾄ用ｶﾅ"
    assert decode_text(text.encode("cp932")) == (text, "cp932")


@pytest.mark.parametrize("encoding", ["gbk", "big5"])
def test_chinese_with_kana_free_text_stays_chinese(encoding: str) -> None:
    """Chinese bytes read as Shift-JIS give no full-width kana, so the Japanese check passes them by."""
    text = "員工請假規則：請假須經主管核准，颱風停班依政府公告辦理。年假十五天。"
    assert decode_text(text.encode(encoding))[0] == text


def test_pdf_running_headers_and_footers_are_dropped_and_wrapped_lines_joined(tmp_path: Path) -> None:
    """A header and a page number printed on every page would go into every chunk (the first page
    keeps its copy); the body, wrapped at the page width by the PDF, comes back as one line."""
    bodies = [
        "员工出差期间的住宿标准按城市分级执行，一线城市每晚不超过六百元，其他城市每晚不超过四百五十元。",
        "出差人员应在返回后十个工作日内提交报销单，并附上发票原件和行程单，逾期提交的需部门总监签字。",
        "国际出差须提前十五个工作日提交申请，经分管副总裁批准后方可预订机票和酒店，费用按当地标准。",
        "因公外出期间发生的市内交通费每日上限为一百元，超出部分由员工自理，特殊情况可申请例外。",
    ]
    pages = [f"星河公司内部资料 严禁外传\n{body}\n— {n} —" for n, body in enumerate(bodies, start=1)]
    loaded = load_file(write_pdf(tmp_path / "rules.pdf", pages, cjk=True), "rules.pdf")
    assert [page.metadata["page"] for page in loaded] == [1, 2, 3, 4]
    assert "严禁外传" in loaded[0].page_content and "— 1 —" in loaded[0].page_content
    for page, body in zip(loaded, bodies, strict=True):
        assert body in page.page_content.splitlines()  # one line again, though printed on two
    assert not any("严禁外传" in page.page_content or "—" in page.page_content for page in loaded[1:])


def test_a_sentence_broken_by_a_page_break_is_whole_on_the_page_where_it_ends(tmp_path: Path) -> None:
    """Pages are split apart, so the two halves of a sentence across a page break would sit in two
    chunks and neither would hold the fact; the unfinished sentence (only it) joins the next page."""
    width = len(wrap_text("字" * 100, CJK_FONT, FONT_SIZE, A4[0] - 2 * MARGIN)[0])
    done = "员工出差期间的住宿标准按城市分级执行，由财务部每年一月公布当年的城市分级名单和各级标准。"
    broken = (
        "一线城市每晚不超过六百元，其他城市每晚不超过四百五十元，"
        "超出部分由员工自理，特殊情况须经部门总监批准后报销。"
    )
    cut = 2 * width - len(done)  # page 1 ends with two full lines, mid-sentence
    assert 0 < cut < len(broken) and "\u4e00" <= broken[cut] <= "\u9fff"
    pages = [
        done + broken[:cut],
        broken[cut:] + "\n市内交通费每日上限为一百元。",
        "第二章 附则\n本办法自发布之日起施行。",
    ]
    loaded = load_file(write_pdf(tmp_path / "travel.pdf", pages, cjk=True), "travel.pdf")
    assert [page.metadata["page"] for page in loaded] == [1, 2, 3]
    assert loaded[0].page_content == done
    assert loaded[1].page_content.splitlines() == [broken, "市内交通费每日上限为一百元。"]
    assert loaded[2].page_content.startswith("第二章 附则")  # a finished sentence stays where it is


def test_markdown_front_matter_is_metadata_not_text(tmp_path: Path) -> None:
    path = tmp_path / "leave.md"
    path.write_text('---\ntitle: "休假制度"\ntags: [hr]\n---\n# 年假\n\n每年十五天。\n', encoding="utf-8")
    [document] = load_file(path, "leave.md")
    assert document.page_content == "# 年假\n\n每年十五天。\n" and document.metadata["title"] == "休假制度"
    ruled = tmp_path / "ruled.md"  # text between two horizontal rules is no front matter
    ruled.write_text("---\n年假每年十五天。\n---\n", encoding="utf-8")
    assert load_file(ruled, "ruled.md")[0].page_content == "---\n年假每年十五天。\n---\n"
