"""Who may use the app when ``KBQA_API_KEY`` is set: one gate in front of the API and the web UI.

The ``/v1`` routes check the key themselves and Gradio checks its sign-in cookie on most of its routes,
but "most" is the problem: each Gradio release adds routes, some of which check nothing. So the gate
denies by default. Only ``PUBLIC_PATHS`` / ``PUBLIC_PREFIXES`` (the health probe, the API's schema, and
what the sign-in page itself needs) pass without credentials; everything else, including a route a
future Gradio adds, needs the key as ``Authorization: Bearer KEY`` (or ``X-API-Key``) or a signed-in UI
session. Refusals come before the request body is read, in OpenAI's shape under ``/v1`` and in the
shape Gradio's sign-in page understands elsewhere.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Protocol

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.api import error_body

#: Reachable without the key. /health stays open for load balancers and docker-compose's health check
#: (it tells whether Chroma and the LLM answer, nothing about the documents); the OpenAPI schema and its
#: viewers describe the API without touching data; the rest is the sign-in page and its static files.
PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/",
        "/login",
        "/login/",
        "/logout",
        "/favicon.ico",
        "/robots.txt",
        "/manifest.json",
        "/theme.css",
        "/pwa_icon",
        "/gradio_api/theme.css",
        "/gradio_api/login_check",
        "/gradio_api/login_check/",
        "/gradio_api/startup-events",
        "/gradio_api/app_id",
        "/gradio_api/app_id/",
        "/gradio_api/user",
        "/gradio_api/user/",
        "/gradio_api/token",
        "/gradio_api/token/",
    }
)
PUBLIC_PREFIXES = ("/static/", "/assets/", "/svelte/", "/pwa_icon/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_api(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def presented_key(connection: HTTPConnection) -> str:
    """The key a client sent: ``Authorization: Bearer KEY``, else ``X-API-Key: KEY``."""
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return connection.headers.get("x-api-key", "")


def key_matches(given: str, key: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode("utf-8"))


class UISessions(Protocol):
    """What the gate needs to know about the web UI's sign-in sessions."""

    def signed_in(self, cookies: dict[str, str]) -> bool: ...

    def cookie_for_key(self) -> str:
        """A ``name=value`` session cookie that makes the UI treat a request as signed in."""
        ...


class GradioSessions:
    """Gradio's own sessions: its sign-in cookie names a token in the mounted app's ``tokens``.

    A request that carries the key instead of a cookie gets a session cookie added on its way in, so
    scripts (``gradio_client`` with ``headers=``) can use the UI's API with the key alone.
    """

    def __init__(self, gradio_app: Any) -> None:
        self._app = gradio_app
        self._token = secrets.token_urlsafe(32)
        gradio_app.tokens[self._token] = "api-key"

    def _names(self) -> tuple[str, str]:
        cookie_id = self._app.cookie_id
        return f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"

    def signed_in(self, cookies: dict[str, str]) -> bool:
        return any(cookies.get(name) in self._app.tokens for name in self._names())

    def cookie_for_key(self) -> str:
        return f"{self._names()[1]}={self._token}"


class AccessGate:
    """ASGI middleware in front of the whole app; it does nothing while no key is configured."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, ui: UISessions, auth_message: str) -> None:
        self.app = app
        self.api_key = api_key
        self.ui = ui
        self.auth_message = auth_message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.api_key or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if key_matches(presented_key(connection), self.api_key):
            if not is_api(scope["path"]):
                scope = _with_cookie(scope, self.ui.cookie_for_key())
            await self.app(scope, receive, send)
            return
        if not is_api(scope["path"]) and self.ui.signed_in(dict(connection.cookies)):
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "sign in or send the API key"})
            return
        if is_api(scope["path"]):
            message = "missing or wrong API key (send 'Authorization: Bearer KEY')"
            body = error_body(401, message, "invalid_api_key")
        else:  # Gradio's own shape: its page shows auth_message above the sign-in form
            body = {"detail": {"error": "Not authenticated", "auth_message": self.auth_message}}
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _with_cookie(scope: Scope, cookie: str) -> Scope:
    """The scope with ``cookie`` added to its Cookie header (a new scope; the caller's is untouched)."""
    headers = [(name, value) for name, value in scope["headers"] if name != b"cookie"]
    existing = [value.decode("latin-1") for name, value in scope["headers"] if name == b"cookie"]
    headers.append((b"cookie", "; ".join([*existing, cookie]).encode("latin-1")))
    return {**scope, "headers": headers}
