"""Shared fixtures: the test settings profile, the real embedder, real Chroma (embedded and server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.pipeline import Ingestor
from rag.config import PROJECT_ROOT, Settings, load_settings
from rag.embeddings import SentenceTransformerEmbeddings, load_embeddings

TEST_PROFILE = Path(__file__).parent / "settings-test.yaml"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(**kbqa: str) -> dict[str, str]:
    """This process's environment without any KBQA_* setting of the caller's shell, plus ``kbqa``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KBQA_")}
    env.update(kbqa)
    return env


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(config=TEST_PROFILE, data_dir=data_dir, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture(scope="session")
def embeddings() -> SentenceTransformerEmbeddings:
    return load_embeddings(load_settings(config=TEST_PROFILE))


@pytest.fixture
def ingestor(settings: Settings, embeddings: SentenceTransformerEmbeddings) -> Ingestor:
    return Ingestor(settings, embeddings)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (`chroma run` from the chromadb package) on loopback."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = (path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "chroma"),
            "run",
            "--path",
            str(path / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("chroma server did not start: " + (path / "server.log").read_text(errors="replace"))
        time.sleep(0.3)
    yield "127.0.0.1", port
    process.terminate()
    process.wait(15)
    log.close()


def knowledge_dir() -> Path:
    return PROJECT_ROOT / "knowledge"
