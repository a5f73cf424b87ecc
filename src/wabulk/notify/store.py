"""The SQL of notifications (migration ``m007_notifications``): the outbox, the cursors, the login QRs.

Kept beside the queue rather than in it: these tables hold no message state, and the queue module is the
one place that changes messages and jobs. Each function is one short transaction on a connection opened by
:class:`wabulk.queue.Queue` (autocommit, WAL, busy timeout), so it never holds the write lock a worker's
claim waits for for more than a few milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wabulk.store.base import write_tx

PENDING = "pending"
DELIVERED = "delivered"
# How long a delivering process owns a row: longer than any delivery's timeout.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Notification:
    """One queued notification for one target."""

    id: str
    target: str
    key: str
    kind: str
    payload: dict[str, Any]
    created_at: float
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    delivered_at: float | None


_COLS = (
    "id, target, key, kind, payload, created_at, status, attempts, next_attempt_at, last_error, delivered_at"
)


def _row(r: Sequence[Any]) -> Notification:
    values = list(r)
    values[4] = json.loads(values[4])
    return Notification(*values)


def add(
    conn: sqlite3.Connection,
    targets: Sequence[str],
    *,
    kind: str,
    key: str,
    data: dict[str, Any],
    now: float,
) -> int:
    """Queue one notification per target unless that target already has one with ``key``; returns how
    many were new. The payload gets its ``id``, ``kind`` and ``at`` here."""
    with write_tx(conn):
        return _insert(conn, targets, [(kind, key, data)], now=now)


def _insert(
    conn: sqlite3.Connection,
    targets: Sequence[str],
    items: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    now: float,
) -> int:
    """The INSERTs of :func:`add` and :func:`advance`, inside the caller's transaction: each item (kind,
    key, data) for each target, unless that target already has one with that key; how many were new."""
    import uuid  # here: `status` imports this module and never adds

    n = 0
    for kind, key, data in items:
        for target in targets:
            nid = uuid.uuid4().hex
            payload = {"id": nid, "kind": kind, "at": now, **data}
            n += conn.execute(
                "INSERT OR IGNORE INTO notifications"
                " (id, target, key, kind, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (nid, target, key, kind, json.dumps(payload, ensure_ascii=False, default=str), now, now),
            ).rowcount
    return n


def cursor(conn: sqlite3.Connection, target: str) -> int | None:
    """The last ``events`` id already turned into notifications for ``target`` (None: never looked)."""
    row = conn.execute("SELECT last_event_id FROM notify_cursors WHERE target = ?", (target,)).fetchone()
    return None if row is None else int(row[0])


def advance(
    conn: sqlite3.Connection,
    target: str,
    *,
    expected: int | None,
    to: int,
    items: Sequence[tuple[str, str, dict[str, Any]]],
    now: float,
) -> bool:
    """Queue ``items`` (kind, key, data) for ``target`` and move its cursor from ``expected`` to ``to`` in
    one transaction; False (nothing written) when another process moved the cursor meanwhile."""
    with write_tx(conn):
        if cursor(conn, target) != expected:
            return False
        _insert(conn, [target], items, now=now)
        conn.execute(
            "INSERT INTO notify_cursors (target, last_event_id) VALUES (?, ?)"
            " ON CONFLICT (target) DO UPDATE SET last_event_id = excluded.last_event_id",
            (target, to),
        )
    return True


def claim_due(
    conn: sqlite3.Connection, targets: Sequence[str], *, now: float, limit: int = 20
) -> list[Notification]:
    """Lease up to ``limit`` due, undelivered notifications of ``targets`` (oldest first) for delivery."""
    if not targets:
        return []
    marks = ",".join("?" * len(targets))
    with write_tx(conn):
        rows = conn.execute(
            f"UPDATE notifications SET lease_until = ?, attempts = attempts + 1 WHERE id IN ("
            f" SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= ?"
            f" AND (lease_until IS NULL OR lease_until < ?) AND target IN ({marks})"
            f" ORDER BY created_at, rowid LIMIT ?) RETURNING {_COLS}",
            (now + LEASE_SECONDS, now, now, *targets, limit),
        ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda n: n.created_at)


def delivered(conn: sqlite3.Connection, nid: str, *, now: float) -> None:
    """Mark a notification delivered (never sent again)."""
    conn.execute(
        "UPDATE notifications SET status = 'delivered', delivered_at = ?, lease_until = NULL,"
        " last_error = NULL WHERE id = ?",
        (now, nid),
    )


def failed(conn: sqlite3.Connection, nid: str, *, error: str, retry_at: float) -> None:
    """Record a failed delivery; it is tried again at ``retry_at``."""
    conn.execute(
        "UPDATE notifications SET last_error = ?, next_attempt_at = ?, lease_until = NULL WHERE id = ?",
        (error[:500], retry_at, nid),
    )


def release(conn: sqlite3.Connection, nid: str) -> None:
    """Give a claimed notification back untried (its attempt does not count)."""
    conn.execute(
        "UPDATE notifications SET lease_until = NULL, attempts = max(attempts - 1, 0) WHERE id = ?", (nid,)
    )


def failing(conn: sqlite3.Connection, *, min_attempts: int) -> list[Notification]:
    """Undelivered notifications that failed at least ``min_attempts`` times (``status`` shows them)."""
    if not _has_table(conn):
        return []
    rows = conn.execute(
        f"SELECT {_COLS} FROM notifications WHERE status = 'pending' AND attempts >= ?"
        " AND last_error IS NOT NULL ORDER BY created_at",
        (min_attempts,),
    ).fetchall()
    return [_row(r) for r in rows]


def listing(conn: sqlite3.Connection, *, limit: int = 100) -> list[Notification]:
    """The most recent notifications, newest first."""
    rows = conn.execute(
        f"SELECT {_COLS} FROM notifications ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
    ).fetchall()
    return [_row(r) for r in rows]


def _has_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notifications'").fetchone()
        is not None
    )


# --- the login QR of a session -------------------------------------------------------------------------


def save_qr(conn: sqlite3.Connection, session: str, payload: str, *, now: float) -> None:
    """Remember the QR payload ``session``'s worker shows now (it rotates about every 20 s)."""
    conn.execute(
        "INSERT INTO session_qr (session, payload, at) VALUES (?, ?, ?)"
        " ON CONFLICT (session) DO UPDATE SET payload = excluded.payload, at = excluded.at",
        (session, payload, now),
    )


def clear_qr(conn: sqlite3.Connection, session: str) -> None:
    """The session is logged in (or its worker left): no QR to show."""
    conn.execute("DELETE FROM session_qr WHERE session = ?", (session,))


def read_qr(conn: sqlite3.Connection, session: str) -> tuple[str, float] | None:
    """The QR payload ``session`` shows and when it was shown, or None."""
    row = conn.execute("SELECT payload, at FROM session_qr WHERE session = ?", (session,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def most_undelivered_told(conn: sqlite3.Connection, job_id: int) -> int:
    """The highest undelivered count already queued for ``job_id`` (keys ``undelivered_found:JOB:N``)."""
    prefix = f"undelivered_found:{job_id}:"
    best = 0
    for (key,) in conn.execute(
        "SELECT key FROM notifications WHERE kind = 'undelivered_found' AND substr(key, 1, ?) = ?",
        (len(prefix), prefix),
    ):
        tail = str(key)[len(prefix) :]
        if tail.isdigit():
            best = max(best, int(tail))
    return best
