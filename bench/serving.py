"""Serving: time to first token and tokens/s for C concurrent chats, through kbqa and straight to the LLM.

kbqa runs as ``python app.py`` over the sample knowledge base (``knowledge/``, ingested into a fresh
data directory) or is a running one (``--url``); its LLM is a real vLLM server that this script starts
with ``python -m rag llm`` (or takes with ``--llm-url``), or, to look at kbqa's own cost alone, the
fake instant OpenAI-compatible server (``--fake-llm``). For each concurrency C, C clients each send
R streamed chats one after another, first to kbqa's ``/v1/chat/completions``, then straight to the
LLM with the exact messages kbqa sends it for that question (kbqa's answer prompt, rebuilt here from
the passages kbqa returned, checked by comparing the prompt token counts both report), then again,
alternating (``--rounds``), so that drift of a shared machine falls on both alike. Usage (from the
project root)::

    .venv/bin/python -m bench.serving [--concurrency 1 8] [--requests 16 8] [--max-tokens 128] \\
        [--rounds 2] [--llm-url http://127.0.0.1:8100/v1 | --fake-llm 0.02] [--url http://...] [--json]

TTFT is the time to the first content delta; per-chat tokens/s is a chat's completion tokens after
its first one over the time they took; total tokens/s is every completion token of a round over the
round's wall time. kbqa − direct is what kbqa adds (retrieval, prompt, its HTTP layer). The clients
run in this process on the same machine: say how many cores it had and what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from langchain_core.documents import Document

from bench.load import (
    DEFAULT_QUESTIONS,
    aligned_table,
    child_env,
    fake_llm,
    free_port,
    kbqa_app,
    kbqa_payloads,
    machine,
    percentile,
    read_questions,
    served_model,
)
from rag.config import PROJECT_ROOT
from rag.language import detect_language
from rag.prompts import answer_prompt, format_context, quote_untrusted, read_prompt

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


@dataclass
class Chat:
    """One streamed chat as its client saw it (times in seconds from the round's start)."""

    question: str
    ok: bool
    started: float
    ttft_s: float | None = None
    ended: float = 0.0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time they took: the speed the reader sees the answer grow."""
        if self.ttft_s is None or self.completion_tokens < 2:
            return None
        spent = self.ended - (self.started + self.ttft_s)
        return (self.completion_tokens - 1) / spent if spent > 0 else None


@dataclass
class Row:
    target: str
    concurrency: int
    requests: int
    failures: int
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    chat_tokens_per_s_p50: float | None
    total_tokens_per_s: float
    tokens_per_chat: float


# --- the prompt kbqa sends -------------------------------------------------------------------------
def kbqa_messages(question: str, sources: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The answer prompt kbqa builds for a first question (no history) over these passages.

    Built with kbqa's own template and context functions from the passages its response returned
    (``snippet`` is the chunk's text exactly as stored), so that the direct request costs the LLM
    what kbqa's does; ``verify_prompts`` checks it against the token counts both report.
    """
    documents = [
        Document(
            page_content=source["snippet"],
            metadata={"source": source["source"], "page": source["page"], "section": source.get("section")},
        )
        for source in sources
    ]
    prompts_dir = PROJECT_ROOT / "prompts"
    language = detect_language(question)
    context = format_context(prompts_dir, language, documents)
    messages = answer_prompt(prompts_dir, language).format_messages(
        context=context, question=quote_untrusted(question)
    )
    return [{"role": _ROLES[message.type], "content": str(message.content)} for message in messages]


def ask_once(url: str, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(url, json={**payload, "stream": False}, headers=headers, timeout=600)
    response.raise_for_status()
    return response.json()


@dataclass
class Prepared:
    questions: list[str]
    kbqa: list[dict[str, Any]]
    direct: list[dict[str, Any]]
    notes: list[str]


def prepare(
    kbqa_url: str,
    llm_url: str,
    llm_model: str,
    questions: Sequence[str],
    *,
    max_tokens: int,
    api_key: str | None,
    llm_api_key: str,
) -> Prepared:
    """Each question asked of kbqa twice (its passages; then, translation cached, its prompt's size)
    and once of the LLM directly with the rebuilt prompt; questions kbqa refuses are left out.

    The first ask of an English question includes kbqa's LLM translation of it (``query_translation``),
    which kbqa then keeps: its extra latency is noted, since the timed rounds ask again.
    """
    kbqa_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    llm_headers = {"Authorization": f"Bearer {llm_api_key}"}
    chat_url = f"{kbqa_url}/v1/chat/completions"
    direct_url = f"{llm_url.rstrip('/')}/chat/completions"
    prepared = Prepared([], [], [], [])
    for question, payload in zip(questions, kbqa_payloads(questions, max_tokens=1), strict=True):
        payload["temperature"] = 0.0
        started = time.perf_counter()
        first = ask_once(chat_url, payload, kbqa_headers)
        first_s = time.perf_counter() - started
        if not first.get("sources"):
            prepared.notes.append(f"left out (kbqa refuses it without the LLM): {question}")
            continue
        started = time.perf_counter()
        again = ask_once(chat_url, payload, kbqa_headers)
        again_s = time.perf_counter() - started
        messages = kbqa_messages(question, again["sources"])
        probe = {"model": llm_model, "messages": messages, "max_tokens": 1, "temperature": 0.0}
        direct_tokens = ask_once(direct_url, probe, llm_headers)["usage"]["prompt_tokens"]
        kbqa_tokens = again["usage"]["prompt_tokens"]
        verdict = "same" if kbqa_tokens == direct_tokens else "DIFFERENT: the comparison is not fair"
        prepared.notes.append(
            f"prompt tokens kbqa {kbqa_tokens} / direct {direct_tokens} ({verdict}); first ask "
            f"{first_s * 1000:.0f} ms, second {again_s * 1000:.0f} ms ({detect_language(question)}): "
            f"{question}"
        )
        prepared.questions.append(question)
        sampling = {"max_tokens": max_tokens, "temperature": 0.0, "stream": True}
        sampling["stream_options"] = {"include_usage": True}
        prepared.kbqa.append({**payload, **sampling})
        prepared.direct.append({"model": llm_model, "messages": messages, **sampling})
    return prepared


# --- the clients --------------------------------------------------------------------------------------
async def stream_chat(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], question: str, origin: float
) -> Chat:
    """POST one streamed chat; completion tokens from the usage chunk, else one per content delta."""
    chat = Chat(question, False, time.perf_counter() - origin)
    deltas = 0
    usage: int | None = None
    try:
        async with client.stream("POST", url, json=payload) as response:
            if response.status_code != 200:
                await response.aread()
                chat.error = f"HTTP {response.status_code}"
                return chat
            async for line in response.aiter_lines():
                data = line.removeprefix("data: ")
                if not line.startswith("data: ") or data == "[DONE]":
                    continue
                event = json.loads(data)
                if "error" in event:
                    chat.error = "error event"
                    return chat
                choices = event.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    deltas += 1
                    if chat.ttft_s is None:
                        chat.ttft_s = time.perf_counter() - origin - chat.started
                if event.get("usage"):
                    usage = int(event["usage"]["completion_tokens"])
    except (httpx.HTTPError, ValueError, KeyError) as error:
        chat.error = type(error).__name__
        return chat
    finally:
        chat.ended = time.perf_counter() - origin
    chat.completion_tokens = usage if usage is not None else deltas
    chat.ok = chat.ttft_s is not None
    chat.error = None if chat.ok else "no content"
    return chat


async def run_round(
    url: str,
    payloads: Sequence[dict[str, Any]],
    questions: Sequence[str],
    *,
    clients: int,
    requests: int,
    api_key: str | None,
    first_turn: int = 0,
) -> tuple[list[Chat], float]:
    """``clients`` concurrent loops of ``requests`` chats each; client i's turn t asks question i + t.

    ``first_turn`` carries the turns on from the previous round, so the rounds together walk the
    questions; kbqa and direct rounds walk them alike, so both get the same mix.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    chats: list[Chat] = []
    origin = time.perf_counter()

    async def client_loop(number: int, client: httpx.AsyncClient) -> None:
        for turn in range(first_turn, first_turn + requests):
            index = (number + turn) % len(payloads)
            chats.append(await stream_chat(client, url, payloads[index], questions[index], origin))

    async with httpx.AsyncClient(timeout=600, limits=limits, headers=headers) as client:
        await asyncio.gather(*(client_loop(number, client) for number in range(clients)))
    return chats, time.perf_counter() - origin


def summarize(target: str, concurrency: int, rounds: Sequence[tuple[list[Chat], float]]) -> Row:
    chats = [chat for round_chats, _ in rounds for chat in round_chats]
    ok = [chat for chat in chats if chat.ok]
    tokens = sum(chat.completion_tokens for chat in ok)
    wall = sum(took for _, took in rounds)
    ttfts = [chat.ttft_s for chat in ok if chat.ttft_s is not None]
    speeds = [speed for chat in ok if (speed := chat.decode_tokens_per_s) is not None]
    return Row(
        target=target,
        concurrency=concurrency,
        requests=len(chats),
        failures=len(chats) - len(ok),
        ttft_p50_s=percentile(ttfts, 0.50),
        ttft_p95_s=percentile(ttfts, 0.95),
        chat_tokens_per_s_p50=percentile(speeds, 0.50),
        total_tokens_per_s=tokens / wall if wall else 0.0,
        tokens_per_chat=tokens / len(ok) if ok else 0.0,
    )


def ttft_by_language(chats: Sequence[Chat]) -> dict[str, float | None]:
    groups: dict[str, list[float]] = {}
    for chat in chats:
        if chat.ok and chat.ttft_s is not None:
            groups.setdefault(detect_language(chat.question), []).append(chat.ttft_s)
    return {language: percentile(values, 0.50) for language, values in sorted(groups.items())}


# --- the LLM server -----------------------------------------------------------------------------------
@contextlib.contextmanager
def vllm_server(data_dir: Path, log_path: Path, startup_timeout_s: float = 900.0) -> Iterator[str]:
    """``python -m rag llm`` on a free port (the packaged model unless settings say otherwise)."""
    port = free_port()
    env = child_env(KBQA_DATA_DIR=str(data_dir))
    command = [sys.executable, "-m", "rag", "llm", "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the LLM server did not start (exit {process.poll()}); see {log_path}")
            time.sleep(1.0)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # rag llm stops vLLM and its workers on SIGTERM
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _answers(llm_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{llm_url}/models", headers={"Authorization": "Bearer EMPTY"}, timeout=2).is_success
    return False


# --- the report ---------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    header = ("target", "chats", "requests", "failed", "ttft p50 ms", "ttft p95 ms", "chat tok/s p50")
    header += ("total tok/s", "tokens/chat")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.target,
                str(row.concurrency),
                str(row.requests),
                str(row.failures),
                _ms(row.ttft_p50_s),
                _ms(row.ttft_p95_s),
                _rate(row.chat_tokens_per_s_p50),
                _rate(row.total_tokens_per_s),
                f"{row.tokens_per_chat:.0f}",
            )
        )
    return aligned_table(lines)


def comparison(rows: Sequence[Row], by_language: dict[tuple[str, int], dict[str, float | None]]) -> str:
    """kbqa − direct time to first token per concurrency, and how total throughput scales."""
    found = {(row.target, row.concurrency): row for row in rows}
    levels = sorted({row.concurrency for row in rows})
    lines = ["kbqa − direct time to first token (what kbqa adds):"]
    for level in levels:
        mine, theirs = found.get(("kbqa", level)), found.get(("direct", level))
        if not mine or not theirs or None in (mine.ttft_p50_s, theirs.ttft_p50_s):
            continue
        p50 = (mine.ttft_p50_s - theirs.ttft_p50_s) * 1000  # type: ignore[operator]
        p95 = (mine.ttft_p95_s - theirs.ttft_p95_s) * 1000  # type: ignore[operator]
        mine_lang, theirs_lang = by_language.get(("kbqa", level), {}), by_language.get(("direct", level), {})
        by_lang = ", ".join(
            f"{language} {(value - theirs_lang[language]) * 1000:+.0f}"
            for language, value in mine_lang.items()
            if value is not None and theirs_lang.get(language) is not None
        )
        lines.append(f"  {level} chats: p50 {p50:+.0f} ms, p95 {p95:+.0f} ms (p50 by language: {by_lang})")
    if len(levels) > 1:
        low, high = levels[0], levels[-1]
        lines.append(f"total tokens/s, {high} chats ÷ {low}:")
        for target in ("kbqa", "direct"):
            a, b = found.get((target, low)), found.get((target, high))
            if a and b and a.total_tokens_per_s:
                lines.append(f"  {target}: {b.total_tokens_per_s / a.total_tokens_per_s:.2f}×")
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="concurrent chats")
    parser.add_argument(
        "--requests",
        type=int,
        nargs="+",
        default=[16, 8],
        help="chats per client and target, per concurrency level (one number: the same for all)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="kbqa/direct alternations the chats split into")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--llm-url", help="a running OpenAI-compatible LLM server instead of starting vLLM")
    parser.add_argument("--llm-api-key", default="EMPTY")
    parser.add_argument(
        "--fake-llm", type=float, metavar="SECONDS", help="the fake LLM server, SECONDS per token"
    )
    parser.add_argument("--url", help="a running kbqa (using --llm-url) instead of starting one")
    parser.add_argument("--api-key", help="kbqa's KBQA_API_KEY, with --url")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a kbqa setting")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    if len(args.requests) == 1:
        args.requests = args.requests * len(args.concurrency)
    if len(args.requests) != len(args.concurrency):
        parser.error("give one --requests value, or one per --concurrency level")
    if args.url and not args.llm_url:
        parser.error("--url needs --llm-url: the LLM that kbqa uses, for the direct rounds")
    return args


@contextlib.contextmanager
def servers(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, str, str]]:
    """(LLM URL, kbqa URL, a line saying what the LLM is), started here unless given."""
    with contextlib.ExitStack() as stack:
        if args.llm_url:
            llm_url, note = args.llm_url, f"LLM: {args.llm_url}"
        elif args.fake_llm is not None:
            server = stack.enter_context(
                fake_llm(
                    token_delay_s=args.fake_llm,
                    log_path=work / "llm.log",
                    replies_by_prefix=translation_replies(),
                )
            )
            llm_url, note = server.url, f"LLM: fake OpenAI server, {args.fake_llm} s per token"
        else:
            llm_url = stack.enter_context(vllm_server(work / "llm", work / "llm.log"))
            note = f"LLM: vLLM started here by `python -m rag llm` ({llm_url})"
        if args.url:
            kbqa_url = args.url.rstrip("/")
        else:
            overrides = dict(item.split("=", 1) for item in args.set)
            kbqa_url = stack.enter_context(
                kbqa_app(work / "data", llm_url, overrides=overrides, log_path=work / "app.log")
            )
        yield llm_url, kbqa_url, note


def translation_replies() -> dict[str, str]:
    """The fake LLM's answers to kbqa's query-translation prompts: a question of a real one's size.

    Without them the fake answers a translation request with its long answer text, which kbqa then
    embeds and searches on every chat: ~50 ms more than a real translation costs, counted as kbqa's.
    """
    prompts_dir = PROJECT_ROOT / "prompts"
    sample = {"en": "How many seats does the company shuttle bus have?", "zh": "公司班车有多少个座位？"}
    return {
        read_prompt(prompts_dir, language, "translate").splitlines()[0]: question
        for language, question in sample.items()
    }


@dataclass
class Target:
    name: str
    url: str  # its chat completions endpoint
    payloads: list[dict[str, Any]]
    api_key: str | None


def split(requests: int, rounds: int) -> list[int]:
    """``requests`` chats per client spread over ``rounds`` alternations (16 over 2: 8 and 8)."""
    return [requests // rounds + (1 if i < requests % rounds else 0) for i in range(rounds)]


def measure(
    args: argparse.Namespace, targets: Sequence[Target], questions: Sequence[str]
) -> tuple[list[Row], dict[tuple[str, int], dict[str, float | None]]]:
    """Alternating rounds of the targets at each concurrency; the rows and TTFT p50 by language."""
    rows: list[Row] = []
    by_language: dict[tuple[str, int], dict[str, float | None]] = {}
    for clients, requests in zip(args.concurrency, args.requests, strict=True):
        results: dict[str, list[tuple[list[Chat], float]]] = {target.name: [] for target in targets}
        first_turn = 0
        for count in [count for count in split(requests, args.rounds) if count]:
            for target in targets:
                chats = run_round(
                    target.url,
                    target.payloads,
                    questions,
                    clients=clients,
                    requests=count,
                    api_key=target.api_key,
                    first_turn=first_turn,
                )
                results[target.name].append(asyncio.run(chats))
            first_turn += count
        for name, rounds in results.items():
            rows.append(summarize(name, clients, rounds))
            by_language[(name, clients)] = ttft_by_language([chat for chats, _ in rounds for chat in chats])
            print(f"# {name}, {clients} chats: done, load average {os.getloadavg()[0]:.2f}", flush=True)
    return rows, by_language


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, "-m", "bench.serving", *argv])
    print(f"# kbqa serving benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"$ {command}")
    print(f"# {machine()}")
    questions = read_questions(args.questions)
    with tempfile.TemporaryDirectory(prefix="kbqa-serving-") as folder, servers(args, Path(folder)) as found:
        llm_url, kbqa_url, note = found
        print(f"# {note}; kbqa: {kbqa_url}")
        model = served_model(llm_url, args.llm_api_key)
        prepared = prepare(
            kbqa_url,
            llm_url,
            model,
            questions,
            max_tokens=args.max_tokens,
            api_key=args.api_key,
            llm_api_key=args.llm_api_key,
        )
        for line in prepared.notes:
            print(f"# {line}")
        if not prepared.questions:
            print("error: kbqa answered none of the questions from its passages", file=sys.stderr)
            return 1
        print(f"# {args.rounds} alternating rounds per target; max_tokens {args.max_tokens}, temperature 0")
        targets = [
            Target("kbqa", f"{kbqa_url}/v1/chat/completions", prepared.kbqa, args.api_key),
            Target("direct", f"{llm_url.rstrip('/')}/chat/completions", prepared.direct, args.llm_api_key),
        ]
        rows, by_language = measure(args, targets, prepared.questions)
    print(f"# load average at the end {os.getloadavg()[0]:.2f} (1 min)")
    print()
    print(format_table(rows))
    print()
    print(comparison(rows, by_language))
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    return 0 if all(row.failures == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
