"""A `chroma run` server that a test can stop and start again on the same port and data path."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent


class ChromaServer:
    """Unlike the session-wide ``chroma_server`` fixture, this one is meant to go down mid-test."""

    def __init__(self, port: int, path: Path) -> None:
        self.host, self.port, self.path = "127.0.0.1", port, path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> ChromaServer:
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / "server.log").open("ab") as log:
            command = [str(VENV_BIN / "chroma"), "run", "--path", str(self.path / "db")]
            command += ["--host", self.host, "--port", str(self.port)]
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if (
                    httpx.get(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=1).status_code
                    == 200
                ):
                    return self
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (self.path / "server.log").read_text(errors="replace")
                raise RuntimeError(f"chroma server did not start:\n{log_text[-2000:]}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers, as a hung server."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server would not act on SIGTERM
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
