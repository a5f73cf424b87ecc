"""The SQLite queue: enqueue, claim, fencing, job control, workers, opt-outs, errors."""

from __future__ import annotations

import itertools
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Clock
from wabulk import errors, identity, migrations
from wabulk import queue as queue_mod
from wabulk.models import MESSAGE_STATUSES, NewJob, NewMessage
from wabulk.queue import Queue

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def q(db_path: Path, clock: Clock) -> Iterator[Queue]:
    queue = Queue(db_path, clock=clock)
    yield queue
    queue.close()


def msgs(n: int, start: int = 0, body: str = "Hi {i}") -> list[NewMessage]:
    return [
        NewMessage(phone=f"+1415555{i:04d}", body=body.format(i=i), name=f"N{i}")
        for i in range(start, start + n)
    ]


def job(**kw: object) -> NewJob:
    kw.setdefault("name", "test")
    kw.setdefault("template", "Hi {name}")
    return NewJob(**kw)  # type: ignore[arg-type]


def drain(q: Queue, worker: str = "w1", session: str = "s") -> list[int]:
    """Claim and send everything claimable; return the message ids in claim order."""
    out = []
    while (c := q.claim(worker, session, lease_seconds=60)) is not None:
        q.mark_sent(c, tick="sent", session=session)
        out.append(c.message_id)
    return out


# --- enqueue -------------------------------------------------------------------------------------


def test_enqueue_writes_job_and_messages(q: Queue, clock: Clock) -> None:
    m = [
        NewMessage(
            phone="+14155550001",
            body="Hi Ann",
            name="Ann",
            variables={"name": "Ann", "city": "Zürich"},
            source_row=2,
            flags=("not_mobile",),
        ),
        NewMessage(phone="+14155550002", body="Hi Bob", name="Bob", source_row=3),
    ]
    stats = q.enqueue(
        job(
            attachment="/tmp/a.pdf",
            sessions=("shop",),
            settings={"pace": "careful"},
            source="c.csv",
            max_attempts=5,
        ),
        m,
    )
    assert (stats.enqueued, stats.duplicates, stats.opted_out) == (2, 0, 0)
    j = q.get_job(stats.job_id)
    assert j.status == "queued" and j.attachment == "/tmp/a.pdf" and j.sessions == ("shop",)
    assert j.settings == {"pace": "careful"} and j.source == "c.csv" and j.max_attempts == 5
    assert j.created_at == T0 and j.started_at is None
    got = list(q.iter_messages(stats.job_id))
    assert [x.phone for x in got] == ["+14155550001", "+14155550002"]
    first = got[0]
    assert first.variables == {"name": "Ann", "city": "Zürich"} and first.body == "Hi Ann"
    assert first.status == "pending" and first.attempts == 0 and first.max_attempts == 5
    assert first.source_row == 2 and first.name == "Ann"
    flags = q.conn.execute("SELECT flags FROM messages WHERE id = ?", (first.id,)).fetchone()[0]
    assert flags == '["not_mobile"]'
    assert q.counts(stats.job_id)["pending"] == 2


def test_enqueue_drops_and_counts_duplicates(q: Queue) -> None:
    stats = q.enqueue(job(), msgs(3) + msgs(2) + msgs(1, start=10))
    assert (stats.enqueued, stats.duplicates) == (4, 2)
    assert sum(q.counts(stats.job_id).values()) == 4


def test_same_number_in_two_jobs_is_not_a_duplicate(q: Queue) -> None:
    a = q.enqueue(job(), msgs(2))
    b = q.enqueue(job(), msgs(2))
    assert a.enqueued == b.enqueued == 2 and b.duplicates == 0


def test_enqueue_stores_opted_out_numbers_as_skipped(q: Queue) -> None:
    q.add_optouts(["+14155550001"], reason="asked")
    stats = q.enqueue(job(), msgs(3) + msgs(1, start=1))  # the opted-out number twice: one dup
    assert (stats.enqueued, stats.duplicates, stats.opted_out) == (2, 1, 1)
    skipped = [m for m in q.iter_messages(stats.job_id) if m.status == "skipped"]
    assert [(m.phone, m.last_error) for m in skipped] == [("+14155550001", "opted out")]
    assert q.counts(stats.job_id)["skipped"] == 1
    assert any(e.to_status == "skipped" for e in q.events(message_id=skipped[0].id))


def test_enqueue_rolls_back_everything_when_the_input_fails(
    q: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_mod, "ENQUEUE_CHUNK", 3)  # make sure some chunks were written first

    def broken() -> Iterator[NewMessage]:
        yield from msgs(7)
        raise ValueError("row 9: boom")

    with pytest.raises(ValueError, match="boom"):
        q.enqueue(job(), broken())
    assert q.list_jobs() == []
    assert q.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert q.conn.execute("SELECT count(*) FROM job_counts").fetchone()[0] == 0
    # The queue is still usable afterwards.
    assert q.enqueue(job(), msgs(2)).enqueued == 2


def test_enqueue_streams_in_chunks(q: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_mod, "ENQUEUE_CHUNK", 4)
    stats = q.enqueue(job(), iter(msgs(10) + msgs(3)))
    assert (stats.enqueued, stats.duplicates) == (10, 3)


def test_counts_after_a_chunked_enqueue_match_a_recount(q: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The enqueue counts its inserted rows per chunk (no per-row insert trigger since m005): duplicates
    in later chunks, a chunk of only duplicates and opted-out numbers must leave job_counts exact."""
    monkeypatch.setattr(queue_mod, "ENQUEUE_CHUNK", 4)
    q.add_optouts(["+14155550002", "+14155550009"])
    first = q.enqueue(job(), msgs(3)).job_id
    stats = q.enqueue(job(), iter(msgs(10) + msgs(4) + msgs(2, start=8) + msgs(3, start=20)))
    assert (stats.enqueued, stats.duplicates, stats.opted_out) == (11, 6, 2)
    for jid in (first, stats.job_id):
        real = dict.fromkeys(MESSAGE_STATUSES, 0)
        for status, n in q.conn.execute(
            "SELECT status, count(*) FROM messages WHERE job_id = ? GROUP BY 1", (jid,)
        ):
            real[status] = n
        assert q.counts(jid) == real
    assert q.counts(first)["pending"] == 2 and q.counts(stats.job_id)["pending"] == 11
    assert q.counts(stats.job_id)["skipped"] == 2


def test_job_with_nothing_to_send_is_completed_at_once(q: Queue) -> None:
    q.add_optouts(["+14155550000"])
    stats = q.enqueue(job(), msgs(1))
    assert stats.enqueued == 0
    j = q.get_job(stats.job_id)
    assert j.status == "completed" and j.finished_at == T0


def test_enqueue_rejects_zero_max_attempts(q: Queue) -> None:
    with pytest.raises(errors.BadInput):
        q.enqueue(job(max_attempts=0), msgs(1))


# --- claim -----------------------------------------------------------------------------------------


def test_claim_leases_first_message_and_starts_the_job(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(attachment="/x/a.png"), msgs(3)).job_id
    c = q.claim("w1", "s", lease_seconds=60)
    assert c is not None
    assert (c.job_id, c.phone, c.body, c.name) == (jid, "+14155550000", "Hi 0", "N0")
    assert c.attachment == "/x/a.png"
    assert c.attempt == 1 and c.lease_until == T0 + 60 and not c.needs_verification
    m = q.get_message(c.message_id)
    assert (m.status, m.claimed_by, m.lease_until, m.attempts) == ("sending", "w1", T0 + 60, 1)
    j = q.get_job(jid)
    assert j.status == "running" and j.started_at == T0
    assert q.counts(jid)["sending"] == 1
    assert [e.kind for e in q.events(message_id=c.message_id)] == ["claim"]


def test_claim_returns_none_when_empty(q: Queue) -> None:
    assert q.claim("w1", "s", lease_seconds=60) is None


def test_claim_is_fifo_within_a_job_and_oldest_job_first(q: Queue) -> None:
    a = q.enqueue(job(), msgs(3)).job_id
    b = q.enqueue(job(), msgs(2, start=100)).job_id
    order = drain(q)
    by_id = {mid: q.get_message(mid) for mid in order}
    assert [by_id[m].job_id for m in order] == [a, a, a, b, b]
    assert order == sorted(order)


def test_live_lease_is_never_reclaimed(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(2))
    c1 = q.claim("w1", "s", lease_seconds=60)
    clock.advance(59)
    c2 = q.claim("w2", "s", lease_seconds=60)
    assert c1 and c2 and c1.message_id != c2.message_id
    assert q.claim("w3", "s", lease_seconds=60) is None


def test_expired_lease_without_stamp_is_reclaimed_plainly(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c1 = q.claim("w1", "s", lease_seconds=60)
    clock.advance(61)
    c2 = q.claim("w2", "s", lease_seconds=60)
    assert c1 and c2 and c2.message_id == c1.message_id
    assert c2.attempt == 2 and c2.worker_id == "w2" and not c2.needs_verification
    assert "lease expired" in (q.events(message_id=c2.message_id)[-1].detail or "")


def test_expired_lease_with_stamp_needs_verification(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c1 = q.claim("w1", "s", lease_seconds=60)
    assert c1
    clock.advance(5)
    q.mark_send_started(c1)
    clock.advance(100)
    c2 = q.claim("w2", "s", lease_seconds=60)
    assert c2 and c2.needs_verification and c2.send_started_at == T0 + 5


def test_a_stamped_message_goes_back_only_to_the_session_that_stamped_it(q: Queue, clock: Clock) -> None:
    """Only the account that may have sent it can look in its chat; another would resend blindly."""
    q.enqueue(job(), msgs(2))
    wa = q.register_worker("a", pid=1, host="h")
    wb = q.register_worker("b", pid=2, host="h")
    c1 = q.claim(wa, "a", lease_seconds=60)
    assert c1
    q.mark_send_started(c1)
    clock.advance(100)  # worker a died after the stamp
    q.heartbeat(wb)
    other = q.claim(wb, "b", lease_seconds=60)
    assert other and other.message_id != c1.message_id and not other.needs_verification
    assert q.claim(wb, "b", lease_seconds=60) is None  # the stamped one is not b's to take
    wa2 = q.register_worker("a", pid=3, host="h", stale_after=30)
    again = q.claim(wa2, "a", lease_seconds=60)
    assert again and again.message_id == c1.message_id and again.needs_verification


def test_a_stamped_message_retried_later_stays_with_its_session(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    wa = q.register_worker("a", pid=1, host="h")
    c1 = q.claim(wa, "a", lease_seconds=60)
    assert c1
    q.mark_send_started(c1)
    q.schedule_retry(c1, error="no tick", error_class="confirm_timeout", delay=1)
    clock.advance(5)
    assert q.claim("wb", "b", lease_seconds=60) is None
    c2 = q.claim(wa, "a", lease_seconds=60)
    assert c2 and c2.needs_verification


def test_defer_gives_the_message_back_until_a_time(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c1 = q.claim("w1", "s", lease_seconds=60)
    assert c1
    q.defer(c1, until=T0 + 3600, reason="quiet hours")
    assert q.get_message(c1.message_id).attempts == 0
    clock.advance(3599)
    assert q.claim("w1", "s", lease_seconds=60) is None
    clock.advance(2)
    c2 = q.claim("w1", "s", lease_seconds=60)
    assert c2 and c2.message_id == c1.message_id and c2.attempt == 1


def test_expired_leases_go_before_fresh_work(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(3))
    c1 = q.claim("w1", "s", lease_seconds=10)
    clock.advance(11)
    c2 = q.claim("w2", "s", lease_seconds=10)
    assert c1 and c2 and c2.message_id == c1.message_id


def test_zombie_completion_is_fenced_off(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    zombie = q.claim("w1", "s", lease_seconds=30)
    assert zombie
    clock.advance(31)
    fresh = q.claim("w2", "s", lease_seconds=30)
    assert fresh and fresh.message_id == zombie.message_id
    before = q.get_message(zombie.message_id)
    for call in (
        lambda: q.mark_sent(zombie, tick="sent", session="s"),
        lambda: q.mark_send_started(zombie),
        lambda: q.extend_lease(zombie, 60),
        lambda: q.schedule_retry(zombie, error="x", error_class="timeout", delay=5),
        lambda: q.mark_failed(zombie, error="x", error_class="y"),
        lambda: q.release(zombie, reason="shutdown"),
    ):
        with pytest.raises(errors.LeaseLost):
            call()
    assert q.get_message(zombie.message_id) == before
    q.mark_sent(fresh, tick="sent", session="s")
    m = q.get_message(fresh.message_id)
    assert m.status == "sent" and m.sent_by_session == "s"


def test_mark_send_started_refuses_an_expired_lease(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=30)
    assert c
    clock.advance(30)
    with pytest.raises(errors.LeaseLost, match="expired"):
        q.mark_send_started(c)
    assert q.get_message(c.message_id).send_started_at is None
    # Nobody took it yet, so a late-but-honest completion still lands (it is still ours).
    q.mark_sent(c, tick="sent", session="s")
    assert q.get_message(c.message_id).status == "sent"


def test_extend_lease_keeps_the_message_ours(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=30)
    assert c
    clock.advance(20)
    c = q.extend_lease(c, 60)
    assert c.lease_until == T0 + 80 == q.get_message(c.message_id).lease_until
    clock.advance(50)
    assert q.claim("w2", "s", lease_seconds=30) is None
    q.mark_send_started(c)


def test_send_started_keeps_the_earliest_stamp(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=30)
    assert c
    q.mark_send_started(c)
    q.schedule_retry(c, error="confirm timeout", error_class="confirm_timeout", delay=0)
    clock.advance(10)
    c2 = q.claim("w1", "s", lease_seconds=30)
    assert c2 and c2.needs_verification and c2.send_started_at == T0
    c2 = q.mark_absent(c2, reason="the chat shows no such bubble", lease_seconds=30)  # only then a resend
    q.mark_send_started(c2)
    assert q.get_message(c2.message_id).send_started_at == T0


def test_exhausted_expired_lease_without_stamp_fails(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(max_attempts=2), msgs(1)).job_id
    for _ in range(2):
        assert q.claim("w1", "s", lease_seconds=10)
        clock.advance(11)
    assert q.claim("w2", "s", lease_seconds=10) is None
    m = q.get_message(1)
    assert m.status == "failed" and m.attempts == 2 and m.last_error.startswith("attempts exhausted")
    assert q.get_job(jid).status == "completed"


def test_exhausted_expired_lease_with_stamp_is_still_claimed_for_verification(q: Queue, clock: Clock) -> None:
    q.enqueue(job(max_attempts=1), msgs(1))
    c = q.claim("w1", "s", lease_seconds=10)
    assert c
    q.mark_send_started(c)
    clock.advance(11)
    c2 = q.claim("w2", "s", lease_seconds=10)
    assert c2 and c2.needs_verification and c2.attempt == 2
    # Verification found nothing and the retry budget is spent: it fails rather than resending.
    c2 = q.mark_absent(c2, reason="not found in chat", lease_seconds=10)
    with pytest.raises(errors.SendRefused):
        q.mark_send_started(c2)
    m = q.get_message(c.message_id)
    assert (m.status, m.error_class) == ("failed", "attempts_exhausted")


def test_paused_job_is_skipped_until_resumed(q: Queue) -> None:
    a = q.enqueue(job(), msgs(2)).job_id
    b = q.enqueue(job(), msgs(1, start=50)).job_id
    q.pause_job(a, reason="user")
    c = q.claim("w1", "s", lease_seconds=60)
    assert c and c.job_id == b
    q.mark_sent(c, tick="sent", session="s")
    assert q.claim("w1", "s", lease_seconds=60) is None
    q.resume_job(a)
    c = q.claim("w1", "s", lease_seconds=60)
    assert c and c.job_id == a


def test_not_before_delays_the_job(q: Queue, clock: Clock) -> None:
    q.enqueue(job(not_before=T0 + 3600), msgs(1))
    assert q.claim("w1", "s", lease_seconds=60) is None
    clock.advance(3600)
    assert q.claim("w1", "s", lease_seconds=60) is not None


def test_job_pinned_to_other_sessions_is_skipped(q: Queue) -> None:
    q.enqueue(job(sessions=("shop", "support")), msgs(2))
    assert q.claim("w1", "personal", lease_seconds=60) is None
    assert q.claim("w1", "support", lease_seconds=60) is not None
    assert q.claim("w2", "shop", lease_seconds=60) is not None


def test_claim_restricted_to_job_ids(q: Queue) -> None:
    a = q.enqueue(job(), msgs(1)).job_id
    b = q.enqueue(job(), msgs(1, start=9)).job_id
    c = q.claim("w1", "s", lease_seconds=60, job_ids=[b])
    assert c and c.job_id == b
    assert q.claim("w1", "s", lease_seconds=60, job_ids=[b]) is None
    assert q.claim("w1", "s", lease_seconds=60, job_ids=[]) is None
    c = q.claim("w1", "s", lease_seconds=60, job_ids=[a, b])
    assert c and c.job_id == a


def test_waiting_for_login_job_is_still_claimable(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(1)).job_id
    q.set_job_status(jid, "waiting_for_login", reason="session s logged out")
    assert q.claim("w2", "other", lease_seconds=60) is not None


def test_optout_is_rechecked_at_claim(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(3)).job_id
    q.add_optouts(["+14155550000", "+14155550001"], reason="STOP")
    c = q.claim("w1", "s", lease_seconds=60)
    assert c and c.phone == "+14155550002" and c.attempt == 1
    skipped = q.get_message(1)
    assert (skipped.status, skipped.last_error, skipped.attempts) == ("skipped", "opted out", 0)
    q.mark_sent(c, tick="sent", session="s")
    assert q.counts(jid) == {**dict.fromkeys(MESSAGE_STATUSES, 0), "skipped": 2, "sent": 1}
    assert q.get_job(jid).status == "completed"


def test_retry_is_not_claimable_before_it_is_due(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(2))
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.schedule_retry(c, error="offline", error_class="offline", delay=30)
    m = q.get_message(c.message_id)
    assert (m.status, m.next_attempt_at, m.last_error) == ("pending", T0 + 30, "offline")
    assert m.error_class == "offline"
    assert m.claimed_by is None and m.lease_until is None and m.attempts == 1
    other = q.claim("w1", "s", lease_seconds=60)
    assert other and other.message_id != c.message_id
    q.mark_sent(other, tick="sent", session="s")
    assert q.claim("w1", "s", lease_seconds=60) is None
    clock.advance(30)
    again = q.claim("w1", "s", lease_seconds=60)
    assert again and again.message_id == c.message_id and again.attempt == 2


def test_schedule_retry_on_last_attempt_fails(q: Queue) -> None:
    jid = q.enqueue(job(max_attempts=1), msgs(1)).job_id
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.schedule_retry(c, error="timeout waiting for chat", error_class="timeout", delay=5)
    m = q.get_message(c.message_id)
    assert m.status == "failed" and m.last_error == "attempts exhausted: timeout waiting for chat"
    assert m.error_class == "timeout"
    assert q.get_job(jid).status == "completed"


def test_mark_failed_and_job_completion(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(), msgs(2)).job_id
    c1 = q.claim("w1", "s", lease_seconds=60)
    c2 = q.claim("w1", "s", lease_seconds=60)
    assert c1 and c2
    q.mark_failed(c1, error="not on WhatsApp", error_class="not_on_whatsapp")
    assert q.get_job(jid).status == "running"
    clock.advance(7)
    q.mark_sent(c2, tick="delivered", session="s")
    m1, m2 = q.get_message(c1.message_id), q.get_message(c2.message_id)
    assert (m1.status, m1.error_class, m1.claimed_by) == ("failed", "not_on_whatsapp", None)
    assert (m2.status, m2.receipt, m2.sent_at, m2.delivered_at) == ("sent", "delivered", T0 + 7, T0 + 7)
    j = q.get_job(jid)
    assert j.status == "completed" and j.finished_at == T0 + 7


def test_mark_sent_with_explicit_time(q: Queue) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.mark_sent(c, tick="sent", session="s", at=T0 - 1)
    assert q.get_message(c.message_id).sent_at == T0 - 1


def test_release_gives_back_without_spending_an_attempt(q: Queue) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.mark_send_started(c)
    q.release(c, reason="paused")
    m = q.get_message(c.message_id)
    assert (m.status, m.attempts, m.claimed_by, m.send_started_at) == ("pending", 0, None, T0)
    c2 = q.claim("w1", "s", lease_seconds=60)
    assert c2 and c2.attempt == 1 and c2.needs_verification
    assert q.events(message_id=c.message_id, limit=2)[0].detail == "released: paused"


def test_release_with_delay_is_not_claimable_until_due(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.release(c, reason="quiet hours", delay=3600)
    m = q.get_message(c.message_id)
    assert (m.status, m.attempts, m.next_attempt_at) == ("pending", 0, T0 + 3600)
    assert q.claim("w1", "s", lease_seconds=60) is None
    clock.advance(3600)
    again = q.claim("w1", "s", lease_seconds=60)
    assert again and again.attempt == 1


def test_paused_job_completes_when_its_last_message_finishes(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(1)).job_id
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.pause_job(jid)
    q.mark_sent(c, tick="sent", session="s")
    assert q.get_job(jid).status == "completed"


def test_record_receipt_only_upgrades(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(1))
    c = q.claim("w1", "s", lease_seconds=60)
    assert c
    q.mark_sent(c, tick="sent", session="s")
    q.record_receipt(c.message_id, "read", T0 + 50)
    q.record_receipt(c.message_id, "delivered", T0 + 60)
    m = q.get_message(c.message_id)
    assert (m.receipt, m.delivered_at, m.read_at) == ("read", T0 + 50, T0 + 50)
    with pytest.raises(errors.MessageNotFound):
        q.record_receipt(999, "read", T0)


def test_sent_count_per_session_since(q: Queue, clock: Clock) -> None:
    q.enqueue(job(), msgs(5))
    for i, session in enumerate(["a", "a", "b", "a"]):
        c = q.claim("w", session, lease_seconds=60)
        assert c
        clock.advance(10)
        q.mark_sent(c, tick="sent", session=session)
        del i
    assert q.sent_count("a", T0) == 3
    assert q.sent_count("a", T0 + 15) == 2
    assert q.sent_count("b", T0) == 1
    assert q.sent_count("c", 0) == 0
    plan = " ".join(
        r[3]
        for r in q.conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM messages WHERE sent_by_session = ? AND sent_at >= ?",
            ("a", 0),
        )
    )
    assert "idx_messages_sent" in plan
    assert q.first_sent_at("a") == T0 + 10 and q.first_sent_at("b") == T0 + 30
    assert q.first_sent_at("never") is None


def test_claim_query_plan_uses_indexes(q: Queue) -> None:
    q.enqueue(job(), msgs(50))
    params = {"worker": "w", "lease": T0, "now": T0, "session": "s"}
    for job_ids, templates in itertools.product((None, [1, 2]), (False, True)):
        for sql in q.claim_sql(job_ids, templates=templates):
            plan = [r[3] for r in q.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            text = "\n".join(plan)
            assert "USING INDEX idx_messages_" in text, text
            # messages is aliased ``m`` in the subquery: neither name may be scanned.
            assert not any(line.split()[:2] in (["SCAN", "messages"], ["SCAN", "m"]) for line in plan), text
            assert "TEMP B-TREE" not in text, text


# --- job control -----------------------------------------------------------------------------------


def test_pause_resume_transitions(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(2)).job_id
    j = q.pause_job(jid, reason="daily cap reached")
    assert (j.status, j.status_reason) == ("paused", "daily cap reached")
    assert q.pause_job(jid).status == "paused"
    j = q.resume_job(jid)
    assert (j.status, j.status_reason) == ("queued", None)  # never started
    assert q.resume_job(jid).status == "queued"
    c = q.claim("w", "s", lease_seconds=60)
    assert c
    q.pause_job(jid)
    assert q.resume_job(jid).status == "running"
    kinds = [(e.from_status, e.to_status) for e in q.events(job_id=jid) if e.kind == "job_status"]
    assert ("queued", "paused") in kinds and ("paused", "running") in kinds


def test_stopped_and_completed_jobs_cannot_resume_or_pause(q: Queue) -> None:
    a = q.enqueue(job(), msgs(1)).job_id
    q.stop_job(a)
    for call in (q.resume_job, q.pause_job):
        with pytest.raises(errors.InvalidTransition):
            call(a)
    b = q.enqueue(job(), msgs(1, start=5)).job_id
    drain(q)
    assert q.get_job(b).status == "completed"
    with pytest.raises(errors.InvalidTransition):
        q.resume_job(b)
    with pytest.raises(errors.InvalidTransition):
        q.stop_job(b)
    with pytest.raises(errors.InvalidTransition):
        q.set_job_status(b, "running")


def test_stop_cancels_pending_and_lets_in_flight_finish(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(), msgs(4)).job_id
    c = q.claim("w", "s", lease_seconds=60)
    assert c
    j = q.stop_job(jid)
    assert j.status == "stopped" and j.finished_at is None
    assert q.counts(jid)["cancelled"] == 3 and q.counts(jid)["sending"] == 1
    assert q.claim("w", "s", lease_seconds=60) is None
    clock.advance(3)
    q.mark_sent(c, tick="sent", session="s")
    j = q.get_job(jid)
    assert j.status == "stopped" and j.finished_at == T0 + 3
    assert q.stop_job(jid).status == "stopped"  # idempotent
    cancelled = [e for e in q.events(job_id=jid) if e.to_status == "cancelled"]
    assert len(cancelled) == 3


def test_stop_with_nothing_in_flight_finishes_at_once(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(2)).job_id
    j = q.stop_job(jid)
    assert j.finished_at == T0


def test_expired_lease_of_stopped_job_is_settled(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(), msgs(3)).job_id
    c1 = q.claim("w1", "s", lease_seconds=10)
    c2 = q.claim("w2", "s", lease_seconds=10)
    assert c1 and c2
    q.mark_send_started(c2)
    q.stop_job(jid)
    clock.advance(11)
    assert q.claim("w3", "s", lease_seconds=10) is None
    assert q.get_message(c1.message_id).status == "cancelled"
    m2 = q.get_message(c2.message_id)
    assert m2.status == "failed" and "outcome unknown" in (m2.last_error or "")
    assert q.get_job(jid).finished_at == T0 + 11


def test_paused_job_expired_lease_waits(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(), msgs(1)).job_id
    assert q.claim("w1", "s", lease_seconds=10)
    q.pause_job(jid)
    clock.advance(11)
    assert q.claim("w2", "s", lease_seconds=10) is None
    assert q.get_message(1).status == "sending"
    q.resume_job(jid)
    c = q.claim("w2", "s", lease_seconds=10)
    assert c and c.attempt == 2


def test_set_job_status(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(1)).job_id
    j = q.set_job_status(jid, "waiting_for_login", reason="scan the QR code")
    assert (j.status, j.status_reason) == ("waiting_for_login", "scan the QR code")
    j = q.set_job_status(jid, "running")
    assert j.status == "running" and j.started_at == T0
    with pytest.raises(errors.BadInput):
        q.set_job_status(jid, "exploded")
    assert q.set_job_status(jid, "stopped").status == "stopped"
    assert q.counts(jid)["cancelled"] == 1


def test_unknown_job_raises_job_not_found(q: Queue) -> None:
    for call in (
        q.get_job,
        q.counts,
        q.pause_job,
        q.resume_job,
        q.stop_job,
        q.summaries,
        lambda j: q.set_job_status(j, "paused"),
        lambda j: q.retry_failed(j),
        lambda j: list(q.iter_messages(j)),
    ):
        with pytest.raises(errors.JobNotFound):
            call(42)


def _fail_all(q: Queue, error_class: str = "timeout", n: int | None = None) -> list[int]:
    out = []
    while (n is None or len(out) < n) and (c := q.claim("w", "s", lease_seconds=60)):
        q.mark_failed(c, error="boom", error_class=error_class)
        out.append(c.message_id)
    return out


def test_retry_failed_one_job(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(3)).job_id
    c = q.claim("w", "s", lease_seconds=60)
    assert c
    q.mark_send_started(c)
    q.mark_failed(c, error="boom", error_class="timeout")
    _fail_all(q)
    assert q.get_job(jid).status == "completed"
    assert q.retry_failed(jid) == 3
    m = q.get_message(c.message_id)
    # The stamp stays: its send was pressed, so the chat is looked at before any resend.
    assert (m.status, m.attempts, m.send_started_at) == ("pending", 0, T0)
    assert (m.last_error, m.error_class) == (None, None)
    j = q.get_job(jid)
    assert j.status == "queued" and j.finished_at is None
    c = q.claim("w", "s", lease_seconds=60)
    assert c and c.attempt == 1 and c.needs_verification
    assert q.get_job(jid).status == "running"
    assert q.retry_failed(jid) == 0


def test_retry_failed_all_jobs_and_by_error_class(q: Queue) -> None:
    a = q.enqueue(job(), msgs(2)).job_id
    _fail_all(q, "timeout", n=1)
    _fail_all(q, "not_on_whatsapp")
    b = q.enqueue(job(), msgs(2, start=10)).job_id
    _fail_all(q, "timeout")
    stopped = q.enqueue(job(), msgs(1, start=20)).job_id
    _fail_all(q, "timeout")
    q.conn.execute("UPDATE jobs SET status = 'stopped' WHERE id = ?", (stopped,))
    assert q.retry_failed(error_class="timeout") == 3  # a:1 + b:2, not the stopped job
    assert q.counts(a)["failed"] == 1 and q.counts(b)["failed"] == 0 and q.counts(stopped)["failed"] == 1
    assert q.retry_failed() == 1
    with pytest.raises(errors.InvalidTransition, match="stopped"):
        q.retry_failed(stopped)


def test_retry_failed_one_message(q: Queue) -> None:
    q.enqueue(job(), msgs(2))
    ids = _fail_all(q)
    assert q.retry_failed(message_id=ids[1]) == 1
    assert [q.get_message(i).status for i in ids] == ["failed", "pending"]
    with pytest.raises(errors.InvalidTransition, match="not failed"):
        q.retry_failed(message_id=ids[1])
    with pytest.raises(errors.MessageNotFound):
        q.retry_failed(message_id=999)


def test_prune_removes_old_finished_messages_but_keeps_counts(q: Queue, clock: Clock) -> None:
    old = q.enqueue(job(), msgs(3)).job_id
    drain(q)
    stopped = q.enqueue(job(), msgs(2, start=10)).job_id
    q.stop_job(stopped)
    busy = q.enqueue(job(), msgs(2, start=20)).job_id
    clock.advance(10 * 86400)
    recent = q.enqueue(job(), msgs(1, start=30)).job_id
    drain(q)
    before = {j: q.counts(j) for j in (old, stopped, busy, recent)}
    assert q.prune(older_than_days=5) == 5
    assert list(q.iter_messages(old)) == [] and list(q.iter_messages(stopped)) == []
    assert len(list(q.iter_messages(busy))) == 2  # drained just now: finished too recently
    assert len(list(q.iter_messages(recent))) == 1
    assert {j: q.counts(j) for j in (old, stopped, busy, recent)} == before
    assert q.pruned_at(old) == clock.now and q.pruned_at(recent) is None
    assert q.events(message_id=1) == []
    assert q.events(job_id=old)[-1].kind == "pruned"
    assert q.prune(older_than_days=5) == 0
    with pytest.raises(errors.InvalidTransition, match="pruned"):
        q.retry_failed(old)


def test_prune_never_touches_pending_work(q: Queue, clock: Clock) -> None:
    jid = q.enqueue(job(), msgs(2)).job_id
    c = q.claim("w", "s", lease_seconds=60)
    assert c
    q.stop_job(jid)  # one cancelled, one still sending: not finished
    clock.advance(100 * 86400)
    assert q.prune(older_than_days=1) == 0
    assert len(list(q.iter_messages(jid))) == 2
    with pytest.raises(errors.BadInput):
        q.prune(-1)


def test_counts_and_summaries(q: Queue) -> None:
    a = q.enqueue(job(name="a"), msgs(3)).job_id
    b = q.enqueue(job(name="b"), msgs(2, start=10)).job_id
    c = q.claim("w", "s", lease_seconds=60)
    assert c
    q.mark_sent(c, tick="sent", session="s")
    counts = q.counts(a)
    assert set(counts) == set(MESSAGE_STATUSES)
    assert counts == {**dict.fromkeys(MESSAGE_STATUSES, 0), "pending": 2, "sent": 1}
    sums = q.summaries()
    assert [s.job.name for s in sums] == ["a", "b"]
    assert (sums[0].total, sums[0].done, sums[1].total, sums[1].done) == (3, 1, 2, 0)
    assert [s.job.id for s in q.summaries(b)] == [b]
    assert [j.id for j in q.list_jobs()] == [a, b]


def test_counts_match_the_messages_table(q: Queue, clock: Clock) -> None:
    """The trigger-kept counters agree with a GROUP BY after a mix of every transition."""
    q.add_optouts(["+14155550003"])
    jid = q.enqueue(job(max_attempts=2), msgs(12)).job_id
    cs = [q.claim("w", "s", lease_seconds=10) for _ in range(6)]
    assert all(cs)
    q.mark_sent(cs[0], tick="sent", session="s")  # type: ignore[arg-type]
    q.mark_failed(cs[1], error="x", error_class="y")  # type: ignore[arg-type]
    q.schedule_retry(cs[2], error="x", error_class="y", delay=0)  # type: ignore[arg-type]
    q.release(cs[3], reason="bye")  # type: ignore[arg-type]
    q.add_optouts(["+14155550011"])
    clock.advance(11)
    q.claim("w", "s", lease_seconds=10)
    q.retry_failed(jid)
    q.stop_job(jid)
    real = dict.fromkeys(MESSAGE_STATUSES, 0)
    for status, n in q.conn.execute(
        "SELECT status, count(*) FROM messages WHERE job_id = ? GROUP BY 1", (jid,)
    ):
        real[status] = n
    assert q.counts(jid) == real


# --- workers -----------------------------------------------------------------------------------------


def test_register_worker_refuses_a_live_session(q: Queue, clock: Clock) -> None:
    w1 = q.register_worker("shop", pid=111, host="box", stale_after=30)
    assert len(w1) == 32
    with pytest.raises(errors.SessionBusy, match=r"pid 111 on box"):
        q.register_worker("shop", pid=222, host="other", stale_after=30)
    w_other = q.register_worker("support", pid=333, host="box")
    clock.advance(20)
    q.heartbeat(w1, "sending")
    clock.advance(20)
    with pytest.raises(errors.SessionBusy):
        q.register_worker("shop", pid=222, host="other", stale_after=30)
    clock.advance(11)
    w2 = q.register_worker("shop", pid=222, host="other", stale_after=30)  # w1 went stale: replaced
    infos = {w.id: w for w in q.workers(stale_after=30)}
    assert set(infos) == {w2, w_other}
    assert infos[w2].alive and not infos[w_other].alive
    assert (infos[w2].pid, infos[w2].host, infos[w2].session) == (222, "other", "shop")
    with pytest.raises(errors.SessionBusy):
        q.heartbeat(w1)  # the zombie learns it was replaced
    q.unregister_worker(w2)
    q.unregister_worker(w2)
    assert [w.id for w in q.workers()] == [w_other]


def test_heartbeat_updates_state_and_time(q: Queue, clock: Clock) -> None:
    w = q.register_worker("s", pid=1, host="h")
    clock.advance(5)
    q.heartbeat(w, "waiting_for_login")
    clock.advance(5)
    q.heartbeat(w)
    (info,) = q.workers(stale_after=30)
    assert (info.heartbeat_at, info.state, info.started_at) == (T0 + 10, "waiting_for_login", T0)


# --- opt-outs and reading ----------------------------------------------------------------------------


def test_optouts_add_list_remove(q: Queue) -> None:
    assert q.add_optouts(["+14155550001", "+14155550002"], reason="STOP") == 2
    assert q.add_optouts(["+14155550001"]) == 0
    assert q.is_opted_out("+14155550001") and not q.is_opted_out("+14155550003")
    assert q.list_optouts() == [("+14155550001", T0, "STOP"), ("+14155550002", T0, "STOP")]
    assert q.remove_optouts(["+14155550001", "+14155550009"]) == 1
    assert [p for p, _, _ in q.list_optouts()] == ["+14155550002"]


def test_get_message_and_iter_messages(q: Queue) -> None:
    with pytest.raises(errors.MessageNotFound):
        q.get_message(1)
    a = q.enqueue(job(), msgs(25)).job_id
    b = q.enqueue(job(), msgs(5)).job_id
    got = list(q.iter_messages(a, page_size=4))
    assert len(got) == 25 and [m.id for m in got] == sorted(m.id for m in got)
    assert all(m.job_id == a for m in got)
    assert [m.job_id for m in q.iter_messages(b)] == [b] * 5


def test_iter_messages_allows_writes_while_iterating(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(10)).job_id
    seen = 0
    for _m in q.iter_messages(jid, page_size=3):
        seen += 1
        c = q.claim("w", "s", lease_seconds=60)
        if c:
            q.mark_sent(c, tick="sent", session="s")
    assert seen == 10


def test_events_newest_last_with_limit(q: Queue) -> None:
    jid = q.enqueue(job(), msgs(2)).job_id
    drain(q)
    evs = q.events()
    assert [e.id for e in evs] == sorted(e.id for e in evs)
    assert evs[-1].kind == "job_status" and evs[-1].to_status == "completed"
    assert q.events(limit=2) == evs[-2:]
    assert {e.job_id for e in q.events(job_id=jid)} == {jid}
    assert [e.to_status for e in q.events(message_id=1)] == ["sending", "sent"]


# --- opening, errors, files ----------------------------------------------------------------------------


def test_files_are_private(db_path: Path) -> None:
    assert not db_path.parent.exists()
    q = Queue(db_path)
    q.enqueue(job(), msgs(1))
    assert stat.S_IMODE(os.stat(db_path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    wal = Path(str(db_path) + "-wal")
    assert wal.exists() and stat.S_IMODE(os.stat(wal).st_mode) == 0o600
    q.close()


def test_existing_folder_is_not_chmodded(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Queue(folder / "q.db").close()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755


def test_connection_settings(db_path: Path) -> None:
    q = Queue(db_path, synchronous="FULL")
    c = q.conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    q.close()
    q = Queue(db_path)
    assert q.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    q.close()
    with pytest.raises(ValueError):
        Queue(db_path, synchronous="SOMETIMES")


def test_create_false_needs_an_existing_file(db_path: Path) -> None:
    with pytest.raises(errors.DatabaseError, match="no wabulk database"):
        Queue(db_path, create=False)
    assert not db_path.exists()
    Queue(db_path).close()
    Queue(db_path, create=False).close()


def test_not_a_database_file(tmp_path: Path) -> None:
    bad = tmp_path / "contacts.csv"
    bad.write_text("phone,name\n" * 500)
    with pytest.raises(errors.DatabaseError, match=r"is not a wabulk database \(file is not a database\)"):
        Queue(bad)


def test_corrupt_database(db_path: Path) -> None:
    q = Queue(db_path)
    q.enqueue(job(), msgs(300))
    q.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    q.close()
    data = bytearray(db_path.read_bytes())
    data[4096 * 2 : 4096 * 6] = b"\xff" * (4096 * 4)  # smash pages of the schema's tables
    db_path.write_bytes(bytes(data))
    with pytest.raises(errors.DatabaseError) as info:
        q = Queue(db_path)
        q.counts(1)
        list(q.iter_messages(1))
        q.enqueue(job(), msgs(300, start=1000))
    assert str(db_path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_other_programs_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(errors.DatabaseError, match="not a wabulk database.*photos"):
        Queue(other)
    conn = sqlite3.connect(other)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["photos"]
    conn.close()


def test_database_from_a_newer_wabulk_is_refused(db_path: Path) -> None:
    Queue(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('wabulk', 'm999_future', 'x')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(errors.DatabaseError, match="newer wabulk.*m999_future"):
        Queue(db_path)


def test_old_sqlite_is_refused(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(errors.DatabaseError, match=r"SQLite 3\.35\.0 or newer.*3\.31\.1"):
        Queue(db_path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(errors.DatabaseError, match="is a directory"):
        Queue(tmp_path)


def test_locked_database_becomes_a_database_error(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = Queue(db_path)
    q.enqueue(job(), msgs(1))
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        q.conn.execute("PRAGMA busy_timeout = 50")  # only to keep the test fast
        q.busy_retry_for = 0.0  # no retries: what a caller sees once the retry window is over
        with pytest.raises(errors.DatabaseError, match="busy.*database is locked"):
            q.claim("w", "s", lease_seconds=60)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not q.conn.in_transaction
    assert q.claim("w", "s", lease_seconds=60) is not None
    q.close()


def test_full_disk_is_a_database_error_and_writes_nothing(q: Queue) -> None:
    q.enqueue(job(), msgs(1))
    pages = q.conn.execute("PRAGMA page_count").fetchone()[0]
    q.conn.execute(f"PRAGMA max_page_count = {pages + 5}")  # SQLITE_FULL, as on a full disk
    with pytest.raises(errors.DatabaseError, match="disk is full.*database or disk is full"):
        q.enqueue(job(), msgs(5000, start=100, body="a longer message body {i} " * 4))
    assert not q.conn.in_transaction
    assert [j.id for j in q.list_jobs()] == [1]
    c = q.claim("w", "s", lease_seconds=60)  # still usable afterwards
    assert c is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attempt to write a readonly database", "is read-only"),
        ("database or disk is full", "the disk is full"),
        ("database disk image is malformed", "is corrupt"),
        ("unable to open database file", "cannot open"),
        ("disk I/O error", "cannot read or write"),
        ("something else", "database error (something else)"),
    ],
)
def test_sqlite_errors_are_described(text: str, expected: str) -> None:
    msg = queue_mod._describe(Path("/data/w.db"), sqlite3.OperationalError(text))
    assert "/data/w.db" in msg and expected in msg and text in msg


def test_queue_is_a_context_manager(db_path: Path) -> None:
    with Queue(db_path) as q:
        q.enqueue(job(), msgs(1))
    with pytest.raises(errors.DatabaseError, match="closed"):
        q.counts(1)
    q.close()


def test_migrations_recorded_on_open(q: Queue) -> None:
    names = [
        r[0]
        for r in q.conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wabulk' ORDER BY id"
        )
    ]
    assert names == migrations.names()


def test_a_dead_worker_on_this_host_is_not_alive(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    q = Queue(tmp_path / "q.db")
    try:
        q.register_worker("s", pid=dead.pid, host=identity.place_key())
        [w] = q.workers()  # its heartbeat is fresh, but its process is gone: not "alive yes" for 15 s
        assert not w.alive
        q.register_worker("t", pid=dead.pid, host="another-host")
        assert {w.session: w.alive for w in q.workers()} == {"s": False, "t": True}  # there: the heartbeat
    finally:
        q.close()


def _not_writable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make wabulk see ``path`` as a file this user cannot write (tests run as root, which writes anyway)."""
    real = os.access

    def access(p: object, mode: int, **kw: object) -> bool:
        if Path(str(p)) == path and mode & os.W_OK:
            return False
        return real(p, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("wabulk.store.base.os.access", access)


def test_a_file_the_user_cannot_write_opens_read_only(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Queue(db_path, clock=clock) as q:
        job_id = q.enqueue(job(), msgs(3)).job_id
    _not_writable(monkeypatch, db_path)
    with Queue(db_path, clock=clock) as ro:
        assert ro.read_only
        assert ro.counts(job_id)["pending"] == 3
        with pytest.raises(errors.DatabaseError, match="is read-only"):
            ro.stop_job(job_id)
    with Queue(db_path, clock=clock) as q:  # nothing changed
        assert q.counts(job_id)["pending"] == 3


def test_a_read_only_file_of_an_older_wabulk_is_not_migrated(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    Queue(db_path, clock=clock).close()
    conn = sqlite3.connect(db_path)
    last = conn.execute("SELECT max(rowid) FROM _sqlite_migrations").fetchone()[0]
    conn.execute("DELETE FROM _sqlite_migrations WHERE rowid = ?", (last,))
    conn.commit()
    conn.close()
    _not_writable(monkeypatch, db_path)
    with pytest.raises(errors.DatabaseError, match="read-only and was written by an older wabulk"):
        Queue(db_path, clock=clock)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT max(rowid) FROM _sqlite_migrations").fetchone()[0] == last - 1
    conn.close()
