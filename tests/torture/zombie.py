"""Zombie workers: a worker frozen (SIGSTOP) in the middle of a send, past its lease, then thawed (SIGCONT).

Two rounds per ``--rounds``, each on a fresh database with fake-transport worker processes:

- **before the stamp**: A is frozen after claiming, before ``before_send``. Its lease expires; B (another
  session) takes the message over and sends it. When A thaws, its stamp is fenced off (LeaseLost): it must not
  send, and the message must stay ``sent`` by B.
- **after the stamp**: A is frozen after stamping send-started. B must NOT take the message (only A's session
  can tell whether it went out); when A thaws it delivers once and marks it sent.

Exit 1 on any duplicate, loss, overwritten state or corruption.

    python -m tests.torture.zombie --rounds 3
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.common import (
    Figures,
    body,
    check_outcome,
    enqueue_direct,
    holding_marker,
    killpg,
    phone,
    read_deliveries,
    rows,
    start_fake_worker,
    wait_until,
)

LEASE = 1.5


def _round(tmp: Path, when: str, messages: int, fig: Figures) -> None:
    db = tmp / "wabulk.db"
    enqueue_direct(db, messages)
    thaw = tmp / "thaw"
    hold = ["--hold-before" if when == "before" else "--hold-after", str(thaw)]
    a = start_fake_worker(tmp, "a", "--lease", str(LEASE), "--until-done", *hold)
    b = None
    problems: list[str] = fig.extra.setdefault("problems", [])
    try:

        def a_holds() -> dict | None:
            for r in rows(db):
                if r["status"] == "sending" and (r["send_started_at"] is not None) == (when == "after"):
                    return r
            return None

        victim = wait_until(a_holds, 30, f"worker A to hold a message ({when} the stamp)")
        # Freeze it inside the hold, not a moment earlier: frozen inside a write transaction (right after
        # its claim, on a loaded machine) it would keep the database locked and B could never claim.
        wait_until(holding_marker(thaw).exists, 30, "worker A to wait at its hold")
        a.send_signal(signal.SIGSTOP)
        fig.kills += 1
        time.sleep(LEASE + 0.5)  # past its lease
        b = start_fake_worker(tmp, "b", "--lease", str(LEASE), "--until-done", tag=f"-{when}")
        if when == "before":
            # B takes the frozen message over and sends it (and everything else).
            wait_until(
                lambda: rows(db)[victim["id"] - rows(db)[0]["id"]]["status"] == "sent",
                30,
                "B to send the frozen worker's message",
            )
        else:
            # B sends everything else but must leave A's stamped message alone.
            def others_done() -> bool:
                return all(r["status"] == "sent" for r in rows(db) if r["id"] != victim["id"])

            wait_until(others_done, 60, "B to send the other messages")
            mine = next(r for r in rows(db) if r["id"] == victim["id"])
            if mine["status"] != "sending":
                problems.append(f"after-stamp: another session took the stamped message ({mine['status']})")
        before = next(r for r in rows(db) if r["id"] == victim["id"])
        thaw.touch()  # A's fake "click" goes ahead as soon as A runs again
        a.send_signal(signal.SIGCONT)
        code_a = a.wait(60)
        code_b = b.wait(60)
        after = next(r for r in rows(db) if r["id"] == victim["id"])
        if when == "before" and (after["sent_by_session"], after["status"]) != ("b", "sent"):
            problems.append(f"before-stamp: the zombie overwrote the newer state: {before} -> {after}")
        if when == "before" and after["sent_at"] != before["sent_at"]:
            problems.append("before-stamp: sent_at changed after the zombie woke")
        if when == "after" and (after["status"], after["sent_by_session"]) != ("sent", "a"):
            problems.append(
                f"after-stamp: expected sent by a, got {after['status']} by {after['sent_by_session']}"
            )
        if code_a != 0 or code_b != 0:
            problems.append(f"{when}: exit codes a={code_a} b={code_b}")
        log = (tmp / "home" / "logs" / "wabulk.log").read_text(encoding="utf-8")
        if when == "before" and "lost the lease" not in log:
            problems.append("before-stamp: the zombie did not report its lost lease")
    finally:
        killpg(a)
        if b is not None:
            killpg(b)


def run(rounds: int = 1, messages: int = 5, tmpdir: Path | None = None) -> Figures:
    t0 = time.monotonic()
    fig = Figures("zombie")
    arrived_all: list[tuple[str, str]] = []
    for _ in range(rounds):
        for when in ("before", "after"):
            with tempfile.TemporaryDirectory(dir=tmpdir) as d:
                tmp = Path(d)
                sub = Figures(f"zombie-{when}", messages=messages)
                try:
                    _round(tmp, when, messages, sub)
                except RuntimeError as e:
                    sub.extra.setdefault("problems", []).append(f"{when}: {e}")
                arrived = [(x["phone"], x["body"]) for x in read_deliveries(tmp / "deliveries.jsonl")]
                check_outcome(sub, tmp / "wabulk.db", {phone(i): body(i) for i in range(messages)}, arrived)
                arrived_all += arrived
                for k in ("lost", "duplicates", "stuck", "failed", "kills", "messages", "delivered"):
                    setattr(fig, k, getattr(fig, k) + getattr(sub, k))
                fig.integrity = sub.integrity if fig.integrity in ("?", "ok") else fig.integrity
                fig.extra.setdefault("problems", []).extend(sub.extra.get("problems", []))
    if not fig.extra["problems"]:
        fig.extra.pop("problems")
    fig.extra["freezes"] = fig.kills
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=5)
    a = ap.parse_args(argv)
    return run(a.rounds, a.messages).report()


if __name__ == "__main__":
    sys.exit(main())
