"""Reading messages and the events log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from wabulk import errors
from wabulk.models import (
    Event,
    Message,
)

from .base import (
    _EVENT_COLS,
    _MESSAGE_COLS,
    QueueBase,
    _describe,
    _guarded,
)


class ReadingMixin(QueueBase):
    # --- reading ------------------------------------------------------------------------------------
    @_guarded
    def get_message(self, message_id: int) -> Message:
        """One message; raises MessageNotFound."""
        row = self.conn.execute(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise errors.MessageNotFound(f"no message with id {message_id}")
        return self._message_from_row(row)

    def iter_messages(self, job_id: int, *, page_size: int = 1000) -> Iterator[Message]:
        """A job's messages by id, streamed page by page (no read transaction stays open between
        pages, so it is safe to write while iterating). JobNotFound for a bad id."""
        try:
            self._job(self.conn, job_id)
            lo, hi = self.conn.execute(
                "SELECT min(id), max(id) FROM messages WHERE job_id = ?", (job_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise errors.DatabaseError(_describe(self.path, exc)) from exc
        if lo is None:
            return
        # ``+job_id`` keeps the planner on the rowid range: a job's ids are one contiguous
        # block (enqueued in one transaction), so each page reads just its own rows.
        yield from self._message_pages(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE +job_id = ? AND id > ? AND id <= ?"
            " ORDER BY id LIMIT ?",
            lambda after: (job_id, after, hi, page_size),
            lo - 1,
            lambda m: m.id,
        )

    @_guarded
    def message_page(
        self, job_id: int, *, status: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[int, list[Message]]:
        """One page of a job's messages by id (only ``status`` when given) and how many there are in
        all, for a list that pages with a total. JobNotFound for a bad id."""
        self._job(self.conn, job_id)
        where = "job_id = ?"
        params: list[Any] = [job_id]
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        (total,) = self.conn.execute(f"SELECT count(*) FROM messages WHERE {where}", params).fetchone()
        rows = self.conn.execute(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
            [*params, max(0, limit), max(0, offset)],
        ).fetchall()
        return int(total), [self._message_from_row(r) for r in rows]

    @_guarded
    def events(
        self, *, job_id: int | None = None, message_id: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """History, oldest first (the newest last); ``limit`` keeps the newest N."""
        where, params = [], []
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if message_id is not None:
            where.append("message_id = ?")
            params.append(message_id)
        sql = f"SELECT {_EVENT_COLS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.conn.execute(sql, params).fetchall()
        return [Event(*r) for r in reversed(rows)]
