"""``rag.llm``: chat models per sampling, and the managed server's command line (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import llm
from rag.config import Settings
from rag.llm import LLMProvider, ManagedVLLM


def _provider(settings: Settings) -> LLMProvider:
    # A configured model name: no server is asked for it.
    server = {"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m"}
    return LLMProvider(settings.model_copy(update=server))


def test_the_same_sampling_gets_the_same_model_and_other_sampling_its_own(settings: Settings) -> None:
    provider = _provider(settings)
    condense = provider.chat_model(temperature=0.0, max_tokens=96)
    assert provider.chat_model(temperature=0.0, max_tokens=96) is condense
    answer = provider.chat_model(temperature=0.7, max_tokens=None, top_p=0.9, stop=["\n\n"])
    assert answer is not condense
    assert provider.chat_model(temperature=0.7, top_p=0.9, stop=["\n\n"]) is answer  # None = default
    assert (answer.temperature, answer.top_p, answer.stop) == (0.7, 0.9, ["\n\n"])
    assert answer.max_tokens == settings.llm_max_tokens
    assert provider.chat_model(temperature=0.7, top_p=0.9, stop=["END"]) is not answer


def test_kept_models_are_bounded(settings: Settings) -> None:
    provider = _provider(settings)
    first = provider.chat_model(max_tokens=1)
    for tokens in range(2, LLMProvider._CACHED_MODELS + 2):
        provider.chat_model(max_tokens=tokens)
    assert len(provider._models) == LLMProvider._CACHED_MODELS
    assert provider.chat_model(max_tokens=1) is not first  # the oldest went first


def _cpu_command(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, flags: set[str], cores: int = 16, **update: object
) -> list[str]:
    monkeypatch.setattr(llm, "_gpu_present", lambda: False)
    monkeypatch.setattr(llm, "cpu_flags", lambda: flags)
    monkeypatch.setattr(llm, "usable_cores", lambda: cores)
    return ManagedVLLM(settings.model_copy(update={"llm_model": "/models/m", **update})).command()


def test_the_managed_server_gets_the_cpus_dtype_unless_one_is_configured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = _cpu_command(settings, monkeypatch, {"avx2"})
    assert command[command.index("--dtype") + 1] == "float32"
    assert command[command.index("--block-size") + 1] == "32"  # prefixes reused in 32-token blocks
    assert command[0] == str(settings.llm_python)  # vLLM's own core reservation
    command = _cpu_command(settings, monkeypatch, {"avx512_bf16"})
    assert command[command.index("--dtype") + 1] == "bfloat16"
    command = _cpu_command(settings, monkeypatch, {"avx2"}, llm_dtype="bfloat16", llm_cpu_reserved_cores=0)
    assert command[command.index("--dtype") + 1] == "bfloat16"
    assert command[:3] == ["env", "VLLM_CPU_NUM_OF_RESERVED_CPU=0", str(settings.llm_python)]


def test_the_managed_cpu_server_guesses_tokens_from_the_prompt_unless_switched_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = _cpu_command(settings, monkeypatch, {"avx512_bf16"})
    lookup = json.loads(command[command.index("--speculative-config") + 1])
    assert lookup == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_max": 4,
        "prompt_lookup_min": 2,
    }
    command = _cpu_command(settings, monkeypatch, {"avx512_bf16"}, llm_cpu_speculative_tokens=0)
    assert "--speculative-config" not in command
    monkeypatch.setattr(llm, "_gpu_present", lambda: True)  # measured on a CPU only
    gpu_command = ManagedVLLM(settings.model_copy(update={"llm_model": "/m"})).command()
    assert "--speculative-config" not in gpu_command


def test_on_two_cores_the_managed_cpu_server_computes_in_its_engine_process(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where vLLM's worker process would get one core, the engine process runs the model on one thread;
    more cores keep the bound worker, and either choice can be configured."""
    one_process = ["env", "VLLM_ENABLE_V1_MULTIPROCESSING=0", "OMP_NUM_THREADS=1", str(settings.llm_python)]
    for cores in (1, 2):
        assert _cpu_command(settings, monkeypatch, {"avx2"}, cores=cores)[:4] == one_process
    assert _cpu_command(settings, monkeypatch, {"avx2"}, cores=3)[0] == str(settings.llm_python)
    # a core reservation configures the worker's binding: the worker stays
    command = _cpu_command(settings, monkeypatch, {"avx2"}, cores=2, llm_cpu_reserved_cores=0)
    assert command[:3] == ["env", "VLLM_CPU_NUM_OF_RESERVED_CPU=0", str(settings.llm_python)]
    command = _cpu_command(settings, monkeypatch, {"avx2"}, cores=16, llm_cpu_one_process=True)
    assert command[:4] == one_process
    command = _cpu_command(settings, monkeypatch, {"avx2"}, cores=2, llm_cpu_one_process=False)
    assert command[0] == str(settings.llm_python)
    monkeypatch.setattr(llm, "_gpu_present", lambda: True)  # a GPU server is vLLM's own business
    assert ManagedVLLM(settings.model_copy(update={"llm_model": "/models/m"})).command()[0] == str(
        settings.llm_python
    )


def test_an_error_inside_the_stream_and_a_stalled_stream_are_the_llm_being_unavailable(
    settings: Settings,
) -> None:
    """vLLM reports a failed generation as an error event inside its stream (openai's base APIError),
    and langchain-openai gives up on a stream whose next piece does not come: both are 503s, not 500s."""
    import httpx
    import openai
    from langchain_openai.chat_models._client_utils import StreamChunkTimeoutError

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    for error in (openai.APIError("engine overloaded", request, body=None), StreamChunkTimeoutError(120.0)):
        with (
            pytest.raises(llm.LLMUnavailableError, match=r"127\.0\.0\.1:9"),
            llm.llm_errors("http://127.0.0.1:9/v1"),
        ):
            raise error
    model = _provider(settings.model_copy(update={"llm_timeout_s": 300.0})).chat_model()
    assert model.stream_chunk_timeout == 300.0  # langchain-openai's own 120 s would cut it short


def test_stopping_the_managed_server_ends_its_whole_process_group(settings: Settings, tmp_path: Path) -> None:
    """vLLM's engine runs in processes of its own; one left when the leader exited first must go too."""
    import os
    import subprocess
    import sys
    import time

    child_pid = tmp_path / "child.pid"
    leader = (
        "import subprocess, sys; "
        f"child = subprocess.Popen(['sleep', '60']); open({str(child_pid)!r}, 'w').write(str(child.pid))"
    )
    from tests.conftest import free_port

    server = ManagedVLLM(settings.model_copy(update={"llm_model": "/models/m", "llm_port": free_port()}))
    server._process = subprocess.Popen([sys.executable, "-c", leader], start_new_session=True)
    server._process.wait(30)  # the leader has exited; its child lives on in the group
    pid = int(child_pid.read_text())
    os.kill(pid, 0)
    server.stop(timeout_s=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init to reap it is gone too
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the engine process outlived stop()")
    with pytest.raises(llm.LLMUnavailableError, match="stopped"):
        server.start()  # stopped: a late start does not launch it


def test_a_model_the_server_no_longer_serves_is_asked_for_again(settings: Settings) -> None:
    from tests.conftest import free_port
    from tests.support.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(free_port(), model="new-model") as server:
        provider = LLMProvider(settings.model_copy(update={"llm_base_url": server.url, "llm_model": None}))
        provider._model = "old-model"  # what the server served when it was first asked
        old = provider.chat_model()
        assert provider.check() == "new-model"  # /health sees the swap, and the name is asked again
        assert provider.model_name() == "new-model" and provider.chat_model() is not old
    configured = _provider(settings)
    configured.forget_model()
    assert configured.model_name() == "m"  # a configured name is never forgotten


def test_a_chat_told_the_model_does_not_exist_forgets_the_name(settings: Settings) -> None:
    import httpx
    import openai

    from rag.chat import ChatService

    provider = LLMProvider(
        settings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": None})
    )
    provider._model = "old-model"
    chat = ChatService.__new__(ChatService)
    chat.llm = provider
    response = httpx.Response(404, request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
    gone = openai.NotFoundError("The model `old-model` does not exist.", response=response, body=None)
    with pytest.raises(llm.LLMUnavailableError), chat._model_swaps(), llm.llm_errors(provider.base_url):
        raise gone
    assert provider._model is None
