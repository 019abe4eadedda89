"""Queries during an ingestion, and a second ingestion of the same knowledge base, over real HTTP.

The app ingests an upload of a hundred files on its job thread while clients keep asking; every
answer must come back and be grounded in a document that exists. Meanwhile a second writer of the same
knowledge base — the CLI in another process, or a document deletion through the API — is refused at
once with a message that says why, and succeeds once the first ingestion has ended.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.config import PROJECT_ROOT
from rag.embeddings import SentenceTransformerEmbeddings
from tests.conftest import TEST_PROFILE, subprocess_env
from tests.support.servers import LEAVE, FakeLLM, serve_knowledge, wait_job

UPLOADS = 100


def _upload_files() -> list[tuple[str, tuple[str, io.BytesIO, str]]]:
    files = []
    for number in range(UPLOADS):
        text = f"# 第{number}号通知\n\n" + "".join(
            f"第{number}号通知第{i}条：{i + number}号楼的开放时间调整为{i + 7}点。" for i in range(8)
        )
        files.append(("files", (f"notice{number:03d}.md", io.BytesIO(text.encode()), "text/markdown")))
    return files


@pytest.fixture
def server(tmp_path: Path, embeddings: SentenceTransformerEmbeddings) -> Iterator[tuple[str, Path]]:
    llm = FakeLLM("33 seats [1].")
    with serve_knowledge(tmp_path, embeddings, llm, more_documents={"leave.md": LEAVE}) as running:
        yield running.url, running.settings.data_dir


def _ask(url: str, question: str) -> httpx.Response:
    body = {"model": "kbqa", "messages": [{"role": "user", "content": question}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def test_queries_work_and_second_writers_are_refused_during_an_ingestion(server: tuple[str, Path]) -> None:
    url, data_dir = server
    documents_url = f"{url}/v1/knowledge_bases/default/documents"
    response = httpx.post(documents_url, files=_upload_files(), timeout=60)
    assert response.status_code == 202, response.text
    job = response.json()

    answered = 0
    refused_cli = refused_api = False
    while httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"] in ("queued", "running"):
        reply = _ask(url, "How many seats has the shuttle bus?")
        assert reply.status_code == 200, reply.text
        sources = reply.json()["sources"]
        assert sources and sources[0]["source"] == "shuttle.txt"
        answered += 1
        if not refused_api:
            deleted = httpx.delete(f"{documents_url}/leave.md")
            if httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"] == "running":
                assert deleted.status_code == 409, deleted.text
                error = deleted.json()["error"]
                assert error["code"] == "knowledge_base_busy" and "try again" in error["message"]
                refused_api = True
        if not refused_cli:
            cli = subprocess.run(
                [sys.executable, "ingest/run.py", str(data_dir.parent / "docs"), "--data-dir", str(data_dir)],
                capture_output=True,
                text=True,
                env=subprocess_env(KBQA_CONFIG=str(TEST_PROFILE)),
                cwd=PROJECT_ROOT,
                timeout=120,
            )
            if httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"] == "running":
                assert cli.returncode == 3, cli.stderr
                assert "is being written by another ingestion" in cli.stderr
                assert "pid" in cli.stderr  # names the holder
                refused_cli = True
    assert refused_api and refused_cli and answered >= 3, (refused_api, refused_cli, answered)

    finished = wait_job(url, job)
    assert finished["status"] == "succeeded" and finished["summary"]["added"] == UPLOADS
    # Both writes that were refused now go through, and the new documents answer.
    assert httpx.delete(f"{documents_url}/leave.md").status_code == 200
    reply = _ask(url, "第42号通知里，43号楼几点开放？")  # 第42号通知第1条：43号楼8点开放
    assert reply.status_code == 200
    assert any(source["source"] == "notice042.md" for source in reply.json()["sources"])
    listed = {document["source"] for document in httpx.get(documents_url).json()["data"]}
    assert len(listed) == UPLOADS + 1 and "leave.md" not in listed
