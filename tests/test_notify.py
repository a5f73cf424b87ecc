"""Notifications: what becomes one, signed delivery, de-duplication, retries, and `status` reporting failures.

The queue is driven through its API (as a worker would); a local HTTP server is the receiver. The full
path through a real worker on the simulator is in test_notify_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notify_helpers import Receiver
from wabulk import identity
from wabulk.cli import app
from wabulk.models import ChatSnapshot, NewJob, NewMessage
from wabulk.notify import store
from wabulk.notify.deliver import Notifier, NotifyConfig, sign
from wabulk.notify.watch import KINDS, Watcher
from wabulk.queue import Queue

SECRET = "s3cret"


def new_job(q: Queue, name: str, n: int, start: int) -> int:
    msgs = [
        NewMessage(phone=f"+1415555{i:04d}", body=f"Hi {i}", name=f"N{i}") for i in range(start, start + n)
    ]
    return q.enqueue(NewJob(name=name, template="Hi"), msgs).job_id


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make_everything_happen(q: Queue) -> dict[str, int]:
    """One of each notifiable thing, through the queue's API."""
    a = new_job(q, "a", 2, 0)
    c = q.claim("w", "s", lease_seconds=60)
    assert c is not None
    q.mark_sent(c, tick="sent", session="s", at=time.time() - 3600)  # still one tick an hour later
    c = q.claim("w", "s", lease_seconds=60)
    assert c is not None
    q.mark_failed(c, error="not on WhatsApp", error_class="not_on_whatsapp")  # a completes
    b = new_job(q, "b", 2, 10)
    c = q.claim("w", "s", lease_seconds=60, job_ids=[b])
    assert c is not None
    q.mark_failed(c, error="outcome unknown: the chat could not be read", error_class="unknown_outcome")
    q.pause_job(b, reason="auto-paused: 5 consecutive confirm_timeout failures")
    d = new_job(q, "d", 1, 20)
    q.set_job_status(d, "waiting_for_login", reason="session 's' is logged out")
    q.pause_session("s", "auto-paused: WhatsApp blocked session 's': temporarily banned")
    q.register_worker("t", pid=dead_pid(), host=identity.place_key())
    return {"a": a, "b": b, "d": d}


def test_every_kind_is_delivered_once_per_id_signed(db_path: Path) -> None:
    receiver = Receiver(secret=SECRET)
    config = NotifyConfig(targets=["url:" + receiver.url], secret=SECRET, undelivered_after=60)
    with Queue(db_path) as q:
        watcher = Watcher(q, config.targets, undelivered_after=60)
        watcher.scan_events()  # a new target starts now
        jobs = make_everything_happen(q)
        notifier = Notifier(db_path, config)
        for _ in range(2):  # a second pass, and a second process looking, add nothing
            for w in (watcher, Watcher(q, config.targets, undelivered_after=60)):
                w.scan_events()
                w.watch_state()
            notifier.deliver_due(q)
    bodies = receiver.bodies()
    kinds = Counter(b["kind"] for b in bodies)
    assert kinds == dict.fromkeys(KINDS, 1)  # every kind the code defines, once
    assert len({b["id"] for b in bodies}) == len(bodies)
    assert receiver.bad_signatures == 0
    for r in receiver.received:
        body = json.dumps(r["body"], ensure_ascii=False, sort_keys=True).encode()
        assert r["headers"]["X-Wabulk-Signature"] == sign(SECRET, body)
        assert r["headers"]["X-Wabulk-Id"] == r["body"]["id"]
    by = {b["kind"]: b for b in bodies}
    assert by["job_completed"]["job"] == jobs["a"] and by["job_completed"]["counts"] == {
        "sent": 1,
        "failed": 1,
    }
    assert (
        by["messages_failed"]["count"] == 1
        and by["messages_failed"]["messages"][0]["error"] == "not on WhatsApp"
    )
    assert by["unknown_outcomes"]["job"] == jobs["b"]
    assert by["job_auto_paused"]["reason"].startswith("auto-paused: 5 consecutive")
    assert by["waiting_for_login"]["jobs"] == [jobs["d"]]
    assert by["undelivered_found"]["count"] == 1
    assert by["worker_died"]["session"] == "t" and "process is gone" in by["worker_died"]["text"]
    assert by["session_auto_paused"]["session"] == "s"
    assert by["session_auto_paused"]["reason"].startswith("auto-paused: WhatsApp blocked session 's'")
    receiver.down()


def test_a_paused_session_is_notified_and_its_resume_is_not(db_path: Path) -> None:
    # The queue's own session pause, as the worker reaches it: N unknown outcomes in a row.
    receiver = Receiver()
    config = NotifyConfig(targets=["url:" + receiver.url])
    with Queue(db_path) as q:
        watcher = Watcher(q, config.targets, undelivered_after=60)
        watcher.scan_events()
        reasons = [q.record_unknown("shop", threshold=3) for _ in range(3)]
        assert reasons[:2] == [None, None] and reasons[2] is not None
        assert q.resume_session("shop")  # a person lifts it: nothing to tell
        watcher.scan_events()
        Notifier(db_path, config).deliver_due(q)
    (body,) = receiver.bodies()
    assert body["kind"] == "session_auto_paused" and body["session"] == "shop"
    assert body["reason"] == reasons[2]
    assert body["reason"].startswith("auto-paused: 3 outcomes in a row could not be read")
    receiver.down()


def test_a_failure_is_told_as_what_it_was_when_the_scan_comes_late(db_path: Path) -> None:
    # The notifier looks at the events after the fact (it was killed, or slow): meanwhile a person resolved
    # an unknown outcome as sent, and another message failed for a recipient reason, was retried, and
    # then failed with an unknown outcome. Each failure is told as what it was when it happened.
    receiver = Receiver()
    config = NotifyConfig(targets=["url:" + receiver.url])
    with Queue(db_path) as q:
        watcher = Watcher(q, config.targets, undelivered_after=60)
        watcher.scan_events()
        a = new_job(q, "a", 1, 0)
        c = q.claim("w", "s", lease_seconds=60, job_ids=[a])
        assert c is not None
        q.mark_send_started(c, ChatSnapshot().to_evidence())
        q.mark_failed(c, error="outcome unknown: the chat could not be read", error_class="unknown_outcome")
        q.resolve(c.message_id, sent=True)
        b = new_job(q, "b", 1, 10)
        c = q.claim("w", "s", lease_seconds=60, job_ids=[b])
        assert c is not None
        q.mark_failed(c, error="WhatsApp says: the number is not on WhatsApp", error_class="not_on_whatsapp")
        assert q.retry_failed(b) == 1
        c = q.claim("w", "s", lease_seconds=60, job_ids=[b])
        assert c is not None
        q.mark_send_started(c, ChatSnapshot().to_evidence())
        q.mark_failed(c, error="compose box vanished", error_class="selector_missing")  # after Enter
        watcher.scan_events()
        Notifier(db_path, config).deliver_due(q)
    told = sorted(
        (x["kind"], x["job"], x["count"]) for x in receiver.bodies() if x["kind"] != "job_completed"
    )
    assert told == [("messages_failed", b, 1), ("unknown_outcomes", a, 1), ("unknown_outcomes", b, 1)]
    receiver.down()


def test_a_failing_receiver_is_retried_and_shown_by_status(db_path: Path) -> None:
    receiver = Receiver()
    receiver.down()
    config = NotifyConfig(targets=["url:" + receiver.url], retry_first=0.0)
    with Queue(db_path) as q:
        watcher = Watcher(q, config.targets, undelivered_after=60)
        watcher.scan_events()
        new_job(q, "x", 1, 0)
        c = q.claim("w", "s", lease_seconds=60)
        assert c is not None
        q.mark_failed(c, error="nope", error_class="not_on_whatsapp")
        watcher.scan_events()
        notifier = Notifier(db_path, config)
        for _ in range(3):
            assert notifier.deliver_due(q) == 2  # messages failed, job completed
        r = CliRunner().invoke(app, ["status", "--json", "--check"])
        assert r.exit_code == 4
        lines = json.loads(r.stdout)["attention"]
        assert lines == [
            f"2 notification(s) to webhook http://127.0.0.1:{receiver.port}/… keep failing "
            f"(last error: {store.failing(q.conn, min_attempts=3)[0].last_error})"
        ]
        assert "/hook" not in lines[0]  # a webhook's path may be a secret
        receiver.up()
        assert notifier.deliver_due(q) == 2
        assert notifier.deliver_due(q) == 0
    assert sorted(receiver.kinds()) == ["job_completed", "messages_failed"]
    r = CliRunner().invoke(app, ["status", "--json", "--check"])
    assert r.exit_code == 0 and json.loads(r.stdout)["attention"] == []
    receiver.down()


def test_a_command_gets_the_json_on_stdin(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    # No shell runs the command: a redirection needs an explicit one.
    config = NotifyConfig(targets=[f"cmd:sh -c 'cat >> {out}; echo >> {out}'"])
    with Queue(db_path) as q:
        watcher = Watcher(q, config.targets, undelivered_after=60)
        watcher.scan_events()
        j = new_job(q, "x", 1, 0)
        q.stop_job(j)
        q.register_worker("gone", pid=dead_pid(), host=identity.place_key())
        watcher.scan_events()
        watcher.watch_state()
        Notifier(db_path, config).deliver_due(q)
        assert Notifier(db_path, config).deliver_due(q) == 0
    got = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [g["kind"] for g in got] == ["worker_died"]


def test_the_notifier_thread_delivers_what_happened_before_it_stopped(db_path: Path) -> None:
    receiver = Receiver()
    config = NotifyConfig(targets=["url:" + receiver.url])
    Queue(db_path).close()
    notifier = Notifier(db_path, config).start()
    with Queue(db_path) as q:
        # The thread's first pass sets the target's cursor; what happens after it is news.
        deadline = time.monotonic() + 20
        while store.cursor(q.conn, config.targets[0]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        j = new_job(q, "x", 1, 0)
        c = q.claim("w", "s", lease_seconds=60)
        assert c is not None
        q.mark_sent(c, tick="sent", session="s")
    notifier.stop()  # the final pass sends the completion
    assert receiver.kinds() == ["job_completed"] and receiver.bodies()[0]["job"] == j
    receiver.down()


def test_a_bad_notify_url_is_refused() -> None:
    r = CliRunner().invoke(app, ["run", "--notify", "ftp://example.invalid/x", "--session", "s"])
    assert r.exit_code == 2
    assert "--notify needs an http:// or https:// URL" in r.stderr


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("url:https://hooks.example.com/services/T0/B0/secret", "webhook https://hooks.example.com/…"),
        ("url:http://127.0.0.1:9/", "webhook http://127.0.0.1:9"),
        ("cmd:/usr/local/bin/page-me --loud", "command /usr/local/bin/page-me"),
    ],
)
def test_targets_are_described_without_secrets(target: str, shown: str) -> None:
    from wabulk.notify import describe

    assert describe(target) == shown


def test_the_last_pass_gives_back_what_it_has_no_time_for(db_path: Path) -> None:
    receiver = Receiver()
    config = NotifyConfig(targets=["url:" + receiver.url])
    with Queue(db_path) as q:
        Watcher(q, config.targets, undelivered_after=60).scan_events()
        for i in range(3):
            store.add(q.conn, config.targets, kind="job_completed", key=f"k{i}", data={}, now=time.time())
        n = Notifier(db_path, config).deliver_due(q, deadline=time.monotonic() - 1)
        assert n == 0 and receiver.bodies() == []
        rows = q.conn.execute("SELECT attempts, lease_until FROM notifications").fetchall()
        assert rows == [(0, None)] * 3  # not tried, not leased: the next process delivers them at once
        assert Notifier(db_path, config).deliver_due(q) == 3
    assert len(receiver.bodies()) == 3
    receiver.down()


def test_a_fleet_passes_the_notify_options_to_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import wabulk.worker.fleet

    seen: dict[str, object] = {}

    def fake_fleet(settings: object, names: list[str], args: list[str], **kw: object) -> int:
        seen.update(names=names, args=args)
        return 0

    monkeypatch.setattr(wabulk.worker.fleet, "run_fleet", fake_fleet)
    r = CliRunner().invoke(
        app,
        ["run", "--sessions", "a,b", "--notify", "http://127.0.0.1:9/h", "--notify-cmd", "logger -t wabulk"],
    )
    assert r.exit_code == 0, r.output
    args = seen["args"]
    assert isinstance(args, list)
    assert args[args.index("--notify") + 1] == "http://127.0.0.1:9/h"
    assert args[args.index("--notify-cmd") + 1] == "logger -t wabulk"
