"""The worker loop against the real queue and a FakeTransport, with an injected clock: no browser, no
real sleeping. The fake's delivery record is the oracle for "exactly once"."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from conftest import Clock
from wabulk import exitcodes
from wabulk.errors import (
    SCOPE_ACCOUNT,
    BadInput,
    ConfirmTimeout,
    NotOnWhatsApp,
    Offline,
    SessionBusy,
    SessionError,
    TransientSendError,
    Unreachable,
)
from wabulk.fakes import (
    BLOCK,
    CRASH,
    FAKE_CAPABILITIES,
    LOGOUT,
    DeliverThenRaise,
    Delivery,
    Fail,
    FailAtSend,
    FakeTransport,
)
from wabulk.logs import setup_logging, teardown_logging
from wabulk.models import (
    FAILED,
    JOB_PAUSED,
    JOB_WAITING_FOR_LOGIN,
    PENDING,
    SENDING,
    SENT,
    NewJob,
    NewMessage,
)
from wabulk.pacing import PROFILES, make_profile
from wabulk.queue import Queue
from wabulk.settings import Settings, check_restart_browser_every
from wabulk.worker import Worker, WorkerConfig, WorkerEvent, build_config, run_worker

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(max_sleep=0.5)  # the worker must wake at least every 0.5 s (WAIT_SLICE)


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+1415555{i:04d}" for i in range(start, start + n)]


def enqueue(
    queue: Queue,
    numbers: list[str],
    *,
    max_attempts: int = 3,
    name: str = "promo",
    sessions: tuple[str, ...] = (),
) -> int:
    stats = queue.enqueue(
        NewJob(name=name, template="Hi {name}", max_attempts=max_attempts, sessions=sessions),
        [NewMessage(phone=p, body=f"Hello {p[-4:]}") for p in numbers],
    )
    return stats.job_id


def make_worker(
    queue: Queue, fake: FakeTransport, clock: Clock, events: list[WorkerEvent] | None = None, **config: object
) -> Worker:
    cfg = WorkerConfig(session="main", until_done=True, pace=PROFILES["off"])
    cfg = replace(cfg, **config)  # type: ignore[arg-type]
    sink = events.append if events is not None else (lambda e: None)
    return Worker(queue, fake, cfg, clock=clock, sleep=clock.sleep, on_event=sink, sender_zone=UTC)


def message(queue: Queue, job_id: int, phone: str):  # type: ignore[no-untyped-def]
    return next(m for m in queue.iter_messages(job_id) if m.phone == phone)


def page_changed(element: str) -> TransientSendError:
    """What a provider raises when its page changed under its reader (the web: ``SelectorNotFound``):
    transient, about the account."""
    return TransientSendError(
        f"element {element!r} not found", error_class="selector_missing", scope=SCOPE_ACCOUNT
    )


def kinds(events: list[WorkerEvent]) -> list[str]:
    return [e.kind for e in events if e.kind != "progress"]


# --- the happy path -----------------------------------------------------------------------------------


def test_every_message_is_sent_exactly_once(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    nums = phones(25)
    job = enqueue(queue, nums)
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert sorted(d.phone for d in fake.deliveries) == sorted(nums)
    assert fake.duplicates() == []
    s = queue.summaries(job)[0]
    assert s.counts[SENT] == 25 and s.job.status == "completed"
    assert all(m.attempts == 1 and m.sent_by_session == "main" for m in queue.iter_messages(job))
    assert queue.workers() == []  # unregistered on exit


def test_browser_is_restarted_between_messages_every_n_chats(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    nums = phones(7)
    job = enqueue(queue, nums)
    in_flight_at_restart: list[int] = []
    real_restart = fake.restart

    def restart() -> None:
        in_flight_at_restart.append(queue.counts(job)[SENDING])
        real_restart()

    fake.restart = restart  # type: ignore[method-assign]
    # The provider asks for it, as data (the web provider: its --restart-browser-every setting).
    fake.capabilities = replace(FAKE_CAPABILITIES, restart_every=3, restart_text="fresh after {chats} chats")
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events)
    assert worker.run() == exitcodes.OK
    # After the 3rd and the 6th chat, before the next claim: never with a message in flight.
    assert fake.restarts == 2 and in_flight_at_restart == [0, 0]
    assert sorted(d.phone for d in fake.deliveries) == sorted(nums) and fake.duplicates() == []
    restarts = [e.text for e in events if e.kind == "restart"]
    assert len(restarts) == 2 and all(t.endswith("(fresh after 3 chats)") for t in restarts)


def test_restart_browser_every_zero_never_restarts(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    enqueue(queue, phones(12))
    fake.capabilities = replace(FAKE_CAPABILITIES, restart_every=0)
    assert make_worker(queue, fake, clock).run() == exitcodes.OK
    assert fake.restarts == 0 and len(fake.deliveries) == 12


def test_restart_browser_every_must_not_be_negative() -> None:
    with pytest.raises(BadInput, match="--restart-browser-every must be 0 \\(never\\) or more, not -1"):
        check_restart_browser_every(-1)
    assert [check_restart_browser_every(n) for n in (None, 0, 7)] == [None, 0, 7]
    assert Settings.from_env().restart_browser_every == 100


def test_pacing_gaps_are_waited_between_sends(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    enqueue(queue, phones(6))
    pace = make_profile("balanced", long_pause_every=0)
    worker = make_worker(queue, fake, clock, pace=pace, daily_cap=0)
    worker.run()
    times = [d.at for d in fake.deliveries]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Each gap = send time (2 s) + a pacing delay within [4, 8] (+ at most one 0.5 s wake-up slice).
    assert all(2 + 4 <= g <= 2 + 8 + 0.5 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 1


# --- retries -----------------------------------------------------------------------------------------------


def test_transient_error_is_retried_with_backoff_and_attempts_counted_in_db(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = enqueue(queue, [a, b])
    fake.script(a, Fail(TransientSendError("page reloaded", error_class="timeout")))
    worker = make_worker(queue, fake, clock)
    step = worker.run_once()
    assert step.outcome == "retry"
    m = message(queue, job, a)
    assert m.status == PENDING and m.attempts == 1 and m.error_class == "timeout"
    assert m.next_attempt_at is not None and 30 <= m.next_attempt_at - clock() <= 30 + 15
    # The other recipient is not held up by the failure.
    assert worker.run_once().outcome == "sent" and fake.delivered_to(b) == 1
    assert worker.run_once().outcome == "idle"  # the retry is not due yet
    assert worker.run() == exitcodes.OK
    m = message(queue, job, a)
    assert m.status == SENT and m.attempts == 2 and fake.delivered_to(a) == 1


def test_offline_spends_no_attempt_however_long_it_lasts(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    for _ in range(6):  # longer than max_attempts (3): an outage must not fail the message
        fake.script(a, Fail(Offline("computer not connected")))
    worker = make_worker(queue, fake, clock)
    waits = []
    for _ in range(6):
        step = worker.run_once()
        assert step.outcome == "offline"
        m = message(queue, job, a)
        assert m.status == PENDING and m.attempts == 0
        waits.append(step.wait)
    assert waits == sorted(waits) and waits[0] < waits[-1] <= 120  # backs off, bounded
    assert worker.run() == exitcodes.OK
    m = message(queue, job, a)
    assert m.status == SENT and m.attempts == 1 and fake.delivered_to(a) == 1


def test_a_takeover_releases_the_message_without_spending_an_attempt(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """A session-wide error (the web provider's takeover is one) has no message to blame: the message goes
    back to pending untouched, and the worker carries on once the session is back."""
    (a,) = phones(1)
    job = enqueue(queue, [a])
    fake.script(a, Fail(SessionError("WhatsApp keeps being taken over by another window")))
    worker = make_worker(queue, fake, clock)
    step = worker.run_once()
    assert step.outcome == "released"
    m = message(queue, job, a)
    assert m.status == PENDING and m.attempts == 0 and fake.delivered_to(a) == 0
    assert worker.run() == exitcodes.OK
    m = message(queue, job, a)
    assert m.status == SENT and m.attempts == 1 and fake.delivered_to(a) == 1


def test_unreachable_url_at_start_ends_the_run_with_the_reason(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    enqueue(queue, phones(1))
    fake.unreachable = 1
    worker = make_worker(queue, fake, clock)
    with pytest.raises(Unreachable):
        worker.run_once()


def test_network_lost_mid_run_waits_instead_of_ending(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = enqueue(queue, [a, b])
    worker = make_worker(queue, fake, clock)
    assert worker.run_once().outcome == "sent"
    fake.unreachable = 4  # an outage of a few checks, after WhatsApp Web had loaded
    waits = [worker.run_once() for _ in range(4)]
    assert [w.outcome for w in waits] == ["offline"] * 4
    assert waits[0].wait < waits[-1].wait  # backs off
    assert message(queue, job, b).attempts == 0  # nothing claimed while the page is unreachable
    assert worker.run() == exitcodes.OK and fake.delivered_to(b) == 1


def test_backoff_is_exponential_with_jitter(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    worker = make_worker(queue, fake, clock)
    for attempt, base in ((1, 30), (2, 60), (3, 120), (4, 240)):
        delays = [worker.retry_delay(attempt) for _ in range(50)]
        assert all(base <= d <= base + 15 for d in delays)
        assert len(set(delays)) > 1
    assert 900 <= worker.retry_delay(20) <= 900 + 15  # capped (the jitter comes on top)


def test_permanent_error_fails_at_once_and_until_done_exits_3(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b, c = phones(3)
    job = enqueue(queue, [a, b, c])
    fake.always(b, NotOnWhatsApp("phone number shared via url is invalid"))
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.SOME_FAILED
    m = message(queue, job, b)
    assert m.status == FAILED and m.attempts == 1 and m.error_class == "not_on_whatsapp"
    assert "invalid" in (m.last_error or "")
    assert fake.delivered_to(a) == fake.delivered_to(c) == 1
    assert [p for op, p in fake.calls if op == "send"].count(b) == 1


def test_attempts_exhausted_fail_the_message(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a], max_attempts=3)
    fake.always(a, Fail(page_changed("compose_box")))
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.SOME_FAILED
    m = message(queue, job, a)
    assert m.status == FAILED and m.attempts == 3 and m.error_class == "selector_missing"
    assert "3 attempts" in (m.last_error or "")
    assert [op for op, _ in fake.calls].count("send") == 3


# --- ambiguous outcomes: verify before any resend -----------------------------------------------------------


def test_confirm_timeout_is_verified_and_not_resent(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    fake.script(a, DeliverThenRaise(ConfirmTimeout("still on the clock after 60s")))
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events)
    assert worker.run() == exitcodes.OK
    assert fake.delivered_to(a) == 1
    assert [op for op, _ in fake.calls].count("send") == 1
    assert ("verify_sent", a) in fake.calls
    assert "verified" in kinds(events)
    assert message(queue, job, a).status == SENT


def test_confirm_timeout_not_arrived_is_sent_again_once(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    fake.script(a, FailAtSend(ConfirmTimeout("clock")))  # stamped, but nothing arrived
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert ("verify_sent", a) in fake.calls
    assert fake.delivered_to(a) == 1
    assert message(queue, job, a).status == SENT


def test_confirm_timeout_on_the_last_attempt_is_verified_not_failed(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a], max_attempts=1)
    fake.script(a, DeliverThenRaise(ConfirmTimeout("clock")))
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert message(queue, job, a).status == SENT
    assert fake.delivered_to(a) == 1


@pytest.mark.parametrize("arrived", [True, False])
def test_expired_lease_with_send_stamp_is_verified_first(
    queue: Queue, fake: FakeTransport, clock: Clock, arrived: bool
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    # A worker that died right after the send action (stamp written, maybe delivered, never marked).
    dead = queue.claim("dead-worker", "main", lease_seconds=120)
    assert dead is not None
    queue.mark_send_started(dead)
    if arrived:
        fake.deliveries.append(Delivery(a, dead.body, clock()))
    clock.advance(121)
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert ("verify_sent", a) in fake.calls
    assert fake.delivered_to(a) == 1
    assert [op for op, _ in fake.calls].count("send") == (0 if arrived else 1)
    assert message(queue, job, a).status == SENT


def test_browser_crash_mid_send_restarts_and_verifies(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    enqueue(queue, [a, b])
    fake.script(a, CRASH)
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert fake.restarts >= 1
    assert ("verify_sent", a) in fake.calls
    assert fake.delivered_to(a) == fake.delivered_to(b) == 1


def test_crash_after_delivery_is_not_resent(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    from wabulk.errors import ProviderCrashed

    (a,) = phones(1)
    enqueue(queue, [a])
    fake.script(a, DeliverThenRaise(ProviderCrashed("chrome not reachable")))
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    assert fake.delivered_to(a) == 1 and fake.restarts >= 1


# --- zombies ------------------------------------------------------------------------------------------------


def test_zombie_is_fenced_off_before_the_send(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    worker = make_worker(queue, fake, clock, lease_seconds=10)
    taken = {}

    def stall_then_lose_lease(phone: str) -> None:
        clock.advance(11)  # the worker was frozen past its lease; another one took the message
        taken["claim"] = queue.claim("other", "main", lease_seconds=60)

    fake.on_send = stall_then_lose_lease
    step = worker.run_once()
    assert step.outcome == "lease_lost"
    assert fake.deliveries == []  # nothing was sent by the zombie
    m = message(queue, job, a)
    assert m.claimed_by == "other" and m.send_started_at is None


def test_lease_lost_on_completion_is_swallowed_and_overwrites_nothing(queue: Queue, clock: Clock) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    other: dict[str, object] = {}

    def slow_send(seconds: float) -> None:
        clock.advance(seconds)  # the send took longer than the lease; another worker reclaimed it
        other["claim"] = queue.claim("other", "main", lease_seconds=60)

    fake = FakeTransport(clock=clock, advance=slow_send, send_seconds=200)
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events, lease_seconds=120)
    assert worker.run_once().outcome == "lease_lost"
    assert "lease_lost" in kinds(events)
    m = message(queue, job, a)
    assert m.status == "sending" and m.claimed_by == "other" and m.sent_at is None
    assert other["claim"] is not None and other["claim"].needs_verification  # type: ignore[union-attr]


# --- session loss -------------------------------------------------------------------------------------------


def test_logout_releases_without_spending_attempts_and_resumes_after_login(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b, c = phones(3)
    job = enqueue(queue, [a, b, c])
    fake.script(b, LOGOUT)
    seen: dict[str, object] = {}

    def during_login() -> None:
        seen["job_status"] = queue.get_job(job).status
        m = message(queue, job, b)
        seen["msg"] = (m.status, m.attempts)

    fake.on_wait_for_login = during_login
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events)
    assert worker.run() == exitcodes.OK
    assert seen["job_status"] == JOB_WAITING_FOR_LOGIN
    assert seen["msg"] == (PENDING, 0)  # given back, no attempt spent
    qr = [e for e in events if e.kind == "qr"]
    assert qr and qr[0].payload == fake.qr_payloads[0]
    assert "logged_in" in kinds(events)
    assert all(fake.delivered_to(p) == 1 for p in (a, b, c))
    m = message(queue, job, b)
    assert m.status == SENT and m.attempts == 1
    assert queue.get_job(job).status == "completed"


def test_blocked_account_pauses_its_session_and_exits_4(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = enqueue(queue, [a, b])
    fake.script(a, BLOCK)
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.ATTENTION  # a person must act: systemd/fleet do not restart it
    # Only the account stops (issue 14): a job shared by the fleet goes on through other sessions.
    assert queue.get_job(job).status != JOB_PAUSED
    pause = queue.session_pause("main")
    assert pause is not None and "blocked" in pause[1]
    assert message(queue, job, a).status == PENDING and message(queue, job, a).attempts == 0
    assert fake.deliveries == []


# --- circuit breaker ----------------------------------------------------------------------------------------


def test_circuit_breaker_auto_pauses_the_session_on_page_errors(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    nums = phones(8)
    job = enqueue(queue, nums)
    for p in nums:
        fake.always(p, Fail(page_changed("send_button")))
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events, breaker_threshold=5)
    code = worker.run()
    # A page-level class: this account's page is at fault, so the session pauses, not the shared job.
    assert queue.get_job(job).status != JOB_PAUSED
    assert queue.session_pause("main") == (clock(), "auto-paused: 5 consecutive selector_missing failures")
    assert "breaker" in kinds(events)
    assert [op for op, _ in fake.calls].count("send") == 5  # nothing more was tried after the pause
    assert code == exitcodes.ATTENTION  # the session waits for a person to resume it


def test_whatsapp_failing_our_bubbles_pauses_the_session_not_the_job(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    # WhatsApp's failure icon on every bubble is about this account (or its connection), not the recipients.
    nums = phones(8)
    job = enqueue(queue, nums)
    for p in nums:
        # As the web provider raises it: the error says it is about the account (scope), not its class name.
        failed = TransientSendError(
            "WhatsApp marked it failed", error_class="send_failed", scope=SCOPE_ACCOUNT
        )
        fake.always(p, FailAtSend(failed))
    worker = make_worker(queue, fake, clock, [], breaker_threshold=5)
    worker.run()
    assert queue.get_job(job).status != JOB_PAUSED
    assert queue.session_pause("main") == (clock(), "auto-paused: 5 consecutive send_failed failures")
    assert fake.deliveries == []


def test_numbers_not_on_whatsapp_do_not_trip_the_breaker(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    nums = phones(8)
    job = enqueue(queue, nums)
    for p in nums[:6]:  # a list with a run of dead numbers says nothing about the page
        fake.always(p, Fail(NotOnWhatsApp("The number isn't on WhatsApp.")))
    worker = make_worker(queue, fake, clock, breaker_threshold=3)
    assert worker.run() == exitcodes.SOME_FAILED
    assert queue.get_job(job).status == "completed"
    assert queue.counts(job)["failed"] == 6 and queue.counts(job)["sent"] == 2


def test_success_resets_the_breaker(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    nums = phones(10)
    job = enqueue(queue, nums)
    for p in nums[::2]:  # every other recipient fails once
        fake.script(p, Fail(Offline("offline")))
    worker = make_worker(queue, fake, clock, breaker_threshold=3)
    assert worker.run() == exitcodes.OK
    assert queue.get_job(job).status == "completed"


# --- control: pause / stop / signals within a second, also mid-delay ----------------------------------------


def long_gap_worker(queue: Queue, fake: FakeTransport, clock: Clock, **kw: object) -> Worker:
    pace = make_profile("safe", min_delay=60, max_delay=60, long_pause_every=0)
    return make_worker(queue, fake, clock, pace=pace, daily_cap=0, **kw)


def test_pause_from_another_process_takes_effect_mid_delay(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    job = enqueue(queue, phones(5))
    worker = long_gap_worker(queue, fake, clock)
    paused_at = T0 + 2 + 20  # 20 s into the 60 s gap after the first send
    clock.at(paused_at, lambda: queue.pause_job(job))
    assert worker.run() == exitcodes.SOME_FAILED  # until-done: the rest is stranded in a paused job
    assert len(fake.deliveries) == 1
    assert clock() - paused_at <= 1.0


def test_stop_from_another_process_takes_effect_mid_delay(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    job = enqueue(queue, phones(5))
    worker = long_gap_worker(queue, fake, clock)
    stopped_at = T0 + 2 + 30
    clock.at(stopped_at, lambda: queue.stop_job(job))
    assert worker.run() == exitcodes.OK
    assert len(fake.deliveries) == 1
    assert clock() - stopped_at <= 1.0
    assert queue.counts(job)["cancelled"] == 4


def test_stop_request_mid_delay_exits_130_and_unregisters(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    enqueue(queue, phones(5))
    worker = long_gap_worker(queue, fake, clock, until_done=False)
    asked = T0 + 2 + 10
    clock.at(asked, worker.request_stop)
    assert worker.run() == exitcodes.INTERRUPTED
    assert clock() - asked <= 0.5
    assert len(fake.deliveries) == 1
    assert queue.workers() == []


def test_stop_before_the_send_action_releases_the_message(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    worker = make_worker(queue, fake, clock, until_done=False)
    fake.on_send = lambda phone: worker.request_stop()  # Ctrl-C while the chat is opening
    assert worker.run() == exitcodes.INTERRUPTED
    assert fake.deliveries == []
    m = message(queue, job, a)
    assert m.status == PENDING and m.attempts == 0 and m.send_started_at is None


def test_keyboard_interrupt_mid_send_leaves_a_safe_stamped_message(queue: Queue, clock: Clock) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])

    def second_ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    fake = FakeTransport(clock=clock, advance=second_ctrl_c, send_seconds=1)
    worker = make_worker(queue, fake, clock, until_done=False)
    with pytest.raises(KeyboardInterrupt):
        worker.run()
    m = message(queue, job, a)
    # Released for the next worker, with the stamp kept: it will look in the chat before resending.
    assert m.status == PENDING and m.send_started_at is not None and m.attempts == 0
    assert queue.workers() == []
    fake2 = FakeTransport(clock=clock)
    assert make_worker(queue, fake2, clock).run() == exitcodes.OK
    assert ("verify_sent", a) in fake2.calls and fake2.delivered_to(a) == 1


def test_idle_polling_backs_off_and_picks_up_new_work(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    worker = make_worker(queue, fake, clock, until_done=False)
    clock.at(T0 + 20, lambda: enqueue(queue, phones(1)))
    clock.at(T0 + 40, worker.request_stop)
    assert worker.run() == exitcodes.INTERRUPTED
    assert len(fake.deliveries) == 1
    assert fake.deliveries[0].at - (T0 + 20) <= 5.0 + 2.0 + 1.0  # within one max idle poll (+ send)


def test_second_worker_on_the_same_session_is_refused(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    first = make_worker(queue, fake, clock)
    first.register()
    second = make_worker(queue, FakeTransport(clock=clock), clock)
    with pytest.raises(SessionBusy):
        second.run()


def test_jobs_pinned_to_another_session_are_left_alone(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    mine = enqueue(queue, phones(2), name="mine")
    theirs = enqueue(queue, phones(2, start=10), name="theirs", sessions=("other",))
    assert make_worker(queue, fake, clock).run() == exitcodes.OK
    assert queue.counts(mine)[SENT] == 2 and queue.counts(theirs)[PENDING] == 2


# --- daily cap and quiet hours ------------------------------------------------------------------------------


def test_daily_cap_with_warmup_ramp_counts_from_the_db_across_a_restart(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    job = enqueue(queue, phones(60))
    cfg = {"pace": PROFILES["off"], "daily_cap": 100}
    first = make_worker(queue, fake, clock, **cfg)
    for _ in range(15):
        assert first.run_once().outcome == "sent"
    first.shutdown()  # a restart: a new process with fresh counters
    second = make_worker(queue, fake, clock, **cfg)
    outcomes = [second.run_once().outcome for _ in range(10)]
    assert outcomes == ["sent"] * 5 + ["cap"] * 5  # day 1 of the ramp: 20
    assert queue.counts(job)[SENT] == 20
    step = second.run_once()
    midnight = dt.datetime(2026, 6, 2, tzinfo=UTC).timestamp()
    assert step.outcome == "cap" and clock() + step.wait == pytest.approx(midnight)  # sender's midnight
    clock.advance(step.wait + 1)
    assert second.cap_status(clock()) == (0, 40)  # day 2 of the ramp
    second.shutdown()
    third = make_worker(queue, fake, clock, **cfg)  # and a restart on day 2 keeps the ramp
    assert third.cap_status(clock()) == (0, 40)


def test_quiet_hours_hold_back_only_recipients_whose_local_night_it_is(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    india, tokyo = "+919876543210", "+819012345678"
    job = enqueue(queue, [india, tokyo])
    # 02:00 UTC = 07:30 in India (quiet until 08:00), 11:00 in Tokyo.
    clock.t = dt.datetime(2026, 6, 1, 2, 0, tzinfo=UTC).timestamp()
    worker = make_worker(queue, fake, clock, quiet_hours="21:00-08:00", until_done=True)
    first = worker.run_once()
    assert first.outcome == "deferred"
    m = message(queue, job, india)
    assert m.status == PENDING and m.attempts == 0 and fake.deliveries == []
    opens = dt.datetime(2026, 6, 1, 2, 30, tzinfo=UTC).timestamp()  # 08:00 in India
    assert worker.run() == exitcodes.OK
    assert fake.delivered_to(india) == fake.delivered_to(tokyo) == 1
    india_sent = next(d.at for d in fake.deliveries if d.phone == india)
    assert opens <= india_sent <= opens + 60


# --- config, logs, run_worker -------------------------------------------------------------------------------


def test_build_config_validates_options() -> None:
    from wabulk.errors import BadInput

    cfg = build_config(session="s", job_ids=[3, 4], pace="safe", max_delay=90, quiet_hours="22:00-07:00")
    assert cfg.job_ids == (3, 4) and cfg.pace.max_delay == 90 and cfg.cap == PROFILES["safe"].daily_cap
    with pytest.raises(BadInput):
        build_config(session="s", quiet_hours="late")
    with pytest.raises(BadInput):
        build_config(session="s", pace="ludicrous")


def test_logs_are_json_lines_private_and_masked(
    queue: Queue, fake: FakeTransport, clock: Clock, tmp_path: Path
) -> None:
    a, b = phones(2)
    enqueue(queue, [a, b])
    fake.always(b, NotOnWhatsApp("not on WhatsApp"))
    path = setup_logging(tmp_path / "logs")
    try:
        make_worker(queue, fake, clock).run()
    finally:
        teardown_logging(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    entries = [json.loads(line) for line in text.splitlines()]
    assert {"sent", "failed"} <= {e.get("event") for e in entries}
    assert a not in text and b not in text and "+1415•••0000" in text
    assert "Hello 0000" not in text  # bodies never logged
    sent = next(e for e in entries if e.get("event") == "sent")
    assert sent["body"]["len"] == len("Hello 0000") and len(sent["body"]["sha256"]) == 12


def test_log_numbers_keeps_full_numbers(
    queue: Queue, fake: FakeTransport, clock: Clock, tmp_path: Path
) -> None:
    (a,) = phones(1)
    enqueue(queue, [a])
    path = setup_logging(tmp_path / "logs", log_numbers=True)
    try:
        make_worker(queue, fake, clock, log_numbers=True).run()
    finally:
        teardown_logging(path)
    assert a in path.read_text(encoding="utf-8")


def test_run_worker_end_to_end_with_a_fake_transport(db_path: Path, isolated_home: Path) -> None:
    settings = Settings.from_env()
    q = Queue(settings.db)
    job = enqueue(q, phones(3))
    q.close()
    out = io.StringIO()
    fake = FakeTransport()
    cfg = build_config(session="main", until_done=True, pace="off")
    code = run_worker(settings, cfg, transport=fake, console=Console(file=out, force_terminal=False))
    assert code == exitcodes.OK
    assert len(fake.deliveries) == 3 and not fake.closed  # a transport passed in is the caller's to close
    q = Queue(settings.db)
    assert q.counts(job)[SENT] == 3
    q.close()
    lines = out.getvalue().splitlines()
    assert sum(" sent " in ln for ln in lines) == 3
    assert (settings.logs_dir / "wabulk.log").exists()


def test_logout_while_verifying_releases_and_verifies_after_login(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = enqueue(queue, [a])
    # It went out, unconfirmed. (Had it not, the relinked device's empty chat would prove nothing: a send
    # pressed before a relink is found or unknown, never resent; see test_fail_closed.py.)
    fake.script(a, DeliverThenRaise(ConfirmTimeout("clock")))
    worker = make_worker(queue, fake, clock)
    assert worker.run_once().outcome == "retry"
    clock.advance(60)
    fake.logged_out = True
    fake.ensure_ready = lambda: None  # type: ignore[method-assign]  # the logout shows only in the chat
    assert worker.run_once().outcome == "login"
    m = message(queue, job, a)
    assert m.status == PENDING and m.attempts == 1 and m.send_started_at is not None  # stamp kept
    assert worker.run() == exitcodes.OK
    assert fake.delivered_to(a) == 1
    assert message(queue, job, a).status == SENT  # found in the chat after the login: not resent


def test_signal_handlers_stop_first_and_interrupt_on_second_ctrl_c(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    import signal

    from wabulk.worker.runner import install_signal_handlers

    worker = make_worker(queue, fake, clock)
    # What was there before (a background job started by a shell has SIGINT ignored, not the default).
    before = signal.getsignal(signal.SIGINT)
    restore = install_signal_handlers(worker)
    try:
        signal.raise_signal(signal.SIGTERM)
        assert worker.stop_requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_stopping_while_logged_out_leaves_jobs_waiting_and_a_later_run_resumes_them(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = enqueue(queue, [a, b])
    fake.logged_out = True
    fake.login_succeeds = False  # nobody scans; the user gives up with Ctrl-C
    worker = make_worker(queue, fake, clock, until_done=False)
    fake.on_wait_for_login = worker.request_stop
    assert worker.run() == exitcodes.INTERRUPTED
    assert queue.get_job(job).status == JOB_WAITING_FOR_LOGIN
    assert fake.deliveries == [] and queue.counts(job)[PENDING] == 2
    fake.logged_out = False  # logged in later (e.g. `wabulk login`)
    statuses: list[str] = []
    fake.on_send = lambda phone: statuses.append(queue.get_job(job).status)
    assert make_worker(queue, fake, clock).run() == exitcodes.OK
    assert statuses == ["running", "running"]  # resumed as soon as the session was ready
    assert queue.get_job(job).status == "completed" and len(fake.deliveries) == 2


def _template_job(queue: Queue) -> int:
    return queue.enqueue(
        NewJob(name="t", template="order_ready (en_US)", template_name="order_ready", template_lang="en_US"),
        [NewMessage(phone="+14155550001", body="order_ready (en_US): Ann", params=("Ann",))],
    ).job_id


def test_a_template_job_is_never_claimed_by_a_provider_without_templates(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """A browser-like provider (``capabilities.templates`` False) would send the readable body as a plain
    text: the queue never hands it the message, so nothing churns (no attempt used, no claim/release)."""
    assert fake.capabilities.templates is False
    job = _template_job(queue)
    events_before = len(queue.events(job_id=job))
    worker = make_worker(queue, fake, clock)
    for _ in range(3):
        assert worker.run_once().outcome == "idle"
    assert fake.deliveries == []
    m = message(queue, job, "+14155550001")
    assert (m.status, m.attempts, m.send_started_at) == ("pending", 0, None)
    assert len(queue.events(job_id=job)) == events_before


def test_a_provider_that_sends_templates_claims_a_template_job(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    fake.capabilities = replace(fake.capabilities, templates=True)
    job = _template_job(queue)
    make_worker(queue, fake, clock).run_once()
    assert [d.phone for d in fake.deliveries] == ["+14155550001"]
    assert message(queue, job, "+14155550001").status == "sent"


# --- the daily cap, scheduled jobs and logins: what status, the live view and the worker say --------------


def test_status_and_the_worker_agree_on_a_reached_cap(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    from wabulk.pacing import local_zone, next_local_midnight
    from wabulk.report import status_report

    job = enqueue(queue, phones(25))
    worker = make_worker(queue, fake, clock, daily_cap=100)
    outcomes = [worker.run_once().outcome for _ in range(21)]
    assert outcomes == ["sent"] * 20 + ["cap"]  # day 1 of the warm-up ramp: 20
    report = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="balanced", now=clock())
    [row] = report.sessions
    assert (row["sent_today"], row["cap_today"], row["daily_cap"], row["warmup_day"]) == (20, 20, 100, 1)
    midnight = next_local_midnight(clock(), local_zone())
    assert row["cap_reached"] and row["waiting_until"] == midnight
    [jrow] = report.jobs
    assert jrow["id"] == job and jrow["waiting_until"] == midnight
    assert jrow["eta_seconds"] >= midnight - clock()  # not "17 s" while the worker waits for midnight
    # A capped job needs a person to know (status --check exits 4), with the ramp explained.
    capped = [a for a in report.attention if "daily cap" in a]
    assert capped == [
        "session 'main' reached its daily cap (20/20 today, warm-up day 1 of 5: 20/40/80/150/250 then 100): "
        f"5 message(s) wait until {dt.datetime.fromtimestamp(midnight).strftime('%H:%M')}; "
        "`wabulk run --session main --daily-cap N` changes the cap (0 = none)"
    ]
    # The live view's numbers are the worker's: the same cap, counted up to this send.
    assert worker._stats()["sent_today"] == 20 and worker._stats()["cap_today"] == 20


def test_a_worker_with_no_cap_shows_no_cap_in_status(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    from wabulk.report import status_report

    enqueue(queue, phones(3))
    worker = make_worker(queue, fake, clock, daily_cap=0)
    assert worker.run_once().outcome == "sent"
    # WABULK_PACE=safe would cap a new session at 20: the worker runs with --daily-cap 0, status says so.
    report = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="safe", now=clock())
    [row] = report.sessions
    assert (row["daily_cap"], row["cap_today"], row["left_today"], row["cap_reached"]) == (
        0,
        None,
        None,
        False,
    )
    assert not any("daily cap" in a for a in report.attention)


def test_the_live_count_includes_the_send_just_made(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    enqueue(queue, phones(3))
    worker = make_worker(queue, fake, clock, daily_cap=100)
    assert worker.run_once().outcome == "sent"
    assert worker._stats()["sent_today"] == 1 == queue.sent_count("main", 0)


def test_until_done_says_which_scheduled_job_it_waits_for(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a = phones(1)[0]
    stats = queue.enqueue(
        NewJob(name="later", template="Hi", not_before=clock() + 7200), [NewMessage(phone=a, body="Hi")]
    )
    events: list[WorkerEvent] = []
    worker = make_worker(queue, fake, clock, events)
    assert worker.run() == exitcodes.OK
    said = [e for e in events if e.kind == "scheduled"]
    assert len(said) == 1 and said[0].job_id == stats.job_id  # once, not every poll
    assert (
        f"waiting for job {stats.job_id} (later), scheduled for" in said[0].text
        and "(in 2h00m)" in said[0].text
    )
    assert said[0].next_send_at == T0 + 7200  # the live view shows "next send in 2h00m"
    assert fake.delivered_to(a) == 1


def test_a_job_queued_while_the_session_waits_for_a_scan_is_marked_waiting(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    first = enqueue(queue, [a])
    fake.script(a, LOGOUT)
    later: dict[str, int] = {}

    def during_login() -> None:
        later["job"] = enqueue(queue, [b], name="queued meanwhile")
        clock.advance(10)  # the worker looks again while it waits for the scan

    fake.on_wait_for_login = during_login
    worker = make_worker(queue, fake, clock)
    assert worker.run() == exitcodes.OK
    waited = [
        e.job_id for e in queue.events() if e.kind == "job_status" and e.to_status == JOB_WAITING_FOR_LOGIN
    ]
    assert waited == [first, later["job"]]  # each job named when it starts to wait


def test_the_login_hint_names_the_session_and_the_next_step(queue: Queue, clock: Clock) -> None:
    from wabulk.report import status_report

    job = enqueue(queue, phones(1), sessions=("newphone",))
    queue.set_job_status(job, JOB_WAITING_FOR_LOGIN, reason="session 'newphone' is logged out")

    def hint() -> str:
        report = status_report(queue, job_id=None, undelivered_after_seconds=86400, pace="off", now=clock())
        return next(a for a in report.attention if a.startswith(f"job {job} "))

    # No worker runs it: log in.
    assert "waits for session 'newphone' to log in: run `wabulk login --session newphone`" in hint()
    # Its worker runs (and `wabulk login` is refused meanwhile): scan the QR that worker shows.
    queue.register_worker("newphone", pid=os.getpid(), host="h")
    assert "scan the QR its running worker shows" in hint() and "wabulk login" not in hint()
