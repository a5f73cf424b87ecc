"""A model-based test of the outbox protocol (issue 14): Hypothesis drives random interleavings of what two
WhatsApp sessions' workers do with the real :class:`~wabulk.queue.Queue` (claim, look in the chat, stamp,
press send, confirm, fail, crash at any step) with what people and time do (leases expire, stop, pause,
resume, opt-out, retry-failed, resolve --sent, prune, the page turning unreadable and readable again).

The world is the oracle: it records every message that reached a phone, and each session's chat shows
only what that session sent. After every step:

- no message ever reached its recipient twice;
- nothing is lost silently: every message is sent (and did arrive), failed with a reason (and, unless the
  reason is ``unknown_outcome``, did not arrive), skipped or cancelled (a cancelled one never arrived), or
  still runnable (pending/sending);
- the trigger-kept counts match the rows.

A worker here follows the protocol the real worker follows (worker.py): verify before pressing send again,
resend only on positive evidence of absence, unknown when the chat cannot be read.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wabulk import errors
from wabulk.models import (
    CANCELLED,
    FAILED,
    MESSAGE_STATUSES,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNKNOWN_OUTCOME,
    ChatSnapshot,
    Claim,
    NewJob,
    NewMessage,
)
from wabulk.queue import Queue

SESSIONS = ("a", "b")
LEASE = 10.0
PHONES = [f"+1415555{i:04d}" for i in range(8)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class WorkerModel:
    """One session's worker: at most one claim, and where it is in the protocol."""

    session: str
    generation: int = 0
    claim: Claim | None = None
    verified_absent: bool = False
    stamped: bool = False
    pressed: bool = False  # the send action happened (whether or not the message arrived)

    @property
    def worker_id(self) -> str:
        return f"{self.session}-{self.generation}"

    def reset(self) -> None:
        self.claim, self.verified_absent, self.stamped, self.pressed = None, False, False, False


@dataclass
class World:
    """What really happened on WhatsApp: (message id, session) per arrival."""

    arrivals: list[tuple[int, str]] = field(default_factory=list)
    readable: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(SESSIONS, True))

    def arrived(self, mid: int) -> int:
        return sum(1 for m, _ in self.arrivals if m == mid)

    def shows(self, session: str, mid: int) -> bool:
        return any(m == mid and s == session for m, s in self.arrivals)


class Outbox(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="wabulk-model-"))
        self.clock = Clock()
        self.q = Queue(self.dir / "w.db", clock=self.clock)
        self.world = World()
        self.workers = {s: WorkerModel(s) for s in SESSIONS}
        self.jobs: list[int] = []
        self.gone: set[int] = set()  # pruned message ids
        for n in range(2):
            self.jobs.append(
                self.q.enqueue(
                    NewJob(name=f"j{n}", template="x", max_attempts=3),
                    [NewMessage(phone=p, body=f"job {n} to {p}") for p in PHONES[: 8 - 2 * n]],
                ).job_id
            )

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers --------------------------------------------------------------------------------
    def _fenced(self, w: WorkerModel, fn, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        """Run a fenced queue call for ``w``; on LeaseLost/SendRefused the worker drops the claim."""
        try:
            fn(*args, **kwargs)
            return True
        except (errors.LeaseLost, errors.SendRefused):
            w.reset()
            return False

    # --- the workers ------------------------------------------------------------------------------
    @rule(s=st.sampled_from(SESSIONS))
    def claim(self, s: str) -> None:
        w = self.workers[s]
        if w.claim is None:
            w.reset()
            w.claim = self.q.claim(w.worker_id, s, lease_seconds=LEASE)

    @rule(s=st.sampled_from(SESSIONS))
    def look_in_the_chat(self, s: str) -> None:
        w = self.workers[s]
        c = w.claim
        if c is None or not c.needs_verification or w.verified_absent or w.stamped:
            return
        if not self.world.readable[s]:
            self._fenced(
                w, self.q.mark_failed, c, error="outcome unknown: blind", error_class=UNKNOWN_OUTCOME
            )
            w.reset()
        elif self.world.shows(s, c.message_id):
            self._fenced(w, self.q.mark_sent, c, tick="sent", session=s)
            w.reset()
        else:
            try:
                w.claim = self.q.mark_absent(c, reason="not in the chat", lease_seconds=LEASE)
                w.verified_absent = True
            except errors.LeaseLost:
                w.reset()

    @rule(s=st.sampled_from(SESSIONS))
    def stamp(self, s: str) -> None:
        w = self.workers[s]
        c = w.claim
        if c is None or w.stamped or (c.needs_verification and not w.verified_absent):
            return
        evidence = ChatSnapshot(readable=self.world.readable[s]).to_evidence()
        if self._fenced(w, self.q.mark_send_started, c, evidence):
            w.stamped = True

    @rule(s=st.sampled_from(SESSIONS), arrives=st.booleans())
    def press_send(self, s: str, arrives: bool) -> None:
        w = self.workers[s]
        if w.claim is None or not w.stamped or w.pressed:
            return
        w.pressed = True
        if arrives:
            self.world.arrivals.append((w.claim.message_id, s))

    @rule(s=st.sampled_from(SESSIONS))
    def confirm(self, s: str) -> None:
        w = self.workers[s]
        c = w.claim
        if c is None or not w.pressed:
            return
        if self.world.shows(s, c.message_id) and self.world.readable[s]:
            self._fenced(w, self.q.mark_sent, c, tick="sent", session=s)
        else:  # still on the clock, or the page cannot be read: ConfirmTimeout
            self._fenced(
                w, self.q.schedule_retry, c, error="not confirmed", error_class="confirm_timeout", delay=1
            )
        w.reset()

    @rule(
        s=st.sampled_from(SESSIONS),
        plan=st.lists(
            st.sampled_from(["ok", "ok", "lost", "crash", "fail", "reject"]), min_size=1, max_size=6
        ),
    )
    def cycle(self, s: str, plan: list[str]) -> None:
        """The worker goes through the protocol, one step per item of ``plan``: "ok" does the next step
        (a pressed send arrives), "lost" presses without the message arriving, "crash" kills the worker
        there, "fail"/"reject" end the claim with a transient/permanent error. Dense runs of the protocol,
        interleaved with everything the other rules do."""
        for how in plan:
            w = self.workers[s]
            c = w.claim
            if how == "crash":
                self.crash(s)
                return
            if how in ("fail", "reject") and c is not None:
                self.fail(s, permanent=how == "reject")
                return
            if c is None:
                self.claim(s)
                if self.workers[s].claim is None:
                    return
            elif c.needs_verification and not w.verified_absent and not w.stamped:
                self.look_in_the_chat(s)
            elif not w.stamped:
                self.stamp(s)
            elif not w.pressed:
                self.press_send(s, arrives=how != "lost")
            else:
                self.confirm(s)

    @rule(
        s=st.sampled_from(SESSIONS),
        plan=st.lists(
            st.sampled_from(["ok", "ok", "lost", "crash", "fail", "reject"]), min_size=1, max_size=6
        ),
    )
    def cycle_again(self, s: str, plan: list[str]) -> None:
        self.cycle(s, plan)

    @rule(s=st.sampled_from(SESSIONS), permanent=st.booleans())
    def fail(self, s: str, permanent: bool) -> None:
        """A send error (before or after pressing)."""
        w = self.workers[s]
        c = w.claim
        if c is None:
            return
        if permanent:
            self._fenced(w, self.q.mark_failed, c, error="rejected", error_class="attachment_rejected")
        else:
            self._fenced(w, self.q.schedule_retry, c, error="flaky", error_class="selector_missing", delay=2)
        w.reset()

    @rule(s=st.sampled_from(SESSIONS))
    def release(self, s: str) -> None:
        w = self.workers[s]
        if w.claim is not None and not w.pressed:
            self._fenced(w, self.q.release, w.claim, reason="logged out")
            w.reset()

    @rule(s=st.sampled_from(SESSIONS))
    def crash(self, s: str) -> None:
        """kill -9 at this step: the claim (and its lease) stays in the database; a new worker starts."""
        w = self.workers[s]
        w.reset()
        w.generation += 1

    # --- people and time ---------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([1.0, 5.0, 11.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(s=st.sampled_from(SESSIONS))
    def page_turns(self, s: str) -> None:
        self.world.readable[s] = not self.world.readable[s]

    @rule(what=st.sampled_from(["stop", "pause", "resume", "pause", "resume", "resume"]))
    def control(self, what: str) -> None:
        jid = self.jobs[-1]  # job 0 is never stopped, so long runs keep something to send
        try:
            {"stop": self.q.stop_job, "pause": self.q.pause_job, "resume": self.q.resume_job}[what](jid)
        except errors.InvalidTransition:
            pass

    @rule()
    def opt_out(self) -> None:
        self.q.add_optouts([PHONES[-1]])  # one number only: opt-outs must not end every run early

    @rule(unknown_only=st.booleans())
    def retry_failed(self, unknown_only: bool) -> None:
        self.q.retry_failed(error_class=UNKNOWN_OUTCOME if unknown_only else None)

    @rule()
    def resolve_sent(self) -> None:
        """A human looked in the chat and saw it: only ever done for a message that did arrive."""
        unknown = [m for j in self.jobs for m in self._messages(j) if m.error_class == UNKNOWN_OUTCOME]
        seen = [m for m in unknown if self.world.arrived(m.id)]
        if seen:
            self.q.resolve(seen[0].id, sent=True)

    @rule()
    def prune(self) -> None:
        before = {m.id for j in self.jobs for m in self._messages(j)}
        self.q.prune(0)
        after = {m.id for j in self.jobs for m in self._messages(j)}
        self.gone |= before - after

    @precondition(lambda self: any(self.q.session_pause(s) for s in SESSIONS))
    @rule()
    def resume_sessions(self) -> None:
        for s in SESSIONS:
            self.q.resume_session(s)

    # --- invariants -----------------------------------------------------------------------------------
    def _messages(self, job_id: int):  # type: ignore[no-untyped-def]
        return list(self.q.iter_messages(job_id))

    @invariant()
    def nobody_gets_a_message_twice(self) -> None:
        ids = [m for m, _ in self.world.arrivals]
        assert len(ids) == len(set(ids)), f"delivered twice: {ids}"

    @invariant()
    def nothing_is_lost_silently(self) -> None:
        for jid in self.jobs:
            for m in self._messages(jid):
                n = self.world.arrived(m.id)
                assert m.status in MESSAGE_STATUSES
                if m.status == SENT:
                    assert n == 1, f"message {m.id} is sent but arrived {n} times"
                elif m.status == FAILED:
                    assert m.last_error, f"message {m.id} failed without a reason"
                    if m.error_class != UNKNOWN_OUTCOME:
                        assert n == 0, f"message {m.id} arrived but failed as {m.error_class}"
                elif m.status == CANCELLED:
                    assert n == 0, f"message {m.id} arrived but is cancelled"
                elif m.status == SKIPPED:
                    assert n == 0 or "may have gone out" in (m.last_error or ""), m
                else:
                    assert m.status in (PENDING, SENDING)

    @invariant()
    def counts_match_the_rows(self) -> None:
        for jid in self.jobs:
            if self.q.pruned_at(jid) is not None:
                continue
            rows: dict[str, int] = dict.fromkeys(MESSAGE_STATUSES, 0)
            for m in self._messages(jid):
                rows[m.status] += 1
            assert self.q.counts(jid) == rows


Outbox.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutbox = Outbox.TestCase
