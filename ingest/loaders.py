"""Turn one file into LangChain ``Document``s (one per PDF page, one per other file).

Each loader either returns text it is confident about or raises ``LoadError`` with a reason a user
can act on ("encrypted PDF", "binary data, not text"); the pipeline reports it and goes on. Folders
hold hostile files too (a PDF page-tree bomb, a 60 MB log named .txt, a zip bomb named .docx), so every
loader works within ``LoadLimits``: a file is measured before it is read, a PDF's pages are counted
before they are parsed, and the text one file may yield is capped, which keeps one bad file from
exhausting memory or tying up the embedder for hours.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import itertools
import logging
import re
import stat
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charset_normalizer import from_bytes
from langchain_core.documents import Document

from ingest.numbered_headings import numbered_headings
from ingest.pdf_headings import LineSizes, heading_levels, outline_levels, scan_heading_levels
from ingest.pdf_ocr import FEW_CHARACTERS, MAX_IMAGE_PIXELS, OCRUnavailableError, largest_image, read_pages
from ingest.pdf_tables import is_table_row, may_hold_table, with_tables
from rag.config import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024


class LoadError(Exception):
    """A file that cannot be turned into text; the message is the reason shown to the user."""


@dataclass(frozen=True)
class LoadLimits:
    """What one file may cost; the settings ``max_file_mb``, ``max_document_chars``, ``max_pdf_pages``
    and ``ocr`` (whether scanned PDF pages may take the seconds OCR needs).

    Each reason that a limit produces names its ``KBQA_*`` variable, so a user with a legitimately
    big document knows which knob to turn.
    """

    max_file_mb: float
    max_chars: int
    max_pdf_pages: int
    ocr: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadLimits:
        return cls(settings.max_file_mb, settings.max_document_chars, settings.max_pdf_pages, settings.ocr)

    @classmethod
    def defaults(cls) -> LoadLimits:
        """The ``Settings`` defaults, read from the fields so the two cannot drift apart."""
        fields = Settings.model_fields
        return cls(
            fields["max_file_mb"].default,
            fields["max_document_chars"].default,
            fields["max_pdf_pages"].default,
            fields["ocr"].default,
        )

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    def too_much_text(self, characters: int, where: str = "") -> LoadError:
        return LoadError(
            f"too much text: {characters:,} characters{where} > limit {self.max_chars:,} "
            "(KBQA_MAX_DOCUMENT_CHARS)"
        )


_KINDS = {".pdf": "PDF", ".docx": "DOCX", ".html": "HTML", ".htm": "HTML", ".md": "Markdown"}

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Files that only wear a text extension: named, so the user learns what the file really is.
_SIGNATURES = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (.docx, .xlsx, .zip)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-format Office document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Chinese legacy encodings are all subsets of GB18030; decoding with it avoids losing rare characters.
_CHINESE_ENCODINGS = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]+")
_CJK = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]+")
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fc]+")  # hiragana, katakana, the long-vowel mark
_HALF_WIDTH_KANA = re.compile(r"[\uff61-\uff9f]+")
_SAMPLE = 200_000  # characters looked at to judge an encoding; enough, and O(1) in the file's size


def _looks_like_text(text: str) -> bool:
    """Few runs of control characters or replacement marks (a stray corrupted byte is tolerated)."""
    if not text:
        return True
    bad = sum(1 for _ in _CONTROL.finditer(text))
    return bad <= 2 or bad / len(text) < 0.01


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; returns (text, encoding) or raises LoadError for binary data."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            raise LoadError(f"binary data, not text (it is {kind})")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding
    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
        if "\x1b$" in text and text.isascii():
            # ISO-2022-JP (old Japanese mail and text files): 7-bit, switched by escape sequences
            text, encoding = _iso2022_jp(data) or (text, encoding)
    except UnicodeDecodeError:
        text, encoding = _decode_not_utf8(data)
    if not _looks_like_text(text):
        raise LoadError("binary data, not text")
    return text, encoding


def _iso2022_jp(data: bytes) -> tuple[str, str] | None:
    try:
        return data.decode("iso2022_jp_2"), "iso2022_jp_2"
    except UnicodeDecodeError:
        return None


def _decode_not_utf8(data: bytes) -> tuple[str, str]:
    if b"\x00" in data[:4096]:
        utf16 = _utf16_without_bom(data)
        if utf16 is not None:
            return utf16
        raise LoadError("binary data, not text")
    mixed = _decode_mixed(data)
    if mixed is not None:
        return mixed
    return _guess_legacy(data)


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text without BOM: NULs in every other byte (Latin text) or a clean strict decode (Chinese).

    Chinese UTF-16 has NULs only where ASCII sits (newlines, digits), too few for the byte pattern,
    but random binary data almost never decodes as UTF-16 without unpaired surrogates.
    """
    sample = data[:4096]
    even, odd = sample[0::2], sample[1::2]
    order = ("utf-16-le", "utf-16-be") if odd.count(0) >= even.count(0) else ("utf-16-be", "utf-16-le")
    for encoding in order:
        try:
            text = data[: len(data) - len(data) % 2].decode(encoding)
        except UnicodeDecodeError:
            continue
        if _looks_like_text(text) and _mostly_readable(text):
            return text, encoding
    return None


def _mostly_readable(text: str) -> bool:
    """ASCII plus common CJK make up nearly all of a sample: what real UTF-16 documents hold."""
    sample = text[:_SAMPLE]
    ascii_count = len(sample.encode("ascii", "ignore"))
    cjk = sum(len(run) for run in _CJK.findall(sample))
    return (ascii_count + cjk) / max(len(sample), 1) > 0.9


def _decode_mixed(data: bytes) -> tuple[str, str] | None:
    """A mostly-UTF-8 file with some lines in another encoding (concatenated exports) or a bad byte.

    Decoding line by line keeps every UTF-8 line exact; the other lines are read in the legacy
    encoding they share (or as UTF-8 with a replacement mark, for a single corrupted byte). Returns
    None when UTF-8 lines do not carry most of the non-ASCII bytes: then the file is legacy text.
    """
    lines = data.split(b"\n")
    utf8_bytes = other_bytes = 0
    others: list[bytes] = []
    for line in lines:
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_bytes += len(line)
        except UnicodeDecodeError:
            other_bytes += len(line)
            others.append(line)
    if utf8_bytes == 0 or utf8_bytes < other_bytes:
        return None
    try:
        _, legacy = _guess_legacy(b"\n".join(others))
    except LoadError:
        legacy = "utf-8"
    out: list[str] = []
    for line in lines:
        try:
            out.append(line.decode("utf-8"))
            continue
        except UnicodeDecodeError:
            pass
        as_utf8 = line.decode("utf-8", errors="replace")
        if len(re.findall("\ufffd+", as_utf8)) <= 2 or legacy == "utf-8":
            out.append(as_utf8)
        else:
            out.append(line.decode(legacy, errors="replace"))
    return "\n".join(out), f"utf-8+{legacy}"


def _guess_legacy(data: bytes) -> tuple[str, str]:
    japanese = _japanese(data)
    if japanese is not None:
        return japanese
    # Chinese first: strict GB18030 decoding of non-Chinese bytes fails or yields rare characters.
    # Then Traditional Chinese: read as GB18030, Big5 bytes give mojibake with kana and box-drawing
    # characters mixed in, and on a sentence or two the general detector guesses a Japanese code page.
    for chinese in ("gb18030", "big5"):
        try:
            text = data.decode(chinese)
        except UnicodeDecodeError:
            continue
        if _mostly_common_cjk(text):
            return text, chinese
    matches = from_bytes(data)
    best = matches.best()
    if best is None or best.encoding is None:
        raise LoadError("binary data, not text (no text encoding fits)")
    encoding = best.encoding
    # Short Western text fits many code pages equally well; the most common one is the best bet.
    ties = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    if "cp1252" in ties:
        encoding = "cp1252"
    if encoding.lower() in _CHINESE_ENCODINGS:
        encoding = "gb18030"
    return data.decode(encoding, errors="replace"), encoding


def _japanese(data: bytes) -> tuple[str, str] | None:
    """Japanese text in Shift-JIS or EUC-JP, told apart from Chinese by its kana.

    Both decode as GB18030 or Big5 into plausible-looking ideographs (mojibake that passes the
    Chinese test), so they are tried first. Written Japanese is a third or more kana. Chinese bytes
    read as Shift-JIS give full-width kana only from GBK's extension characters (們 個 備 僅 start
    with the kana lead bytes 0x82/0x83; GB2312 and Big5 never do), and then mostly half-width
    katakana from the bytes around them, which Japanese text rarely uses; read as EUC-JP they give
    kana only where the Chinese text itself held kana.
    """
    # (encoding, least kana share, least non-ASCII characters). A short Big5 string whose every
    # character has a high second byte also reads as EUC-JP kana, so EUC-JP needs a longer text.
    for encoding, share, length in (("cp932", 0.05, 1), ("euc_jp", 0.15, 12)):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        sample = text[:_SAMPLE]
        non_ascii = len(sample) - len(sample.encode("ascii", "ignore"))
        kana = sum(len(run) for run in _KANA.findall(sample))
        half_width = sum(len(run) for run in _HALF_WIDTH_KANA.findall(sample))
        if kana and non_ascii >= length and kana / non_ascii >= share and half_width <= kana:
            return text, encoding
    return None


def _mostly_common_cjk(text: str) -> bool:
    """True when the non-ASCII part (of a sample) is mostly CJK ideographs and CJK punctuation."""
    sample = text[:_SAMPLE]
    non_ascii = len(sample) - len(sample.encode("ascii", "ignore"))
    if not non_ascii:
        return False
    cjk = sum(len(run) for run in _CJK.findall(sample))
    return cjk / non_ascii > 0.9


def _require_text(text: str) -> str:
    if not text.strip():
        raise LoadError("empty document (no text)")
    return text


def _read_text(path: Path, limits: LoadLimits) -> tuple[str, str]:
    """Decoded text of a text-format file, refused before reading when it cannot fit the limit.

    No encoding spends more than 4 bytes on a character, so a file over 4 x max_chars bytes holds
    too much text whatever its encoding, and is not read at all.
    """
    size = path.stat().st_size
    if size > 4 * limits.max_chars + 4:
        raise LoadError(
            f"too much text: {size / MB:.1f} MB of text is over the limit of {limits.max_chars:,} "
            "characters (KBQA_MAX_DOCUMENT_CHARS)"
        )
    text, encoding = decode_text(path.read_bytes())
    if len(text) > limits.max_chars:
        raise limits.too_much_text(len(text))
    return text, encoding


# A Markdown ATX heading: level in group 1, title in group 2. An optional closing run of "#" counts
# only after a space, as in CommonMark: "## Learning C#" is C#. The splitter cuts sections at these.
MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)(?:\s+#+)?\s*$", re.M)


def _load_plain(path: Path, limits: LoadLimits) -> Document:
    text, encoding = _read_text(path, limits)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows, and old Mac line ends
    return Document(page_content=_require_text(text), metadata={"encoding": encoding})


def _with_numbered_titles_unless_markdown(document: Document) -> list[Document]:
    """A text whose structure is numbered titles ("第二章 考勤管理"), not Markdown headings, gets
    them marked as headings (``with_numbered_headings``)."""
    if MARKDOWN_HEADING.search(document.page_content):
        return [document]
    return with_numbered_headings([document])


def load_text(path: Path, limits: LoadLimits) -> list[Document]:
    return _with_numbered_titles_unless_markdown(_load_plain(path, limits))


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_YAML_LINE = re.compile(r"^(?:[ \t]+|-[ \t]|[\w.-]+[ \t]*:|#)")
_FRONT_TITLE = re.compile(r"^title:[ \t]*[\"']?(.*?)[\"']?[ \t]*$", re.M)


def load_markdown(path: Path, limits: LoadLimits) -> list[Document]:
    """A Markdown file without its YAML front matter (Hugo, Obsidian, Jekyll): "tags: [hr]",
    "date: 2024-03-01" would be a chunk of their own that matches nothing a user asks. Its ``title``
    is kept in the metadata."""
    document = _load_plain(path, limits)
    found = _FRONT_MATTER.match(document.page_content)
    lines = [line for line in found.group(1).splitlines() if line.strip()] if found else []
    if found is None or not all(_YAML_LINE.match(line) for line in lines):
        return _with_numbered_titles_unless_markdown(document)  # none, or text between two rules
    title = _FRONT_TITLE.search(found.group(1))
    document.page_content = _require_text(document.page_content[found.end() :])
    if title and title.group(1).strip():
        document.metadata["title"] = title.group(1).strip()
    return _with_numbered_titles_unless_markdown(document)


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs a warning per damaged object (50 000 for a nested-dictionary bomb); our reason says it."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _pdf_reason(error: BaseException, tail: bytes) -> str:
    """The user's reason for a pypdf failure: bomb, nesting, encryption, truncation, or pypdf's words."""
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(item, RecursionError) for item in chain):
        return "malformed PDF (objects nested too deeply)"
    if any(isinstance(item, LimitReachedError) for item in chain):
        return f"PDF exceeds a safety limit, a decompression or page-tree bomb? ({error})"
    if any(isinstance(item, FileNotDecryptedError) for item in chain) or "password" in str(error).lower():
        return "encrypted PDF (password protected)"
    if b"%%EOF" not in tail:
        return "not a readable PDF: truncated (no %%EOF end marker; an incomplete download or copy?)"
    return f"not a readable PDF ({type(error).__name__}: {error})"


# Where a sentence may go on across a line break: Chinese to Chinese (after a character or a comma),
# or a lower-case word (or comma) to a lower-case word.
_CJK_END, _CJK_START = re.compile(r"[\u3400-\u9fff，、]$"), re.compile(r"^[\u3400-\u9fff]")
_LATIN_END, _LATIN_START = re.compile(r"[a-z,;]$"), re.compile(r"^[a-z]")
_FULL_LINE = 0.75  # a line this long, of the page's longest, ran into the margin: it was wrapped
# In Chinese text a line also breaks before a number, a Latin word or a bracket ("不超过 150" | "元。",
# "首席财务官（" | "CFO）审批"): there, a break that ends no sentence and starts no item is a wrap.
_HAS_CJK = re.compile(r"[\u3400-\u9fff]")
_ENDS_SENTENCE = re.compile(r"[。！？；：!?;:]$")
_STARTS_ITEM = re.compile(
    r"^(?:[•·▪●○◆■*\-–—]|\d{1,3}[.、．)）]|[(（][\d一二三四五六七八九十]{1,3}[)）]|[一二三四五六七八九十]{1,3}[、．]"
    r"|第[\d一二三四五六七八九十百零〇两]+[编篇章节条]|[A-Z]\.\s)"
)


def _width(line: str) -> int:
    """How wide ``line`` prints, in Latin letters: a Chinese character takes two. Counting characters,
    a full line of Chinese looked short beside a line of English words and stayed broken."""
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in line)


def _joins(previous: str, line: str) -> str | None:
    """How a full-width ``previous`` line goes on into ``line`` ("" or " "), None when the break is
    the text's own."""
    if previous.startswith(HEADING_MARK) or line.startswith(HEADING_MARK) or not line:
        return None
    if _CJK_END.search(previous) and _CJK_START.match(line):
        return ""
    if _LATIN_END.search(previous) and _LATIN_START.match(line):
        return " "
    if (
        _HAS_CJK.search(previous)
        and not _ENDS_SENTENCE.search(previous)
        and not _STARTS_ITEM.match(line)
        and not is_table_row(previous)
        and not is_table_row(line)
    ):
        return " " if previous[-1].isascii() and previous[-1].isalnum() and line[0].isascii() else ""
    return None


def unwrap_lines(text: str) -> str:
    """A PDF page's text with the line breaks of its layout removed where a sentence goes on.

    pypdf gives one line per printed line, so "差旅住宿标准" wrapped after "差" became "差\n旅住宿标准":
    neither keyword search nor a verbatim span finds it, and the splitter, which prefers line breaks
    to sentence ends, cut chunks mid-sentence. Only a line that fills the width was wrapped: a short
    one ("第一章 总则") is a heading or a list item and keeps its break, as does a heading, one ending
    a sentence, or one followed by an item ("1.", "（二）", a bullet); in English text also one
    followed by a capital or a digit.
    """
    lines = [line.strip() for line in text.split("\n")]
    full = _FULL_LINE * max((_width(line) for line in lines), default=0)
    out = lines[:1]
    for line in lines[1:]:
        previous = out[-1]
        joiner = _joins(previous, line) if _width(previous) >= full else None
        if joiner is None:
            out.append(line)
        else:
            out[-1] = previous + joiner + line
    return "\n".join(out)


def _looks_like(head: bytes) -> str:
    """What a file that should be a PDF seems to be instead, in words a user can act on (a renamed
    file, a download that saved the error page), rather than its first bytes."""
    if not head.strip():
        return "the file is empty"
    for signature, kind in _SIGNATURES:  # the signatures that text files are checked against too
        if head.startswith(signature):
            return f"it is {kind}"
    for cut in range(4):  # the first KB may end inside a character
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return "the file holds other binary data"
    if "<html" in text.lower() or "<!doctype html" in text.lower():
        return "it is a web page: perhaps a download that saved an error page"
    return "it holds plain text"


def load_pdf(path: Path, limits: LoadLimits) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    with path.open("rb") as handle:
        head = handle.read(1024)
        handle.seek(max(path.stat().st_size - 2048, 0))
        tail = handle.read()
    if b"%PDF-" not in head:
        raise LoadError(f"not a readable PDF: no %PDF header ({_looks_like(head)})")
    pages: list[Document] = []
    problems: list[str] = []
    ruled: dict[int, str] = {}  # pages that draw lines: they may hold a table (ingest.pdf_tables)
    scanned: dict[int, str] = {}  # pages with (almost) no text that draw an image, and the text they have
    sized: dict[int, list[tuple[str, float, bool]]] = {}  # each page's lines, their size, their bold
    outline: list[tuple[int, int, str]] = []
    characters = 0
    with _quiet_pypdf():
        try:
            reader = PdfReader(path)
            if reader.is_encrypted:
                try:
                    opened = reader.decrypt("")
                except DependencyError as error:
                    raise LoadError(f"encrypted PDF (reading its cipher needs a package: {error})") from error
                if not opened:
                    raise LoadError("encrypted PDF (password protected)")
            count = len(reader.pages)
            if count > limits.max_pdf_pages:
                raise LoadError(
                    f"PDF has too many pages: {count:,} > limit {limits.max_pdf_pages:,} (KBQA_MAX_PDF_PAGES)"
                )
            for number in range(1, count + 1):
                try:
                    page = reader.pages[number - 1]
                    pieces = LineSizes()
                    text = page.extract_text(visitor_text=pieces) or ""
                except LoadError:
                    raise
                except Exception as error:  # one damaged page must not cost the others
                    problems.append(f"page {number}: {_pdf_reason(error, tail)}")
                    continue
                characters += len(text)
                if characters > limits.max_chars:
                    raise limits.too_much_text(characters, f" by page {number}")
                image = largest_image(page) if len("".join(text.split())) < FEW_CHARACTERS else None
                if image is not None and image > MAX_IMAGE_PIXELS:
                    problems.append(
                        f"page {number}: its image is too large to read by OCR ({image:,} pixels)"
                    )
                if image is not None and image <= MAX_IMAGE_PIXELS:
                    scanned[number] = text
                elif text.strip():
                    pages.append(Document(page_content=text, metadata={"page": number}))
                    sized[number] = pieces.lines(text) or []
                    if _draws_lines(page):
                        ruled[number] = text
            outline = _pdf_outline(reader)
        except LoadError:
            raise
        except Exception as error:  # pypdf raises many types on hostile input; all mean "unreadable"
            raise LoadError(_pdf_reason(error, tail)) from error
    read_by_ocr: dict[int, list[tuple[str, float]]] = {}  # each scanned page's lines and their heights
    if scanned:
        pages = _with_scanned_pages(path, pages, scanned, limits, characters, problems, read_by_ocr)
    if ruled:
        tables = with_tables(path, ruled)
        for page in pages:
            page.page_content = tables.get(page.metadata["page"], page.page_content)
    headings = heading_levels(sized) | scan_heading_levels(read_by_ocr)
    named = outline_levels(outline, {page.metadata["page"]: page.page_content.split("\n") for page in pages})
    if _count(named) >= max(_count(headings), 1):  # the outline, unless sizes tell more headings
        headings = named
    for page in pages:
        titles = headings.get(page.metadata["page"], {})
        if titles:
            page.page_content = "\n".join(
                heading_line(titles[line.strip()], line.strip()) if line.strip() in titles else line
                for line in page.page_content.split("\n")
            )
    if problems:
        if not pages:
            raise LoadError(problems[0])
        log.warning("%s: %d unreadable page(s) left out, first %s", path.name, len(problems), problems[0])
    pages = [page for page in _without_running_lines(pages) if page.page_content.strip()]
    if not pages:
        raise LoadError(
            "PDF has no extractable text"
            + (
                f": OCR read no text in its {len(scanned)} scanned page(s)"
                if scanned and limits.ocr
                else " (scanned images? OCR is off: KBQA_OCR)"
                if scanned
                else " (no text layer and no scanned image on any page)"
            )
        )
    pages = [page for page in _unwrapped(pages) if page.page_content.strip()]
    # numbered titles are judged on whole lines: a wrapped article's first line is no title
    return with_numbered_headings(
        pages, below=max((max(titles.values()) for titles in headings.values()), default=0)
    )


_SENTENCE_END = re.compile(r"[。！？；!?;]|\.(?=\s)")


def _with_scanned_pages(
    path: Path,
    pages: list[Document],
    scanned: dict[int, str],
    limits: LoadLimits,
    characters: int,
    problems: list[str],
    read_by_ocr: dict[int, list[tuple[str, float]]],
) -> list[Document]:
    """``pages`` with the scanned ones read by OCR (``ingest.pdf_ocr``), in page order: metadata
    ``ocr`` marks them, so a citation can say its text was read from an image; each page's lines and
    their heights go into ``read_by_ocr``. Without OCR, a scan's few characters of text (a stamped
    page number) are kept as they are."""
    found: dict[int, Document] = {}
    if limits.ocr:
        log.info("%s: reading %d scanned page(s) by OCR", path.name, len(scanned))
        try:
            for number, lines in read_pages(path, sorted(scanned)):
                if isinstance(lines, Exception):
                    problems.append(f"page {number}: OCR failed ({type(lines).__name__}: {lines})")
                    continue
                read_by_ocr[number] = lines
                text = "\n".join(line for line, _ in lines)
                characters += len(text)
                if characters > limits.max_chars:
                    raise limits.too_much_text(characters, f" by page {number}")
                if text.strip():
                    found[number] = Document(page_content=text, metadata={"page": number, "ocr": True})
        except OCRUnavailableError as error:
            problems.append(f"scanned pages unread: {error}")
    for number, text in scanned.items():
        if number not in found and text.strip():
            found[number] = Document(page_content=text, metadata={"page": number})
    return sorted([*pages, *found.values()], key=lambda page: page.metadata["page"])


_MAX_OUTLINE = 10_000  # entries read; a hostile file's outline may loop or be endless


def _pdf_outline(reader: Any) -> list[tuple[int, int, str]]:
    """The outline's entries as (page number, depth, title); none when it cannot be read: an outline
    only adds headings to the text that was read."""
    entries: list[tuple[int, int, str]] = []

    def walk(items: list[Any], depth: int) -> None:
        for item in items:
            if len(entries) >= _MAX_OUTLINE:
                return
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            index = reader.get_destination_page_number(item)
            if index is not None and index >= 0:
                entries.append((index + 1, depth, str(item.title or "")))

    try:
        walk(reader.outline, 1)
    except RecursionError:
        return entries
    except Exception:  # a damaged outline: the size-told headings remain
        return []
    return entries


def _count(headings: dict[int, dict[str, int]]) -> int:
    return sum(len(titles) for titles in headings.values())


def _draws_lines(page: Any) -> bool:
    """Whether a pypdf page may hold a ruled table (``ingest.pdf_tables.may_hold_table``); a content
    stream that cannot be read again only means its tables are not looked for."""
    try:
        contents = page.get_contents()
        return contents is not None and may_hold_table(contents.get_data())
    except Exception:  # the page's text was read: a table is extra
        return False


def _runs_on(page: str, following: str) -> bool:
    """Whether ``page`` ends mid-sentence and ``following`` goes on with it, judged as ``unwrap_lines``
    judges a line break: a last line filling the width that stops on a character or a comma."""
    lines = [line.strip() for line in page.splitlines() if line.strip()]
    first = next((line.strip() for line in following.splitlines() if line.strip()), "")
    if len(lines) < 2 or len(lines[-1]) < _FULL_LINE * max(len(line) for line in lines):
        return False
    return bool(
        (_CJK_END.search(lines[-1]) and _CJK_START.match(first))
        or (_LATIN_END.search(lines[-1]) and _LATIN_START.match(first))
    )


def _unwrapped(pages: list[Document]) -> list[Document]:
    """The pages with ``unwrap_lines`` applied, and a sentence broken by a page break made whole on
    the page where it ends.

    Each page is split on its own, so "住宿标准为每晚" closing page 3 and "六百元。" opening page 4
    were two halves in two chunks, neither of which answers the question. The unfinished sentence
    (only it, not its paragraph) moves to the next page: its chunk is cited by the page it ends on.
    """
    runs_on = [
        following.metadata["page"] == page.metadata["page"] + 1
        and _runs_on(page.page_content, following.page_content)
        for page, following in itertools.pairwise(pages)
    ]
    for page in pages:
        page.page_content = unwrap_lines(page.page_content.strip())
    for (page, following), moves in zip(itertools.pairwise(pages), runs_on, strict=True):
        if not moves:
            continue
        lines = page.page_content.split("\n")
        ends = list(_SENTENCE_END.finditer(lines[-1]))
        cut = ends[-1].end() if ends else 0
        fragment = lines[-1][cut:].strip()
        if not fragment or (cut == 0 and len(lines) == 1):  # the page is one unfinished sentence
            continue
        page.page_content = "\n".join([*lines[:-1], lines[-1][:cut].rstrip()]).strip()
        joiner = " " if _LATIN_END.search(fragment) else ""
        following.page_content = fragment + joiner + following.page_content
    return pages


_EDGE_LINES = 2  # running headers and footers sit in a page's first or last lines


def _without_running_lines(pages: list[Document]) -> list[Document]:
    """The pages without the header and footer lines printed on most of them.

    "某某公司内部资料 严禁外传" or "Acme Handbook — page 3 of 40" repeated on every page would go into
    every chunk: its words would match every search and crowd the passage's own. A line counts as
    running when, with its digits ignored (page numbers), it is among the first or last lines of at
    least three pages and of most pages. Its first occurrence stays: an unruled table's header row
    repeated on each page is still said once; so does a page that holds nothing else. A ruled
    table's rows (``ingest.pdf_tables``) are never running lines: its head and rule on each page
    it continues onto are what the splitter repeats in that page's chunks.
    """
    if len(pages) < 3:
        return pages

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", " ".join(line.split()))

    def edges(page: Document) -> set[str]:
        lines = [line for line in page.page_content.splitlines() if line.strip()]
        return {key(line) for line in lines[:_EDGE_LINES] + lines[-_EDGE_LINES:] if not is_table_row(line)}

    seen = Counter(text for page in pages for text in edges(page))
    running = {text for text, count in seen.items() if count >= max(3, 0.6 * len(pages))}
    if not running:
        return pages
    kept: set[str] = set()
    for page in pages:
        lines = page.page_content.splitlines()
        filled = [number for number, line in enumerate(lines) if line.strip()]
        edge = set(filled[:_EDGE_LINES] + filled[-_EDGE_LINES:])
        out = []
        for number, line in enumerate(lines):
            text = key(line)
            if number in edge and text in running:
                if text in kept:
                    continue
                kept.add(text)
            out.append(line)
        if any(line.strip() for line in out):  # a page that is nothing but such lines stays whole
            page.page_content = "\n".join(out)
    return pages


def load_docx(path: Path, limits: LoadLimits) -> list[Document]:
    import docx

    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(_OLE):
        raise LoadError(
            "password-protected or old-format Word file (an OLE container, not a .docx package): "
            "save it as an unprotected .docx"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise LoadError(f"not a readable DOCX (damaged or not a ZIP package: {error})") from error
    # Only the XML parts are parsed into memory (images are not): that is what a zip bomb inflates.
    unpacked = sum(info.file_size for info in infos if info.filename.endswith((".xml", ".rels")))
    if unpacked > limits.max_file_bytes:
        raise LoadError(
            f"DOCX unpacks to {unpacked / MB:.1f} MB of XML > limit {limits.max_file_mb:g} MB "
            "(KBQA_MAX_FILE_MB); a zip bomb?"
        )
    try:
        document = docx.Document(str(path))
    except Exception as error:  # PackageNotFoundError, KeyError for a missing part, lxml errors
        raise LoadError(f"not a readable DOCX ({type(error).__name__}: {error})") from error
    levels = _docx_heading_levels(document.styles.element)
    text = "\n\n".join(part for part in _docx_blocks(document.element.body, levels) if part.strip())
    if len(text) > limits.max_chars:
        raise limits.too_much_text(len(text))
    title = _docx_title(document.element.body, document.styles.element)
    loaded = Document(page_content=_require_text(text), metadata={"title": title} if title else {})
    return [loaded] if HEADING_MARK in text else with_numbered_headings([loaded])


HEADING_MARK = "\u2063"  # INVISIBLE SEPARATOR: starts the heading lines the Word and HTML loaders write


def heading_line(level: int, title: str) -> str:
    """A heading as the Word and HTML loaders write it: marked, so that a literal "# " line of the
    document (a shell comment in a code sample, a numbered note) is never taken for one."""
    return f"{HEADING_MARK}{'#' * level} {title}"


# Set on the documents of a file whose titles are decimal-numbered: the splitter names its chunks'
# sections in their metadata only (``ingest.splitter``).
DECIMAL_TITLES = "decimal_titles"


def with_numbered_headings(documents: list[Document], below: int = 0) -> list[Document]:
    """A file's documents (a PDF's pages) with their numbered titles (``ingest.numbered_headings``)
    written as heading lines; for a file that marks no headings of its own, which is how most Chinese
    regulations and reports come: typed without heading styles, or exported in one font size.

    ``below`` is the deepest level of the headings the file already marks: a regulation exported to
    PDF sets its name large and its chapters ("第一章 总则") at the body size, so its numbered titles
    go under the name. Lines already marked are not looked at again.
    """
    pages = [document.page_content.split("\n") for document in documents]
    every_line = ["" if line.startswith(HEADING_MARK) else line for lines in pages for line in lines]
    found = numbered_headings(every_line, name_first=not below)
    levels = {number: min(level + below, 6) for number, level in found.levels.items()}
    first = 0  # the index of a page's first line among the file's lines
    for document, lines in zip(documents, pages, strict=True):
        if found.decimal:
            document.metadata[DECIMAL_TITLES] = True
        if levels:
            document.page_content = "\n".join(
                heading_line(levels[first + number], " ".join(line.split()))
                if first + number in levels
                else line
                for number, line in enumerate(lines)
            )
        first += len(lines)
    return documents


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


def _docx_text(element: Any) -> str:
    """The visible text under ``element``: runs, tracked insertions, content controls, fields, smart
    tags and text boxes alike (python-docx's ``paragraph.text`` sees plain runs only), without
    tracked deletions (``w:delText``) or a drawing's fallback copy of its text box."""
    parts = []
    for node in element.iter(f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr"):
        if any(ancestor.tag == _FALLBACK for ancestor in node.iterancestors()):
            continue
        parts.append(node.text or "" if node.tag == f"{_W}t" else "\t" if node.tag == f"{_W}tab" else "\n")
    return "".join(parts)


# A built-in heading style's name: "heading 2" (the name Word stores whatever the UI language),
# and the names a localised template may store instead ("Heading 2", "标题 2").
_HEADING_STYLE_NAME = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.IGNORECASE)
_TITLE_STYLE = {"title", "标题"}
_BODY_OUTLINE_LEVEL = 9  # w:outlineLvl 0-8 are heading levels 1-9; 9 is body text


def _outline_level(properties: Any) -> int | None:
    """A ``w:pPr``'s own heading level (1-9), 0 where it says body text, None where it says nothing."""
    outline = None if properties is None else properties.find(f"{_W}outlineLvl")
    value = None if outline is None else outline.get(f"{_W}val", "")
    if value is None or not value.isdigit():
        return None
    return 0 if int(value) >= _BODY_OUTLINE_LEVEL else int(value) + 1


def _docx_heading_levels(styles: Any) -> dict[str, int]:
    """Heading level of each paragraph style that makes a heading, by style id.

    A heading is marked by its style, not by its look: the built-in "heading N" styles, a style with
    an outline level (what Word's navigation pane shows), and a custom style based on either. Style
    ids are no guide: a Chinese Word names "heading 1"'s id "1".
    """
    found: dict[str, tuple[int | None, str | None]] = {}
    for style in styles.iterchildren(f"{_W}style"):
        if style.get(f"{_W}type") != "paragraph" or not style.get(f"{_W}styleId"):
            continue
        level = _outline_level(style.find(f"{_W}pPr"))
        name = style.find(f"{_W}name")
        by_name = _HEADING_STYLE_NAME.match(name.get(f"{_W}val", "") if name is not None else "")
        if level is None and by_name:
            level = int(by_name.group(1))
        based = style.find(f"{_W}basedOn")
        found[style.get(f"{_W}styleId")] = (level, based.get(f"{_W}val") if based is not None else None)

    def level_of(style_id: str, seen: frozenset[str] = frozenset()) -> int:
        level, based = found[style_id]
        if level is not None:
            return level
        if based in found and based not in seen:
            return level_of(based, seen | {style_id})
        return 0

    return {style_id: level for style_id in found if (level := level_of(style_id))}


def _style_id(paragraph: Any) -> str:
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    return style.get(f"{_W}val", "") if style is not None else ""


def _docx_heading(paragraph: Any, levels: dict[str, int]) -> int:
    """The paragraph's heading level (0: not a heading); its own outline level wins over its style's."""
    own = _outline_level(paragraph.find(f"{_W}pPr"))
    return own if own is not None else levels.get(_style_id(paragraph), 0)


def _docx_title(body: Any, styles: Any) -> str:
    """The text of the first paragraph in Word's "Title" style: kept as the document's title, as a
    Markdown file's front-matter title is (it stays in the text too)."""
    title_ids = {
        style.get(f"{_W}styleId")
        for style in styles.iterchildren(f"{_W}style")
        if (name := style.find(f"{_W}name")) is not None and name.get(f"{_W}val", "").lower() in _TITLE_STYLE
    }
    for paragraph in body.iter(f"{_W}p"):
        if _style_id(paragraph) in title_ids and (text := " ".join(_docx_text(paragraph).split())):
            return text
    return ""


def _docx_is_head_row(row: Any) -> bool:
    """Word's "Repeat as header row" (``w:tblHeader``): the author's own mark of a table's head. The
    table style's first-row look is not one: Word sets it on every new table, head or not."""
    mark = row.find(f"{_W}trPr/{_W}tblHeader")
    return mark is not None and mark.get(f"{_W}val", "true") not in ("0", "false", "off")


def _docx_blocks(body: Any, levels: dict[str, int]) -> Iterator[str]:
    """Paragraphs and tables in document order (a table stays under the heading it follows); a table
    row as "cell | cell" on a line of its own (a line break inside a cell is a space), each cell once
    however many grid columns it spans, nested tables in their cell's text; a "--- | ---" rule under
    a first row marked as the table's head.

    A heading paragraph is written as a marked Markdown heading (``heading_line``), so the splitter
    can name each chunk's section (``ingest.splitter``: in its metadata; the text reads as the
    document does).
    """
    for child in body.iterchildren():
        if child.tag == f"{_W}p":
            text = _docx_text(child)
            level = _docx_heading(child, levels)
            title = " ".join(text.split())
            yield heading_line(min(level, 6), title) if level and title else text
        elif child.tag == f"{_W}tbl":  # one block, a row per line, as HTML tables: the splitter
            rows = []  # repeats a table's head row in each chunk that continues it
            head_columns = 0
            for number, row in enumerate(child.iterchildren(f"{_W}tr")):
                cells = [
                    " ".join(
                        " ".join(_docx_text(paragraph).split()) for paragraph in cell.iter(f"{_W}p")
                    ).strip()
                    for cell in row.iterchildren(f"{_W}tc")
                ]
                if any(cells):
                    if number == 0 and _docx_is_head_row(row):
                        head_columns = len(cells)
                    rows.append(" | ".join(cells))
            if head_columns and len(rows) > 1:
                rows.insert(1, _table_rule(head_columns))
            yield "\n".join(rows)
        elif child.tag == f"{_W}sdt":  # a content control around whole paragraphs or tables
            for content in child.iterchildren(f"{_W}sdtContent"):
                yield from _docx_blocks(content, levels)


_HTML_BLOCKS = [
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "table", "ul", "title", "caption",
]  # fmt: skip
_HTML_CELLS = ["td", "th"]
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _declared_html_text(data: bytes) -> str | None:
    """The page decoded with the charset its ``<meta>`` declares, when that decodes it cleanly.

    Guessing from bytes alone confuses short pages in legacy encodings (Shift-JIS, EUC-KR read as
    GB18030); the page's own declaration is right far more often. A BOM or a declaration that does
    not decode the bytes leaves the guess to ``decode_text``.
    """
    found = _META_CHARSET.search(data[:4096])
    if found is None or data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        return data.decode(found.group(1).decode("ascii"))
    except (LookupError, UnicodeDecodeError):
        return None


_HTML_HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
_HTML_NOT_TEXT = ["script", "style", "noscript", "template", "svg"]
# A <header> or <footer> inside one of these belongs to it (HTML's sectioning elements and roots).
_HTML_PAGE_PARTS = [
    "article", "aside", "blockquote", "details", "dialog", "fieldset", "figure", "main", "section",
    "td", "th",
]  # fmt: skip
# What a heading's "link to this section" anchor shows (Sphinx and MkDocs "¶", Docusaurus "\u200b").
_PERMALINK_MARKS = " ¶#§\u200b\u00a0🔗"


def _table_rule(columns: int) -> str:
    """The Markdown rule under a table's head row ("--- | ---"): the splitter repeats head and rule in
    each chunk that continues the table, and the answer prompt names each row's cells by the head's
    (``rag.prompts.tables_as_records``)."""
    return " | ".join(["---"] * columns)


def _mark_html_table_head(table: Any) -> None:
    """A rule after a table's first row when that row is all ``<th>`` and rows follow it: the page
    says it is the head. Other tables stay plain rows, as a first row of data is no head."""
    from bs4 import NavigableString

    rows = [row for row in table.find_all("tr") if row.find_parent("table") is table]
    cells = rows[0].find_all(_HTML_CELLS, recursive=False) if len(rows) > 1 else []
    if cells and all(cell.name == "th" for cell in cells):
        rows[0].insert_after(NavigableString(f"{_table_rule(len(cells))}\n"))


def _html_content(roots: list[Any], *, drop_site_parts: bool) -> str:
    """The text of ``roots``, a line per block.

    Line breaks where the layout breaks (blocks, <br>), none inside a line: "拨打<b>客服</b>电话
    <span>400</span>-<span>800</span>" stays one line that a search for "400-800" can match. A table
    row is one line of "cell | cell", as Word tables are loaded, with a "--- | ---" rule under a
    first row of ``<th>`` cells. An <h2> is a marked "## …", so the splitter can name each chunk's
    section, as for Word. With ``drop_site_parts``, navigation and the page-wide header and footer
    are left out.
    """
    from bs4 import NavigableString

    texts = []
    for root in roots:
        for tag in root.find_all(_HTML_NOT_TEXT):
            tag.decompose()
        if drop_site_parts:
            site_parts = [*root.find_all("nav"), *root.find_all(attrs={"role": "navigation"})]
            site_parts += [
                tag for tag in root.find_all(["header", "footer"]) if not tag.find_parent(_HTML_PAGE_PARTS)
            ]
            for tag in site_parts:
                if not tag.decomposed:
                    tag.decompose()
        # A line break in the page's source is a space, as a browser shows it (outside <pre>).
        for node in root.find_all(string=True):
            if type(node) is NavigableString and node.find_parent(["pre", "textarea"]) is None:
                node.replace_with(NavigableString(re.sub(r"\s+", " ", node)))
        for tag in root.find_all(_HTML_HEADINGS):
            for anchor in tag.find_all("a", href=True):
                if str(anchor["href"]).startswith("#") and not anchor.get_text().strip(_PERMALINK_MARKS):
                    anchor.decompose()
            for line_break in tag.find_all("br"):
                line_break.replace_with(" ")
            heading = " ".join(tag.get_text("").split())
            if heading and tag.find_parent(_HTML_CELLS) is None:
                tag.clear()
                tag.append(heading_line(int(tag.name[1]), heading))
        for table in root.find_all("table"):
            _mark_html_table_head(table)
        for tag in root.find_all(_HTML_CELLS):
            tag.append(" | ")
        # Rows on consecutive lines, so the splitter knows them as a table; a cell's own paragraphs
        # and line breaks (Word's "Save as HTML" and Confluence put each cell in a <p>) stay on its row.
        for tag in root.find_all(["tr", *_HTML_BLOCKS]):
            inside_cell = tag.find_parent(_HTML_CELLS) is not None
            if tag.name != "tr" or inside_cell:
                tag.insert_before(" " if inside_cell else "\n")
            tag.append(" " if inside_cell else "\n")
        lines = [" ".join(line.split()).removesuffix(" |").strip() for line in root.get_text("").splitlines()]
        texts.append("\n".join(lines))
    return re.sub(r"\n{3,}", "\n\n", "\n\n".join(texts)).strip()


def load_html(path: Path, limits: LoadLimits) -> list[Document]:
    from bs4 import BeautifulSoup

    data = path.read_bytes()
    text = _declared_html_text(data) or decode_text(data)[0]
    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    body = soup.body or soup
    # A page's own text is in its <main> where it marks one; elsewhere the site's menus and
    # copyright lines would be chunks of every page, found for questions about navigation.
    mains = [
        main for main in body.find_all("main") if not main.find_parent("main") and not main.has_attr("hidden")
    ]
    content = _html_content(mains or [body], drop_site_parts=True)
    if not content:  # a page whose only text sits in a <header> or <nav> keeps it
        again = BeautifulSoup(text, "html.parser")
        content = _html_content([again.body or again], drop_site_parts=False)
    if len(content) > limits.max_chars:
        raise limits.too_much_text(len(content))
    metadata = {"title": title} if title else {}
    return [Document(page_content=_require_text(content), metadata=metadata)]


LOADERS: dict[str, Callable[[Path, LoadLimits], list[Document]]] = {
    ".pdf": load_pdf,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


_FILE_TYPES = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "folder"),
)


def not_regular_reason(mode: int) -> str:
    """Why a non-regular file is refused: reading a FIFO blocks forever, /dev/zero never ends."""
    kind = next((name for test, name in _FILE_TYPES if test(mode)), "special file")
    return f"not a regular file ({kind})"


def os_error_reason(error: OSError) -> str:
    """A short reason for an OS error, in the words the rest of ingestion uses."""
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.errno == errno.ELOOP:
        return "not a regular file (symlink loop)"
    if error.errno == errno.ENAMETOOLONG:
        return "path too long for the system (over 4096 bytes)"
    return f"cannot read file ({error.strerror or error})"


def load_file(path: Path, source: str, limits: LoadLimits | None = None) -> list[Document]:
    """Load ``path`` and stamp each document with ``source`` (its path relative to the ingested folder).

    ``limits`` default to the settings' defaults. The size is checked before any loader opens the
    file, and anything a parser raises becomes a ``LoadError``: one odd file must never end a run.
    """
    limits = limits or LoadLimits.defaults()
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    kind = _KINDS.get(suffix, "text")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(not_regular_reason(info.st_mode))
        if info.st_size == 0:
            raise LoadError(f"empty document (a 0-byte {kind} file)")
        if info.st_size > limits.max_file_bytes:
            size, limit = info.st_size / MB, limits.max_file_mb
            raise LoadError(f"file too large: {size:.1f} MB > limit {limit:g} MB (KBQA_MAX_FILE_MB)")
        documents = loader(path, limits)
    except LoadError:
        raise
    except OSError as error:
        raise LoadError(os_error_reason(error)) from error
    except RecursionError as error:
        raise LoadError(f"malformed {kind} file (structures nested too deeply)") from error
    except MemoryError as error:
        raise LoadError(f"{kind} file too large to load into memory") from error
    except Exception as error:
        log.debug("loading %s failed", source, exc_info=True)
        raise LoadError(f"could not read this {kind} file ({type(error).__name__}: {error})") from error
    for document in documents:
        document.metadata["source"] = source
        document.metadata["file_type"] = suffix.lstrip(".")
    return documents
