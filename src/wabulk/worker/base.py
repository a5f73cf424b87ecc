"""The worker's configuration and the state every part of it shares: events, jobs, heartbeat, waits, the
daily cap (:class:`WorkerBase`). The loop itself is :class:`wabulk.worker.loop.Worker`."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tenacity import wait_exponential, wait_random

from wabulk import exitcodes, identity
from wabulk.errors import SessionBusy, WabulkError
from wabulk.logs import mask_phone
from wabulk.models import (
    FAILED,
    JOB_PAUSED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    Claim,
    Job,
    JobSummary,
)
from wabulk.pacing import (
    PROFILES,
    PaceProfile,
    Pacer,
    QuietHours,
    cap_state,
    local_midnight,
    local_zone,
    make_profile,
)
from wabulk.sender import RECEIPTS_POLLED, Provider
from wabulk.settings import DEFAULT_RESTRICTED_RECHECK, restricted_recheck_seconds

from .events import WorkerEvent

if TYPE_CHECKING:
    import datetime as _dt

    from wabulk.queue import Queue

log = logging.getLogger("wabulk.worker")

IDLE_MIN, IDLE_MAX = 0.5, 5.0  # empty-queue polling backs off between these
WAIT_SLICE = 0.5  # longest uninterrupted sleep: pause/stop/Ctrl-C are seen within this
JOBS_REFRESH = 1.0  # re-read job statuses during waits this often
STALE_AFTER = 30.0  # a worker without heartbeat for this long is dead (register_worker)
SESSION_ERROR_BACKOFF = 30.0  # wait before retrying after session trouble outside a send
# While the provider is offline (Offline, or its service unreachable), wait this long (doubling up to the
# max) between tries.
OFFLINE_RECHECK_SECONDS = 5.0
OFFLINE_RECHECK_MAX = 120.0
# Jobs this worker may touch when it is logged out / blocked / finishing.
_ACTIVE_JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_WAITING_FOR_LOGIN)


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
    # Another worker of this session without a heartbeat for this long is dead (register). Tests that
    # freeze a worker shorten it together with heartbeat_every; it must stay well above heartbeat_every.
    stale_after: float = STALE_AFTER
    breaker_threshold: int = 5
    max_attempts: int | None = None
    track_receipts: bool = False
    track_older_than: float = 600.0  # --track-receipts: leave a message alone this long after sending
    track_batch: int = 3  # --track-receipts: chats looked at per idle turn (each paced like a send)
    log_numbers: bool = False
    retry_base: float = 30.0  # first backoff (seconds); doubles per attempt
    retry_max: float = 900.0
    retry_jitter: float = 15.0
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
) -> WorkerConfig:
    """A validated :class:`WorkerConfig` from the CLI's options. Raises BadInput (exit 2).
    ``lease_seconds`` (hidden ``--lease-seconds`` / ``WABULK_LEASE_SECONDS``, for tests) shortens how
    long a dead worker's claim blocks its message; None keeps the default."""
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
    return replace(config, lease_seconds=float(lease_seconds)) if lease_seconds else config


def _ignore(_: WorkerEvent) -> None:
    return None


class WorkerBase:
    """What a worker is and knows (see :class:`wabulk.worker.loop.Worker`). Not thread-safe."""

    def __init__(
        self,
        queue: Queue,
        transport: Provider,
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
        # Decided once, from the provider's capabilities, before any job starts: receipts a service pushes
        # (a webhook) are never polled, whatever --track-receipts says (``run`` says so once).
        self.polls_receipts = config.track_receipts and transport.capabilities.receipts == RECEIPTS_POLLED
        self.quiet = QuietHours.parse(config.quiet_hours, self.sender_zone)
        self.pid = os.getpid() if pid is None else pid
        self.host = host or identity.place_key()
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
        self._reached = False  # whether the provider was ready once in this run
        self._last_heartbeat = float("-inf")
        self.progress_at = time.monotonic()  # when the main loop last moved (the heartbeat thread reads it)
        self._last_jobs_refresh = float("-inf")
        self._job_status: dict[int, str] = {}
        self._seen_jobs: set[int] = set(config.job_ids or ())
        self._first_send_at: float | None = None
        self._first_send_known = False
        self._send_seconds: deque[float] = deque(maxlen=20)  # the live view's average of recent sends
        self._chats_on_provider = 0  # chats since the provider (re)started: capabilities.restart_every
        self._summaries: tuple[JobSummary, ...] = ()
        self.next_send_at: float | None = None
        self._cap_stats: dict[str, Any] = {}
        self._next_track_at = float("-inf")  # --track-receipts: no chat is opened for receipts before this
        self._resume_at: float | None = None  # the pace across restarts: no send before this (register)
        self._paused_reason: str | None = None  # the session's pause, as last announced
        self._scheduled_announced: tuple[int, float] | None = None  # (job, --at) last said to wait for
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
        open_work -= self.queue.stamped_elsewhere(self.config.session, [s.job.id for s in active])
        return max(0, open_work)

    def _finish_code(self) -> int:
        """--until-done's verdict: 0 when every message of this worker's jobs went out (or was skipped
        or cancelled on purpose), 3 when some failed or are left unsent in a paused job."""
        settle = getattr(self.queue, "settle_stopped", None)
        if callable(settle):
            settle()  # a stopped job's message whose worker died after Enter: unknown, so counted failed
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
        # Only the main loop calls this: it is the progress the heartbeat thread reflects.
        self.progress_at = time.monotonic()
        now = self.clock()
        if self.worker_id is None or (not force and now - self._last_heartbeat < self.config.heartbeat_every):
            return
        self._last_heartbeat = now
        try:
            self.queue.heartbeat(self.worker_id, state=self.state)
        except SessionBusy as e:
            # Our registration is gone: another process took the session over after we looked dead.
            # Two workers on one account must not both send, so this one stops.
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
        self._first_send_at = self.queue.first_sent_at(self.config.session)
        return self._first_send_at

    def cap_status(self, now: float) -> tuple[int, int]:
        """(sent today, today's limit) for this session; counted from the database, so restarts keep it."""
        cap = self.config.cap
        if cap <= 0:
            self._cap_stats = {"sent_today": None, "cap_today": None, "day_ends_at": None}
            return 0, 10**9
        start = local_midnight(now, self.sender_zone)
        sent_today = self.queue.sent_count(self.config.session, start)
        state = cap_state(cap, self._first_send(now), sent_today, now, self.sender_zone)
        limit = state.cap_today if state.cap_today is not None else 10**9
        self._cap_stats = {"sent_today": sent_today, "cap_today": limit, "day_ends_at": state.day_ends_at}
        return sent_today, limit

    def _restart_provider(self, why: str, *, level: int = logging.WARNING) -> None:
        self._emit("restart", f"restarting the connection to WhatsApp ({why})", level=level)
        self._chats_on_provider = 0
        try:
            self.transport.restart()
        except WabulkError as e:
            log.error("%s restart failed: %s", self.transport.kind, e)
