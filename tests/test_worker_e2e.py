"""End-to-end tests of ``wabulk run`` against the bundled simulator with real Chromium and Selenium.

The oracle is what the simulator received (``sim.messages()``): every expected message exactly once, with
the exact text, whatever happens to the worker (SIGKILL, logout, takeover, offline, pause/stop, a second
worker, a confirmation timeout). The worker runs as a real subprocess where process behaviour matters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, WABULK, run_in_process, simulator_running, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not Path("/usr/bin/chromedriver").exists() and not os.environ.get("WABULK_CHROMEDRIVER"),
        reason="needs Chromium and chromedriver",
    ),
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator of this module's own (logouts and takeovers here must not touch other tests' browsers)."""
    with simulator_running(tmp_path_factory, "sim-worker", SIM_E2E) as s:
        yield s


_BASES = iter(range(100, 99_000, 100))


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Profiles linked once for the module (copied into each test's home)."""
    return tmp_path_factory.mktemp("linked-profiles"), {}


@pytest.fixture
def e2e(sim: Any, tmp_path: Path, linked: tuple[Path, dict[str, tuple[Path, str]]]) -> Iterator[E2E]:
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=next(_BASES), template_home=linked[0], linked=linked[1])
    yield env
    env.cleanup()
    sim.configure(**SIM_E2E)


def test_normal_run_sends_each_message_once(e2e: E2E) -> None:
    e2e.link("s")
    job, expected = e2e.enqueue(5)
    w = e2e.run("s")
    assert w.wait() == 0, w.output()
    got = e2e.assert_exactly_once(expected)
    assert {m["device"] for m in got} == {e2e.devices["s"]}
    row = e2e.job(job)
    counts = (row["sent"], row["pending"], row["sending"], row["failed"], row["status"])
    assert counts == (5, 0, 0, 0, "completed")


def test_fresh_browser_every_n_chats_sends_each_message_once(e2e: E2E) -> None:
    e2e.link("s")
    job, expected = e2e.enqueue(5)
    w = e2e.run("s", "--restart-browser-every", "2")
    assert w.wait() == 0, w.output()
    e2e.assert_exactly_once(expected)
    # Two restarts (after chats 2 and 4), each a new Chromium on the linked profile: no new login.
    assert w.output().count("a fresh page after 2 chats") == 2, w.output()
    assert e2e.job(job)["sent"] == 5


def test_invalid_number_fails_not_on_whatsapp_and_exits_3(e2e: E2E) -> None:
    e2e.link("s")
    bad = "+61491599999"
    e2e.sim.configure(invalid_numbers=[bad.lstrip("+")])
    job, expected = e2e.enqueue(2, extra_phones=[bad])
    w = e2e.run("s")
    assert w.wait() == 3, w.output()
    del expected[bad.lstrip("+")]
    e2e.assert_exactly_once(expected)
    rows = {r["phone"]: r for r in e2e.rows()}
    assert rows[bad]["status"] == "failed" and rows[bad]["error_class"] == "not_on_whatsapp"
    assert rows[bad]["attempts"] == 1  # permanent: no retry
    assert e2e.job(job)["failed"] == 1


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


def test_pause_resume_stop_from_another_process(e2e: E2E) -> None:
    e2e.link("s")
    job, expected = e2e.enqueue(7)
    # Without --until-done: with it, a paused job counts as "nothing runnable" and the worker exits (3).
    w = e2e.run("s", "--min-delay", "1", "--max-delay", "1.5", until_done=False)
    e2e.wait_arrived(1)
    e2e.cli("pause", str(job))
    wait_for(lambda: "is now paused" in w.output(), 10, "the worker to report the pause")
    paused_at = len(e2e.arrived())
    # Nothing new may arrive while paused (checked for a bounded time after the worker reported it).
    with pytest.raises(AssertionError, match="timed out"):
        e2e.wait_arrived(paused_at + 1, timeout=3)
    assert e2e.job(job)["status"] == "paused"
    assert w.proc.poll() is None
    e2e.cli("resume", str(job))
    e2e.wait_arrived(paused_at + 1, timeout=20)
    e2e.cli("stop", str(job))
    wait_for(lambda: "is now stopped" in w.output(), 10, "the worker to report the stop")
    # An idle worker still ends cleanly on SIGTERM, within a second or so.
    w.proc.terminate()
    assert w.wait(15) == 130, w.output()
    got = e2e.arrived()
    rows = {r["phone"].lstrip("+"): r for r in e2e.rows()}
    sent = {p: expected[p] for p, r in rows.items() if r["status"] == "sent"}
    assert {r["status"] for r in rows.values()} == {"sent", "cancelled"}
    assert len(sent) == len(got) < 7
    e2e.assert_exactly_once(sent)
    assert e2e.job(job)["status"] == "stopped"


def test_stop_from_another_process_ends_an_until_done_worker(e2e: E2E) -> None:
    e2e.link("s")
    job, expected = e2e.enqueue(6)
    w = e2e.run("s", "--min-delay", "1", "--max-delay", "1.5")
    e2e.wait_arrived(1)
    e2e.cli("stop", str(job))
    assert w.wait(15) == 0, w.output()  # nothing runnable left; cancelled on purpose is not a failure
    rows = {r["phone"].lstrip("+"): r for r in e2e.rows()}
    sent = {p: expected[p] for p, r in rows.items() if r["status"] == "sent"}
    assert {r["status"] for r in rows.values()} == {"sent", "cancelled"}
    e2e.assert_exactly_once(sent)


def test_two_workers_two_sessions_split_the_job(e2e: E2E) -> None:
    dev_a, dev_b = e2e.link("a"), e2e.link("b")
    job, expected = e2e.enqueue(8)
    wa = e2e.run("a", "--min-delay", "1", "--max-delay", "1.5")
    wb = e2e.run("b", "--min-delay", "1", "--max-delay", "1.5")
    assert wa.wait(120) == 0, wa.output()
    assert wb.wait(120) == 0, wb.output()
    got = e2e.assert_exactly_once(expected)
    by_device = {m["device"] for m in got}
    assert by_device == {dev_a, dev_b}, "both workers should have sent part of the job"
    assert e2e.job(job)["sent"] == 8


def test_confirm_timeout_then_verified_without_resend(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    from wabulk.worker import loop as worker

    monkeypatch.setattr(worker, "CONFIRM_RECHECK_SECONDS", 2.0)  # look again soon (default 15 s)
    e2e.link("s")
    _, expected = e2e.enqueue(3)
    held = e2e.phone(0).lstrip("+")
    e2e.sim.configure(hold_pending=[held])  # its bubble stays on the clock
    w = run_in_process(e2e, "s", confirm=2.0)
    try:
        wait_for(
            lambda: any(r["error_class"] == "confirm_timeout" for r in e2e.rows()),
            30,
            "the confirmation timeout to be recorded",
        )
        assert [m["phone"] for m in e2e.arrived()].count(held) == 1
        e2e.sim.configure(hold_pending=[])
        assert w.wait(60) == 0
    finally:
        w.close()
    e2e.assert_exactly_once(expected)
    rows = {r["phone"].lstrip("+"): r for r in e2e.rows()}
    assert rows[held]["status"] == "sent"
    assert rows[held]["attempts"] == 2  # the send, then the verification that found it: no resend


def test_a_page_without_message_ids_fails_closed_then_resumes(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 on the real sender: while the page's bubbles carry no ids (``bubble_ids=False``), a message
    whose confirmation was cut must never be resent on a guess. Then, ids back, a person resumes the session
    and retries the unknown ones: each ends sent, and nobody got two copies."""
    from wabulk.queue import Queue
    from wabulk.worker import loop as worker

    monkeypatch.setattr(worker, "CONFIRM_RECHECK_SECONDS", 1.0)
    e2e.link("s")
    _, expected = e2e.enqueue(3)
    held = e2e.phone(0).lstrip("+")
    e2e.sim.configure(bubble_ids=False, hold_pending=[held])  # cut the first one's confirmation
    w = run_in_process(e2e, "s", confirm=2.0, unknown_threshold=3)
    try:
        code = w.wait(150)
    finally:
        w.close()
    arrived = [m["phone"] for m in e2e.arrived()]
    assert all(arrived.count(p) <= 1 for p in expected), arrived  # never two copies
    rows = {r["phone"].lstrip("+"): r for r in e2e.rows()}
    # Its bubble went out but could not be told from an earlier one: unknown, not resent; the others sent.
    assert (rows[held]["status"], rows[held]["error_class"]) == ("failed", "unknown_outcome"), rows[held]
    assert code == 3 and arrived.count(held) == 1
    # The page shows ids again: what status --check tells a person to do.
    e2e.sim.configure(bubble_ids=True, hold_pending=[])
    with Queue(e2e.db) as q:
        q.resume_session("s")
        q.retry_failed(error_class="unknown_outcome")
    w = run_in_process(e2e, "s", confirm=3.0)
    try:
        assert w.wait(150) == 0
    finally:
        w.close()
    e2e.assert_exactly_once(expected)
    assert all(r["status"] == "sent" for r in e2e.rows()), [(r["phone"], r["status"]) for r in e2e.rows()]


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
