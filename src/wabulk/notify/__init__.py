"""Notifications: what a worker (or ``wabulk serve``) tells a webhook or a command when a human should know.

See :mod:`wabulk.notify.store` (the outbox tables), :mod:`wabulk.notify.watch` (what becomes a notification)
and :mod:`wabulk.notify.deliver` (signed webhooks, commands, the background thread).
"""

from __future__ import annotations

import sqlite3


def failing_summary(conn: sqlite3.Connection, *, min_attempts: int) -> list[tuple[str, int, str]]:
    """(target, how many, last error) of undelivered notifications that failed ``min_attempts`` times or
    more, per target. Here rather than in ``store`` so that ``status`` (and its cron fast path) imports
    nothing more than this."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notifications'"
    ).fetchone()
    if exists is None:
        return []
    rows = conn.execute(
        "SELECT target, count(*), max(last_error) FROM notifications WHERE status = 'pending'"
        " AND attempts >= ? AND last_error IS NOT NULL GROUP BY target ORDER BY target",
        (min_attempts,),
    ).fetchall()
    return [(str(t), int(n), str(e or "")) for t, n, e in rows]


def describe(target: str) -> str:
    """A target for humans, without secrets a URL's path or query may carry (Slack-style hooks)."""
    kind, _, rest = target.partition(":")
    if kind == "url":
        from urllib.parse import urlsplit

        parts = urlsplit(rest)
        shown = f"{parts.scheme}://{parts.netloc}"
        return f"webhook {shown}/…" if parts.path not in ("", "/") or parts.query else f"webhook {shown}"
    words = rest.split()
    return f"command {words[0]}" if words else "command (empty)"
