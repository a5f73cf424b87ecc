"""Creating a job and its messages (the import side of the queue)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wabulk import errors, identity
from wabulk.models import (
    JOB_QUEUED,
    PENDING,
    SKIPPED,
    EnqueueStats,
    NewJob,
    NewMessage,
)

from .base import (
    ENQUEUE_CHUNK,
    OPTED_OUT,
    QueueBase,
    _guarded_once,
    _pid_alive,
    _variables_json,
    params_json,
)

# Who runs an import ("place pid"; the place is host, boot and PID namespace, so a pid is only tested where it
# means something): a job left half-imported by a dead process is removed by the next import in its place.
_IMPORTER = f"{identity.place_key()} {os.getpid()}"


class EnqueueMixin(QueueBase):
    def _report_duplicates(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        chunk: Sequence[tuple[Any, ...]],
        on_duplicate: Callable[[int | None, str, int | None], None],
    ) -> None:
        """The rows of ``chunk`` that INSERT OR IGNORE dropped: the stored row of their phone is
        another one (an earlier chunk's, or an earlier row of this chunk)."""
        seen: set[str] = set()
        for values in chunk:
            phone, row = str(values[1]), values[6]
            stored = conn.execute(
                "SELECT source_row FROM messages WHERE job_id = ? AND phone = ?", (job_id, phone)
            ).fetchone()
            first = stored[0] if stored else None
            if phone in seen or first != row:
                on_duplicate(row if isinstance(row, int) else None, phone, first)
            seen.add(phone)

    # --- enqueue --------------------------------------------------------------------------------
    @_guarded_once
    def enqueue(
        self,
        job: NewJob,
        messages: Iterable[NewMessage],
        on_duplicate: Callable[[int | None, str, int | None], None] | None = None,
    ) -> EnqueueStats:
        """Create a job and its messages, all-or-nothing and streamed, in short transactions: each chunk of
        ``ENQUEUE_CHUNK`` rows is read (and so parsed) outside any transaction and written in its own, so an
        import of a million rows never holds the write lock for long. The job stays invisible and not
        claimable (``ready = 0``) until the last chunk is in. Duplicate phones within the job are dropped
        and counted; opted-out phones are stored as ``skipped`` (last_error "opted out", so export shows
        them) and counted. ``enqueued`` counts the messages left to send. If iterating ``messages`` raises,
        what was written is removed and the exception propagates; an import killed midway is removed by
        the next one. ``on_duplicate(row, phone, first_row)`` is called for each dropped duplicate
        (source rows), so an import can list them rather than only count them."""
        if job.max_attempts < 1:
            raise errors.BadInput(f"max_attempts must be at least 1, not {job.max_attempts}")
        now = self._clock()
        seen = 0
        inserted = 0
        self._drop_abandoned_imports()
        with self._tx() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (name, template, attachment, status, max_attempts, sessions, settings,"
                " source, created_at, not_before, ready, importer, template_name, template_lang,"
                " template_layout)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (
                    job.name,
                    job.template,
                    job.attachment,
                    job.max_attempts,
                    json.dumps(list(job.sessions)),
                    json.dumps(job.settings),
                    job.source,
                    now,
                    job.not_before,
                    _IMPORTER,
                    job.template_name,
                    job.template_lang,
                    job.template_layout,
                ),
            ).lastrowid
        assert job_id is not None
        try:
            sql = (
                "INSERT OR IGNORE INTO messages (job_id, phone, name, variables, body, flags, source_row,"
                " status, attempts, max_attempts, created_at, updated_at, params)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
            )
            rows = (
                (
                    job_id,
                    m.phone,
                    m.name,
                    _variables_json(m.variables) if m.variables else "{}",
                    m.body,
                    json.dumps(list(m.flags)) if m.flags else None,
                    m.source_row,
                    job.max_attempts,
                    now,
                    now,
                    params_json(m.params) if m.params else None,
                )
                for m in messages
            )
            while True:
                chunk = list(itertools.islice(rows, ENQUEUE_CHUNK))  # parsing happens here, unlocked
                if not chunk:
                    break
                seen += len(chunk)
                with self._tx() as conn:
                    added = conn.executemany(sql, chunk).rowcount
                    if on_duplicate is not None and added < len(chunk):
                        self._report_duplicates(conn, job_id, chunk, on_duplicate)
                    if added:
                        # No per-row insert trigger (m005): every inserted row is 'pending', counted here.
                        conn.execute(
                            "INSERT INTO job_counts (job_id, status, n) VALUES (?, 'pending', ?)"
                            " ON CONFLICT (job_id, status) DO UPDATE SET n = n + excluded.n",
                            (job_id, added),
                        )
                inserted += added
            with self._tx() as conn:
                # Opted-out numbers: probe (job_id, phone) per opt-out instead of per message.
                self._event_select(
                    conn,
                    now,
                    "status",
                    PENDING,
                    SKIPPED,
                    OPTED_OUT,
                    "job_id = ? AND status = 'pending' AND phone IN (SELECT phone FROM optouts)",
                    (job_id,),
                )
                opted_out = conn.execute(
                    "UPDATE messages SET status = 'skipped', last_error = ?, error_class = 'opted_out' "
                    "WHERE job_id = ? AND status = 'pending' AND phone IN (SELECT phone FROM optouts)",
                    (OPTED_OUT, job_id),
                ).rowcount
                stats = EnqueueStats(
                    job_id=job_id,
                    enqueued=inserted - opted_out,
                    duplicates=seen - inserted,
                    opted_out=opted_out,
                )
                self._event(
                    conn,
                    now,
                    job_id,
                    None,
                    "enqueued",
                    None,
                    JOB_QUEUED,
                    f"{stats.enqueued} enqueued, {stats.duplicates} duplicates, {stats.opted_out} opted out",
                )
                conn.execute("UPDATE jobs SET ready = 1, importer = NULL WHERE id = ?", (job_id,))
                self._maybe_finish(conn, job_id, now)
                self._maybe_finish(conn, job_id, now)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._discard_job(job_id)
            raise
        return stats

    def _drop_abandoned_imports(self) -> None:
        """Remove jobs whose import never finished because its process died (same host, pid gone)."""
        host = _IMPORTER.rsplit(" ", 1)[0]
        for jid, importer in self.conn.execute("SELECT id, importer FROM jobs WHERE ready = 0").fetchall():
            who_host, _, pid = str(importer or "").rpartition(" ")
            if who_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                self._discard_job(jid)

    def _discard_job(self, job_id: int) -> None:
        """Delete an unfinished import's job and rows, in short transactions."""
        while True:
            with self._tx() as conn:
                n = conn.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE job_id = ? LIMIT ?)",
                    (job_id, ENQUEUE_CHUNK),
                ).rowcount
                if n:
                    continue
                conn.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM job_counts WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM receipt_counts WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM jobs WHERE id = ? AND ready = 0", (job_id,))
                return
