"""The Cloud API provider end to end through real HTTP: the run loop against the bundled Graph simulator,
its signed webhooks into wabulk's receiver, every error class, and the exactly-once rules."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_helpers import (
    APP_SECRET,
    PHONE_ID,
    TOKEN,
    VERIFY_TOKEN,
    graph_simulator,
    wait_until,
    webhook_receiver,
)
from wabulk import exitcodes
from wabulk.cloud.runner import CloudRunConfig, CloudRunResult, run_cloud
from wabulk.cloud.webhooks import signature
from wabulk.models import FAILED, PENDING, SENT, UNKNOWN_OUTCOME, NewJob, NewMessage
from wabulk.queue import Queue


@pytest.fixture
def hook(db_path: Path) -> Iterator[str]:
    Queue(db_path).close()
    with webhook_receiver(db_path) as url:
        yield url


@pytest.fixture
def sim(hook: str) -> Iterator[Any]:
    with graph_simulator(hook, all_windows_open=True) as s:
        yield s


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+1415555{i:04d}" for i in range(start, start + n)]


def enqueue(db: Path, numbers: list[str], **job: Any) -> int:
    with Queue(db) as q:
        return q.enqueue(
            NewJob(name=job.pop("name", "j"), template=job.pop("template", "Hi"), **job),
            [NewMessage(phone=p, body=f"Hi {p}", params=("Ann", p[-4:])) for p in numbers],
        ).job_id


def run(db: Path, sim: Any, **kw: Any) -> CloudRunResult:
    token = kw.pop("token", TOKEN)
    cfg = CloudRunConfig(
        session=kw.pop("session", "biz"),
        phone_number_id=PHONE_ID,
        rate=kw.pop("rate", 200.0),
        until_done=True,
        settle_seconds=kw.pop("settle_seconds", 5.0),
        **kw,
    )
    return run_cloud(db, cfg, token=token, base_url=sim.url)


def messages(db: Path, job_id: int) -> list[Any]:
    with Queue(db) as q:
        return list(q.iter_messages(job_id))


def test_a_text_job_is_sent_once_per_recipient_and_webhooks_record_delivery(db_path: Path, sim: Any) -> None:
    numbers = phones(60)
    job = enqueue(db_path, numbers)
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    assert result.progress.accepted == 60
    for p in numbers:
        assert len(sim.accepted(p)) == 1
    assert sim.wait_webhooks(15)
    msgs = messages(db_path, job)
    assert all(m.status == SENT and m.wamid and m.wa_id for m in msgs)
    with Queue(db_path) as q:
        receipts = q.receipt_counts(job, undelivered_before=0)
    assert receipts["delivered"] >= 50 and receipts["read"] >= 10
    # What Meta saw: +E.164, and callback data naming the message.
    sent = sim.accepted(numbers[0])[0]
    assert json.dumps(sent).count("wb1:") >= 1


def test_a_template_job_sends_its_parameters(db_path: Path, sim: Any) -> None:
    job = enqueue(db_path, phones(5), template_name="order_ready", template_lang="en_US")
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    assert all(m.status == SENT for m in messages(db_path, job))


def test_a_wrong_template_pauses_the_job_after_one_request(db_path: Path, sim: Any) -> None:
    job = enqueue(db_path, phones(40), template_name="no_such_template", template_lang="en_US")
    result = run(db_path, sim)
    assert result.code == exitcodes.ATTENTION
    assert "132001" in result.line
    with Queue(db_path) as q:
        j = q.get_job(job)
        counts = q.counts(job)
    assert j.status == "paused" and "132001" in (j.status_reason or "")
    assert counts["pending"] == 40 and counts["failed"] == 0
    assert sum(1 for _ in sim.accepted()) == 0


def test_a_refused_token_pauses_the_session_and_burns_nothing(db_path: Path, sim: Any) -> None:
    job = enqueue(db_path, phones(30))
    result = run(db_path, sim, token="not-the-token")
    assert result.code == exitcodes.ATTENTION and "190" in result.line
    with Queue(db_path) as q:
        assert q.counts(job)["pending"] == 30
        pause = q.session_pause("biz")
        assert pause is not None and "190" in pause[1]
        assert q.resume_session("biz")
    assert run(db_path, sim).code == exitcodes.OK
    assert all(m.status == SENT for m in messages(db_path, job))


def test_a_token_expiring_mid_run_stops_every_request_in_flight_and_burns_nothing(
    db_path: Path, sim: Any
) -> None:
    """At full speed (64 requests in flight, answers recorded while the next chunk is stamped): once Meta
    answers 190 nothing new is POSTed, the run exits 4 and no message is failed or left unknown."""
    numbers = phones(1500)
    job = enqueue(db_path, numbers)
    done: list[CloudRunResult] = []
    worker = threading.Thread(target=lambda: done.append(run(db_path, sim, rate=500.0)))
    worker.start()
    wait_until(lambda: len(sim.accepted()) >= 100, what="100 accepted")
    sim.expire_token()
    at_expiry = sim.state()["requests"]
    worker.join(30)
    assert done and done[0].code == exitcodes.ATTENTION and "190" in done[0].line
    # What was already stamped or on the wire when the token expired, nothing more.
    assert sim.state()["requests"] - at_expiry <= 64
    with Queue(db_path) as q:
        counts = q.counts(job)
        assert q.unknown_count(job) == 0
    assert counts.get("failed", 0) == 0 and counts.get("sending", 0) == 0
    assert counts["sent"] == len(sim.accepted()) and counts["sent"] + counts["pending"] == 1500


def test_recipient_failures_by_webhook_fail_with_their_code(db_path: Path, hook: str) -> None:
    bad = phones(3, 100)
    with graph_simulator(hook, all_windows_open=True, not_on_whatsapp=[p[1:] for p in bad]) as sim:
        job = enqueue(db_path, [*phones(5), *bad])
        result = run(db_path, sim)
        assert sim.wait_webhooks(15)
    assert result.code in (exitcodes.OK, exitcodes.SOME_FAILED)
    wait_until(lambda: sum(m.status == FAILED for m in messages(db_path, job)) == 3, what="failed webhooks")
    failed = [m for m in messages(db_path, job) if m.status == FAILED]
    assert {m.phone for m in failed} == set(bad)
    assert all(m.error_class == "graph_131026" for m in failed)


def test_a_text_outside_the_window_fails_by_webhook_never_retried(db_path: Path, hook: str) -> None:
    with graph_simulator(hook) as sim:
        job = enqueue(db_path, phones(2))
        run(db_path, sim)
        assert sim.wait_webhooks(15)
        wait_until(lambda: all(m.status == FAILED for m in messages(db_path, job)), what="131047")
        assert all(m.error_class == "graph_131047" for m in messages(db_path, job))
        assert len(sim.accepted()) == 2


def test_a_cut_after_acceptance_is_settled_by_its_webhook_and_never_reposted(db_path: Path, sim: Any) -> None:
    numbers = phones(10)
    sim.add_fault("cut_after", to=numbers[:3])
    job = enqueue(db_path, numbers)
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    for p in numbers:
        assert len(sim.accepted(p)) == 1
    assert all(m.status == SENT for m in messages(db_path, job))


def test_a_read_timeout_is_an_unknown_outcome_settled_by_its_webhook_never_reposted(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "WABULK_GRAPH_READ_TIMEOUT", "0.5"
    )  # the send path's read timeout, not the default 60 s
    numbers = phones(4)
    sim.add_fault("slow", delay_s=2.0, to=numbers[:1], count=1)  # accepted, answered after 2 s
    job = enqueue(db_path, numbers)
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    assert all(len(sim.accepted(p)) == 1 for p in numbers)
    assert all(m.status == SENT for m in messages(db_path, job))  # the slow one by its status webhook
    # Its POST ended unanswered after 0.5 s (an unknown outcome), not with the answer 2 s later.
    assert (result.progress.unknown, result.progress.accepted) == (1, 3)


def test_a_cut_before_acceptance_is_an_unknown_outcome_for_a_person(db_path: Path, sim: Any) -> None:
    numbers = phones(6)
    sim.add_fault("cut_before", to=numbers[:2], count=2)
    job = enqueue(db_path, numbers)
    result = run(db_path, sim, settle_seconds=1.0)
    assert result.code == exitcodes.SOME_FAILED and "unknown outcome" in result.line
    msgs = {m.phone: m for m in messages(db_path, job)}
    for p in numbers[:2]:
        assert msgs[p].status == FAILED and msgs[p].error_class == UNKNOWN_OUTCOME
        assert sim.accepted(p) == []  # never POSTed again on its own
    with Queue(db_path) as q:
        assert q.unknown_count(job) == 2
        q.resolve(msgs[numbers[0]].id, resend=True)  # a person decides to send it again
    assert run(db_path, sim).code == exitcodes.SOME_FAILED
    assert len(sim.accepted(numbers[0])) == 1


def test_a_refused_connection_is_retried(db_path: Path, sim: Any) -> None:
    job = enqueue(db_path, phones(4))
    sim.refuse_connections(1.0)
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    assert all(m.status == SENT for m in messages(db_path, job))


def test_throttling_slows_down_and_loses_nothing_nor_attempts(db_path: Path, sim: Any) -> None:
    sim.set_phone(PHONE_ID, mps=20)
    numbers = phones(60)
    job = enqueue(db_path, numbers)
    result = run(db_path, sim, rate=200.0)
    assert result.code == exitcodes.OK, result.line
    msgs = messages(db_path, job)
    assert all(m.status == SENT for m in msgs)
    assert all(len(sim.accepted(p)) == 1 for p in numbers)
    assert max(m.attempts for m in msgs) == 1  # 130429 did not use up attempts


@pytest.mark.parametrize(("code", "kind"), [(131000, "retry"), (131009, "failed"), (368, "account")])
def test_synchronous_errors_get_their_reaction(db_path: Path, sim: Any, code: int, kind: str) -> None:
    numbers = phones(3)
    sim.add_fault("error", code=code, to=numbers[0], count=1)
    job = enqueue(db_path, numbers)
    result = run(db_path, sim)
    m = {x.phone: x for x in messages(db_path, job)}[numbers[0]]
    if kind == "retry":
        assert result.code == exitcodes.OK and m.status == SENT and m.attempts == 2
    elif kind == "failed":
        assert (
            result.code == exitcodes.SOME_FAILED and m.status == FAILED and m.error_class == f"graph_{code}"
        )
    else:
        assert result.code == exitcodes.ATTENTION and m.status == PENDING and str(code) in result.line


def test_an_attachment_is_uploaded_once_per_job_and_sent_by_id(
    db_path: Path, sim: Any, tmp_path: Path
) -> None:
    pic = tmp_path / "receipt.png"
    pic.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    job = enqueue(db_path, phones(8), attachment=str(pic))
    result = run(db_path, sim)
    assert result.code == exitcodes.OK, result.line
    assert len(sim.uploads()) == 1
    assert all(m.status == SENT for m in messages(db_path, job))


# --- webhook security ------------------------------------------------------------------------------------


def status_body(wamid: str, status: str = "delivered") -> bytes:
    value = {"statuses": [{"id": wamid, "status": status, "timestamp": "1751142888", "recipient_id": "1415"}]}
    return json.dumps({"entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}]}).encode()


def test_webhook_security(db_path: Path, sim: Any, hook: str) -> None:
    job = enqueue(db_path, phones(1))
    run(db_path, sim)
    assert sim.wait_webhooks(15)
    wamid = messages(db_path, job)[0].wamid
    with Queue(db_path) as q:
        q.conn.execute("UPDATE messages SET delivered_at = NULL, read_at = NULL WHERE id = 1")
    body = status_body(wamid)
    unsigned = httpx.post(hook, content=body)
    forged = httpx.post(hook, content=body, headers={"X-Hub-Signature-256": signature("wrong", body)})
    assert unsigned.status_code == 401 and forged.status_code == 403
    assert messages(db_path, job)[0].delivered_at is None  # nothing recorded
    ok = httpx.post(hook, content=body, headers={"X-Hub-Signature-256": signature(APP_SECRET, body)})
    assert ok.status_code == 200 and messages(db_path, job)[0].delivered_at is not None
    big = b"{" + b" " * (1024 * 1024) + b"}"
    assert (
        httpx.post(hook, content=big, headers={"X-Hub-Signature-256": signature(APP_SECRET, big)}).status_code
        == 413
    )
    inbound = json.dumps(
        {"entry": [{"changes": [{"field": "messages", "value": {"messages": [{"from": "1"}]}}]}]}
    )
    signed = {"X-Hub-Signature-256": signature(APP_SECRET, inbound.encode())}
    assert httpx.post(hook, content=inbound, headers=signed).status_code == 200
    unknown = status_body("wamid.nobody")
    assert (
        httpx.post(
            hook, content=unknown, headers={"X-Hub-Signature-256": signature(APP_SECRET, unknown)}
        ).status_code
        == 200
    )
    challenge = {"hub.mode": "subscribe", "hub.challenge": "8472", "hub.verify_token": VERIFY_TOKEN}
    got = httpx.get(hook, params=challenge)
    assert got.status_code == 200 and got.text == "8472"
    assert httpx.get(hook, params={**challenge, "hub.verify_token": "nope"}).status_code == 403


def test_the_token_never_reaches_the_database(db_path: Path, sim: Any) -> None:
    enqueue(db_path, phones(3))
    sim.add_fault("error", code=190, count=1)
    run(db_path, sim)
    run(db_path, sim)  # after the pause: still paused, nothing else
    raw = db_path.read_bytes() + (db_path.with_name(db_path.name + "-wal").read_bytes()
                                  if db_path.with_name(db_path.name + "-wal").exists() else b"")  # fmt: skip
    assert TOKEN.encode() not in raw
    conn = sqlite3.connect(db_path)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert TOKEN not in dump


# --- the provider interface (sender.open_sender("cloud", …)) ------------------------------------------


def test_the_provider_interface_sends_and_a_cut_is_settled_by_the_evidence_webhook(
    db_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wabulk import errors, session
    from wabulk.sender import open_sender
    from wabulk.settings import Settings

    monkeypatch.setenv("WABULK_CLOUD_TOKEN", TOKEN)
    monkeypatch.setenv("WABULK_GRAPH_URL", sim.url)
    provider = open_sender(
        "cloud", Settings.from_env(), session.Session("biz", "cloud", {"phone_number_id": PHONE_ID})
    )
    assert provider.kind == "cloud" and not provider.capabilities.interactive_login
    assert provider.wait_for_login(lambda qr: None, timeout=5)
    numbers = phones(2)
    enqueue(db_path, numbers)
    sim.add_fault("cut_after", to=numbers[1])
    with Queue(db_path) as q:
        for p in numbers:
            claim = q.claim("w", "biz", lease_seconds=60)
            assert claim is not None and claim.phone == p
            stamps: list[str] = []

            def stamp(evidence: str, c: Any = claim, into: list[str] = stamps) -> None:
                into.append(evidence)
                q.mark_send_started(c, evidence)

            try:
                result = provider.send(p, "hello", before_send=stamp)
                q.mark_sent(claim, tick=result.tick, session="biz")
                assert result.message_ref and result.message_ref.startswith("wamid.")
            except errors.ConfirmTimeout:
                assert p == numbers[1] and len(stamps) == 1  # stamped before the POST, answer lost
        wait_until(lambda: q.get_message(2).status == SENT, what="the webhook naming the evidence")
    provider.close()
    assert len(sim.accepted(numbers[1])) == 1
    with pytest.raises(errors.SendError) as info:
        sim.expire_token()
        provider.send(numbers[0], "again")
    assert info.value.scope == errors.SCOPE_ACCOUNT and info.value.error_class == "graph_190"
