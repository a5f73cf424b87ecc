"""Kill storm with real browsers: 3 ``wabulk run`` workers (sessions a, b, c, each linked to the bundled
simulator) on one database, ``--pace off`` and a short lease. Every ``--min-gap``..``--max-gap`` seconds a
random worker is SIGKILLed (sometimes its Chromium or its chromedriver instead) and, when the wabulk process
died, restarted on ITS session (a message stamped send-started is only reclaimed by the session that stamped
it). The oracle is the simulator's log: lost, duplicated, stuck, and ``PRAGMA integrity_check``.

The simulator renders each chat's history late (``--history-ms`` after a chat opens, ``--history-boot-ms``
for the first chat after a browser start; on by default, as the real page does): an empty read is not an
empty chat, and nothing may be pressed or concluded before the history shows (issue 20).

A message whose worker is killed ``max_attempts`` times before its press ends failed "attempts exhausted"
(reported, not lost silently); after the storm the supervisor retries those as ``status`` tells a person
(``exhausted_retried`` in the figures), and the oracle then wants each delivered exactly once.

``--blind-page``: from a third of the kills on, for ``--blind-seconds``, the simulator's bubbles carry no
message ids (``bubble_ids=False``), so the real sender cannot tell a cut send from an earlier identical
one: it must fail closed (unknown, never resent). Then the ids come back and the supervisor does what
``status --check`` tells a person (``resume --session``, ``retry-failed --error-class unknown_outcome``).

    python -m tests.torture.kill_storm_browser --messages 500 --kills 60
    python -m tests.torture.kill_storm_browser --messages 60 --kills 12 --blind-page
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.torture.common import Figures, check_outcome, descendants, kill, rows
from tests.torture.kill_storm_fake import human_decides, paused_sessions, unknowns

SESSIONS = ("a", "b", "c")


def exhausted(db: Path) -> list[dict[str, object]]:
    """Messages failed "attempts exhausted": their worker was killed ``max_attempts`` times before it could
    press (with the history rendered late, a worker needs seconds per chat after each restart)."""
    return [r for r in rows(db) if r["status"] == "failed" and r["error_class"] == "attempts_exhausted"]


def retry_exhausted(db: Path, fig: Figures) -> None:
    """What ``status`` tells a person about them: ``wabulk retry-failed --error-class attempts_exhausted``
    (the library call the command makes). Stamps are kept, so a pressed one is looked for first. Counted,
    and how many had been pressed at all, so the figures show it."""
    from wabulk.queue import Queue

    found = exhausted(db)
    fig.extra["exhausted_pressed"] = fig.extra.get("exhausted_pressed", 0) + sum(
        1 for r in found if r["sends"]
    )
    with Queue(db, synchronous="FULL") as q:
        fig.extra["exhausted_retried"] = fig.extra.get("exhausted_retried", 0) + q.retry_failed(
            error_class="attempts_exhausted"
        )


def run(
    messages: int,
    kills: int,
    *,
    lease: float = 5.0,
    min_gap: float = 0.5,
    max_gap: float = 3.0,
    seed: int | None = None,
    timeout: float = 1800.0,
    tmpdir: Path | None = None,
    blind_page: bool = False,
    blind_seconds: float = 40.0,
    history_ms: float = 500.0,
    history_boot_ms: float | None = 3000.0,
) -> Figures:
    from e2e_helpers import E2E, SIM_E2E
    from wabulk.web.simulator.server import Simulator

    rng = random.Random(seed)
    t0 = time.monotonic()
    fig = Figures("kill-storm-browser" + ("-blind-page" if blind_page else ""), messages=messages)
    kinds = {"wabulk": 0, "chromium": 0, "chromedriver": 0}
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        tmp = Path(d)
        config = {**SIM_E2E, "history_ms": history_ms, "history_boot_ms": history_boot_ms}
        sim = Simulator(port=0, log_path=tmp / "sim-messages.jsonl", **config)
        sim.start()
        e2e = E2E(sim=sim, home=tmp / "home", base=0)
        try:
            for s in SESSIONS:
                e2e.link(s, fresh=True)
            _, expected = e2e.enqueue(messages)
            procs = {s: e2e.run(s, lease=lease) for s in SESSIONS}
            deadline = time.monotonic() + timeout

            def unfinished() -> bool:
                return any(r["status"] in ("pending", "sending") for r in rows(e2e.db))

            blind_since: float | None = None
            most_unknown = 0
            paused_seen: set[str] = set()
            while (
                (fig.kills < kills or blind_since is not None)
                and time.monotonic() < deadline
                and unfinished()
            ):
                if (
                    blind_page
                    and blind_since is None
                    and fig.kills >= kills // 3
                    and "blind_seconds" not in fig.extra
                ):
                    sim.configure(bubble_ids=False)  # the page turns unreadable for our reader
                    blind_since, fig.extra["blind_seconds"] = time.monotonic(), blind_seconds
                if blind_since is not None:
                    most_unknown = max(most_unknown, len(unknowns(e2e.db)))
                    paused_seen |= set(paused_sessions(e2e.db))
                    if time.monotonic() - blind_since >= blind_seconds:
                        sim.configure(bubble_ids=True)
                        blind_since = None
                        human_decides(e2e.db, fig)
                time.sleep(rng.uniform(min_gap, max_gap))
                s = rng.choice(SESSIONS)
                w = procs[s]
                if w.proc.poll() is not None:  # exited (done, gave up, or its session paused itself)
                    if blind_since is None or s not in paused_sessions(e2e.db):
                        procs[s] = e2e.run(s, lease=lease)
                    continue
                roll = rng.random()
                target, kind = w.proc.pid, "wabulk"
                kids = descendants(w.proc.pid)
                if roll < 0.15:
                    found = [p for p, name in kids if name.startswith("chromedriver")]
                    if found:
                        target, kind = found[0], "chromedriver"
                elif roll < 0.3:
                    # The main browser process: chromedriver's child named chromium/chrome.
                    found = [
                        p
                        for p, name in kids
                        if name.startswith(("chromium", "chrome")) and not name.startswith("chromedriver")
                    ]
                    if found:
                        target, kind = found[0], "chromium"
                if kill(target, signal.SIGKILL):
                    fig.kills += 1
                    kinds[kind] += 1
                if kind == "wabulk":
                    w.proc.wait(10)
                    procs[s] = e2e.run(s, lease=lease)
            if blind_since is not None:  # the storm ended before the blind phase did
                sim.configure(bubble_ids=True)
                human_decides(e2e.db, fig)
            # Calm after the storm: every session's worker runs until the job is done.
            while time.monotonic() < deadline and (
                unfinished()
                or (blind_page and any(r["status"] == "failed" for r in rows(e2e.db)))
                or exhausted(e2e.db)
            ):
                if exhausted(e2e.db) and not unfinished():
                    retry_exhausted(e2e.db, fig)
                if blind_page and (
                    any(r["status"] == "failed" for r in rows(e2e.db)) or paused_sessions(e2e.db)
                ):
                    most_unknown = max(most_unknown, len(unknowns(e2e.db)))
                    human_decides(e2e.db, fig)
                for s in SESSIONS:
                    if procs[s].proc.poll() is not None:
                        procs[s] = e2e.run(s, lease=lease)
                time.sleep(1.0)
            for w in procs.values():
                try:
                    w.wait(120)
                except AssertionError as e:
                    fig.extra.setdefault("problems", []).append(str(e)[:300])
            arrived = [(m["phone"], m["text"]) for m in e2e.arrived()]
            check_outcome(fig, e2e.db, expected, arrived)
            fig.extra.update(kinds)
            fig.extra["restarts"] = len(e2e.workers) - len(SESSIONS)
            fig.extra["history_ms"] = (
                f"{history_ms:g}/{history_boot_ms if history_boot_ms is not None else history_ms:g}"
            )
            if blind_page:
                fig.extra["unknown_reported"] = most_unknown
                fig.extra["sessions_paused"] = len(paused_seen)
        finally:
            e2e.cleanup()
            sim.stop()
    fig.seconds = time.monotonic() - t0
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--lease", type=float, default=5.0)
    ap.add_argument("--min-gap", type=float, default=0.5)
    ap.add_argument("--max-gap", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--blind-page", action="store_true", help="bubbles without ids for a while (fail closed)")
    ap.add_argument("--blind-seconds", type=float, default=40.0)
    ap.add_argument("--history-ms", type=float, default=500.0, help="a chat's history shows this late")
    ap.add_argument(
        "--history-boot-ms", type=float, default=3000.0, help="... and this late after a browser start"
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
        blind_page=a.blind_page,
        blind_seconds=a.blind_seconds,
        history_ms=a.history_ms,
        history_boot_ms=a.history_boot_ms,
    ).report()


if __name__ == "__main__":
    sys.exit(main())
