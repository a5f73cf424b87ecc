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
    Job,
    JobSummary,
)

from .base import (
    _JOB_COLS,
    QueueBase,
    _guarded,
)


class JobsMixin(QueueBase):
    # --- jobs -------------------------------------------------------------------------------------
    @_guarded
    def get_job(self, job_id: int) -> Job:
        """The job with this id; raises JobNotFound."""
        return self._job(self.conn, job_id)

    @_guarded
    def list_jobs(self) -> list[Job]:
        """Every job, oldest first."""
        return [self._job_from_row(r) for r in self.conn.execute(f"SELECT {_JOB_COLS} FROM jobs ORDER BY id")]

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
        with self._tx() as conn:
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
        with self._tx() as conn:
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
        with self._tx() as conn:
            job = self._job(conn, job_id)
            if job.status == JOB_STOPPED:
                return job
            if job.status == JOB_COMPLETED:
                raise errors.InvalidTransition(f"job {job_id} is already completed")
            where = "job_id = ? AND status = 'pending'"
            self._event_select(conn, now, "status", PENDING, CANCELLED, "job stopped", where, (job_id,))
            conn.execute(
                f"UPDATE messages SET status = 'cancelled', updated_at = ?, next_attempt_at = NULL "
                f"WHERE {where}",
                (now, job_id),
            )
            self._set_job(conn, job, JOB_STOPPED, None, now, "stopped")
            _, sending = self._open_work(conn, job_id)
            if sending:
                # In-flight messages finish; the job's finish time is set when the last one does.
                conn.execute("UPDATE jobs SET finished_at = NULL WHERE id = ?", (job_id,))
            return self._job(conn, job_id)

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
    def retry_failed(
        self, job_id: int | None = None, *, message_id: int | None = None, error_class: str | None = None
    ) -> int:
        """Put failed messages back to pending with attempts reset and the send stamp cleared:
        one job, one message, or every job (``job_id=None``: stopped and pruned jobs are left alone),
        optionally only those with ``error_class``. A completed job goes back to queued.
        Returns how many. JobNotFound/MessageNotFound for bad ids; InvalidTransition for a stopped or
        pruned job, or a ``message_id`` that is not failed."""
        now = self._clock()
        with self._tx() as conn:
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
            n = conn.execute(
                "UPDATE messages SET status = 'pending', attempts = 0, send_started_at = NULL,"
                " send_started_session = NULL,"
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
        deleted = 0
        with self._tx() as conn:
            candidates = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE status IN ('completed', 'stopped') AND finished_at IS NOT NULL"
                    " AND finished_at < ? AND pruned_at IS NULL ORDER BY id",
                    (cutoff,),
                )
            ]
            for jid in candidates:
                pending, sending = self._open_work(conn, jid)
                if pending or sending:
                    continue
                conn.execute(
                    "DELETE FROM events WHERE message_id IN (SELECT id FROM messages WHERE job_id = ?)",
                    (jid,),
                )
                n = conn.execute("DELETE FROM messages WHERE job_id = ?", (jid,)).rowcount
                conn.execute("UPDATE jobs SET pruned_at = ? WHERE id = ?", (now, jid))
                self._event(conn, now, jid, None, "pruned", None, None, f"{n} messages removed")
                deleted += n
        return deleted
