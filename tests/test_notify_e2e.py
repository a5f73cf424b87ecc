"""Notifications from a real `wabulk run --notify URL` worker on the simulator: a receiver that is down for a
while, a worker killed (SIGKILL) in between and started again, five numbers that are not on WhatsApp,
a ban that auto-pauses the job, a logout with the QR shown to `wabulk serve`, undelivered messages and
the job's completion. The receiver sees every kind, each notification id exactly once, every one signed."""

from __future__ import annotations

import csv
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, wait_for
from notify_helpers import Receiver
from serve_helpers import Server, make_driver

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not Path("/usr/bin/chromedriver").exists() and not os.environ.get("WABULK_CHROMEDRIVER"),
        reason="needs Chromium and chromedriver",
    ),
]
SECRET = "e2e-secret"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from wabulk.simulator.server import Simulator

    s = Simulator(port=0, log_path=tmp_path_factory.mktemp("sim-notify") / "messages.jsonl", **SIM_E2E)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def e2e(sim: Any, tmp_path: Path) -> Iterator[E2E]:
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=500)
    yield env
    env.cleanup()
    sim.configure(**SIM_E2E)


def notifying_env(e2e: E2E) -> None:
    """Settings every `wabulk run` of this test inherits (fast retries; 'undelivered' after 2 s)."""
    real = e2e.env

    def env(**extra: str) -> dict[str, str]:
        return real(
            WABULK_NOTIFY_SECRET=SECRET,
            WABULK_NOTIFY_RETRY="0.3",
            WABULK_NOTIFY_UNDELIVERED_AFTER="2s",
            **extra,
        )

    e2e.env = env  # type: ignore[method-assign]


def qr_in_db(db: Path, session: str) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT 1 FROM session_qr WHERE session = ?", (session,)).fetchone() is not None
    finally:
        conn.close()


def test_every_kind_reaches_the_webhook_once_across_an_outage_and_a_kill(e2e: E2E) -> None:
    notifying_env(e2e)
    # Relinking gives the browser a new device, and WhatsApp syncs the chat history to it (as in
    # test_worker_e2e's logout test): a message in flight at the kill or the ban is then verifiable.
    e2e.sim.configure(history_scope="account")
    token = e2e.link("s", fresh=True)  # this test logs its device out
    receiver = Receiver(secret=SECRET)
    good = [e2e.phone(i) for i in range(8)]
    bad = [e2e.phone(50 + i) for i in range(5)]
    e2e.sim.configure(invalid_numbers=[p.lstrip("+") for p in bad])
    order = good[:2] + bad + good[2:]
    contacts = e2e.home / "c.csv"
    with contacts.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone"])
        w.writerows([f"N{i}", p] for i, p in enumerate(order))
    e2e.cli("enqueue", str(contacts), "-m", "Hi {name}", "--country", "AU")
    args = ("--notify", receiver.url, "--min-delay", "0.3", "--max-delay", "0.5")

    worker = e2e.run("s", *args, until_done=False)
    worker_pids = [worker.proc.pid]
    e2e.wait_arrived(1)
    receiver.down()
    e2e.wait_arrived(2)
    worker.kill9()  # while the receiver is down: what it queued waits in the outbox
    worker.cleanup()
    worker = e2e.run("s", *args, until_done=False)
    e2e.wait_arrived(3)
    # WhatsApp bans the account: the worker auto-pauses the job and exits (nobody left to deliver).
    e2e.sim.configure(blocked="temp_ban")
    assert worker.wait(90) == 1, worker.output()
    assert e2e.job(1)["status"] == "paused" and e2e.job(1)["reason"].startswith("auto-paused")
    e2e.sim.configure(blocked=None)
    receiver.up()
    e2e.cli("resume", "1")
    # Meanwhile the phone unlinked the device: the next worker finds the session logged out. It delivers
    # what the killed and the banned worker queued while it waits for the scan.
    assert e2e.sim.logout(token) == 1
    worker = e2e.run("s", *args, until_done=False)
    wait_for(lambda: "job_auto_paused" in receiver.kinds(), 60, "the auto-pause notification")
    wait_for(lambda: "worker_died" in receiver.kinds(), 30, "the dead worker's notification")
    wait_for(lambda: "waiting_for_login" in receiver.kinds(), 60, "the login notification")
    wait_for(lambda: qr_in_db(e2e.db, "s"), 30, "the worker to keep its QR in the database")
    server = Server(e2e.db)
    driver = make_driver()
    try:
        assert wait_for(lambda: server.get("/api/sessions/s/qr.svg").status == 200, 10, "the QR from serve")
        # The dashboard shows it, to be scanned from the page.
        driver.get(f"{server.base}/?token={server.token}")
        wait_for(
            lambda: driver.execute_script(
                "const i = document.querySelector('#qrs figure[data-session=\"s\"] img');"
                " return !!i && i.complete && i.naturalWidth > 0"
            ),
            20,
            "the login QR on the dashboard",
        )
    finally:
        driver.quit()
        server.stop()
    wait_for(e2e.sim.scan, 30, "the worker's QR to be scanned")
    wait_for(lambda: e2e.job(1)["status"] == "completed", 90, "the job to complete")
    wait_for(lambda: "job_completed" in receiver.kinds(), 30, "the completion notification")
    wait_for(lambda: "undelivered_found" in receiver.kinds(), 30, "the undelivered notification")
    assert not qr_in_db(e2e.db, "s")
    worker.proc.terminate()
    assert worker.wait(30) == 130, worker.output()

    bodies = receiver.bodies()
    kinds = Counter(b["kind"] for b in bodies)
    assert set(kinds) >= {
        "worker_died",
        "messages_failed",
        "job_auto_paused",
        "waiting_for_login",
        "job_completed",
        "undelivered_found",
    }, kinds
    ids = Counter(b["id"] for b in bodies)
    assert max(ids.values()) == 1, ids  # exactly once per id
    assert receiver.bad_signatures == 0
    assert kinds["worker_died"] == 1 and kinds["job_completed"] == 1 and kinds["job_auto_paused"] == 1
    died = next(b for b in bodies if b["kind"] == "worker_died")
    assert died["session"] == "s" and died["pid"] == worker_pids[0]
    failed = sum(b["count"] for b in bodies if b["kind"] == "messages_failed")
    assert failed == 5
    done = next(b for b in bodies if b["kind"] == "job_completed")
    assert done["counts"] == {"sent": 8, "failed": 5}
    e2e.assert_exactly_once({p.lstrip("+"): f"Hi N{order.index(p)}" for p in good})
    receiver.down()
