"""Generate a folder of hostile and odd inputs for ingestion, with what a user should see for each.

Real users point kbqa at folders that hold half-downloaded PDFs, password-protected reports, files
that only carry a text extension, exports in GBK or UTF-16, symlink tangles and folders they cannot
read. The point of this corpus is that ingestion of such a folder finishes, reports every file it
could not take with a reason a user can act on, takes the legitimate odd files (GBK, UTF-16, mixed
encodings, Chinese or newline-bearing names, deep folders) correctly, and keeps its memory bounded.

Everything is generated, deterministically, so the corpus needs no fixtures in git; malformed and
bomb PDFs are written byte by byte (``_raw_pdf``) because no PDF library will write them.

    python -m tests.support.hostile_files DIR      # write the corpus and print the expectations
"""

from __future__ import annotations

import codecs
import io
import os
import random
import stat
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pypdf import PdfReader, PdfWriter

from tests.support.sample_docs import write_docx, write_pdf

Outcome = Literal["ingested", "failed", "skipped"]

MB = 1024 * 1024


@dataclass(frozen=True)
class Expectation:
    """What ingestion should do with one corpus entry.

    ``reason`` is a case-insensitive substring of the reported reason (failed/skipped only);
    ``query`` is a sentence only that file holds, to prove an ingested file is searchable;
    ``prefix`` marks an entry whose reported source starts with the key (a folder too deep to name);
    ``needs_unprivileged`` marks permission cases, which only a non-root reader sees fail.
    """

    outcome: Outcome
    what: str
    reason: str = ""
    query: str = ""
    prefix: bool = False
    needs_unprivileged: bool = False


Expectations = dict[str, Expectation]


# --- raw PDF building -------------------------------------------------------------------------------

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _raw_pdf(objects: dict[int, bytes], *, root: int = 1) -> bytes:
    """A PDF with exactly these objects and a correct cross-reference table.

    Correct offsets matter: with a broken table pypdf falls back to scanning the file, which would
    test its recovery rather than the hostile structure each caller builds.
    """
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    start = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, start)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _page(parent: int, contents: int, extra: bytes = b"") -> bytes:
    return (
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> %s >>" % (parent, contents, extra)
    )


def _text_ops(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"


def _simple_pdf(text: str, *, page_extra: bytes = b"") -> bytes:
    return _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: FONT,
            4: _page(2, 5, page_extra),
            5: _stream(_text_ops(text)),
        }
    )


def page_fanout_bomb() -> bytes:
    """Three levels of /Kids each listing the same child 1000 times: a billion pages in 12 KB."""
    kids = b" ".join([b"%d 0 R"] * 1000)
    return _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [" + kids % ((6,) * 1000) + b"] /Count 1000000000 >>",
            3: FONT,
            6: b"<< /Type /Pages /Parent 2 0 R /Kids [" + kids % ((7,) * 1000) + b"] /Count 1000000 >>",
            7: b"<< /Type /Pages /Parent 6 0 R /Kids [" + kids % ((8,) * 1000) + b"] /Count 1000 >>",
            8: _page(7, 9),
            9: _stream(_text_ops("bomb")),
        }
    )


def many_pages(count: int) -> bytes:
    """``count`` real, tiny pages sharing one content stream (a page-count bomb that is honest)."""
    first = 10
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (first + i) for i in range(count))
        + b"] /Count %d >>" % count,
        3: FONT,
        4: _stream(_text_ops("page")),
    }
    for i in range(count):
        objects[first + i] = _page(2, 4)
    return _raw_pdf(objects)


def deeply_nested_arrays(depth: int) -> bytes:
    """A page whose dictionary holds ``depth`` nested arrays."""
    return _simple_pdf("nested", page_extra=b"/Deep " + b"[" * depth + b"1" + b"]" * depth)


def cyclic_page_tree() -> bytes:
    return _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: FONT,
            4: b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
        }
    )


def self_referencing_contents() -> bytes:
    return _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: FONT,
            4: _page(2, 5),
            5: b"5 0 R",
        }
    )


def inflate_bomb(megabytes: int) -> bytes:
    """A page whose 100 KB content stream inflates to ``megabytes`` MB (compressed in pieces)."""
    compressor = zlib.compressobj(9)
    block = b" " * MB
    data = b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()
    return _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: FONT,
            4: _page(2, 5),
            5: _stream(data, b"/Filter /FlateDecode"),
        }
    )


# --- other builders ---------------------------------------------------------------------------------


def _encrypt(plain: Path, target: Path, *, user: str, owner: str) -> None:
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password=user, owner_password=owner)
    with target.open("wb") as handle:
        writer.write(handle)


def _docx_with_document_xml(path: Path, good_docx: Path, document_xml: Iterator[bytes]) -> None:
    """Copy a genuine DOCX, replacing word/document.xml by the streamed ``document_xml`` pieces."""
    with zipfile.ZipFile(good_docx) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename == "word/document.xml":
                with target.open("word/document.xml", "w", force_zip64=True) as member:
                    for piece in document_xml:
                        member.write(piece)
            else:
                target.writestr(info, source.read(info))


def _padded_document_xml(megabytes: int) -> Iterator[bytes]:
    yield (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    )
    for _ in range(megabytes):
        yield b" " * MB
    yield b"<w:p><w:r><w:t>padding</w:t></w:r></w:p></w:body></w:document>"


def _billion_laughs_xml() -> Iterator[bytes]:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    yield (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<!DOCTYPE w:document [<!ENTITY l0 "lol">{entities}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        "<w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>"
    ).encode()


def _lorem(rng: random.Random, characters: int) -> str:
    words = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper"]
    out: list[str] = []
    length = 0
    while length < characters:
        sentence = " ".join(rng.choice(words) for _ in range(12)).capitalize() + ". "
        out.append(sentence)
        length += len(sentence)
    return "".join(out)


def _deep_dirs(base: Path, names: list[str]) -> int:
    """Create ``base/names[0]/names[1]/...`` relative to directory descriptors; returns the last one.

    Paths longer than PATH_MAX cannot be created by name, only one level at a time from an open
    directory, which is how a user's sync tool or archive extraction can produce them.
    """
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def _write_at(fd: int, name: str, data: bytes) -> None:
    handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
    try:
        os.write(handle, data)
    finally:
        os.close(handle)


# --- the corpus -------------------------------------------------------------------------------------

# Distinctive sentences: each is in exactly one good file, so a search for it must return that file.
SENTENCES = {
    "good/plain.md": "The lighthouse keeper Orvald paints the railing teal every April.",
    "good/report.pdf": "Invoice approvals above 9400 euros need the signature of Margit Ostrova.",
    "good/owner_password_only.pdf": "The greenhouse sensors report humidity every 17 minutes.",
    "good/page.html": "The ferry timetable changes on the first Monday of October.",
    "good/handbook.docx": "Visitors collect their badge from the desk beside the aquarium.",
    "encodings/gbk.txt": "青石港的渡轮每天早上七点二十分准时出发。",
    "encodings/utf16le_bom.txt": "The archive room key hangs behind the blue cabinet.",
    "encodings/utf16le_no_bom_zh.txt": "松柏书店每逢周三闭馆整理旧书。",
    "encodings/utf16be_bom.md": "Drone flights over the quarry need a permit from Halvard.",
    "encodings/cp1252.txt": "Le café Bérénice ferme à minuit le samedi.",
    "encodings/mixed_utf8_gbk.txt": "The bakery on Quince Street opens at quarter past six.",
    "encodings/utf8_one_corrupt_byte.md": "白鹭湖观鸟台在冬季只在周末开放。",
    "names/file with spaces.md": "The rowing club stores its oars in shed number four.",
    "names/中文目录/员工手册 第二版.md": "员工食堂的糖醋排骨只在每周四供应。",
    "names/line\nbreak.md": "The observatory dome opens only when the wind is calm.",
    "names/UPPER CASE.TXT": "The carpenter Ysolde repairs the library ladders in spring.",
    "text/long_single_line.txt": "The vault inventory lists exactly eleven copper kettles.",
    "text/deeply_nested.html": "The attic above the chapel holds nine striped umbrellas.",
    "pdf/nested_dicts.pdf": "The tram depot lends bicycles to night shift drivers.",
}
DEEP_SOURCE = "/".join(f"level{i:02d}" for i in range(60)) + "/deep.md"
SENTENCES[DEEP_SOURCE] = "The deepest folder holds the recipe for juniper syrup."
NARROW_LEVELS = 1200
NARROW_SOURCE = "deep_narrow/" + "n/" * (NARROW_LEVELS - 1) + "bottom.md"
SENTENCES[NARROW_SOURCE] = "The bottom folder keeps the spare key to the boathouse."
MIXED_GBK_LINE = "松柏书店的咖啡角供应桂花拿铁。"


def write_hostile_corpus(folder: Path) -> Expectations:
    """Write the corpus under ``folder`` (created) and return the expected outcome per source path.

    The returned keys are sources as ingestion reports them (paths relative to ``folder``); the
    permission cases are written with their restrictive modes, so the caller must restore modes
    (``restore_permissions``) before deleting the folder as a non-root user.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20240601)
    expect: Expectations = {}

    def put(source: str, data: bytes, expectation: Expectation) -> Path:
        path = folder / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[source] = expectation
        return path

    def good(source: str, what: str) -> Expectation:
        return Expectation("ingested", what, query=SENTENCES[source])

    # Good files: the ones a run must take despite everything around them.
    put(
        "good/plain.md",
        f"# Lighthouse\n\n{SENTENCES['good/plain.md']}\n".encode(),
        good("good/plain.md", "Markdown"),
    )
    report = write_pdf(
        folder / "good/report.pdf", [SENTENCES["good/report.pdf"], "Second page of the report."]
    )
    expect["good/report.pdf"] = good("good/report.pdf", "PDF (reportlab, 2 pages)")
    plain_pdf = write_pdf(folder / "scratch.pdf", [SENTENCES["good/owner_password_only.pdf"]])
    _encrypt(plain_pdf, folder / "good/owner_password_only.pdf", user="", owner="owner-secret")
    plain_pdf.unlink()
    expect["good/owner_password_only.pdf"] = good(
        "good/owner_password_only.pdf", "PDF encrypted with an owner password only (opens without one)"
    )
    put(
        "good/page.html",
        f"<html><head><title>Ferry</title><script>var x = 1;</script></head><body><p>"
        f"{SENTENCES['good/page.html']}</p></body></html>".encode(),
        good("good/page.html", "HTML"),
    )
    write_docx(folder / "good/handbook.docx", [SENTENCES["good/handbook.docx"]], heading="Visitors")
    expect["good/handbook.docx"] = good("good/handbook.docx", "DOCX")

    # Encodings a user's Windows/legacy tools produce: all legitimate, all must come out as text.
    put(
        "encodings/gbk.txt",
        f"渡轮时刻\n\n{SENTENCES['encodings/gbk.txt']}\n".encode("gbk"),
        good("encodings/gbk.txt", "GBK-encoded Chinese text"),
    )
    put(
        "encodings/utf16le_bom.txt",
        codecs.BOM_UTF16_LE + f"Archive\n\n{SENTENCES['encodings/utf16le_bom.txt']}\n".encode("utf-16-le"),
        good("encodings/utf16le_bom.txt", "UTF-16 LE with BOM"),
    )
    put(
        "encodings/utf16le_no_bom_zh.txt",
        f"书店\n{SENTENCES['encodings/utf16le_no_bom_zh.txt']}\n".encode("utf-16-le"),
        good("encodings/utf16le_no_bom_zh.txt", "UTF-16 LE without BOM, Chinese (few NUL bytes)"),
    )
    put(
        "encodings/utf16be_bom.md",
        codecs.BOM_UTF16_BE + f"# Quarry\n\n{SENTENCES['encodings/utf16be_bom.md']}\n".encode("utf-16-be"),
        good("encodings/utf16be_bom.md", "UTF-16 BE with BOM, Markdown"),
    )
    put(
        "encodings/cp1252.txt",
        f"Horaires\n\n{SENTENCES['encodings/cp1252.txt']}\n".encode("cp1252"),
        good("encodings/cp1252.txt", "Windows-1252 French"),
    )
    put(
        "encodings/mixed_utf8_gbk.txt",
        f"Bakery notes — “opening hours”\n{SENTENCES['encodings/mixed_utf8_gbk.txt']}\n".encode()
        + f"{MIXED_GBK_LINE}\n".encode("gbk")
        + "Written in UTF-8 again: café.\n".encode(),
        good("encodings/mixed_utf8_gbk.txt", "UTF-8 lines and a GBK line in one file"),
    )
    corrupt = f"# 观鸟\n\n{SENTENCES['encodings/utf8_one_corrupt_byte.md']}\n湖边步道长三公里。\n".encode()
    cut = corrupt.index("湖边".encode()) + 1
    put(
        "encodings/utf8_one_corrupt_byte.md",
        corrupt[:cut] + b"\xff" + corrupt[cut + 1 :],
        good("encodings/utf8_one_corrupt_byte.md", "UTF-8 Chinese with one corrupted byte"),
    )

    # Path names: spaces, Chinese, a newline, upper-case extension.
    for source in ("names/file with spaces.md", "names/中文目录/员工手册 第二版.md", "names/line\nbreak.md"):
        put(source, f"# Note\n\n{SENTENCES[source]}\n".encode(), good(source, f"path name {source!r}"))
    put(
        "names/UPPER CASE.TXT",
        SENTENCES["names/UPPER CASE.TXT"].encode(),
        good("names/UPPER CASE.TXT", "upper-case .TXT extension"),
    )
    put(DEEP_SOURCE, f"# Deep\n\n{SENTENCES[DEEP_SOURCE]}\n".encode(), good(DEEP_SOURCE, "60 nested folders"))

    # A long single line that is still within limits: the splitter must cut it, not hang on it.
    filler = _lorem(rng, 15_000)
    put(
        "text/long_single_line.txt",
        (filler + SENTENCES["text/long_single_line.txt"] + " " + filler).replace("\n", " ").encode(),
        good("text/long_single_line.txt", "30 KB on one line"),
    )

    put(
        "text/deeply_nested.html",
        (
            "<html><body>"
            + "<div>" * 20_000
            + SENTENCES["text/deeply_nested.html"]
            + "</div>" * 20_000
            + "</body></html>"
        ).encode(),
        good("text/deeply_nested.html", "20 000 nested <div> elements"),
    )
    # Deeper than Python's recursion limit (a recursive walk dies here) yet within PATH_MAX.
    fd = _deep_dirs(folder, ["deep_narrow", *["n"] * (NARROW_LEVELS - 1)])
    _write_at(fd, "bottom.md", f"# Bottom\n\n{SENTENCES[NARROW_SOURCE]}\n".encode())
    os.close(fd)
    expect[NARROW_SOURCE] = good(NARROW_SOURCE, f"{NARROW_LEVELS} nested one-letter folders")

    # --- hostile: PDFs ---------------------------------------------------------------------------
    full = report.read_bytes()
    put("pdf/truncated.pdf", full[: len(full) // 2], Expectation("failed", "PDF cut in half", "truncated"))
    put(
        "pdf/header_only.pdf", b"%PDF-1.7\n", Expectation("failed", "only a PDF header", "not a readable PDF")
    )
    put("pdf/zero_bytes.pdf", b"", Expectation("failed", "0-byte PDF", "empty document"))
    put(
        "pdf/html_named_pdf.pdf",
        b"<html><body>404 Not Found</body></html>",
        Expectation("failed", "HTML error page saved as .pdf", "no %PDF header"),
    )
    put(
        "pdf/random_after_header.pdf",
        b"%PDF-1.4\n" + rng.randbytes(64 * 1024),
        Expectation("failed", "PDF header then random bytes", "not a readable PDF"),
    )
    locked_plain = write_pdf(folder / "scratch.pdf", ["This text is behind a password."])
    _encrypt(locked_plain, folder / "pdf/encrypted.pdf", user="user-secret", owner="owner-secret")
    locked_plain.unlink()
    expect["pdf/encrypted.pdf"] = Expectation(
        "failed", "PDF with a user password (RC4)", "encrypted PDF (password protected)"
    )
    put(
        "pdf/page_fanout_bomb.pdf",
        page_fanout_bomb(),
        Expectation("failed", "page tree claiming 10^9 pages (shared /Kids, 12 KB)", "safety limit"),
    )
    put(
        "pdf/six_thousand_pages.pdf",
        many_pages(6000),
        Expectation(
            "failed", "6000 real (tiny) pages", "too many pages: 6,000 > limit 5,000 (KBQA_MAX_PDF_PAGES)"
        ),
    )
    put(
        "pdf/nested_arrays.pdf",
        deeply_nested_arrays(100_000),
        Expectation("failed", "100 000 nested arrays in a page", "nested too deeply"),
    )
    # pypdf gives up on the nested value but keeps the page: its text layer is intact, so it is taken.
    nested_dicts = _raw_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: FONT,
            4: _page(2, 5, b"/Deep " + b"<< /A " * 50_000 + b"1" + b" >>" * 50_000),
            5: _stream(_text_ops(SENTENCES["pdf/nested_dicts.pdf"])),
        }
    )
    put(
        "pdf/nested_dicts.pdf",
        nested_dicts,
        good("pdf/nested_dicts.pdf", "50 000 nested dictionaries in a page"),
    )
    put(
        "pdf/cyclic_page_tree.pdf",
        cyclic_page_tree(),
        Expectation("failed", "page tree whose /Kids point back at the root", "not a readable PDF"),
    )
    put(
        "pdf/self_reference.pdf",
        self_referencing_contents(),
        Expectation("failed", "page /Contents is an object referring to itself", "no extractable text"),
    )
    put(
        "pdf/inflate_bomb.pdf",
        inflate_bomb(200),
        Expectation("failed", "content stream inflating 200 KB -> 200 MB", "safety limit"),
    )
    blank = PdfWriter()
    blank.add_blank_page(width=300, height=300)
    buffer = io.BytesIO()
    blank.write(buffer)
    put(
        "pdf/scanned_no_text.pdf",
        buffer.getvalue(),
        Expectation("failed", "a page with no text layer", "no extractable text"),
    )

    # --- hostile: text files ---------------------------------------------------------------------
    put("text/zero_bytes.txt", b"", Expectation("failed", "0-byte .txt", "empty document"))
    put(
        "text/whitespace_only.md",
        b" \n\t\r\n   \n" + "\u3000".encode(),
        Expectation("failed", "only spaces, tabs, newlines, an ideographic space", "empty document"),
    )
    put(
        "text/random_bytes.txt",
        rng.randbytes(256 * 1024),
        Expectation("failed", "random bytes as .txt", "binary"),
    )
    put(
        "text/png_named.md",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(32 * 1024),
        Expectation("failed", "PNG image named .md", "binary"),
    )
    put(
        "text/elf_named.txt",
        b"\x7fELF\x02\x01\x01" + bytes(4096) + rng.randbytes(16 * 1024),
        Expectation("failed", "ELF executable named .txt", "binary"),
    )
    put("text/pdf_named.txt", full, Expectation("failed", "a PDF named .txt", "binary"))
    put(
        "text/random_bytes.html",
        rng.randbytes(64 * 1024),
        Expectation("failed", "random bytes as .html", "binary"),
    )
    put(
        "text/script_only.html",
        b"<html><head><script>var a = 1;</script><style>p{}</style></head><body></body></html>",
        Expectation("failed", "HTML with no visible text", "empty document"),
    )
    big = folder / "text/big_60mb.txt"
    line = ("The quick brown fox jumps over the lazy dog. " * 2)[:89] + "\n"
    with big.open("w", encoding="ascii") as handle:
        block = line * (MB // len(line) + 1)
        for _ in range(60):
            handle.write(block[:MB])
    expect["text/big_60mb.txt"] = Expectation(
        "failed", "60 MB text file", "file too large: 60.0 MB > limit 50 MB (KBQA_MAX_FILE_MB)"
    )
    put(
        "text/one_line_10mb.txt",
        ("x" * 10 * MB).encode(),
        Expectation("failed", "a single 10 MB line", "too much text"),
    )

    # --- hostile: DOCX ---------------------------------------------------------------------------
    handbook = folder / "good/handbook.docx"
    put(
        "docx/random_bytes.docx",
        rng.randbytes(32 * 1024),
        Expectation("failed", "random bytes as .docx", "DOCX"),
    )
    put(
        "docx/truncated.docx",
        handbook.read_bytes()[: handbook.stat().st_size // 2],
        Expectation("failed", "DOCX cut in half", "not a readable DOCX"),
    )
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "just a zip")
    put(
        "docx/plain_zip.docx",
        zip_buffer.getvalue(),
        Expectation("failed", "a ZIP that is not a Word document", "not a readable DOCX"),
    )
    put(
        "docx/ole_encrypted.docx",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(8 * 1024),
        Expectation("failed", "OLE container (password-protected or old .doc)", "password-protected"),
    )
    _docx_with_document_xml(folder / "docx/zip_bomb.docx", handbook, _padded_document_xml(120))
    expect["docx/zip_bomb.docx"] = Expectation(
        "failed", "document.xml inflating to 120 MB (zip bomb)", "unpacks to"
    )
    _docx_with_document_xml(folder / "docx/billion_laughs.docx", handbook, _billion_laughs_xml())
    expect["docx/billion_laughs.docx"] = Expectation(
        "failed", "XML entity expansion (billion laughs)", "DOCX"
    )

    # --- hostile: the file system ----------------------------------------------------------------
    links = folder / "links"
    links.mkdir()
    (links / "self_loop.md").symlink_to("self_loop.md")
    expect["links/self_loop.md"] = Expectation("skipped", "symlink pointing at itself", "symlink loop")
    (links / "ping.md").symlink_to("pong.md")
    (links / "pong.md").symlink_to("ping.md")
    for name in ("ping.md", "pong.md"):
        expect[f"links/{name}"] = Expectation(
            "skipped", "two symlinks pointing at each other", "symlink loop"
        )
    (links / "dangling.md").symlink_to("missing-target.md")
    expect["links/dangling.md"] = Expectation("skipped", "symlink to a missing file", "broken symbolic link")
    (links / "zero_device.txt").symlink_to("/dev/zero")
    expect["links/zero_device.txt"] = Expectation("skipped", "symlink to /dev/zero", "character device")
    os.mkfifo(links / "named_pipe.txt")
    expect["links/named_pipe.txt"] = Expectation(
        "skipped", "FIFO named .txt (a read would block)", "named pipe"
    )
    (links / "folder_loop").symlink_to("..", target_is_directory=True)
    expect["links/folder_loop"] = Expectation("skipped", "symlink to its own parent folder", "not followed")

    bad_name = os.fsencode(folder / "names") + b"/latin1_\xe9t\xe9.md"
    with open(bad_name, "wb") as handle:
        handle.write(b"# name\n\nA file whose name is not UTF-8.\n")
    expect["names/latin1_\\xe9t\\xe9.md"] = Expectation(
        "skipped", "file name in Latin-1 bytes (not UTF-8)", "not valid UTF-8"
    )

    # Deeper than PATH_MAX (4096 bytes): the walk cannot even name it, so it reports the folder.
    too_deep = folder / "deep_path"
    too_deep.mkdir()
    fd = _deep_dirs(too_deep, ["d" * 200] * 25)
    _write_at(fd, "unreachable.md", b"# Too deep\n\nNobody can open this by its path.\n")
    os.close(fd)
    expect["deep_path/"] = Expectation(
        "skipped", "25 folders of 200-character names (path > 4096 bytes)", "path too long", prefix=True
    )

    perms = folder / "perms"
    perms.mkdir()
    unreadable = put(
        "perms/unreadable.md",
        b"# Secret\n\nmode 000\n",
        Expectation("failed", "file with mode 000", "permission denied", needs_unprivileged=True),
    )
    unreadable.chmod(0)
    locked = perms / "locked_folder"
    locked.mkdir()
    (locked / "inside.md").write_text("# Inside\n\nbehind a mode-000 folder\n", encoding="utf-8")
    locked.chmod(0)
    expect["perms/locked_folder"] = Expectation(
        "skipped", "folder with mode 000", "permission denied", needs_unprivileged=True
    )
    unsearchable = perms / "no_search_folder"
    unsearchable.mkdir()
    (unsearchable / "inside.md").write_text("# Inside\n\nlisted but not reachable\n", encoding="utf-8")
    unsearchable.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    expect["perms/no_search_folder/inside.md"] = Expectation(
        "skipped",
        "file in a folder that can be listed but not entered (mode 444)",
        "permission denied",
        needs_unprivileged=True,
    )
    return expect


def restore_permissions(folder: Path) -> None:
    """Give back the modes the corpus took away, so any user can delete it."""
    for path in (
        folder / "perms/unreadable.md",
        folder / "perms/locked_folder",
        folder / "perms/no_search_folder",
    ):
        if path.exists() or path.is_symlink():
            path.chmod(0o755)


def hostile_count(expectations: Expectations) -> int:
    return sum(1 for expectation in expectations.values() if expectation.outcome != "ingested")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    result = write_hostile_corpus(target)
    for key, value in result.items():
        print(f"{value.outcome:8} {key!r}: {value.what} -> {value.reason}")
    print(f"{hostile_count(result)} hostile, {len(result) - hostile_count(result)} good")
