"""Notifications from a real `wabulk run --notify URL` worker on the simulator: every kind the code defines
(``wabulk.notify.watch.KINDS``) reaches a webhook receiver, each notification id exactly once and signed,
although the receiver is down for a while and a worker is killed (SIGKILL) in between.

Two tests, to keep each under a minute and a half:

* an outage, a kill, five numbers that are not on WhatsApp, a ban that auto-pauses the SESSION (issue 14:
  never the shared job) until a person resumes it, a logout with the QR shown to `wabulk serve`,
  undelivered messages and the job's completion;
* five attachments WhatsApp refuses in a row (the circuit breaker auto-pauses the JOB: the one auto-pause
  of a job left on main), and a message whose outcome the page cannot tell (no message ids, its
  confirmation cut) that a person then resolves with `wabulk resolve ID --sent`.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, simulator_running, wait_for
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
# What each test below makes happen (and asserts was told): together, every kind there is.
KINDS_OUTAGE_TEST = {
    "worker_died",
    "messages_failed",
    "session_auto_paused",
    "waiting_for_login",
    "job_completed",
    "undelivered_found",
}
KINDS_BREAKER_TEST = {
    "job_auto_paused",
    "unknown_outcomes",
    "messages_failed",
    "worker_died",
    "job_completed",
}


def test_the_two_tests_below_cover_every_kind() -> None:
    from wabulk.notify.watch import KINDS

    assert KINDS_OUTAGE_TEST | KINDS_BREAKER_TEST == set(KINDS)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-notify", SIM_E2E) as s:
        yield s


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


def write_contacts(path: Path, phones: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone"])
        w.writerows([f"N{i}", p] for i, p in enumerate(phones))


def outbox(db: Path) -> set[str]:
    """The kinds and keys of the notifications waiting in the outbox (not delivered yet)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT kind, key FROM notifications WHERE status = 'pending'").fetchall()
        return {str(r[0]) for r in rows} | {str(r[1]) for r in rows}
    finally:
        conn.close()


def session_pause(e2e: E2E, session: str) -> str | None:
    """The reason ``session`` is paused, as `wabulk status --json` shows it (None: not paused)."""
    rows = [r for r in e2e.status()["sessions"] if r["session"] == session]
    return rows[0]["paused"] if rows else None


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


def test_a_job_auto_pause_and_an_unknown_outcome_reach_the_webhook_once_across_an_outage_and_a_kill(
    e2e: E2E,
) -> None:
    from wabulk import qrcodes as qr

    notifying_env(e2e)
    e2e.link("s")
    receiver = Receiver(secret=SECRET)
    args = ("--notify", receiver.url, "--min-delay", "0.3", "--max-delay", "0.5")
    worker = e2e.run("s", *args, until_done=False)
    first_pid = worker.proc.pid

    # Job 1: WhatsApp refuses its picture (too large) for five recipients in a row. That is about the
    # job, not about one recipient or this account's page: the circuit breaker pauses the JOB.
    e2e.sim.configure(max_media_bytes=1000)
    picture = e2e.home / "big.png"
    picture.write_bytes(qr.save_png("x" * 200, e2e.home / "q.png", scale=20).read_bytes() + b"\0" * 5000)
    pics = [e2e.phone(i) for i in range(6)]
    write_contacts(e2e.home / "pics.csv", pics)
    e2e.cli(
        "enqueue", str(e2e.home / "pics.csv"), "-m", "Pic {name}", "--country", "AU", "--attach", str(picture)
    )
    wait_for(lambda: e2e.job(1)["status"] == "paused", 90, "the breaker to pause job 1")
    reason = e2e.job(1)["reason"]
    assert reason == "auto-paused: 5 consecutive attachment_rejected failures", reason
    assert e2e.arrived() == []  # nothing refused went out
    wait_for(lambda: "job_auto_paused" in receiver.kinds(), 30, "the job auto-pause notification")

    # Job 2, with the receiver down: the page's bubbles carry no ids and the first message's confirmation
    # is cut (its bubble stays on the clock). It did go out, but the chat cannot tell it from anything
    # else: the worker must not resend it on a guess. Its outcome is unknown.
    receiver.down()
    texts = [e2e.phone(10 + i) for i in range(3)]
    held = texts[0].lstrip("+")
    e2e.sim.configure(bubble_ids=False, hold_pending=[held])
    write_contacts(e2e.home / "texts.csv", texts)
    e2e.cli("enqueue", str(e2e.home / "texts.csv"), "-m", "Hi {name}", "--country", "AU")
    rows = wait_for(
        lambda: [r for r in e2e.rows() if r["job_id"] == 2 and r["error_class"] == "unknown_outcome"],
        120,
        "the held message's outcome to be unknown",
    )
    (unknown,) = rows
    assert (unknown["phone"].lstrip("+"), unknown["status"]) == (held, "failed"), unknown
    wait_for(lambda: e2e.job(2)["status"] == "completed", 60, "job 2 to finish the rest")
    # The worker's notifier queued both for the receiver that is down (its "counts" are read then).
    # A completion's key names the job and the completion's event (a resumed job completes again).
    wait_for(
        lambda: {"unknown_outcomes", "job_completed:2"} <= {k.rsplit(":", 1)[0] for k in outbox(e2e.db)},
        30,
        "the unknown outcome and job 2's completion in the outbox",
    )
    worker.kill9()  # while the receiver is down: they wait in the outbox
    worker.cleanup()
    assert [m["phone"] for m in e2e.arrived()].count(held) == 1  # it did arrive, once

    # A person looks in the chat on the phone, sees it, and says so; the page shows ids again, WhatsApp
    # takes the picture (a smaller limit was the reason), the job is resumed.
    e2e.sim.configure(bubble_ids=True, hold_pending=[], max_media_bytes=SIM_E2E["max_media_bytes"])
    e2e.cli("resolve", str(unknown["id"]), "--sent")
    e2e.cli("resume", "1")
    receiver.up()
    worker = e2e.run("s", *args, until_done=True)
    assert worker.wait(120) == 3, worker.output()  # job 1's five refusals stay failed
    assert e2e.job(1)["status"] == "completed" and e2e.job(2)["status"] == "completed"

    bodies = receiver.bodies()
    kinds = Counter(b["kind"] for b in bodies)
    assert set(kinds) >= KINDS_BREAKER_TEST, kinds
    ids = Counter(b["id"] for b in bodies)
    assert max(ids.values()) == 1, ids  # exactly once per id
    assert receiver.bad_signatures == 0
    assert kinds["job_auto_paused"] == 1 and kinds["unknown_outcomes"] == 1, kinds
    assert kinds["worker_died"] == 1 and kinds["job_completed"] == 2, kinds
    assert "session_auto_paused" not in kinds  # one unknown outcome does not pause the session
    by = {b["kind"]: b for b in bodies}
    assert by["job_auto_paused"]["job"] == 1 and by["job_auto_paused"]["reason"] == reason
    assert by["unknown_outcomes"]["job"] == 2 and by["unknown_outcomes"]["count"] == 1
    assert by["unknown_outcomes"]["messages"][0]["id"] == unknown["id"]
    assert by["worker_died"]["pid"] == first_pid
    refused = [m for b in bodies if b["kind"] == "messages_failed" for m in b["messages"]]
    assert len(refused) == 5 and all("larger than" in m["error"] for m in refused), refused
    done = {b["job"]: b["counts"] for b in bodies if b["kind"] == "job_completed"}
    assert done == {1: {"sent": 1, "failed": 5}, 2: {"sent": 2, "failed": 1}}, done
    arrived = Counter(m["phone"] for m in e2e.arrived())
    assert arrived == Counter([pics[5].lstrip("+"), *(p.lstrip("+") for p in texts)]), arrived
    receiver.down()
