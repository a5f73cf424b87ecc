"""Kill storm without a browser: 3 worker processes (sessions s0, s1, s2) on one database, each on a
durable fake transport; a random one is SIGKILLed every ``--min-gap``..``--max-gap`` seconds and restarted on
its own session (a message stamped send-started is only reclaimed by the session that stamped it).

Prints lost / duplicates (from the delivery log) / stuck / integrity and exits 1 on any of them.

    python -m tests.torture.kill_storm_fake --messages 3000 --kills 300
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.common import (
    Figures,
    body,
    check_outcome,
    enqueue_direct,
    kill,
    killpg,
    phone,
    read_deliveries,
    rows,
    start_fake_worker,
)


def start(
    tmp: Path, session: str, lease: float, jitter: float, n: int, blind: bool = False
) -> subprocess.Popen[bytes]:
    """The ``n``-th start of ``session``'s fake worker, output in ``tmp/<session>.<n>.log``."""
    return start_fake_worker(
        tmp,
        session,
        "--lease",
        str(lease),
        "--jitter",
        str(jitter),
        "--until-done",
        *(["--blind"] if blind else []),
        tag=f".{n}",
    )


def run(
    messages: int,
    kills: int,
    *,
    workers: int = 3,
    lease: float = 1.0,
    min_gap: float = 0.1,
    max_gap: float = 0.4,
    jitter: float = 0.01,
    seed: int | None = None,
    timeout: float = 600.0,
    tmpdir: Path | None = None,
    blind: bool = False,
) -> Figures:
    """Run the storm; returns the figures."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    fig = Figures("kill-storm-fake" + ("-blind" if blind else ""), messages=messages)
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        tmp = Path(d)
        db = tmp / "wabulk.db"
        enqueue_direct(db, messages)
        sessions = [f"s{i}" for i in range(workers)]
        procs = {s: start(tmp, s, lease, jitter, 0, blind) for s in sessions}
        starts = dict.fromkeys(sessions, 1)
        deadline = time.monotonic() + timeout
        try:
            while fig.kills < kills and time.monotonic() < deadline:
                time.sleep(rng.uniform(min_gap, max_gap))
                if all(p.poll() is not None for p in procs.values()):
                    break  # the job drained before the storm ended
                s = rng.choice(sessions)
                if kill(procs[s].pid):
                    procs[s].wait()
                    fig.kills += 1
                procs[s] = start(tmp, s, lease, jitter, starts[s], blind)
                starts[s] += 1
            # Calm after the storm: every worker runs to the end (restarted if it died on its own).
            while time.monotonic() < deadline:
                if any(r["status"] in ("pending", "sending") for r in rows(db)):
                    for s, p in procs.items():
                        if p.poll() is not None and p.returncode != 0:
                            procs[s] = start(tmp, s, lease, jitter, starts[s], blind)
                            starts[s] += 1
                if all(p.poll() is not None for p in procs.values()):
                    if not any(r["status"] in ("pending", "sending") for r in rows(db)):
                        break
                    for s in sessions:  # exited 0 early while another session's stamp was pending
                        procs[s] = start(tmp, s, lease, jitter, starts[s], blind)
                        starts[s] += 1
                time.sleep(0.2)
        finally:
            for p in procs.values():
                killpg(p)
        expected = {phone(i): body(i) for i in range(messages)}
        arrived = [(x["phone"], x["body"]) for x in read_deliveries(tmp / "deliveries.jsonl")]
        check_outcome(fig, db, expected, arrived)
        data = rows(db)
        fig.extra["reclaimed_after_stamp"] = sum(
            1 for r in data if r["send_started_at"] and r["attempts"] > 1
        )
        fig.extra["max_attempts_seen"] = max((r["attempts"] for r in data), default=0)
        fig.extra["restarts"] = sum(starts.values()) - workers
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--lease", type=float, default=1.0)
    ap.add_argument("--min-gap", type=float, default=0.1)
    ap.add_argument("--max-gap", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--jitter", type=float, default=0.01, help="random sleeps around the fake click (s)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument(
        "--blind",
        action="store_true",
        help="negative control: workers resend without looking (duplicates expected)",
    )
    a = ap.parse_args(argv)
    return run(
        a.messages,
        a.kills,
        lease=a.lease,
        min_gap=a.min_gap,
        max_gap=a.max_gap,
        seed=a.seed,
        timeout=a.timeout,
        blind=a.blind,
        jitter=a.jitter,
    ).report()


if __name__ == "__main__":
    sys.exit(main())
