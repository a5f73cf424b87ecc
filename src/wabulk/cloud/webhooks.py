"""Receiving Meta's ``messages`` webhooks (reference §3): handshake, signature, statuses into the queue.

The receiver recipe: read the raw bytes; verify ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with
the app secret, constant-time) and refuse a bad or missing one without recording anything; walk every
``entry[] → changes[] → value.statuses[]``; store them (one durable transaction) and only then answer 200.
Inbound messages, value-level errors and ids wabulk does not know are answered 200 and ignored (a 5xx would
make Meta retry them for a week). Bodies over 1 MB are refused with 413 before they are read.

Served by ``wabulk serve`` at ``/webhooks/whatsapp`` (outside the API token: Meta cannot send it; the
signature is the authentication), and usable on its own as an ASGI app (:func:`asgi_app`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wabulk.models import CloudStatus

log = logging.getLogger(__name__)

PATH = "/webhooks/whatsapp"
MAX_BODY = 1024 * 1024  # 1 MB: Meta's batches of up to 1,000 statuses fit well below it
_STATUSES = ("sent", "delivered", "read", "failed")


def signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(app_secret: str | None, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the valid signature of ``body`` (never True without a secret or a header)."""
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(signature(app_secret, body).encode(), header.strip().encode())


def handshake(query: dict[str, list[str]], verify_token: str | None) -> tuple[int, str]:
    """Meta's GET verification: 200 with the raw ``hub.challenge`` when the verify token matches."""

    def arg(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    given = arg("hub.verify_token")
    if (
        arg("hub.mode") == "subscribe"
        and verify_token
        and given is not None
        and hmac.compare_digest(given.encode(), verify_token.encode())
    ):
        return 200, arg("hub.challenge") or ""
    return 403, "verification failed"


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_statuses(payload: Any) -> list[CloudStatus]:
    """Every status of a ``messages`` webhook payload, in order (all entries, changes and statuses)."""
    out: list[CloudStatus] = []
    if not isinstance(payload, dict):
        return out
    for entry in payload.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or ():
            if not isinstance(change, dict) or change.get("field", "messages") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            for err in value.get("errors") or ():
                if isinstance(err, dict):
                    log.warning("webhook reports Graph error %s: %s", err.get("code"), err.get("title"))
            for st in value.get("statuses") or ():
                parsed = _status(st)
                if parsed is not None:
                    out.append(parsed)
    return out


def _status(st: Any) -> CloudStatus | None:
    if not isinstance(st, dict) or st.get("status") not in _STATUSES:
        return None
    wamid = st.get("id") if isinstance(st.get("id"), str) else None
    callback = st.get("biz_opaque_callback_data")
    if not wamid and not isinstance(callback, str):
        return None
    code = details = None
    errs = st.get("errors")
    if isinstance(errs, list) and errs and isinstance(errs[0], dict):
        raw = errs[0].get("code")
        code = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        data = errs[0].get("error_data")
        if isinstance(data, dict) and isinstance(data.get("details"), str):
            details = data["details"][:300]
        elif isinstance(errs[0].get("title"), str):
            details = errs[0]["title"][:300]
    raw_pricing = st.get("pricing")
    pricing: dict[str, Any] = raw_pricing if isinstance(raw_pricing, dict) else {}
    billable = pricing.get("billable")
    category = pricing.get("category")
    recipient = st.get("recipient_id") or st.get("recipient_user_id")
    return CloudStatus(
        status=st["status"],
        wamid=wamid,
        callback=callback if isinstance(callback, str) else None,
        timestamp=_float(st.get("timestamp")),
        recipient=str(recipient) if recipient else None,
        error_code=code,
        error_details=details,
        pricing_category=category if isinstance(category, str) else None,
        billable=billable if isinstance(billable, bool) else None,
    )


@dataclass
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class WebhookReceiver:
    """The webhook endpoint's logic, independent of the web framework (thread-safe: a queue per thread)."""

    def __init__(self, db: Path, *, app_secret: str | None, verify_token: str | None) -> None:
        self.db = db
        self.app_secret = app_secret
        self.verify_token = verify_token
        # One queue per worker thread, kept open: opening one per POST cost more than storing the statuses.
        self._local = threading.local()

    def _queue(self) -> Any:
        from wabulk.queue import Queue

        q = getattr(self._local, "queue", None)
        if q is None:
            q = self._local.queue = Queue(self.db, synchronous="FULL")
        return q

    def get(self, query_string: str) -> Answer:
        """The GET handshake."""
        status, body = handshake(parse_qs(query_string), self.verify_token)
        return Answer(status, body)

    def post(self, body: bytes, signature_header: str | None) -> Answer:
        """A POST: refused (401/403) unless validly signed; else every status stored, then 200."""
        if not self.app_secret:
            return Answer(403, "webhooks are refused: WABULK_CLOUD_APP_SECRET is not set")
        if not signature_header:
            return Answer(401, "missing X-Hub-Signature-256")
        if not signature_ok(self.app_secret, body, signature_header):
            return Answer(403, "bad X-Hub-Signature-256")
        try:
            payload = json.loads(body)
        except ValueError:
            return Answer(200, "ignored: not JSON")  # signed but unusable: acknowledged, never retried
        statuses = parse_statuses(payload)
        if not statuses:
            return Answer(200, "ok")
        # An error here (database busy for minutes, disk full) propagates: no 200, Meta retries later.
        q = self._queue()
        try:
            result = q.apply_cloud_statuses(statuses)
            if result.failed:
                _pause_accounts(q, result.failed)
        except Exception:
            self._local.queue = None  # a broken connection is not reused
            q.close()
            raise
        return Answer(
            200, f"ok: {result.applied} applied, {result.duplicates} known, {result.unknown} ignored"
        )


def _pause_accounts(q: Any, failed: list[tuple[int, int, str]]) -> None:
    """A failed status with an account-level code (spam limit, billing) pauses the sending session."""
    from .errors import ACCOUNT, webhook_reaction

    done: set[str] = set()
    for _mid, code, session in failed:
        reaction = webhook_reaction(code)
        if reaction.kind == ACCOUNT and session and session not in done:
            done.add(session)
            q.pause_session(session, f"Graph error {code}: {reaction.reason}; {reaction.fix}")


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _reply(send: Send, answer: Answer) -> None:
    data = answer.body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def handle_asgi(receiver: WebhookReceiver, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one webhook request (GET handshake or POST delivery) as ASGI."""
    import anyio.to_thread

    method = scope.get("method", "GET").upper()
    if method == "GET":
        await _reply(send, receiver.get(scope.get("query_string", b"").decode("latin-1")))
        return
    if method != "POST":
        await _reply(send, Answer(405, "GET or POST"))
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        await _reply(send, Answer(413, "webhook body over 1 MB"))
        return
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            await _reply(send, Answer(413, "webhook body over 1 MB"))
            return
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    answer = await anyio.to_thread.run_sync(receiver.post, body, headers.get("x-hub-signature-256"))
    await _reply(send, answer)


def asgi_app(receiver: WebhookReceiver) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A standalone ASGI app serving only :data:`PATH` (404 elsewhere)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") != PATH:
            await _reply(send, Answer(404, "not found"))
            return
        await handle_asgi(receiver, scope, receive, send)

    return app
