"""Receipt tracking (issue 8) against the real queue and a FakeTransport, with an injected clock."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import Clock
from wabulk import errors, exitcodes
from wabulk.cli import app
from wabulk.fakes import FAKE_CAPABILITIES, FakeTransport
from wabulk.models import TICK_DELIVERED, TICK_READ, TICK_SENT, NewJob, NewMessage
from wabulk.pacing import PROFILES
from wabulk.queue import Queue
from wabulk.receipts import (
    attention_lines,
    export_undelivered,
    format_age,
    parse_age,
    undelivered_counts,
)
from wabulk.sender import RECEIPTS_PUSHED
from wabulk.worker import Worker, WorkerConfig, WorkerEvent
from wabulk.worker.receipts import track

T0 = 1_780_000_000.0
HOUR = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def fake(clock: Clock) -> FakeTransport:
    return FakeTransport(clock=clock, advance=clock.advance, send_seconds=1.0)


def phones(n: int) -> list[str]:
    return [f"+1415555{i:04d}" for i in range(n)]


def send_all(
    queue: Queue,
    fake: FakeTransport,
    clock: Clock,
    numbers: list[str],
    *,
    session: str = "main",
    gap: float = 60.0,
) -> int:
    """Enqueue and send every message through a real Worker (one minute apart); returns the job id."""
    job = queue.enqueue(
        NewJob(name="promo", template="Hi"), [NewMessage(phone=p, body=f"Hello {p[-4:]}") for p in numbers]
    ).job_id
    w = Worker(
        queue, fake, WorkerConfig(session=session, pace=PROFILES["off"]), clock=clock, sleep=clock.sleep
    )
    for _ in numbers:
        assert w.run_once().outcome == "sent"
        clock.advance(gap)
    w.shutdown()
    return job


def msg(queue: Queue, job: int, phone: str):  # type: ignore[no-untyped-def]
    return next(m for m in queue.iter_messages(job) if m.phone == phone)


def sends(fake: FakeTransport) -> int:
    return sum(1 for c in fake.calls if c[0] == "send")


# --- durations --------------------------------------------------------------------------------------------


def test_parse_and_format_age() -> None:
    assert parse_age("90") == 90
    assert parse_age("10m") == 600
    assert parse_age("24h") == 86400
    assert parse_age("1h30m") == 5400
    assert parse_age("0.5s") == 0.5
    assert format_age(86400) == "1d" and format_age(5400) == "1h30m" and format_age(0.2) == "0s"
    with pytest.raises(errors.BadInput, match="--older-than 'soon' is not a duration"):
        parse_age("soon", option="--older-than")


# --- the tick seen at send time ------------------------------------------------------------------------


def test_tick_seen_at_send_time_sets_delivered_and_read(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b, c = phones(3)
    fake.set_tick(b, TICK_DELIVERED).set_tick(c, TICK_READ)
    job = send_all(queue, fake, clock, [a, b, c])
    ma, mb, mc = (msg(queue, job, p) for p in (a, b, c))
    assert (ma.receipt, ma.delivered_at, ma.read_at) == (TICK_SENT, None, None)
    assert mb.receipt == TICK_DELIVERED and mb.delivered_at == mb.sent_at and mb.read_at is None
    assert mc.receipt == TICK_READ and mc.delivered_at == mc.read_at == mc.sent_at
    counts = queue.receipt_counts(job, undelivered_before=clock())
    assert counts == {"delivered": 2, "read": 1, "undelivered": 1}


# --- track: transitions ----------------------------------------------------------------------------------


def test_track_records_sent_then_delivered_then_read_and_never_sends(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    (a,) = phones(1)
    job = send_all(queue, fake, clock, [a])
    before = sends(fake)
    clock.advance(HOUR)
    res = track(queue, fake, session="main", older_than=600, clock=clock)
    assert (len(res.checked), res.unchanged, res.delivered, res.read) == (1, 1, 0, 0)
    assert msg(queue, job, a).receipt == TICK_SENT

    fake.set_tick(a, TICK_DELIVERED)
    clock.advance(HOUR)
    seen_at = clock()
    res = track(queue, fake, session="main", older_than=600, clock=clock)
    m = msg(queue, job, a)
    assert res.delivered == 1 and m.receipt == TICK_DELIVERED
    assert m.delivered_at == seen_at and m.read_at is None

    fake.set_tick(a, TICK_READ)
    clock.advance(HOUR)
    res = track(queue, fake, session="main", older_than=600, clock=clock)
    m = msg(queue, job, a)
    assert res.read == 1 and m.receipt == TICK_READ and m.delivered_at == seen_at and m.read_at == clock()
    # Read messages are done: nothing left to look at.
    clock.advance(HOUR)
    assert track(queue, fake, session="main", older_than=600, clock=clock).checked == []
    assert sends(fake) == before and len(fake.deliveries) == 1


def test_receipts_never_downgrade(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    (a,) = phones(1)
    fake.set_tick(a, TICK_DELIVERED)
    job = send_all(queue, fake, clock, [a])
    delivered_at = msg(queue, job, a).delivered_at
    fake.set_tick(a, TICK_SENT)  # the chat somehow shows one tick again
    clock.advance(HOUR)
    track(queue, fake, session="main", older_than=600, clock=clock)
    queue.record_receipt(msg(queue, job, a).id, TICK_SENT, clock())
    m = msg(queue, job, a)
    assert (m.receipt, m.delivered_at) == (TICK_DELIVERED, delivered_at)
    assert queue.receipt_counts(job, undelivered_before=clock())["delivered"] == 1


def test_bubble_not_found_records_nothing(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    (a,) = phones(1)
    job = send_all(queue, fake, clock, [a])
    fake.deliveries.clear()  # e.g. the chat history is gone after a re-link
    clock.advance(HOUR)
    res = track(queue, fake, session="main", older_than=600, clock=clock)
    assert res.not_found == 1 and msg(queue, job, a).receipt == TICK_SENT


# --- track: selection -----------------------------------------------------------------------------------


def test_track_takes_oldest_first_within_limit_and_age(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    numbers = phones(5)
    send_all(queue, fake, clock, numbers, gap=300.0)  # sent 5 minutes apart
    # Now: the last was sent 5 minutes ago, the one before 10 minutes and a second ago.
    res = track(queue, fake, session="main", older_than=600, limit=2, clock=clock)
    assert [c.phone for c in res.checked] == numbers[:2]
    # Just checked ones wait --older-than before their next look: the next pass goes on with the others.
    res = track(queue, fake, session="main", older_than=600, limit=10, clock=clock)
    assert [c.phone for c in res.checked] == numbers[2:4]  # the 5th is younger than 10 minutes
    clock.advance(601)
    res = track(queue, fake, session="main", older_than=600, limit=10, clock=clock)
    assert [c.phone for c in res.checked] == numbers


def test_track_only_looks_at_messages_the_session_sent(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    send_all(queue, fake, clock, [a], session="shop")
    job_b = send_all(queue, fake, clock, [b], session="main")
    clock.advance(HOUR)
    res = track(queue, fake, session="main", older_than=600, clock=clock)
    assert [c.phone for c in res.checked] == [b]
    assert track(queue, fake, session="main", job_id=job_b + 1, older_than=0, clock=clock).checked == []


def test_session_errors_stop_the_pass_and_keep_what_was_recorded(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = send_all(queue, fake, clock, [a, b])
    fake.set_tick(a, TICK_DELIVERED).set_tick(b, TICK_DELIVERED)
    real = fake.read_receipt

    def logout_on_b(phone: str, body: str, since: float) -> str | None:
        if phone == b:
            raise errors.NotLoggedIn("logged out")
        return real(phone, body, since)

    fake.read_receipt = logout_on_b  # type: ignore[method-assign]
    clock.advance(HOUR)
    with pytest.raises(errors.NotLoggedIn):
        track(queue, fake, session="main", older_than=600, clock=clock)
    assert (msg(queue, job, a).receipt, msg(queue, job, b).receipt) == (TICK_DELIVERED, TICK_SENT)


# --- undelivered -----------------------------------------------------------------------------------------


def test_undelivered_flag_after_the_age(queue: Queue, fake: FakeTransport, clock: Clock) -> None:
    a, b = phones(2)
    fake.set_tick(b, TICK_DELIVERED)
    job = send_all(queue, fake, clock, [a, b])
    summaries = queue.summaries(job)
    after = 24 * HOUR
    rc = undelivered_counts(queue, summaries, now=clock(), after=after)
    assert rc[job]["undelivered"] == 0 and attention_lines(summaries, rc, after) == []
    clock.advance(after)
    rc = undelivered_counts(queue, summaries, now=clock(), after=after)
    assert rc[job] == {"delivered": 1, "read": 0, "undelivered": 1}
    assert attention_lines(summaries, rc, after) == ["job 1 (promo): 1 message undelivered after 1d"]
    out = io.StringIO()
    assert export_undelivered(queue, job, out, now=clock(), after=after) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["phone"] for r in rows] == ["'" + a]
    # Delivered late: no longer undelivered.
    queue.record_receipt(msg(queue, job, a).id, TICK_DELIVERED, clock())
    assert queue.receipt_counts(job, undelivered_before=clock())["undelivered"] == 0


def test_status_check_and_export_undelivered_cli(db_path: Path, clock: Clock) -> None:
    q = Queue(db_path)  # real time: the CLI measures age with the wall clock
    fake = FakeTransport()
    a, b = phones(2)
    fake.set_tick(b, TICK_READ)
    job = q.enqueue(
        NewJob(name="promo", template="Hi"), [NewMessage(phone=p, body=f"Hello {p[-4:]}") for p in (a, b)]
    ).job_id
    w = Worker(q, fake, WorkerConfig(session="main", pace=PROFILES["off"]))
    w.run_once()
    w.run_once()
    w.shutdown()
    q.close()
    runner = CliRunner()
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)["jobs"][0]
    assert (row["sent"], row["delivered"], row["read"], row["undelivered"]) == (2, 1, 1, 0)
    res = runner.invoke(app, ["status", "--check"])
    assert res.exit_code == 0, res.output
    assert "delivered" in res.output and "undelivered" not in res.output

    res = runner.invoke(app, ["status", "--check", "--undelivered-after", "0s"])
    assert res.exit_code == 4, res.output
    assert "job 1 (promo): 1 message undelivered after 0s" in res.output
    res = runner.invoke(app, ["export", str(job), "--undelivered", "--undelivered-after", "0"])
    assert res.exit_code == 0, res.output
    assert [r["phone"] for r in csv.DictReader(io.StringIO(res.output))] == ["'" + a]
    res = runner.invoke(app, ["status", "--undelivered-after", "later"])
    assert res.exit_code == 2 and "--undelivered-after 'later' is not a duration" in res.output


def test_track_cli_refuses_a_session_a_worker_uses(db_path: Path) -> None:
    q = Queue(db_path)
    q.register_worker("main", pid=__import__("os").getpid(), host=__import__("socket").gethostname())
    q.close()
    res = CliRunner().invoke(app, ["track", "--session", "main"])
    assert res.exit_code == 1
    assert "--track-receipts" in res.output


# --- the worker's --track-receipts ----------------------------------------------------------------------


def test_worker_tracks_receipts_in_idle_time_only_when_asked(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    a, b = phones(2)
    job = send_all(queue, fake, clock, [a, b])
    fake.set_tick(a, TICK_READ).set_tick(b, TICK_DELIVERED)
    clock.advance(HOUR)
    before = sends(fake)
    off = Worker(
        queue, fake, WorkerConfig(session="main", pace=PROFILES["off"]), clock=clock, sleep=clock.sleep
    )
    assert off.run_once().outcome == "idle"
    assert not any(c[0] == "read_receipt" for c in fake.calls)
    off.shutdown()
    events: list[object] = []
    on = Worker(
        queue,
        fake,
        WorkerConfig(session="main", pace=PROFILES["off"], track_receipts=True),
        clock=clock,
        sleep=clock.sleep,
        on_event=events.append,
    )
    assert on.run_once().outcome == "idle"
    assert on.track_receipts_once() == 2
    assert (msg(queue, job, a).receipt, msg(queue, job, b).receipt) == (TICK_READ, TICK_DELIVERED)
    assert [e.kind for e in events].count("receipt") == 2  # type: ignore[attr-defined]
    # Nothing left due: the next turn opens no chat, and asks the database again only after a while.
    assert on.track_receipts_once() == 0
    on.shutdown()
    assert sends(fake) == before


def test_a_provider_whose_receipts_are_pushed_is_never_polled(
    queue: Queue, fake: FakeTransport, clock: Clock
) -> None:
    """Decided once from the provider's capabilities, before any job starts: --track-receipts on a session
    whose service pushes its receipts opens no chat, and the run says so once."""
    a, b = phones(2)
    send_all(queue, fake, clock, [a, b])
    clock.advance(HOUR)
    fake.capabilities = replace(FAKE_CAPABILITIES, receipts=RECEIPTS_PUSHED)
    events: list[WorkerEvent] = []
    config = WorkerConfig(session="main", pace=PROFILES["off"], track_receipts=True, until_done=True)
    worker = Worker(queue, fake, config, clock=clock, sleep=clock.sleep, on_event=events.append)
    assert not worker.polls_receipts
    assert worker.run_once().outcome == "idle" and worker.track_receipts_once() == 0
    assert worker.run() == exitcodes.OK
    assert not any(c[0] == "read_receipt" for c in fake.calls)
    warned = [e.text for e in events if e.kind == "warning" and "receipts pushed" in e.text]
    assert warned == [
        "session 'main' gets its receipts pushed by the service: --track-receipts has nothing to look up"
    ]


# --- schema ---------------------------------------------------------------------------------------------


def test_m004_backfills_receipt_counts_of_an_existing_database(db_path: Path) -> None:
    import sqlite3

    from sqlite_utils import Database

    from wabulk import migrations

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrations.migrations.apply(Database(conn, execute_plugins=False), stop_before="m004_receipts")
    conn.execute("INSERT INTO jobs (name, template, created_at) VALUES ('old', 'Hi', 0)")
    for i, (d, r) in enumerate([(1.0, None), (1.0, 2.0), (None, None)]):
        conn.execute(
            "INSERT INTO messages (job_id, phone, body, status, created_at, updated_at, sent_at,"
            " delivered_at, read_at) VALUES (1, ?, 'x', 'sent', 0, 0, 0, ?, ?)",
            (f"+1{i}", d, r),
        )
    conn.close()
    with Queue(db_path) as q:
        assert q.receipt_counts(1, undelivered_before=10.0) == {"delivered": 2, "read": 1, "undelivered": 1}


def test_receipt_queries_use_their_indexes(queue: Queue) -> None:
    plans = {
        "track": "SELECT id FROM messages INDEXED BY idx_messages_track WHERE status = 'sent' AND read_at IS"
        " NULL AND sent_by_session = 'm' AND sent_at < 5 ORDER BY sent_at, id LIMIT 3",
        "undelivered": "SELECT count(*) FROM messages INDEXED BY idx_messages_undelivered WHERE job_id = 1"
        " AND status = 'sent' AND delivered_at IS NULL AND sent_at < 5",
    }
    for name, sql in plans.items():
        detail = " ".join(str(r[-1]) for r in queue.conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert detail.startswith(f"SEARCH messages USING INDEX idx_messages_{name} ("), detail
        assert "TEMP B-TREE" not in detail, detail
