"""`rag eval`: metric definitions, the question-file format, and the command on a real knowledge base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.config import PROJECT_ROOT
from rag.evaluation import (
    QuestionFileError,
    answer_is_correct,
    evaluate,
    evidence_rank,
    is_refusal,
    load_questions,
)
from rag.prompts import read_prompt
from tests.conftest import TEST_PROFILE, subprocess_env


def test_evidence_rank_ignores_whitespace_and_needs_every_span() -> None:
    texts = ["alpha beta", "班车 有\n33 个座位", "gamma"]
    assert evidence_rank(["班车有33个座位"], texts) == 2
    assert evidence_rank(["alpha", "gamma"], texts) == 3
    assert evidence_rank(["delta"], texts) is None


def test_evidence_answers_and_refusals_match_in_either_chinese_script() -> None:
    """A question file written in Simplified script evaluates a Traditional knowledge base."""
    assert evidence_rank(["班车有33个座位"], ["其他", "班車有 33 個座位"]) == 2
    assert answer_is_correct("資料保留一百八十天", [["一百八十天"], ["资料"]])
    assert is_refusal("知識庫中沒有找到相關信息。", [{"index": 1}])


def test_answer_needs_one_alternative_of_every_group() -> None:
    groups = [["33", "三十三"], ["Q1"]]
    assert answer_is_correct("The Q1 bus has 33 seats.", groups)
    assert answer_is_correct("Q1 班车有三十三个座位", groups)
    assert not answer_is_correct("The bus has 33 seats.", groups)


def test_a_number_keyword_matches_only_a_whole_number() -> None:
    four = [["4", "four"]]
    assert answer_is_correct("No more than 4 times per quarter [1].", four)
    assert answer_is_correct("每季度最多 4次", four)
    assert not answer_is_correct("You can do it for 14 days [1].", four)
    assert not answer_is_correct("Up to 40 times.", four)
    assert not answer_is_correct("About 4.5 times.", four)
    assert answer_is_correct("保留 1 8 0 天", [["180 天"]])  # spacing still ignored
    assert answer_is_correct("The budget is CNY 8,000 [2].", [["8,000", "8000"]])


def test_refusal_is_no_sources_or_the_refusal_sentence() -> None:
    assert is_refusal("anything", [])
    assert is_refusal("知识库中没有找到相关信息。", [{"index": 1}])
    assert not is_refusal("It has 33 seats [1].", [{"index": 1}])


def test_malformed_question_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "question": "q", "evidence": null}\n{"question": "no id"}\n', "utf-8")
    with pytest.raises(QuestionFileError, match=r"q\.jsonl:2"):
        load_questions(path)
    path.write_text('{"id": "a", "question": "q", "evidence": null}\n[1, 2]\n', "utf-8")
    with pytest.raises(QuestionFileError, match=r"q\.jsonl:2: .*a JSON object is expected, not list"):
        load_questions(path)


def test_eval_command_reports_metrics(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bus.md").write_text("# 班车\n\n公司班车有 33 个座位，每十五分钟一班。", encoding="utf-8")
    (docs / "leave.md").write_text("# 休假\n\n员工每年享有十五天带薪年假。", encoding="utf-8")
    questions = tmp_path / "q.jsonl"
    lines = [
        {"id": "f1", "type": "fact", "question": "班车有多少个座位？", "evidence": "公司班车有 33 个座位",
         "answer_keywords": [["33"]]},
        {"id": "f2", "type": "fact", "question": "每年有几天年假？", "evidence": "十五天带薪年假",
         "answer_keywords": [["十五", "15"]]},
        {"id": "u1", "type": "unanswerable", "question": "法国的首都是哪里？", "evidence": None,
         "answer_keywords": []},
    ]  # fmt: skip
    questions.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    env = subprocess_env(KBQA_CONFIG=str(TEST_PROFILE), KBQA_DATA_DIR=str(tmp_path / "data"))
    run = [sys.executable, "ingest/run.py", str(docs), "--kb", "evalkb", "--quiet"]
    subprocess.run(run, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True)
    command = [sys.executable, "-m", "rag", "eval", str(questions), "--kb", "evalkb", "--no-llm"]
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [*command, "--report", str(report_path)], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "hit@5" in result.stdout and "overall" in result.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    overall = report["metrics"]["overall"]
    assert overall["hit@1"] == 1.0 and overall["mrr@10"] == 1.0
    assert overall["refusal_rate"] == 1.0 and overall["false_refusal_rate"] == 0.0
    assert report["metrics"]["unanswerable"]["n"] == 1
    assert [r["rank"] for r in report["results"]] == [1, 1, None]
    assert "eval: 100%" in result.stderr and "3/3" in result.stderr  # progress, off stdout's report
    quiet = subprocess.run(
        [*command, "--quiet", "--json"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert quiet.returncode == 0 and "eval:" not in quiet.stderr
    assert json.loads(quiet.stdout)["metrics"]["overall"]["hit@1"] == 1.0
    missing = subprocess.run(
        [*command[:4], "nope.jsonl", "--no-llm"], env=env, cwd=PROJECT_ROOT, capture_output=True
    )
    assert missing.returncode == 2
    nowhere = subprocess.run(  # refused before the evaluation runs, not after it
        [*command, "--report", str(tmp_path / "no" / "r.json")],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
    )
    assert nowhere.returncode == 2 and b"cannot write the report" in nowhere.stderr
    assert b"Traceback" not in nowhere.stderr


def test_a_withdrawn_answer_counts_as_the_refusal_and_the_report_keeps_the_original(tmp_path: Path) -> None:
    questions_file = tmp_path / "q.jsonl"
    line = {"id": "u1", "type": "unanswerable", "question": "采购部负责人叫什么？", "evidence": None,
            "answer_keywords": []}  # fmt: skip
    questions_file.write_text(json.dumps(line, ensure_ascii=False), encoding="utf-8")
    refusal = read_prompt(PROJECT_ROOT / "prompts", "zh", "refusal")
    withdrawn = {
        "reason": "restates the question",
        "original": "采购部负责人叫 [1]。",
        "replacement": refusal,
    }

    def answer(question: str) -> dict[str, Any]:
        return {"answer": refusal, "sources": [{"source": "a.md"}], "withdrawn": withdrawn}

    report = evaluate(
        load_questions(questions_file),
        lambda question, k, gated: [{"text": "采购流程", "source": "a.md"}],
        answer,
        prompts_dir=PROJECT_ROOT / "prompts",
    )
    assert report["metrics"]["overall"]["refusal_rate"] == 1.0
    assert report["results"][0]["withdrawn"] == {
        "reason": "restates the question",
        "original": "采购部负责人叫 [1]。",
    }
