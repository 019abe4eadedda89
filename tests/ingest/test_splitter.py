from itertools import pairwise

from langchain_core.documents import Document

from ingest.splitter import content_hash, make_splitter, markdown_sections, split_documents

SENTENCES = [
    "知识库问答系统先把文档切成小块。",
    "每个块都会单独计算向量！",
    "检索时只取回最相关的几个块？",
    "然后把它们和问题一起交给语言模型；",
    "模型根据这些资料写出答案……",
]
ENDINGS = ("。", "！", "？", "；", "…")


def test_no_chunk_exceeds_the_size_limit() -> None:
    text = (
        "".join(SENTENCES * 40)
        + "\n\n"
        + "An English paragraph follows. " * 60
        + "\n"
        + "没有标点的长句" * 100
    )
    chunks = split_documents(
        [Document(page_content=text, metadata={"source": "a.md"})], make_splitter(120, 20)
    )
    assert len(chunks) > 10
    assert max(len(chunk.page_content) for chunk in chunks) <= 120


def test_chinese_chunks_end_at_sentence_ends() -> None:
    text = "".join(SENTENCES * 20)
    chunks = split_documents(
        [Document(page_content=text, metadata={"source": "a.md"})], make_splitter(100, 0)
    )
    assert len(chunks) > 5
    # Every chunk is made of whole sentences: it ends with a sentence mark and starts a sentence.
    for chunk in chunks:
        assert chunk.page_content.endswith(ENDINGS), chunk.page_content
        assert any(chunk.page_content.startswith(sentence[:4]) for sentence in SENTENCES), chunk.page_content


def test_english_sentences_are_kept_whole_too() -> None:
    sentence = "Annual leave is fifteen days after two years of service. "
    chunks = split_documents([Document(page_content=sentence * 30, metadata={})], make_splitter(150, 0))
    assert all(chunk.page_content.endswith(".") for chunk in chunks)


def test_chunks_are_numbered_across_pages_and_keep_page_metadata() -> None:
    pages = [
        Document(page_content="第一页。" * 60, metadata={"source": "a.pdf", "page": 1}),
        Document(page_content="第二页。" * 60, metadata={"source": "a.pdf", "page": 2}),
    ]
    chunks = split_documents(pages, make_splitter(100, 10))
    assert [chunk.metadata["chunk"] for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.metadata["page"] for chunk in chunks} == {1, 2}
    assert all("第二页" in chunk.page_content for chunk in chunks if chunk.metadata["page"] == 2)
    assert all(chunk.metadata["content_hash"] == content_hash(chunk.page_content) for chunk in chunks)
    assert all(chunk.metadata["source"] == "a.pdf" for chunk in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = "".join(f"第{i}句话在这里。" for i in range(60))
    chunks = split_documents([Document(page_content=text, metadata={})], make_splitter(100, 30))
    for previous, current in pairwise(chunks):
        assert current.page_content[:6] in previous.page_content


def _split(text: str, source: str) -> list[Document]:
    return split_documents([Document(page_content=text, metadata={"source": source})], make_splitter(500, 80))


def test_hash_lines_without_bodies_are_kept_as_text() -> None:
    """A to-do list numbered with "# " in a .txt: each item has no body, so it stays text, every one."""
    [chunk] = _split("待办事项\n# 1 采购打印纸\n# 2 预订会议室\n# 3 提交周报\n", "todo.txt")
    assert chunk.page_content == "待办事项\n1 采购打印纸\n2 预订会议室\n3 提交周报"
    assert "section" not in chunk.metadata


def test_markdown_headings_without_bodies_are_kept_as_text() -> None:
    """An outline, or a section emptied down to its title, still says something: its leaf headings
    become the text of their parent's section rather than vanishing."""
    chunks = _split("# 制度目录\n## 年假\n## 病假\n# 附录\n正文在这里。\n", "outline.md")
    assert [(chunk.metadata.get("section"), chunk.page_content) for chunk in chunks] == [
        ("制度目录", "制度目录\n年假\n病假"),
        ("附录", "附录\n正文在这里。"),
    ]
    assert [chunk.page_content for chunk in _split("# 年假（本节已废止）\n## 见新制度\n", "old.md")] == [
        "年假（本节已废止）\n见新制度"
    ]


def test_hash_lines_inside_a_markdown_code_fence_are_not_headings() -> None:
    text = "# 部署\n\n```bash\n# 这是注释不是标题\nmake run\n```\n部署完成后访问八千端口。\n"
    [chunk] = _split(text, "deploy.md")
    assert chunk.metadata["section"] == "部署"
    assert "# 这是注释不是标题" in chunk.page_content and "八千端口" in chunk.page_content


def test_a_long_table_repeats_its_head_row_in_every_chunk() -> None:
    """A chunk of rows without the head row ("| 上海 | 600 |") no longer says what its numbers are."""
    rows = [f"| 城市{n:02d} | {400 + n * 10} 元 | {n % 3 + 1} 级 |" for n in range(40)]
    markdown = "## 住宿标准\n\n| 城市 | 每晚上限 | 分级 |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    html_like = "城市 | 每晚上限 | 分级\n" + "\n".join(row.strip("| ") for row in rows) + "\n"
    for text, head in [
        (markdown, "| 城市 | 每晚上限 | 分级 |\n| --- | --- | --- |"),
        (html_like, "城市 | 每晚上限 | 分级"),
    ]:
        chunks = split_documents([Document(page_content=text, metadata={})], make_splitter(200, 0))
        assert len(chunks) > 3
        assert all(head in chunk.page_content for chunk in chunks)
        assert max(len(chunk.page_content) for chunk in chunks) <= 200
        shown = "".join(chunk.page_content for chunk in chunks)
        assert all(row.strip("| ") in shown for row in rows)  # nothing lost


def test_a_heading_ending_in_a_hash_keeps_it_and_a_closing_run_is_dropped() -> None:
    sections = markdown_sections("## Learning C#\n\nGenerics.\n\n## Setup ##\n\nInstall it.")
    assert [path for path, _ in sections] == [["Learning C#"], ["Setup"]]
