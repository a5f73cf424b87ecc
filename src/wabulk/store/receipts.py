"""Receipts (delivered/read) and what each session sent (daily caps)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from wabulk import errors
from wabulk.models import (
    Message,
)

from .base import (
    _MESSAGE_COLS,
    _TICK_RANK,
    QueueBase,
    _describe,
    _guarded,
)


class ReceiptsMixin(QueueBase):
    @_guarded
    def record_receipt(self, message_id: int, tick: str, at: float) -> None:
        """Record a later tick (delivered/read) on a sent message; never downgrades."""
        now = self._clock()
        rank = _TICK_RANK.get(tick)
        if rank is None:
            raise errors.BadInput(f"unknown tick {tick!r}")
        with self._tx() as conn:
            row = conn.execute("SELECT job_id, receipt FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise errors.MessageNotFound(f"no message with id {message_id}")
            job_id, old = row
            if _TICK_RANK.get(old or "", 0) >= rank:
                return
            conn.execute(
                "UPDATE messages SET receipt = ?,"
                " delivered_at = CASE WHEN ? >= 2 THEN COALESCE(delivered_at, ?) ELSE delivered_at END,"
                " read_at = CASE WHEN ? >= 3 THEN COALESCE(read_at, ?) ELSE read_at END,"
                " updated_at = ? WHERE id = ?",
                (tick, rank, at, rank, at, now, message_id),
            )
            self._event(conn, now, job_id, message_id, "receipt", old, tick, None)

    # --- receipts (wabulk track) ------------------------------------------------------------------
    @_guarded
    def receipts_to_track(
        self,
        session: str,
        *,
        sent_before: float,
        checked_before: float,
        limit: int,
        job_id: int | None = None,
    ) -> list[Message]:
        """Sent messages of ``session`` not yet read, sent before ``sent_before`` and not looked at since
        ``checked_before``, oldest first, at most ``limit`` (``idx_messages_track``)."""
        sql = (
            f"SELECT {_MESSAGE_COLS} FROM messages INDEXED BY idx_messages_track"
            " WHERE status = 'sent' AND read_at IS NULL AND sent_by_session = ? AND sent_at < ?"
            " AND (receipt_checked_at IS NULL OR receipt_checked_at < ?)"
        )
        params: list[Any] = [session, sent_before, checked_before]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        sql += " ORDER BY sent_at, id LIMIT ?"
        params.append(max(0, int(limit)))
        return [self._message_from_row(r) for r in self.conn.execute(sql, params)]

    @_guarded
    def mark_receipt_checked(self, message_id: int, at: float) -> None:
        """Remember that the chat was looked at for this message's ticks (the tracking order)."""
        self.conn.execute("UPDATE messages SET receipt_checked_at = ? WHERE id = ?", (at, message_id))

    @_guarded
    def receipt_counts(self, job_id: int, *, undelivered_before: float) -> dict[str, int]:
        """``delivered``, ``read`` (trigger-kept totals, O(1)) and ``undelivered`` (sent before
        ``undelivered_before`` and still without a delivered tick: a range of
        ``idx_messages_undelivered``) for one job."""
        conn = self.conn
        row = conn.execute(
            "SELECT delivered, read FROM receipt_counts WHERE job_id = ?", (job_id,)
        ).fetchone()
        undelivered = conn.execute(
            "SELECT count(*) FROM messages INDEXED BY idx_messages_undelivered"
            " WHERE job_id = ? AND status = 'sent' AND delivered_at IS NULL AND sent_at < ?",
            (job_id, undelivered_before),
        ).fetchone()[0]
        return {
            "delivered": int(row[0]) if row else 0,
            "read": int(row[1]) if row else 0,
            "undelivered": int(undelivered),
        }

    def iter_undelivered(self, job_id: int, *, before: float, page_size: int = 1000) -> Iterator[Message]:
        """A job's messages sent before ``before`` and still without a delivered tick, oldest first,
        streamed page by page (``idx_messages_undelivered``). JobNotFound for a bad id."""
        try:
            self._job(self.conn, job_id)
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc
        start: tuple[float, int] = (float("-inf"), 0)
        yield from self._message_pages(
            f"SELECT {_MESSAGE_COLS} FROM messages INDEXED BY idx_messages_undelivered"
            " WHERE job_id = ? AND status = 'sent' AND delivered_at IS NULL AND sent_at < ?"
            " AND (sent_at, id) > (?, ?) ORDER BY sent_at, id LIMIT ?",
            lambda after: (job_id, before, after[0], after[1], page_size),
            start,
            lambda m: (float(m.sent_at or 0.0), m.id),
        )

    @_guarded
    def sent_count(self, session: str, since: float) -> int:
        """Sends confirmed for ``session`` at or after ``since`` (daily caps). Counted in ``send_log``, which
        prune leaves alone, so pruning a finished job does not reset today's count."""
        row = self.conn.execute(
            "SELECT count(*) FROM send_log WHERE session = ? AND at >= ?", (session, since)
        ).fetchone()
        return int(row[0])

    @_guarded
    def first_sent_at(self, session: str) -> float | None:
        """When ``session`` first sent a message (warm-up ramps); None if never. Kept in ``sessions``, so
        it survives prune."""
        row = self.conn.execute("SELECT first_sent_at FROM sessions WHERE name = ?", (session,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_guarded
    def sessions_that_sent(self) -> list[str]:
        """Every session that has sent a message (``status``'s per-session rows)."""
        rows = self.conn.execute(
            "SELECT name FROM sessions WHERE first_sent_at IS NOT NULL ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    @_guarded
    def last_sent_at(self, session: str) -> float | None:
        """When ``session`` last sent a message (the fleet's "next send" estimate); None if never.
        Read-only, one index probe."""
        row = self.conn.execute("SELECT max(at) FROM send_log WHERE session = ?", (session,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])
