"""The worker side: claim, stamp, complete (every fenced state change of a claimed message)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

from wabulk import errors
from wabulk.models import (
    CANCELLED,
    FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    TICK_READ,
    Claim,
)

from .base import (
    _CLAIM_RETURNING,
    _SAME_SESSION,
    _TICK_RANK,
    CLAIMABLE_JOB_STATUSES,
    OPTED_OUT,
    QueueBase,
    _guarded,
    _sql_list,
)


class ClaimsMixin(QueueBase):
    # --- the worker side ----------------------------------------------------------------------------
    @staticmethod
    def _job_filter(job_ids: Sequence[int] | None) -> str:
        """SQL (on alias ``j``) for jobs this session may claim from now."""
        sql = (
            f"j.status IN ({_sql_list(CLAIMABLE_JOB_STATUSES)})"
            " AND (j.not_before IS NULL OR j.not_before <= :now)"
            " AND (j.sessions = '[]' OR EXISTS (SELECT 1 FROM json_each(j.sessions) WHERE value = :session))"
        )
        if job_ids is not None:
            sql += f" AND j.id IN ({', '.join(str(int(i)) for i in job_ids) or 'NULL'})"
        return sql

    def claim_sql(self, job_ids: Sequence[int] | None = None) -> tuple[str, str]:
        """The two claim statements (expired lease first, then pending), for EXPLAIN and tests."""
        jf = self._job_filter(job_ids)
        expired = (
            "UPDATE messages SET claimed_by = :worker, lease_until = :lease, attempts = attempts + 1,"
            " updated_at = :now"
            " WHERE status = 'sending' AND id = ("
            "SELECT m.id FROM messages m INDEXED BY idx_messages_lease JOIN jobs j ON j.id = m.job_id"
            f" WHERE m.status = 'sending' AND m.lease_until < :now AND {jf} AND {_SAME_SESSION}"
            " ORDER BY m.lease_until LIMIT 1)"
            f" RETURNING {_CLAIM_RETURNING}"
        )
        # CROSS JOIN pins the loop order: claimable jobs (few) outside, the partial index inside,
        # so ORDER BY j.id, m.id comes straight from the index (no temp B-tree, no scan). INDEXED BY
        # makes a planner change an error instead of a silent slowdown (and the plan is tested).
        pending = (
            "UPDATE messages SET status = 'sending', claimed_by = :worker, lease_until = :lease,"
            " attempts = attempts + 1, updated_at = :now"
            " WHERE status = 'pending' AND id = ("
            "SELECT m.id FROM jobs j CROSS JOIN messages m INDEXED BY idx_messages_claim"
            f" WHERE {jf} AND m.job_id = j.id AND m.status = 'pending'"
            " AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= :now)"
            f" AND {_SAME_SESSION}"
            " ORDER BY j.id, m.id LIMIT 1)"
            f" RETURNING {_CLAIM_RETURNING}"
        )
        return expired, pending

    @_guarded
    def claim(
        self, worker_id: str, session: str, *, lease_seconds: float, job_ids: Sequence[int] | None = None
    ) -> Claim | None:
        """Lease the next runnable message (FIFO within a job), or None. See the module docstring
        for expired leases, exhausted attempts and opt-outs."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        expired_sql, pending_sql = self.claim_sql(job_ids)
        now = self._clock()
        params = {"worker": worker_id, "lease": now + lease_seconds, "now": now, "session": session}
        with self._tx() as conn:
            # Expired leases are rare: one probe of a tiny partial index before the two UPDATEs.
            any_expired = (
                conn.execute(
                    "SELECT 1 FROM messages WHERE status = 'sending' AND lease_until < ? LIMIT 1", (now,)
                ).fetchone()
                is not None
            )
            if any_expired:
                self._settle_stopped(conn, now)
            while True:
                row = None
                if any_expired:
                    from_status = SENDING
                    row = conn.execute(expired_sql, params).fetchone()
                if row is None:
                    from_status = PENDING
                    row = conn.execute(pending_sql, params).fetchone()
                if row is None:
                    return None
                mid, job_id, attempts, max_attempts, phone, body, name, stamp, job_status, attachment = row
                if conn.execute("SELECT 1 FROM optouts WHERE phone = ?", (phone,)).fetchone():
                    why = OPTED_OUT if stamp is None else f"{OPTED_OUT} (an earlier try may have gone out)"
                    self._settle(conn, mid, job_id, SKIPPED, from_status, why, "opted_out", now)
                    continue
                if from_status == SENDING and stamp is None and attempts > max_attempts:
                    self._settle(
                        conn,
                        mid,
                        job_id,
                        FAILED,
                        SENDING,
                        "attempts exhausted: lease expired (worker died?)",
                        "attempts_exhausted",
                        now,
                    )
                    continue
                detail = f"worker {worker_id} attempt {attempts}"
                if from_status == SENDING:
                    detail += (
                        "; lease expired; reclaimed"
                        if stamp is None
                        else "; lease expired after send started; needs verification"
                    )
                self._event(conn, now, job_id, mid, "claim", from_status, SENDING, detail)
                if job_status == JOB_QUEUED:
                    self._set_job(conn, self._job(conn, job_id), JOB_RUNNING, None, now, "first claim")
                return Claim(
                    message_id=mid,
                    job_id=job_id,
                    worker_id=worker_id,
                    attempt=attempts,
                    phone=phone,
                    body=body,
                    name=name,
                    attachment=attachment,
                    lease_until=now + lease_seconds,
                    send_started_at=stamp,
                )

    def _settle(
        self,
        conn: sqlite3.Connection,
        mid: int,
        job_id: int,
        status: str,
        from_status: str,
        error: str,
        error_class: str,
        now: float,
    ) -> None:
        """Within a claim: end a just-claimed message without spending an attempt."""
        conn.execute(
            "UPDATE messages SET status = ?, attempts = attempts - 1, claimed_by = NULL, lease_until = NULL,"
            " last_error = ?, error_class = ?, updated_at = ? WHERE id = ?",
            (status, error, error_class, now, mid),
        )
        self._event(conn, now, job_id, mid, "status", from_status, status, error)
        self._maybe_finish(conn, job_id, now)

    def _settle_stopped(self, conn: sqlite3.Connection, now: float) -> None:
        """Expired leases of stopped jobs will never be claimed: close them honestly."""
        rows = conn.execute(
            "SELECT m.id, m.job_id, m.send_started_at FROM messages m JOIN jobs j ON j.id = m.job_id"
            " WHERE m.status = 'sending' AND m.lease_until < ? AND j.status = 'stopped'",
            (now,),
        ).fetchall()
        for mid, job_id, stamp in rows:
            if stamp is None:
                status, error = CANCELLED, "job stopped"
            else:
                status, error = FAILED, "outcome unknown: job stopped while a send was in progress"
            conn.execute(
                "UPDATE messages SET status = ?, claimed_by = NULL, lease_until = NULL, last_error = ?,"
                " error_class = ?, updated_at = ? WHERE id = ?",
                (status, error, None if stamp is None else "unknown_outcome", now, mid),
            )
            self._event(conn, now, job_id, mid, "status", SENDING, status, error)
            self._maybe_finish(conn, job_id, now)

    def _fenced(
        self,
        conn: sqlite3.Connection,
        claim: Claim,
        set_sql: str,
        params: Sequence[Any],
        *,
        now: float,
        to: str,
        detail: str,
        kind: str = "status",
        extra_where: str = "",
        extra_params: Sequence[Any] = (),
    ) -> None:
        """Apply ``SET set_sql`` only while the claim still owns the message, and log it as a ``kind``
        event from sending to ``to`` with ``detail`` (one step, one transaction); else LeaseLost."""
        cur = conn.execute(
            f"UPDATE messages SET {set_sql} WHERE id = ? AND status = 'sending' AND claimed_by = ?"
            f" AND attempts = ?{extra_where}",
            (*params, claim.message_id, claim.worker_id, claim.attempt, *extra_params),
        )
        if cur.rowcount != 1:
            row = conn.execute(
                "SELECT status, claimed_by, attempts, lease_until FROM messages WHERE id = ?",
                (claim.message_id,),
            ).fetchone()
            if row is None:
                raise errors.LeaseLost(f"message {claim.message_id} no longer exists")
            status, owner, attempts, lease = row
            if status == SENDING and owner == claim.worker_id and attempts == claim.attempt:
                raise errors.LeaseLost(
                    f"lease on message {claim.message_id} expired at {lease:.3f}; not sending it"
                )
            raise errors.LeaseLost(
                f"message {claim.message_id} is no longer ours (now {status}, attempt {attempts}, "
                f"owner {owner or 'none'})"
            )
        self._event(conn, now, claim.job_id, claim.message_id, kind, SENDING, to, detail)

    @_guarded
    def mark_send_started(self, claim: Claim) -> None:
        """Durably stamp that the send action is about to happen (fenced; LeaseLost also when the
        lease has expired: a zombie must not click send). Keeps the earliest stamp."""
        now = self._clock()
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "send_started_at = COALESCE(send_started_at, ?), updated_at = ?,"
                " send_started_session = COALESCE(send_started_session,"
                " (SELECT session FROM workers WHERE id = claimed_by))",
                (now, now),
                now=now,
                kind="send_started",
                to=SENDING,
                detail=f"worker {claim.worker_id} attempt {claim.attempt}",
                extra_where=" AND lease_until > ?",
                extra_params=(now,),
            )

    @_guarded
    def extend_lease(self, claim: Claim, seconds: float) -> Claim:
        """Push the lease to now + ``seconds`` (fenced). Returns the updated claim."""
        now = self._clock()
        until = now + seconds
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "lease_until = ?, updated_at = ?",
                (until, now),
                now=now,
                kind="lease",
                to=SENDING,
                detail=f"extended to {until:.3f}",
            )
        return dataclasses.replace(claim, lease_until=until)

    @_guarded
    def mark_sent(self, claim: Claim, *, tick: str, session: str, at: float | None = None) -> None:
        """WhatsApp accepted the message (``tick`` left the clock). Fenced; clears the lease."""
        now = self._clock()
        sent_at = now if at is None else at
        delivered = sent_at if _TICK_RANK.get(tick, 0) >= 2 else None
        read = sent_at if tick == TICK_READ else None
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "status = 'sent', sent_at = ?, receipt = ?, delivered_at = ?, read_at = ?,"
                " sent_by_session = ?, claimed_by = NULL, lease_until = NULL, last_error = NULL,"
                " error_class = NULL, updated_at = ?",
                (sent_at, tick, delivered, read, session, now),
                now=now,
                to=SENT,
                detail=f"tick {tick} via session {session}",
            )
            self._maybe_finish(conn, claim.job_id, now)

    @_guarded
    def schedule_retry(self, claim: Claim, *, error: str, error_class: str, delay: float) -> None:
        """A transient failure: back to pending, due in ``delay`` seconds, keeping the send stamp (the
        next claim verifies). With attempts used up, the message fails ("attempts exhausted: …")."""
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT max_attempts FROM messages WHERE id = ?", (claim.message_id,)
            ).fetchone()
            if row is not None and claim.attempt >= row[0]:
                self._fail(conn, claim, f"attempts exhausted: {error}", error_class, now)
                return
            self._fenced(
                conn,
                claim,
                "status = 'pending', next_attempt_at = ?, last_error = ?,"
                " error_class = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?",
                (now + max(0.0, delay), error, error_class, now),
                now=now,
                to=PENDING,
                detail=f"retry in {max(0.0, delay):g}s: {error}",
            )

    @_guarded
    def mark_failed(self, claim: Claim, *, error: str, error_class: str) -> None:
        """A permanent failure (fenced)."""
        now = self._clock()
        with self._tx() as conn:
            self._fail(conn, claim, error, error_class, now)

    def _fail(self, conn: sqlite3.Connection, claim: Claim, error: str, error_class: str, now: float) -> None:
        """Within a transaction: the claimed message fails for good (fenced), with its event."""
        self._fenced(
            conn,
            claim,
            "status = 'failed', last_error = ?, error_class = ?,"
            " claimed_by = NULL, lease_until = NULL, updated_at = ?",
            (error, error_class, now),
            now=now,
            to=FAILED,
            detail=error,
        )
        self._maybe_finish(conn, claim.job_id, now)

    @_guarded
    def release(self, claim: Claim, *, reason: str, delay: float = 0.0) -> None:
        """Give the message back untried (pause, shutdown, logged out, quiet hours): pending, no
        attempt spent, send stamp kept. With ``delay`` > 0 it is not claimable again for that many
        seconds (e.g. until the recipient's quiet hours end). Fenced."""
        now = self._clock()
        due = "next_attempt_at = ?, " if delay > 0 else ""
        params: tuple[Any, ...] = (now + delay, now) if delay > 0 else (now,)
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                f"status = 'pending', attempts = attempts - 1, claimed_by = NULL,"
                f" lease_until = NULL, {due}updated_at = ?",
                params,
                now=now,
                to=PENDING,
                detail=f"released: {reason}" + (f" (due in {delay:g}s)" if delay > 0 else ""),
            )

    def defer(self, claim: Claim, *, until: float, reason: str) -> None:
        """Give the message back untried, not to be claimed before ``until`` (e.g. the end of the
        recipient's quiet hours). Fenced; no attempt spent; the send stamp is kept."""
        self.release(claim, reason=reason, delay=max(until - self._clock(), 0.001))
