"""The worker side: claim, stamp, complete (every fenced state change of a claimed message)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any, NoReturn

from wabulk import errors, identity
from wabulk.models import (
    CANCELLED,
    FAILED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STOPPED,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    TICK_READ,
    UNKNOWN_OUTCOME,
    UNKNOWN_TEXT,
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
    _looks_like_wabulk,
    _pid_alive,
    _sql_list,
    params_from_json,
)

# A stamped message is pressed at most this many times without a human (the first send and one resend
# after the chat proved it absent), and never more than ``max_attempts``.
AUTO_SENDS = 2
# Claims of a stamped message beyond max_attempts that may go to verifying it (crashes while looking).
VERIFY_EXTRA_ATTEMPTS = 2
OPTED_OUT_AFTER_PRESS = (
    f"{UNKNOWN_TEXT}: the number opted out after the send was pressed (it may have arrived)"
)
RELINKED_REASON = "the device was relinked after the send was pressed; its chat may lack the history"


class ClaimsMixin(QueueBase):
    # --- the worker side ----------------------------------------------------------------------------
    @staticmethod
    def _job_filter(job_ids: Sequence[int] | None, templates: bool = False) -> str:
        """SQL (on alias ``j``) for jobs this session may claim from now (template jobs only when the
        claiming provider can send Meta-approved templates)."""
        sql = (
            f"j.status IN ({_sql_list(CLAIMABLE_JOB_STATUSES)})"
            " AND (j.not_before IS NULL OR j.not_before <= :now)"
            " AND j.ready = 1"
            " AND (j.sessions = '[]' OR EXISTS (SELECT 1 FROM json_each(j.sessions) WHERE value = :session))"
        )
        if not templates:
            sql += " AND j.template_name IS NULL"
        if job_ids is not None:
            sql += f" AND j.id IN ({', '.join(str(int(i)) for i in job_ids) or 'NULL'})"
        return sql

    def claim_sql(self, job_ids: Sequence[int] | None = None, *, templates: bool = False) -> tuple[str, str]:
        """The two claim statements (expired lease first, then pending), for EXPLAIN and tests."""
        jf = self._job_filter(job_ids, templates)
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
        self,
        worker_id: str,
        session: str,
        *,
        lease_seconds: float,
        job_ids: Sequence[int] | None = None,
        templates: bool = False,
    ) -> Claim | None:
        """Lease the next runnable message (FIFO within a job), or None (also while ``session`` is paused).
        A template job's messages are claimed only with ``templates`` (the provider's capability): a
        provider that cannot send a Meta-approved template never touches them, they stay pending for one
        that can. See the module docstring for expired leases, exhausted attempts and opt-outs."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if not session:
            raise ValueError("a claim needs the claiming session (the stamp records it)")
        expired_sql, pending_sql = self.claim_sql(job_ids, templates=templates)
        now = self._clock()
        params = {"worker": worker_id, "lease": now + lease_seconds, "now": now, "session": session}
        with self._tx() as conn:
            paused = conn.execute(
                "SELECT 1 FROM sessions WHERE name = ? AND paused_at IS NOT NULL", (session,)
            ).fetchone()
            if paused:
                return None  # a human must look at this account first (``wabulk resume --session``)
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
                (mid, job_id, attempts, max_attempts, phone, body, name, stamp, stamp_session, snap, sends,
                 job_status, attachment, template_name, template_lang, params_raw) = row  # fmt: skip
                if conn.execute("SELECT 1 FROM optouts WHERE phone = ?", (phone,)).fetchone():
                    if stamp is None or self._last_press_absent(conn, mid):
                        self._settle(conn, mid, job_id, SKIPPED, from_status, OPTED_OUT, "opted_out", now)
                    else:
                        # Pressed and maybe delivered: "skipped" would promise nothing went out.
                        self._settle(conn, mid, job_id, FAILED, from_status, OPTED_OUT_AFTER_PRESS,
                                     UNKNOWN_OUTCOME, now)  # fmt: skip
                    continue
                if stamp is None and attempts > max_attempts:
                    self._settle(
                        conn,
                        mid,
                        job_id,
                        FAILED,
                        from_status,
                        "attempts exhausted: lease expired (worker died?)",
                        "attempts_exhausted",
                        now,
                    )
                    continue
                if stamp is not None and attempts > max_attempts + VERIFY_EXTRA_ATTEMPTS:
                    # Verification itself kept failing (crashes, errors): stop trying; a human decides.
                    why = f"{UNKNOWN_TEXT}: the chat could not be checked"
                    self._settle(conn, mid, job_id, FAILED, from_status, why, UNKNOWN_OUTCOME, now)
                    continue
                detail = f"worker {worker_id} session {session} attempt {attempts}"
                if from_status == SENDING:
                    detail += (
                        "; lease expired; reclaimed"
                        if stamp is None
                        else "; lease expired after send started; needs verification"
                    )
                elif stamp is not None:
                    detail += "; an earlier try pressed send; needs verification"
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
                    session=session,
                    send_started_session=stamp_session,
                    send_evidence=snap,
                    sends=int(sends or 0),
                    template_name=template_name,
                    template_lang=template_lang,
                    params=params_from_json(params_raw),
                )

    @staticmethod
    def _last_press_absent(conn: sqlite3.Connection, mid: int) -> bool:
        """Whether the chat proved the message's last press absent (and it was not pressed since)."""
        row = conn.execute("SELECT absent_attempt IS NOT NULL FROM messages WHERE id = ?", (mid,)).fetchone()
        return bool(row and row[0])

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

    @_guarded
    def settle_stopped(self) -> int:
        """Settle the in-flight messages of stopped jobs whose worker is gone (lease expired): cancelled when
        nothing can have gone out, else an unknown outcome. Done here too, not only inside a claim, so that
        ``--until-done`` and ``status --check`` tell the truth when no worker claims. Returns how many."""
        now = self._clock()
        probe = (
            "SELECT 1 FROM messages m JOIN jobs j ON j.id = m.job_id"
            " WHERE m.status = 'sending' AND m.lease_until < ? AND j.status = 'stopped' LIMIT 1"
        )
        if self.conn.execute(probe, (now,)).fetchone() is None:
            return 0
        with self._tx(durable=True) as conn:
            return self._settle_stopped(conn, now)

    def _settle_stopped(self, conn: sqlite3.Connection, now: float) -> int:
        """Expired leases of stopped jobs will never be claimed: close them honestly."""
        rows = conn.execute(
            "SELECT m.id, m.job_id, m.send_started_at, m.absent_attempt = m.attempts FROM messages m"
            " JOIN jobs j ON j.id = m.job_id"
            " WHERE m.status = 'sending' AND m.lease_until < ? AND j.status = 'stopped'",
            (now,),
        ).fetchall()
        for mid, job_id, stamp, verified in rows:
            self._close_stopped(conn, mid, job_id, SENDING, stamp, bool(verified), now)
        return len(rows)

    def _close_stopped(
        self,
        conn: sqlite3.Connection,
        mid: int,
        job_id: int,
        from_status: str,
        stamp: float | None,
        verified_absent: bool,
        now: float,
    ) -> str:
        """A message of a stopped job ends: ``cancelled`` when nothing can have gone out (no stamp, or the
        chat proved the earlier try absent), else failed with an unknown outcome. The one rule for every
        path (stop while pending, while in flight, after a crash). Returns the status."""
        if stamp is None or verified_absent:
            status, error, cls = CANCELLED, "job stopped", None
        else:
            status, cls = FAILED, UNKNOWN_OUTCOME
            error = f"{UNKNOWN_TEXT}: job stopped after the send was pressed"
        conn.execute(
            "UPDATE messages SET status = ?, claimed_by = NULL, lease_until = NULL, next_attempt_at = NULL,"
            " last_error = ?, error_class = ?, updated_at = ? WHERE id = ?",
            (status, error, cls, now, mid),
        )
        self._event(conn, now, job_id, mid, "status", from_status, status, error)
        self._maybe_finish(conn, job_id, now)
        return status

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
            self._lease_lost(conn, claim)
        self._event(conn, now, claim.job_id, claim.message_id, kind, SENDING, to, detail)

    @staticmethod
    def _lease_lost(conn: sqlite3.Connection, claim: Claim) -> NoReturn:
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

    @_guarded
    def stamped_to(self, session: str, phone: str, *, excluding: int) -> int | None:
        """Another open message to ``phone`` whose send ``session`` pressed and that is not settled yet
        (its id), else None. While there is one, a new send to that chat would put a bubble there that
        the other's verification could take for its own (issue 20, 10)."""
        row = self.conn.execute(
            "SELECT id FROM messages WHERE send_started_at IS NOT NULL AND status IN ('pending', 'sending') "
            "AND send_started_session = ? AND phone = ? AND id != ? LIMIT 1",
            (session, phone, excluding),
        ).fetchone()
        return None if row is None else int(row[0])

    @_guarded
    def mark_send_started(self, claim: Claim, evidence: str | None = None) -> None:
        """Durably stamp that the send action is about to happen, with the claiming session and the
        provider's ``evidence`` (opaque text, stored as given, handed back in ``Claim.send_evidence``), in one
        transaction that also checks everything that may have changed
        since the claim: LeaseLost when the lease expired or was taken (a zombie must not click send);
        SendRefused, with the message already settled, when the job was stopped (cancelled) or paused
        (pending again), the number opted out (skipped), or the send budget is used up: never more sends
        than ``max_attempts``, and a stamped message is only pressed again after its chat gave positive
        evidence that the earlier try is absent, and at most once automatically. Keeps the earliest stamp
        time; records the latest evidence."""
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT m.status, m.claimed_by, m.attempts, m.lease_until, m.send_started_at, m.sends,"
                " m.max_attempts, m.absent_attempt, j.status, m.phone IN (SELECT phone FROM optouts)"
                " FROM messages m JOIN jobs j ON j.id = m.job_id WHERE m.id = ?",
                (claim.message_id,),
            ).fetchone()
            if (
                row is None
                or row[0] != SENDING
                or row[1] != claim.worker_id
                or row[2] != claim.attempt
                or row[3] is None
                or row[3] <= now
            ):
                self._lease_lost(conn, claim)
            _, _, attempts, _, stamp, sends, max_attempts, absent_attempt, job_status, opted_out = row
            verified_absent = absent_attempt is not None and absent_attempt == attempts
            refusal = self._refusal(
                conn, claim, now, stamp, sends, max_attempts, attempts, verified_absent, job_status, opted_out
            )
            if refusal is None:
                self._stamp(conn, claim, evidence, sends, now)
        if refusal is not None:  # raised after the commit: the settlement above must stay
            status, why = refusal
            raise errors.SendRefused(f"message {claim.message_id} not sent: {why}", status=status)

    def _stamp(
        self, conn: sqlite3.Connection, claim: Claim, evidence: str | None, sends: int, now: float
    ) -> None:
        """Write the stamp: the earliest time, the claiming session, the evidence, one more send."""
        session = claim.session or self._worker_session(conn, claim.worker_id)
        self._fenced(
            conn,
            claim,
            "send_started_at = COALESCE(send_started_at, ?), updated_at = ?, send_started_session = ?,"
            # Pressing again makes the evidence of absence stale: this try's outcome is open again.
            " send_snapshot = ?, sends = sends + 1, absent_attempt = NULL",
            (now, now, session, evidence),
            now=now,
            kind="send_started",
            to=SENDING,
            detail=f"worker {claim.worker_id} session {session} attempt {claim.attempt} send {sends + 1}",
        )
        # The stamp's place in the events sequence (never steps back, unlike the clock): the first press.
        # Which instance pressed: another one may only take the chat's silence as absence once this one is
        # provably gone. The daily cap counts the message now: its outcome may stay unknown, yet arrive.
        conn.execute(
            "UPDATE messages SET send_seq = COALESCE(send_seq, last_insert_rowid()), send_instance = ?"
            " WHERE id = ?",
            (claim.worker_id, claim.message_id),
        )
        self._log_send(conn, session, now, claim.message_id)
        conn.execute(
            "INSERT INTO sessions (name, last_send_at) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET last_send_at = excluded.last_send_at",
            (session, now),
        )

    @staticmethod
    def _worker_session(conn: sqlite3.Connection, worker_id: str) -> str:
        row = conn.execute("SELECT session FROM workers WHERE id = ?", (worker_id,)).fetchone()
        if row is None:
            raise errors.LeaseLost(f"worker {worker_id} has no session to stamp the send with")
        return str(row[0])

    def _refusal(
        self,
        conn: sqlite3.Connection,
        claim: Claim,
        now: float,
        stamp: float | None,
        sends: int,
        max_attempts: int,
        attempts: int,
        verified_absent: bool,
        job_status: str,
        opted_out: bool,
    ) -> tuple[str, str] | None:
        """Why the claimed message must not be pressed now (and settle it accordingly), or None."""
        unverified = stamp is not None and not verified_absent
        if job_status == JOB_STOPPED:
            self._fenced(conn, claim, "updated_at = ?", (now,), now=now, to=SENDING, detail="job stopped")
            status = self._close_stopped(
                conn, claim.message_id, claim.job_id, SENDING, stamp, not unverified, now
            )
            return status, "the job was stopped"
        if opted_out:
            if unverified:
                self._fail(conn, claim, OPTED_OUT_AFTER_PRESS, UNKNOWN_OUTCOME, now)
                return FAILED, OPTED_OUT_AFTER_PRESS
            self._settle(conn, claim.message_id, claim.job_id, SKIPPED, SENDING, OPTED_OUT, "opted_out", now)
            return SKIPPED, "the number opted out"
        if job_status in (JOB_PAUSED, JOB_WAITING_FOR_LOGIN):
            self._fenced(
                conn,
                claim,
                "status = 'pending', attempts = attempts - 1, claimed_by = NULL, lease_until = NULL,"
                " updated_at = ?",
                (now,),
                now=now,
                to=PENDING,
                detail=f"released: the job is {job_status}",
            )
            return PENDING, f"the job is {job_status}"
        if unverified:
            error = UNKNOWN_TEXT + ": not resent without looking in the chat"
            self._fail(conn, claim, error, UNKNOWN_OUTCOME, now)
            return FAILED, error
        if sends >= max_attempts or attempts > max_attempts or (stamp is not None and sends >= AUTO_SENDS):
            error = (
                f"attempts exhausted: pressed send {sends} time(s) and the chat shows none of them"
                if stamp is not None
                else "attempts exhausted"
            )
            self._fail(conn, claim, error, "attempts_exhausted", now)
            return FAILED, error
        return None

    @_guarded
    def mark_absent(self, claim: Claim, *, reason: str, lease_seconds: float) -> Claim:
        """The chat gave positive evidence that the earlier try of this stamped message is not there:
        record it for this attempt (the next stamp is allowed once) and renew the lease. Fenced."""
        now = self._clock()
        until = now + lease_seconds
        with self._tx() as conn:
            why_not = self._absence_unproven(conn, claim)
            if why_not is not None:
                error = f"{UNKNOWN_TEXT}: {why_not}"
                self._fail(conn, claim, error, UNKNOWN_OUTCOME, now)
        if why_not is not None:  # raised after the commit: the settlement stays
            raise errors.SendRefused(f"message {claim.message_id} not resent: {error}", status=FAILED)
        with self._tx() as conn:
            self._fenced(
                conn,
                claim,
                "absent_attempt = attempts, lease_until = ?, updated_at = ?",
                (until, now),
                now=now,
                kind="verify",
                to=SENDING,
                detail=f"absent: {reason}",
            )
            conn.execute("UPDATE sessions SET unknown_streak = 0 WHERE name = ?", (claim.session,))
        return dataclasses.replace(claim, lease_until=until)

    def _absence_unproven(self, conn: sqlite3.Connection, claim: Claim) -> str | None:
        """Why an empty chat cannot prove this stamped message absent, or None. (a) The session's device was
        linked after the first press (ordered by the events sequence, which a clock step cannot reorder):
        a new device's chat may lack the old one's history. (b) Another worker instance pressed last and
        is not provably gone: it may be frozen between its stamp and Enter (SIGSTOP, a paused VM, the
        same session name on another host) and press after we looked."""
        row = conn.execute(
            "SELECT m.send_seq, s.linked_seq, m.send_instance, i.host, i.pid, i.ended_at FROM messages m"
            " LEFT JOIN sessions s ON s.name = m.send_started_session"
            " LEFT JOIN worker_instances i ON i.id = m.send_instance WHERE m.id = ?",
            (claim.message_id,),
        ).fetchone()
        if row is None:
            return None  # gone: the fenced write reports it
        send_seq, linked_seq, instance, host, pid, ended_at = row
        if linked_seq is not None and (send_seq is None or send_seq < linked_seq):
            return RELINKED_REASON
        if instance == claim.worker_id or ended_at is not None:
            return None
        if instance is None or host is None:
            # Stamped before m010, or through the queue API by a caller that never registered (tests,
            # tools): there is no registered process to wait for, as before this rule.
            return None
        if host == identity.place_key() and not (_pid_alive(int(pid)) and _looks_like_wabulk(int(pid))):
            return None  # that process is gone: it can press nothing any more
        return (
            f"worker {instance} (pid {pid} on {identity.display(host)}) pressed send and is not known to"
            " have ended; it may still press"
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
        """WhatsApp accepted the message (``tick`` left the clock). Fenced; clears the lease; counts the send
        for the session's daily cap (``send_log``, which prune keeps)."""
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
            self._log_send(conn, session, sent_at, claim.message_id)
            conn.execute(
                "INSERT INTO sessions (name, first_sent_at, unknown_streak) VALUES (?, ?, 0)"
                " ON CONFLICT (name) DO UPDATE SET unknown_streak = 0,"
                " first_sent_at = COALESCE(first_sent_at, excluded.first_sent_at)",
                (session, sent_at),
            )
            self._maybe_finish(conn, claim.job_id, now)

    @_guarded
    def schedule_retry(self, claim: Claim, *, error: str, error_class: str, delay: float) -> None:
        """A transient failure: back to pending, due in ``delay`` seconds, keeping the send stamp (the
        next claim verifies). With attempts used up, an unstamped message fails ("attempts exhausted: …");
        a stamped one still goes back once, to be verified (it may have arrived) but never resent."""
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT max_attempts, send_started_at FROM messages WHERE id = ?", (claim.message_id,)
            ).fetchone()
            if row is not None and claim.attempt >= row[0] and row[1] is None:
                self._fail(conn, claim, f"attempts exhausted: {error}", error_class, now)
                return
            self._to_pending(
                conn,
                claim,
                "next_attempt_at = ?, last_error = ?, error_class = ?, ",
                (now + max(0.0, delay), error, error_class),
                now=now,
                detail=f"retry in {max(0.0, delay):g}s: {error}",
            )

    @_guarded
    def mark_failed(self, claim: Claim, *, error: str, error_class: str) -> None:
        """A failure for good (fenced). A message whose send was pressed and whose chat never proved the
        try absent fails as ``unknown_outcome`` whatever the error: it may have arrived."""
        now = self._clock()
        with self._tx() as conn:
            self._fail(conn, claim, error, error_class, now)

    def _fail(self, conn: sqlite3.Connection, claim: Claim, error: str, error_class: str, now: float) -> None:
        """Within a transaction: the claimed message fails for good (fenced), with its event."""
        row = conn.execute(
            "SELECT send_started_at IS NOT NULL AND absent_attempt IS NOT attempts"
            " FROM messages WHERE id = ?",
            (claim.message_id,),
        ).fetchone()
        if row is not None and row[0] and error_class != UNKNOWN_OUTCOME:
            error = f"{UNKNOWN_TEXT} ({error})"
            error_class = UNKNOWN_OUTCOME
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

    def _to_pending(
        self,
        conn: sqlite3.Connection,
        claim: Claim,
        set_sql: str,
        params: Sequence[Any],
        *,
        now: float,
        detail: str,
        give_back_attempt: bool = False,
    ) -> None:
        """The one way a claimed message goes back to pending (retry, release, defer). Fenced. In a job
        stopped meanwhile it does not: it is settled as the stop would have (cancelled, or unknown when
        stamped), so no message is left pending in a stopped job."""
        job_status = conn.execute("SELECT status FROM jobs WHERE id = ?", (claim.job_id,)).fetchone()
        if job_status is not None and job_status[0] == JOB_STOPPED:
            self._fenced(conn, claim, "updated_at = ?", (now,), now=now, to=SENDING, detail="job stopped")
            stamp, verified = conn.execute(
                "SELECT send_started_at, absent_attempt = attempts FROM messages WHERE id = ?",
                (claim.message_id,),
            ).fetchone()
            self._close_stopped(conn, claim.message_id, claim.job_id, SENDING, stamp, bool(verified), now)
            return
        attempts = "attempts = attempts - 1, " if give_back_attempt else ""
        self._fenced(
            conn,
            claim,
            f"status = 'pending', {attempts}{set_sql}claimed_by = NULL, lease_until = NULL, updated_at = ?",
            (*params, now),
            now=now,
            to=PENDING,
            detail=detail,
        )

    @_guarded
    def release(self, claim: Claim, *, reason: str, delay: float = 0.0) -> None:
        """Give the message back untried (pause, shutdown, logged out, quiet hours): pending, no
        attempt spent, send stamp kept. With ``delay`` > 0 it is not claimable again for that many
        seconds (e.g. until the recipient's quiet hours end). Fenced."""
        now = self._clock()
        due = "next_attempt_at = ?, " if delay > 0 else ""
        params: tuple[Any, ...] = (now + delay,) if delay > 0 else ()
        with self._tx() as conn:
            self._to_pending(
                conn,
                claim,
                due,
                params,
                now=now,
                detail=f"released: {reason}" + (f" (due in {delay:g}s)" if delay > 0 else ""),
                give_back_attempt=True,
            )

    def defer(self, claim: Claim, *, until: float, reason: str) -> None:
        """Give the message back untried, not to be claimed before ``until`` (e.g. the end of the
        recipient's quiet hours). Fenced; no attempt spent; the send stamp is kept."""
        self.release(claim, reason=reason, delay=max(until - self._clock(), 0.001))
