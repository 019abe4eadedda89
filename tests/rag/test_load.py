"""50 concurrent clients for 60 s on /v1/chat/completions, half streaming: not one request may fail.

kbqa runs as ``python app.py`` (real uvicorn, its own process) over the sample knowledge base, its LLM
the fake OpenAI-compatible server in a third process; the clients are ``bench/load.py``'s. Latencies
are printed, never asserted: they depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bench.load import (
    DEFAULT_QUESTIONS,
    fake_llm,
    format_table,
    kbqa_app,
    kbqa_payloads,
    load,
    one_request,
    read_questions,
    summaries,
)
from tests.conftest import TEST_PROFILE

pytestmark = pytest.mark.slow

CLIENTS = 50
DURATION_S = 60.0


def test_fifty_clients_for_a_minute_get_no_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app_log = tmp_path / "app.log"
    with (
        fake_llm(token_delay_s=0.01, log_path=tmp_path / "llm.log") as llm,
        kbqa_app(tmp_path / "data", llm.url, config=TEST_PROFILE, log_path=app_log) as url,
    ):
        payloads = kbqa_payloads(read_questions(DEFAULT_QUESTIONS))
        chat_url = f"{url}/v1/chat/completions"
        samples, took = load(chat_url, payloads, clients=CLIENTS, duration_s=DURATION_S)
        rows = summaries("kbqa", samples, took)
        with capsys.disabled():
            print(f"\n{CLIENTS} clients for {DURATION_S:.0f} s (fake LLM at 0.01 s/token):")
            print(format_table(rows))

        failures = Counter(sample.error for sample in samples if not sample.ok)
        log_tail = app_log.read_text(errors="replace")[-3000:]
        assert not failures, f"{failures}\n{log_tail}"
        # Every client's requests all count (one started before the deadline is waited for); both
        # modes ran. No rate is asserted: a busy 2-core machine answers about one question a second.
        assert rows[0].requests >= CLIENTS // 2 and rows[1].requests >= CLIENTS // 2

        # ...and the app still serves afterwards.
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200

        async def one_each() -> list[bool]:
            async with httpx.AsyncClient(timeout=60) as client:
                return [
                    (await one_request(client, chat_url, payloads[0], stream)).ok for stream in (True, False)
                ]

        assert asyncio.run(one_each()) == [True, True]
