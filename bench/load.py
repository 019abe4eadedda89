"""Load on ``/v1/chat/completions``: N concurrent clients for D seconds, half streaming, half not.

kbqa runs as ``python app.py`` in its own process over the sample knowledge base (``knowledge/``,
ingested into a fresh data directory), or is a running one (``--url``). Its LLM is the fake
OpenAI-compatible server (``tests/support/fake_openai.py``, ``--token-delay`` seconds per token, in
its own process) or a real one (``--llm-url``). After kbqa's run the same load goes straight to the
LLM server, each request carrying the exact prompt kbqa sends it for its question (its answer prompt
over the passages it retrieved, as ``bench.serving.kbqa_messages`` rebuilds it), so that
**app overhead = kbqa − direct** at each percentile. Usage (from the project root)::

    .venv/bin/python -m bench.load [--clients 50] [--duration 60] [--token-delay 0.02] \\
        [--llm-url http://127.0.0.1:8100/v1] [--url http://127.0.0.1:8000] [--config FILE] \\
        [--set top_k=3 ...] [--json]

The numbers are wall-clock latencies seen by the clients, which run in this process on the same
machine; say how many cores it had and what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rag.config import PROJECT_ROOT

DEFAULT_QUESTIONS = PROJECT_ROOT / "tests" / "e2e_questions.json"
# About 60 tokens for the fake server (one per CJK character): at 0.02 s a token, ~1.2 s per answer.
BENCH_REPLY = (
    "根据资料[1]，kbqa 默认把文档切成 500 个字符的块，相邻两块重叠 80 个字符，"
    "检索时先做向量搜索和关键词搜索再融合排序[2]。"
)


@dataclass
class Sample:
    """One request as its client saw it."""

    stream: bool
    ok: bool
    latency_s: float
    ttft_s: float | None = None  # streams: time to the first content delta
    error: str | None = None


@dataclass
class Summary:
    target: str
    mode: str
    requests: int
    failures: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    requests_per_s: float
    errors: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation): a latency some request really had."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(target: str, mode: str, samples: Sequence[Sample], duration_s: float) -> Summary:
    ok = [sample for sample in samples if sample.ok]
    latencies = [sample.latency_s for sample in ok]
    ttfts = [sample.ttft_s for sample in ok if sample.ttft_s is not None]
    errors: dict[str, int] = {}
    for sample in samples:
        if not sample.ok:
            errors[sample.error or "?"] = errors.get(sample.error or "?", 0) + 1
    return Summary(
        target=target,
        mode=mode,
        requests=len(samples),
        failures=len(samples) - len(ok),
        p50_s=percentile(latencies, 0.50),
        p95_s=percentile(latencies, 0.95),
        max_s=max(latencies, default=None),
        ttft_p50_s=percentile(ttfts, 0.50),
        ttft_p95_s=percentile(ttfts, 0.95),
        requests_per_s=len(ok) / duration_s if duration_s else 0.0,
        errors=errors,
    )


def summaries(target: str, samples: Sequence[Sample], duration_s: float) -> list[Summary]:
    """Rows for streamed, non-streamed and all requests of one run."""
    return [
        summarize(target, "stream", [s for s in samples if s.stream], duration_s),
        summarize(target, "json", [s for s in samples if not s.stream], duration_s),
        summarize(target, "all", samples, duration_s),
    ]


# --- the clients ------------------------------------------------------------------------------------
async def one_request(client: httpx.AsyncClient, url: str, payload: dict[str, Any], stream: bool) -> Sample:
    """POST one chat completion; a success is a 200 with an answer (and, streamed, ``[DONE]``)."""
    body = {**payload, "stream": stream}
    started = time.perf_counter()
    try:
        if not stream:
            response = await client.post(url, json=body)
            latency = time.perf_counter() - started
            if response.status_code != 200:
                return Sample(False, False, latency, error=f"HTTP {response.status_code}")
            choices = response.json().get("choices") or []
            content = choices[0]["message"]["content"] if choices else None
            return Sample(False, bool(content), latency, error=None if content else "empty answer")
        ttft: float | None = None
        done = False
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Sample(
                    True, False, time.perf_counter() - started, error=f"HTTP {response.status_code}"
                )
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                if "error" in event:
                    return Sample(True, False, time.perf_counter() - started, ttft, "error event")
                choices = event.get("choices") or []
                if ttft is None and choices and choices[0]["delta"].get("content"):
                    ttft = time.perf_counter() - started
        latency = time.perf_counter() - started
        if not done or ttft is None:
            return Sample(True, False, latency, ttft, "no [DONE]" if not done else "no content")
        return Sample(True, True, latency, ttft)
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as error:
        return Sample(stream, False, time.perf_counter() - started, error=type(error).__name__)


async def run_load(
    url: str,
    payloads: Sequence[dict[str, Any]],
    *,
    clients: int,
    duration_s: float,
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> tuple[list[Sample], float]:
    """``clients`` loops (even ones stream) sending ``payloads`` in turn until ``duration_s`` is over.

    ``url`` is the chat completions endpoint. A request started before the deadline is waited for
    and counted. Returns the samples and the wall time the run took.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    deadline = time.perf_counter() + duration_s
    samples: list[Sample] = []

    async def client_loop(number: int, client: httpx.AsyncClient) -> None:
        turn = number
        while time.perf_counter() < deadline:
            samples.append(await one_request(client, url, payloads[turn % len(payloads)], number % 2 == 0))
            turn += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, headers=headers) as client:
        await asyncio.gather(*(client_loop(number, client) for number in range(clients)))
    return samples, time.perf_counter() - started


def load(
    url: str,
    payloads: Sequence[dict[str, Any]],
    *,
    clients: int,
    duration_s: float,
    api_key: str | None = None,
) -> tuple[list[Sample], float]:
    return asyncio.run(run_load(url, payloads, clients=clients, duration_s=duration_s, api_key=api_key))


# --- the payloads -------------------------------------------------------------------------------------
def read_questions(path: Path) -> list[str]:
    """A JSON list of ``{"question"}`` objects (or strings), or JSONL of them."""
    text = path.read_text(encoding="utf-8").strip()
    items = (
        json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    )
    return [item if isinstance(item, str) else item["question"] for item in items]


def kbqa_payloads(
    questions: Sequence[str], *, model: str = "kbqa", max_tokens: int = 128
) -> list[dict[str, Any]]:
    return [
        {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
        for question in questions
    ]


def direct_payloads(
    kbqa_url: str,
    questions: Sequence[str],
    llm_model: str,
    *,
    max_tokens: int = 128,
    api_key: str | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Ask kbqa once per question; the questions it answers from passages, and an LLM request for each.

    The direct request carries kbqa's exact prompt for the question, rebuilt from the passages kbqa
    returned; questions kbqa refuses without calling the LLM are left out of both loads.
    """
    # Imported here: bench.serving imports this module at its top.
    from bench.serving import kbqa_messages

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    kept: list[str] = []
    direct: list[dict[str, Any]] = []
    for question, payload in zip(questions, kbqa_payloads(questions, max_tokens=max_tokens), strict=True):
        response = httpx.post(f"{kbqa_url}/v1/chat/completions", json=payload, headers=headers, timeout=300)
        response.raise_for_status()
        sources = response.json().get("sources") or []
        if not sources:
            continue
        kept.append(question)
        messages = kbqa_messages(question, sources)
        direct.append({"model": llm_model, "messages": messages, "max_tokens": max_tokens})
    return kept, direct


# --- the servers --------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**kbqa: str) -> dict[str, str]:
    """This process's environment without the caller's KBQA_* settings, plus ``kbqa``: a known setup."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KBQA_")}
    env.update(kbqa)
    return env


def _fake_openai() -> Any:
    """``tests.support.fake_openai``, also when this file runs as a script (root not on the path)."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    import tests.support.fake_openai as module

    return module


@contextlib.contextmanager
def fake_llm(
    *,
    token_delay_s: float,
    reply: str = BENCH_REPLY,
    log_path: Path | None = None,
    replies_by_prefix: dict[str, str] | None = None,
) -> Iterator[Any]:
    """The fake OpenAI-compatible server, in its own process so it does not share the clients' GIL.

    ``replies_by_prefix``: other replies for prompts that start with a given text (see
    ``tests.support.fake_openai.build_app``).
    """
    server = _fake_openai().FakeOpenAIServer(
        free_port(),
        reply=reply,
        token_delay_s=token_delay_s,
        log_path=log_path,
        replies_by_prefix=replies_by_prefix,
    )
    with server:
        yield server


@contextlib.contextmanager
def kbqa_app(
    data_dir: Path,
    llm_url: str,
    *,
    config: Path | None = None,
    overrides: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    knowledge: Path = PROJECT_ROOT / "knowledge",
    log_path: Path | None = None,
    startup_timeout_s: float = 300.0,
) -> Iterator[str]:
    """``python app.py`` over ``knowledge`` (ingested first) with ``llm_url``; yields its base URL.

    ``overrides`` are kbqa settings (``top_k`` → ``KBQA_TOP_K``); ``extra_env`` other variables of its
    process (``OMP_NUM_THREADS``, ...).
    """
    kbqa = {"KBQA_LLM_BASE_URL": llm_url, "KBQA_DATA_DIR": str(data_dir)}
    if config is not None:
        kbqa["KBQA_CONFIG"] = str(config)
    kbqa.update({f"KBQA_{key.upper()}": value for key, value in (overrides or {}).items()})
    env = child_env(**kbqa, **(extra_env or {}))
    ingest = [sys.executable, str(PROJECT_ROOT / "ingest" / "run.py"), str(knowledge), "--kb", "default"]
    subprocess.run(ingest, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True)
    with serve_app(env, log_path=log_path, startup_timeout_s=startup_timeout_s) as url:
        yield url


@contextlib.contextmanager
def serve_app(
    env: dict[str, str], *, log_path: Path | None = None, startup_timeout_s: float = 300.0
) -> Iterator[str]:
    """``python app.py`` in its own process with ``env``; yields its base URL once /health answers."""
    port = free_port()
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    command = [sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kbqa did not start (exit {process.poll()}); see {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if log_path:
            log.close()  # type: ignore[union-attr]


def served_model(llm_url: str, api_key: str = "EMPTY") -> str:
    response = httpx.get(f"{llm_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {api_key}"})
    response.raise_for_status()
    return response.json()["data"][0]["id"]


# --- the report ---------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def aligned_table(lines: Sequence[Sequence[str]]) -> str:
    """Rows of cells as plain text columns, the first row a header underlined with dashes."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)


def format_table(rows: Sequence[Summary]) -> str:
    header = (
        "target",
        "mode",
        "requests",
        "failed",
        "p50 ms",
        "p95 ms",
        "max ms",
        "ttft p50",
        "ttft p95",
        "req/s",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.target,
                row.mode,
                str(row.requests),
                str(row.failures),
                _ms(row.p50_s),
                _ms(row.p95_s),
                _ms(row.max_s),
                _ms(row.ttft_p50_s),
                _ms(row.ttft_p95_s),
                f"{row.requests_per_s:.1f}",
            )
        )
    return aligned_table(lines)


def overhead_table(kbqa: Sequence[Summary], direct: Sequence[Summary]) -> str:
    """kbqa minus direct, per mode and percentile: what the app adds to the LLM's own latency."""
    lines = ["app overhead (kbqa − direct), ms:"]
    for mine, theirs in zip(kbqa, direct, strict=True):
        parts = []
        for label, a, b in (
            ("p50", mine.p50_s, theirs.p50_s),
            ("p95", mine.p95_s, theirs.p95_s),
            ("ttft p50", mine.ttft_p50_s, theirs.ttft_p50_s),
            ("ttft p95", mine.ttft_p95_s, theirs.ttft_p95_s),
        ):
            if a is not None and b is not None:
                parts.append(f"{label} {(a - b) * 1000:+.0f}")
        lines.append(f"  {mine.mode:<6} " + ", ".join(parts))
    return "\n".join(lines)


def log_notes(path: Path, limit: int = 10) -> list[str]:
    """The distinct warnings of the kbqa started here (which embedder, reranker off, errors)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    seen = dict.fromkeys(line[:200] for line in lines if line.startswith(("WARNING", "ERROR", "CRITICAL")))
    return list(seen)[:limit]


def machine() -> str:
    load1, load5, _ = os.getloadavg()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs {model}, Python {platform.python_version()}, "
        f"load average {load1:.2f} (1 min) {load5:.2f} (5 min) at start"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per target")
    parser.add_argument("--token-delay", type=float, default=0.02, help="fake LLM: seconds per token")
    parser.add_argument("--llm-url", help="a real OpenAI-compatible LLM server instead of the fake one")
    parser.add_argument("--llm-api-key", default="EMPTY")
    parser.add_argument("--url", help="a running kbqa instead of starting one (give --llm-url to compare)")
    parser.add_argument("--api-key", help="kbqa's KBQA_API_KEY, with --url")
    parser.add_argument("--config", type=Path, help="YAML settings for the kbqa started here (KBQA_CONFIG)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a kbqa setting")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another variable for its process",
    )
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--no-direct", action="store_true", help="skip the direct-to-LLM run")
    parser.add_argument("--json", action="store_true", help="also print the summaries as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    extra_env = dict(item.split("=", 1) for item in args.app_env)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, "-m", "bench.load", *argv])
    print(f"# kbqa load benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"$ {command}")
    print(f"# {machine()}")
    questions = read_questions(args.questions)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kbqa-load-")))
        if args.llm_url:
            llm_url = args.llm_url
            llm_note = f"LLM: {llm_url}"
        elif args.url:
            llm_url = ""
            llm_note = "LLM: whatever the kbqa at --url uses (no --llm-url: no direct run)"
        else:
            server = stack.enter_context(fake_llm(token_delay_s=args.token_delay, log_path=work / "llm.log"))
            llm_url = server.url
            tokens = len(_fake_openai().tokens_of(BENCH_REPLY))
            delay = args.token_delay
            llm_note = f"LLM: fake OpenAI server (own process), {tokens} tokens per answer, {delay} s/token"
        if args.url:
            kbqa_url = args.url.rstrip("/")
        else:
            kbqa_url = stack.enter_context(
                kbqa_app(
                    work / "data",
                    llm_url,
                    config=args.config,
                    overrides=overrides,
                    extra_env=extra_env,
                    log_path=work / "app.log",
                )
            )
        print(f"# {llm_note}")
        print(
            f"# kbqa: {kbqa_url}, config {args.config or 'defaults'}, overrides {overrides or 'none'}", end=""
        )
        print(f", environment {extra_env or 'inherited'}")
        print(f"# {args.clients} clients (half streaming) for {args.duration:.0f} s per target, ", end="")
        print(f"max_tokens {args.max_tokens}")
        direct_run = bool(llm_url) and not args.no_direct
        llm_model = served_model(llm_url, args.llm_api_key) if direct_run else "unused"
        kept, direct = direct_payloads(
            kbqa_url, questions, llm_model, max_tokens=args.max_tokens, api_key=args.api_key
        )
        print(f"# questions: {len(kept)} of {len(questions)} from {args.questions}", end="")
        print(" (the others kbqa refuses without asking the LLM)")
        if not kept:
            print("error: kbqa answered none of the questions from its passages", file=sys.stderr)
            return 1
        samples, took = load(
            f"{kbqa_url}/v1/chat/completions",
            kbqa_payloads(kept, max_tokens=args.max_tokens),
            clients=args.clients,
            duration_s=args.duration,
            api_key=args.api_key,
        )
        rows = summaries("kbqa", samples, took)
        direct_rows: list[Summary] = []
        if direct_run:
            direct_samples, direct_took = load(
                f"{llm_url.rstrip('/')}/chat/completions",
                direct,
                clients=args.clients,
                duration_s=args.duration,
                api_key=args.llm_api_key,
            )
            direct_rows = summaries("direct LLM", direct_samples, direct_took)
        healthy = httpx.get(f"{kbqa_url}/health", timeout=30).status_code == 200
        notes = log_notes(work / "app.log")
    print()
    print(format_table(rows + direct_rows))
    if direct_rows:
        print()
        print(overhead_table(rows, direct_rows))
    for row in rows + direct_rows:
        for error, count in row.errors.items():
            print(f"# {row.target} {row.mode}: {count} × {error}")
    print(f"# kbqa /health after the load: {'200' if healthy else 'FAILED'}")
    for note in notes:
        print(f"# kbqa log: {note}")
    if args.json:
        print(json.dumps([asdict(row) for row in rows + direct_rows], indent=2))
    return 0 if healthy and all(row.failures == 0 for row in rows + direct_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
