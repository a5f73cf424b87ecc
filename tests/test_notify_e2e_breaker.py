"""Notifications from a real `wabulk run --notify URL` worker on the simulator (the second half of
``test_notify_e2e.py``, whose docstring says what the two cover together): five attachments WhatsApp refuses
in a row (the circuit breaker auto-pauses the JOB), and a message whose outcome the page cannot tell (no
message ids, its confirmation cut) that a person then resolves with `wabulk resolve ID --sent`; each
notification reaches the webhook exactly once across a receiver outage and a SIGKILL."""

from __future__ import annotations

from collections import Counter

import pytest

from browser_marks import needs_chromium
from e2e_helpers import E2E, SIM_E2E, wait_for
from notify_helpers import KINDS_BREAKER_TEST, SECRET, Receiver, notifying_env, outbox, write_contacts

# The fixtures e2e and sim (pytest finds them by their name in this module).
from notify_helpers import e2e_fixture as e2e_fixture
from notify_helpers import sim_fixture as sim_fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    needs_chromium,
]


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
