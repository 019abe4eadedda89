"""Headings told by their numbering (ingest.numbered_headings), and the files whose chunks they name."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders import HEADING_MARK, load_file
from ingest.numbered_headings import numbered_headings
from ingest.splitter import make_splitter, split_documents
from tests.support.sample_docs import write_docx, write_pdf

RULES = """星河云计算员工考勤管理办法
目录
第一章 总则
第二章 考勤管理
第一章 总则
第一条 为规范考勤管理，制定本办法。
第二条 本办法适用于全体员工。
第二章 考勤管理
第一节 工作时间
第三条 公司实行每周五天工作制，每日工作 7.5 小时。
第四条 请假按以下步骤办理：
（一）填写申请单
（二）部门负责人审批
（三）人力资源部备案
第二节 病假
第五条 病假须提供二级以上医院的证明。
第十二章 附则
第二十一条 本办法自发布之日起施行。"""


BODY = "员工应当按照本办法的规定办理相关手续，逾期未办理的按旷工处理。"


def _levels(text: str) -> dict[str, int]:
    lines = text.split("\n")
    return {lines[number]: level for number, level in numbered_headings(lines).levels.items()}


def test_chapters_and_sections_are_headings_ranked_by_their_numbering_under_the_name() -> None:
    assert _levels(RULES) == {
        "星河云计算员工考勤管理办法": 1,
        "第一章 总则": 2,
        "第二章 考勤管理": 2,
        "第一节 工作时间": 3,
        "第二节 病假": 3,
        "第十二章 附则": 2,
    }


def test_a_first_line_that_is_a_sentence_names_nothing() -> None:
    text = f"本办法经总裁办公会审议通过。\n第一章 总则\n{BODY}\n第二章 附则\n{BODY}"
    assert _levels(text) == {"第一章 总则": 1, "第二章 附则": 1}


def test_a_table_of_contents_and_a_numbered_list_are_not_headings() -> None:
    levels = numbered_headings(RULES.split("\n")).levels
    assert 2 not in levels and 3 not in levels  # the contents: 第一章, 第二章 one after the other
    assert 4 in levels  # the 第一章 that starts the text goes back to one: it follows no 第零章
    assert not {11, 12, 13} & set(levels)  # (一) (二) (三) in a row are the steps of an article


def test_an_item_that_says_something_is_text() -> None:
    text = f"一、总则\n{BODY}\n二、处罚\n（一）迟到的，扣款 50 元；\n{BODY}\n（三）旷工一日扣三日工资\n{BODY}"
    assert _levels(text) == {"一、总则": 1, "二、处罚": 1, "（三）旷工一日扣三日工资": 2}


def test_outline_numbering_ranks_below_chapters_and_large_numbers_are_read() -> None:
    text = "\n".join(
        f"{title}\n{BODY}" for title in ("第一章 总则", "一、目的", "（一）范围", "第二章 附则", "十一、生效")
    )
    assert _levels(text) == {
        "第一章 总则": 1,
        "一、目的": 2,
        "（一）范围": 3,
        "第二章 附则": 1,
        "十一、生效": 2,
    }


SPEC = f"""星河云数据中心机房建设技术规范
1 范围
{BODY}
2 术语和定义
2.1数据中心
{BODY}
2.2 主机房
{BODY}
3. 环境要求
3.1 温度
3.1.1 主机房
{BODY}
巡检时应：
1. 检查空调
2. 记录温度
3.1.2 电池室
{BODY}
10.0.0.1 网关
1.5倍
2024年度改造计划"""


def test_decimal_numbering_ranks_titles_by_depth_under_the_name() -> None:
    assert _levels(SPEC) == {
        "星河云数据中心机房建设技术规范": 1,
        "1 范围": 2,
        "2 术语和定义": 2,
        "2.1数据中心": 3,  # a "N.M" number may run straight on to its title
        "2.2 主机房": 3,
        "3. 环境要求": 2,
        "3.1 温度": 3,
        "3.1.1 主机房": 4,
        "3.1.2 电池室": 4,
    }  # not the inspection's steps in a row, an address, a quantity or a year


def test_decimal_numbers_without_an_n_m_title_are_list_items() -> None:
    text = f"会议纪要\n1. 项目进度\n{BODY}\n2. 下一步计划\n{BODY}\n一、总则\n{BODY}\n二、附则\n{BODY}"
    assert _levels(text) == {"会议纪要": 1, "一、总则": 2, "二、附则": 2}


def test_decimal_titles_rank_below_chapters() -> None:
    text = f"第一章 总则\n1.1 目的\n{BODY}\n1.2 范围\n{BODY}\n第二章 附则\n2.1 生效\n{BODY}"
    assert _levels(text) == {"第一章 总则": 1, "1.1 目的": 2, "1.2 范围": 2, "第二章 附则": 1, "2.1 生效": 2}


def test_a_decimal_numbered_text_is_cut_as_it_reads_with_its_sections_named(tmp_path: Path) -> None:
    path = tmp_path / "spec.txt"
    path.write_text(SPEC.replace("3.1.2 电池室", "3.1.2　电池室"), encoding="utf-8")
    chunks = split_documents(load_file(path, "spec.txt"), make_splitter(60, 0))
    battery = next(chunk for chunk in chunks if chunk.page_content.startswith("3.1.2 电池室\n"))
    assert (
        battery.metadata["section"]
        == "星河云数据中心机房建设技术规范 > 3. 环境要求 > 3.1 温度 > 3.1.2 电池室"
    )
    assert "decimal_titles" not in battery.metadata  # how the file was split, not what a chunk holds
    plain = split_documents(load_file(path, "spec.txt"), make_splitter(60, 0), headings=False)
    assert [chunk.page_content for chunk in chunks] == [chunk.page_content for chunk in plain]
    assert all("section" not in chunk.metadata for chunk in plain)


def test_a_decimal_numbered_pdf_names_a_page_s_first_chunk_by_the_section_it_continues(
    tmp_path: Path,
) -> None:
    pages = [f"机房规范\n1 范围\n{BODY}\n2 环境\n2.1 主机房\n{BODY}", f"{BODY}\n2.2 电池室\n{BODY}"]
    documents = load_file(write_pdf(tmp_path / "spec.pdf", pages, cjk=True), "spec.pdf")
    chunks = split_documents(documents, make_splitter(40, 0))
    second_page = [chunk for chunk in chunks if chunk.metadata["page"] == 2]
    assert second_page[0].metadata["section"] == "机房规范 > 2 环境 > 2.1 主机房"
    assert second_page[-1].metadata["section"] == "机房规范 > 2 环境 > 2.2 电池室"


def test_one_title_or_titles_that_are_most_of_the_text_mark_nothing() -> None:
    assert _levels("第一章 总则\n为规范考勤管理，制定本办法。") == {}
    assert _levels("一、总则\n正文\n二、考勤\n正文\n三、附则\n正文") == {}  # an outline, not sections


def test_a_text_file_without_markdown_headings_gets_its_numbered_titles_marked(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text(RULES.replace("第一章 总则\n第一条", "第一章　总则\n第一条"), encoding="utf-8")
    [document] = load_file(path, "rules.txt")
    lines = document.page_content.split("\n")
    assert f"{HEADING_MARK}## 第一章 总则" in lines  # a full-width space in a title is a space
    assert f"{HEADING_MARK}### 第一节 工作时间" in lines
    assert "第一条 为规范考勤管理，制定本办法。" in lines


def test_a_markdown_text_keeps_only_its_own_headings(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("# 考勤\n" + RULES, encoding="utf-8")
    [document] = load_file(path, "notes.txt")
    assert HEADING_MARK not in document.page_content


def test_chunks_of_a_numbered_text_start_with_their_chapter_and_section(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text(RULES, encoding="utf-8")
    chunks = split_documents(load_file(path, "rules.txt"), make_splitter(500, 0))
    sick = next(chunk for chunk in chunks if "二级以上医院" in chunk.page_content)
    section = "星河云计算员工考勤管理办法 > 第二章 考勤管理 > 第二节 病假"
    assert sick.page_content.startswith(f"{section}\n第五条")
    assert sick.metadata["section"] == section
    assert all(HEADING_MARK not in chunk.page_content for chunk in chunks)
    plain = split_documents(load_file(path, "rules.txt"), make_splitter(500, 0), headings=False)
    assert "第二节 病假\n第五条" in "\n".join(chunk.page_content for chunk in plain)


def test_a_word_file_without_heading_styles_names_sections_by_numbering(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "rules.docx", RULES.split("\n"))
    chunks = split_documents(load_file(path, "rules.docx"), make_splitter(30, 0))  # a line each
    sick = next(chunk for chunk in chunks if "二级以上医院" in chunk.page_content)
    assert sick.page_content.startswith("第二节 病假\n")  # Word's text is cut as it reads, titles in it
    assert sick.metadata["section"] == "星河云计算员工考勤管理办法 > 第二章 考勤管理 > 第二节 病假"


def test_a_word_file_with_heading_styles_keeps_only_those(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "rules.docx", RULES.split("\n"), heading="考勤管理办法")
    [document] = load_file(path, "rules.docx")
    marked = [line for line in document.page_content.split("\n") if line.startswith(HEADING_MARK)]
    assert marked == [f"{HEADING_MARK}# 考勤管理办法"]


def test_a_pdf_in_one_font_size_is_split_by_its_numbered_titles(tmp_path: Path) -> None:
    body = (
        "第三条 出差住宿费按城市分级报销，"
        + "北京和上海每晚不超过六百五十元，其他城市每晚不超过四百八十元" * 2
        + "。"
    )
    pages = ["差旅管理制度\n第一章 总则\n第一条 为规范差旅，制定本制度。", f"第二章 住宿\n{body}"]
    documents = load_file(write_pdf(tmp_path / "travel.pdf", pages, cjk=True), "travel.pdf")
    chunks = split_documents(documents, make_splitter(500, 0))
    hotel = next(chunk for chunk in chunks if "六百五十元" in chunk.page_content)
    assert hotel.page_content.startswith("差旅管理制度 > 第二章 住宿\n第三条")
    assert hotel.metadata["page"] == 2
    assert "每晚不超过四百八十元北京" in hotel.page_content  # the wrapped article was unwrapped first


def test_a_markdown_file_without_headings_keeps_its_front_matter_apart(tmp_path: Path) -> None:
    path = tmp_path / "rules.md"
    path.write_text("---\ntitle: 考勤\n---\n" + RULES, encoding="utf-8")
    [document] = load_file(path, "rules.md")
    assert document.metadata["title"] == "考勤"
    assert document.page_content.startswith(f"{HEADING_MARK}# 星河云计算员工考勤管理办法\n")
