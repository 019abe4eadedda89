"""Turn one file into LangChain ``Document``s (one per PDF page, one per other file).

Each loader either returns text it is confident about or raises ``LoadError`` with a reason a user
can act on ("encrypted PDF", "binary data, not text"); the pipeline reports it and goes on.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable
from pathlib import Path

from charset_normalizer import from_bytes
from langchain_core.documents import Document

log = logging.getLogger(__name__)


class LoadError(Exception):
    """A file that cannot be turned into text; the message is the reason shown to the user."""


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Chinese legacy encodings are all subsets of GB18030; decoding with it avoids losing rare characters.
_CHINESE_ENCODINGS = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _looks_like_text(text: str) -> bool:
    if not text:
        return True
    bad = len(_CONTROL.findall(text)) + text.count("\ufffd")
    return bad / len(text) < 0.01


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; returns (text, encoding) or raises LoadError for binary data."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding
    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        if b"\x00" in data[:4096] and not _utf16_without_bom(data):
            raise LoadError("binary data, not text") from None
        text, encoding = _guess_legacy(data)
    if not _looks_like_text(text):
        raise LoadError("binary data, not text")
    return text, encoding


def _utf16_without_bom(data: bytes) -> bool:
    """UTF-16 text without BOM has NULs in every other byte for ASCII/Latin content."""
    sample = data[:4096]
    even, odd = sample[0::2], sample[1::2]
    return bool(sample) and (even.count(0) > 0.3 * len(even) or odd.count(0) > 0.3 * len(odd))


def _guess_legacy(data: bytes) -> tuple[str, str]:
    if _utf16_without_bom(data):
        encoding = "utf-16-le" if data[1::2].count(0) > data[0::2].count(0) else "utf-16-be"
        return data.decode(encoding, errors="replace"), encoding
    # Chinese first: strict GB18030 decoding of non-Chinese bytes fails or yields rare characters.
    try:
        text = data.decode("gb18030")
        if _mostly_common_cjk(text):
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
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


def _mostly_common_cjk(text: str) -> bool:
    """True when the non-ASCII part is mostly CJK ideographs and CJK punctuation."""
    non_ascii = [ch for ch in text if ord(ch) > 127]
    if not non_ascii:
        return False
    cjk = sum(
        1
        for ch in non_ascii
        if "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
    )
    return cjk / len(non_ascii) > 0.9


def _require_text(text: str) -> str:
    if not text.strip():
        raise LoadError("empty document (no text)")
    return text


def load_text(path: Path) -> list[Document]:
    text, encoding = decode_text(path.read_bytes())
    return [Document(page_content=_require_text(text.replace("\r\n", "\n")), metadata={"encoding": encoding})]


def load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF (a password is needed)")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                pages.append(Document(page_content=text, metadata={"page": number}))
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        if "encrypt" in str(error).lower() or "password" in str(error).lower():
            raise LoadError("encrypted PDF (a password is needed)") from error
        raise LoadError(f"not a readable PDF ({type(error).__name__}: {error})") from error
    except RecursionError as error:
        raise LoadError("malformed PDF (objects nested too deeply)") from error
    if not pages:
        raise LoadError("PDF has no extractable text (scanned images?)")
    return pages


def load_docx(path: Path) -> list[Document]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as error:
        raise LoadError(f"not a readable DOCX ({type(error).__name__})") from error
    except Exception as error:  # zipfile.BadZipFile, lxml errors
        raise LoadError(f"not a readable DOCX ({type(error).__name__}: {error})") from error
    parts = [paragraph.text for paragraph in document.paragraphs if paragraph.text.strip()]
    for table in document.tables:
        for row in table.rows:
            cells = [cell.text.strip() for cell in row.cells]
            if any(cells):
                parts.append(" | ".join(cells))
    return [Document(page_content=_require_text("\n\n".join(parts)))]


def load_html(path: Path) -> list[Document]:
    from bs4 import BeautifulSoup

    data = path.read_bytes()
    text, _ = decode_text(data)
    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    body = soup.body or soup
    lines = [line.strip() for line in body.get_text("\n").splitlines()]
    content = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    metadata = {"title": title} if title else {}
    return [Document(page_content=_require_text(content), metadata=metadata)]


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    ".pdf": load_pdf,
    ".md": load_text,
    ".markdown": load_text,
    ".txt": load_text,
    ".text": load_text,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load_file(path: Path, source: str) -> list[Document]:
    """Load ``path`` and stamp each document with ``source`` (its path relative to the ingested folder)."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    try:
        documents = loader(path)
    except LoadError:
        raise
    except PermissionError as error:
        raise LoadError("permission denied") from error
    except OSError as error:
        raise LoadError(f"cannot read file ({error.strerror or error})") from error
    for document in documents:
        document.metadata["source"] = source
        document.metadata["file_type"] = path.suffix.lower().lstrip(".")
    return documents
