"""Crash safety of `ingest/run.py`: SIGKILL at several moments, re-run, and the state equals one clean run.

The runs are real processes (the CLI users run) over a corpus of a few hundred files; the kill moments
are found by watching the run's own state from outside (its lock, its manifest rows), so they land at
the same phase on any machine: before the first file, mid-way while files are being embedded and
written, while a file's row is pending (its chunks half written), and after the last file (while the
keyword index is being rebuilt). "Equal" covers everything the knowledge base is made of: chunk ids,
texts and metadata in Chroma, the record manager's keys, the file manifest, and the keyword index.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag.config import PROJECT_ROOT
from tests.conftest import TEST_PROFILE, subprocess_env

pytestmark = pytest.mark.slow

KB = "crashkb"
FILES = 300
_TOPICS = ["报销", "年假", "门禁", "会议室", "打印机", "班车", "食堂", "VPN", "laptop", "badge", "parking"]


def _text(number: int, version: int = 0) -> tuple[str, str]:
    """(suffix, text) of corpus file ``number``: Chinese or English, two or three chunks, all distinct."""
    rng = random.Random(number * 7919 + version)
    topic = _TOPICS[number % len(_TOPICS)]
    if number % 3 == 0:
        sentences = [
            f"Policy {number}.{i} (rev {version}): the {topic} rule for team {rng.randint(1, 99)} "
            f"allows {rng.randint(2, 40)} requests per month, approved by desk {rng.randint(100, 999)}."
            for i in range(5)
        ]
        return ".txt", " ".join(sentences)
    sentences = [
        f"第{number}号规定第{i}条（版本{version}）：{topic}事项由{rng.randint(1, 30)}号窗口办理，"
        f"每月上限{rng.randint(2, 40)}次，联系电话{rng.randint(1000, 9999)}。"
        for i in range(6)
    ]
    return ".md", f"# 规定 {number}\n\n" + "\n\n".join(sentences)


def _write(folder: Path, number: int, version: int = 0, prefix: str = "doc") -> Path:
    suffix, text = _text(number, version)
    path = folder / f"part{number % 5}" / f"{prefix}{number:04d}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _start(folder: Path, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "ingest/run.py", str(folder), "--kb", KB, "--data-dir", str(data), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE)),
        cwd=PROJECT_ROOT,
    )


def _run(folder: Path, data: Path) -> str:
    process = _start(folder, data)
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    return out


def _manifest(data: Path) -> list[tuple[str, str | None]]:
    """(source, sha256) rows of the run's manifest as another process sees them now."""
    db = data / "index.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT source, sha256 FROM kbqa_files WHERE kb = ?", (KB,)).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet, or the database is busy this instant
        return []


Moment = Callable[[Path], bool]


def _kill_when(folder: Path, data: Path, moment: Moment) -> bool:
    """Run an ingestion and SIGKILL it at ``moment``; False if it finished before that moment came."""
    process = _start(folder, data)
    deadline = time.monotonic() + 900
    while process.poll() is None:
        assert time.monotonic() < deadline, "ingestion hung"
        if moment(data):
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            return True
        time.sleep(0.01)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return False


def _lock_taken(data: Path) -> bool:
    return (data / "locks" / f"{KB}.owner").exists()


def _rows_at_least(count: int, *, pending: bool = False) -> Moment:
    def moment(data: Path) -> bool:
        rows = _manifest(data)
        return len(rows) >= count and (not pending or any(sha is None for _, sha in rows))

    return moment


def _all_done(count: int) -> Moment:
    def moment(data: Path) -> bool:
        rows = _manifest(data)
        return len(rows) == count and all(sha is not None for _, sha in rows)

    return moment


def _state(data: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.kb_state", str(data), KB],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def _assert_consistent(state: dict[str, Any], sources: set[str]) -> None:
    """One state on its own: every file in, nothing orphaned, every index agreeing with Chroma."""
    chunk_ids = set(state["chunks"])
    assert {chunk["metadata"]["source"] for chunk in state["chunks"].values()} == sources
    assert {key for key, _ in state["records"]} == chunk_ids  # record manager == Chroma, both ways
    assert len(state["records"]) == len(chunk_ids)
    assert {source for source, *_ in state["files"]} == sources
    assert all(sha is not None for _, sha, *_ in state["files"])  # no pending row left behind
    assert set(state["keyword_ids"]) == chunk_ids and state["keyword_count"] == len(chunk_ids)
    assert not state["keyword_stale"]


def _sources(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "docs"
    for number in range(FILES):
        _write(folder, number)
    return folder


@pytest.fixture(scope="module")
def clean_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("clean") / "data"
    _run(corpus, data)
    return data


def test_killed_first_run_recovers_to_the_clean_state(corpus: Path, clean_run: Path, tmp_path: Path) -> None:
    expected = _state(clean_run)
    _assert_consistent(expected, _sources(corpus))
    assert len(expected["chunks"]) >= 2 * FILES

    data = tmp_path / "data"
    hits = {
        "early (lock taken, before the first file)": _kill_when(corpus, data, _lock_taken),
        "mid-run (30% of files)": _kill_when(corpus, data, _rows_at_least(FILES * 3 // 10)),
        "mid-write (a pending file at 60%)": _kill_when(
            corpus, data, _rows_at_least(FILES * 6 // 10, pending=True)
        ),
        "late (every file done, keyword index next)": _kill_when(corpus, data, _all_done(FILES)),
    }
    print("kills:", json.dumps(hits))
    # The first three moments come long before the run can end; the last is a race it usually wins.
    assert all(list(hits.values())[:3]), hits
    _run(corpus, data)
    assert _state(data) == expected


def test_killed_update_run_recovers_to_the_clean_state(corpus: Path, clean_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    shutil.copytree(corpus, folder)
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    shutil.copytree(clean_run, reference)
    shutil.copytree(clean_run, crashed)
    changed = range(0, FILES, 10)  # 30 files edited
    deleted = range(5, FILES, 20)  # 15 files removed
    for number in changed:
        _write(folder, number, version=1)
    for number in deleted:
        path = _write(folder, number)  # same path as in the corpus
        path.unlink()
    for number in range(FILES, FILES + 15):  # 15 files added
        _write(folder, number, prefix="new")

    _run(folder, reference)
    expected = _state(reference)
    _assert_consistent(expected, _sources(folder))

    def new_files(count: int) -> Moment:
        return lambda data: sum("/new" in source for source, _ in _manifest(data)) >= count

    hits = {
        "mid-write (first changed file pending)": _kill_when(
            folder, crashed, lambda data: any(sha is None for _, sha in _manifest(data))
        ),
        "mid-run (8 of 15 new files)": _kill_when(folder, crashed, new_files(8)),
        "deleting (every new file in, a removed one gone)": _kill_when(
            folder, crashed, lambda data: new_files(15)(data) and len(_manifest(data)) < FILES + 15
        ),
    }
    print("kills:", json.dumps(hits))
    assert all(list(hits.values())[:2]), hits
    _run(folder, crashed)
    assert _state(crashed) == expected
