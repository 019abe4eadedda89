"""The real chain's answers over several question files, translations read from a cache.

``rag eval`` asks the LLM for each question's translation, so two runs may search different text;
this runs the same evaluation (``rag.evaluation.evaluate``: hit@k, accuracy, refusal) with every
translation read from ``bench/eval/translations-<set>.json`` (as ``bench.retrieval_sets`` does; one
missing there is asked of the LLM once and added), so an answer-side change is compared on exactly
the same passages. At temperature 0 the packaged vLLM gave every answer the same on a second run, so
two dumps differ by the change alone. Prints answerable correct / refused and unanswerable refused
per question language and type; ``--out`` keeps every answer, ``--compare`` lists the questions
whose outcome differs from an earlier dump.
Usage, after ingesting ``bench/eval/corpus`` into ``--kb`` and with the LLM served::

    KBQA_LLM_BASE_URL=http://127.0.0.1:8100/v1 .venv/bin/python -m bench.answer_sets dev heldout \\
        [--language en] [--out run.json] [--compare earlier.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.retrieval_sets import EVAL, TYPES, translations
from rag.answer_check import final_answer
from rag.chain import build_rag_chain
from rag.config import load_settings
from rag.evaluation import evaluate, load_questions
from rag.language import detect_language
from rag.llm import REWRITE_SAMPLING, chat_model
from rag.service import KnowledgeBaseService


def outcome(result: dict[str, Any]) -> str:
    if not result["answerable"]:
        return "refused" if result["refused"] else "answered"
    return "refused" if result["refused"] else "correct" if result["correct"] else "wrong"


def summary(label: str, results: list[dict[str, Any]]) -> str:
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    correct = sum(bool(r["correct"]) for r in answerable)
    refused = sum(bool(r["refused"]) for r in answerable)
    declined = sum(bool(r["refused"]) for r in unanswerable)
    return (
        f"{label:<24} answerable {len(answerable):4d}: correct {correct:4d}  refused {refused:4d}"
        f"   unanswerable {len(unanswerable):3d}: refused {declined:3d}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sets", nargs="+", help="question files under bench/eval, without .jsonl")
    parser.add_argument("--kb", default="evalset")
    parser.add_argument("--language", choices=["zh", "en"], help="only questions in this language")
    parser.add_argument(
        "--evidence-has", metavar="TEXT", help='only questions with TEXT in an evidence span ("|": tables)'
    )
    parser.add_argument("--out", type=Path, help="write every question's answer and outcome here (JSON)")
    parser.add_argument("--compare", type=Path, help="an earlier --out: list the outcomes that changed")
    args = parser.parse_args(argv)
    settings = load_settings()
    service = KnowledgeBaseService(settings)
    llm = chat_model(settings)
    # A translation missing from the cache is asked of the LLM once, as answering would, and kept.
    fill = service.translator(chat_model(settings, **REWRITE_SAMPLING))
    sets: dict[str, tuple[list[Any], Any]] = {}  # every file read and translation at hand first
    for name in args.sets:
        questions = load_questions(EVAL / f"{name}.jsonl")
        if args.language:
            questions = [q for q in questions if detect_language(q.question) == args.language]
        if args.evidence_has:
            questions = [q for q in questions if any(args.evidence_has in span for span in q.evidence)]
        sets[name] = (questions, translations(name, questions, fill).get)
    results: list[dict[str, Any]] = []
    for name, (questions, cached) in sets.items():
        chain = build_rag_chain(service.retriever(args.kb, translate=cached), llm, settings)

        def retrieve(question: str, k: int, gated: bool, cached: Any = cached) -> list[dict[str, Any]]:
            hits = service.retriever(args.kb, k=k, gated=gated, translate=cached).invoke(question)
            return [{"text": hit.page_content} for hit in hits]

        def answer(question: str, chain: Any = chain) -> dict[str, Any]:
            reply = chain.invoke({"question": question})
            withdrawn = reply.get("withdrawn")
            text = final_answer(reply.get("answer", ""), withdrawn)
            return {"answer": text, "sources": reply.get("sources", []), "withdrawn": withdrawn}

        report = evaluate(questions, retrieve, answer, prompts_dir=settings.prompts_dir)
        for result in report["results"]:
            result.update(set=name, language=detect_language(result["question"]))
        results += report["results"]
        print(summary(name, report["results"]), flush=True)
    print(summary("all", results))
    groups = {f"{lang} questions": [r for r in results if r["language"] == lang] for lang in ("zh", "en")}
    groups |= {kind: [r for r in results if r["type"] == kind] for kind in (*TYPES, "unanswerable")}
    for label, group in groups.items():
        if group:
            print(summary(f"  {label}", group))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if args.compare:
        earlier = {(r["set"], r["id"]): r for r in json.loads(args.compare.read_text("utf-8"))}
        changed = [
            (earlier[(r["set"], r["id"])], r)
            for r in results
            if (r["set"], r["id"]) in earlier and outcome(earlier[(r["set"], r["id"])]) != outcome(r)
        ]
        print(f"\n{len(changed)} outcomes changed against {args.compare}:")
        for before, now in changed:
            print(f"  {now['set']} {now['id']}: {outcome(before)} -> {outcome(now)}   {now['answer'][:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
