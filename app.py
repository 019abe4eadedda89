"""``python app.py [--host H] [--port P]``: the web UI at ``/`` and the API under ``/v1``, one process.

With ``KBQA_LLM_BASE_URL`` unset the app runs the local vLLM server itself (as ``python -m rag llm``
does) in the background and stops it on exit; the UI, ``/health`` and knowledge-base management
serve from the first second, and chat answers 503 until the LLM is ready.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from gradio.routes import App as GradioApp
from starlette.routing import Mount

from rag.access import AccessGate, GradioSessions
from rag.api import build_api
from rag.chat import ChatService
from rag.config import Settings, load_settings
from rag.llm import LLMProvider, LLMUnavailableError, ManagedVLLM, list_models
from rag.service import KnowledgeBaseService
from rag.ui import build_ui

log = logging.getLogger("kbqa.app")
AUTH_MESSAGE = "Sign in with any user name and the server's API key (KBQA_API_KEY)."


class BackgroundLLM:
    """Starts the managed vLLM server on a thread, so the app serves while the model loads."""

    def __init__(self, settings: Settings, llm: LLMProvider) -> None:
        self.server = ManagedVLLM(settings)
        self.llm = llm  # told why the server did not start, so requests say that, not "still loading"
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kbqa-vllm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        settings = self.server.settings
        try:
            list_models(self.server.url, settings.llm_api_key, timeout_s=1.0)
        except LLMUnavailableError:
            pass
        else:
            log.warning("an LLM server already answers at %s: using it", self.server.url)
            return
        try:
            self.server.start()
            self.server.wait_ready()
        except Exception as error:  # no LLM environment, a missing binary, a port taken, a crash
            if not self._stopping.is_set():
                self.llm.startup_failure = str(error) or type(error).__name__
                log.error("the local LLM server did not start: %s", error)
            return
        log.warning("LLM ready: %s", self.server.url)

    def stop(self) -> None:
        self._stopping.set()
        self.server.stop()


def create_app(
    settings: Settings,
    *,
    manage_llm: bool | None = None,
    knowledge: KnowledgeBaseService | None = None,
    llm: LLMProvider | None = None,
) -> FastAPI:
    """The whole app; ``manage_llm`` (default: no ``llm_base_url`` set) runs vLLM alongside it.

    ``knowledge`` and ``llm`` let tests share a loaded embedder or put a fake chat model behind the
    real HTTP stack.
    """
    owns_knowledge = knowledge is None
    knowledge = knowledge or KnowledgeBaseService(settings)
    llm = llm or LLMProvider(settings)
    chat = ChatService(knowledge, llm)
    background = (
        BackgroundLLM(settings, llm)
        if (manage_llm if manage_llm is not None else not settings.llm_base_url)
        else None
    )

    def warm_up() -> None:
        """Load the embedder and open Chroma now, so the first question does not wait ~5 s for them."""
        try:
            knowledge.embeddings.embed_query("warm-up")
            knowledge.client.heartbeat()
        except Exception as error:  # the first request will report it properly
            log.warning("warm-up failed: %s", error)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=warm_up, name="kbqa-warm-up", daemon=True).start()
        if background is not None:
            background.start()
        try:
            yield
        finally:
            try:
                if owns_knowledge:
                    knowledge.close()
            finally:  # vLLM runs in its own session: nothing else would stop it
                if background is not None:
                    background.stop()

    api = build_api(settings, knowledge, chat)
    api.router.lifespan_context = lifespan
    ui = build_ui(settings, knowledge, chat)

    def sign_in(_user: str, password: str) -> bool:
        return secrets.compare_digest(password.encode(), (settings.api_key or "").encode())

    auth = sign_in if settings.api_key else None
    app = gr.mount_gradio_app(
        api,
        ui,
        path="/",
        auth=auth,
        auth_message=AUTH_MESSAGE,
        footer_links=["api"],
        ssr_mode=False,
        max_file_size=settings.max_upload_bytes,  # Gradio keeps UI uploads in its temp folder first
    )
    if settings.api_key:
        # Gradio leaves some of its routes unchecked; the gate makes every route but the sign-in page
        # and /health need the key or a signed-in session (see rag.access).
        gradio_app = next(
            route.app for route in app.routes if isinstance(route, Mount) and isinstance(route.app, GradioApp)
        )
        sessions = GradioSessions(gradio_app)
        app.add_middleware(AccessGate, api_key=settings.api_key, ui=sessions, auth_message=AUTH_MESSAGE)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="Serve the kbqa web UI and API.")
    parser.add_argument("--host", help="listen address (KBQA_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (KBQA_PORT, default 8000)")
    parser.add_argument("--data-dir", type=Path, help="where kbqa keeps its state (KBQA_DATA_DIR)")
    parser.add_argument("--config", type=Path, help="YAML settings file (KBQA_CONFIG)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(host=args.host, port=args.port, data_dir=args.data_dir, config=args.config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app = create_app(settings)
    print(
        f"kbqa: web UI http://{settings.host}:{settings.port}/  API http://{settings.host}:{settings.port}/v1",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
