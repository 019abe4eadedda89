"""Chinese-aware chunking on top of LangChain's recursive splitter.

The stock separators only know blank lines, newlines and spaces; Chinese has no spaces, so a chunk
boundary would land mid-sentence. Listing the Chinese sentence ends (and keeping each at the end of its
sentence) makes a chunk end where a sentence does whenever the size allows.
"""

from __future__ import annotations

import hashlib

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

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


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
        length_function=len,
    )


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_documents(documents: list[Document], splitter: RecursiveCharacterTextSplitter) -> list[Document]:
    """Split one file's documents, numbering its chunks in order across pages."""
    chunks = [chunk for chunk in splitter.split_documents(documents) if chunk.page_content.strip()]
    for index, chunk in enumerate(chunks):
        chunk.metadata["chunk"] = index
        chunk.metadata["content_hash"] = content_hash(chunk.page_content)
    return chunks
