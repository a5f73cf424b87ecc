"""Creating a job and its messages (the import side of the queue)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

from wabulk import errors
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
    _guarded,
    _variables_json,
)


class EnqueueMixin(QueueBase):
    # --- enqueue --------------------------------------------------------------------------------
    @_guarded
    def enqueue(self, job: NewJob, messages: Iterable[NewMessage]) -> EnqueueStats:
        """Create a job and its messages in ONE transaction (all-or-nothing, streamed).
        Duplicate phones within the job are dropped and counted; opted-out phones are stored as
        ``skipped`` (last_error "opted out", so export shows them) and counted. ``enqueued`` counts
        the messages left to send. If iterating ``messages`` raises, nothing is written and the
        exception propagates."""
        if job.max_attempts < 1:
            raise errors.BadInput(f"max_attempts must be at least 1, not {job.max_attempts}")
        now = self._clock()
        seen = 0
        inserted = 0
        with self._tx() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (name, template, attachment, status, max_attempts, sessions, settings,"
                " source, created_at, not_before) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
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
                ),
            ).lastrowid
            assert job_id is not None
            sql = (
                "INSERT OR IGNORE INTO messages (job_id, phone, name, variables, body, flags, source_row,"
                " status, attempts, max_attempts, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
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
                )
                for m in messages
            )
            # Stream in chunks: memory stays flat on a 1M-row import, and one transaction keeps it
            # all-or-nothing (a generator that raises rolls everything back).
            while True:
                chunk = list(itertools.islice(rows, ENQUEUE_CHUNK))
                if not chunk:
                    break
                seen += len(chunk)
                added = conn.executemany(sql, chunk).rowcount
                if added:
                    # No per-row insert trigger (m005): every inserted row is 'pending', counted here.
                    conn.execute(
                        "INSERT INTO job_counts (job_id, status, n) VALUES (?, 'pending', ?)"
                        " ON CONFLICT (job_id, status) DO UPDATE SET n = n + excluded.n",
                        (job_id, added),
                    )
                inserted += added
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
                job_id=job_id, enqueued=inserted - opted_out, duplicates=seen - inserted, opted_out=opted_out
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
            self._maybe_finish(conn, job_id, now)
        return stats
