"""Issue 14, "fail closed": one test per reproduced defect (each failed on the code before the fix), with
the queue and the worker against FakeTransport on an injected clock. The fake's delivery record is the
oracle: a recipient that got two copies is a duplicate a customer would see."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Clock
from wabulk import errors, exitcodes
from wabulk.errors import ConfirmTimeout, PermanentSendError, ProviderCrashed, TransientSendError
from wabulk.fakes import BLOCK, CRASH, DeliverThenRaise, Fail, FailAtSend, FakeTransport
from wabulk.models import (
    CANCELLED,
    FAILED,
    JOB_RUNNING,
    PENDING,
    SENT,
    SKIPPED,
    UNKNOWN_OUTCOME,
    ChatSnapshot,
    NewJob,
    NewMessage,
)
from wabulk.pacing import PROFILES, make_profile
from wabulk.queue import Queue
from wabulk.worker import Worker, WorkerConfig

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC).timestamp()
P = "+14155550100"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def enqueue(queue: Queue, numbers: list[str], *, max_attempts: int = 3, body: str = "Hello {p}") -> int:
    return queue.enqueue(
        NewJob(name="promo", template="x", max_attempts=max_attempts),
        [NewMessage(phone=p, body=body.format(p=p[-4:])) for p in numbers],
    ).job_id


def make_worker(queue: Queue, fake: FakeTransport, clock: Clock, **config: object) -> Worker:
    cfg = replace(WorkerConfig(session="main", until_done=True, pace=PROFILES["off"]), **config)  # type: ignore[arg-type]
    return Worker(queue, fake, cfg, clock=clock, sleep=clock.sleep, sender_zone=UTC)


def drive(worker: Worker, clock: Clock, steps: int = 60) -> None:
    """run_once up to ``steps`` times, letting every wait (backoffs, leases) pass: a bounded run_until_done
    that cannot hang on a bug that resends forever."""
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


# --- 1. unbounded resends ------------------------------------------------------------------------------


def test_d1_a_reader_that_never_sees_our_bubble_resends_at_most_once(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """Confirmation never sees the message that went out and verification wrongly says "absent": at most
    one automatic resend, never more sends than max_attempts (it used to be resent without end)."""
    fake.lying = True
    fake.always(P, DeliverThenRaise(ConfirmTimeout("still on the clock")))
    jid = enqueue(queue, [P], max_attempts=3)
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) <= 2
    m = only(queue, jid)
    assert m.status == FAILED and m.last_error


def test_d1_a_blind_page_sends_once_and_reports_the_outcome_unknown(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.blind = True
    jid = enqueue(queue, [P], max_attempts=3)
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 1
    m = only(queue, jid)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)
    assert queue.unknown_count(jid) == 1


def test_d1_the_send_budget_is_enforced_by_the_queue(queue: Queue, clock: Clock) -> None:
    """Whatever a worker does, the queue refuses a second stamp without positive evidence of absence."""
    enqueue(queue, [P])
    c = queue.claim("w", "main", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.schedule_retry(c, error="clock", error_class="confirm_timeout", delay=0)
    c2 = queue.claim("w", "main", lease_seconds=60)
    assert c2 is not None and c2.needs_verification and c2.sends == 1
    with pytest.raises(errors.SendRefused):
        queue.mark_send_started(
            c2, ChatSnapshot().to_evidence()
        )  # not verified: refused, and settled as unknown
    m = queue.get_message(c.message_id)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)


# --- 2. retry-failed clears the stamp ------------------------------------------------------------------


def test_d2_retry_failed_keeps_the_stamp_so_the_chat_is_checked_first(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.script(P, DeliverThenRaise(PermanentSendError("rejected after Enter")))
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    assert only(queue, jid).status == FAILED and fake.delivered_to(P) == 1
    assert queue.retry_failed(jid) == 1
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 1
    assert only(queue, jid).status == SENT


# --- 3. a stamp with no session; eviction; heartbeats --------------------------------------------------


def test_d3_the_stamp_carries_the_claiming_session_even_without_a_worker_row(queue: Queue) -> None:
    enqueue(queue, [P])
    wid = queue.register_worker("a", pid=os.getpid(), host=socket.gethostname())
    c = queue.claim(wid, "a", lease_seconds=60)
    assert c is not None
    queue.conn.execute("DELETE FROM workers")  # a second start deleted the row (the old eviction)
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    row = queue.conn.execute("SELECT send_started_session FROM messages WHERE id = ?", (c.message_id,))
    assert row.fetchone()[0] == "a"


def test_d3_a_live_local_worker_is_never_evicted_by_a_second_start(queue: Queue, clock: Clock) -> None:
    queue.register_worker("a", pid=os.getpid(), host=socket.gethostname())
    clock.advance(600)  # its heartbeat is old (a long browser step), but the process lives
    with pytest.raises(errors.SessionBusy):
        queue.register_worker("a", pid=os.getpid() + 1, host=socket.gethostname())


def test_d3_heartbeats_continue_during_a_long_browser_step(db_path: Path) -> None:
    from wabulk.worker.runner import HeartbeatThread

    with Queue(db_path) as q:
        wid = q.register_worker("a", pid=os.getpid(), host=socket.gethostname())
        before = q.workers()[0].heartbeat_at
    beat = HeartbeatThread(db_path, wid, interval=0.02, state=lambda: "sending")
    beat.start()
    try:
        deadline = time.monotonic() + 20
        after = before
        while after <= before and time.monotonic() < deadline:  # the worker's thread is "busy" here
            time.sleep(0.02)
            with Queue(db_path) as q:
                after = q.workers()[0].heartbeat_at
    finally:
        beat.stop()
    assert after > before


def test_d3_a_stamp_by_an_unknown_session_is_never_resent_on_absence(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """A pre-m003 stamp has no session: another account's chat proves nothing, so the outcome is unknown."""
    jid = enqueue(queue, [P])
    queue.conn.execute(
        "UPDATE messages SET send_started_at = ?, send_started_session = NULL, sends = 1", (clock() - 60,)
    )
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 0
    assert only(queue, jid).error_class == UNKNOWN_OUTCOME


# --- 4 and 5. verification by identity, not by time ----------------------------------------------------


def test_d4_a_page_clock_behind_the_host_does_not_make_our_bubble_too_old(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.skew = -90.0  # the page's clock is 90 s behind: our bubble's time reads before the stamp
    fake.script(P, DeliverThenRaise(ProviderCrashed("died after Enter")))
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    assert fake.delivered_to(P) == 1
    assert only(queue, jid).status == SENT


def test_d5_the_same_text_from_another_job_is_not_taken_for_ours(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    j1 = enqueue(queue, [P], body="Same text")
    drive(make_worker(queue, fake, clock), clock, steps=3)
    assert only(queue, j1).status == SENT
    j2 = enqueue(queue, [P], body="Same text")
    fake.script(P, FailAtSend(ProviderCrashed("died before the message left")))
    drive(make_worker(queue, fake, clock), clock)
    assert only(queue, j2).status == SENT
    assert fake.delivered_to(P) == 2  # one per job: the second was not "found" in the first's bubble


# --- 6. orphaned stamped messages; a blocked account pauses itself -------------------------------------


def test_d6_a_message_stamped_by_a_vanished_session_is_reported_and_not_waited_for(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    from wabulk.report import status_report

    jid = enqueue(queue, [P, "+14155550101"])
    wa = queue.register_worker("a", pid=999_999_999, host="elsewhere")
    c = queue.claim(wa, "a", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.unregister_worker(wa)  # account "a" never comes back
    w = make_worker(queue, fake, clock, session="b")
    drive(w, clock)
    assert w.remaining_work() == 0  # --until-done of "b" ends
    clock.advance(7 * 3600)
    rep = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="off", now=clock())
    assert any("session 'a'" in line and "message" in line for line in rep.attention), rep.attention
    assert queue.get_job(jid).status == JOB_RUNNING


def test_d6_a_blocked_account_pauses_its_session_not_the_shared_job(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    jid = enqueue(queue, [P, "+14155550101"])
    fake.script(P, BLOCK)
    w = make_worker(queue, fake, clock, session="a")
    drive(w, clock)
    assert queue.get_job(jid).status != "paused"
    assert queue.session_pause("a") is not None
    # another account drains the shared job
    other = FakeTransport(clock=clock)
    drive(make_worker(queue, other, clock, session="b"), clock)
    assert {m.status for m in queue.iter_messages(jid)} == {SENT}


# --- 7 and 8. stop, pause and opt-out arriving during a send -------------------------------------------


def test_d7_a_job_stopped_during_a_send_settles_the_message(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    jid = enqueue(queue, [P])
    fake.on_send = lambda phone: queue.stop_job(jid)
    fake.script(P, Fail(TransientSendError("compose box not found")))
    drive(make_worker(queue, fake, clock), clock, steps=3)
    m = only(queue, jid)
    assert m.status == CANCELLED
    assert queue.get_job(jid).finished_at is not None


def test_d7_a_stamped_message_of_a_stopped_job_is_unknown_on_every_path(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    # path 1: stopped while it waits for a retry (pending, stamped)
    j1 = enqueue(queue, [P])
    c = queue.claim("w", "main", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.schedule_retry(c, error="clock", error_class="confirm_timeout", delay=30)
    queue.stop_job(j1)
    assert (only(queue, j1).status, only(queue, j1).error_class) == (FAILED, UNKNOWN_OUTCOME)
    # path 2: stopped while in flight, the worker then gives it back
    j2 = enqueue(queue, ["+14155550101"])
    c = queue.claim("w", "main", lease_seconds=60)
    assert c is not None
    queue.mark_send_started(c, ChatSnapshot().to_evidence())
    queue.stop_job(j2)
    queue.schedule_retry(c, error="clock", error_class="confirm_timeout", delay=30)
    assert (only(queue, j2).status, only(queue, j2).error_class) == (FAILED, UNKNOWN_OUTCOME)


@pytest.mark.parametrize("what", ["optout", "stop", "pause"])
def test_d8_stop_pause_and_optout_after_the_claim_are_honoured_at_the_stamp(
    queue: Queue, fake: FakeTransport, clock: Clock, what: str
) -> None:
    jid = enqueue(queue, [P])
    actions = {
        "optout": lambda: queue.add_optouts([P]),
        "stop": lambda: queue.stop_job(jid),
        "pause": lambda: queue.pause_job(jid),
    }
    fake.on_send = lambda phone: actions[what]()  # while the chat opens
    make_worker(queue, fake, clock).run_once()
    assert fake.delivered_to(P) == 0
    assert only(queue, jid).status == {"optout": SKIPPED, "stop": CANCELLED, "pause": PENDING}[what]


# --- 9. long write transactions ------------------------------------------------------------------------


def test_d9_an_import_does_not_hold_the_write_lock_and_is_not_claimable_until_complete(
    queue: Queue, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wabulk.store import enqueue as enqueue_mod

    monkeypatch.setattr(enqueue_mod, "ENQUEUE_CHUNK", 10)
    seen: dict[str, object] = {}

    def rows() -> Iterator[NewMessage]:
        for i in range(35):
            if i == 25:  # mid-import: another process writes at once and finds nothing to claim
                other = sqlite3.connect(str(db_path), timeout=0, isolation_level=None)
                try:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                    seen["locked"] = False
                except sqlite3.OperationalError:
                    seen["locked"] = True
                finally:
                    other.close()
                with Queue(db_path) as q2:
                    seen["claim"] = q2.claim("w", "s", lease_seconds=60)
                    seen["jobs"] = len(q2.list_jobs())
            yield NewMessage(phone=f"+1415555{i:04d}", body="x")

    stats = queue.enqueue(NewJob(name="big", template="x"), rows())
    assert seen == {"locked": False, "claim": None, "jobs": 0}
    assert stats.enqueued == 35 and queue.counts(stats.job_id)[PENDING] == 35


def test_d9_an_import_that_fails_midway_leaves_nothing(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    from wabulk.store import enqueue as enqueue_mod

    monkeypatch.setattr(enqueue_mod, "ENQUEUE_CHUNK", 10)

    def rows() -> Iterator[NewMessage]:
        for i in range(25):
            yield NewMessage(phone=f"+1415555{i:04d}", body="x")
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        queue.enqueue(NewJob(name="big", template="x"), rows())
    assert queue.list_jobs() == []
    assert queue.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_d9_a_worker_retries_a_busy_database_instead_of_exiting(queue: Queue, db_path: Path) -> None:
    enqueue(queue, [P])
    queue.conn.execute("PRAGMA busy_timeout = 0")
    holder = sqlite3.connect(str(db_path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # an old-style long import holds the write lock
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2 and holder.in_transaction:
            holder.execute("ROLLBACK")

    queue.busy_sleep = sleep
    c = queue.claim("w", "main", lease_seconds=60)
    holder.close()
    assert c is not None and len(waits) >= 2


def test_d9_prune_deletes_in_short_transactions(
    queue: Queue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wabulk.store import jobs as jobs_mod

    monkeypatch.setattr(jobs_mod, "PRUNE_CHUNK", 10)
    jid = enqueue(queue, [f"+1415555{i:04d}" for i in range(35)])
    while (c := queue.claim("w", "main", lease_seconds=60)) is not None:
        queue.mark_sent(c, tick="sent", session="main")
    clock.advance(86400 * 40)
    commits: list[str] = []
    queue.conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip() == "COMMIT" else None)
    assert queue.prune(30) == 35
    queue.conn.set_trace_callback(None)
    assert len(commits) >= 4
    assert queue.pruned_at(jid) is not None and queue.counts(jid)[SENT] == 35


# --- 10 and 11. pace and cap across restarts and prune -------------------------------------------------


def test_d10_the_pace_survives_a_restart(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    enqueue(queue, [P, "+14155550101"])
    pace = make_profile("balanced", min_delay=30, max_delay=60, long_pause_every=0, daily_cap=0)
    w1 = make_worker(queue, fake, clock, pace=pace)
    assert w1.run_once().outcome == "sent"
    w1.shutdown()
    clock.advance(1)  # the fleet respawns the worker a second later
    w2 = make_worker(queue, fake, clock, pace=pace)
    step = w2.run_once()
    assert len(fake.deliveries) == 1
    last = queue.last_send_at("main")
    assert last is not None and clock() + step.wait >= last + 30  # not before the last send + min_delay


def test_d11_prune_does_not_reset_todays_daily_cap(queue: Queue, clock: Clock) -> None:
    enqueue(queue, [P, "+14155550101"])
    while (c := queue.claim("w", "main", lease_seconds=60)) is not None:
        queue.mark_sent(c, tick="sent", session="main")
    first = queue.first_sent_at("main")
    clock.advance(60)
    queue.prune(0)
    assert queue.sent_count("main", T0 - 3600) == 2
    assert queue.first_sent_at("main") == first


# --- 12. durable control commands ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["stop", "pause", "optout", "retry"])
def test_d12_control_commands_commit_with_synchronous_full(db_path: Path, command: str) -> None:
    with Queue(db_path, synchronous="NORMAL") as q:
        jid = enqueue(q, [P])
        levels: list[int] = []

        def trace(sql: str) -> None:
            if sql.strip().upper() == "COMMIT":
                levels.append(q.conn.execute("PRAGMA synchronous").fetchone()[0])

        q.conn.set_trace_callback(trace)
        {
            "stop": lambda: q.stop_job(jid),
            "pause": lambda: q.pause_job(jid),
            "optout": lambda: q.add_optouts([P]),
            "retry": lambda: q.retry_failed(jid),
        }[command]()
        q.conn.set_trace_callback(None)
        assert levels and all(level == 2 for level in levels)  # 2 = FULL
        assert q.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again afterwards


# --- unknown outcomes: the session pauses; a human decides ---------------------------------------------


def test_unknown_outcomes_in_a_row_pause_the_session_not_the_job(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    numbers = [f"+1415555{i:04d}" for i in range(6)]
    jid = enqueue(queue, numbers)
    fake.blind = True
    w = make_worker(queue, fake, clock, unknown_threshold=3)
    drive(w, clock)
    assert len(fake.deliveries) == 3  # three went out unconfirmed; the session stopped claiming
    assert queue.unknown_count(jid) == 3
    assert queue.session_pause("main") is not None
    assert queue.get_job(jid).status == JOB_RUNNING
    assert w.run_once().outcome == "session_paused"


def test_resolve_marks_sent_or_resends_knowingly_and_logs_it(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.blind = True
    jid = enqueue(queue, [P, "+14155550101"])
    drive(make_worker(queue, fake, clock), clock)
    a, b = list(queue.iter_messages(jid))
    assert a.error_class == b.error_class == UNKNOWN_OUTCOME
    queue.resolve(a.id, sent=True)
    queue.resolve(b.id, resend=True)
    fake.blind = False
    queue.resume_session("main")
    drive(make_worker(queue, fake, clock), clock)
    assert queue.get_message(a.id).status == SENT and fake.delivered_to(a.phone) == 1
    assert queue.get_message(b.id).status == SENT and fake.delivered_to(b.phone) == 2  # knowingly
    kinds = [e.kind for e in queue.events(message_id=a.id)] + [e.kind for e in queue.events(message_id=b.id)]
    assert kinds.count("resolve") == 2


def test_retry_failed_of_unknown_outcomes_verifies_once_the_page_can_be_read(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.blind = True
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    assert only(queue, jid).error_class == UNKNOWN_OUTCOME
    fake.blind = False
    queue.retry_failed(jid, error_class=UNKNOWN_OUTCOME)
    drive(make_worker(queue, fake, clock), clock)
    assert only(queue, jid).status == SENT and fake.delivered_to(P) == 1


def test_until_done_reports_unknown_outcomes_as_failed(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.blind = True
    enqueue(queue, [P])
    assert make_worker(queue, fake, clock).run() == exitcodes.SOME_FAILED


# --- a relinked device (logout + scan) -----------------------------------------------------------------


def test_a_send_pressed_before_a_relink_is_never_resent_from_the_new_devices_empty_chat(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """The message went out but its confirmation was cut; then the account was logged out and linked again
    by a scan. The new device's chat lacks what the old one sent, so it looks empty: that proves nothing
    (it used to be read as "absent" and resent: the recipient got it twice). Unknown, never resent."""
    fake.history_scope = "device"
    fake.script(P, DeliverThenRaise(ConfirmTimeout("still on the clock")))
    jid = enqueue(queue, [P])
    w = make_worker(queue, fake, clock)
    assert w.run_once().outcome == "retry" and fake.delivered_to(P) == 1
    clock.advance(5)
    fake.logged_out = True  # the phone unlinked this browser; the worker shows the QR, someone scans
    drive(w, clock)
    assert ("wait_for_login", "") in fake.calls
    assert fake.delivered_to(P) == 1
    m = only(queue, jid)
    assert (m.status, m.error_class) == (FAILED, UNKNOWN_OUTCOME)
    assert "relinked after the send was pressed" in (m.last_error or "")
    assert queue.unknown_count(jid) == 1
    assert queue.linked_at("main") is not None and m.send_started_at < queue.linked_at("main")


def test_absence_on_the_device_that_pressed_send_still_allows_the_one_resend(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """The rule only concerns stamps older than the link: a device linked before the send (here by the
    worker's own login) and whose send never went out proves it absent, and the message is sent once."""
    fake.history_scope = "device"
    fake.logged_out = True
    fake.script(P, CRASH)  # stamped, then the browser died before anything went out
    jid = enqueue(queue, [P])
    drive(make_worker(queue, fake, clock), clock)
    assert queue.linked_at("main") is not None
    assert fake.delivered_to(P) == 1
    assert only(queue, jid).status == SENT


# --- network file systems ------------------------------------------------------------------------------


def test_a_database_on_a_network_file_system_is_named(tmp_path: Path) -> None:
    from wabulk.store.base import network_filesystem

    mounts = (
        "/dev/vda1 / ext4 rw 0 0\n"
        "server:/export /mnt/share nfs4 rw,relatime 0 0\n"
        "//nas/data /mnt/nas cifs rw 0 0\n"
        "user@host:/x /home/u/remote fuse.sshfs rw 0 0\n"
    )
    assert network_filesystem(Path("/mnt/share/wabulk.db"), mounts) == "nfs4"
    assert network_filesystem(Path("/mnt/nas/q/wabulk.db"), mounts) == "cifs"
    assert network_filesystem(Path("/home/u/remote/w.db"), mounts) == "fuse.sshfs"
    assert network_filesystem(Path("/home/u/w.db"), mounts) is None
    assert network_filesystem(Path("/mnt/shared.db"), mounts) is None


def test_a_worker_warns_when_the_database_is_on_a_network_file_system(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wabulk.settings import Settings
    from wabulk.store import base
    from wabulk.worker import WorkerEvent, build_config, run_worker

    monkeypatch.setattr(base, "network_filesystem", lambda path, mounts=None: "nfs4")
    Queue(db_path).close()
    seen: list[WorkerEvent] = []
    settings = Settings.from_env().with_(db=db_path)
    config = build_config(session="main", until_done=True, pace="off")
    assert run_worker(settings, config, transport=FakeTransport(), on_event=seen.append) == exitcodes.OK
    assert any(e.kind == "warning" and "network file system (nfs4)" in e.text for e in seen)


def test_resend_unverified_refuses_a_message_that_failed_for_a_known_reason(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    from wabulk.errors import InvalidTransition, NotOnWhatsApp
    from wabulk.fakes import Fail

    jid = enqueue(queue, [P])
    fake.always(P, Fail(NotOnWhatsApp("The number isn't on WhatsApp.")))
    drive(make_worker(queue, fake, clock), clock)
    [m] = list(queue.iter_messages(jid))
    assert m.status == "failed" and m.error_class == "not_on_whatsapp"
    with pytest.raises(InvalidTransition, match="not with an unknown outcome.*retry-failed --message"):
        queue.resolve(m.id, resend=True)
    assert next(iter(queue.iter_messages(jid))).status == "failed"  # untouched
