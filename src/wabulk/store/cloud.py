"""The Cloud API side of the queue: batched claim / stamp / finish, and status webhooks.

Exactly once over an API without an idempotency key (issue 19):

- A message is stamped (``send_started_at``) durably before its POST; the POST carries
  ``biz_opaque_callback_data`` naming the message (``wb1:<id>:<send>``).
- A Graph error answer is positive evidence that nothing was sent (no wamid was issued): the stamp is
  cleared and the message goes back to pending (retry) or fails for good (``graph_<code>``).
- An unknown outcome (no answer after the request was written) keeps the message ``sending`` with its
  stamp, leased for the settle window: only a status webhook settles it (matched by wamid, else by the
  callback data). When the window passes with no webhook, it fails as ``unknown_outcome`` for a person
  (``wabulk resolve``); a later webhook still turns it into sent. A stamped message is never claimed
  for a POST again.
- Status webhooks are idempotent and monotonic: sent < delivered < read; ``failed`` only fails a message
  nothing proved delivered; an id wabulk does not know is ignored.

Batches: one transaction claims up to N messages, one durable transaction stamps a chunk right before its
POSTs, one durable transaction records a chunk's answers. Per-message events are kept (the audit log).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wabulk import errors
from wabulk.models import (
    FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STOPPED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    TICK_DELIVERED,
    TICK_READ,
    TICK_SENT,
    UNKNOWN_OUTCOME,
    Claim,
    CloudOutcome,
    CloudStatus,
)

from .base import (
    _TICK_RANK,
    CLAIMABLE_JOB_STATUSES,
    OPTED_OUT,
    QueueBase,
    _guarded,
    _sql_list,
    params_from_json,
    write_tx,
)

CALLBACK_PREFIX = "wb1:"  # the fast path's callback data: wb1:<message id>:<send>
EVIDENCE_PREFIX = "wbe:"  # the provider interface's: an unguessable token stored with the stamp
UNKNOWN_TEXT = "outcome unknown"
_FAIL_RANK = 0  # a failed status ranks below sent: it never overrides a delivered/read one


def callback_data(message_id: int, send: int) -> str:
    """The ``biz_opaque_callback_data`` of a message's ``send``-th POST."""
    return f"{CALLBACK_PREFIX}{message_id}:{send}"


def message_id_from_callback(data: str | None) -> int | None:
    """The message id named by wabulk's callback data, or None for anything else."""
    if not data or not data.startswith(CALLBACK_PREFIX):
        return None
    head = data[len(CALLBACK_PREFIX) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass
class StatusResult:
    """What one batch of status webhooks changed."""

    applied: int = 0  # statuses that changed a message
    duplicates: int = 0  # statuses already known (no change)
    unknown: int = 0  # statuses for ids wabulk does not know (ignored)
    failed: list[tuple[int, int, str]] = field(
        default_factory=list
    )  # (message id, code, session) turned failed


_STATUS_COLS = (
    "id, job_id, status, error_class, wamid, delivered_at, read_at, send_started_session, sent_by_session,"
    " pricing_category, billable, send_started_at"
)
_Ev = tuple[Any, ...]  # an events row

_CLOUD_CLAIM_RETURNING = (
    "id, job_id, attempts, max_attempts, phone, body, name, send_started_at, sends, params,"
    " (SELECT status FROM jobs WHERE jobs.id = messages.job_id),"
    " EXISTS (SELECT 1 FROM optouts WHERE optouts.phone = messages.phone)"
)


class CloudMixin(QueueBase):
    # --- claim ----------------------------------------------------------------------------------
    @_guarded
    def claim_cloud_batch(
        self,
        worker_id: str,
        session: str,
        n: int,
        *,
        lease_seconds: float,
        job_ids: Sequence[int] | None = None,
    ) -> list[Claim]:
        """Lease up to ``n`` runnable messages for a Cloud API session in one transaction (FIFO within a
        job, oldest job first); none while the session is paused. Expired leases of this session's
        stamped messages (the settle window passed with no webhook) fail as ``unknown_outcome``; unstamped
        claims are claimed again once their lease expired or their worker is gone. A pending message that
        carries a stamp (``retry`` kept it) is never POSTed again: it fails as ``unknown_outcome`` too."""
        if n <= 0:
            return []
        now = self._clock()
        lease = now + lease_seconds
        jf = (
            f"j.status IN ({_sql_list(CLAIMABLE_JOB_STATUSES)})"
            " AND (j.not_before IS NULL OR j.not_before <= :now) AND j.ready = 1"
            " AND (j.sessions = '[]' OR EXISTS (SELECT 1 FROM json_each(j.sessions) WHERE value = :session))"
        )
        if job_ids is not None:
            jf += f" AND j.id IN ({', '.join(str(int(i)) for i in job_ids) or 'NULL'})"
        params = {"worker": worker_id, "lease": lease, "now": now, "session": session, "n": int(n)}
        claims: list[Claim] = []
        with self._tx_relaxed() as conn:
            if conn.execute(
                "SELECT 1 FROM sessions WHERE name = ? AND paused_at IS NOT NULL", (session,)
            ).fetchone():
                return []
            self._expire_unsettled(conn, session, now)
            # Unstamped claims come back when their lease expired, or at once when their worker is gone
            # (a killed run: registering replaced its row). Without a stamp nothing was POSTed, and a
            # worker that still held one could not stamp it any more (the stamp is fenced on the claim).
            expired = conn.execute(
                "UPDATE messages SET claimed_by = :worker, lease_until = :lease, attempts = attempts + 1,"
                " updated_at = :now WHERE id IN ("
                "SELECT m.id FROM messages m INDEXED BY idx_messages_lease JOIN jobs j ON j.id = m.job_id"
                " WHERE m.status = 'sending' AND m.send_started_at IS NULL AND (m.lease_until < :now"
                " OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = m.claimed_by))"
                f" AND {jf} ORDER BY m.lease_until LIMIT :n)"
                f" RETURNING {_CLOUD_CLAIM_RETURNING}",
                params,
            ).fetchall()
            rows = [(SENDING, r) for r in expired]
            if len(rows) < n:
                params["n"] = n - len(rows)
                pending = conn.execute(
                    "UPDATE messages SET status = 'sending', claimed_by = :worker, lease_until = :lease,"
                    " attempts = attempts + 1, updated_at = :now WHERE id IN ("
                    "SELECT m.id FROM jobs j CROSS JOIN messages m INDEXED BY idx_messages_claim"
                    f" WHERE {jf} AND m.job_id = j.id AND m.status = 'pending'"
                    " AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= :now)"
                    " ORDER BY j.id, m.id LIMIT :n)"
                    f" RETURNING {_CLOUD_CLAIM_RETURNING}",
                    params,
                ).fetchall()
                rows.extend((PENDING, r) for r in pending)
            rows.sort(key=lambda fr: fr[1][0])
            started: set[int] = set()
            jobs: dict[int, tuple[str | None, str | None, str | None, str | None]] = {}
            for from_status, row in rows:
                mid, job_id, attempts, max_attempts, phone, body, name, stamp, sends, raw, job_status, out = (
                    row
                )
                if out:
                    self._cloud_settle(conn, mid, job_id, SKIPPED, from_status, OPTED_OUT, "opted_out", now)
                    continue
                if stamp is not None:
                    why = f"{UNKNOWN_TEXT}: an earlier POST may have gone out; no status webhook settled it"
                    self._cloud_settle(conn, mid, job_id, FAILED, from_status, why, UNKNOWN_OUTCOME, now)
                    continue
                if attempts > max_attempts:
                    why = "attempts exhausted: lease expired (worker died?)"
                    self._cloud_settle(conn, mid, job_id, FAILED, from_status, why, "attempts_exhausted", now)
                    continue
                if job_status == JOB_QUEUED and job_id not in started:
                    started.add(job_id)
                    self._set_job(conn, self._job(conn, job_id), JOB_RUNNING, None, now, "first claim")
                if job_id not in jobs:
                    jrow = conn.execute(
                        "SELECT attachment, template_name, template_lang, template_layout FROM jobs"
                        " WHERE id = ?",
                        (job_id,),
                    ).fetchone()
                    jobs[job_id] = (jrow[0], jrow[1], jrow[2], jrow[3]) if jrow else (None, None, None, None)
                attachment, template_name, template_lang, template_layout = jobs[job_id]
                # No "claim" event: the stamp's send_started event names the worker, session and attempt,
                # and a claim given back unstamped logs its release (one events row fewer per message).
                claims.append(
                    Claim(
                        message_id=mid,
                        job_id=job_id,
                        worker_id=worker_id,
                        attempt=attempts,
                        phone=phone,
                        body=body,
                        name=name,
                        attachment=attachment,
                        lease_until=lease,
                        session=session,
                        sends=int(sends or 0),
                        template_name=template_name,
                        template_lang=template_lang,
                        template_layout=template_layout,
                        params=params_from_json(raw),
                    )
                )
        return claims

    @contextlib.contextmanager
    def _tx_relaxed(self) -> Generator[sqlite3.Connection, None, None]:
        """A write transaction committed without fsync even on a FULL connection: for claims only. Losing
        an unstamped claim to a power cut is harmless (the message is pending again and nothing was POSTed);
        the stamp that follows commits with FULL and makes the claim durable with it."""
        conn = self.conn
        lower = self._synchronous in ("FULL", "EXTRA")
        if lower:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with write_tx(conn):
                yield conn
        finally:
            if lower:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _expire_unsettled(self, conn: sqlite3.Connection, session: str, now: float) -> None:
        """Stamped messages of ``session`` whose settle window passed without a status webhook: unknown."""
        rows = conn.execute(
            "SELECT id, job_id FROM messages INDEXED BY idx_messages_lease WHERE status = 'sending'"
            " AND lease_until < ? AND send_started_at IS NOT NULL AND send_started_session = ?",
            (now, session),
        ).fetchall()
        why = f"{UNKNOWN_TEXT}: no answer to the POST and no status webhook in time; see `wabulk resolve`"
        for mid, job_id in rows:
            self._cloud_settle(
                conn, mid, job_id, FAILED, SENDING, why, UNKNOWN_OUTCOME, now, keep_attempt=True
            )

    def _cloud_settle(
        self,
        conn: sqlite3.Connection,
        mid: int,
        job_id: int,
        status: str,
        from_status: str,
        error: str,
        error_class: str,
        now: float,
        *,
        keep_attempt: bool = False,
    ) -> None:
        attempts = "" if keep_attempt else "attempts = attempts - 1, "
        conn.execute(
            f"UPDATE messages SET status = ?, {attempts}claimed_by = NULL, lease_until = NULL,"
            " last_error = ?, error_class = ?, updated_at = ? WHERE id = ?",
            (status, error, error_class, now, mid),
        )
        self._event(conn, now, job_id, mid, "status", from_status, status, error)
        self._maybe_finish(conn, job_id, now)

    @staticmethod
    def _events(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
        if rows:
            conn.executemany(
                "INSERT INTO events (at, job_id, message_id, kind, from_status, to_status, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # --- stamp ----------------------------------------------------------------------------------
    @_guarded
    def stamp_cloud_batch(self, claims: Sequence[Claim]) -> list[Claim]:
        """Durably stamp that these claimed messages are about to be POSTed (one transaction, committed
        with ``synchronous=FULL``). Re-checks what may have changed since the claim: a message of a paused
        job goes back to pending (no attempt spent), one of a stopped job is cancelled, an opted-out number
        is skipped, a lost lease is dropped. Returns the claims stamped (each with ``sends`` + 1): only
        these may be POSTed."""
        return self.cloud_turn((), claims)

    @_guarded
    def cloud_turn(self, outcomes: Sequence[CloudOutcome], claims: Sequence[Claim]) -> list[Claim]:
        """One durable transaction of the run loop: record the answers of finished POSTs
        (:meth:`finish_cloud_batch`), then stamp the next claims (:meth:`stamp_cloud_batch`). One commit
        (one fsync) per turn instead of one per message. Returns the claims stamped."""
        if not outcomes and not claims:
            return []
        now = self._clock()
        with self._tx(durable=True) as conn:
            if outcomes:
                self._finish_in(conn, outcomes, now)
            stamped = self._stamp_in(conn, claims, now) if claims else []
        return stamped

    def _stamp_in(self, conn: sqlite3.Connection, claims: Sequence[Claim], now: float) -> list[Claim]:
        ok: list[Claim] = []
        job_status: dict[int, str] = {}
        for c in claims:
            if c.job_id not in job_status:
                row = conn.execute("SELECT status FROM jobs WHERE id = ?", (c.job_id,)).fetchone()
                job_status[c.job_id] = row[0] if row else JOB_STOPPED
        events: list[_Ev] = []
        updates = []
        # Which claims are still this worker's (same attempt, lease running), and opted out since: one
        # read for the whole chunk.
        owners = {c.message_id: (c.worker_id, c.attempt) for c in claims}
        held: dict[int, bool] = {}
        for mid, worker, attempts, out in conn.execute(
            "SELECT id, claimed_by, attempts, phone IN (SELECT phone FROM optouts) FROM messages"
            " WHERE id IN (SELECT value FROM json_each(?)) AND status = 'sending' AND lease_until > ?",
            (json.dumps(list(owners)), now),
        ):
            if owners[mid] == (worker, attempts):
                held[mid] = bool(out)
        for c in claims:
            js = job_status[c.job_id]
            if c.message_id not in held:
                continue  # the lease was lost: someone else owns it now
            if js == JOB_STOPPED:
                self._cloud_settle(
                    conn, c.message_id, c.job_id, "cancelled", SENDING, "job stopped", "stopped", now
                )
                continue
            if held[c.message_id]:  # opted out since the claim
                self._cloud_settle(
                    conn, c.message_id, c.job_id, SKIPPED, SENDING, OPTED_OUT, "opted_out", now
                )
                continue
            if js not in CLAIMABLE_JOB_STATUSES:
                conn.execute(
                    "UPDATE messages SET status = 'pending', attempts = attempts - 1, claimed_by = NULL,"
                    " lease_until = NULL, updated_at = ? WHERE id = ?",
                    (now, c.message_id),
                )
                events.append(
                    (
                        now,
                        c.job_id,
                        c.message_id,
                        "status",
                        SENDING,
                        PENDING,
                        f"released: the job is {js}",
                    )
                )
                continue
            updates.append((now, now, c.session, c.message_id))
            events.append(
                (now, c.job_id, c.message_id, "send_started", SENDING, SENDING,
                 f"worker {c.worker_id} session {c.session} attempt {c.attempt} send {c.sends + 1}")
            )  # fmt: skip
            ok.append(c)
        if updates:
            conn.executemany(
                "UPDATE messages SET send_started_at = ?, updated_at = ?, send_started_session = ?,"
                " sends = sends + 1 WHERE id = ?",
                updates,
            )
            conn.execute(
                "INSERT INTO sessions (name, last_send_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET last_send_at = excluded.last_send_at",
                (ok[0].session, now),
            )
        self._events(conn, events)
        for job_id, js in job_status.items():
            if js not in CLAIMABLE_JOB_STATUSES:
                self._maybe_finish(conn, job_id, now)
        return [dataclasses.replace(c, sends=c.sends + 1, send_started_at=now) for c in ok]

    # --- answers ----------------------------------------------------------------------------------
    @_guarded
    def finish_cloud_batch(self, outcomes: Iterable[CloudOutcome]) -> None:
        """Record the answers to a chunk of POSTs in one durable transaction. Each completion is fenced on
        the claim; a message a status webhook already settled keeps that (its wamid is filled in)."""
        self.cloud_turn(list(outcomes), ())

    def _finish_in(self, conn: sqlite3.Connection, outcomes: Sequence[CloudOutcome], now: float) -> None:
        events: list[_Ev] = []
        jobs: set[int] = set()
        sent_log = []
        # The accepted POSTs (nearly all of them) in one statement; the rest one by one below.
        recorded = self._record_accepted(conn, [o for o in outcomes if o.kind == "sent"], now)

        def accepted(o: CloudOutcome) -> None:
            c = o.claim
            detail = f"accepted as {o.wamid} via session {c.session}"
            if o.detail:
                detail += f" ({o.detail})"
            events.append((now, c.job_id, c.message_id, "status", SENDING, SENT, detail))
            sent_log.append((c.session, now))
            jobs.add(c.job_id)

        for o in outcomes:
            c = o.claim
            fence = (c.message_id, c.worker_id, c.attempt)
            where = " WHERE id = ? AND status = 'sending' AND claimed_by = ? AND attempts = ?"
            if o.kind == "sent" and c.message_id in recorded:
                accepted(o)
            elif o.kind == "sent":
                cur = conn.execute(
                    "UPDATE messages SET status = 'sent', sent_at = ?,"
                    " receipt = COALESCE(receipt, 'sent'), sent_by_session = ?, wamid = ?, wa_id = ?,"
                    " claimed_by = NULL,"
                    " lease_until = NULL, last_error = NULL, error_class = NULL, updated_at = ?" + where,
                    (now, c.session, o.wamid, o.wa_id, now, *fence),
                )
                if cur.rowcount == 1:
                    accepted(o)
                else:
                    # A webhook settled it first (or it expired meanwhile): keep that, add what we know.
                    conn.execute(
                        "UPDATE messages SET wamid = COALESCE(wamid, ?), wa_id = COALESCE(wa_id, ?)"
                        " WHERE id = ? AND (wamid IS NULL OR wamid = ?)",
                        (o.wamid, o.wa_id, c.message_id, o.wamid),
                    )
                    self._settle_late_accept(conn, c, o, now, events, sent_log, jobs)
            elif o.kind == "retry":
                row = conn.execute(
                    "SELECT max_attempts FROM messages WHERE id = ?", (c.message_id,)
                ).fetchone()
                exhausted = o.uses_attempt and row is not None and c.attempt >= row[0]
                if exhausted:
                    self._cloud_fail(
                        conn,
                        c,
                        f"attempts exhausted: {o.error}",
                        o.error_class,
                        now,
                        events,
                        where,
                        fence,
                    )
                    jobs.add(c.job_id)
                    continue
                give_back = "" if o.uses_attempt else "attempts = attempts - 1, "
                cur = conn.execute(
                    f"UPDATE messages SET status = 'pending', {give_back}send_started_at = NULL,"
                    " send_started_session = NULL, next_attempt_at = ?, last_error = ?, error_class = ?,"
                    " claimed_by = NULL, lease_until = NULL, updated_at = ?" + where,
                    (now + max(0.0, o.delay), o.error, o.error_class, now, *fence),
                )
                if cur.rowcount == 1:
                    events.append(
                        (
                            now,
                            c.job_id,
                            c.message_id,
                            "status",
                            SENDING,
                            PENDING,
                            f"retry in {o.delay:g}s: {o.error}",
                        )
                    )
            elif o.kind == "release":
                cur = conn.execute(
                    "UPDATE messages SET status = 'pending', attempts = attempts - 1,"
                    " send_started_at = NULL, send_started_session = NULL, claimed_by = NULL,"
                    " lease_until = NULL, updated_at = ?" + where,
                    (now, *fence),
                )
                if cur.rowcount == 1:
                    events.append(
                        (now, c.job_id, c.message_id, "status", SENDING, PENDING, f"released: {o.error}")
                    )
            elif o.kind == "failed":
                self._cloud_fail(conn, c, o.error, o.error_class, now, events, where, fence)
                jobs.add(c.job_id)
            elif o.kind == "unknown":
                cur = conn.execute(
                    # error_class marks it as answered "unknown" (still sending): expire_cloud_unsettled
                    # only gives up on these, never on a POST still in flight.
                    "UPDATE messages SET lease_until = ?, last_error = ?, error_class = 'unknown_outcome',"
                    " updated_at = ?" + where,
                    (
                        now + o.delay,
                        f"{UNKNOWN_TEXT} until a status webhook settles it: {o.error}",
                        now,
                        *fence,
                    ),
                )
                if cur.rowcount == 1:
                    events.append(
                        (now, c.job_id, c.message_id, "unknown", SENDING, SENDING,
                         f"{o.error}; waiting up to {o.delay:g}s for a status webhook")
                    )  # fmt: skip
            else:
                raise ValueError(f"unknown outcome kind {o.kind!r}")
        if sent_log:
            conn.executemany("INSERT INTO send_log (session, at) VALUES (?, ?)", sent_log)
            conn.execute(
                "INSERT INTO sessions (name, first_sent_at, unknown_streak) VALUES (?, ?, 0)"
                " ON CONFLICT (name) DO UPDATE SET unknown_streak = 0,"
                " first_sent_at = COALESCE(first_sent_at, excluded.first_sent_at)",
                (sent_log[0][0], now),
            )
        self._events(conn, events)
        for job_id in jobs:
            self._maybe_finish(conn, job_id, now)

    @staticmethod
    def _record_accepted(conn: sqlite3.Connection, accepted: Sequence[CloudOutcome], now: float) -> set[int]:
        """Mark accepted POSTs sent in one multi-row UPDATE, each fenced on its claim (id, worker, attempt).
        Returns the message ids it marked; a message whose claim was lost meanwhile is not among them."""
        if not accepted:
            return set()
        rows = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in accepted)
        values: list[object] = []
        for o in accepted:
            c = o.claim
            values += [c.message_id, c.worker_id, c.attempt, o.wamid, o.wa_id, c.session]
        at = f"?{len(values) + 1}"  # after the VALUES' parameters, which come first in the text
        values.append(now)
        return {
            r[0]
            for r in conn.execute(
                f"WITH v(id, worker, attempt, wamid, wa_id, session) AS (VALUES {rows})"
                f" UPDATE messages SET status = 'sent', sent_at = {at}, receipt = COALESCE(receipt, 'sent'),"
                " sent_by_session = v.session, wamid = v.wamid, wa_id = v.wa_id, claimed_by = NULL,"
                f" lease_until = NULL, last_error = NULL, error_class = NULL, updated_at = {at}"
                " FROM v WHERE messages.id = v.id AND messages.status = 'sending'"
                " AND messages.claimed_by = v.worker AND messages.attempts = v.attempt"
                " RETURNING messages.id",
                values,
            )
        }

    def _settle_late_accept(
        self,
        conn: sqlite3.Connection,
        c: Claim,
        o: CloudOutcome,
        now: float,
        events: list[_Ev],
        sent_log: list[tuple[str, float]],
        jobs: set[int],
    ) -> None:
        """An accepted POST whose claim was lost meanwhile: the message went out all the same. Unless a
        webhook already settled it, it becomes sent (never pending: that would send it again)."""
        row = conn.execute(
            "SELECT status, error_class FROM messages WHERE id = ?", (c.message_id,)
        ).fetchone()
        if row is None or row[0] == SENT:
            return
        if row[0] == FAILED and row[1] != UNKNOWN_OUTCOME:
            return  # a failed status webhook came first: it has the last word on an accepted message
        conn.execute(
            "UPDATE messages SET status = 'sent', sent_at = COALESCE(sent_at, ?),"
            " receipt = COALESCE(receipt, 'sent'), sent_by_session = COALESCE(sent_by_session, ?),"
            " claimed_by = NULL, lease_until = NULL, last_error = NULL, error_class = NULL, updated_at = ?"
            " WHERE id = ?",
            (now, c.session, now, c.message_id),
        )
        events.append(
            (now, c.job_id, c.message_id, "status", row[0], SENT, f"accepted as {o.wamid} (late answer)")
        )
        sent_log.append((c.session, now))
        jobs.add(c.job_id)

    def _cloud_fail(
        self,
        conn: sqlite3.Connection,
        c: Claim,
        error: str,
        error_class: str,
        now: float,
        events: list[_Ev],
        where: str,
        fence: tuple[object, ...],
    ) -> None:
        # A Graph rejection proves nothing went out: the stamp is cleared, this is not an unknown outcome.
        cur = conn.execute(
            "UPDATE messages SET status = 'failed', send_started_at = NULL, send_started_session = NULL,"
            " last_error = ?, error_class = ?, claimed_by = NULL, lease_until = NULL, updated_at = ?" + where,
            (error, error_class, now, *fence),
        )
        if cur.rowcount == 1:
            events.append((now, c.job_id, c.message_id, "status", SENDING, FAILED, error))

    # --- open sends -------------------------------------------------------------------------------
    @_guarded
    def cloud_unsettled(self, session: str) -> int:
        """Messages of ``session`` POSTed with an unknown outcome, still waiting for a status webhook."""
        return int(
            self.conn.execute(
                "SELECT count(*) FROM messages INDEXED BY idx_messages_lease WHERE status = 'sending'"
                " AND send_started_at IS NOT NULL AND send_started_session = ? AND claimed_by IS NOT NULL",
                (session,),
            ).fetchone()[0]
        )

    @_guarded
    def expire_cloud_unsettled(self, session: str, *, now: float | None = None) -> int:
        """Give up waiting now: ``session``'s messages whose POST was answered "unknown" and that no status
        webhook settled yet become failed ``unknown_outcome`` (a later webhook still turns them into sent).
        A POST still in flight (no answer recorded) is left alone. Returns how many."""
        at = self._clock() if now is None else now
        where = (
            "status = 'sending' AND send_started_at IS NOT NULL AND send_started_session = ?"
            f" AND error_class = '{UNKNOWN_OUTCOME}'"
        )
        with self._tx(durable=True) as conn:
            n = conn.execute(
                f"SELECT count(*) FROM messages INDEXED BY idx_messages_lease WHERE {where}", (session,)
            ).fetchone()[0]
            conn.execute(f"UPDATE messages SET lease_until = ? WHERE {where}", (at - 1, session))
            self._expire_unsettled(conn, session, at)
        return int(n)

    # --- media ------------------------------------------------------------------------------------
    @_guarded
    def job_media(self, job_id: int, session: str) -> str | None:
        """The media id of ``job_id``'s attachment uploaded by ``session``, if any."""
        row = self.conn.execute(
            "SELECT media_id FROM job_media WHERE job_id = ? AND session = ?", (job_id, session)
        ).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def set_job_media(self, job_id: int, session: str, media_id: str) -> str:
        """Record an uploaded media id; if another process recorded one first, that one wins (returned)."""
        now = self._clock()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO job_media (job_id, session, media_id, uploaded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job_id, session) DO NOTHING",
                (job_id, session, media_id, now),
            )
            row = conn.execute(
                "SELECT media_id FROM job_media WHERE job_id = ? AND session = ?", (job_id, session)
            ).fetchone()
        return str(row[0])

    # --- status webhooks --------------------------------------------------------------------------
    @_guarded
    def apply_cloud_statuses(self, statuses: Sequence[CloudStatus]) -> StatusResult:
        """Apply a webhook's statuses in one durable transaction (stored before Meta gets its 200).
        Matching: by wamid, else by wabulk's callback data; anything else is ignored. Monotonic and
        idempotent (see the module docstring)."""
        result = StatusResult()
        if not statuses:
            return result
        now = self._clock()
        with self._tx(durable=True) as conn:
            jobs: set[int] = set()
            for st in statuses:
                changed = self._apply_status(conn, st, now, result)
                if changed is not None:
                    jobs.add(changed)
            for job_id in jobs:
                self._maybe_finish(conn, job_id, now)
        return result

    def _apply_status(
        self, conn: sqlite3.Connection, st: CloudStatus, now: float, result: StatusResult
    ) -> int | None:
        row = None
        if st.wamid:
            row = conn.execute(
                f"SELECT {_STATUS_COLS} FROM messages INDEXED BY idx_messages_wamid WHERE wamid = ?",
                (st.wamid,),
            ).fetchone()
        if row is None:
            mid = message_id_from_callback(st.callback)
            if mid is not None:
                row = conn.execute(f"SELECT {_STATUS_COLS} FROM messages WHERE id = ?", (mid,)).fetchone()
                # Only a message that was POSTed can be settled by a webhook naming it.
                if row is not None and (row[4] is not None and row[4] != st.wamid):
                    row = None
                if (
                    row is not None
                    and row[4] is None
                    and row[11] is None
                    and row[2] != SENT
                    and row[3] != UNKNOWN_OUTCOME
                ):
                    row = None
            elif st.callback and st.callback.startswith(EVIDENCE_PREFIX):
                # The provider interface's token (sender.Provider): stored with the stamp as its evidence.
                row = (
                    conn.execute(
                        f"SELECT {_STATUS_COLS} FROM messages INDEXED BY idx_messages_lease"
                        " WHERE status = 'sending' AND send_snapshot = ?",
                        (st.callback,),
                    ).fetchone()
                    or conn.execute(
                        f"SELECT {_STATUS_COLS} FROM messages INDEXED BY idx_messages_unknown"
                        f" WHERE status = 'failed' AND error_class = '{UNKNOWN_OUTCOME}'"
                        " AND send_snapshot = ?",
                        (st.callback,),
                    ).fetchone()
                )
        if row is None:
            result.unknown += 1
            return None
        (
            mid,
            job_id,
            status,
            error_class,
            wamid,
            delivered_at,
            read_at,
            stamp_session,
            sent_by,
            pcat,
            billable,
            _,
        ) = row
        session = sent_by or stamp_session or ""
        at = st.timestamp or now
        sets: list[str] = []
        values: list[object] = []
        event: _Ev | None = None
        if st.wamid and wamid is None:
            sets.append("wamid = ?")
            values.append(st.wamid)
        if st.pricing_category and pcat is None:
            sets.append("pricing_category = ?")
            values.append(st.pricing_category)
        if st.billable is not None and billable is None:
            sets.append("billable = ?")
            values.append(int(st.billable))
        if st.status in (TICK_SENT, TICK_DELIVERED, TICK_READ):
            rank = _TICK_RANK[st.status]
            if status != SENT:
                # Accepted and in flight, unknown, or failed by an earlier webhook: this is positive evidence.
                sets += [
                    "status = 'sent'", "sent_at = COALESCE(sent_at, ?)",
                    "sent_by_session = COALESCE(sent_by_session, ?)", "claimed_by = NULL",
                    "lease_until = NULL", "last_error = NULL", "error_class = NULL",
                ]  # fmt: skip
                values += [at, stamp_session]
                event = (
                    now,
                    job_id,
                    mid,
                    "status",
                    status,
                    SENT,
                    f"status webhook: {st.status} ({st.wamid})",
                )
                if status == FAILED and error_class == UNKNOWN_OUTCOME or status in (SENDING, PENDING):
                    conn.execute(
                        "INSERT INTO send_log (session, at) VALUES (?, ?)", (stamp_session or "", at)
                    )
            if rank >= 2 and delivered_at is None:
                sets.append("delivered_at = ?")
                values.append(at)
            if rank >= 3 and read_at is None:
                sets.append("read_at = ?")
                values.append(at)
            best = max(rank, 3 if read_at is not None or rank >= 3 else 2 if delivered_at is not None else 1)
            tick = {1: TICK_SENT, 2: TICK_DELIVERED, 3: TICK_READ}[best]
            sets.append("receipt = ?")
            values.append(tick)
            if event is None and (rank >= 2 and delivered_at is None or rank >= 3 and read_at is None):
                event = (now, job_id, mid, "receipt", SENT, SENT, f"status webhook: {st.status}")
        elif st.status == "failed":
            if (
                delivered_at is not None
                or read_at is not None
                or (status == FAILED and error_class != UNKNOWN_OUTCOME)
            ):
                pass  # delivered/read already known, or failed already: never downgrade
            elif status in (SENDING, SENT, PENDING, FAILED):
                from wabulk.cloud.errors import error_class as graph_class
                from wabulk.cloud.errors import webhook_reaction

                code = st.error_code if st.error_code is not None else 131000
                reason = webhook_reaction(code)
                text = f"Graph error {code}: {reason.reason}"
                if st.error_details:
                    text += f" ({st.error_details})"
                sets += [
                    "status = 'failed'", "last_error = ?", "error_class = ?", "claimed_by = NULL",
                    "lease_until = NULL", "send_started_at = NULL",
                ]  # fmt: skip
                values += [text, graph_class(code)]
                event = (now, job_id, mid, "status", status, FAILED, f"status webhook: {text}")
                result.failed.append((mid, code, session))
        if not sets or (event is None and not _changes(conn, mid, sets, values)):
            result.duplicates += 1
            return None
        conn.execute(
            f"UPDATE messages SET {', '.join(sets)}, updated_at = ? WHERE id = ?", (*values, now, mid)
        )
        if event is not None:
            self._event(conn, *event)
        result.applied += 1
        return int(job_id)


def _changes(conn: sqlite3.Connection, mid: int, sets: list[str], values: list[object]) -> bool:
    """Whether ``SET sets`` would change the row (duplicate webhooks are counted as such, not rewritten)."""
    cols = [s.split(" = ", 1)[0] for s in sets]
    row = conn.execute(f"SELECT {', '.join(cols)} FROM messages WHERE id = ?", (mid,)).fetchone()
    return row is None or any(a != b for a, b in zip(row, values, strict=False))


__all__ = ["CloudMixin", "StatusResult", "callback_data", "message_id_from_callback", "errors"]
