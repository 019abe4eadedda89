"""How well follow-up questions are answered: the rewrite into a standalone query, its retrieval, the answer.

Reads ``bench/eval/followups.jsonl`` (format in ``bench/eval/followups.md``: a short history, a follow-up
that cannot be understood without it, the standalone question it means, evidence and answer keywords).
For every conversation the real chain runs as a chat turn runs it (``rag.chat``: the answer model,
and a condense model at temperature 0 with 96 tokens), which gives the rewritten query and the
answer. Retrieval (ungated top 10, no translation, so that only the query differs) is then measured
for the follow-up as typed, the rewritten query, the previous user message and the follow-up joined,
the rewrite's search fused with the joined text's (``fused``: what answering does with
``KBQA_FOLLOWUP_CONTEXT`` on), and the gold standalone question (the ceiling). Usage, after ingesting
``bench/eval/corpus`` into ``--kb`` and with the LLM served::

    KBQA_LLM_BASE_URL=http://127.0.0.1:8100/v1 .venv/bin/python -m bench.followups [--out run.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rag.answer_check import final_answer
from rag.config import PROJECT_ROOT, load_settings
from rag.evaluation import answer_is_correct, evidence_rank, is_refusal, rank_metrics
from rag.llm import REWRITE_SAMPLING, chat_model
from rag.prompts import read_prompt
from rag.service import KnowledgeBaseService

QUESTIONS = PROJECT_ROOT / "bench" / "eval" / "followups.jsonl"
QUERIES = ("typed", "rewritten", "joined", "fused", "standalone")


def joined(conversation: dict[str, Any]) -> str:
    """The last earlier user message, then the follow-up: what a rewrite-free system could search."""
    earlier = [text for role, text in conversation["history"] if role == "user"]
    return f"{earlier[-1]} {conversation['question']}" if earlier else conversation["question"]


def row(label: str, results: list[dict[str, Any]]) -> str:
    cells = []
    for query in QUERIES:
        metrics = rank_metrics([result["ranks"][query] for result in results])
        cells.append(f"{metrics['hit@3']:.3f}/{metrics['mrr@10']:.3f}")
    correct = sum(result["correct"] for result in results)
    refused = sum(result["refused"] for result in results)
    return (
        f"{label:<22} {len(results):3d}  "
        + "  ".join(f"{c:>11}" for c in cells)
        + f"  {correct:4d} {refused:4d}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--kb", default="evalset")
    parser.add_argument("--out", type=Path, help="write every conversation's query, ranks and answer here")
    args = parser.parse_args(argv)
    settings = load_settings()
    service = KnowledgeBaseService(settings)
    answer_llm = chat_model(settings)
    condense_llm = chat_model(settings, **REWRITE_SAMPLING)
    chain = service.chain(args.kb, answer_llm, condense_llm=condense_llm)
    search = service.retriever(args.kb, k=10, gated=False)
    conversations = [
        json.loads(line) for line in args.questions.read_text("utf-8").splitlines() if line.strip()
    ]
    results: list[dict[str, Any]] = []
    for conversation in conversations:
        history = [tuple(turn) for turn in conversation["history"]]
        reply = chain.invoke({"question": conversation["question"], "history": history})
        answer = final_answer(reply.get("answer", ""), reply.get("withdrawn"))
        language = conversation["language"]
        refusal = read_prompt(settings.prompts_dir, language, "refusal")
        queries = {
            "typed": conversation["question"],
            "rewritten": reply.get("query", conversation["question"]),
            "joined": joined(conversation),
            "standalone": conversation["standalone"],
        }
        evidence = (
            [conversation["evidence"]]
            if isinstance(conversation["evidence"], str)
            else conversation["evidence"]
        )
        searches = {name: (search, query) for name, query in queries.items()}
        searches["fused"] = (search.model_copy(update={"context": queries["joined"]}), queries["rewritten"])
        ranks = {
            name: evidence_rank(evidence, [document.page_content for document in retriever.invoke(query)])
            for name, (retriever, query) in searches.items()
        }
        refused = is_refusal(answer, reply.get("sources", []), [refusal])
        results.append(
            {
                "id": conversation["id"],
                "kind": conversation["kind"],
                "language": language,
                "queries": queries,
                "ranks": ranks,
                "answer": answer,
                "refused": refused,
                "correct": not refused and answer_is_correct(answer, conversation["answer_keywords"]),
            }
        )
        print(f"{conversation['id']:<10} {ranks} {queries['rewritten']!r}", file=sys.stderr, flush=True)
    print(
        f"{'hit@3/MRR@10 by query':<22} {'n':>3}  "
        + "  ".join(f"{q:>11}" for q in QUERIES)
        + "  right refused"
    )
    print(row("all", results))
    for label, key in (("kind", "kind"), ("language", "language")):
        for value in sorted({result[key] for result in results}):
            print(row(f"  {label} {value}", [result for result in results if result[key] == value]))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
