"""Retrieval quality of chunking and retrieval variants on the evaluation set (no LLM needed).

For each variant the corpus is ingested into a fresh data directory (same embedder, loaded once) and
``rag eval --no-llm``'s metrics are computed; one table row per variant is printed, best settings
chosen from the dev questions only. Usage::

    .venv/bin/python -m bench.retrieval_variants [--questions bench/eval/dev.jsonl] \\
        [--embedding packaged:multilingual-e5-small] [--variants all|chunking|retrieval|translation] \\
        [--llm-url http://127.0.0.1:8100/v1] [--translations bench/eval/translations-dev.json] \\
        [--set retrieval_mode=vector ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.chain import make_translator
from rag.config import PROJECT_ROOT, load_settings
from rag.embeddings import load_embeddings
from rag.evaluation import evaluate, load_questions
from rag.language import detect_language
from rag.llm import REWRITE_SAMPLING, chat_model
from rag.service import KnowledgeBaseService

CORPUS = PROJECT_ROOT / "bench" / "eval" / "corpus"
CHUNKING: list[dict[str, Any]] = [
    {"chunk_size": 300, "chunk_overlap": 50, "chunk_headings": False},
    {"chunk_size": 300, "chunk_overlap": 50, "chunk_headings": True},
    {"chunk_size": 500, "chunk_overlap": 80, "chunk_headings": False},
    {"chunk_size": 500, "chunk_overlap": 80, "chunk_headings": True},
    {"chunk_size": 800, "chunk_overlap": 120, "chunk_headings": False},
    {"chunk_size": 800, "chunk_overlap": 120, "chunk_headings": True},
]
# These need translations: an LLM (--llm-url; the packaged model or whatever serves there) or a
# --translations cache that holds every question.
TRANSLATION: list[dict[str, Any]] = [
    {"query_translation": "off"},
    {"query_translation": "en-to-zh", "translation_weight": 1.0, "language_coverage_rank": 0},
    {"query_translation": "en-to-zh", "translation_weight": 0.5, "language_coverage_rank": 0},
    {"query_translation": "both", "translation_weight_to_english": 1.0, "language_coverage_rank": 0},
    {"query_translation": "both", "translation_weight_to_english": 0.5, "language_coverage_rank": 0},
    {"query_translation": "both", "translation_weight_to_english": 0.0, "language_coverage_rank": 0},
    {"query_translation": "both", "translation_weight_to_english": 0.0, "language_coverage_rank": 2},
    {"query_translation": "both", "translation_weight_to_english": 0.0, "language_coverage_rank": 3},
    {"query_translation": "both", "translation_weight_to_english": 1.0, "language_coverage_rank": 3},
]
RETRIEVAL: list[dict[str, Any]] = [
    {"retrieval_mode": "vector"},
    {"retrieval_mode": "hybrid"},
    {"retrieval_mode": "hybrid", "keyword_weight": 0.5},
    {"retrieval_mode": "hybrid", "keyword_weight": 2.0},
    {"retrieval_mode": "hybrid", "rrf_k": 10},
]


def shared_translator(llm_url: str | None, cache_file: Path | None) -> Callable[[str], str | None]:
    """One translator (both directions) for every variant: at temperature 0 a question's translation
    does not change, so each is asked of the LLM once and every variant sees the same text.

    ``cache_file`` (JSON, question -> translation) keeps them across runs, so a later run needs no LLM.
    """
    cached: dict[str, str | None] = {}
    if cache_file is not None and cache_file.exists():
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
    ask = None
    if llm_url:
        settings = load_settings(llm_base_url=llm_url)
        ask = make_translator(chat_model(settings, **REWRITE_SAMPLING), settings.prompts_dir)

    def translate(question: str) -> str | None:
        if question not in cached:
            if ask is None:
                raise SystemExit(f"no cached translation of {question!r} and no --llm-url")
            cached[question] = ask(question)
            if cache_file is not None:
                cache_file.write_text(json.dumps(cached, ensure_ascii=False, indent=1), encoding="utf-8")
        return cached[question]

    return translate


def run(
    variant: dict[str, Any],
    questions: list[Any],
    embedding: str,
    embedder: Any,
    translate_any: Callable[[str], str | None] | None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            data_dir=Path(data), embedding_model=embedding, embedding_fallback="none", reranker_model="none",
            **variant,
        )  # fmt: skip
        service = KnowledgeBaseService(settings, embeddings=embedder)
        started = time.monotonic()
        summary = service.ingestor.ingest_folder(CORPUS, "variants", progress=False)
        ingest_s = time.monotonic() - started

        translate = None
        if translate_any is not None and settings.query_translation != "off":
            only_english = settings.query_translation == "en-to-zh"

            def translate(question: str) -> str | None:
                if only_english and detect_language(question) != "en":
                    return None
                return translate_any(question)

        def retrieve(question: str, k: int, gated: bool) -> list[dict[str, Any]]:
            documents = service.retriever("variants", k=k, gated=gated, translate=translate).invoke(question)
            return [{"text": document.page_content} for document in documents]

        report = evaluate(questions, retrieve, None, prompts_dir=settings.prompts_dir)
    return {"chunks": summary.chunks_written, "ingest_s": ingest_s, **report["metrics"]["overall"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=PROJECT_ROOT / "bench" / "eval" / "dev.jsonl")
    parser.add_argument("--embedding", default="packaged:multilingual-e5-small")
    parser.add_argument("--variants", choices=["all", "chunking", "retrieval", "translation"], default="all")
    parser.add_argument("--llm-url", help="OpenAI-compatible server for the translation variants")
    parser.add_argument(
        "--translations", type=Path, help="JSON cache of the questions' translations (read, then extended)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="base setting")
    args = parser.parse_args()
    questions = load_questions(args.questions)
    embedder = load_embeddings(load_settings(embedding_model=args.embedding, embedding_fallback="none"))
    variants = {
        "chunking": CHUNKING,
        "retrieval": RETRIEVAL,
        "translation": TRANSLATION,
        "all": CHUNKING + RETRIEVAL + (TRANSLATION if args.llm_url or args.translations else []),
    }[args.variants]
    if args.variants == "translation" and not (args.llm_url or args.translations):
        parser.error("the translation variants need --llm-url (or a --translations cache)")
    base = dict(item.split("=", 1) for item in args.set)
    print(f"{args.questions.name}, {len(questions)} questions, {embedder.name}")
    print(f"{'variant':<92} {'chunks':>6} {'hit@1':>6} {'hit@3':>6} {'hit@5':>6} {'hit@10':>6} {'mrr@10':>6}")
    translate_any = None
    if args.llm_url or args.translations:
        translate_any = shared_translator(args.llm_url, args.translations)
    for variant in variants:
        row = run({**base, **variant}, questions, args.embedding, embedder, translate_any)
        label = " ".join(f"{key}={value}" for key, value in variant.items())
        print(
            f"{label:<92} {row['chunks']:>6} {row['hit@1']:>6.3f} {row['hit@3']:>6.3f} {row['hit@5']:>6.3f} "
            f"{row['hit@10']:>6.3f} {row['mrr@10']:>6.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
