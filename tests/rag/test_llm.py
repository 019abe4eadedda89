"""``rag.llm.LLMProvider``: chat models per sampling, shared between requests (no server needed)."""

from __future__ import annotations

from rag.config import Settings
from rag.llm import LLMProvider


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
