"""Who may talk to ``wabulk serve``: the token, the cookie, cross-site protection and the body size limit.

A pure ASGI middleware in front of the whole app, so every route, including one added later, is behind it
by default; only ``/api/health`` (nothing sensitive in it) is open.

* The token is accepted from ``Authorization: Bearer T`` or ``X-Wabulk-Token: T`` (scripts), from the
  ``wabulk_token`` cookie (the dashboard), and from ``?token=T`` on ``GET /`` only: the URL that
  ``wabulk serve`` prints carries it once, the answer sets the cookie (HttpOnly, SameSite=Strict) and the
  page drops it from the address bar. Comparisons are constant-time (:func:`hmac.compare_digest`).
* A mutating request (anything but GET/HEAD/OPTIONS) authenticated by the cookie alone must also carry
  ``X-CSRF-Token`` (derived from the token, handed to the dashboard in its page) and, when the browser
  sends ``Origin``/``Referer``, come from this server's own origin. A cross-site form cannot set a header,
  so a forged post is refused even if a browser sent the cookie along. A request carrying the token in a
  header cannot be forged by another site, so it needs neither.
* Request bodies larger than the upload limit are refused with 413, by ``Content-Length`` before any byte is
  read and by counting the bytes of a chunked body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "wabulk_token"
CSRF_HEADER = "x-csrf-token"
OPEN_PATHS = frozenset({"/api/health"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(token: str) -> str:
    """The dashboard's anti-forgery value for ``token`` (stable for the server's life, useless elsewhere)."""
    return hmac.new(token.encode(), b"wabulk-csrf", hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    """Constant-time equality of a presented secret with the expected one."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a chunked body passes the limit."""


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, token: str, max_body: int) -> None:
        self.app = app
        self.token = token
        self.csrf = csrf_token(token)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET").upper()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        how = self._authenticated(path, method, headers, scope)
        if how is None:
            await _refuse(send, 401, "a token is required: open the URL printed by `wabulk serve`", path)
            return
        if method not in SAFE_METHODS and how == "cookie":
            problem = self._cross_site(headers)
            if problem:
                await _refuse(send, 403, problem, path)
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _refuse(send, 413, f"request body over the {self.max_body}-byte upload limit", path)
            return
        scope.setdefault("state", {})["auth"] = how
        await self._call_counting(scope, receive, send)

    def _authenticated(self, path: str, method: str, headers: dict[str, str], scope: Scope) -> str | None:
        """How the request proved it has the token ("header", "cookie", "query"), or None."""
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer " and same(bearer[7:].strip(), self.token):
            return "header"
        if same(headers.get("x-wabulk-token"), self.token):
            return "header"
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:  # a malformed cookie header is the same as none
                jar = SimpleCookie()
            if COOKIE in jar and same(jar[COOKIE].value, self.token):
                return "cookie"
        if path == "/" and method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if same((query.get("token") or [None])[0], self.token):
                return "query"
        return None

    def _cross_site(self, headers: dict[str, str]) -> str | None:
        """Why a cookie-authenticated mutating request is refused as possibly forged, or None."""
        host = headers.get("host", "")
        for name in ("origin", "referer"):
            value = headers.get(name)
            if value and value != "null":
                if urlsplit(value).netloc != host:
                    return f"cross-site request refused ({name} {value!r} is not this server)"
            elif value == "null":
                return "cross-site request refused (opaque origin)"
        if not same(headers.get(CSRF_HEADER), self.csrf):
            return "cross-site request refused (missing or wrong X-CSRF-Token header)"
        return None

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, f"request body over the {self.max_body}-byte upload limit", "/api")


async def _refuse(send: Send, status: int, error: str, path: str) -> None:
    """A one-line JSON error for the API, a short page for the dashboard."""
    if path.startswith("/api") or path.startswith("/openapi"):
        body = json.dumps({"error": error}).encode()
        ctype = b"application/json"
    else:
        body = (
            "<!doctype html><meta charset=utf-8><title>wabulk</title>"
            "<p style='font-family:sans-serif'>" + _html(error) + "</p>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
