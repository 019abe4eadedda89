"""Retrieval quality of the real retriever on several question files, translations read from a cache.

``rag eval`` asks the LLM for each question's translation, so two runs can differ by a translation;
this reads them from ``bench/eval/translations-<set>.json`` (question -> translation, written by
``--fill`` with the LLM the first time), so a retrieval change is compared on exactly the same
queries. Ungated top 10, as ``rag eval``'s hit@k and MRR@10. Usage, after ingesting
``bench/eval/corpus`` into ``--kb``::

    .venv/bin/python -m bench.retrieval_sets dev heldout heldout2 [--kb evalset] [--fill URL]

A set in a folder of its own corpus is named with it (``regulations/dev``); its translations are
kept beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rag.config import PROJECT_ROOT, load_settings
from rag.evaluation import EvalQuestion, evidence_rank, load_questions, rank_metrics
from rag.service import KnowledgeBaseService

EVAL = PROJECT_ROOT / "bench" / "eval"
TYPES = ("fact", "paraphrase", "multi", "crosslingual")


def translations(name: str, questions: list[EvalQuestion], fill: Callable[[str], str | None] | None) -> dict:
    path = (EVAL / name).with_name(f"translations-{Path(name).name}.json")  # beside the set
    cached: dict[str, str | None] = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    missing = [q.question for q in questions if q.question not in cached]
    if missing and fill is None:
        raise SystemExit(f"{path} lacks {len(missing)} translations: run with --fill LLM_URL")
    if missing:
        cached.update({question: fill(question) for question in missing})  # type: ignore[misc]
        path.write_text(json.dumps(cached, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return cached


def row(label: str, ranks: list[int | None]) -> str:
    if not ranks:
        return f"{label:<22} -"
    cells = " ".join(f"{value:6.3f}" for value in rank_metrics(ranks).values())
    return f"{label:<22} {len(ranks):4d} {cells}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "sets", nargs="+", help="question files under bench/eval, without .jsonl (regulations/dev)"
    )
    parser.add_argument("--kb", default="evalset")
    parser.add_argument("--fill", metavar="LLM_URL", help="ask this LLM server for missing translations")
    parser.add_argument(
        "--ranks", type=Path, metavar="JSON", help="write each question's evidence rank by id (to diff runs)"
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    service = KnowledgeBaseService(settings)
    fill = None
    if args.fill:
        from rag.llm import REWRITE_SAMPLING, chat_model

        llm = settings.model_copy(update={"llm_base_url": args.fill})
        fill = service.translator(chat_model(llm, **REWRITE_SAMPLING))
    print(f"{'set':<22} {'n':>4} {'hit@1':>6} {'hit@3':>6} {'hit@5':>6} {'hit@10':>6} {'mrr@10':>6}")
    pooled: list[tuple[str, int | None]] = []
    by_id: dict[str, int | None] = {}
    for name in args.sets:
        questions = [q for q in load_questions(EVAL / f"{name}.jsonl") if q.answerable]
        cached = translations(name, questions, fill)
        retriever = service.retriever(args.kb, k=10, gated=False, translate=cached.get)
        ranks = [
            (q.type, evidence_rank(q.evidence, [d.page_content for d in retriever.invoke(q.question)]))
            for q in questions
        ]
        pooled += ranks
        by_id.update((q.id, rank) for q, (_, rank) in zip(questions, ranks, strict=True))
        print(row(name, [rank for _, rank in ranks]), flush=True)
    if len(args.sets) > 1:
        print(row("all", [rank for _, rank in pooled]))
        for kind in TYPES:
            print(row(f"  {kind}", [rank for t, rank in pooled if t == kind]))
    if args.ranks:
        args.ranks.write_text(json.dumps(by_id, indent=0), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
