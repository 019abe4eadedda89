"""Check the kbqa evaluation question files against the evaluation corpus.

Usage::

    python3 bench/eval/check_questions.py bench/eval/dev.jsonl bench/eval/heldout.jsonl

The corpus is read as plain text (HTML with tags, scripts and styles stripped). For every
question the script checks the fields, that each evidence span occurs, after collapsing
whitespace, inside one paragraph of exactly one document, that this document is the question's
``source``, and that every answer-keyword group has an alternative present in the source text.
It prints counts per type, language and file, and exits with status 1 on any problem.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

TYPES = ("fact", "paraphrase", "multi", "crosslingual", "unanswerable")
LANGUAGES = ("zh", "en")
FIELDS = ("id", "question", "type", "language", "evidence", "answer_keywords", "source")
SUFFIXES = (".md", ".txt", ".html")
HEADING_TAGS = frozenset(f"h{level}" for level in range(1, 7))
SECTION_TAGS = frozenset({"section", "article", "nav", "header", "footer", "blockquote", "pre"})
BLOCK_TAGS = HEADING_TAGS | SECTION_TAGS | {"p", "li", "ul", "ol", "table", "tr", "div", "br"}
EVIDENCE_MIN, EVIDENCE_MAX = 8, 60
DEFAULT_CORPUS = Path(__file__).resolve().parent / "corpus"
CJK = re.compile(r"[\u4e00-\u9fff]")


def is_chinese(text: str) -> bool:
    """True when at least a fifth of the non-space characters are CJK ideographs."""
    letters = "".join(text.split())
    return bool(letters) and len(CJK.findall(letters)) >= len(letters) / 5


def collapse(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


class _TextExtractor(HTMLParser):
    """Collect the body text of an HTML page, one block element per paragraph."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "head":
            self._in_head = True
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "head":
            self._in_head = False
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip and not self._in_head:
            self.parts.append(data)


def read_document(path: Path) -> str:
    """Return the text of a corpus file; HTML is reduced to its visible body text."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".html":
        return raw
    extractor = _TextExtractor()
    extractor.feed(raw)
    extractor.close()
    return "".join(extractor.parts)


def paragraphs(text: str) -> list[str]:
    """Split text on blank lines and collapse whitespace inside each paragraph."""
    blocks = re.split(r"\n[ \t]*\n", text)
    return [collapse(block) for block in blocks if block.strip()]


def load_corpus(root: Path) -> dict[str, list[str]]:
    """Map each corpus path (relative, with forward slashes) to its paragraphs."""
    corpus: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in SUFFIXES:
            corpus[path.relative_to(root).as_posix()] = paragraphs(read_document(path))
    return corpus


def documents_containing(span: str, corpus: dict[str, list[str]]) -> list[str]:
    """Names of the documents that contain the span (whitespace collapsed) anywhere."""
    needle = collapse(span)
    return [name for name, paras in corpus.items() if needle in " ".join(paras)]


def check_span(span: object, source: object, corpus: dict[str, list[str]]) -> list[str]:
    """Problems with one evidence span that should come from document ``source``."""
    if not isinstance(span, str) or not span.strip():
        return ["evidence span is not a non-empty string"]
    problems: list[str] = []
    if not EVIDENCE_MIN <= len(span) <= EVIDENCE_MAX:
        problems.append(f"evidence length {len(span)} outside {EVIDENCE_MIN}-{EVIDENCE_MAX}: {span!r}")
    if "#" in span:
        problems.append(f"evidence contains '#': {span!r}")
    if "\n" in span:
        problems.append(f"evidence contains a line break: {span!r}")
    found = documents_containing(span, corpus)
    if len(found) != 1:
        problems.append(f"evidence found in {len(found)} documents {found}: {span!r}")
        return problems
    if found[0] != source:
        problems.append(f"evidence is in {found[0]}, not in source {source}: {span!r}")
    needle = collapse(span)
    if not any(needle in para for para in corpus[found[0]]):
        problems.append(f"evidence crosses a paragraph break: {span!r}")
    return problems


def check_keywords(groups: object, sources: list[str], corpus: dict[str, list[str]]) -> list[str]:
    """Answer keywords must be groups of strings; each group must have an alternative in the sources."""
    if not isinstance(groups, list) or not groups:
        return ["answer_keywords must be a non-empty list of groups"]
    text = " ".join(" ".join(corpus.get(name, [])) for name in sources).casefold()
    problems: list[str] = []
    for group in groups:
        if not isinstance(group, list) or not group or not all(isinstance(k, str) and k for k in group):
            problems.append(f"bad keyword group {group!r}")
        elif not any(collapse(k).casefold() in text for k in group):
            problems.append(f"no alternative of keyword group {group!r} occurs in {sources}")
    return problems


def check_question(q: dict[str, object], corpus: dict[str, list[str]]) -> list[str]:
    """All problems found in one question record."""
    missing = [field for field in FIELDS if field not in q]
    if missing:
        return [f"missing fields {missing}"]
    extra = sorted(set(q) - set(FIELDS))
    problems = [f"unexpected fields {extra}"] if extra else []
    kind, language = q["type"], q["language"]
    if kind not in TYPES:
        return [*problems, f"invalid type {kind!r}"]
    if language not in LANGUAGES:
        problems.append(f"invalid language {language!r}")
    question = q["question"]
    if not isinstance(question, str) or not question.strip():
        problems.append("question is empty")
    elif (language == "zh") != bool(CJK.search(question)):
        problems.append(f"language {language!r} does not match the question text")
    evidence, source, keywords = q["evidence"], q["source"], q["answer_keywords"]
    if kind == "unanswerable":
        if evidence is not None:
            problems.append("unanswerable question must have evidence null")
        if source is not None:
            problems.append("unanswerable question must have source null")
        if keywords != []:
            problems.append("unanswerable question must have answer_keywords []")
        return problems
    if kind == "multi":
        lists = isinstance(evidence, list) and isinstance(source, list)
        if not (lists and len(evidence) == len(source) == 2):
            return [*problems, "multi question needs evidence and source lists of 2"]
        if evidence[0] == evidence[1]:
            problems.append("multi question repeats the same evidence span")
        pairs = list(zip(evidence, source, strict=True))
        sources = list(dict.fromkeys(str(name) for name in source))
    else:
        if isinstance(evidence, list) or isinstance(source, list):
            return [*problems, f"{kind} question needs a single evidence span and source"]
        pairs = [(evidence, source)]
        sources = [str(source)]
    for span, name in pairs:
        if name not in corpus:
            problems.append(f"source {name!r} is not a corpus document")
        else:
            problems.extend(check_span(span, name, corpus))
    if kind == "crosslingual":
        if language != "en":
            problems.append("crosslingual question must be in English")
        if not any(name in corpus and is_chinese(" ".join(corpus[name])) for name in sources):
            problems.append("crosslingual question must be answered by a Chinese document")
    problems.extend(check_keywords(keywords, sources, corpus))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check kbqa evaluation questions against the corpus.")
    parser.add_argument("files", nargs="+", type=Path, help="question files (JSON Lines)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.corpus)
    print(f"corpus: {len(corpus)} documents in {args.corpus}")
    errors = 0
    seen: dict[str, str] = {}
    totals: Counter[str] = Counter()
    for path in args.files:
        per_type: Counter[str] = Counter()
        per_language: Counter[str] = Counter()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                q = json.loads(line)
            except json.JSONDecodeError as error:
                print(f"{where}: invalid JSON: {error}")
                errors += 1
                continue
            if not isinstance(q, dict):
                print(f"{where}: not a JSON object")
                errors += 1
                continue
            qid = str(q.get("id"))
            if qid in seen:
                print(f"{where}: duplicate id {qid!r} (first in {seen[qid]})")
                errors += 1
            seen[qid] = where
            for problem in check_question(q, corpus):
                print(f"{where} [{qid}]: {problem}")
                errors += 1
            per_type[str(q.get("type"))] += 1
            per_language[str(q.get("language"))] += 1
        totals.update(per_type)
        counts = ", ".join(f"{kind}={per_type[kind]}" for kind in TYPES)
        languages = ", ".join(f"{lang}={per_language[lang]}" for lang in LANGUAGES)
        print(f"{path}: {sum(per_type.values())} questions ({counts}; {languages})")
    counts = ", ".join(f"{kind}={totals[kind]}" for kind in TYPES)
    print(f"total: {sum(totals.values())} questions ({counts})")
    if errors:
        print(f"FAILED: {errors} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
