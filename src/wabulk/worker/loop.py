"""The worker behind ``wabulk run``: drains the queue through one WhatsApp session, paced like a human.

One message is one :meth:`Worker.run_once`: check the session → claim → (verify, when an earlier attempt
may have sent it) → stamp send-started → send → mark sent / schedule a retry / mark failed. Each step is
its own short transaction in :mod:`wabulk.queue`; no transaction is open while the provider works.

Retries (the one retry layer). The attempt count lives in the database (``claim`` increments it, the
fence includes it), so a restart does not reset it. tenacity supplies the policy objects, evaluated
against that persisted count instead of an in-process loop: ``stop_after_attempt(max_attempts)`` decides
when a transient failure becomes ``failed``, and ``wait_exponential(multiplier=30, max=900) +
wait_random(0, 15)`` (exponential backoff with jitter) gives the delay stored as ``next_attempt_at``. A
confirmation timeout is retried after a short fixed delay: the message may have arrived, so the next
claim verifies it in the chat before any resend.

Fail closed (issue 14): the stamp records what the chat showed; a stamped message is pressed again only on
positive evidence that the earlier try is absent, at most once; when the chat cannot tell, the message
fails as ``unknown_outcome`` and N of those in a row pause this session (``wabulk resolve`` decides). A
send pressed before the session's device was (re)linked is never proved absent: the new device's chat may
lack the old device's history, so "absent" there means unknown.

The class is split by concern: :mod:`wabulk.worker.base` (configuration, events, jobs, heartbeat, waits,
daily cap), :mod:`wabulk.worker.trouble` (session trouble, receipt tracking), this module (the loop), and
:mod:`wabulk.worker.runner` (``run_worker``: what ``wabulk run`` wraps around it).

Time and sleeping are injected (``clock``, ``sleep``), so every path is unit-tested without waiting.
Waits are sliced into ≤ 0.5 s pieces that check the stop flag, heartbeat, and re-read the jobs, so pause,
stop and Ctrl-C take effect within a second even in the middle of a long pause.
"""

from __future__ import annotations

import logging
import time

from tenacity import RetryCallState, stop_after_attempt

from wabulk import exitcodes
from wabulk.errors import (
    SCOPE_ACCOUNT,
    SCOPE_JOB,
    SCOPE_RECIPIENT,
    AccountRestricted,
    Blocked,
    ConfirmTimeout,
    LeaseLost,
    NotLoggedIn,
    Offline,
    SendRefused,
    SessionError,
    Unreachable,
    WabulkError,
)
from wabulk.models import (
    AUTO_PAUSE_PREFIX,
    FAILED,
    TICK_SENT,
    UNKNOWN_OUTCOME,
    UNKNOWN_TEXT,
    VERIFY_ABSENT,
    VERIFY_SENT,
    Claim,
    JobSummary,
)
from wabulk.pacing import next_local_midnight

from .base import (
    IDLE_MAX,
    IDLE_MIN,
    SESSION_ERROR_BACKOFF,
)
from .events import StepResult
from .trouble import SessionMixin

log = logging.getLogger("wabulk.worker")


def format_wait(seconds: float) -> str:
    """``1h59m``, ``12m``, ``40s``: a wait as people say it."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m" if s >= 60 else f"{s}s"


CONFIRM_RECHECK_SECONDS = 15.0  # after a confirmation timeout: look in the chat again this soon


class _Abandon(Exception):
    """Raised from ``before_send`` when a stop was requested before the send action: nothing is sent."""


class Worker(SessionMixin):
    """Sends queued messages through one transport. Not thread-safe; one per process and session."""

    # --- the loop --------------------------------------------------------------------------------------
    def register(self) -> str:
        """Register in ``workers`` (SessionBusy when another live worker has this session)."""
        self.worker_id = self.queue.register_worker(
            self.config.session,
            pid=self.pid,
            host=self.host,
            stale_after=self.config.stale_after,
            daily_cap=max(0, self.config.cap),
        )
        self._last_heartbeat = self.clock()
        last = self.queue.last_send_at(self.config.session)
        p = self.config.pace
        if last is not None and not p.is_off:
            # A restart (or the fleet's respawn) must not send at once: the last send plus a fresh gap.
            self._resume_at = last + self.rng.uniform(p.min_delay, max(p.min_delay, p.max_delay))
        return self.worker_id

    def run_once(self, now: float | None = None) -> StepResult:
        """Handle at most one message: check the session, claim, verify or send, complete.
        Never sleeps (except inside the transport); returns what to wait before the next step."""
        if self.worker_id is None:
            self.register()
        if self.stop_requested:
            return StepResult("stopped")
        now = self.clock() if now is None else now

        sent_today, limit = self.cap_status(now)
        if sent_today >= limit:
            reopen = next_local_midnight(now, self.sender_zone)
            self._set_state("daily_cap")
            self._emit(
                "cap",
                f"daily cap reached ({sent_today}/{limit}); next send after midnight",
                stats=self._stats(),
            )
            return StepResult("cap", wait=reopen - now)

        caps = self.transport.capabilities
        if caps.restart_every and self._chats_on_provider >= caps.restart_every:
            # Between messages (nothing claimed): the restart cannot interrupt a send.
            self._restart_provider(
                caps.restart_text.format(chats=self._chats_on_provider), level=logging.INFO
            )

        # The session first: a logged-out or blocked account must not burn claims and attempts.
        try:
            self.transport.ensure_ready()
            self._session_failures = 0
            self._reached = True
            self._resume_waiting()
        except Unreachable as e:
            if not self._reached:
                raise  # never reached the service at all: a wrong URL or no network; say so and stop
            return self._wait_for_network(e)
        except NotLoggedIn:
            return self._handle_logout(None)
        except AccountRestricted as e:
            return self._handle_restricted(None, e)
        except Blocked as e:
            return self._handle_blocked(None, e)
        except WabulkError as e:
            # Any other session-wide error (e.g. the web provider's takeover) or a dead connection.
            if isinstance(e, SessionError) or e.restart_provider:
                return self._handle_session_trouble(None, e)
            raise

        paused = self.queue.session_pause(self.config.session)
        if paused is not None:
            return self._session_paused(paused[1])
        if self._resume_at is not None:
            if now < self._resume_at:
                self._set_state("pacing")
                self.next_send_at = self._resume_at
                return StepResult("pacing", wait=self._resume_at - now)
            self._resume_at = None

        claim = self.queue.claim(
            self.worker_id or "",
            self.config.session,
            lease_seconds=self.config.lease_seconds,
            job_ids=self.config.job_ids,
            # A provider that cannot send a Meta-approved template never claims a template job's message
            # (it would send the readable body as a plain text): the queue leaves it pending for one that can.
            templates=self.transport.capabilities.templates,
        )
        if claim is None:
            self._set_state("restricted" if self._restricted_streak else "idle")
            return StepResult("idle")
        self._inflight, self._stamped, self._verified_claim = claim, False, None
        self._seen_jobs.add(claim.job_id)
        self._chats_on_provider += 1
        # Not in a finally: if a second Ctrl-C (KeyboardInterrupt) or a database error escapes, the claim
        # stays recorded so that run()'s shutdown releases it.
        result = self._handle(claim, now)
        self._inflight = None
        return result

    def _handle(self, claim: Claim, now: float) -> StepResult:
        self._set_state("sending")
        self._emit(
            "claimed",
            f"sending to {self._mask(claim.phone)} (job {claim.job_id}, attempt {claim.attempt})",
            claim=claim,
        )
        try:
            if claim.needs_verification:
                found = self._verify(claim)
                if isinstance(found, StepResult):
                    return found
                if found:
                    return self._complete_sent(claim, tick=TICK_SENT, verified=True)
                # Positive evidence it is absent; mark_absent renewed the lease (opening the chat took time).
                claim = self._verified_claim or claim
            if self.quiet is not None:
                allowed = self.quiet.next_allowed(claim.phone, now)
                if allowed > now:
                    return self._defer(claim, allowed, "quiet hours")
            if self.stop_requested:
                self.queue.release(claim, reason="worker stopping")
                self._emit("released", f"released {self._mask(claim.phone)}: stopping", claim=claim)
                return StepResult("stopped", claim.message_id)
            if claim.send_started_at is None:
                # Another message to this chat was pressed and is not settled: a bubble of this one could
                # be taken for it when its chat is checked (same text: a loss). Wait until it is.
                other = self.queue.stamped_to(self.config.session, claim.phone, excluding=claim.message_id)
                if other is not None:
                    why = f"message {other} to the same chat is being checked first"
                    return self._defer(claim, now + CONFIRM_RECHECK_SECONDS, why)
            return self._send(claim)
        except LeaseLost as e:
            # Fenced off: another worker owns this message now. Drop it silently; never overwrite.
            self._emit(
                "lease_lost",
                f"lost the lease on {self._mask(claim.phone)}; dropped ({e})",
                claim=claim,
                level=logging.WARNING,
            )
            return StepResult("lease_lost", claim.message_id)

    def _verify(self, claim: Claim) -> bool | StepResult:
        """Look in the chat for an earlier attempt's bubble, by the ids recorded with the stamp. True: it is
        there (sent). False: positive evidence it is not (recorded; one resend may follow). Anything else
        fails closed: the outcome is unknown and nothing is resent. Errors are handled like a send's:
        session trouble releases the message (its stamp stays, so it is verified again later); anything
        else is a failed attempt, bounded by max_attempts (and unknown, since the stamp is there)."""
        assert claim.send_started_at is not None
        self._emit(
            "verify",
            f"checking the chat of {self._mask(claim.phone)}: an earlier attempt may have sent it",
            claim=claim,
        )
        if claim.send_started_session != self.config.session:
            # A stamp without a session (written before m003): another account's chat proves nothing.
            return self._unknown(claim, "the earlier try was pressed by an unrecorded session")
        try:
            found = self.transport.verify_sent(
                claim.phone, claim.body, claim.send_started_at, evidence=claim.send_evidence
            )
        except LeaseLost:
            raise
        except Exception as e:
            return self._transport_failure(claim, e, doing="verifying", context="could not check the chat")
        if found.outcome == VERIFY_SENT:
            return True
        if found.outcome == VERIFY_ABSENT:
            lease = self.config.lease_seconds
            try:
                # The queue decides whether the silence proves anything: not when the device was relinked
                # after the press (ordered by the events sequence, not the clock), nor while another
                # instance that pressed may still be alive. Then it settled the message as unknown.
                claim = self.queue.mark_absent(claim, reason=found.reason, lease_seconds=lease)
            except SendRefused as e:
                return self._settled_unknown(claim, str(e))
            self._inflight = claim
            self._verified_claim = claim
            return False
        return self._unknown(claim, found.reason or "the chat could not be read")

    def _unknown(self, claim: Claim, reason: str) -> StepResult:
        """Fail closed: the message may or may not have arrived and the chat cannot tell. It fails as
        ``unknown_outcome`` (never resent automatically; ``wabulk resolve`` decides), and N in a row pause
        this session."""
        error = f"{UNKNOWN_TEXT}: {reason}"
        self.queue.mark_failed(claim, error=error, error_class=UNKNOWN_OUTCOME)
        return self._settled_unknown(claim, error)

    def _settled_unknown(self, claim: Claim, error: str) -> StepResult:
        """Report a message the queue has settled as ``unknown_outcome`` (and count it toward the pause)."""
        self.failed_this_run += 1
        self._emit(
            "failed",
            f"{self._mask(claim.phone)}: {error}; not resent (check the chat, then `wabulk resolve`)",
            claim=claim,
            level=logging.WARNING,
            error_class=UNKNOWN_OUTCOME,
        )
        self._note_unknown()
        return StepResult("unknown", claim.message_id)

    def _note_unknown(self) -> None:
        reason = self.queue.record_unknown(self.config.session, threshold=self.config.unknown_threshold)
        if reason is not None:
            self._session_paused(reason)

    def _session_paused(self, reason: str) -> StepResult:
        """This session is paused (by N unknown outcomes, a blocked account or a human): claim nothing, say
        why once, and with --until-done stop (other sessions go on with the shared jobs)."""
        if self._paused_reason != reason:
            self._paused_reason = reason
            self._set_state("session_paused")
            self._emit("breaker", f"session {self.config.session!r} {reason}", level=logging.ERROR)
        self._set_state("session_paused")
        return StepResult("session_paused", wait=SESSION_ERROR_BACKOFF)

    def _defer(self, claim: Claim, until: float, why: str) -> StepResult:
        """Give the message back without spending an attempt, not to be claimed before ``until``."""
        when = time.strftime("%H:%M", time.localtime(until))
        self.queue.defer(claim, until=until, reason=why)
        self._emit("deferred", f"{self._mask(claim.phone)} deferred to {when} ({why})", claim=claim)
        return StepResult("deferred", claim.message_id)

    def _before_send(self, claim: Claim, evidence: str) -> None:
        # Last moment to abandon cleanly: after the stamp, the message counts as possibly sent.
        if self.stop_requested:
            raise _Abandon()
        # Fenced, with the provider's evidence (what the chat shows), in one transaction that also re-checks
        # stop, pause, opt-out and the send budget: LeaseLost (a zombie) or SendRefused means nothing is sent.
        self.queue.mark_send_started(claim, evidence)
        self._stamped = True
        self._heartbeat()

    def _send(self, claim: Claim) -> StepResult:
        started = self.clock()
        try:
            result = self.transport.send(
                claim.phone,
                claim.body,
                attachment=claim.attachment,
                before_send=lambda evidence: self._before_send(claim, evidence),
            )
        except _Abandon:
            self.queue.release(claim, reason="worker stopping")
            self._emit("released", f"released {self._mask(claim.phone)}: stopping", claim=claim)
            return StepResult("stopped", claim.message_id)
        except LeaseLost:
            raise
        except SendRefused as e:
            # The queue settled it already (stopped: cancelled; opted out: skipped; paused: pending again;
            # budget used up: failed); nothing was pressed.
            self._emit("released", f"{self._mask(claim.phone)} not sent: {e} (now {e.status})", claim=claim)
            if e.status == FAILED:
                self.failed_this_run += 1
                if self.queue.get_message(claim.message_id).error_class == UNKNOWN_OUTCOME:
                    self._note_unknown()
            return StepResult("refused", claim.message_id)
        except ConfirmTimeout as e:
            return self._unconfirmed(claim, e)
        except Exception as e:
            return self._transport_failure(claim, e, doing="sending")
        self._send_seconds.append(max(0.0, self.clock() - started))
        return self._complete_sent(claim, tick=result.tick, verified=False)

    def _transport_failure(
        self, claim: Claim, e: Exception, *, doing: str, context: str | None = None
    ) -> StepResult:
        """What a failure of the provider while ``doing`` something with ``claim`` means: session trouble
        releases the message (no attempt spent), anything else is a failed attempt, bounded by
        max_attempts. One place for the send and the verification, so both treat errors alike."""
        if isinstance(e, NotLoggedIn):
            return self._handle_logout(claim)
        if isinstance(e, Blocked):
            return self._handle_blocked(claim, e)
        if isinstance(e, AccountRestricted):
            return self._handle_restricted(claim, e)
        if isinstance(e, SessionError):  # session-wide, no message to blame (e.g. a takeover)
            return self._handle_session_trouble(claim, e)
        if isinstance(e, Offline):
            return self._handle_offline(claim, e)
        if getattr(e, "restart_provider", False):
            self._restart_provider(str(e))
        elif not isinstance(e, WabulkError):  # unexpected: log it, keep the loop alive
            log.exception("unexpected error while %s", doing)
        return self._failed_attempt(claim, e, context=context)

    def _unconfirmed(self, claim: Claim, e: ConfirmTimeout) -> StepResult:
        """The message may have arrived: never resend blindly. The send stamp stays, so the next claim
        looks in the chat first. With attempts left: a short retry. With attempts used up,
        schedule_retry would fail a message that may well have arrived, so instead the lease is cut to
        a few seconds and left to expire: the queue hands an expired, stamped message out for
        verification even when its attempts are used up."""
        self._count_failure(claim, e.error_class, e.scope)
        text = f"{self._mask(claim.phone)}: not confirmed in time; will check the chat before any resend"
        # Even with attempts used up the queue gives a stamped message back once, to be looked for (it is
        # never pressed again beyond the budget); it used to be handed out for verification without end.
        delay = CONFIRM_RECHECK_SECONDS
        self.queue.schedule_retry(claim, error=str(e), error_class=e.error_class, delay=delay)
        self._emit("retry", text, claim=claim, level=logging.WARNING, error_class=e.error_class)
        return StepResult("retry", claim.message_id)

    def _announce_scheduled(self, summaries: list[JobSummary]) -> None:
        """Idle while a job with pending messages is scheduled for later (``enqueue --at``): say which
        one and when, once, and show it as the next send (rather than waiting silently)."""
        now = self.clock()
        later = [
            s.job
            for s in summaries
            if s.job.not_before is not None
            and s.job.not_before > now
            and s.job.status in ("queued", "running")
            and s.counts.get("pending", 0)
        ]
        if not later:
            self._scheduled_announced = None
            return
        first = min(later, key=lambda j: j.not_before or 0.0)
        assert first.not_before is not None
        self.next_send_at = first.not_before
        if self._scheduled_announced == (first.id, first.not_before):
            return
        self._scheduled_announced = (first.id, first.not_before)
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(first.not_before))
        self._emit(
            "scheduled",
            f"waiting for job {first.id} ({first.name}), scheduled for {at} "
            f"(in {format_wait(first.not_before - now)})",
            job_id=first.id,
        )

    def _complete_sent(self, claim: Claim, *, tick: str, verified: bool) -> StepResult:
        self.queue.mark_sent(claim, tick=tick, session=self.config.session, at=self.clock())
        self.sent_this_run += 1
        if self._cap_stats.get("sent_today") is not None:
            # The live view's "today N/cap" counts this send now, not at the next claim.
            self._cap_stats["sent_today"] += 1
        self._offline_streak = 0
        self._restriction_lifted()
        self._streaks.pop(claim.job_id, None)
        if self._first_send_known and self._first_send_at is None:
            self._first_send_at = self.clock()
        delay = self.pacer.next_delay(self.sent_this_run)
        self.next_send_at = self.clock() + delay
        if verified:
            self._emit(
                "verified",
                f"{self._mask(claim.phone)} had already arrived; marked sent, not resent",
                claim=claim,
            )
        else:
            self._emit("sent", f"sent to {self._mask(claim.phone)}", claim=claim, tick=tick)
        self._set_state("pacing")
        return StepResult("verified" if verified else "sent", claim.message_id, wait=delay)

    def _max_attempts(self, claim: Claim) -> int:
        if self.config.max_attempts is not None:
            return self.config.max_attempts
        try:
            return self.queue.get_message(claim.message_id).max_attempts
        except WabulkError:
            return 3

    def retry_delay(self, attempt: int) -> float:
        """The backoff before attempt ``attempt + 1`` (tenacity's exponential wait with jitter)."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._backoff(state))

    def _failed_attempt(self, claim: Claim, e: Exception, *, context: str | None = None) -> StepResult:
        error_class = getattr(e, "error_class", None) or type(e).__name__
        transient = getattr(e, "transient", True)
        reason = str(e) or type(e).__name__
        if context:
            reason = f"{context}: {reason}"
        self._count_failure(claim, error_class, getattr(e, "scope", SCOPE_JOB))
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = claim.attempt
        exhausted = stop_after_attempt(self._max_attempts(claim))(state)
        if transient and not exhausted:
            delay = self.retry_delay(claim.attempt)
            self.queue.schedule_retry(claim, error=reason, error_class=error_class, delay=delay)
            self._emit(
                "retry",
                f"{self._mask(claim.phone)}: {reason}; retry in {delay:.0f}s (attempt {claim.attempt})",
                claim=claim,
                level=logging.WARNING,
                error_class=error_class,
            )
            return StepResult("retry", claim.message_id)
        if transient:
            reason = f"{reason} (gave up after {claim.attempt} attempts)"
        self.queue.mark_failed(claim, error=reason, error_class=error_class)
        self.failed_this_run += 1
        if self._stamped or claim.needs_verification:
            # The send was pressed: the queue records it as unknown unless the chat proved it absent.
            settled = self.queue.get_message(claim.message_id)
            if settled.error_class == UNKNOWN_OUTCOME:
                error_class, reason = UNKNOWN_OUTCOME, settled.last_error or reason
                self._note_unknown()
        self._emit(
            "failed",
            f"{self._mask(claim.phone)} failed: {reason}",
            claim=claim,
            level=logging.WARNING,
            error_class=error_class,
        )
        return StepResult("failed", claim.message_id)

    def _count_failure(self, claim: Claim, error_class: str, scope: str) -> None:
        """Circuit breaker: N failures in a row of one class pause what their ``scope`` points at. Errors
        about the account (its page, reader or connection) pause the SESSION and other accounts go on with
        the shared job. Job-scoped ones (e.g. an attachment WhatsApp rejects) pause the job. Failures about
        one recipient (a number not on WhatsApp) say nothing about either, so they neither count nor break a
        streak."""
        if scope == SCOPE_RECIPIENT:
            return
        last, n = self._streaks.get(claim.job_id, ("", 0))
        n = n + 1 if last == error_class else 1
        self._streaks[claim.job_id] = (error_class, n)
        if n < self.config.breaker_threshold:
            return
        self._streaks.pop(claim.job_id, None)
        reason = f"{AUTO_PAUSE_PREFIX}: {n} consecutive {error_class} failures"
        if scope == SCOPE_ACCOUNT:
            try:
                self.queue.pause_session(self.config.session, reason)
            except WabulkError as e:
                log.warning("could not auto-pause session %s: %s", self.config.session, e)
            self._session_paused(reason)
            return
        try:
            self.queue.pause_job(claim.job_id, reason=reason)
        except WabulkError as e:
            log.warning("could not auto-pause job %s: %s", claim.job_id, e)
        self._emit("breaker", f"job {claim.job_id} {reason}", job_id=claim.job_id, level=logging.ERROR)

    # --- run -----------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Loop until stopped (or, with ``until_done``, until nothing runnable remains). Returns the exit
        code: 0 all sent, 3 some failed (until_done), 1 blocked/unrecoverable, 130 interrupted."""
        if self.worker_id is None:
            self.register()
        code: int | None = None
        idle = IDLE_MIN
        try:
            self.transport.start()
            if self.config.pace.is_off:
                self._emit(
                    "warning",
                    "pacing is OFF: fine for tests and demos, risky for a real account",
                    level=logging.WARNING,
                )
            if self.config.track_receipts and not self.polls_receipts:
                self._emit(
                    "warning",
                    f"session {self.config.session!r} gets its receipts pushed by the service: "
                    "--track-receipts has nothing to look up",
                    level=logging.WARNING,
                )
            self._emit(
                "started",
                f"worker {self.worker_id} on session {self.config.session!r} (pace {self.config.pace.name})",
            )
            self._refresh_jobs(self.clock(), force=True)
            while code is None:
                if self.stop_requested:
                    break
                self._heartbeat()
                # Fresh counts before every claim (one cheap read per message): --until-done must not
                # idle on a stale picture after the last send.
                summaries = self._refresh_jobs(self.clock(), force=True)
                if self.config.until_done and self.remaining_work(summaries) == 0:
                    code = self._finish_code()
                    break
                step = self.run_once()
                if step.exit_code is not None:
                    code = step.exit_code
                    break
                if step.outcome == "session_paused" and self.config.until_done:
                    # Nothing more this session may do until a person resumes it (status says why).
                    code = exitcodes.ATTENTION
                    break
                if step.outcome == "idle":
                    self._announce_scheduled(summaries)
                    if self.polls_receipts:
                        self.track_receipts_once()
                    # Nothing claimable (retries not due, jobs paused, not_before ahead): poll with backoff.
                    w = self.wait(idle)
                    idle = min(IDLE_MAX, idle * 2)
                else:
                    idle = IDLE_MIN
                    w = self.wait(step.wait) if step.wait > 0 else "elapsed"
                    self.next_send_at = None
                if w == "done":
                    code = self._finish_code()
        finally:
            self.shutdown()
        if code is None:
            code = exitcodes.ERROR if self.fatal is not None else exitcodes.INTERRUPTED
        self._emit(
            "stopped",
            f"worker stopped (exit {code}): {self.sent_this_run} sent, "
            f"{self.failed_this_run} failed this run",
        )
        return code

    def shutdown(self) -> None:
        """Release the claim in flight (its send-started stamp, if any, stays for verification) and
        unregister. Runs on every exit, including a second Ctrl-C."""
        claim, self._inflight = self._inflight, None
        if claim is not None:
            try:
                self.queue.release(claim, reason="worker exiting")
            except (LeaseLost, WabulkError) as e:
                log.warning("could not release message %s on exit: %s", claim.message_id, e)
        if self.worker_id is not None:
            try:
                self.queue.unregister_worker(self.worker_id)
            except WabulkError:
                log.exception("could not unregister worker")
        self.state = "stopped"
