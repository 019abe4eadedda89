"""`python ingest/run.py` as users and scripts call it: summary, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rag.config import PROJECT_ROOT
from tests.conftest import TEST_PROFILE, subprocess_env
from tests.support.sample_docs import write_pdf

PROJECT = PROJECT_ROOT


def _ingest(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "ingest/run.py", *args, "--data-dir", str(data), "--quiet"],
        capture_output=True,
        text=True,
        env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE)),
        cwd=PROJECT,
        timeout=300,
    )


def test_summary_lists_counts_and_each_failure(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# 标题\n\n好的文档内容。", encoding="utf-8")
    write_pdf(docs / "good.pdf", ["A good PDF page."])
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (docs / "notes.xyz").write_text("?", encoding="utf-8")
    result = _ingest(str(docs), "--kb", "runkb", data=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 added, 0 updated, 0 unchanged, 0 deleted, 2 failed, 1 skipped" in out
    assert "bad.pdf: not a readable PDF" in out
    assert "binary.txt: binary data, not text" in out
    assert "notes.xyz: unsupported file type .xyz" in out

    again = _ingest(str(docs), "--kb", "runkb", "--json", data=tmp_path / "data")
    assert again.returncode == 0
    summary = json.loads(again.stdout)
    assert (summary["added"], summary["unchanged"], summary["chunks_written"]) == (0, 2, 0)


def test_missing_folder_exits_2(tmp_path: Path) -> None:
    result = _ingest(str(tmp_path / "nope"), data=tmp_path / "data")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_nothing_ingestable_exits_1(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.txt").write_bytes(b"")
    result = _ingest(str(docs), data=tmp_path / "data")
    assert result.returncode == 1
    assert "empty.txt: empty document" in result.stdout
    assert "nothing could be ingested" in result.stderr
    # ... and no empty knowledge base is left behind to be listed and chosen.
    stats = subprocess.run(
        [sys.executable, "-m", "rag", "stats", "--json", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE)),
        cwd=PROJECT,
        timeout=300,
    )
    assert stats.returncode == 0 and json.loads(stats.stdout) == [], stats.stderr


def test_invalid_kb_name_exits_2(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    result = _ingest(str(tmp_path / "docs"), "--kb", "a/b", data=tmp_path / "data")
    assert result.returncode == 2
    assert "invalid knowledge base name" in result.stderr


def test_config_file_is_read_and_a_bad_one_exits_2(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# 通知\n\n周五下午停电。", encoding="utf-8")
    config = tmp_path / "kbqa.yaml"
    config.write_text(TEST_PROFILE.read_text(encoding="utf-8") + "default_kb: fromyaml\n", encoding="utf-8")
    result = _ingest(str(docs), "--config", str(config), data=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "knowledge base 'fromyaml'" in result.stdout

    config.write_text("chunk_sise: 300\n", encoding="utf-8")
    bad = _ingest(str(docs), "--config", str(config), data=tmp_path / "data")
    assert bad.returncode == 2
    assert "chunk_sise" in bad.stderr
