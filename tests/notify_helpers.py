"""A webhook receiver for the notification tests: a tiny local HTTP server that can go down and come back;
and what the two notification e2e files share (``test_notify_e2e*.py``: fixtures, queue readers)."""

from __future__ import annotations

import csv
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, simulator_running
from wabulk.notify.deliver import verify


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Records every POST (JSON body, headers); ``down()`` stops listening, ``up()`` listens again."""

    def __init__(self, secret: str | None = None, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sig = self.headers.get("X-Wabulk-Signature")
                ok = receiver.secret is None or verify(receiver.secret, body, sig)
                with receiver._lock:
                    if ok:
                        receiver.received.append({"body": json.loads(body), "headers": dict(self.headers)})
                    else:
                        receiver.bad_signatures += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r["body"] for r in self.received]

    def kinds(self) -> list[str]:
        return [b["kind"] for b in self.bodies()]


# --- the notification e2e files (test_notify_e2e*.py import the fixtures; pytest knows them by name) ---

SECRET = "e2e-secret"
# What each of the two tests makes happen (and asserts was told): together, every kind there is.
KINDS_OUTAGE_TEST = {
    "worker_died",
    "messages_failed",
    "session_auto_paused",
    "waiting_for_login",
    "job_completed",
    "undelivered_found",
}
KINDS_BREAKER_TEST = {
    "job_auto_paused",
    "unknown_outcomes",
    "messages_failed",
    "worker_died",
    "job_completed",
}


@pytest.fixture(scope="module", name="sim")
def sim_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-notify", SIM_E2E) as s:
        yield s


@pytest.fixture(name="e2e")
def e2e_fixture(sim: Any, tmp_path: Path) -> Iterator[E2E]:
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=500)
    yield env
    env.cleanup()
    sim.configure(**SIM_E2E)


def notifying_env(e2e: E2E) -> None:
    """Settings every `wabulk run` of this test inherits (fast retries; 'undelivered' after 2 s)."""
    real = e2e.env

    def env(**extra: str) -> dict[str, str]:
        return real(
            WABULK_NOTIFY_SECRET=SECRET,
            WABULK_NOTIFY_RETRY="0.3",
            WABULK_NOTIFY_UNDELIVERED_AFTER="2s",
            **extra,
        )

    e2e.env = env  # type: ignore[method-assign]


def qr_in_db(db: Path, session: str) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT 1 FROM session_qr WHERE session = ?", (session,)).fetchone() is not None
    finally:
        conn.close()


def write_contacts(path: Path, phones: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone"])
        w.writerows([f"N{i}", p] for i, p in enumerate(phones))


def outbox(db: Path) -> set[str]:
    """The kinds and keys of the notifications waiting in the outbox (not delivered yet)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT kind, key FROM notifications WHERE status = 'pending'").fetchall()
        return {str(r[0]) for r in rows} | {str(r[1]) for r in rows}
    finally:
        conn.close()


def session_pause(e2e: E2E, session: str) -> str | None:
    """The reason ``session`` is paused, as `wabulk status --json` shows it (None: not paused)."""
    rows = [r for r in e2e.status()["sessions"] if r["session"] == session]
    return rows[0]["paused"] if rows else None
