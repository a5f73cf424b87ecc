"""Kill storm without a browser: 3 worker processes (sessions s0, s1, s2) on one database, each on a
durable fake transport; a random one is SIGKILLed every ``--min-gap``..``--max-gap`` seconds and restarted on
its own session (a message stamped send-started is only reclaimed by the session that stamped it).

Prints lost / duplicates (from the delivery log) / stuck / integrity and exits 1 on any of them.

``--blind-page``: from a third of the kills on, for ``--blind-seconds``, the page cannot be read (sends
go out unconfirmed, verification answers "unknown"). wabulk must fail closed: no resend of what it cannot
see (0 duplicates), the outcomes reported as unknown and the sessions pausing themselves. When the page can
be read again the supervisor plays the human: ``resume --session`` and ``retry-failed --error-class
unknown_outcome``; every unknown is then looked for in its chat and ends sent (found) or is sent once
(absent).

    python -m tests.torture.kill_storm_fake --messages 3000 --kills 300
    python -m tests.torture.kill_storm_fake --messages 300 --kills 30 --blind-page
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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

from wabulk.models import UNKNOWN_OUTCOME


def start(
    tmp: Path,
    session: str,
    lease: float,
    jitter: float,
    n: int,
    blind: bool = False,
    breaker: int | None = None,
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
        "--blind-file",
        str(tmp / "blind"),
        *(["--blind"] if blind else []),
        *(["--breaker", str(breaker)] if breaker else []),
        tag=f".{n}",
    )


def unknowns(db: Path) -> list[dict[str, Any]]:
    """Messages failed with an unknown outcome now."""
    return [r for r in rows(db) if r["status"] == "failed" and r["error_class"] == UNKNOWN_OUTCOME]


def paused_sessions(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sessions WHERE paused_at IS NOT NULL")]
    finally:
        conn.close()


def human_decides(db: Path, fig: Figures) -> None:
    """The page can be read again: what the attention lines tell a person to do (``wabulk resume --session``
    for each paused session, ``wabulk retry-failed --all --error-class unknown_outcome``), through the same
    library calls the commands make. Stamps are kept, so each message is looked for before any resend."""
    from wabulk.queue import Queue

    with Queue(db, synchronous="FULL") as q:
        for s in q.session_pauses():
            q.resume_session(s)
            fig.extra["sessions_resumed"] = fig.extra.get("sessions_resumed", 0) + 1
        fig.extra["unknown_retried"] = fig.extra.get("unknown_retried", 0) + q.retry_failed(
            error_class=UNKNOWN_OUTCOME
        )
        # A message whose send budget ran out (pressed twice, killed before either arrived, the chat showing
        # neither) fails "attempts exhausted" with its reason; the person retries it too (one more press
        # after the chat is checked again). Counted, so the figures show how often the budget stopped one.
        others = [r for r in rows(db) if r["status"] == "failed"]
        if others:
            fig.extra["other_failed_retried"] = fig.extra.get("other_failed_retried", 0) + q.retry_failed()


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
    blind_page: bool = False,
    blind_seconds: float = 25.0,
) -> Figures:
    """Run the storm; returns the figures."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    name = "kill-storm-fake" + ("-blind" if blind else "") + ("-blind-page" if blind_page else "")
    fig = Figures(name, messages=messages)
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        tmp = Path(d)
        db = tmp / "wabulk.db"
        enqueue_direct(db, messages)
        sessions = [f"s{i}" for i in range(workers)]
        # With a blind page the job's circuit breaker is off, so that the outcomes nobody can read are
        # what pauses each session (after 3 in a row), not 5 confirmation timeouts before any is checked.
        breaker = 1000 if blind_page else None
        procs = {s: start(tmp, s, lease, jitter, 0, blind, breaker) for s in sessions}
        starts = dict.fromkeys(sessions, 1)
        deadline = time.monotonic() + timeout
        blind_file = tmp / "blind"
        blind_since: float | None = None
        most_unknown = 0
        paused_seen: set[str] = set()
        try:
            while (fig.kills < kills or blind_file.exists()) and time.monotonic() < deadline:
                if blind_page and blind_since is None and fig.kills >= kills // 3:
                    blind_file.touch()  # the page turns unreadable
                    blind_since = time.monotonic()
                if blind_file.exists():
                    most_unknown = max(most_unknown, len(unknowns(db)))
                    paused_seen |= set(paused_sessions(db))
                    if blind_since is not None and time.monotonic() - blind_since >= blind_seconds:
                        blind_file.unlink()  # readable again: the human steps in
                        human_decides(db, fig)
                        for s, p in procs.items():
                            if p.poll() is not None:
                                procs[s] = start(tmp, s, lease, jitter, starts[s], blind, breaker)
                                starts[s] += 1
                time.sleep(rng.uniform(min_gap, max_gap))
                if all(p.poll() is not None for p in procs.values()):
                    if blind_file.exists():
                        continue  # every session paused itself: they wait for the page and the human
                    break  # the job drained before the storm ended
                s = rng.choice(sessions)
                if kill(procs[s].pid):
                    procs[s].wait()
                    fig.kills += 1
                procs[s] = start(tmp, s, lease, jitter, starts[s], blind, breaker)
                starts[s] += 1
            if blind_file.exists():  # the storm ended before the blind phase did
                blind_file.unlink()
                human_decides(db, fig)
            # Calm after the storm: every worker runs to the end (restarted if it died on its own).
            while time.monotonic() < deadline:
                if blind_page and (any(r["status"] == "failed" for r in rows(db)) or paused_sessions(db)):
                    most_unknown = max(most_unknown, len(unknowns(db)))
                    human_decides(db, fig)  # unknowns from sends cut by the last blind kills
                if any(r["status"] in ("pending", "sending") for r in rows(db)):
                    for s, p in procs.items():
                        if p.poll() is not None and p.returncode != 0:
                            procs[s] = start(tmp, s, lease, jitter, starts[s], blind, breaker)
                            starts[s] += 1
                if all(p.poll() is not None for p in procs.values()):
                    left = ("pending", "sending", "failed") if blind_page else ("pending", "sending")
                    if not any(r["status"] in left for r in rows(db)):
                        break
                    for s in sessions:  # exited 0 early while another session's stamp was pending
                        procs[s] = start(tmp, s, lease, jitter, starts[s], blind, breaker)
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
        if blind_page:
            fig.extra["unknown_reported"] = most_unknown
            fig.extra["sessions_paused"] = len(paused_seen)
            if not most_unknown:
                fig.extra.setdefault("problems", []).append("the blind page produced no unknown outcome")
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
    ap.add_argument(
        "--blind-page",
        action="store_true",
        help="the page cannot be read for a while during the storm (fail closed, then resume)",
    )
    ap.add_argument("--blind-seconds", type=float, default=25.0, help="how long the page stays blind")
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
        blind_page=a.blind_page,
        blind_seconds=a.blind_seconds,
        jitter=a.jitter,
    ).report()


if __name__ == "__main__":
    sys.exit(main())
