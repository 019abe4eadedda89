"""``rag eval``: retrieval and answer quality of a knowledge base on a question file.

Question file (JSONL), one object per line: ``id``, ``question``, ``type`` (any label; metrics are
reported per type and overall), ``evidence`` (a verbatim span the right chunk contains, a list of
spans that must all be retrieved, or null when the knowledge base does not hold the answer) and
``answer_keywords`` (groups of acceptable strings; a correct answer contains one string of every
group).

Metrics: a retrieval *hit* at rank r means the top r chunks contain every evidence span (whitespace,
Chinese script and letter width ignored); hit@1/3/5/10 and MRR@10 over answerable questions.
With an LLM: answer accuracy over answerable questions, the refusal rate over unanswerable ones (the
answer cites nothing or says the knowledge base lacks it) and the false-refusal rate over answerable
ones. Without (``--no-llm``) a refusal is the relevance gate returning nothing, which is exactly when
the chain refuses unasked.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.chinese_text import fold
from rag.prompts import read_prompt

HIT_RANKS = (1, 3, 5, 10)
_SPACE = re.compile(r"\s+")
# What the packaged prompts tell the model to say when the passages lack the answer.
_REFUSAL_MARKERS = ("知识库中没有", "does not contain", "not contain this information", "无法根据")


class QuestionFileError(ValueError):
    """The question file is malformed; the message names the line."""


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    type: str
    evidence: tuple[str, ...]  # empty = unanswerable
    answer_keywords: tuple[tuple[str, ...], ...]

    @property
    def answerable(self) -> bool:
        return bool(self.evidence)


@dataclass
class QuestionResult:
    question: EvalQuestion
    rank: int | None  # 1-based rank at which all evidence is retrieved; None = not in the top 10
    retrieval_refused: bool
    answer: str | None = None
    sources: list[str] = field(default_factory=list)
    correct: bool | None = None
    refused: bool | None = None
    # the model's answer replaced by the refusal (rag.answer_check): {"reason", "original"}
    withdrawn: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.question.id,
            "type": self.question.type,
            "question": self.question.question,
            "answerable": self.question.answerable,
            "rank": self.rank,
            "retrieval_refused": self.retrieval_refused,
            "answer": self.answer,
            "sources": self.sources,
            "correct": self.correct,
            "refused": self.refused,
            "withdrawn": self.withdrawn,
        }


def _squash(text: str) -> str:
    """Whitespace dropped and the text folded (``rag.chinese_text``): spans, keywords and answers
    compare alike whichever script and width the question file and the documents are written in."""
    return _SPACE.sub("", fold(text))


def load_questions(path: Path) -> list[EvalQuestion]:
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise TypeError(f"a JSON object is expected, not {type(item).__name__}")
            evidence = item.get("evidence")
            spans = () if evidence is None else (evidence,) if isinstance(evidence, str) else tuple(evidence)
            groups = tuple(tuple(str(word) for word in group) for group in item.get("answer_keywords") or [])
            question = EvalQuestion(
                id=str(item["id"]),
                question=str(item["question"]),
                type=str(item.get("type") or "all"),
                evidence=tuple(str(span) for span in spans),
                answer_keywords=groups,
            )
        except (ValueError, KeyError, TypeError) as error:
            raise QuestionFileError(f"{path}:{number}: not a valid question ({error})") from error
        if question.id in seen:
            raise QuestionFileError(f"{path}:{number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise QuestionFileError(f"{path} holds no questions")
    return questions


def evidence_rank(evidence: Iterable[str], texts: list[str]) -> int | None:
    """The smallest r such that the first r texts together contain every span, else None."""
    wanted = {_squash(span) for span in evidence}
    squashed = [_squash(text) for text in texts]
    for rank in range(1, len(texts) + 1):
        if all(any(span in text for text in squashed[:rank]) for span in wanted):
            return rank
    return None


def _keyword_pattern(word: str) -> re.Pattern[str]:
    """``word`` in any letter case and spacing; a number only whole: "4" is not in "14" or "4.5"."""
    body = r"\s*".join(re.escape(char) for char in _squash(word))
    if body[:1].isdigit():
        body = r"(?<!\d)(?<!\d[.,])" + body
    if body[-1:].isdigit():
        body += r"(?![.,]?\d)"
    return re.compile(body, re.IGNORECASE)


def answer_is_correct(answer: str, groups: Iterable[Iterable[str]]) -> bool:
    answer = fold(answer)
    return all(any(_keyword_pattern(word).search(answer) for word in group) for group in groups)


def is_refusal(answer: str, sources: list[Any], refusal_texts: Iterable[str] = ()) -> bool:
    if not sources:
        return True
    answer = fold(answer)
    return any(marker in answer for marker in (*_REFUSAL_MARKERS, *refusal_texts))


Retrieve = Callable[[str, int, bool], list[dict[str, Any]]]  # (question, k, gated) -> hits with "text"
Answer = Callable[[str], dict[str, Any]]  # question -> {"answer", "sources", "withdrawn"?}


def evaluate(
    questions: list[EvalQuestion],
    retrieve: Retrieve,
    answer: Answer | None,
    *,
    prompts_dir: Path,
    progress: bool = False,
) -> dict[str, Any]:
    """``progress``: a bar on stderr, since a run with a CPU-served LLM takes a quarter of an hour."""
    started = time.monotonic()
    refusals = [read_prompt(prompts_dir, language, "refusal") for language in ("zh", "en")]
    results: list[QuestionResult] = []
    for question in tqdm(questions, desc="eval", unit="question", disable=not progress):
        texts = [hit["text"] for hit in retrieve(question.question, max(HIT_RANKS), False)]
        result = QuestionResult(
            question=question,
            rank=evidence_rank(question.evidence, texts) if question.answerable else None,
            retrieval_refused=not retrieve(question.question, 1, True),
        )
        if answer is not None:
            reply = answer(question.question)
            result.answer = reply["answer"]
            result.sources = [source["source"] for source in reply["sources"]]
            if reply.get("withdrawn"):
                result.withdrawn = {key: reply["withdrawn"][key] for key in ("reason", "original")}
            result.refused = is_refusal(reply["answer"], reply["sources"], refusals)
            if question.answerable:
                result.correct = not result.refused and answer_is_correct(
                    reply["answer"], question.answer_keywords
                )
        results.append(result)
    types = sorted({result.question.type for result in results})
    groups = {"overall": results} | {kind: [r for r in results if r.question.type == kind] for kind in types}
    return {
        "questions": len(results),
        "with_llm": answer is not None,
        "seconds": round(time.monotonic() - started, 1),
        "metrics": {name: _metrics(group, with_llm=answer is not None) for name, group in groups.items()},
        "results": [result.as_dict() for result in results],
    }


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def rank_metrics(ranks: list[int | None]) -> dict[str, float | None]:
    """hit@k for ``HIT_RANKS`` and MRR@10 of evidence ranks (None = not in the top 10), unrounded;
    None each when there are no ranks."""
    n = len(ranks)
    metrics = {
        f"hit@{cutoff}": sum(rank is not None and rank <= cutoff for rank in ranks) / n if n else None
        for cutoff in HIT_RANKS
    }
    metrics["mrr@10"] = sum(1 / rank for rank in ranks if rank) / n if n else None
    return metrics


def _metrics(results: list[QuestionResult], *, with_llm: bool) -> dict[str, Any]:
    answerable = [r for r in results if r.question.answerable]
    unanswerable = [r for r in results if not r.question.answerable]
    metrics: dict[str, Any] = {"n": len(results), "answerable": len(answerable)}
    ranking = rank_metrics([r.rank for r in answerable])
    metrics.update({name: None if value is None else round(value, 4) for name, value in ranking.items()})
    if with_llm:
        metrics["answer_accuracy"] = _rate([bool(r.correct) for r in answerable])
        metrics["refusal_rate"] = _rate([bool(r.refused) for r in unanswerable])
        metrics["false_refusal_rate"] = _rate([bool(r.refused) for r in answerable])
    else:
        metrics["refusal_rate"] = _rate([r.retrieval_refused for r in unanswerable])
        metrics["false_refusal_rate"] = _rate([r.retrieval_refused for r in answerable])
    return metrics


def format_report(report: dict[str, Any]) -> str:
    columns = ["n", "hit@1", "hit@3", "hit@5", "hit@10", "mrr@10"]
    columns += (
        ["answer_accuracy", "refusal_rate", "false_refusal_rate"]
        if report["with_llm"]
        else [
            "refusal_rate",
            "false_refusal_rate",
        ]
    )
    names = list(report["metrics"])
    width = max(len(name) for name in names) + 2
    header = "type".ljust(width) + "".join(column.rjust(max(len(column), 6) + 2) for column in columns)
    lines = [header, "-" * len(header)]
    for name in names:
        row = report["metrics"][name]
        cells = []
        for column in columns:
            value = row.get(column)
            text = "-" if value is None else (str(value) if isinstance(value, int) else f"{value:.3f}")
            cells.append(text.rjust(max(len(column), 6) + 2))
        lines.append(name.ljust(width) + "".join(cells))
    mode = "retrieval + answers" if report["with_llm"] else "retrieval only"
    lines.append(f"{report['questions']} questions, {mode}, {report['seconds']} s")
    return "\n".join(lines)
