"""Queue stress without a browser: ``--procs`` processes claim, stamp and complete ``--messages`` messages on
one database through :class:`wabulk.queue.Queue` (a fake sender in between that appends each claimed id to an
``O_APPEND`` file). Counts duplicate claims, messages never completed, and any ``database is locked`` /
``busy`` error that reached the caller (each would reach the user as an ``Error:`` line).

    python -m tests.torture.queue_stress --messages 100000 --procs 4
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.common import Figures, enqueue_direct, integrity, python_env, rows


def child(db: Path, out: Path, session: str) -> int:
    """One claiming process: loop until the queue is empty; print its counters as JSON."""
    from wabulk.errors import DatabaseError, LeaseLost
    from wabulk.models import TICK_SENT
    from wabulk.queue import Queue

    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stats = collections.Counter()
    with Queue(db, synchronous="NORMAL") as q:
        wid = q.register_worker(session, pid=os.getpid(), host="stress")
        empty = 0
        while empty < 3:
            try:
                c = q.claim(wid, session, lease_seconds=300)
                if c is None:
                    empty += 1
                    time.sleep(0.05)
                    continue
                empty = 0
                q.mark_send_started(c)
                os.write(fd, f"{c.message_id}\n".encode())  # the fake send
                q.mark_sent(c, tick=TICK_SENT, session=session)
                stats["sent"] += 1
            except LeaseLost:
                stats["lease_lost"] += 1
            except DatabaseError as e:
                low = str(e).lower()
                stats["locked" if "locked" in low or "busy" in low else "db_error"] += 1
                print(f"Error: {e}", file=sys.stderr)
        q.unregister_worker(wid)
    print(json.dumps(stats))
    return 0


def run(messages: int, procs: int = 4, tmpdir: Path | None = None) -> Figures:
    t0 = time.monotonic()
    fig = Figures("queue-stress", messages=messages)
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        tmp = Path(d)
        db, out = tmp / "wabulk.db", tmp / "claims.txt"
        enqueue_direct(db, messages)
        t1 = time.monotonic()
        ps = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.torture.queue_stress", "--child", str(db), str(out), f"p{i}"],
                env=python_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(procs)
        ]
        totals: collections.Counter[str] = collections.Counter()
        errors = []
        for p in ps:
            o, e = p.communicate(timeout=3600)
            if p.returncode != 0:
                errors.append(f"child exit {p.returncode}: {e.strip()[-300:]}")
                continue
            totals.update(json.loads(o.strip().splitlines()[-1]))
            if "Traceback" in e:
                errors.append(e.strip()[-300:])
        drain = time.monotonic() - t1
        claimed = [int(x) for x in out.read_text().split()] if out.exists() else []
        c = collections.Counter(claimed)
        fig.delivered = len(claimed)
        fig.duplicates = sum(n - 1 for n in c.values() if n > 1)
        data = rows(db)
        fig.lost = sum(1 for r in data if r["id"] not in c)
        fig.stuck = sum(1 for r in data if r["status"] in ("pending", "sending"))
        fig.failed = sum(1 for r in data if r["status"] == "failed")
        fig.integrity = integrity(db)
        fig.extra.update(
            procs=procs,
            locked_errors=totals["locked"],
            other_db_errors=totals["db_error"],
            lease_lost=totals["lease_lost"],
            per_second=round(len(claimed) / max(drain, 1e-9)),
        )
        problems = errors[:]
        if totals["locked"] or totals["db_error"]:
            problems.append(f"{totals['locked']} locked/busy and {totals['db_error']} other database errors")
        if problems:
            fig.extra["problems"] = problems
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--child", nargs=3, metavar=("DB", "OUT", "SESSION"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(Path(a.child[0]), Path(a.child[1]), a.child[2])
    return run(a.messages, a.procs).report()


if __name__ == "__main__":
    sys.exit(main())
