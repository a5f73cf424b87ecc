"""Notifications from a real `wabulk run --notify URL` worker on the simulator: every kind the code defines
(``wabulk.notify.watch.KINDS``) reaches a webhook receiver, each notification id exactly once and signed,
although the receiver is down for a while and a worker is killed (SIGKILL) in between.

Two tests, to keep each under a minute and a half, in two files so that the scheduler can run them side by
side (this one, and ``test_notify_e2e_breaker.py``):

* an outage, a kill, five numbers that are not on WhatsApp, a ban that auto-pauses the SESSION (issue 14:
  never the shared job) until a person resumes it, a logout with the QR shown to `wabulk serve`,
  undelivered messages and the job's completion;
* five attachments WhatsApp refuses in a row (the circuit breaker auto-pauses the JOB: the one auto-pause
  of a job left on main), and a message whose outcome the page cannot tell (no message ids, its
  confirmation cut) that a person then resolves with `wabulk resolve ID --sent`.
"""

from __future__ import annotations

from collections import Counter

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, wait_for
from notify_helpers import (
    KINDS_BREAKER_TEST,
    KINDS_OUTAGE_TEST,
    SECRET,
    Receiver,
    notifying_env,
    qr_in_db,
    session_pause,
    write_contacts,
)

# The fixtures e2e and sim (pytest finds them by their name in this module).
from notify_helpers import e2e_fixture as e2e_fixture
from notify_helpers import sim_fixture as sim_fixture
from serve_helpers import Server, make_driver

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    needs_chromium,
]


def test_the_two_notify_e2e_tests_cover_every_kind() -> None:
    from wabulk.notify.watch import KINDS

    assert KINDS_OUTAGE_TEST | KINDS_BREAKER_TEST == set(KINDS)


def test_every_kind_reaches_the_webhook_once_across_an_outage_and_a_kill(e2e: E2E) -> None:
    notifying_env(e2e)
    # Relinking gives the browser a new device, and WhatsApp syncs the chat history to it (as in
    # test_worker_e2e_faults' logout test): a message in flight at the kill or the ban is then verifiable.
    e2e.sim.configure(history_scope="account")
    token = e2e.link("s", fresh=True)  # this test logs its device out
    receiver = Receiver(secret=SECRET)
    good = [e2e.phone(i) for i in range(8)]
    bad = [e2e.phone(50 + i) for i in range(5)]
    e2e.sim.configure(invalid_numbers=[p.lstrip("+") for p in bad])
    order = good[:2] + bad + good[2:]
    contacts = e2e.home / "c.csv"
    write_contacts(contacts, order)
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
    # WhatsApp bans the account: the worker pauses its SESSION (other accounts could go on with the job,
    # which stays running) and exits (nobody left to deliver).
    e2e.sim.configure(blocked="temp_ban")
    assert worker.wait(90) == 4, worker.output()  # a person must act (exitcodes.ATTENTION)
    assert e2e.job(1)["status"] == "running", e2e.job(1)
    paused = session_pause(e2e, "s")
    assert paused is not None and paused.startswith("auto-paused: WhatsApp blocked session 's'"), paused
    e2e.sim.configure(blocked=None)
    receiver.up()
    e2e.cli("resume", "--session", "s")  # a person lifts it
    assert session_pause(e2e, "s") is None
    # Meanwhile the phone unlinked the device: the next worker finds the session logged out. It delivers
    # what the killed and the banned worker queued while it waits for the scan.
    assert e2e.sim.logout(token) == 1
    worker = e2e.run("s", *args, until_done=False)
    wait_for(lambda: "session_auto_paused" in receiver.kinds(), 60, "the auto-pause notification")
    wait_for(lambda: "worker_died" in receiver.kinds(), 30, "the dead worker's notification")
    wait_for(lambda: "waiting_for_login" in receiver.kinds(), 60, "the login notification")
    wait_for(lambda: qr_in_db(e2e.db, "s"), 30, "the worker to keep its QR in the database")
    server = Server(e2e.db)
    driver = make_driver()
    try:
        assert wait_for(lambda: server.get("/api/sessions/s/qr.svg").status == 200, 10, "the QR from serve")
        # The dashboard shows it on the session card (the Sessions screen), to be scanned from the page.
        driver.get(f"{server.base}/?token={server.token}#sessions")
        wait_for(
            lambda: driver.execute_script(
                "const i = document.querySelector('#sessions figure[data-session=\"s\"] img');"
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
    assert set(kinds) >= KINDS_OUTAGE_TEST, kinds
    ids = Counter(b["id"] for b in bodies)
    assert max(ids.values()) == 1, ids  # exactly once per id
    assert receiver.bad_signatures == 0
    assert kinds["worker_died"] == 1 and kinds["job_completed"] == 1 and kinds["session_auto_paused"] == 1
    assert "job_auto_paused" not in kinds  # a blocked account never pauses the shared job
    pause = next(b for b in bodies if b["kind"] == "session_auto_paused")
    assert pause["session"] == "s" and pause["reason"] == paused, pause
    died = next(b for b in bodies if b["kind"] == "worker_died")
    assert died["session"] == "s" and died["pid"] == worker_pids[0]
    failed = sum(b["count"] for b in bodies if b["kind"] == "messages_failed")
    assert failed == 5
    done = next(b for b in bodies if b["kind"] == "job_completed")
    assert done["counts"] == {"sent": 8, "failed": 5}
    e2e.assert_exactly_once({p.lstrip("+"): f"Hi N{order.index(p)}" for p in good})
    receiver.down()
