"""The Graph API client: plain httpx, kept-alive connections, explicit timeouts, no automatic retries.

Why no retries here: a POST whose answer was lost may have sent the message, and the Cloud API has no
idempotency key, so only the caller (which stamped the message in the queue) may decide what to do. This
module's job is to tell the three outcomes apart (reference §5, transport table):

- an answer: the wamid (:class:`Accepted`), or a :class:`~wabulk.cloud.errors.GraphError` (rejected);
- nothing was written (connect refused, DNS, TLS, connect or pool timeout): ``TransportError(written=False)``,
  safe to retry;
- the request may have reached Meta (read timeout, connection cut after the request was written, a 200
  whose body has no id, a gateway error page): ``TransportError``/``HttpError`` with ``written=True``, an
  **unknown outcome**.

The token goes into the Authorization header only: never into a URL, a log line or an exception text.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from pathlib import Path
from typing import Any

import httpx

from wabulk import settings

from .answers import Accepted, read_send_answer
from .answers import error_of as _error
from .answers import json_or_none as _json
from .errors import HttpError, TransportError

DEFAULT_CONNECT_TIMEOUT = 5.0
# Generous: a template send can take long at Meta, and a read timeout makes the outcome unknown.
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 64
# Fields of the phone number node wabulk reads (reference §2).
PHONE_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,status,platform_type,throughput,"
    "whatsapp_business_manager_messaging_limit,health_status"
)


class GraphClient:
    """One token, one base URL, one pool of kept-alive connections (thread-safe: several requests may be
    in flight from different threads)."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        version: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not token:
            raise ValueError("a Graph client needs a token")
        self.base_url = (base_url or settings.graph_url()).rstrip("/")
        self.version = version or settings.graph_version()
        # The longest a send may take once started (connect, then the answer): a POST is only started while
        # the claim's lease covers this much (provider.lease_covers_post).
        self.longest_post = connect_timeout + read_timeout
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # The send path skips the Client's machinery (auth flows, cookies, redirects, event hooks) and hands
        # prepared requests to the transport: the same httpx transport, a third of the CPU per message.
        self._transport = transport or httpx.HTTPTransport(limits=limits, retries=0)
        self._client = httpx.Client(
            transport=self._transport,
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {token}"},
            follow_redirects=False,
        )
        self._send_headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
        self._send_urls: dict[str, httpx.URL] = {}
        self._ext = {
            "timeout": {
                "connect": connect_timeout,
                "read": read_timeout,
                "write": read_timeout,
                "pool": connect_timeout,
            }
        }
        self._closed = threading.Event()

    def __repr__(self) -> str:  # never the token
        return f"GraphClient({self.base_url!r}, {self.version!r})"

    def url(self, path: str) -> str:
        """``{base}/{version}/{path}``."""
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    # --- sending ---------------------------------------------------------------------------------
    def send(self, phone_number_id: str, payload: dict[str, Any]) -> Accepted:
        """POST one message. Returns its wamid; raises GraphError (rejected: nothing sent),
        TransportError/HttpError with ``written`` saying whether the outcome is unknown."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        url = self._send_urls.get(phone_number_id)
        if url is None:  # parsed once per number: URL parsing is a tenth of a request's CPU
            url = self._send_urls[phone_number_id] = httpx.URL(self.url(f"{phone_number_id}/messages"))
        request = httpx.Request("POST", url, content=body, headers=self._send_headers, extensions=self._ext)
        return read_send_answer(*self._exchange(request))

    # --- account facts, media ----------------------------------------------------------------------
    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET a Graph node; GraphError/HttpError/TransportError as for :meth:`send`."""
        request = self._client.build_request("GET", self.url(path), params=params)
        status, data = self._exchange(request)
        if status >= 400:
            raise _error(status, data)
        parsed = _json(data)
        if not isinstance(parsed, dict):
            raise HttpError(
                f"the Graph API answered {status} without a JSON object", http_status=status, written=False
            )
        return parsed

    def phone_number(self, phone_number_id: str) -> dict[str, Any]:
        """The phone number node's fields wabulk uses (display number, name, quality, throughput, limit)."""
        return self.get(phone_number_id, {"fields": PHONE_FIELDS})

    def upload_media(self, phone_number_id: str, path: Path, mime: str | None = None) -> str:
        """Upload a file (``POST /{phone}/media``) and return its media id (valid 30 days)."""
        mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as fh:
            request = self._client.build_request(
                "POST",
                self.url(f"{phone_number_id}/media"),
                data={"messaging_product": "whatsapp", "type": mime},
                files={"file": (path.name, fh, mime)},
            )
            status, data = self._exchange(request)
        if status >= 400:
            raise _error(status, data)
        parsed = _json(data)
        if not isinstance(parsed, dict) or not parsed.get("id"):
            # An upload that may have happened is harmless (an unused media id): just not usable.
            raise HttpError("the media upload answered without an id", http_status=status, written=False)
        return str(parsed["id"])

    def close(self) -> None:
        """Close the pooled connections."""
        if not self._closed.is_set():
            self._closed.set()
            self._client.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------
    def _exchange(self, request: httpx.Request) -> tuple[int, bytes]:
        """Send one request on the pool and read the whole answer, classifying transport failures."""
        try:
            response = self._transport.handle_request(request)
            try:
                data = response.read()
            finally:
                response.close()
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.UnsupportedProtocol,
        ) as exc:
            raise TransportError(f"cannot reach {self.base_url}: {_why(exc)}", written=False) from exc
        except httpx.TransportError as exc:
            # Read/write timeout, connection reset or closed after (part of) the request went out.
            raise TransportError(
                f"no answer from {self.base_url} after the request was sent ({_why(exc)}): outcome unknown",
                written=True,
            ) from exc
        return response.status_code, data


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
