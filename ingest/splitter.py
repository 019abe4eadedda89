"""Chinese-aware chunking on top of LangChain's recursive splitter.

The stock separators only know blank lines, newlines and spaces; Chinese has no spaces, so a chunk
boundary would land mid-sentence. Listing the Chinese sentence ends (and keeping each at the end of its
sentence) makes a chunk end where a sentence does whenever the size allows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.loaders import DECIMAL_TITLES, HEADING_MARK, MARKDOWN_HEADING
from rag.language import passage_language

HEADING_SEPARATOR = " > "  # between the titles of a chunk's heading path ("休假制度 > 年假")
# Coarse to fine: paragraphs, lines, sentence ends (zh then en), clause marks, words, characters.
SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    "；",
    "…",
    ". ",
    "! ",
    "? ",
    "; ",
    "，",
    "、",
    ", ",
    " ",
    "",
]


_FENCE = re.compile(r"^\s*(```|~~~)")
# The Word and HTML loaders' own heading lines (ingest.loaders.heading_line).
_MARKED_HEADING = re.compile(rf"^{HEADING_MARK}(#{{1,6}}) (.+)$", re.M)
# A table row as the loaders write one: Markdown's "| a | b |", HTML's and Word's "a | b".
_TABLE_ROW = re.compile(r"\S\s*\|\s*\S|^\s*\|")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")  # "| --- | :-: |"


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
        length_function=len,
    )


def _narrowed(splitter: RecursiveCharacterTextSplitter, room: int) -> RecursiveCharacterTextSplitter:
    """The same splitter for pieces of ``room`` characters, leaving space for a prefix."""
    return make_splitter(room, min(splitter._chunk_overlap, room // 2))


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _under(open_headings: list[tuple[int, str]], level: int, title: str) -> list[tuple[int, str]]:
    """The (level, title) headings open after a heading of ``level``: it closes those at its level and
    below, whatever levels the document skips (a file of "##" sections has sibling sections, not each
    nested in the one before), and opens itself."""
    return [(open_level, text) for open_level, text in open_headings if open_level < level] + [(level, title)]


def markdown_sections(text: str) -> list[tuple[list[str], str]]:
    """(heading path, body) for each part of a Markdown text; the heading lines leave the bodies.

    A ``#`` line inside a fenced code block is code, not a heading. A heading with neither body nor
    sub-headings (an outline, a FAQ written as headings, a section emptied to its title) is text: it
    becomes the body under its parent's path, and such neighbours share one section, instead of the
    document losing them.

    Only "#" headings count. Setext ones (a title underlined with "====" or "----") were tried: the
    evaluation corpus's one such file got sections, its chunks all began "StarVoice API v1 … > …",
    and as distractors they cost the packaged 0.5B model 5 correct answers of 288
    (docs/BENCHMARKS.md, 2026-12-06).
    """
    sections, _ = _split_at_headings(_markdown_headings(text), [])
    kept: list[tuple[list[str], str]] = []
    for number, (section_path, section_body) in enumerate(sections):
        if not section_body.strip():
            stray = _title_as_text(sections, number)
            if stray is None:
                continue
            section_path, section_body = stray
        if kept and kept[-1][0] == section_path and not sections[number][1].strip():
            kept[-1] = (section_path, f"{kept[-1][1]}\n{section_body}")
        else:
            kept.append((section_path, section_body))
    return kept


def _markdown_headings(text: str) -> Iterator[tuple[str, re.Match[str] | None]]:
    """Each line of a Markdown text with its heading match; a ``#`` line in a code fence is code."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        yield line, None if fenced else MARKDOWN_HEADING.match(line)


def _split_at_headings(
    lines: Iterable[tuple[str, re.Match[str] | None]], open_headings: list[tuple[int, str]]
) -> tuple[list[tuple[list[str], str]], list[tuple[int, str]]]:
    """(heading path, body) for the text before and after each heading of ``lines`` (each line with
    its heading match, level in group 1 and title in group 2), the heading lines left out, starting
    under ``open_headings``; and the headings open at the end."""
    sections: list[tuple[list[str], str]] = []
    body: list[str] = []
    for line, heading in lines:
        if heading is None:
            body.append(line)
            continue
        sections.append(([title for _, title in open_headings], "\n".join(body)))
        open_headings = _under(open_headings, len(heading.group(1)), heading.group(2).strip())
        body = []
    sections.append(([title for _, title in open_headings], "\n".join(body)))
    return sections, open_headings


def _title_as_text(sections: list[tuple[list[str], str]], number: int) -> tuple[list[str], str] | None:
    """What becomes of section ``number``, whose body is empty: nothing (None) when it is the text
    before the first heading or a heading over sub-headings; otherwise its title, as text under its
    parent's path, so that the document does not lose it."""
    path = sections[number][0]
    following = sections[number + 1][0] if number + 1 < len(sections) else []
    if not path or (len(following) > len(path) and following[: len(path)] == path):
        return None
    return path[:-1], path[-1]


def _table_headers(text: str) -> dict[str, str]:
    """For each row of each table in ``text``, the lines that head its table.

    A table is a run of at least three row lines; its head is the first row and the Markdown rule
    under it, when there is one.
    """
    headers: dict[str, str] = {}
    lines = text.splitlines()
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and _TABLE_ROW.search(lines[end]):
            end += 1
        if end - start >= 3:
            head = 2 if TABLE_RULE.match(lines[start + 1]) else 1
            for row in lines[start + head : end]:
                headers.setdefault(row.strip(), "\n".join(lines[start : start + head]))
        start = max(end, start + 1)
    return headers


def _split_with_table_headers(body: str, splitter: RecursiveCharacterTextSplitter) -> list[str]:
    """The splitter's pieces of ``body``, where a piece that starts inside a table gains the table's
    head row: "| 上海 | 600 |" alone does not say that 600 is the nightly hotel limit.

    The pieces are cut shorter by the longest head, so no chunk grows past the chunk size; a head
    longer than half a chunk is not repeated (it would leave too little room for the rows).
    """
    size = splitter._chunk_size
    headers = {row: head for row, head in _table_headers(body).items() if len(head) < size // 2}
    if not headers:
        return splitter.split_text(body)
    room = size - max(len(head) for head in headers.values()) - 1
    pieces = []
    for piece in _narrowed(splitter, room).split_text(body):
        head = headers.get(piece.split("\n", 1)[0].strip())
        pieces.append(f"{head}\n{piece}" if head else piece)
    return pieces


def marked_sections(
    text: str, open_headings: list[tuple[int, str]]
) -> tuple[list[tuple[list[str], str]], list[tuple[int, str]]]:
    """(heading path, body) for each part of a text whose headings the loader marked (a PDF page's,
    ``ingest.pdf_headings``; numbered titles, ``ingest.numbered_headings``), and the headings open
    at its end. A PDF page starts under the headings the page before left open, so a section going
    on over a page break keeps its path. A heading with no body and no sub-heading stays text, as
    in ``markdown_sections``."""
    lines = ((line, _MARKED_HEADING.match(line)) for line in text.split("\n"))
    sections, open_headings = _split_at_headings(lines, open_headings)
    kept: list[tuple[list[str], str]] = []
    for number, (path, section_body) in enumerate(sections):
        if not section_body.strip():
            stray = _title_as_text(sections, number)
            if stray is None or number in (0, len(sections) - 1):
                # the page's text before its first heading is none (the section the page before
                # left open has its title there), or the page ends on a heading, its body on the next
                continue
            path, section_body = stray
        kept.append((path, section_body))
    return kept, open_headings


def _with_headings(
    document: Document,
    splitter: RecursiveCharacterTextSplitter,
    sections: list[tuple[list[str], str]] | None = None,
) -> list[Document]:
    """Chunks of one Markdown document (or of a PDF page's ``sections``), each knowing (and starting
    with) its section's heading path.

    A chunk cut from the middle of "## 年假" otherwise loses what it is about; with the path in its
    text ("休假制度 > 年假") both searches and the LLM see the context, and ``metadata["section"]``
    lets interfaces show it. The prefix counts towards the chunk size.
    """
    chunks: list[Document] = []
    size = splitter._chunk_size
    for path, body in markdown_sections(document.page_content) if sections is None else sections:
        section = HEADING_SEPARATOR.join(title for title in path if title)
        prefix = f"{section}\n" if section else ""
        room = max(size - len(prefix), 50)
        part_splitter = splitter if not prefix else _narrowed(splitter, room)
        for piece in _split_with_table_headers(body, part_splitter):
            metadata = {**document.metadata, **({"section": section} if section else {})}
            chunks.append(Document(page_content=prefix + piece, metadata=metadata))
    return chunks


# Word and HTML headings are found by the loaders (written as "#" lines) but name the chunks only in
# their metadata: the chunks are cut as the document reads. On the evaluation corpus's three HTML
# pages (docs/BENCHMARKS.md, 2026-12-06) the packaged 0.5B answered 113 of 288 questions right
# before, 106 with the pages split by section and the path in the text (as Markdown is), 107 split by
# section without it, and 110 cut as the page reads, while retrieval gained a little in each.
SECTIONS_IN_METADATA_ONLY = frozenset({"docx", "html", "htm"})
# So are a text's or a PDF's decimal titles ("4.1.2 测试环境", ``ingest.numbered_headings``): with the
# specifications corpus split by them, path in the text, the 0.5B answered 23 of 74 questions right,
# 29 with the text cut as it reads (docs/BENCHMARKS.md, 2026-12-07, eighth session).


def _with_section_metadata(
    document: Document,
    splitter: RecursiveCharacterTextSplitter,
    *,
    named: bool = True,
    open_headings: list[tuple[int, str]] | None = None,
) -> tuple[list[Document], list[tuple[int, str]]]:
    """Chunks of a Word or HTML document (or of a PDF page, under the ``open_headings`` the page
    before left open), split as plain text (each heading a line of its own text), each with the
    heading path it starts under in ``metadata["section"]`` (unless not ``named``); and the headings
    open at its end."""
    lines: list[str] = []
    open_headings = open_headings or []
    # (offset in the plain text, heading path from there on)
    marks: list[tuple[int, str]] = [(0, HEADING_SEPARATOR.join(text for _, text in open_headings))]
    offset = 0
    for line in document.page_content.split("\n"):
        heading = _MARKED_HEADING.match(line)
        if heading is not None:
            title = heading.group(2).strip()
            open_headings = _under(open_headings, len(heading.group(1)), title)
            marks.append((offset, HEADING_SEPARATOR.join(text for _, text in open_headings)))
            line = title
        lines.append(line)
        offset += len(line) + 1
    plain = "\n".join(lines)
    chunks = []
    cursor = 0
    for piece in _split_with_table_headers(plain, splitter):
        # a piece continuing a table starts with the table's head, which is not where it starts
        start = plain.find(piece, cursor)
        if start < 0 and "\n" in piece:
            start = plain.find(piece.split("\n", 1)[1], cursor)
        start = cursor if start < 0 else start
        cursor = start + 1
        section = next((path for at, path in reversed(marks) if at <= start), "") if named else ""
        metadata = {**document.metadata, **({"section": section} if section else {})}
        chunks.append(Document(page_content=piece, metadata=metadata))
    return chunks, open_headings


def split_documents(
    documents: list[Document], splitter: RecursiveCharacterTextSplitter, *, headings: bool = True
) -> list[Document]:
    """Split one file's documents, numbering its chunks in order across pages.

    With ``headings``, documents with Markdown headings are split section by section
    (``_with_headings``), plain-text files too: notes kept as .txt are often Markdown, and splitting
    the evaluation corpus's four such files without their headings cost retrieval (docs/BENCHMARKS.md).
    Word and HTML files, and texts and PDFs with decimal titles, only get their sections' names
    (``_with_section_metadata``). A PDF's headings (found by their size, ``ingest.pdf_headings``)
    are split by as Markdown's are, a section going on over its pages: written as PDFs, the
    evaluation corpus's files with tables had MRR@10 0.721 → 0.762 for their other questions (tables
    0.543 → 0.646) with the path in the text, and no change with it in metadata only
    (docs/BENCHMARKS.md).
    A "# " line that is no heading (a numbered to-do item) has no body and so stays text.
    """
    chunks: list[Document] = []
    open_headings: list[tuple[int, str]] = []  # a PDF's sections go on over its pages
    for document in documents:
        if document.metadata.get("file_type") in SECTIONS_IN_METADATA_ONLY or document.metadata.get(
            DECIMAL_TITLES
        ):
            pieces, open_headings = _with_section_metadata(
                document, splitter, named=headings, open_headings=open_headings
            )
            chunks.extend(pieces)
        elif document.metadata.get("file_type") == "pdf" or _MARKED_HEADING.search(document.page_content):
            sections, open_headings = marked_sections(document.page_content, open_headings)
            if not headings:  # the headings as the lines of text they were
                sections = [([], _MARKED_HEADING.sub(r"\2", document.page_content))]
            chunks.extend(_with_headings(document, splitter, sections))
        elif headings and MARKDOWN_HEADING.search(document.page_content):
            chunks.extend(_with_headings(document, splitter))
        else:
            pieces = _split_with_table_headers(document.page_content, splitter)
            chunks.extend(Document(page_content=piece, metadata=dict(document.metadata)) for piece in pieces)
    chunks = [chunk for chunk in chunks if chunk.page_content.strip()]
    for index, chunk in enumerate(chunks):
        chunk.metadata.pop(DECIMAL_TITLES, None)  # how the document was split, not what a chunk holds
        chunk.metadata["chunk"] = index
        chunk.metadata["content_hash"] = content_hash(chunk.page_content)
        # Lets retrieval ask whether a knowledge base holds passages in a language at all, and find
        # the best one in it (rag.retrieval's language coverage).
        chunk.metadata["language"] = passage_language(chunk.page_content)
    return chunks
