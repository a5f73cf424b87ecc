"""Delivering the simulated webhooks as Meta does: batched, signed, concurrent, retried until acknowledged.

Meta POSTs to the app's callback URL with ``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body with the
app secret>``; anything but HTTP 200 (or no answer) is retried, first quickly, then less and less often,
for up to 7 days (reference §3.4). Several POSTs are in flight at once, so batches arrive in any order.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import secrets
import time
from typing import Any

import httpx

from .app import GraphApp


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value of ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Takes the due webhook items of a :class:`GraphApp` and POSTs them to ``url``."""

    def __init__(self, app: GraphApp, app_secret: str, url: str | None = None) -> None:
        self.app = app
        self.app_secret = app_secret
        self.url = url
        self.inflight = 0
        self._retries: list[tuple[float, int, bytes, int, float, int]] = []
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def idle(self) -> bool:
        """Nothing left to deliver: no due or future item, no retry, no POST in flight (held messages
        aside)."""
        with self.app.lock:
            return not self.app.queue and not self._retries and self.inflight == 0

    def forget(self) -> None:
        """Drop pending retries (after a reset)."""
        with self.app.lock:
            self._retries.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Gather and send due items every ``webhook_batch_ms`` until ``stop`` is set."""
        async with httpx.AsyncClient(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"User-Agent": "facebookexternalua"},
        ) as client:
            self._client = client
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.app.config["webhook_batch_ms"] / 1000)
                except asyncio.TimeoutError:
                    pass
                self.pump(time.time())
            for task in list(self._tasks):
                task.cancel()
            self._client = None

    def pump(self, now: float) -> None:
        """Start the POSTs that are due."""
        if self.url is None or self._client is None:
            return
        concurrency = max(1, int(self.app.config["webhook_concurrency"]))
        starts: list[tuple[bytes, int, int, float]] = []
        with self.app.lock:
            while self._retries and self._retries[0][0] <= now and self.inflight + len(starts) < concurrency:
                _, _, body, attempt, first, n = heapq.heappop(self._retries)
                starts.append((body, n, attempt, first))
            free = concurrency - self.inflight - len(starts)
            if free > 0:
                for body, n in self.app.take_due(now, free):
                    starts.append((body, n, 1, now))
            self.inflight += len(starts)
        for body, n, attempt, first in starts:
            task = asyncio.ensure_future(self._post(body, n, attempt, first))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, body: bytes, statuses: int, attempt: int, first: float) -> None:
        cfg = self.app.config
        url = self.url
        record: dict[str, Any] = {
            "id": next(self._ids),
            "at": time.time(),
            "url": url,
            "attempt": attempt,
            "statuses": statuses,
            "status_code": None,
            "error": None,
            "signature": sign(self.app_secret, body),
            "body": body if cfg["keep_webhook_bodies"] else None,
        }
        try:
            assert self._client is not None and url is not None
            resp = await self._client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": record["signature"],
                    "X-Hub-Signature": "sha1=" + hmac.new(self.app_secret.encode(), body, "sha1").hexdigest(),
                },
                timeout=float(cfg["webhook_timeout_s"]),
            )
            record["status_code"] = resp.status_code
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        now = time.time()
        with self.app.lock:
            self.inflight -= 1
            self.app.webhooks.append(record)
            if record["status_code"] != 200:
                delay = min(
                    float(cfg["webhook_retry_first_s"]) * 2 ** (attempt - 1),
                    float(cfg["webhook_retry_max_delay_s"]),
                )
                if now + delay - first <= float(cfg["webhook_retry_for_s"]):
                    heapq.heappush(
                        self._retries, (now + delay, next(self._seq), body, attempt + 1, first, statuses)
                    )
                else:
                    record["dropped"] = True
            elif self.app.rng.random() < cfg["duplicate_post_rate"]:
                redeliver = now + float(cfg["webhook_batch_ms"]) / 1000
                heapq.heappush(
                    self._retries, (redeliver, next(self._seq), body, attempt + 1, first, statuses)
                )

    async def handshake(self, url: str, verify_token: str) -> dict[str, Any]:
        """Meta's verification GET: ``{verified, status_code, body}``; verified iff 200 with the challenge."""
        challenge = str(secrets.randbelow(10**10))
        params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                resp = await client.get(url, params=params)
        except httpx.HTTPError as exc:
            return {"verified": False, "status_code": None, "body": None, "error": f"{type(exc).__name__}"}
        return {
            "verified": resp.status_code == 200 and resp.text == challenge,
            "status_code": resp.status_code,
            "body": resp.text[:200],
        }
