"""``wabulk run`` on a Cloud API session: the fast path (several POSTs in flight, batched queue writes).

Per turn the loop claims a batch (one transaction), stamps a chunk durably right before its POSTs (one
transaction, ``synchronous=FULL``, which also records the answers that came in since the last turn), then
starts each stamped message's POST as the per-number rate limiter gives it a slot. The POSTs run on one
asyncio event loop over a few kept-alive connections (``cloud/wire.py``), in the same thread as the queue:
no thread per request, no lock per request. So every message is stamped durably before its POST and the
queue costs a few transactions per chunk, not three per message.

Reactions (``cloud/errors.py``): an account-level code (190, 368, …) pauses the session and stops the run
(exit 4), no message burnt; a job-level code (132000, 132001, …) pauses the job with the code in its reason,
its messages stay pending. A job not yet proven in this session (no accepted message) is probed with one
request in flight, so a wrong template costs one request, never one failure per recipient. An unknown
outcome waits for a status webhook (``wabulk serve``) for the settle window; ``--until-done`` waits for it
and then leaves what is still open as ``unknown_outcome``. Pace profiles do not apply here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wabulk import exitcodes, identity, settings
from wabulk.errors import ConfigError, InvalidTransition
from wabulk.models import JOB_PAUSED, Claim, CloudOutcome

from . import errors as ge
from .answers import Accepted, read_send_answer
from .limiter import RateLimiter
from .provider import (
    DEFAULT_SETTLE_SECONDS,
    CloudSender,
    SendReport,
    build_payload,
    lease_covers_post,
)
from .wire import Wire

if TYPE_CHECKING:
    from .client import GraphClient

log = logging.getLogger(__name__)

DEFAULT_IN_FLIGHT = 256  # stamped and not answered yet (at most half of it stamped in one commit)
MAX_CONNECTIONS = 64  # kept-alive connections: POSTs on the wire at once
DEFAULT_LEASE_SECONDS = 120.0
HEARTBEAT_EVERY = 5.0
TURN_EVERY = 0.02  # at most this long between two turns (one durable transaction each) while busy


@dataclass(frozen=True)
class CloudRunConfig:
    session: str
    phone_number_id: str
    rate: float
    in_flight: int = DEFAULT_IN_FLIGHT
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    until_done: bool = False
    job_ids: tuple[int, ...] | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    idle_poll: float = 1.0
    # The session's provider settings as login --cloud recorded them (the messaging limit tier); None: no
    # messaging-limit gate (the library and bench callers).
    provider_settings: dict[str, Any] | None = None


@dataclass
class CloudProgress:
    """What the live table shows (this run's counts; delivered/read come from the webhooks)."""

    accepted: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    delivered: int = 0
    read: int = 0
    started: float = field(default_factory=time.monotonic)
    state: str = "starting"

    @property
    def rate(self) -> float:
        """Accepted messages per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.accepted / elapsed if elapsed > 0 else 0.0


@dataclass
class CloudRunResult:
    code: int
    line: str
    progress: CloudProgress


class CloudRun:
    """One run of one Cloud API session. Use :func:`run_cloud`."""

    def __init__(
        self,
        db: Path,
        config: CloudRunConfig,
        wire: Wire,
        *,
        version: str,
        open_client: Callable[[], GraphClient],
        on_progress: Callable[[CloudProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        # The queue lives on a thread of its own: the loop awaits the durable commits there while the
        # POSTs go on; every other call goes there too (an sqlite connection belongs to one thread).
        self._db = _DbThread(db)
        self.queue: Any = self._db.queue
        self.wire = wire  # the send POSTs
        # Media uploads go through the httpx client, opened on the first attachment only: importing httpx
        # is a third of a second of start-up that a template or text job does not need.
        self._open_client = open_client
        self._client: GraphClient | None = None
        self._send_path = f"/{version}/{config.phone_number_id}/messages"
        self.limiter = RateLimiter(config.rate)
        self.sender = CloudSender(
            None, config.phone_number_id, limiter=self.limiter, settle_seconds=config.settle_seconds
        )
        # A claim's lease must outlast its POST (the sender refuses to start one it does not cover), with
        # room for the wait in the buffer and the rate limiter.
        self._lease = max(config.lease_seconds, wire.longest_post + 30.0)
        self.progress = CloudProgress()
        self.on_progress = on_progress
        self._external_stop = should_stop or (lambda: False)
        self._stop = threading.Event()
        self._soft_stop = threading.Event()
        self.stop_line: str | None = None  # why the run stopped early (exit 4)
        self.worker_id = ""
        self._proven: dict[int, bool] = {}
        self._media: dict[int, str] = {}
        self._jobs_seen: set[int] = set()
        self._paused_jobs: dict[int, str] = {}
        self._gate: Any = None
        self._finished: list[tuple[Claim, SendReport]] = []  # answered POSTs not collected yet
        self._posts: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._drain_deadline: float | None = None
        self._ready: collections.deque[tuple[Claim, str | None]] = collections.deque()
        self._kicked: asyncio.Future[None] | None = None
        self._refused = False  # an answer said the account cannot send
        self._turn: cf.Future[list[Claim]] | None = None  # the stamp/answer commit under way
        self._commit_time = 0.005  # seconds a turn's durable commit takes (moving average)
        if config.provider_settings is not None:
            from .limits import LimitGate, portfolio_sessions, recipients_in_window

            # The messaging limit (unique recipients per rolling 24 h, the tier login --cloud read) is the
            # daily cap of template sends, shared by every session of the number's business portfolio.
            self._gate = self._db.with_queue(LimitGate.for_session, config.session, config.provider_settings)
            if self._gate.reload is not None:
                # Other sessions of the portfolio: re-read their recipients through the queue's own thread
                # (an sqlite connection belongs to one thread).
                sharing = self._db.with_queue(
                    lambda q: portfolio_sessions(config.session, q.session_providers())
                )
                proxy: Any = self.queue
                self._gate.reload = lambda: recipients_in_window(proxy, sharing)

    # --- control ----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        """No new POSTs may start (the run winds down)."""
        return self._refused or self._stop.is_set() or self._soft_stop.is_set() or self._external_stop()

    def aborting(self) -> bool:
        """Not even the POSTs already stamped may go out (stop asked, the account paused); a soft stop (the
        messaging limit reached) lets them finish."""
        return self._refused or self._stop.is_set() or self._external_stop()

    # --- the loop -----------------------------------------------------------------------------------
    def run(self) -> CloudRunResult:
        """Run until stopped or, with ``until_done``, until nothing is left (see the module docstring)."""
        return asyncio.run(self._run())

    async def _run(self) -> CloudRunResult:
        cfg = self.config
        q = self.queue
        db = self._db
        self.worker_id = q.register_worker(cfg.session, pid=os.getpid(), host=identity.place_key())
        buffer: collections.deque[Claim] = collections.deque()  # claimed, not stamped
        ready = self._ready  # stamped, waiting for the rate limiter (the dispatcher POSTs them)
        # Stamped and not answered yet (waiting for the limiter, or POSTed): message id -> claim.
        inflight: dict[int, Claim] = {}
        answers: list[CloudOutcome] = []
        chunk = self._chunk()
        last_turn = last_beat = last_show = last_check = 0.0
        dispatcher = asyncio.get_running_loop().create_task(self._dispatcher())
        try:
            while True:
                now = time.monotonic()
                if now - last_check >= 0.25:
                    last_check = now
                    pause = q.session_pause(cfg.session)
                    if pause is not None and self.stop_line is None:
                        self.stop_line = f"session {cfg.session} is paused: {pause[1]}"
                        self._stop.set()
                if self._finished:
                    finished, self._finished = self._finished, []
                    for claim, report in finished:
                        inflight.pop(claim.message_id, None)
                        self._collect(claim, report, answers)
                if ready and self.aborting():  # stamped but never POSTed: nothing went out
                    while ready:
                        c, _ = ready.popleft()
                        inflight.pop(c.message_id, None)
                        answers.append(CloudOutcome(c, "release", error="stopping before the POST"))
                stopping = self.stopping()
                picked: list[tuple[Claim, str | None]] = []
                free = cfg.in_flight - len(inflight)
                due = now - last_turn >= TURN_EVERY
                # At most one chunk stamped ahead of the rate limiter: a crash leaves few stamped messages
                # that were never POSTed (each an unknown outcome for a person).
                if not stopping and len(ready) < chunk and (free >= chunk or (due and free > 0)):
                    if len(buffer) < free:
                        buffer.extend(
                            await db.run(
                                q.claim_cloud_batch,
                                self.worker_id,
                                cfg.session,
                                max(chunk * 2, cfg.in_flight) - len(buffer),
                                lease_seconds=self._lease,
                                job_ids=cfg.job_ids,
                            )
                        )
                    picked = self._pick(buffer, min(free, chunk), inflight, answers)
                if picked or (answers and (due or len(answers) >= chunk or not inflight or stopping)):
                    # The POSTs of earlier chunks go on (and their answers come in) during this commit.
                    self._turn = db.submit(q.cloud_turn, answers, [c for c, _ in picked])
                    stamped = await asyncio.wrap_future(self._turn)
                    self._turn = None
                    answers = []
                    took, last_turn = time.monotonic() - now, time.monotonic()
                    self._commit_time += (took - self._commit_time) * 0.2
                    chunk = self._chunk()
                    media = {c.message_id: m for c, m in picked}
                    for c in stamped:
                        ready.append((c, media[c.message_id]))
                        inflight[c.message_id] = c
                    if stamped:
                        self.progress.state = "sending"
                        self._kick()
                if now - last_beat >= HEARTBEAT_EVERY:
                    q.heartbeat(self.worker_id, self.progress.state)
                    last_beat = now
                if self.on_progress is not None and now - last_show >= 0.5:
                    self._show()
                    last_show = now
                if stopping:
                    if self._drain(buffer, ready, inflight, answers) and not answers:
                        break
                    await self._nap(0.05)
                    continue
                if not buffer and not inflight and not answers:
                    if not await self._idle():
                        break
                    continue
                if inflight or answers:
                    await self._nap(max(0.0005, TURN_EVERY - (time.monotonic() - last_turn)))
        finally:
            dispatcher.cancel()
            if self._turn is not None:  # interrupted while the turn committed: its stamps are not POSTed
                try:
                    late = self._turn.result()
                except Exception:
                    late = []  # not committed: its answers are recorded below
                else:
                    answers = []  # committed with the turn
                for c in late:
                    answers.append(CloudOutcome(c, "release", error="run stopped before the POST"))
            for claim in buffer:  # claimed, never stamped: give back untouched
                answers.append(CloudOutcome(claim, "release", error="run stopped"))
            for claim, _ in ready:  # stamped, never POSTed
                answers.append(CloudOutcome(claim, "release", error="run stopped before the POST"))
            ready.clear()
            finished, self._finished = self._finished, []
            for claim, report in finished:  # answered, not recorded yet
                self._collect(claim, report, answers)
            if answers:
                q.finish_cloud_batch(answers)
            for task in list(self._posts):
                task.cancel()
            self.wire.close()
            try:
                q.unregister_worker(self.worker_id)
            finally:
                self._show()
        return self._result()

    def _chunk(self) -> int:
        """How many messages to stamp at a time: what the rate limiter lets out in about two commits'
        time (at least 25 ms), at most half the requests in flight. Stamped just ahead of the limiter, so
        the POSTs never wait for a commit, yet a crash leaves few stamped messages that never went out
        (each an unknown outcome for a person)."""
        lead = min(0.25, max(0.025, 2 * self._commit_time))
        return max(1, min(self.config.in_flight // 2, int(self.config.rate * lead)))

    async def _dispatcher(self) -> None:
        """Start the POSTs of stamped claims as the rate limiter gives slots (a task of its own, so POSTs
        go on while the loop waits for a commit)."""
        loop = asyncio.get_running_loop()
        while True:
            wait = self._dispatch(self._ready)
            self._kicked = loop.create_future()
            if self._ready:
                timer = loop.call_later(wait, _resolve, self._kicked)
                try:
                    await self._kicked
                finally:
                    timer.cancel()
            else:
                await self._kicked

    def _kick(self) -> None:
        kicked = self._kicked
        if kicked is not None and not kicked.done():
            kicked.set_result(None)

    def _dispatch(self, ready: collections.deque[tuple[Claim, str | None]]) -> float:
        """Start the POSTs of stamped claims while the rate limiter gives slots; returns how long until
        the next slot when some wait."""
        # A POST starts only on a free connection, so the lease checked here covers it from its start.
        while ready and len(self._posts) < self.wire.connections and not self.aborting():
            wait = self.limiter.try_acquire()
            if wait > 0:
                return wait
            claim, media = ready.popleft()
            # After the wait in ``ready``: the lease may have run out meanwhile (nothing was sent: release).
            if not lease_covers_post(claim, self.sender.clock(), self.wire.longest_post):
                why = "the lease ran out before the POST (nothing was sent)"
                self._finished.append((claim, SendReport(CloudOutcome(claim, "release", error=why))))
                self._wake()
                continue
            task = asyncio.get_running_loop().create_task(self._post(claim, media))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
        return TURN_EVERY

    async def _post(self, claim: Claim, media: str | None) -> None:
        """One POST on the wire; its report goes to ``_finished`` and wakes the loop."""
        try:
            payload = build_payload(claim, media_id=media)
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            try:
                status, data = await self.wire.post(self._send_path, body)
                result: Accepted | ge.CloudError = read_send_answer(status, data)
            except ge.CloudError as exc:
                result = exc
            report = self.sender.report(claim, result)
            if report.reaction == ge.ACCOUNT:
                self._refused = True  # no further POST starts (the loop pauses the session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the send path: the POST may have happened
            log.exception("sending message %s failed", claim.message_id)
            report = SendReport(
                CloudOutcome(
                    claim, "unknown", error=f"internal error: {exc}", delay=self.config.settle_seconds
                )
            )
        self._finished.append((claim, report))
        self._posts.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._wake()
        self._kick()  # its connection is free for the next stamped claim

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _nap(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (at most 0.25: stop requests come from other threads and signals), or
        until a POST finished."""
        if self._finished:
            await asyncio.sleep(0)  # let the POSTs just started write their requests
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(min(seconds, 0.25), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _pick(
        self,
        buffer: collections.deque[Claim],
        n: int,
        inflight: dict[int, Claim],
        answers: list[CloudOutcome],
    ) -> list[tuple[Claim, str | None]]:
        """The next ``n`` claims to stamp and POST, with their media ids. A job not proven yet goes one
        request at a time; claims of a job paused in this run are given back."""
        probing = {c.job_id for c in inflight.values() if not self._proven.get(c.job_id, True)}
        picked: list[tuple[Claim, str | None]] = []
        keep: list[Claim] = []
        while buffer and len(picked) < n:
            c = buffer.popleft()
            if c.job_id in self._paused_jobs:
                answers.append(CloudOutcome(c, "release", error=self._paused_jobs[c.job_id]))
                continue
            if not self._is_proven(c.job_id):
                if c.job_id in probing:
                    keep.append(c)
                    continue
                probing.add(c.job_id)
            media, problem = self._media_for(c)
            if problem is not None:
                answers.append(CloudOutcome(c, "release", error=problem))
                continue
            # Last: only a claim that is really POSTed now counts against the messaging limit.
            if self._gate is not None and c.template_name and not self._gate.allow(c.phone):
                why = (
                    f"messaging limit reached: {self._gate.used:,} unique recipients in the last 24 hours"
                    f" (limit {self._gate.limit:,}); the rest waits, nothing was spent (run again later)"
                )
                answers.append(CloudOutcome(c, "release", error=why))
                if self.stop_line is None:
                    self.stop_line = why
                self._soft_stop.set()
                continue
            picked.append((c, media))
        buffer.extendleft(reversed(keep))
        return picked

    def _is_proven(self, job_id: int) -> bool:
        """Whether the job's payload is known good for this session (an accepted message), so it may go
        at full concurrency; else it is probed one request at a time."""
        if job_id not in self._proven:
            self._jobs_seen.add(job_id)
            self._proven[job_id] = self.queue.counts(job_id).get("sent", 0) > 0
        return self._proven[job_id]

    def _media_for(self, claim: Claim) -> tuple[str | None, str | None]:
        """The job's attachment as a media id, uploaded once per job and session: (id, None), or
        (None, why) when it cannot be uploaded (the job is then paused). A template job has an attachment
        only when its template's media header is a file (``enqueue --header-media FILE``)."""
        if not claim.attachment:
            return None, None
        if claim.job_id in self._media:
            return self._media[claim.job_id], None
        media = self.queue.job_media(claim.job_id, self.config.session)
        if media is None:
            path = Path(claim.attachment)
            try:
                if self._client is None:
                    self._client = self._open_client()
                uploaded = self._client.upload_media(self.config.phone_number_id, path)
            except OSError as exc:
                return None, self._pause_job(
                    claim.job_id, f"cannot read the attachment {path}: {exc.strerror or exc}"
                )
            except ge.GraphError as exc:
                if exc.kind == ge.ACCOUNT:
                    self._pause_session(exc.line())
                    return None, exc.line()
                return None, self._pause_job(claim.job_id, f"the attachment was refused: {exc.line()}")
            except ge.CloudError as exc:
                return None, f"media upload failed: {exc}"
            media = self.queue.set_job_media(claim.job_id, self.config.session, uploaded)
        self._media[claim.job_id] = media
        return media, None

    def _collect(self, claim: Claim, report: SendReport, answers: list[CloudOutcome]) -> None:
        o = report.outcome
        answers.append(o)
        if o.kind == "sent":
            self.progress.accepted += 1
            self._proven[claim.job_id] = True
        elif o.kind == "failed":
            self.progress.failed += 1
        elif o.kind == "retry":
            self.progress.retried += 1
        elif o.kind == "unknown":
            self.progress.unknown += 1
        if report.reaction == ge.ACCOUNT:
            self._pause_session(report.line)
        elif report.reaction == ge.JOB:
            self._pause_job(claim.job_id, report.line)

    def _pause_session(self, line: str) -> None:
        if self.stop_line is None:
            self.queue.pause_session(self.config.session, line)
            self.stop_line = line
        self._stop.set()

    def _pause_job(self, job_id: int, line: str) -> str:
        if job_id not in self._paused_jobs:
            self._paused_jobs[job_id] = line
            try:
                self.queue.pause_job(job_id, f"auto-paused: {line}")
            except InvalidTransition:
                pass  # stopped or finished meanwhile
        return line

    def _drain(
        self,
        buffer: collections.deque[Claim],
        ready: collections.deque[tuple[Claim, str | None]],
        inflight: dict[int, Claim],
        answers: list[CloudOutcome],
    ) -> bool:
        """While stopping: nothing new is claimed; wait (up to 8 s) for the POSTs in flight. Returns True
        when the loop may end."""
        self.progress.state = "stopping"
        while buffer:
            answers.append(CloudOutcome(buffer.popleft(), "release", error="run stopped"))
        if not inflight:
            return True
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + 8.0
        if time.monotonic() < self._drain_deadline:
            return False
        while ready:  # never POSTed
            c, _ = ready.popleft()
            inflight.pop(c.message_id, None)
            answers.append(CloudOutcome(c, "release", error="run stopped before the POST"))
        for task in list(self._posts):
            task.cancel()
        for claim in inflight.values():  # the request may be out: a status webhook settles it
            answers.append(
                CloudOutcome(
                    claim,
                    "unknown",
                    error="the run stopped while the POST was in flight",
                    delay=self.config.settle_seconds,
                )
            )
        inflight.clear()
        return True

    async def _idle(self) -> bool:
        """Nothing claimable and nothing in flight. Returns False when the run should end."""
        q = self.queue
        cfg = self.config
        if not cfg.until_done:
            self.progress.state = "idle"
            await self._sleep(cfg.idle_poll)
            return True
        open_sends = q.cloud_unsettled(cfg.session)
        if open_sends:
            # Unknown outcomes wait for their status webhooks (their lease is the settle window).
            self.progress.state = f"waiting for {open_sends} status webhook(s)"
            await self._sleep(0.2)
            return True
        if self._more_later():
            self.progress.state = "waiting for retries"
            await self._sleep(0.2)
            return True
        return False

    def _more_later(self) -> bool:
        """Whether a job this run may send still has pending messages that are due later (backoff)."""
        for job_id in self._jobs_seen:
            if job_id in self._paused_jobs:
                continue
            counts = self.queue.counts(job_id)
            if counts.get("pending", 0) and self.queue.get_job(job_id).status != JOB_PAUSED:
                return True
        return False

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))

    def _show(self) -> None:
        if self.on_progress is None:
            return
        delivered = read = 0
        for job_id in self._jobs_seen:
            with_receipts = self.queue.receipt_counts(job_id, undelivered_before=0.0)
            delivered += int(with_receipts.get("delivered", 0))
            read += int(with_receipts.get("read", 0))
        self.progress.delivered, self.progress.read = delivered, read
        self.on_progress(self.progress)

    def _result(self) -> CloudRunResult:
        if self.stop_line is not None:
            return CloudRunResult(exitcodes.ATTENTION, self.stop_line, self.progress)
        if self._external_stop() or self._stop.is_set():
            return CloudRunResult(exitcodes.INTERRUPTED, "stopped", self.progress)
        if self._paused_jobs:
            first = next(iter(self._paused_jobs.items()))
            return CloudRunResult(exitcodes.ATTENTION, f"job {first[0]} paused: {first[1]}", self.progress)
        failed = sum(self.queue.counts(j).get("failed", 0) for j in self._jobs_seen)
        if failed:
            unknown = sum(self.queue.unknown_count(j) for j in self._jobs_seen)
            extra = f", {unknown} with an unknown outcome (see `wabulk resolve`)" if unknown else ""
            return CloudRunResult(exitcodes.SOME_FAILED, f"done: {failed} failed{extra}", self.progress)
        return CloudRunResult(exitcodes.OK, "done", self.progress)

    def close(self) -> None:
        self.wire.close()
        if self._client is not None:
            self._client.close()
        self._db.close()


def run_cloud(
    db: Path,
    config: CloudRunConfig,
    *,
    token: str | None,
    base_url: str | None = None,
    on_progress: Callable[[CloudProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CloudRunResult:
    """Run one Cloud API session until stopped (or, with ``until_done``, until nothing is left and the
    unknown outcomes had their settle window). SIGTERM stops it like Ctrl-C (POSTs in flight finish)."""
    if not token:
        raise ConfigError("WABULK_CLOUD_TOKEN is not set: the Cloud API needs an access token")
    read_timeout = settings.graph_read_timeout()
    base = (base_url or settings.graph_url()).rstrip("/")
    version = settings.graph_version()

    def open_client() -> GraphClient:
        from .client import GraphClient

        return GraphClient(
            token, base_url=base, version=version, max_connections=4, read_timeout=read_timeout
        )

    wire = Wire(base, token, connections=min(config.in_flight, MAX_CONNECTIONS), read_timeout=read_timeout)
    runner = CloudRun(
        db,
        config,
        wire,
        version=version,
        open_client=open_client,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    restore = _signals(runner)
    try:
        return runner.run()
    finally:
        restore()
        runner.close()


class _DbThread:
    """A :class:`~wabulk.queue.Queue` opened and used on one thread of its own. ``queue`` is a proxy whose
    method calls run there (the caller blocks); :meth:`run` awaits one without blocking the event loop."""

    def __init__(self, db: Path) -> None:
        from wabulk.queue import Queue

        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-db")
        try:
            self._queue = self._pool.submit(Queue, db, synchronous="FULL").result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self.queue = _OnThread(self._queue, self._pool)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (a method of ``queue``) on the queue's thread, awaited."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Start ``fn(*args, **kwargs)`` (a method of ``queue``) on the queue's thread."""
        return self._pool.submit(getattr(fn, "target", fn), *args, **kwargs)

    def with_queue(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(queue, *args)`` on the queue's thread (the caller blocks)."""
        return self._pool.submit(fn, self._queue, *args).result()

    def close(self) -> None:
        try:
            self._pool.submit(self._queue.close).result()
        finally:
            self._pool.shutdown(wait=True)


class _OnThread:
    """Calls ``obj``'s methods on ``pool``'s thread and waits for them."""

    def __init__(self, obj: Any, pool: cf.ThreadPoolExecutor) -> None:
        self._obj = obj
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            raise AttributeError(f"{name}: only the queue's methods are reachable from the event loop")
        pool = self._pool

        def call(*args: Any, **kwargs: Any) -> Any:
            return pool.submit(attr, *args, **kwargs).result()

        call.target = attr  # type: ignore[attr-defined]
        return call


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _signals(runner: CloudRun) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        runner.request_stop()

    for sig in (signal.SIGTERM,):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


__all__: Sequence[str] = ("CloudRunConfig", "CloudProgress", "CloudRunResult", "CloudRun", "run_cloud")
