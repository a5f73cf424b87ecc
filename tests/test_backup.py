"""`wabulk backup FILE`: a consistent, private copy of a database that is being written to."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from typer.testing import CliRunner

from wabulk.cli import app
from wabulk.models import NewJob, NewMessage
from wabulk.queue import Queue

runner = CliRunner()


def enqueue(q: Queue, n: int, start: int) -> None:
    msgs = [NewMessage(phone=f"+1415{i:07d}", body=f"Hi {i}", name=None) for i in range(start, start + n)]
    q.enqueue(NewJob(name=f"j{start}", template="Hi"), msgs)


def test_backup_while_another_process_writes_is_consistent(db_path: Path, tmp_path: Path) -> None:
    with Queue(db_path) as q:
        enqueue(q, 2000, 0)
    stop = threading.Event()

    def writer() -> None:
        with Queue(db_path) as w:
            i = 1
            while not stop.is_set() and i < 200:
                enqueue(w, 500, i * 10_000)
                c = w.claim("w", "s", lease_seconds=60)
                if c is not None:
                    w.mark_sent(c, tick="sent", session="s")
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        copies = []
        for k in range(3):
            dest = tmp_path / f"copy{k}.db"
            r = runner.invoke(app, ["backup", str(dest)])
            assert r.exit_code == 0, r.output
            assert r.stdout.startswith(f"Backed up to {dest} (")
            copies.append(dest)
    finally:
        stop.set()
        t.join()
    for dest in copies:
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert not Path(str(dest) + "-wal").exists()
        with Queue(dest, create=False) as c:
            # The trigger-kept counters agree with the rows: one instant, not a torn copy.
            for s in c.summaries():
                real = dict(
                    c.conn.execute(
                        "SELECT status, count(*) FROM messages WHERE job_id = ? GROUP BY status", (s.job.id,)
                    ).fetchall()
                )
                assert {k: v for k, v in s.counts.items() if v} == real


def test_backup_refuses_to_overwrite_or_copy_a_stranger(db_path: Path, tmp_path: Path) -> None:
    Queue(db_path).close()
    dest = tmp_path / "b.db"
    dest.write_text("keep me")
    r = runner.invoke(app, ["backup", str(dest)])
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: {dest} exists")
    assert dest.read_text() == "keep me"
    assert runner.invoke(app, ["backup", str(dest), "--force"]).exit_code == 0
    r = runner.invoke(app, ["--db", str(tmp_path / "none.db"), "backup", str(tmp_path / "x.db")])
    assert r.exit_code == 1 and "no wabulk database" in r.stderr
    assert not (tmp_path / "x.db").exists()
