"""Kill storm on the Cloud API: ``wabulk run --session biz`` against the bundled Graph simulator, SIGKILLed
every ``--min-gap``..``--max-gap`` seconds and started again, while the simulator keeps POSTing signed status
webhooks to wabulk's receiver (the one ``wabulk serve`` mounts), which is never killed (Meta retries anyway).

After the storm a last run finishes the queue. Messages left ``unknown_outcome`` (stamped, then killed
before their POST, so no webhook can ever settle them) are what a person resolves: the script plays that
person with the simulator as the truth (``resolve --resend-unverified`` only for what Meta never accepted;
``--sent`` for what it did) and runs once more. Then it checks, per recipient at the simulator: 0 with two
accepted messages (duplicates), 0 with none (lost); every message ``sent`` in the queue; integrity.

    python -m tests.torture.kill_storm_cloud --messages 2000 --kills 30
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cloud_helpers import PHONE_ID, TOKEN, graph_simulator, webhook_receiver
from tests.torture.common import integrity, python_env

from wabulk.models import UNKNOWN_OUTCOME, NewJob, NewMessage
from wabulk.queue import Queue


def phone(i: int) -> str:
    return f"+1415{i:07d}"


def wabulk(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "wabulk", *args], env=env, stdout=out, stderr=out, start_new_session=True
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--min-gap", type=float, default=0.6)
    ap.add_argument("--max-gap", type=float, default=2.0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="wabulk-cloud-storm-"))
    db = tmp / "wabulk.db"
    with Queue(db) as q:
        q.enqueue(
            NewJob(name="storm", template="Hello", max_attempts=5),
            [NewMessage(phone=phone(i), body=f"Hello {i}") for i in range(args.messages)],
        )
    figures: dict[str, Any] = {"messages": args.messages}
    started = time.monotonic()
    with (
        webhook_receiver(db) as hook,
        graph_simulator(hook, all_windows_open=True, duplicate_rate=0.05) as sim,
    ):
        sim.set_phone(PHONE_ID, mps=1000)
        env = python_env(
            WABULK_DB=str(db),
            WABULK_HOME=str(tmp / "home"),
            WABULK_GRAPH_URL=sim.url,
            WABULK_CLOUD_TOKEN=TOKEN,
            WABULK_CLOUD_SETTLE_SECONDS="2",
            # The simulator answers at once: a short read timeout keeps the claims' lease (which must
            # outlast a POST) short, so a killed run's stamped messages are looked at again sooner.
            WABULK_GRAPH_READ_TIMEOUT="5",
        )
        log = tmp / "runs.log"
        assert (
            wabulk(env, "login", "--session", "biz", "--cloud", "--phone-number-id", PHONE_ID).wait(60) == 0
        )
        run_args = [
            "run",
            "--session",
            "biz",
            "--until-done",
            "--rate",
            str(args.rate),
            "--lease-seconds",
            "3",
        ]
        kills = runs = 0
        while kills < args.kills:
            proc = wabulk(env, *run_args, log=log)
            runs += 1
            try:
                proc.wait(rng.uniform(args.min_gap, args.max_gap))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                continue
            if proc.returncode == 0:
                # The queue drained before the kills were done: give the storm more to do.
                with Queue(db) as q:
                    base = args.messages + runs * 1000
                    q.enqueue(
                        NewJob(name=f"more{runs}", template="Hello", max_attempts=5),
                        [NewMessage(phone=phone(base + i), body=f"Hello {base + i}") for i in range(200)],
                    )
        figures["kills"] = kills
        figures["runs"] = runs
        last = wabulk(env, *run_args, log=log).wait(300)
        figures["last_run_exit"] = last
        sim.wait_webhooks(30)
        # The person: unknown outcomes are checked against what Meta accepted.
        resent = confirmed = 0
        with Queue(db) as q:
            for job in q.list_jobs():
                for m in q.iter_messages(job.id):
                    if m.status == "failed" and m.error_class == UNKNOWN_OUTCOME:
                        if sim.accepted(m.phone):
                            q.resolve(m.id, sent=True)
                            confirmed += 1
                        else:
                            q.resolve(m.id, resend=True)
                            resent += 1
        figures["unknown_resolved_resend"] = resent
        figures["unknown_resolved_sent"] = confirmed
        if resent:
            figures["after_resolve_exit"] = wabulk(env, *run_args, log=log).wait(300)
        sim.wait_webhooks(30)
        with Queue(db) as q:
            all_msgs = [m for job in q.list_jobs() for m in q.iter_messages(job.id)]
        accepted = {m.phone: len(sim.accepted(m.phone)) for m in all_msgs}
    figures["total"] = len(all_msgs)
    figures["duplicates"] = sum(1 for n in accepted.values() if n > 1)
    figures["lost"] = sum(1 for n in accepted.values() if n == 0)
    figures["not_sent_in_queue"] = sum(1 for m in all_msgs if m.status != "sent")
    figures["sent_but_not_accepted"] = sum(
        1 for m in all_msgs if m.status == "sent" and not accepted[m.phone]
    )
    figures["integrity"] = integrity(db)
    figures["seconds"] = round(time.monotonic() - started, 1)
    ok = (
        figures["kills"] >= args.kills
        and figures["duplicates"] == 0
        and figures["lost"] == 0
        and figures["not_sent_in_queue"] == 0
        and figures["sent_but_not_accepted"] == 0
        and figures["integrity"] == "ok"
    )
    figures["ok"] = ok
    import json

    print("FIGURES " + json.dumps(figures), flush=True)
    if not ok:
        print(f"logs in {tmp}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
