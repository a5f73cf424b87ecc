"""Several processes on one database file: no message is ever claimed twice."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from wabulk import migrations
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue

N_MESSAGES = 5000
N_WORKERS = 4


def _claim_until_empty(
    db: str, worker: str, start_evt: multiprocessing.synchronize.Event
) -> tuple[list[int], list[str]]:
    """Child process: claim and complete until the queue is empty. Returns (ids, errors)."""
    claimed: list[int] = []
    problems: list[str] = []
    q = Queue(db)
    start_evt.wait(30)
    try:
        while True:
            c = q.claim(worker, "s", lease_seconds=300)
            if c is None:
                break
            claimed.append(c.message_id)
            # Vary the outcome so both kinds of completion interleave with other claims.
            if c.message_id % 7 == 0 and c.attempt == 1:
                q.schedule_retry(c, error="transient", error_class="timeout", delay=0)
            else:
                if c.message_id % 5 == 0:  # some stamp first (a third transaction), to keep it quick
                    q.mark_send_started(c)
                q.mark_sent(c, tick="sent", session="s")
    except Exception as exc:  # reported to the parent, which fails the test
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        q.close()
    return claimed, problems


def _open_fresh(db: str, start_evt: multiprocessing.synchronize.Event) -> str:
    start_evt.wait(30)
    Queue(db).close()
    return "ok"


@pytest.mark.timeout(120)
def test_four_processes_never_claim_the_same_message(db_path: Path) -> None:
    q = Queue(db_path)
    jid = q.enqueue(
        NewJob(name="load", template="x"),
        (NewMessage(phone=f"+1415{i:07d}", body=f"m{i}") for i in range(N_MESSAGES)),
    ).job_id
    q.close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(N_WORKERS) as pool:
            pending = [
                pool.apply_async(_claim_until_empty, (str(db_path), f"w{i}", start)) for i in range(N_WORKERS)
            ]
            start.set()
            results = [p.get(timeout=110) for p in pending]

    problems = [p for _, errs in results for p in errs]
    assert problems == []
    all_claims = [mid for ids, _ in results for mid in ids]
    retried = {mid for mid in range(1, N_MESSAGES + 1) if mid % 7 == 0}
    # Each message is claimed once, except the deliberately retried ones, claimed exactly twice.
    per_message = Counter(all_claims)
    assert set(per_message) == set(range(1, N_MESSAGES + 1))
    assert {mid: n for mid, n in per_message.items() if n != 1} == dict.fromkeys(retried, 2)
    assert all(len(ids) > 0 for ids, _ in results), "every process should have won some claims"

    q = Queue(db_path)
    counts = q.counts(jid)
    assert counts["sent"] == N_MESSAGES and counts["pending"] == counts["sending"] == 0
    assert q.get_job(jid).status == "completed"
    # Every message was marked sent exactly once (one sending->sent event each).
    sent_events = q.conn.execute(
        "SELECT message_id, count(*) FROM events WHERE to_status = 'sent' GROUP BY message_id"
    ).fetchall()
    assert len(sent_events) == N_MESSAGES and {n for _, n in sent_events} == {1}
    assert q.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    q.close()


@pytest.mark.timeout(60)
def test_processes_creating_the_same_new_file_at_once(tmp_path: Path) -> None:
    db = tmp_path / "new" / "wabulk.db"
    db.parent.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(N_WORKERS) as pool:
            pending = [pool.apply_async(_open_fresh, (str(db), start)) for _ in range(N_WORKERS)]
            start.set()  # all four race through create + migrate + WAL switch together
            assert [p.get(timeout=50) for p in pending] == ["ok"] * N_WORKERS
    conn = sqlite3.connect(db)
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == migrations.names()  # each applied exactly once despite the race
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert os.path.exists(db)
