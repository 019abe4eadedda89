"""A small OpenAI-compatible chat server standing in for vLLM in fault and load tests.

It runs as its own process (``python -m tests.support.fake_openai --port N``) for two reasons: a test
can kill it with SIGKILL the way a crashed vLLM dies (sockets closed mid-stream, port refusing
connections) and start it again on the same port; and under load its work does not compete for the
test process's GIL, so what is measured is kbqa, not the stand-in. ``FakeOpenAIServer`` manages that
process; ``build_app`` is the server itself: ``/v1/models`` and ``/v1/chat/completions`` (JSON or SSE
chunks as vLLM sends them), one fixed reply (or another for prompts starting with a given text), an
optional delay per token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "fake-model"
DEFAULT_REPLY = "The shuttle bus has 33 seats [1]."
# A CJK character is one token, as for Qwen; other text splits into words with their trailing space.
_TOKEN = re.compile(
    r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+\s*|\s+"
)


def tokens_of(text: str) -> list[str]:
    return _TOKEN.findall(text)


def build_app(
    reply: str = DEFAULT_REPLY,
    *,
    token_delay_s: float = 0.0,
    model: str = DEFAULT_MODEL,
    replies_by_prefix: dict[str, str] | None = None,
    max_prompt_chars: int | None = None,
) -> FastAPI:
    """The server: every chat request gets ``reply`` (cut at ``max_tokens``), ``token_delay_s`` per token.

    A prompt of more than ``max_prompt_chars`` characters is refused as vLLM refuses one longer than
    its context (HTTP 400, its message and body shape).

    ``replies_by_prefix`` answers a request whose last message starts with a key with that key's reply
    instead: a benchmark gives kbqa's query-translation prompt a question-sized answer, as a real model
    does, so that kbqa's extra search is timed with the text it gets in production.
    """
    app = FastAPI(title="fake OpenAI-compatible server")
    default_tokens = tokens_of(reply)
    special = {prefix: tokens_of(text) for prefix, text in (replies_by_prefix or {}).items()}

    def reply_for(messages: Any) -> list[str]:
        last = messages[-1] if isinstance(messages, list) and isinstance(messages[-1], dict) else {}
        content = str(last.get("content", ""))
        found = (tokens for prefix, tokens in special.items() if content.startswith(prefix))
        return next(found, default_tokens)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": "fake"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("messages"):
            error = {"message": "messages is required", "type": "BadRequestError", "param": None, "code": 400}
            return JSONResponse({"error": error}, status_code=400)
        reply_tokens = reply_for(body["messages"])
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(reply_tokens)
        parts = reply_tokens[: int(limit)]
        finish_reason = "length" if len(parts) < len(reply_tokens) else "stop"
        prompt_chars = sum(len(str(message.get("content", ""))) for message in body["messages"])
        if max_prompt_chars is not None and prompt_chars > max_prompt_chars:
            message = (
                f"This model's maximum context length is {max_prompt_chars} tokens. However, your request "
                f"has {prompt_chars} input tokens. Please reduce the length of the input messages."
            )
            refusal = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
            return JSONResponse({**refusal, "param": None}, status_code=400)
        usage = {
            "prompt_tokens": max(1, prompt_chars // 2),
            "completion_tokens": len(parts),
            "total_tokens": max(1, prompt_chars // 2) + len(parts),
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.get("stream"):
            await asyncio.sleep(token_delay_s * len(parts))
            message = {"role": "assistant", "content": "".join(parts)}
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
                ],
                "usage": usage,
            }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        async def stream() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for part in parts:
                if token_delay_s:
                    await asyncio.sleep(token_delay_s)
                yield chunk({"content": part})
            yield chunk({}, finish_reason)
            if include_usage:
                data = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
                data.update({"model": model, "choices": [], "usage": usage})
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


class FakeOpenAIServer:
    """The fake server as a child process on a fixed port, so it can be killed and started again there."""

    def __init__(
        self,
        port: int,
        *,
        reply: str = DEFAULT_REPLY,
        token_delay_s: float = 0.0,
        model: str = DEFAULT_MODEL,
        log_path: Path | None = None,
        replies_by_prefix: dict[str, str] | None = None,
        max_prompt_chars: int | None = None,
    ) -> None:
        self.port, self.reply, self.token_delay_s, self.model = port, reply, token_delay_s, model
        self.replies_by_prefix = dict(replies_by_prefix or {})
        self.max_prompt_chars = max_prompt_chars
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "tests.support.fake_openai",
            "--port", str(self.port),
            "--reply", self.reply,
            "--token-delay", str(self.token_delay_s),
            "--model", self.model,
        ]  # fmt: skip
        for prefix, text in self.replies_by_prefix.items():
            command += ["--reply-when", prefix, text]
        if self.max_prompt_chars is not None:
            command += ["--max-prompt-chars", str(self.max_prompt_chars)]
        return command

    def start(self, timeout_s: float = 30.0) -> FakeOpenAIServer:
        """Start it and wait until ``/v1/models`` answers."""
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                self.command(),
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/models", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the fake OpenAI server on port {self.port} did not start")
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: open connections are cut, the port refuses new ones at once."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible chat server (tests, benchmarks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--reply-when",
        nargs=2,
        action="append",
        default=[],
        metavar=("PREFIX", "REPLY"),
        help="answer REPLY when the last message starts with PREFIX (repeatable)",
    )
    parser.add_argument("--max-prompt-chars", type=int, help="refuse longer prompts as vLLM refuses them")
    args = parser.parse_args(argv)
    app = build_app(
        args.reply,
        token_delay_s=args.token_delay,
        model=args.model,
        replies_by_prefix=dict(args.reply_when),
        max_prompt_chars=args.max_prompt_chars,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
