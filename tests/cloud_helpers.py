"""Shared pieces of the Cloud API tests: the bundled Graph simulator wired to a real webhook receiver.

Everything goes through real HTTP: wabulk's httpx client → the simulator; the simulator's signed webhooks →
wabulk's receiver (the same ASGI handler ``wabulk serve`` mounts at /webhooks/whatsapp) on uvicorn.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wabulk.cloud.demo import webhook_server

TOKEN = "test-token-5f1c2a"  # the access token the simulator accepts
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
PHONE_ID = "1234567890"


@contextmanager
def webhook_receiver(db: Path, *, app_secret: str | None = APP_SECRET) -> Iterator[str]:
    """Serve wabulk's webhook endpoint on a free port (the demo's server); yields its URL."""
    with webhook_server(db, app_secret=app_secret, verify_token=VERIFY_TOKEN) as url:
        yield url


@contextmanager
def graph_simulator(webhook_url: str | None, **config: Any) -> Iterator[Any]:
    """The bundled Graph API simulator (in-process), signing webhooks with :data:`APP_SECRET`."""
    from wabulk.cloud.simulator import GraphSimulator

    config.setdefault("keep_webhook_bodies", False)
    sim = GraphSimulator(
        token=TOKEN,
        app_secret=APP_SECRET,
        webhook_url=webhook_url,
        phone_numbers=[PHONE_ID],
        seed=1,
        **config,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``check`` (the outcome of real asynchronous work: webhooks, processes) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_request(conn: socket.socket) -> bytes:
    """One HTTP/1.1 request read off a raw socket, head and body (what was read if the peer closed first)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body
