"""End-to-end tests of ``wabulk run`` against the bundled simulator with real Chromium and Selenium, when
something happens to the worker: SIGKILL, a logout, a takeover, going offline, a kill followed by a relink
(``test_worker_e2e.py`` has the rest; two files so that the scheduler can run them side by side).

The oracle is what the simulator received (``sim.messages()``): every expected message exactly once, with
the exact text. The worker runs as a real subprocess where process behaviour matters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, WABULK, run_in_process, wait_for

# The fixtures e2e, linked and sim (pytest finds them by their name in this module).
from e2e_helpers import e2e_fixture as e2e_fixture
from e2e_helpers import linked_fixture as linked_fixture
from e2e_helpers import sim_fixture as sim_fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    needs_chromium,
]


def test_sigkill_three_times_then_restart_sends_each_once(e2e: E2E) -> None:
    e2e.link("s")
    job, expected = e2e.enqueue(8)
    for k in (1, 3, 5):
        w = e2e.run("s", lease=5)
        # Kill at a different moment each time: right after the k-th arrival is in the log (the worker is
        # then between "arrived" and "sent committed", or already on the next message).
        e2e.wait_arrived(k)
        w.kill9()
    w = e2e.run("s", lease=5)
    assert w.wait(120) == 0, w.output()
    e2e.assert_exactly_once(expected)
    rows = e2e.rows()
    assert all(r["status"] == "sent" for r in rows), [(r["phone"], r["status"]) for r in rows]
    assert e2e.job(job)["sent"] == 8


def test_logout_mid_run_waits_for_scan_without_spending_attempts(e2e: E2E) -> None:
    # Relinking gives the browser a new device, and WhatsApp syncs the chat history to it: a message that
    # left just before the logout is then visible to verification. "account" history models that sync.
    e2e.sim.configure(history_scope="account")
    token = e2e.link("s", fresh=True)  # this test unlinks its device: never the module's shared one
    job, expected = e2e.enqueue(5)
    w = e2e.run("s", "--min-delay", "0.5", "--max-delay", "0.8")
    e2e.wait_arrived(2)
    assert e2e.sim.logout(token) == 1
    wait_for(lambda: e2e.job(job)["status"] == "waiting_for_login", 30, "the job to wait for login")
    assert w.proc.poll() is None  # still running, waiting for the scan
    wait_for(e2e.sim.scan, 30, "the worker's QR to be scanned")
    assert w.wait() == 0, w.output()
    e2e.assert_exactly_once(expected)
    assert [r["attempts"] for r in e2e.rows()] == [1] * 5
    assert e2e.job(job)["status"] == "completed"


def test_takeover_mid_run_is_recovered(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    from wabulk.worker import loop as worker

    # A takeover while a message waits for its tick makes it unconfirmed: it is verified in the chat this
    # soon (default 15 s) instead of being resent.
    monkeypatch.setattr(worker, "CONFIRM_RECHECK_SECONDS", 2.0)
    token = e2e.link("s")
    _, expected = e2e.enqueue(5)
    w = run_in_process(e2e, "s", confirm=8.0)
    try:
        e2e.wait_arrived(2)
        e2e.sim.takeover("window", token)
        assert w.wait(90) == 0
    finally:
        w.close()
    e2e.assert_exactly_once(expected)
    assert all(r["status"] == "sent" for r in e2e.rows())


def test_offline_mid_send_then_back_online(e2e: E2E) -> None:
    e2e.link("s")
    _, expected = e2e.enqueue(4)
    # In-process for a short retry backoff (30 s by default): what is tested is the outcome, not the wait.
    w = run_in_process(e2e, "s", retry_base=1.0, retry_jitter=0.5)
    try:
        e2e.wait_arrived(2)
        e2e.sim.configure(offline=True)
        # Back online once the worker has met the offline page and given the message back.
        wait_for(
            lambda: e2e.events_matching("released: offline") or not w.thread.is_alive(),
            30,
            "the worker to notice it is offline",
        )
        e2e.sim.configure(offline=False)
        assert w.wait(90) == 0
    finally:
        w.close()
    e2e.assert_exactly_once(expected)
    # An outage is nobody's fault: no attempt is spent on it, and nothing is failed.
    assert all(r["status"] == "sent" and r["attempts"] == 1 for r in e2e.rows())


def relink_by_login(e2e: E2E, session: str) -> None:
    """`wabulk login` on the session's (logged-out) profile; its QR is scanned once shown in the terminal,
    as a person would (scanning the page's QR before wabulk shows it would be a robot's race)."""
    err = e2e.home / "login.err"
    with err.open("wb") as fe:
        proc = subprocess.Popen(
            [WABULK, "--db", str(e2e.db), "login", "--session", session, "--timeout", "60"],
            env=e2e.env(),
            stdout=subprocess.DEVNULL,
            stderr=fe,
            start_new_session=True,
        )
    try:
        wait_for(lambda: b"Scan this" in err.read_bytes() or proc.poll() is not None, 60, "the login QR")
        assert e2e.sim.scan() == 1, err.read_text(errors="replace")[-2000:]
        assert proc.wait(60) == 0, err.read_text(errors="replace")[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("relink_by", ["worker", "login"])
def test_a_send_cut_by_a_kill_then_a_relink_is_never_resent(e2e: E2E, relink_by: str) -> None:
    """A message goes out but the worker is SIGKILLed before it records "sent". Then the phone unlinks the
    browser and it is linked again by a scan (the next worker's QR, or `wabulk login`): a NEW device, whose
    chat does not show what the old one sent (history_scope "device", the simulator's default: WhatsApp's
    history sync to a new device is partial and late). That empty chat proves nothing: the message must not
    be sent a second time, and status reports its outcome as unknown."""
    from wabulk.web.profile import reap_orphans

    assert e2e.sim.config["history_scope"] == "device"
    token = e2e.link("s", fresh=True)  # this test unlinks its device: never the module's shared one
    job, expected = e2e.enqueue(2)
    held = e2e.phone(0).lstrip("+")
    e2e.sim.configure(hold_pending=[held])  # its bubble stays on the clock: the worker is still confirming
    w = e2e.run("s", lease=5)
    e2e.wait_arrived(1)
    assert e2e.rows()[0]["send_started_at"] is not None  # stamped before Enter
    w.kill9()
    w.cleanup()
    # Its orphaned browser too (the next wabulk would reap it): nobody must scan the QR that page shows
    # after the logout, as nobody sees it in life.
    reap_orphans(e2e.home / "sessions" / "s")
    e2e.sim.configure(hold_pending=[])
    assert e2e.sim.logout(token) == 1
    if relink_by == "login":
        relink_by_login(e2e, "s")
        w = e2e.run("s", lease=5)
    else:
        w = e2e.run("s", lease=5)
        wait_for(lambda: "scan this QR code" in w.output(), 60, "the worker to show its QR")
        wait_for(e2e.sim.scan, 30, "the worker's QR to be scanned")
    code = w.wait(120)
    arrived = [m["phone"] for m in e2e.arrived()]
    assert arrived.count(held) == 1, arrived  # never twice
    assert code == 3, w.output()
    rows = {r["phone"].lstrip("+"): r for r in e2e.rows()}
    assert (rows[held]["status"], rows[held]["error_class"]) == ("failed", "unknown_outcome"), rows[held]
    assert "relinked" in rows[held]["last_error"]
    other = e2e.phone(1).lstrip("+")
    assert rows[other]["status"] == "sent" and arrived.count(other) == 1
    assert e2e.job(job)["unknown"] == 1
    check = e2e.cli("status", "--check", check=False)
    assert check.returncode != 0
    assert "outcome is unknown" in check.stdout + check.stderr, check.stdout + check.stderr
