"""The command-line contracts of DESIGN.md, run as real subprocesses: other tools script against them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import chromadb
import pytest

from rag.config import PROJECT_ROOT
from tests.conftest import TEST_PROFILE, free_port, subprocess_env

PROJECT = PROJECT_ROOT
KB = "clikb"


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runner, Path]:
    """A knowledge base ingested once by the real ingest CLI; returns a runner of `python -m rag`."""
    root = tmp_path_factory.mktemp("cli")
    docs = root / "docs"
    (docs / "handbook").mkdir(parents=True)
    (docs / "handbook" / "leave.md").write_text("# 休假\n\n员工每年享有十五天带薪年假。", encoding="utf-8")
    (docs / "shuttle.txt").write_text("The company shuttle bus has 33 seats.", encoding="utf-8")
    data = root / "data"

    def run(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE), KBQA_DATA_DIR=str(data), **extra_env),
            cwd=PROJECT,
            timeout=300,
        )

    result = run("ingest/run.py", str(docs), "--kb", KB, "--quiet")
    assert result.returncode == 0, result.stderr
    return run, data


def test_query_json_contract(cli: tuple[Runner, Path]) -> None:
    run, data = cli
    result = run("-m", "rag", "query", "年假有几天", "--kb", KB, "-k", "10", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 2  # k larger than the knowledge base: everything, best first
    assert all(set(hit) == {"text", "source", "page", "score"} for hit in hits)
    assert hits[0]["source"] == "handbook/leave.md"
    assert hits[0]["page"] is None
    assert hits[0]["score"] >= hits[1]["score"]
    # "text" is the chunk exactly as stored.
    collection = chromadb.PersistentClient(path=str(data / "chroma")).get_collection(KB)
    stored = set(collection.get(include=["documents"])["documents"])
    assert {hit["text"] for hit in hits} <= stored


def test_query_k_limits_results(cli: tuple[Runner, Path]) -> None:
    run, _ = cli
    hits = json.loads(run("-m", "rag", "query", "bus seats", "--kb", KB, "-k", "1", "--json").stdout)
    assert [hit["source"] for hit in hits] == ["shuttle.txt"]


def test_query_jsonl_answers_each_line_in_order(cli: tuple[Runner, Path]) -> None:
    """One output line per input line, so a caller can pair them by position: a blank line gets no
    results, a line that is not UTF-8 is searched with U+FFFD in place of its bad bytes rather than
    ending the batch, a Windows editor's byte-order mark and CRLF are not part of the question."""
    stdin = "\ufeffHow many seats does the bus have?\r\n\r\n  \nbus \udcff seats\n员工年假有几天？\n"
    result = subprocess.run(
        [sys.executable, "-m", "rag", "query", "--kb", KB, "-k", "1", "--jsonl"],
        input=stdin.encode("utf-8", errors="surrogateescape"),  # \udcff: the lone byte 0xff
        capture_output=True,
        env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE), KBQA_DATA_DIR=str(cli[1])),
        cwd=PROJECT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["question"] for line in lines] == [
        "How many seats does the bus have?", "", "", "bus \ufffd seats", "员工年假有几天？"
    ]  # fmt: skip
    assert [[hit["source"] for hit in line["results"]] for line in lines] == [
        ["shuttle.txt"], [], [], ["shuttle.txt"], ["handbook/leave.md"]
    ]  # fmt: skip


def test_stats_json_contract(cli: tuple[Runner, Path]) -> None:
    run, _ = cli
    one = json.loads(run("-m", "rag", "stats", "--kb", KB, "--json").stdout)
    assert one == {"files": 2, "chunks": 2, "embedding_model": "moka-ai/m3e-small", "dimension": 512}
    every = json.loads(run("-m", "rag", "stats", "--json").stdout)
    assert {"kb": KB, **one} in every


def test_settings_lists_every_setting_in_force(cli: tuple[Runner, Path]) -> None:
    run, data = cli
    result = run("-m", "rag", "settings", "--json", KBQA_TOP_K="7", KBQA_API_KEY="s3cret")
    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row for row in json.loads(result.stdout)}
    assert rows["KBQA_TOP_K"]["value"] == 7 and rows["KBQA_DATA_DIR"]["value"] == str(data)
    assert rows["KBQA_API_KEY"]["value"] == "(set)" and "s3cret" not in result.stdout
    assert all(row["meaning"] for row in rows.values())


def test_unknown_knowledge_base_is_a_clear_error(cli: tuple[Runner, Path]) -> None:
    run, _ = cli
    result = run("-m", "rag", "query", "x", "--kb", "nosuchkb", "--json")
    assert result.returncode == 1
    assert "knowledge base 'nosuchkb' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2(cli: tuple[Runner, Path]) -> None:
    run, _ = cli
    assert run("-m", "rag", "query", "--kb", KB, "--json").returncode == 2  # no question
    assert run("-m", "rag", "query", "  ", "--kb", KB, "--json").returncode == 2  # a blank one
    for k in ("0", "-1", "two"):
        result = run("-m", "rag", "query", "bus", "--kb", KB, "-k", k, "--json")
        assert result.returncode == 2 and "at least 1" in result.stderr, (k, result.stderr)
    result = run("-m", "rag", "query", "x", "--kb", "../etc")
    assert result.returncode == 2
    assert "invalid knowledge base name" in result.stderr
    assert run("-m", "rag", "query", "x", "--kb", KB, "--jsonl", stdin="bus\n").returncode == 2  # which one?
    unknown = run("-m", "rag", "query", "--kb", "nosuchkb", "--jsonl", stdin="")
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


def test_delete_a_document_then_the_knowledge_base(cli: tuple[Runner, Path], tmp_path: Path) -> None:
    run, _ = cli
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 食堂\n\n食堂午餐供应时间为十一点半到一点。", encoding="utf-8")
    (docs / "b.txt").write_text("Visitors park in lot C.", encoding="utf-8")
    assert run("ingest/run.py", str(docs), "--kb", "scratch", "--quiet").returncode == 0
    one = run("-m", "rag", "delete", "--kb", "scratch", "--document", "a.md")
    assert one.returncode == 0, one.stderr
    assert "deleted a.md" in one.stdout and "next run adds it again" in one.stdout
    assert json.loads(run("-m", "rag", "stats", "--kb", "scratch", "--json").stdout)["files"] == 1
    gone = run("-m", "rag", "delete", "--kb", "scratch", "--document", "a.md")
    assert gone.returncode == 1 and "has no document 'a.md'" in gone.stderr
    assert run("-m", "rag", "delete").returncode == 2  # never the default knowledge base by omission
    whole = run("-m", "rag", "delete", "--kb", "scratch")
    assert whole.returncode == 0 and "deleted knowledge base 'scratch'" in whole.stdout
    assert "scratch" not in run("-m", "rag", "stats").stdout
    assert KB in run("-m", "rag", "stats").stdout


def test_ask_with_unreachable_llm_fails_fast_and_clearly(cli: tuple[Runner, Path]) -> None:
    run, _ = cli
    started = time.monotonic()
    result = run(
        "-m", "rag", "ask", "年假有几天", "--kb", KB, KBQA_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"
    )
    assert result.returncode == 1
    assert "LLM server" in result.stderr and "not reachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_ask_refuses_unrelated_question_without_an_llm(cli: tuple[Runner, Path]) -> None:
    """Nothing relevant retrieved → the refusal, and no LLM is needed (none is running here)."""
    run, _ = cli
    fake = f"http://127.0.0.1:{free_port()}/v1"
    result = run(
        "-m",
        "rag",
        "ask",
        "How do I bake sourdough bread?",
        "--kb",
        KB,
        "--json",
        KBQA_LLM_BASE_URL=fake,
        KBQA_LLM_MODEL="any",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["sources"] == [] and answer["refused"] is True
    assert "does not contain" in answer["answer"]


def test_chat_keeps_the_conversation_for_follow_ups(capsys: pytest.CaptureFixture[str]) -> None:
    from rag.cli import chat_loop

    class RecordingChain:
        def __init__(self) -> None:
            self.inputs: list[dict[str, object]] = []

        def stream(self, inputs: dict[str, object]) -> list[dict[str, object]]:
            self.inputs.append(inputs)
            return [{"sources": []}, {"answer": f"answer {len(self.inputs)}"}]

    chain = RecordingChain()
    typed = iter(["杭州班车有多少座位？", "那成都呢？", "new", "年假几天？", ""])
    assert chat_loop(chain, read=lambda _: next(typed)) == 0
    assert [i["question"] for i in chain.inputs] == ["杭州班车有多少座位？", "那成都呢？", "年假几天？"]
    assert chain.inputs[0]["history"] == []
    assert chain.inputs[1]["history"] == [("user", "杭州班车有多少座位？"), ("assistant", "answer 1")]
    assert chain.inputs[2]["history"] == []  # "new" started over
    assert "answer 2" in capsys.readouterr().out


def test_ask_names_each_sources_section_and_says_when_they_only_were_searched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rag.cli import _print_sources

    sources = [
        {"index": 1, "source": "handbook.md", "page": None, "section": "Leave > Annual leave", "score": 0.91},
        {"index": 2, "source": "guide.pdf", "page": 3, "section": None, "score": 0.8},
    ]
    _print_sources(sources, refused=False)
    printed = capsys.readouterr().out
    assert "Sources:" in printed and "[1] handbook.md · Leave > Annual leave  (score 0.91)" in printed
    assert "[2] guide.pdf p.3  (score 0.80)" in printed
    _print_sources(sources, refused=True)
    assert "Sources:" not in capsys.readouterr().out
