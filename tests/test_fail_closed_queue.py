"""Issue 20, "fail closed, second round", the queue/worker side (items 4, 5, 11-18 and "every message can be
settled by a person"): one test per reproduced defect, each of which failed on the code before its fix,
with the real ``Queue`` API and the worker against ``FakeTransport`` on an injected clock. The fake's
delivery record is the oracle."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Clock
from wabulk import errors, exitcodes, identity
from wabulk.errors import ConfirmTimeout, PermanentSendError
from wabulk.fakes import DeliverThenRaise, FakeTransport
from wabulk.models import FAILED, PENDING, SENDING, SENT, UNKNOWN_OUTCOME, ChatSnapshot, NewJob, NewMessage
from wabulk.pacing import PROFILES, make_profile
from wabulk.queue import Queue
from wabulk.worker import Worker, WorkerConfig

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC).timestamp()
P = "+14155550100"
DEAD_PID = 999_999_999  # no such process


def time_now() -> float:
    return time.time()


@pytest.fixture
def clock() -> Clock:
    """conftest's clock, started at this file's T0."""
    return Clock(T0)


def enqueue(queue: Queue, numbers: list[str], *, max_attempts: int = 3, body: str = "Hello {p}") -> int:
    return queue.enqueue(
        NewJob(name="promo", template="x", max_attempts=max_attempts),
        [NewMessage(phone=p, body=body.format(p=p[-4:])) for p in numbers],
    ).job_id


def make_worker(
    queue: Queue, fake: FakeTransport, clock: Clock, host: str | None = None, **config: object
) -> Worker:
    cfg = replace(WorkerConfig(session="main", until_done=True, pace=PROFILES["off"]), **config)  # type: ignore[arg-type]
    return Worker(queue, fake, cfg, clock=clock, sleep=clock.sleep, sender_zone=UTC, host=host)


def drive(worker: Worker, clock: Clock, steps: int = 60) -> None:
    """run_once up to ``steps`` times, letting every wait pass (a bounded run_until_done)."""
    try:
        for _ in range(steps):
            if worker.config.until_done and worker.remaining_work() == 0:
                return
            step = worker.run_once()
            if step.exit_code is not None:
                return
            clock.advance(max(step.wait, 20.0))
    finally:
        worker.shutdown()


def only(queue: Queue, job_id: int):  # type: ignore[no-untyped-def]
    (m,) = list(queue.iter_messages(job_id))
    return m


def other_container() -> str:
    """The place key a worker in another PID namespace with this very hostname (a container) has."""
    return identity.place_key(pid_namespace="pid:[4026539999]")


# --- 4. a worker identity is not hostname + pid ----------------------------------------------------------


def test_i4_a_live_worker_in_another_pid_namespace_with_the_same_hostname_is_not_evicted(
    queue: Queue, clock: Clock
) -> None:
    """Its pid means nothing in this namespace (here: no such process): only its fresh heartbeat counts. A
    worker registers its place (hostname, boot, PID namespace), not only its hostname."""
    queue.register_worker("main", pid=DEAD_PID, host=other_container())
    clock.advance(1)
    w = make_worker(queue, FakeTransport(clock=clock), clock)
    assert w.host == identity.place_key() != socket.gethostname()
    with pytest.raises(errors.SessionBusy):
        w.register()


def test_i4_the_same_session_on_two_hosts_never_presses_twice(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """Host A stamps and freezes before Enter (SIGSTOP, a paused VM); host B, same session name, takes the
    session over once A looks dead, reclaims the message after its lease and finds nothing in the chat.
    A may still press: B must not send (unknown), and when A wakes and presses there is one copy."""
    jid = enqueue(queue, [P])
    wa = queue.register_worker("main", pid=4242, host="host-a/boot-a/pid:[1]")
    ca = queue.claim(wa, "main", lease_seconds=60)
    assert ca is not None
    queue.mark_send_started(ca, ChatSnapshot().to_evidence())  # A froze right here, before Enter
    clock.advance(120)  # A's heartbeat is stale and its lease expired
    drive(make_worker(queue, fake, clock, host="host-b/boot-b/pid:[1]"), clock)
    assert fake.delivered_to(P) == 0
    fake.send(P, ca.body)  # A wakes and presses Enter
    assert fake.delivered_to(P) == 1
    m = only(queue, jid)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)
    assert "may still press" in (m.last_error or "")


def test_i4_a_stamp_by_a_dead_process_on_this_host_may_still_be_proved_absent(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """The kill -9 and restart case stays recoverable: the stamping process is provably gone."""
    jid = enqueue(queue, [P])
    wa = queue.register_worker("main", pid=DEAD_PID, host=identity.place_key())
    ca = queue.claim(wa, "main", lease_seconds=60)
    assert ca is not None
    queue.mark_send_started(ca, ChatSnapshot().to_evidence())  # killed before Enter
    clock.advance(120)
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 1
    assert only(queue, jid).status == SENT


# --- 5. relink vs stamp by a sequence that cannot step back ----------------------------------------------


def test_i5_a_wall_clock_stepped_back_does_not_bypass_the_relink_rule(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.history_scope = "device"
    fake.script(P, DeliverThenRaise(ConfirmTimeout("still on the clock")))
    jid = enqueue(queue, [P])
    w = make_worker(queue, fake, clock)
    assert w.run_once().outcome == "retry" and fake.delivered_to(P) == 1
    clock.t -= 600  # NTP steps the host clock back 10 minutes
    fake.logged_out = True  # the phone unlinked this browser; the worker shows the QR, someone scans
    drive(w, clock)
    assert fake.delivered_to(P) == 1
    m = only(queue, jid)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)
    assert "relinked after the send was pressed" in (m.last_error or "")


# --- 11. events ids are never reused ----------------------------------------------------------------------


def test_i11_notifications_are_not_lost_after_prune(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    from wabulk.notify.watch import Watcher

    j1 = enqueue(queue, [f"+1415555{i:04d}" for i in range(5)])
    drive(make_worker(queue, fake, clock), clock)
    watcher = Watcher(queue, ["hook"], undelivered_after=86400, clock=clock)
    watcher.scan_events()
    clock.advance(3600)
    queue.prune(0)  # deletes job 1's message events: the newest ids
    assert queue.pruned_at(j1) is not None
    j2 = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    watcher.scan_events()
    keys = [r[0] for r in queue.conn.execute("SELECT key FROM notifications WHERE kind = 'job_completed'")]
    assert any(k.startswith(f"job_completed:{j2}") for k in keys), keys


# --- 12. resolve on a pruned job ---------------------------------------------------------------------------


def test_i12_resolve_on_a_pruned_job_is_refused(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    fake.blind = True
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    m = only(queue, jid)
    assert m.error_class == UNKNOWN_OUTCOME
    clock.advance(3600)
    # The prune is killed after marking the job, before its messages are deleted.
    queue.conn.execute(
        "CREATE TEMP TRIGGER killed BEFORE DELETE ON messages BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    with pytest.raises(errors.DatabaseError):
        queue.prune(0)
    queue.conn.execute("DROP TRIGGER killed")
    assert queue.pruned_at(jid) is not None
    with pytest.raises(errors.InvalidTransition, match="pruned"):
        queue.resolve(m.id, resend=True)
    assert queue.get_message(m.id).status == FAILED


# --- 13. a hung worker -------------------------------------------------------------------------------------


def test_i13_the_heartbeat_stops_when_the_main_loop_is_stuck(db_path: Path) -> None:
    import time

    from wabulk.worker.runner import HeartbeatThread

    with Queue(db_path) as q:
        wid = q.register_worker("a", pid=os.getpid(), host=identity.place_key())
        q.conn.execute("UPDATE workers SET heartbeat_at = 1000")
    stuck_since = time.monotonic() - 3600  # the main thread last made progress an hour ago
    beat = HeartbeatThread(
        db_path, wid, interval=0.01, state=lambda: "sending", progress=lambda: stuck_since, hung_after=60
    )
    beat.start()
    try:
        deadline = time.monotonic() + 5
        while beat.beats_skipped == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        beat.stop()
    with Queue(db_path) as q:
        (w,) = q.workers()
    assert w.heartbeat_at == 1000  # a hung main loop no longer looks alive


def test_i13_status_check_names_a_message_stuck_in_sending(queue: Queue, clock: Clock) -> None:
    from wabulk.report import status_report

    jid = enqueue(queue, [P])
    wid = queue.register_worker("main", pid=os.getpid(), host=identity.place_key())
    c = queue.claim(wid, "main", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    clock.advance(600)  # stuck after Enter; the heartbeat thread kept beating
    queue.heartbeat(wid)
    rep = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="off", now=clock())
    assert any(f"message {c.message_id}" in line and "stuck" in line for line in rep.attention), rep.attention
    assert queue.get_job(jid).status != "completed"


# --- 14. the daily cap counts unknown outcomes -----------------------------------------------------------


def test_i14_the_daily_cap_counts_unknown_outcomes(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    fake.blind = True  # every send goes out and cannot be confirmed: unknown
    enqueue(queue, [f"+1415555{i:04d}" for i in range(5)])
    pace = make_profile("off", daily_cap=3)
    # the ramp's first day allows more than 3: a session that sent long ago
    queue.conn.execute("INSERT INTO sessions (name, first_sent_at) VALUES ('main', ?)", (T0 - 90 * 86400,))
    w = make_worker(queue, fake, clock, pace=pace, unknown_threshold=100)
    for _ in range(10):
        w.run_once()
    w.shutdown()
    assert len(fake.deliveries) == 3


# --- 15. the press budget holds across retry-failed --------------------------------------------------------


def test_i15_retry_failed_does_not_refill_the_press_budget(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.lying = True  # verification wrongly says "absent"
    fake.always(P, DeliverThenRaise(ConfirmTimeout("still on the clock")))
    jid = enqueue(queue, [P], max_attempts=2)
    for _ in range(4):
        drive(make_worker(queue, fake, clock), clock)
        queue.retry_failed(jid)
    assert fake.delivered_to(P) <= 2


def test_i15_a_person_may_still_choose_to_resend(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    fake.blind = True
    jid = enqueue(queue, [P], max_attempts=1)
    drive(make_worker(queue, fake, clock), clock)
    m = only(queue, jid)
    assert m.error_class == UNKNOWN_OUTCOME
    fake.blind = False
    queue.resolve(m.id, resend=True)
    queue.resume_session("main")
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 2 and only(queue, jid).status == SENT


# --- 16. an opt-out after the press ----------------------------------------------------------------------


def test_i16_a_pressed_message_whose_number_then_opts_out_is_unknown_not_skipped(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.script(P, DeliverThenRaise(ConfirmTimeout("still on the clock")))
    jid = enqueue(queue, [P])
    w = make_worker(queue, fake, clock)
    assert w.run_once().outcome == "retry" and fake.delivered_to(P) == 1
    queue.add_optouts([P])
    drive(w, clock)
    m = only(queue, jid)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)
    assert "opted out" in (m.last_error or "")
    assert fake.delivered_to(P) == 1
    assert queue.resolve(m.id, sent=True).status == SENT


# --- 17. a job that completes a second time is notified again ---------------------------------------------


def test_i17_a_job_completing_again_is_notified_again(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    from wabulk.fakes import Fail
    from wabulk.notify.watch import Watcher

    watcher = Watcher(queue, ["hook"], undelivered_after=86400, clock=clock)
    watcher.scan_events()
    fake.script(P, Fail(PermanentSendError("rejected before Enter")))
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    assert queue.get_job(jid).status == "completed" and only(queue, jid).status == FAILED
    watcher.scan_events()
    assert queue.retry_failed(jid) == 1
    drive(make_worker(queue, fake, clock), clock)
    assert queue.get_job(jid).status == "completed" and only(queue, jid).status == SENT
    watcher.scan_events()
    n = queue.conn.execute("SELECT count(*) FROM notifications WHERE kind = 'job_completed'").fetchone()[0]
    assert n == 2  # the second completion (now all sent) is told too


# --- 18. an import in another PID namespace --------------------------------------------------------------


def test_i18_an_import_in_another_pid_namespace_is_not_removed_by_ours(queue: Queue) -> None:
    from wabulk.store import enqueue as enq

    # A half-done import by a live process in another container with our hostname (its pid is not ours).
    queue.conn.execute(
        "INSERT INTO jobs (name, template, created_at, ready, importer) VALUES ('big', 'x', 0, 0, ?)",
        (f"{other_container()} {DEAD_PID}",),
    )
    enqueue(queue, [P])  # our import cleans up abandoned ones first
    assert queue.conn.execute("SELECT count(*) FROM jobs WHERE ready = 0").fetchone()[0] == 1
    assert enq._IMPORTER.startswith(identity.place_key() + " ")


# --- every message can be settled by a person --------------------------------------------------------------


def test_an_orphaned_stamped_message_can_be_resolved_by_a_person(queue: Queue, clock: Clock) -> None:
    jid = enqueue(queue, [P, "+14155550101"])
    wa = queue.register_worker("a", pid=DEAD_PID, host="elsewhere")
    for _ in range(2):
        c = queue.claim(wa, "a", lease_seconds=60)
        assert c is not None
        queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.schedule_retry(c, error="confirmation cut", error_class="confirm_timeout", delay=0)
    queue.unregister_worker(wa)  # account "a" never comes back
    clock.advance(120)
    a, b = list(queue.iter_messages(jid))
    assert (a.status, b.status) == (SENDING, PENDING)
    assert queue.resolve(a.id, sent=True).status == SENT
    assert queue.resolve(b.id, resend=True).status == PENDING
    assert queue.get_message(b.id).send_started_at is None  # any session may send it now


def test_a_message_in_flight_on_a_live_worker_cannot_be_resolved(queue: Queue, clock: Clock) -> None:
    enqueue(queue, [P])
    wid = queue.register_worker("a", pid=os.getpid(), host=identity.place_key())
    c = queue.claim(wid, "a", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    with pytest.raises(errors.InvalidTransition, match="in flight"):
        queue.resolve(c.message_id, sent=True)


def test_a_stopped_jobs_message_whose_worker_died_after_enter_is_settled_without_a_claim(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    from wabulk.report import status_report

    jid = enqueue(queue, [P])
    wa = queue.register_worker("a", pid=DEAD_PID, host=identity.place_key())
    c = queue.claim(wa, "a", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.stop_job(jid)  # the worker dies right after Enter
    clock.advance(120)
    rep = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="off", now=clock())
    assert any("unknown" in line for line in rep.attention), rep.attention
    assert queue.unknown_count(jid) == 1


def test_until_done_counts_a_stopped_jobs_message_whose_worker_died_after_enter(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    jid = enqueue(queue, [P, "+14155550101"])
    wa = queue.register_worker("a", pid=DEAD_PID, host=identity.place_key())
    c = queue.claim(wa, "a", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    w = make_worker(queue, fake, clock, session="b")
    assert w.run_once().outcome == "sent"  # b works on the same job
    queue.stop_job(jid)  # meanwhile a died right after Enter
    clock.advance(120)
    assert w.run() == exitcodes.SOME_FAILED  # not 0: that message's outcome is unknown
    assert queue.unknown_count(jid) == 1


def test_stop_says_what_it_could_not_settle(db_path: Path, clock: Clock) -> None:
    from typer.testing import CliRunner

    from wabulk.cli import app

    with Queue(db_path, clock=time_now) as q:
        jid = enqueue(q, [P, "+14155550101"])
        wid = q.register_worker("a", pid=os.getpid(), host=identity.place_key())
        c = q.claim(wid, "a", lease_seconds=600)
        assert c is not None
        q.mark_send_started(c, ChatSnapshot().to_evidence())
    res = CliRunner().invoke(app, ["--db", str(db_path), "stop", str(jid)])
    assert res.exit_code == 0, res.output
    assert "1 message(s) cancelled" in res.output
    assert f"1 message(s) still in flight on a live worker (ids {c.message_id})" in res.output
