"""End-to-end tests of ``wabulk run`` against the bundled simulator with real Chromium and Selenium.

The oracle is what the simulator received (``sim.messages()``): every expected message exactly once, with
the exact text, whatever happens to the worker (SIGKILL, logout, takeover, offline, pause/stop, a second
worker, a confirmation timeout). The worker runs as a real subprocess where process behaviour matters.
"""

from __future__ import annotations

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, run_in_process, wait_for

# The fixtures e2e, linked and sim (pytest finds them by their name in this module).
from e2e_helpers import e2e_fixture as e2e_fixture
from e2e_helpers import linked_fixture as linked_fixture
from e2e_helpers import sim_fixture as sim_fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    needs_chromium,
]


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
