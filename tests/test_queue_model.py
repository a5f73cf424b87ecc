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

from conftest import Clock
from wabulk import errors
from wabulk.cloud.provider import lease_covers_post
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
    CloudOutcome,
    CloudStatus,
    NewJob,
    NewMessage,
)
from wabulk.queue import Queue
from wabulk.store.cloud import callback_data

SESSIONS = ("a", "b")
LEASE = 10.0
PHONES = [f"+1415555{i:04d}" for i in range(8)]


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
        self.clock = Clock(1_800_000_000.0)
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


# --- The Cloud API provider (issue 19): POSTs and status webhooks in any order ---------------------------
#
# Meta is the oracle here: it records every POST it accepted (a message reached the recipient once per
# accepted POST) and queues that message's status webhooks (sent, delivered, read, or failed with a code),
# which arrive in any order, duplicated, interleaved with crashes of the worker, lost answers (a cut after
# the message was accepted) and cuts before it was. After every step: no message accepted twice, a message
# the queue calls sent was accepted, one it failed with a Graph rejection never was, delivered/read never go
# back, and the counts match the rows.


@dataclass
class Meta:
    accepted: dict[int, list[str]] = field(default_factory=dict)  # message id -> wamids
    webhooks: list[CloudStatus] = field(default_factory=list)  # not yet delivered
    delivered_once: list[CloudStatus] = field(default_factory=list)  # delivered (may be delivered again)
    seq: int = 0


class CloudOutbox(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="wabulk-cloud-model-"))
        self.clock = Clock(1_800_000_000.0)
        self.q = Queue(self.dir / "w.db", clock=self.clock)
        self.meta = Meta()
        self.generation = 0
        self.stamped: list[Claim] = []  # stamped by the live worker, POST not made yet
        self.answers: list[CloudOutcome] = []  # answers the live worker has not recorded yet
        self.receipts: dict[int, tuple[float | None, float | None]] = {}
        self.job = self.q.enqueue(
            NewJob(name="cloud", template="x", max_attempts=3),
            [NewMessage(phone=p, body=f"to {p}") for p in PHONES],
        ).job_id

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def worker(self) -> str:
        return f"cloud-{self.generation}"

    # --- the worker -----------------------------------------------------------------------------------
    @rule(n=st.integers(1, 3))
    def claim_and_stamp(self, n: int) -> None:
        claims = self.q.claim_cloud_batch(self.worker, "biz", n, lease_seconds=LEASE)
        self.stamped += self.q.cloud_turn(self.answers, claims)
        self.answers = []

    @rule(fate=st.sampled_from(["accepted", "accepted", "cut_after", "cut_before", "refused", "throttled",
                                "rejected", "read_timeout"]))  # fmt: skip
    def post(self, fate: str) -> None:
        if not self.stamped:
            return
        c = self.stamped.pop(0)
        # The real sender's fence (CloudSender.send): no POST its lease does not cover, since an expired
        # stamped message may already be failed as unknown_outcome and resent by a person. (The model's
        # POST takes no time.)
        if not lease_covers_post(c, self.clock.now, 0.0):
            self.answers.append(CloudOutcome(c, "release", error="the lease ran out before the POST"))
            return
        if fate in ("accepted", "cut_after", "read_timeout"):
            self.meta.seq += 1
            wamid = f"wamid.{self.meta.seq}"
            self.meta.accepted.setdefault(c.message_id, []).append(wamid)
            token = callback_data(c.message_id, c.sends)
            t = self.clock.now
            outcome = self.meta.seq % 5
            if outcome == 0:
                self.meta.webhooks.append(CloudStatus("failed", wamid, token, t, error_code=131026))
            else:
                self.meta.webhooks += [
                    CloudStatus("sent", wamid, token, t),
                    CloudStatus("delivered", wamid, token, t + 1),
                    *([CloudStatus("read", wamid, token, t + 2)] if outcome % 2 else []),
                ]
            if fate == "accepted":
                self.answers.append(CloudOutcome(c, "sent", wamid=wamid, wa_id="x"))
            else:
                self.answers.append(CloudOutcome(c, "unknown", error="no answer", delay=LEASE))
        elif fate == "cut_before":
            self.answers.append(CloudOutcome(c, "unknown", error="cut", delay=LEASE))
        elif fate == "refused":
            self.answers.append(
                CloudOutcome(c, "retry", error="refused", error_class="graph_unreachable", delay=1)
            )
        elif fate == "throttled":
            self.answers.append(
                CloudOutcome(
                    c, "retry", error="130429", error_class="graph_130429", delay=1, uses_attempt=False
                )
            )
        else:
            self.answers.append(CloudOutcome(c, "failed", error="131009", error_class="graph_131009"))

    @rule()
    def record_answers(self) -> None:
        self.q.cloud_turn(self.answers, ())
        self.answers = []

    @rule()
    def crash(self) -> None:
        """kill -9: stamped-but-not-POSTed claims and unrecorded answers are gone."""
        self.stamped, self.answers = [], []
        self.generation += 1

    # --- Meta's webhooks, in any order, duplicated --------------------------------------------------------
    @rule(data=st.data())
    def webhook_arrives(self, data: st.DataObject) -> None:
        pool = self.meta.webhooks + self.meta.delivered_once
        if not pool:
            return
        batch = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
        for s in batch:
            if s in self.meta.webhooks:
                self.meta.webhooks.remove(s)
                self.meta.delivered_once.append(s)
        self.q.apply_cloud_statuses(batch)

    # --- time and people ------------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([1.0, 5.0, 11.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def give_up_waiting(self) -> None:
        """``run --until-done`` ends: what no webhook settled becomes unknown_outcome."""
        self.q.expire_cloud_unsettled("biz")

    @rule()
    def resend_what_meta_never_got(self) -> None:
        """A person resolves an unknown outcome with --resend-unverified, having checked it never went."""
        for m in self.q.iter_messages(self.job):
            if m.status == FAILED and m.error_class == UNKNOWN_OUTCOME and m.id not in self.meta.accepted:
                self.q.resolve(m.id, resend=True)
                return

    # --- invariants ---------------------------------------------------------------------------------------
    @invariant()
    def never_accepted_twice(self) -> None:
        for mid, wamids in self.meta.accepted.items():
            assert len(wamids) == 1, f"message {mid} was POSTed and accepted {len(wamids)} times"

    @invariant()
    def the_queue_agrees_with_meta(self) -> None:
        for m in self.q.iter_messages(self.job):
            got = m.id in self.meta.accepted
            if m.status == SENT:
                assert got, f"message {m.id} is sent but Meta never accepted it"
            if (
                m.status == FAILED
                and (m.error_class or "").startswith("graph_")
                and m.error_class != "graph_131026"
            ):
                assert not got, f"message {m.id} failed as {m.error_class} but Meta accepted it"
            if m.status == PENDING:
                assert not got, f"message {m.id} is pending again although Meta accepted it"
            before = self.receipts.get(m.id, (None, None))
            assert not (before[0] is not None and m.delivered_at is None), "delivered went back"
            assert not (before[1] is not None and m.read_at is None), "read went back"
            self.receipts[m.id] = (m.delivered_at, m.read_at)

    @invariant()
    def settled_when_every_webhook_arrived(self) -> None:
        if self.meta.webhooks or self.stamped or self.answers:
            return
        for m in self.q.iter_messages(self.job):
            if m.id in self.meta.accepted:
                assert m.status in (SENT, FAILED), (
                    f"message {m.id}: accepted, all webhooks in, still {m.status}"
                )
                if m.status == FAILED:
                    assert m.error_class == "graph_131026", m

    @invariant()
    def cloud_counts_match_the_rows(self) -> None:
        rows: dict[str, int] = dict.fromkeys(MESSAGE_STATUSES, 0)
        for m in self.q.iter_messages(self.job):
            rows[m.status] += 1
        assert self.q.counts(self.job) == rows

    def check(self) -> None:
        self.never_accepted_twice()
        self.the_queue_agrees_with_meta()
        self.settled_when_every_webhook_arrived()
        self.cloud_counts_match_the_rows()


def test_a_stamped_post_whose_lease_ran_out_is_never_made_after_a_person_resent_it() -> None:
    """The falsifying sequence of the 06:22 full run: a stamped message waits past its lease before its
    POST (the rate limiter, a slow turn), gives up as unknown_outcome, a person resends it (rightly: Meta
    has nothing yet), and then the stale POST went out (Meta accepted it while the queue said pending, so
    the next claim POSTed a second copy). The sender now refuses a POST its lease does not cover."""
    m = CloudOutbox()
    try:
        steps = [
            lambda: m.claim_and_stamp(n=1),
            lambda: m.time_passes(seconds=11.0),
            lambda: m.give_up_waiting(),
            lambda: m.resend_what_meta_never_got(),
            lambda: m.post(fate="accepted"),  # the stale claim: refused, not POSTed
            lambda: m.record_answers(),
            lambda: m.claim_and_stamp(n=1),  # the resent message, claimed afresh
            lambda: m.post(fate="accepted"),
            lambda: m.record_answers(),
        ]
        for step in steps:
            step()
            m.check()
        first = next(iter(m.q.iter_messages(m.job)))
        assert first.status == SENT
        assert len(m.meta.accepted[first.id]) == 1
    finally:
        m.teardown()


CloudOutbox.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCloudOutbox = CloudOutbox.TestCase
