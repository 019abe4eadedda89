"""Can the packaged LLM tell an answerable question from an unanswerable one, or rank passages?

Two measurements over the evaluation sets' questions, with the shipped retrieval (cached translations)
and the LLM server that ``--llm`` names (the packaged Qwen 0.5B under ``python -m rag llm``):

- **refusal probability**: the answer prompt exactly as the chain builds it, and the probability of
  the refusal sentence's first token as the model's first answer token. If the model "knew" when the
  passages lack the answer, unanswerable questions would put more mass there;
- **query likelihood** (the UPR idea): the mean log-probability of the question's tokens given each
  of the best passages, "ask a question about this passage" (ChatML, the packaged model's chat format),
  against the same given no passage (PMI). As an answerability signal: its AUC. As a reranker: the
  answerable questions' evidence ranks with the retriever's order, the likelihood order, and both
  fused by reciprocal rank.

AUC is the probability that an answerable question scores as more answerable than an unanswerable
one (0.5 = no signal). Numbers and conclusions: docs/BENCHMARKS.md.

    python -m bench.llm_signals dev heldout --llm http://127.0.0.1:8100/v1 [--candidates 10]
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from statistics import fmean

from langchain_core.documents import Document
from langchain_core.runnables import Runnable
from openai import OpenAI

from bench.retrieval_sets import EVAL, translations
from rag.chain import _answer_prompt
from rag.config import Settings, load_settings
from rag.evaluation import EvalQuestion, evidence_rank, load_questions, rank_metrics
from rag.language import detect_language
from rag.llm import REWRITE_SAMPLING, chat_model, list_models
from rag.prompts import format_context, quote_untrusted, read_prompt
from rag.service import KnowledgeBaseService

_ASK = {"zh": "请针对上面这段资料提出一个问题。", "en": "Ask a question about the passage above."}
_NO_PASSAGE = {"zh": "（无资料）", "en": "(no passage)"}
_RULE_3_QUOTE = re.compile(r"^3\.[^\n]*[“\"]([^”\"]+)[”\"]", re.MULTILINE)


def auc(answerable: Sequence[float], unanswerable: Sequence[float]) -> float:
    """P(an answerable question scores higher than an unanswerable one); ties count half."""
    pairs = [(a > u) + 0.5 * (a == u) for a in answerable for u in unanswerable]
    return fmean(pairs) if pairs else math.nan


def _chatml(passage: str, language: str) -> str:
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{passage}\n\n{_ASK[language]}<|im_end|>\n<|im_start|>assistant\n"
    )


def question_likelihoods(client: OpenAI, model: str, question: str, passages: list[str]) -> list[float]:
    """Mean log P(question token | passage, instruction) per passage, one batched request."""
    language = detect_language(question)
    prefixes = [_chatml(passage, language) for passage in passages]
    reply = client.completions.create(
        model=model,
        prompt=[prefix + question for prefix in prefixes],
        max_tokens=1,
        echo=True,
        logprobs=0,
        temperature=0,
    )
    means = []
    for prefix, choice in zip(prefixes, sorted(reply.choices, key=lambda c: c.index), strict=True):
        logprobs = choice.logprobs
        assert logprobs is not None and logprobs.text_offset and logprobs.token_logprobs
        end = len(prefix) + len(question)
        values = [
            value
            for offset, value in zip(logprobs.text_offset, logprobs.token_logprobs, strict=True)
            if value is not None and len(prefix) <= offset < end
        ]
        means.append(fmean(values) if values else -math.inf)
    return means


def refusal_probability(llm: Runnable, settings: Settings, question: str, documents: list[Document]) -> float:
    """Probability that the answer's first token starts the refusal sentence of the prompt's rule 3."""
    language = detect_language(question)
    context = format_context(settings.prompts_dir, language, documents)
    messages = _answer_prompt(settings.prompts_dir, language).invoke(
        {"context": context, "question": quote_untrusted(question)}
    )
    top = llm.invoke(messages).response_metadata["logprobs"]["content"][0]["top_logprobs"]
    rules = read_prompt(settings.prompts_dir, language, "answer.system")
    quoted = _RULE_3_QUOTE.search(rules)
    assert quoted, "rule 3 of the answer prompt quotes the refusal sentence"
    refusal = quoted.group(1)
    return sum(
        math.exp(t["logprob"]) for t in top if t["token"].strip() and refusal.startswith(t["token"].strip())
    )


def _fused_order(likelihoods: list[float]) -> list[int]:
    """Passage indices by reciprocal-rank fusion (k 60, equal weights) of both orders."""
    by_likelihood = sorted(range(len(likelihoods)), key=lambda i: -likelihoods[i])
    place = {index: rank for rank, index in enumerate(by_likelihood)}
    return sorted(range(len(likelihoods)), key=lambda i: -(1 / (60 + place[i]) + 1 / (60 + i)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sets", nargs="+", help="question files under bench/eval, without .jsonl")
    parser.add_argument("--kb", default="evalset")
    parser.add_argument("--llm", required=True, metavar="URL", help="OpenAI-compatible server (vLLM)")
    parser.add_argument("--candidates", type=int, default=10, help="passages reranked per question")
    args = parser.parse_args(argv)
    settings = load_settings().model_copy(update={"llm_base_url": args.llm})
    service = KnowledgeBaseService(settings)
    model = list_models(args.llm, settings.llm_api_key)[0]
    client = OpenAI(base_url=args.llm, api_key=settings.llm_api_key, timeout=settings.llm_timeout_s)
    first_token = chat_model(settings).bind(logprobs=True, top_logprobs=20, max_tokens=1)
    translator = service.translator(chat_model(settings, **REWRITE_SAMPLING))
    rows: list[dict] = []
    for name in args.sets:
        questions: list[EvalQuestion] = load_questions(EVAL / f"{name}.jsonl")
        cached = translations(name, questions, translator)
        retriever = service.retriever(args.kb, k=args.candidates, translate=cached.get)
        for question in questions:
            documents = retriever.invoke(question.question)
            if not documents:  # refused by the retrieval gates: the LLM is not asked
                continue
            texts = [document.page_content for document in documents]
            language = detect_language(question.question)
            likelihoods = question_likelihoods(
                client, model, question.question, [*texts, _NO_PASSAGE[language]]
            )
            best = max(likelihoods[: settings.top_k])
            rows.append(
                {
                    "language": language,
                    "answerable": question.answerable,
                    "refusal": refusal_probability(
                        first_token, settings, question.question, documents[: settings.top_k]
                    ),
                    "likelihood": best,
                    "pmi": best - likelihoods[-1],
                    "order": _fused_order(likelihoods[:-1]),
                    "by_likelihood": sorted(range(len(texts)), key=lambda i: -likelihoods[i]),
                    "texts": texts,
                    "evidence": question.evidence,
                }
            )
    print("answerability signals (AUC; 0.5 = none), questions the LLM is asked:")
    for language in ("zh", "en"):
        subset = [row for row in rows if row["language"] == language]
        for key, sign in (("refusal", -1), ("likelihood", 1), ("pmi", 1)):
            answerable = [sign * row[key] for row in subset if row["answerable"]]
            unanswerable = [sign * row[key] for row in subset if not row["answerable"]]
            counts = f"{len(answerable)} / {len(unanswerable)}"
            print(f"  {language} {key:<11} {auc(answerable, unanswerable):.3f}  ({counts})")
    answerable_rows = [row for row in rows if row["answerable"]]
    print(f"reranking the best {args.candidates}, {len(answerable_rows)} answerable questions:")
    for label, key in (("retriever", None), ("likelihood", "by_likelihood"), ("fused", "order")):
        ranks = [
            evidence_rank(row["evidence"], [row["texts"][i] for i in row[key]] if key else row["texts"])
            for row in answerable_rows
        ]
        cells = "  ".join(f"{metric} {value:.3f}" for metric, value in rank_metrics(ranks).items())
        print(f"  {label:<11} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
