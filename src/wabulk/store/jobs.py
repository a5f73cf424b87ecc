"""Job control: read, pause, resume, stop, retry, prune."""

from __future__ import annotations

from typing import Any

from wabulk import errors
from wabulk.models import (
    CANCELLED,
    FAILED,
    JOB_COMPLETED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATUSES,
    JOB_STOPPED,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    SENT,
    UNKNOWN_OUTCOME,
    UNKNOWN_TEXT,
    Job,
    JobSummary,
    Message,
)

from .base import (
    _JOB_COLS,
    _MESSAGE_COLS,
    QueueBase,
    _guarded,
)

PRUNE_CHUNK = 5_000  # messages deleted per transaction: a prune never holds the write lock for long


class JobsMixin(QueueBase):
    # --- jobs -------------------------------------------------------------------------------------
    @_guarded
    def get_job(self, job_id: int) -> Job:
        """The job with this id; raises JobNotFound."""
        return self._job(self.conn, job_id)

    @_guarded
    def list_jobs(self) -> list[Job]:
        """Every job, oldest first (an import still running is not listed yet)."""
        sql = f"SELECT {_JOB_COLS} FROM jobs WHERE ready = 1 ORDER BY id"
        return [self._job_from_row(r) for r in self.conn.execute(sql)]

    @_guarded
    def summaries(self, job_id: int | None = None) -> list[JobSummary]:
        """Jobs (all, or the one given: JobNotFound when missing) with their counts per status."""
        conn = self.conn
        # One read transaction: every job and count comes from the same snapshot.
        conn.execute("BEGIN")
        try:
            jobs = [self._job(conn, job_id)] if job_id is not None else self.list_jobs()
            return [JobSummary(job=j, counts=self._counts(conn, j.id)) for j in jobs]
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @_guarded
    def counts(self, job_id: int) -> dict[str, int]:
        """Messages per status for one job, every MESSAGE_STATUSES key present (O(1): counters).
        Counts survive :meth:`prune`."""
        conn = self.conn
        self._job(conn, job_id)
        return self._counts(conn, job_id)

    @_guarded
    def pruned_at(self, job_id: int) -> float | None:
        """When this job's messages were pruned (None if never); its counts are still available."""
        row = self.conn.execute("SELECT pruned_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise errors.JobNotFound(f"no job with id {job_id}")
        return row[0]

    @_guarded
    def pause_job(self, job_id: int, reason: str | None = None) -> Job:
        """Pause a queued/running/waiting job (``reason`` records why, e.g. an auto-pause).
        Pausing a paused job only updates the reason. InvalidTransition for stopped/completed."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            job = self._job(conn, job_id)
            if job.status == JOB_PAUSED:
                if reason is not None:
                    conn.execute("UPDATE jobs SET status_reason = ? WHERE id = ?", (reason, job_id))
            elif job.status in (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN):
                self._set_job(conn, job, JOB_PAUSED, reason, now)
            else:
                raise errors.InvalidTransition(
                    f"job {job_id} is {job.status}; only an active job can be paused"
                )
            return self._job(conn, job_id)

    @_guarded
    def resume_job(self, job_id: int) -> Job:
        """Resume a paused or waiting_for_login job (to running if it started, else queued).
        Resuming a queued/running job does nothing. InvalidTransition for stopped/completed."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            job = self._job(conn, job_id)
            if job.status in (JOB_PAUSED, JOB_WAITING_FOR_LOGIN):
                self._set_job(
                    conn, job, JOB_RUNNING if job.started_at is not None else JOB_QUEUED, None, now, "resumed"
                )
            elif job.status in (JOB_STOPPED, JOB_COMPLETED):
                raise errors.InvalidTransition(f"job {job_id} is {job.status} and cannot be resumed")
            return self._job(conn, job_id)

    @_guarded
    def stop_job(self, job_id: int) -> Job:
        """Stop a job for good: pending messages become cancelled; in-flight ones finish.
        Stopping a stopped job does nothing; a completed one raises InvalidTransition."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            job = self._job(conn, job_id)
            if job.status == JOB_STOPPED:
                return job
            if job.status == JOB_COMPLETED:
                raise errors.InvalidTransition(f"job {job_id} is already completed")
            # A pending message whose earlier try pressed send may have arrived: its outcome is unknown,
            # as for a stamped message in flight (one rule, ClaimsMixin._close_stopped).
            stamped = "job_id = ? AND status = 'pending' AND send_started_at IS NOT NULL"
            unknown = f"{UNKNOWN_TEXT}: job stopped after the send was pressed"
            self._event_select(conn, now, "status", PENDING, FAILED, unknown, stamped, (job_id,))
            conn.execute(
                "UPDATE messages SET status = 'failed', last_error = ?, error_class = ?, updated_at = ?,"
                f" next_attempt_at = NULL WHERE {stamped}",
                (unknown, UNKNOWN_OUTCOME, now, job_id),
            )
            where = "job_id = ? AND status = 'pending'"
            self._event_select(conn, now, "status", PENDING, CANCELLED, "job stopped", where, (job_id,))
            conn.execute(
                f"UPDATE messages SET status = 'cancelled', updated_at = ?, next_attempt_at = NULL "
                f"WHERE {where}",
                (now, job_id),
            )
            self._set_job(conn, job, JOB_STOPPED, None, now, "stopped")
            # In flight on a worker that is gone (lease expired: killed, or hung): nobody will finish these,
            # so they are settled now (unknown when pressed), not left for some later claim.
            self._settle_stopped(conn, now)
            _, sending = self._open_work(conn, job_id)
            if sending:
                # In-flight messages finish; the job's finish time is set when the last one does.
                conn.execute("UPDATE jobs SET finished_at = NULL WHERE id = ?", (job_id,))
            return self._job(conn, job_id)

    @_guarded
    def in_flight(self, job_id: int) -> list[tuple[int, str | None, bool]]:
        """The job's messages in flight: (id, the worker holding it, whether its send was pressed). What a
        stop cannot settle yet: each ends when its worker finishes it (or, once its lease expires, is
        settled as the stop would have)."""
        return [
            (int(r[0]), r[1], bool(r[2]))
            for r in self.conn.execute(
                "SELECT id, claimed_by, send_started_at IS NOT NULL FROM messages"
                " WHERE job_id = ? AND status = 'sending' ORDER BY id",
                (job_id,),
            )
        ]

    @_guarded
    def set_job_status(self, job_id: int, status: str, reason: str | None = None) -> Job:
        """Set a job's status directly (workers: waiting_for_login, auto-pause with a reason).
        A stopped or completed job cannot change (InvalidTransition); an unknown status is BadInput."""
        if status not in JOB_STATUSES:
            raise errors.BadInput(f"unknown job status {status!r} (one of {', '.join(JOB_STATUSES)})")
        if status == JOB_STOPPED:
            return self.stop_job(job_id)
        now = self._clock()
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status == status:
                if reason is not None and reason != job.status_reason:
                    conn.execute("UPDATE jobs SET status_reason = ? WHERE id = ?", (reason, job_id))
            elif job.status in (JOB_STOPPED, JOB_COMPLETED):
                raise errors.InvalidTransition(f"job {job_id} is {job.status}; it cannot become {status}")
            else:
                self._set_job(conn, job, status, reason, now)
            return self._job(conn, job_id)

    @_guarded
    def unknown_count(self, job_id: int) -> int:
        """Failed messages of the job whose outcome is unknown (they may have arrived; a human decides)."""
        return int(
            self.conn.execute(
                "SELECT count(*) FROM messages INDEXED BY idx_messages_unknown"
                f" WHERE job_id = ? AND status = 'failed' AND error_class = '{UNKNOWN_OUTCOME}'",
                (job_id,),
            ).fetchone()[0]
        )

    @_guarded
    def resolve(self, message_id: int, *, sent: bool = False, resend: bool = False) -> Message:
        """A person's decision on one message that no worker can settle (every message can be settled this
        way, one by one): ``sent`` marks it sent (the person saw it in the chat); ``resend`` sends it again
        knowingly, without looking in the chat (the stamp is cleared and the press budget refilled: the
        next claim presses send, on any session). Logged as a ``resolve`` event; a durable commit.

        Accepted for a failed message (an unknown outcome, or any failure), a pending one (for instance
        stamped by a session that never returns), and one ``sending`` whose worker is gone (its lease
        expired: a killed or hung worker). InvalidTransition for a message in flight on a live worker, a
        final one (sent, skipped, cancelled), one of a pruned job, and a resend in a stopped job."""
        if sent == resend:
            raise errors.BadInput("choose exactly one of --sent and --resend-unverified")
        now = self._clock()
        with self._tx(durable=True) as conn:
            row = conn.execute(
                "SELECT job_id, status, send_started_at, send_started_session, error_class, claimed_by,"
                " lease_until FROM messages WHERE id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                raise errors.MessageNotFound(f"no message with id {message_id}")
            job_id, status, stamp, session, error_class, owner, lease = row
            job = self._job(conn, job_id)
            if conn.execute("SELECT pruned_at FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] is not None:
                raise errors.InvalidTransition(
                    f"message {message_id} belongs to job {job_id}, which was pruned"
                )
            if status == SENDING and lease is not None and lease >= now:
                raise errors.InvalidTransition(
                    f"message {message_id} is in flight on worker {owner} (its lease runs"
                    f" {lease - now:.0f}s more); wait for it, or resolve it once that worker is gone"
                )
            if status not in (FAILED, PENDING, SENDING):
                raise errors.InvalidTransition(
                    f"message {message_id} is {status}; only a failed, pending or abandoned one can be"
                    " resolved"
                )
            if job.status == JOB_STOPPED and resend:
                raise errors.InvalidTransition(f"message {message_id} belongs to stopped job {job_id}")
            was = error_class or ("failed" if status == FAILED else f"{status}, stamped" if stamp else status)
            if resend and status == FAILED and error_class != UNKNOWN_OUTCOME:
                # Resending without a look in the chat is for a message that may have arrived (an unknown
                # outcome, or one stamped and abandoned: pending/sending); one that failed for a known
                # reason (not on WhatsApp, …) would only fail again, or go out twice.
                raise errors.InvalidTransition(
                    f"message {message_id} failed as {error_class or 'failed'}, not with an unknown outcome: "
                    f"--resend-unverified is only for those; `wabulk retry-failed --message {message_id}` "
                    "tries it again"
                )
            if sent:
                at = stamp if stamp is not None else now
                who = session or "unknown"
                conn.execute(
                    "UPDATE messages SET status = 'sent', sent_at = ?, sent_by_session = ?,"
                    " last_error = NULL, error_class = NULL, claimed_by = NULL, lease_until = NULL,"
                    " next_attempt_at = NULL, updated_at = ? WHERE id = ?",
                    (at, session, now, message_id),
                )
                if session:
                    self._log_send(conn, session, at, message_id)
                detail = f"marked sent by a human (was {was}; session {who})"
                self._event(conn, now, job_id, message_id, "resolve", status, SENT, detail)
                self._maybe_finish(conn, job_id, now)
            else:
                conn.execute(
                    "UPDATE messages SET status = 'pending', attempts = 0, sends = 0, send_started_at = NULL,"
                    " send_started_session = NULL, send_snapshot = NULL, absent_attempt = NULL,"
                    " send_seq = NULL, send_instance = NULL,"
                    " next_attempt_at = NULL, last_error = NULL, error_class = NULL, claimed_by = NULL,"
                    " lease_until = NULL, updated_at = ? WHERE id = ?",
                    (now, message_id),
                )
                detail = f"resend without verification, decided by a human (was {was})"
                self._event(conn, now, job_id, message_id, "resolve", status, PENDING, detail)
                if job.status == JOB_COMPLETED:
                    self._set_job(conn, job, JOB_QUEUED, None, now, "resending a resolved message")
        return self._message_from_row(
            self.conn.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        )

    @_guarded
    def retry_failed(
        self, job_id: int | None = None, *, message_id: int | None = None, error_class: str | None = None
    ) -> int:
        """Put failed messages back to pending with attempts reset, KEEPING the send stamp and the presses
        counted (a message whose send was pressed is looked for in its chat before anything else, and the
        send budget is not refilled: never more presses than ``max_attempts``, one automatic resend):
        one job, one message, or every job (``job_id=None``: stopped and pruned jobs are left alone),
        optionally only those with ``error_class``. A completed job goes back to queued.
        Returns how many. JobNotFound/MessageNotFound for bad ids; InvalidTransition for a stopped or
        pruned job, or a ``message_id`` that is not failed."""
        now = self._clock()
        with self._tx(durable=True) as conn:
            where = [
                "m.status = 'failed'",
                "m.job_id IN (SELECT id FROM jobs WHERE status != 'stopped' AND pruned_at IS NULL)",
            ]
            params: list[Any] = []
            if job_id is not None:
                job = self._job(conn, job_id)
                if job.status == JOB_STOPPED:
                    raise errors.InvalidTransition(f"job {job_id} is stopped; its messages cannot be retried")
                if self.pruned_at(job_id) is not None:
                    raise errors.InvalidTransition(f"job {job_id} was pruned; its messages are gone")
                where.append("m.job_id = ?")
                params.append(job_id)
            if message_id is not None:
                row = conn.execute(
                    "SELECT job_id, status FROM messages WHERE id = ?", (message_id,)
                ).fetchone()
                if row is None:
                    raise errors.MessageNotFound(f"no message with id {message_id}")
                if row[1] != FAILED:
                    raise errors.InvalidTransition(f"message {message_id} is {row[1]}, not failed")
                if self._job(conn, row[0]).status == JOB_STOPPED:
                    raise errors.InvalidTransition(f"message {message_id} belongs to stopped job {row[0]}")
                where.append("m.id = ?")
                params.append(message_id)
            if error_class is not None:
                where.append("m.error_class = ?")
                params.append(error_class)
            cond = " AND ".join(where)
            job_ids = [
                r[0] for r in conn.execute(f"SELECT DISTINCT m.job_id FROM messages m WHERE {cond}", params)
            ]
            conn.execute(
                "INSERT INTO events (at, job_id, message_id, kind, from_status, to_status, detail) "
                "SELECT ?, m.job_id, m.id, 'status', 'failed', 'pending', 'retry'"
                f" FROM messages m WHERE {cond}",
                (now, *params),
            )
            # ``sends`` is kept: the press budget (max_attempts, one automatic resend) holds across retries;
            # only a person's ``resolve --resend-unverified`` refills it.
            n = conn.execute(
                "UPDATE messages SET status = 'pending', attempts = 0, absent_attempt = NULL,"
                " next_attempt_at = NULL, last_error = NULL, error_class = NULL, claimed_by = NULL,"
                " lease_until = NULL, updated_at = ?"
                f" WHERE id IN (SELECT m.id FROM messages m WHERE {cond})",
                (now, *params),
            ).rowcount
            for jid in job_ids:
                job = self._job(conn, jid)
                if job.status == JOB_COMPLETED:
                    self._set_job(conn, job, JOB_QUEUED, None, now, "retrying failed messages")
            return n

    @_guarded
    def prune(self, older_than_days: float) -> int:
        """Delete the messages (and their events) of completed/stopped jobs that finished more than
        ``older_than_days`` ago, keeping the jobs and their counts. Never touches pending or
        in-flight work. Returns the number of messages deleted."""
        if older_than_days < 0:
            raise errors.BadInput(f"--older-than must not be negative ({older_than_days:g})")
        now = self._clock()
        cutoff = now - older_than_days * 86400.0
        deleted: dict[int, int] = {}
        with self._tx(durable=True) as conn:
            # Mark first (retry-failed and export then leave the job alone), delete in short chunks after:
            # one transaction over a 1M-message job held the write lock long enough to end workers.
            for (jid,) in conn.execute(
                "SELECT id FROM jobs WHERE status IN ('completed', 'stopped') AND finished_at IS NOT NULL"
                " AND finished_at < ? AND pruned_at IS NULL ORDER BY id",
                (cutoff,),
            ).fetchall():
                pending, sending = self._open_work(conn, jid)
                if not pending and not sending:
                    conn.execute("UPDATE jobs SET pruned_at = ? WHERE id = ?", (now, jid))
            # Also jobs whose earlier prune was interrupted (killed between chunks).
            todo = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE pruned_at IS NOT NULL"
                    " AND EXISTS (SELECT 1 FROM messages WHERE messages.job_id = jobs.id) ORDER BY id"
                )
            ]
        for jid in todo:
            while True:
                with self._tx() as conn:
                    lo, hi, n = conn.execute(
                        "SELECT min(id), max(id), count(*) FROM"
                        " (SELECT id FROM messages WHERE job_id = ? ORDER BY id LIMIT ?)",
                        (jid, PRUNE_CHUNK),
                    ).fetchone()
                    if not n:
                        detail = f"{deleted.get(jid, 0)} messages removed"
                        self._event(conn, now, jid, None, "pruned", None, None, detail)
                        break
                    conn.execute(
                        "DELETE FROM events WHERE message_id IN"
                        " (SELECT id FROM messages WHERE job_id = ? AND id BETWEEN ? AND ?)",
                        (jid, lo, hi),
                    )
                    gone = conn.execute(
                        "DELETE FROM messages WHERE job_id = ? AND id BETWEEN ? AND ?", (jid, lo, hi)
                    ).rowcount
                    deleted[jid] = deleted.get(jid, 0) + gone
        return sum(deleted.values())
