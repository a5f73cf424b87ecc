"""The worker behind ``wabulk run``: drains the queue through one WhatsApp session, paced like a human.

One message is one :meth:`Worker.run_once`: check the session → claim → (verify, when an earlier attempt
may have sent it) → stamp send-started → send → mark sent / schedule a retry / mark failed. Each step is
its own short transaction in :mod:`wabulk.queue`; no transaction is open while the browser works.

Retries (the one retry layer). The attempt count lives in the database (``claim`` increments it, the
fence includes it), so a restart does not reset it. tenacity supplies the policy objects, evaluated
against that persisted count instead of an in-process loop: ``stop_after_attempt(max_attempts)`` decides
when a transient failure becomes ``failed``, and ``wait_exponential(multiplier=30, max=900) +
wait_random(0, 15)`` (exponential backoff with jitter) gives the delay stored as ``next_attempt_at``. A
confirmation timeout is retried after a short fixed delay: the message may have arrived, so the next
claim verifies it in the chat before any resend.

Time and sleeping are injected (``clock``, ``sleep``), so every path is unit-tested without waiting.
Waits are sliced into ≤ 0.5 s pieces that check the stop flag, heartbeat, and re-read the jobs, so pause,
stop and Ctrl-C take effect within a second even in the middle of a long pause.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, stop_after_attempt, wait_exponential, wait_random

from . import exitcodes
from .errors import (
    AccountRestricted,
    BadInput,
    Blocked,
    BrowserError,
    ConfirmTimeout,
    LeaseLost,
    NotLoggedIn,
    Offline,
    SendRefused,
    SessionBusy,
    SessionError,
    TakeoverFailed,
    Unreachable,
    WabulkError,
)
from .events import StepResult, WorkerEvent
from .logs import mask_phone
from .models import (
    FAILED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    TICK_SENT,
    UNKNOWN_OUTCOME,
    VERIFY_ABSENT,
    VERIFY_SENT,
    ChatSnapshot,
    Claim,
    Job,
    JobSummary,
    Transport,
)
from .pacing import (
    DAY,
    PROFILES,
    PaceProfile,
    Pacer,
    QuietHours,
    daily_limit,
    local_midnight,
    local_zone,
    make_profile,
    next_local_midnight,
)
from .settings import DEFAULT_RESTRICTED_RECHECK, restricted_recheck_seconds

if TYPE_CHECKING:
    import datetime as _dt

    from .queue import Queue

log = logging.getLogger("wabulk.worker")

CONFIRM_RECHECK_SECONDS = 15.0  # after a confirmation timeout: look in the chat again this soon
IDLE_MIN, IDLE_MAX = 0.5, 5.0  # empty-queue polling backs off between these
WAIT_SLICE = 0.5  # longest uninterrupted sleep: pause/stop/Ctrl-C are seen within this
JOBS_REFRESH = 1.0  # re-read job statuses during waits this often
STALE_AFTER = 30.0  # a worker without heartbeat for this long is dead (register_worker)
SESSION_ERROR_BACKOFF = 30.0  # wait before retrying after a takeover/browser failure outside a send
# While WhatsApp Web says the computer is offline, wait this long (doubling up to the max) between tries.
OFFLINE_RECHECK_SECONDS = 5.0
OFFLINE_RECHECK_MAX = 120.0
# Jobs this worker may touch when it is logged out / blocked / finishing.
_ACTIVE_JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN)


# Error classes that describe one recipient, not the page or the account (see _count_failure).
RECIPIENT_ERROR_CLASSES = frozenset({"not_on_whatsapp"})
# Error classes about this account's page (see _count_failure): a streak of them pauses the session only.
PAGE_ERROR_CLASSES = frozenset(
    {"confirm_timeout", "selector_missing", "browser_crashed", "BrowserError", UNKNOWN_OUTCOME}
)


@dataclass(frozen=True)
class WorkerConfig:
    """What ``wabulk run`` was asked to do. ``daily_cap=None`` takes the pace profile's cap (0 = none);
    ``quiet_hours`` is ``"HH:MM-HH:MM"`` in the recipient's local time or None; ``max_attempts``
    overrides the per-message value stored at enqueue time."""

    session: str
    job_ids: tuple[int, ...] | None = None
    until_done: bool = False
    pace: PaceProfile = field(default_factory=lambda: PROFILES["balanced"])
    daily_cap: int | None = None
    quiet_hours: str | None = None
    lease_seconds: float = 120.0
    heartbeat_every: float = 5.0
    breaker_threshold: int = 5
    max_attempts: int | None = None
    track_receipts: bool = False
    track_older_than: float = 600.0  # --track-receipts: leave a message alone this long after sending
    track_batch: int = 3  # --track-receipts: chats looked at per idle turn (each paced like a send)
    log_numbers: bool = False
    retry_base: float = 30.0  # first backoff (seconds); doubles per attempt
    retry_max: float = 900.0
    retry_jitter: float = 15.0
    # A fresh browser after this many chats (0 = never). A WhatsApp Web page that is never reloaded keeps
    # growing: in-page sends over 1,000 chats doubled Chromium's memory and slowed every send (docs/
    # performance.md). A restart costs one WhatsApp Web start-up: seconds, against 100 paced sends.
    restart_browser_every: int = 100
    # A restricted account (WhatsApp's block bar in its chats) opens a chat again after this many seconds
    # (doubling up to 4x) to see whether the restriction lifted (WABULK_RESTRICTED_RECHECK).
    restricted_recheck: float = DEFAULT_RESTRICTED_RECHECK
    # This many outcomes in a row that the chat could not tell (sent or not) pause the SESSION (its
    # workers stop claiming; other accounts go on): the page has probably changed under our reader.
    unknown_threshold: int = 3

    @property
    def cap(self) -> int:
        return self.pace.daily_cap if self.daily_cap is None else self.daily_cap


def build_config(
    *,
    session: str,
    job_ids: Sequence[int] | None = None,
    until_done: bool = False,
    pace: str = "balanced",
    min_delay: float | None = None,
    max_delay: float | None = None,
    long_pause_every: int | None = None,
    daily_cap: int | None = None,
    quiet_hours: str | None = None,
    log_numbers: bool = False,
    lease_seconds: float | None = None,
    track_receipts: bool = False,
    track_older_than: float | None = None,
    restart_browser_every: int | None = None,
) -> WorkerConfig:
    """A validated :class:`WorkerConfig` from the CLI's options. Raises BadInput (exit 2).
    ``lease_seconds`` (hidden ``--lease-seconds`` / ``WABULK_LEASE_SECONDS``, for tests) shortens how
    long a dead worker's claim blocks its message; None keeps the default, as for ``restart_browser_every``
    (0 = never restart the browser on purpose)."""
    if restart_browser_every is not None and restart_browser_every < 0:
        raise BadInput(f"--restart-browser-every must be 0 (never) or more, not {restart_browser_every}")
    profile = make_profile(
        pace, min_delay=min_delay, max_delay=max_delay, long_pause_every=long_pause_every, daily_cap=daily_cap
    )
    QuietHours.parse(quiet_hours)  # validate now: a typo must not surface hours later
    config = WorkerConfig(
        session=session,
        job_ids=tuple(job_ids) if job_ids else None,
        until_done=until_done,
        pace=profile,
        daily_cap=daily_cap,
        quiet_hours=quiet_hours,
        log_numbers=log_numbers,
        track_receipts=track_receipts,
        restricted_recheck=restricted_recheck_seconds(),
    )
    if track_older_than is not None:
        config = replace(config, track_older_than=float(track_older_than))
    if restart_browser_every is not None:
        config = replace(config, restart_browser_every=int(restart_browser_every))
    return replace(config, lease_seconds=float(lease_seconds)) if lease_seconds else config


class _Abandon(Exception):
    """Raised from ``before_send`` when a stop was requested before the send action: nothing is sent."""


def _ignore(_: WorkerEvent) -> None:
    return None


class Worker:
    """Sends queued messages through one transport. Not thread-safe; one per process and session."""

    def __init__(
        self,
        queue: Queue,
        transport: Transport,
        config: WorkerConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        on_event: Callable[[WorkerEvent], None] = _ignore,
        rng: random.Random | None = None,
        sender_zone: _dt.tzinfo | None = None,
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.config = config
        self.clock = clock
        self._stop_event = threading.Event()
        # The default sleeper waits on the stop event, so a stop request wakes it at once.
        self.sleep: Callable[[float], None] = sleep or self._interruptible_sleep
        self.on_event = on_event
        self.rng = rng or random.Random()
        self.sender_zone = sender_zone or local_zone()
        self.pacer = Pacer(config.pace, self.rng, clock)
        self.quiet = QuietHours.parse(config.quiet_hours, self.sender_zone)
        self.pid = os.getpid() if pid is None else pid
        self.host = host or socket.gethostname()
        self.worker_id: str | None = None
        self.fatal: WabulkError | None = None  # set when the worker must exit with an error
        self.state = "starting"
        self.sent_this_run = 0
        self.failed_this_run = 0
        self.signals = 0
        self._inflight: Claim | None = None
        self._stamped = False
        self._verified_claim: Claim | None = None
        self._streaks: dict[int, tuple[str, int]] = {}
        self._session_failures = 0
        self._offline_streak = 0
        self._restricted_streak = 0  # re-checks of a restricted account in a row (0: not restricted)
        self._page_reached = False  # whether WhatsApp Web has loaded once in this run
        self._last_heartbeat = float("-inf")
        self._last_jobs_refresh = float("-inf")
        self._job_status: dict[int, str] = {}
        self._seen_jobs: set[int] = set(config.job_ids or ())
        self._first_send_at: float | None = None
        self._first_send_known = False
        self._send_seconds: deque[float] = deque(maxlen=20)  # the live view's average of recent sends
        self._chats_on_browser = 0  # chats opened since the browser (re)started: restart_browser_every
        self._summaries: tuple[JobSummary, ...] = ()
        self.next_send_at: float | None = None
        self._cap_stats: dict[str, Any] = {}
        self._next_track_at = float("-inf")  # --track-receipts: no chat is opened for receipts before this
        self._resume_at: float | None = None  # the pace across restarts: no send before this (register)
        self._paused_reason: str | None = None  # the session's pause, as last announced
        self._backoff = wait_exponential(multiplier=config.retry_base, max=config.retry_max) + wait_random(
            0, config.retry_jitter
        )

    # --- control ----------------------------------------------------------------------------------
    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    @property
    def stop_requested(self) -> bool:
        return self._stop_event.is_set()

    def request_stop(self) -> None:
        """Ask the worker to finish (or abandon) the message in flight and exit. Safe from a signal."""
        self._stop_event.set()

    # --- events / logging ---------------------------------------------------------------------------
    def _mask(self, phone: str | None) -> str:
        if phone is None:
            return ""
        return phone if self.config.log_numbers else mask_phone(phone)

    def _emit(
        self, kind: str, text: str, *, claim: Claim | None = None, level: int = logging.INFO, **extra: Any
    ) -> None:
        now = self.clock()
        ev = WorkerEvent(
            kind=kind,
            at=now,
            text=text,
            job_id=claim.job_id if claim else extra.pop("job_id", None),
            message_id=claim.message_id if claim else extra.pop("message_id", None),
            phone=self._mask(claim.phone) if claim else extra.pop("phone", None),
            state=self.state,
            next_send_at=self.next_send_at,
            payload=extra.pop("payload", None),
            summaries=extra.pop("summaries", None),
            stats=extra.pop("stats", None),
        )
        if kind not in ("progress",):
            data: dict[str, Any] = {"event": kind, "session": self.config.session, "worker": self.worker_id}
            if claim is not None:
                data.update(
                    job=claim.job_id,
                    message=claim.message_id,
                    phone=claim.phone,
                    attempt=claim.attempt,
                    body=claim.body,
                )
            elif ev.job_id is not None:
                data["job"] = ev.job_id
            data.update({k: v for k, v in extra.items() if v is not None})
            log.log(level, text, extra={"data": data})
        try:
            self.on_event(ev)
        except Exception:  # a broken view must never stop the sending
            log.exception("event handler failed")

    def _stats(self) -> dict[str, Any]:
        avg = sum(self._send_seconds) / len(self._send_seconds) if self._send_seconds else 3.0
        return {
            "sent_this_run": self.sent_this_run,
            "failed_this_run": self.failed_this_run,
            "send_seconds": avg,
            "profile": self.config.pace,
            "cap": self.config.cap,
            "session": self.config.session,
            "quiet_hours": self.config.quiet_hours,
            "sender_zone": self.sender_zone,
            **self._cap_stats,
        }

    def _progress(self) -> None:
        try:
            self._summaries = tuple(self._my_summaries())
        except WabulkError:
            log.exception("could not read job summaries")
        self._emit("progress", "", summaries=self._summaries, stats=self._stats())

    # --- jobs -----------------------------------------------------------------------------------------
    def _mine(self, job: Job) -> bool:
        if self.config.job_ids is not None:
            return job.id in self.config.job_ids
        return not job.sessions or self.config.session in job.sessions

    def _my_summaries(self) -> list[JobSummary]:
        out = []
        for s in self.queue.summaries():
            if not self._mine(s.job):
                continue
            if s.job.status in _ACTIVE_JOB_STATUSES or s.job.status == JOB_PAUSED:
                self._seen_jobs.add(s.job.id)
            if s.job.id in self._seen_jobs:
                out.append(s)
        return out

    def _refresh_jobs(self, now: float, *, force: bool = False) -> list[JobSummary]:
        """Re-read this worker's jobs (at most once a second unless forced), announce status changes
        made by other processes (pause/resume/stop), and publish progress for the live view."""
        if not force and now - self._last_jobs_refresh < JOBS_REFRESH:
            return list(self._summaries)
        self._last_jobs_refresh = now
        summaries = self._my_summaries()
        for s in summaries:
            old = self._job_status.get(s.job.id)
            if old is not None and old != s.job.status:
                reason = f" ({s.job.status_reason})" if s.job.status_reason else ""
                self._emit("job_status", f"job {s.job.id} is now {s.job.status}{reason}", job_id=s.job.id)
            self._job_status[s.job.id] = s.job.status
        self._summaries = tuple(summaries)
        self._emit("progress", "", summaries=self._summaries, stats=self._stats())
        return summaries

    def remaining_work(self, summaries: Sequence[JobSummary] | None = None) -> int:
        """Messages still to send in this worker's runnable jobs (pending or in flight); work in
        paused, stopped or completed jobs does not count."""
        if summaries is None:
            summaries = self._my_summaries()
        active = [s for s in summaries if s.job.status in _ACTIVE_JOB_STATUSES]
        open_work = sum(s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0) for s in active)
        if not open_work:
            return 0
        # Messages whose send another account pressed can only be finished by that account (status
        # --check reports them when it never returns): this session's --until-done does not wait for them.
        elsewhere = getattr(self.queue, "stamped_elsewhere", None)
        if callable(elsewhere):
            open_work -= elsewhere(self.config.session, [s.job.id for s in active])
        return max(0, open_work)

    def _finish_code(self) -> int:
        """--until-done's verdict: 0 when every message of this worker's jobs went out (or was skipped
        or cancelled on purpose), 3 when some failed or are left unsent in a paused job."""
        summaries = self._my_summaries()
        failed = sum(s.counts.get(FAILED, 0) for s in summaries)
        stranded = sum(
            s.counts.get(PENDING, 0) + s.counts.get(SENDING, 0)
            for s in summaries
            if s.job.status == JOB_PAUSED
        )
        return exitcodes.SOME_FAILED if failed or stranded else exitcodes.OK

    def _set_jobs(self, from_statuses: Sequence[str], to: str, reason: str | None) -> list[Job]:
        changed = []
        for s in self._my_summaries():
            if s.job.status in from_statuses:
                try:
                    changed.append(self.queue.set_job_status(s.job.id, to, reason=reason))
                except WabulkError as e:  # e.g. stopped meanwhile: leave it
                    log.warning("could not set job %s to %s: %s", s.job.id, to, e)
        return changed

    # --- heartbeat / waits -----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._heartbeat(force=True)

    def _heartbeat(self, *, force: bool = False) -> None:
        now = self.clock()
        if self.worker_id is None or (not force and now - self._last_heartbeat < self.config.heartbeat_every):
            return
        self._last_heartbeat = now
        try:
            self.queue.heartbeat(self.worker_id, state=self.state)
        except SessionBusy as e:
            # Our registration is gone: another process took the session over after we looked dead.
            # Two browsers on one account must not both send, so this one stops.
            self.fatal = e
            self.request_stop()
            self._emit("error", str(e), level=logging.ERROR)
        except WabulkError:
            log.exception("heartbeat failed")

    def wait(self, seconds: float, *, until_done_check: bool = True) -> str:
        """Sleep ``seconds`` in slices of at most 0.5 s. Returns "stop" when a stop was requested,
        "done" (with --until-done) when nothing runnable is left, else "elapsed"."""
        end = self.clock() + max(0.0, seconds)
        while True:
            if self.stop_requested:
                return "stop"
            now = self.clock()
            self._heartbeat()
            summaries = self._refresh_jobs(now)
            if until_done_check and self.config.until_done and self.remaining_work(summaries) == 0:
                return "done"
            if now >= end:
                return "elapsed"
            self.sleep(min(WAIT_SLICE, end - now))

    # --- daily cap -------------------------------------------------------------------------------------
    def _first_send(self, now: float) -> float | None:
        """When this session first sent (only the first days matter for the warm-up ramp)."""
        if self._first_send_known:
            return self._first_send_at
        self._first_send_known = True
        finder = getattr(self.queue, "first_sent_at", None)
        if callable(finder):
            self._first_send_at = finder(self.config.session)
        else:
            self._first_send_at = first_send_time(self.queue, self.config.session, now)
        return self._first_send_at

    def cap_status(self, now: float) -> tuple[int, int]:
        """(sent today, today's limit) for this session; counted from the database, so restarts keep it."""
        cap = self.config.cap
        if cap <= 0:
            self._cap_stats = {"sent_today": None, "cap_today": None, "day_ends_at": None}
            return 0, 10**9
        start = local_midnight(now, self.sender_zone)
        sent_today = self.queue.sent_count(self.config.session, start)
        limit = daily_limit(cap, self._first_send(now), now, tz=self.sender_zone)
        self._cap_stats = {
            "sent_today": sent_today,
            "cap_today": limit,
            "day_ends_at": next_local_midnight(now, self.sender_zone),
        }
        return sent_today, limit

    # --- the loop --------------------------------------------------------------------------------------
    def register(self) -> str:
        """Register in ``workers`` (SessionBusy when another live worker has this session)."""
        self.worker_id = self.queue.register_worker(
            self.config.session, pid=self.pid, host=self.host, stale_after=STALE_AFTER
        )
        self._last_heartbeat = self.clock()
        last = getattr(self.queue, "last_send_at", lambda _s: None)(self.config.session)
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

        every = self.config.restart_browser_every
        if every and self._chats_on_browser >= every:
            # Between messages (nothing claimed): the restart cannot interrupt a send.
            self._restart_browser(
                f"a fresh page after {self._chats_on_browser} chats; a long-lived one keeps growing",
                level=logging.INFO,
            )

        # The session first: a logged-out or blocked account must not burn claims and attempts.
        try:
            self.transport.ensure_ready()
            self._session_failures = 0
            self._page_reached = True
            self._resume_waiting()
        except Unreachable as e:
            if not self._page_reached:
                raise  # never reached WhatsApp Web at all: a wrong URL or no network; say so and stop
            return self._wait_for_network(e)
        except NotLoggedIn:
            return self._handle_logout(None)
        except AccountRestricted as e:
            return self._handle_restricted(None, e)
        except Blocked as e:
            return self._handle_blocked(None, e)
        except (TakeoverFailed, BrowserError) as e:
            return self._handle_session_trouble(None, e)

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
        )
        if claim is None:
            self._set_state("restricted" if self._restricted_streak else "idle")
            return StepResult("idle")
        self._inflight, self._stamped, self._verified_claim = claim, False, None
        self._seen_jobs.add(claim.job_id)
        self._chats_on_browser += 1
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
                claim.phone, claim.body, claim.send_started_at, known=claim.send_snapshot
            )
        except LeaseLost:
            raise
        except Exception as e:
            return self._transport_failure(claim, e, doing="verifying", context="could not check the chat")
        if found.outcome == VERIFY_SENT:
            return True
        if found.outcome == VERIFY_ABSENT:
            lease = self.config.lease_seconds
            claim = self.queue.mark_absent(claim, reason=found.reason, lease_seconds=lease)
            self._inflight = claim
            self._verified_claim = claim
            return False
        return self._unknown(claim, found.reason or "the chat could not be read")

    def _unknown(self, claim: Claim, reason: str) -> StepResult:
        """Fail closed: the message may or may not have arrived and the chat cannot tell. It fails as
        ``unknown_outcome`` (never resent automatically; ``wabulk resolve`` decides), and N in a row pause
        this session."""
        error = f"outcome unknown: {reason}"
        self.queue.mark_failed(claim, error=error, error_class=UNKNOWN_OUTCOME)
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
        """Give the message back without spending an attempt, not to be claimed before ``until``.
        Uses ``Queue.defer`` when the queue has it; otherwise releases it and the caller waits."""
        defer = getattr(self.queue, "defer", None)
        when = time.strftime("%H:%M", time.localtime(until))
        if callable(defer):
            defer(claim, until=until, reason=why)
            self._emit("deferred", f"{self._mask(claim.phone)} deferred to {when} ({why})", claim=claim)
            return StepResult("deferred", claim.message_id)
        self.queue.release(claim, reason=why)
        self._set_state("quiet_hours")
        self._emit("quiet", f"{self._mask(claim.phone)}: {why} until {when}", claim=claim)
        return StepResult("quiet", claim.message_id, wait=until - self.clock())

    def _before_send(self, claim: Claim, snapshot: ChatSnapshot) -> None:
        # Last moment to abandon cleanly: after the stamp, the message counts as possibly sent.
        if self.stop_requested:
            raise _Abandon()
        # Fenced, with what the chat shows, in one transaction that also re-checks stop, pause, opt-out
        # and the send budget: LeaseLost (a zombie) or SendRefused means nothing is sent.
        self.queue.mark_send_started(claim, snapshot)
        self._stamped = True
        self._heartbeat()

    def _send(self, claim: Claim) -> StepResult:
        started = self.clock()
        try:
            result = self.transport.send(
                claim.phone,
                claim.body,
                attachment=claim.attachment,
                before_send=lambda snapshot: self._before_send(claim, snapshot),
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
        """What a failure of the browser while ``doing`` something with ``claim`` means: session trouble
        releases the message (no attempt spent), anything else is a failed attempt, bounded by
        max_attempts. One place for the send and the verification, so both treat errors alike."""
        if isinstance(e, NotLoggedIn):
            return self._handle_logout(claim)
        if isinstance(e, Blocked):
            return self._handle_blocked(claim, e)
        if isinstance(e, AccountRestricted):
            return self._handle_restricted(claim, e)
        if isinstance(e, TakeoverFailed):
            return self._handle_session_trouble(claim, e)
        if isinstance(e, Offline):
            return self._handle_offline(claim, e)
        if isinstance(e, BrowserError) or getattr(e, "error_class", "") == "browser_crashed":
            self._restart_browser(str(e))
        elif not isinstance(e, WabulkError):  # unexpected: log it, keep the loop alive
            log.exception("unexpected error while %s", doing)
        return self._failed_attempt(claim, e, context=context)

    def _unconfirmed(self, claim: Claim, e: ConfirmTimeout) -> StepResult:
        """The message may have arrived: never resend blindly. The send stamp stays, so the next claim
        looks in the chat first. With attempts left: a short retry. With attempts used up,
        schedule_retry would fail a message that may well have arrived, so instead the lease is cut to
        a few seconds and left to expire: the queue hands an expired, stamped message out for
        verification even when its attempts are used up."""
        self._count_failure(claim, e.error_class)
        text = f"{self._mask(claim.phone)}: not confirmed in time; will check the chat before any resend"
        # Even with attempts used up the queue gives a stamped message back once, to be looked for (it is
        # never pressed again beyond the budget); it used to be handed out for verification without end.
        delay = CONFIRM_RECHECK_SECONDS
        self.queue.schedule_retry(claim, error=str(e), error_class=e.error_class, delay=delay)
        self._emit("retry", text, claim=claim, level=logging.WARNING, error_class=e.error_class)
        return StepResult("retry", claim.message_id)

    def _complete_sent(self, claim: Claim, *, tick: str, verified: bool) -> StepResult:
        self.queue.mark_sent(claim, tick=tick, session=self.config.session, at=self.clock())
        self.sent_this_run += 1
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

    def track_receipts_once(self) -> int:
        """Idle time with ``--track-receipts``: look at the chat of the next sent, unread message (oldest
        first; at most ``track_batch`` per turn), record its ticks, and keep the next look a pacing gap
        away, as if it were a send. Never sends. Returns how many chats were looked at. Errors are logged
        and end the turn: the next claim's session check handles a logged-out or dead browser."""
        from .receipts import Checked, track

        now = self.clock()
        if now < self._next_track_at or self.stop_requested:
            return 0
        done = 0
        p = self.config.pace

        def gap() -> float:
            return self.rng.uniform(p.min_delay, max(p.min_delay, p.max_delay))

        def on_checked(c: Checked) -> None:
            self._chats_on_browser += 1  # each look opens a chat, as a send does
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
        self._count_failure(claim, error_class)
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

    def _count_failure(self, claim: Claim, error_class: str) -> None:
        """Circuit breaker: N failures in a row of one class pause what they point at. Page-level classes
        (the reader, the browser) are about this account's page: the SESSION pauses and other accounts go on
        with the shared job. Anything else (e.g. an attachment WhatsApp rejects) is about the job: the job
        pauses. Failures that are about one recipient (a number not on WhatsApp) say nothing about either,
        so they neither count nor break a streak."""
        if error_class in RECIPIENT_ERROR_CLASSES:
            return
        last, n = self._streaks.get(claim.job_id, ("", 0))
        n = n + 1 if last == error_class else 1
        self._streaks[claim.job_id] = (error_class, n)
        if n < self.config.breaker_threshold:
            return
        self._streaks.pop(claim.job_id, None)
        reason = f"auto-paused: {n} consecutive {error_class} failures"
        if error_class in PAGE_ERROR_CLASSES:
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

    def _restart_browser(self, why: str, *, level: int = logging.WARNING) -> None:
        self._emit("restart", f"restarting the browser ({why})", level=level)
        self._chats_on_browser = 0
        try:
            self.transport.restart()
        except WabulkError as e:
            log.error("browser restart failed: %s", e)

    # --- session trouble -------------------------------------------------------------------------------
    def _handle_logout(self, claim: Claim | None) -> StepResult:
        """Logged out: give the message back (no attempt spent), mark the jobs waiting_for_login, show the
        QR and wait for the scan, then resume the jobs."""
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
            f"session {self.config.session!r} is logged out: scan the QR code (WhatsApp > Linked devices)",
            level=logging.WARNING,
        )

        def on_qr(payload: str) -> None:
            self._heartbeat()
            self._emit("qr", "scan this QR code with WhatsApp > Linked devices", payload=payload)

        def should_stop() -> bool:
            self._heartbeat()  # the login wait can be long: stay visibly alive
            return self.stop_requested

        ok = self.transport.wait_for_login(on_qr, should_stop=should_stop)
        if not ok:
            # Stopping while logged out: the jobs stay waiting_for_login (``status --check`` flags them);
            # the next worker that finds the session ready resumes them.
            return StepResult("stopped", claim.message_id if claim else None)
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
        reason = f"auto-paused: WhatsApp blocked session {self.config.session!r}: {e}"
        # Only this account stops: a job shared by the fleet goes on through the other sessions.
        try:
            self.queue.pause_session(self.config.session, reason)
        except WabulkError as err:
            log.warning("could not pause session %s: %s", self.config.session, err)
        self._paused_reason = reason
        self._set_state("blocked")
        self._emit("blocked", reason, level=logging.ERROR)
        return StepResult("blocked", claim.message_id if claim else None, exit_code=exitcodes.ERROR)

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
        """WhatsApp Web was reachable earlier in this run and is not now: a network outage. Wait with a
        growing pause (like the offline bar) rather than end a long-running worker."""
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
            f"WhatsApp Web is offline ({e}); {self._mask(claim.phone)} waits, next try in {wait:.0f}s",
            claim=claim,
            level=logging.WARNING,
        )
        return StepResult("offline", claim.message_id, wait=wait)

    def _handle_session_trouble(self, claim: Claim | None, e: SessionError | BrowserError) -> StepResult:
        """Takeover not recovered or browser dead outside a send: release, restart, back off; after
        ``breaker_threshold`` in a row give up (exit 1) rather than spin."""
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
        if isinstance(e, BrowserError):
            self._restart_browser(str(e))
        else:
            self._emit("warning", f"{e}; retrying in {SESSION_ERROR_BACKOFF:.0f}s", level=logging.WARNING)
        return StepResult("released", claim.message_id if claim else None, wait=SESSION_ERROR_BACKOFF)

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
                    code = exitcodes.SOME_FAILED  # nothing more this session may do; status says why
                    break
                if step.outcome == "idle":
                    if self.config.track_receipts:
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


def first_send_time(queue: Queue, session: str, now: float, *, horizon_days: int = 7) -> float | None:
    """When ``session`` first sent, to the minute, found with ``Queue.sent_count`` alone (binary search).
    Only the warm-up ramp's first days matter, so anything older than ``horizon_days`` is reported as
    exactly that old. None when the session never sent."""
    total = queue.sent_count(session, 0.0)
    if total == 0:
        return None
    lo = now - horizon_days * DAY
    if queue.sent_count(session, lo) < total:
        return lo  # older than the horizon: the ramp is over
    hi = now + 1.0  # sent_count(hi) < total (nothing is sent in the future)
    while hi - lo > 60.0:
        mid = (lo + hi) / 2
        if queue.sent_count(session, mid) == total:
            lo = mid
        else:
            hi = mid
    return lo


def __getattr__(name: str) -> Any:
    """``run_worker``, ``install_signal_handlers`` and ``HeartbeatThread`` live in :mod:`wabulk.runner`
    (imported on first use: the runner imports this module)."""
    if name in ("run_worker", "install_signal_handlers", "HeartbeatThread"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "StepResult",
    "Worker",
    "WorkerConfig",
    "WorkerEvent",
    "build_config",
    "first_send_time",
]
