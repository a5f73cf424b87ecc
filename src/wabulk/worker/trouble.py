"""What a worker does when the account, not a message, is in trouble (logged out, blocked, restricted,
offline, a takeover or a dead connection), and receipt polling in idle time."""

from __future__ import annotations

import logging

from wabulk import exitcodes
from wabulk.errors import (
    AccountRestricted,
    Blocked,
    Offline,
    Unreachable,
    WabulkError,
)
from wabulk.models import AUTO_PAUSE_PREFIX, JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN, Claim

from .base import OFFLINE_RECHECK_MAX, OFFLINE_RECHECK_SECONDS, SESSION_ERROR_BACKOFF, WorkerBase
from .events import StepResult

log = logging.getLogger("wabulk.worker")


# How often a worker waiting for a scan marks jobs queued meanwhile as waiting for the login (seconds).
LOGIN_WAIT_MARK_EVERY = 5.0


class SessionMixin(WorkerBase):
    # --- session trouble -------------------------------------------------------------------------------
    def _handle_logout(self, claim: Claim | None) -> StepResult:
        """Logged out: give the message back (no attempt spent), mark the jobs waiting_for_login, wait for
        the login (showing each code of an interactive one), then resume the jobs."""
        if claim is not None:
            self.queue.release(claim, reason="session logged out")
            self._emit("released", f"released {self._mask(claim.phone)}: session logged out", claim=claim)
        self._set_state("waiting_for_login")
        self._set_jobs(
            (JOB_QUEUED, JOB_RUNNING),
            JOB_WAITING_FOR_LOGIN,
            reason=f"session {self.config.session!r} is logged out",
        )
        self._emit(
            "logged_out",
            f"session {self.config.session!r} is logged out: {self.transport.capabilities.login_hint}",
            level=logging.WARNING,
        )

        def on_qr(payload: str) -> None:
            self._heartbeat()
            self._emit("qr", self.transport.capabilities.qr_prompt, payload=payload)

        marked = [self.clock()]

        def should_stop() -> bool:
            self._heartbeat()  # the login wait can be long: stay visibly alive
            now = self.clock()
            if now - marked[0] >= LOGIN_WAIT_MARK_EVERY:
                marked[0] = now
                # A job queued while the session waits waits too: marked, so that `status` and the
                # notification name it (they named only the jobs there were at the logout).
                self._set_jobs(
                    (JOB_QUEUED, JOB_RUNNING),
                    JOB_WAITING_FOR_LOGIN,
                    reason=f"session {self.config.session!r} is logged out",
                )
            return self.stop_requested

        ok = self.transport.wait_for_login(on_qr, should_stop=should_stop)
        if not ok:
            # Stopping while logged out: the jobs stay waiting_for_login (``status --check`` flags them);
            # the next worker that finds the session ready resumes them.
            return StepResult("stopped", claim.message_id if claim else None)
        # A new device now: what the old one sent may be missing from its chats (verification knows).
        self.queue.mark_linked(self.config.session)
        restored = self._resume_waiting(force=True)
        self._set_state("ready")
        self._emit("logged_in", f"logged in again; resuming job(s) {', '.join(map(str, restored)) or '-'}")
        return StepResult("login", claim.message_id if claim else None)

    def _resume_waiting(self, *, force: bool = False) -> list[int]:
        """The session is ready: jobs of this worker still marked waiting_for_login (by this run or an
        earlier one that exited while logged out) go back to running/queued. Uses the cached counts
        unless ``force``, so the common case costs no query."""
        summaries = self._my_summaries() if force else self._summaries
        resumed = []
        for s in summaries:
            if s.job.status == JOB_WAITING_FOR_LOGIN:
                try:
                    self.queue.resume_job(s.job.id)
                    resumed.append(s.job.id)
                except WabulkError as e:
                    log.warning("could not resume job %s: %s", s.job.id, e)
        if resumed and not force:
            self._emit("job_status", f"session ready; resumed job(s) {', '.join(map(str, resumed))}")
            self._refresh_jobs(self.clock(), force=True)
        return resumed

    def _handle_blocked(self, claim: Claim | None, e: Blocked) -> StepResult:
        if claim is not None:
            self.queue.release(claim, reason="account blocked")
        reason = f"{AUTO_PAUSE_PREFIX}: WhatsApp blocked session {self.config.session!r}: {e}"
        # Only this account stops: a job shared by the fleet goes on through the other sessions.
        try:
            self.queue.pause_session(self.config.session, reason)
        except WabulkError as err:
            log.warning("could not pause session %s: %s", self.config.session, err)
        self._paused_reason = reason
        self._set_state("blocked")
        self._emit("blocked", reason, level=logging.ERROR)
        # Exit 4, "a person must act": systemd's RestartPreventExitStatus=4 keeps it down, a fleet does not
        # restart it; a restarted provider would meet the same block.
        return StepResult("blocked", claim.message_id if claim else None, exit_code=exitcodes.ATTENTION)

    def _handle_restricted(self, claim: Claim | None, e: AccountRestricted) -> StepResult:
        """WhatsApp restricts the account on linked devices: nothing can be sent, no recipient is to blame.
        The message goes back untried (no attempt spent; its send stamp, if any, stays, so it is checked
        in the chat before any resend) and other sessions may take it; the jobs keep running. This worker
        shows ``restricted`` and opens a chat again after a slow, growing wait; a send that then goes
        through ends the restriction by itself."""
        if claim is not None:
            self.queue.release(claim, reason="account restricted")
            self._emit("released", f"released {self._mask(claim.phone)}: account restricted", claim=claim)
        self._restricted_streak += 1
        base = self.config.restricted_recheck
        wait = min(base * 2 ** (self._restricted_streak - 1), base * 4)
        self._set_state("restricted")
        log.debug("restricted: %s", e)
        self._emit(
            "restricted",
            f"session {self.config.session!r} is restricted by WhatsApp on linked devices; other sessions "
            f"go on; checking again in {wait:.0f}s",
            level=logging.WARNING,
        )
        return StepResult("restricted", claim.message_id if claim else None, wait=wait)

    def _restriction_lifted(self) -> None:
        if self._restricted_streak:
            self._restricted_streak = 0
            self._emit("restricted_lifted", f"session {self.config.session!r} is no longer restricted")

    def _wait_for_network(self, e: Unreachable) -> StepResult:
        """The service was reachable earlier in this run and is not now: a network outage. Wait with a
        growing pause (as when offline) rather than end a long-running worker."""
        self._offline_streak += 1
        wait = min(OFFLINE_RECHECK_SECONDS * 2 ** (self._offline_streak - 1), OFFLINE_RECHECK_MAX)
        self._set_state("offline")
        self._emit("warning", f"{e}; trying again in {wait:.0f}s", level=logging.WARNING)
        return StepResult("offline", wait=wait)

    def _handle_offline(self, claim: Claim, e: Offline) -> StepResult:
        """The computer lost its connection: no recipient is to blame, so no attempt is spent and the
        message is not failed however long the outage lasts. Released (its send stamp, if any, stays:
        it is checked in the chat before any resend) and tried again after a growing wait."""
        self.queue.release(claim, reason=f"offline: {e}")
        self._offline_streak += 1
        wait = min(OFFLINE_RECHECK_SECONDS * 2 ** (self._offline_streak - 1), OFFLINE_RECHECK_MAX)
        self._set_state("offline")
        self._emit(
            "warning",
            f"offline: {e}; {self._mask(claim.phone)} waits, next try in {wait:.0f}s",
            claim=claim,
            level=logging.WARNING,
        )
        return StepResult("offline", claim.message_id, wait=wait)

    def _handle_session_trouble(self, claim: Claim | None, e: WabulkError) -> StepResult:
        """Takeover not recovered or the provider's connection dead outside a send: release, restart (when
        the error says so), back off; after ``breaker_threshold`` in a row give up (exit 1) rather than
        spin."""
        if claim is not None:
            self.queue.release(claim, reason=str(e))
        self._session_failures += 1
        if self._session_failures >= self.config.breaker_threshold:
            self._set_state("error")
            self._emit(
                "error",
                f"giving up after {self._session_failures} session failures: {e}",
                level=logging.ERROR,
            )
            return StepResult("error", exit_code=exitcodes.ERROR)
        if e.restart_provider:
            self._restart_provider(str(e))
        else:
            self._emit("warning", f"{e}; retrying in {SESSION_ERROR_BACKOFF:.0f}s", level=logging.WARNING)
        return StepResult("released", claim.message_id if claim else None, wait=SESSION_ERROR_BACKOFF)

    def track_receipts_once(self) -> int:
        """Idle time with ``--track-receipts``: look at the chat of the next sent, unread message (oldest
        first; at most ``track_batch`` per turn), record its ticks, and keep the next look a pacing gap
        away, as if it were a send. Never sends. Returns how many chats were looked at. Errors are logged
        and end the turn: the next claim's session check handles a logged-out account or a dead provider."""
        from .receipts import Checked, track

        now = self.clock()
        if not self.polls_receipts or now < self._next_track_at or self.stop_requested:
            return 0
        done = 0
        p = self.config.pace

        def gap() -> float:
            return self.rng.uniform(p.min_delay, max(p.min_delay, p.max_delay))

        def on_checked(c: Checked) -> None:
            self._chats_on_provider += 1  # each look opens a chat, as a send does
            what = c.seen if c.seen is not None else ("error: " + c.error if c.error else "not found")
            self._emit(
                "receipt",
                f"{self._mask(c.phone)}: {what}",
                job_id=c.job_id,
                message_id=c.message_id,
                phone=self._mask(c.phone),
                tick=c.seen,
            )

        try:
            for _ in range(max(1, self.config.track_batch)):
                self._heartbeat()
                res = track(
                    self.queue,
                    self.transport,
                    session=self.config.session,
                    job_id=None
                    if self.config.job_ids is None or len(self.config.job_ids) != 1
                    else self.config.job_ids[0],
                    older_than=self.config.track_older_than,
                    limit=1,
                    clock=self.clock,
                    should_stop=lambda: self.stop_requested,
                    on_checked=on_checked,
                )
                if not res.checked:
                    # Nothing to look at now: ask the database again in a while, not on every poll.
                    self._next_track_at = self.clock() + max(30.0, gap())
                    return done
                done += 1
                if self.wait(gap(), until_done_check=False) == "stop":
                    break
        except WabulkError as e:
            log.warning("receipt tracking stopped for now: %s", e)
            self._next_track_at = self.clock() + SESSION_ERROR_BACKOFF
            return done
        self._next_track_at = self.clock() + gap()
        return done
