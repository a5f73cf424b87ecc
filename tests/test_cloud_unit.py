"""The Cloud API provider's parts on their own: error table, rate limiter, HTTP client (over real sockets),
webhook parsing and signatures, and the queue's status-webhook rules."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud_helpers import read_request
from wabulk.cloud import errors as ge
from wabulk.cloud.client import GraphClient
from wabulk.cloud.limiter import RateLimiter
from wabulk.cloud.provider import build_payload
from wabulk.cloud.webhooks import handshake, parse_statuses, signature, signature_ok
from wabulk.models import FAILED, SENT, UNKNOWN_OUTCOME, Claim, CloudOutcome, CloudStatus, NewJob, NewMessage
from wabulk.queue import Queue
from wabulk.store.cloud import callback_data, message_id_from_callback

# --- the error table --------------------------------------------------------------------------------

# Every code of the reference's table (§5) and the reaction it prescribes.
REFERENCE = {
    ge.ACCOUNT: [0, 3, 10, 33, 190, 200, 299, 368, 131005, 131031, 131037, 131042, 131045, 131048, 131064,
                 133010],
    ge.TRANSIENT: [1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004, 2494100],
    ge.JOB: [100, 131008, 131053, 131063, 132000, 132001, 132007, 132012, 132015, 132016, 132018, 135000],
    ge.RECIPIENT: [130403, 130472, 130497, 131009, 131021, 131026, 131030, 131047, 131049, 131050, 131051,
                   132005, 137000],
}  # fmt: skip


@pytest.mark.parametrize("kind", list(REFERENCE))
def test_every_graph_code_gets_the_reaction_of_the_reference(kind: str) -> None:
    for code in REFERENCE[kind]:
        assert ge.reaction(code).kind == kind, code
        err = ge.GraphError(code, "x")
        assert err.error_class == f"graph_{code}"
        assert "\n" not in err.line() and str(code) in err.line() and err.line() == str(err)


def test_slow_down_codes_do_not_use_attempts_and_account_codes_say_how_to_go_on() -> None:
    assert not ge.GraphError(130429, "x").uses_attempt
    assert not ge.GraphError(131056, "x").uses_attempt
    assert ge.GraphError(131000, "x").uses_attempt
    assert "WABULK_CLOUD_TOKEN" in ge.GraphError(190, "x").line()
    assert "resume" in ge.GraphError(132001, "x").line()


def test_a_code_that_arrives_by_webhook_is_never_retried() -> None:
    assert ge.webhook_reaction(131000).kind == ge.RECIPIENT  # accepted, then failed: a resend is a new send
    assert ge.webhook_reaction(132015).kind == ge.RECIPIENT  # held for quality, then the template paused
    assert ge.webhook_reaction(131048).kind == ge.ACCOUNT
    assert ge.webhook_reaction(131026).kind == ge.RECIPIENT


# --- the rate limiter ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += max(s, 1e-6)


@pytest.mark.parametrize("rate", [1.0, 7.0, 80.0, 1000.0])
def test_the_limiter_never_lets_more_than_the_rate_start_in_any_second(rate: float) -> None:
    clock = FakeClock()
    lim = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(int(rate * 3) + 5):
        assert lim.acquire()
        starts.append(clock.now)
    j = 0
    for i, t in enumerate(starts):  # a sliding one-second window over every start
        while starts[j] <= t - 1.0:
            j += 1
        assert i - j + 1 <= int(rate)
    assert starts[-1] - starts[0] <= 3.2 + 5 / rate  # and it does not go much slower either


def test_meta_throttling_halves_the_rate_and_pauses_everyone() -> None:
    clock = FakeClock()
    lim = RateLimiter(80, clock=clock, sleep=clock.sleep)
    lim.acquire()
    backoff = lim.throttled_by_meta()
    lim.throttled_by_meta()  # answers of the same burst count once
    assert lim.rate == 40 and backoff >= 1
    before = clock.now
    lim.acquire()
    assert clock.now - before >= backoff - 1e-9
    clock.now += 60  # a quiet minute: the rate climbs back, never above the setting
    for _ in range(200):
        lim.acquire()
    assert 40 < lim.rate <= 80


def test_a_non_blocking_slot_says_how_long_to_wait_and_takes_nothing_meanwhile() -> None:
    clock = FakeClock()
    lim = RateLimiter(10, clock=clock, sleep=clock.sleep)

    def burst() -> tuple[int, float]:
        taken = 0
        while (wait := lim.try_acquire()) == 0:
            taken += 1
        return taken, wait

    taken, wait = burst()
    assert 1 <= taken <= 2 and 0 < wait <= 0.1 + 1e-9  # evenly spaced: 10/s is one per 0.1 s
    assert lim.try_acquire() == pytest.approx(wait)  # asking again took no slot
    clock.now += wait
    assert lim.try_acquire() == 0
    clock.now += 5.0  # a sender back late catches up on a slot or two, never on the whole gap
    assert 1 <= burst()[0] <= 2


def test_a_stopping_run_gets_no_slot() -> None:
    clock = FakeClock()
    lim = RateLimiter(1, clock=clock, sleep=clock.sleep)
    assert lim.acquire()
    assert not lim.acquire(lambda: True)


# --- the client, over real sockets ------------------------------------------------------------------------


@contextmanager
def raw_server(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-connection-at-a-time TCP server whose ``handler`` does what it likes with each connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                handler(conn)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        srv.close()


def answer(status: int, body: bytes, ctype: str = "application/json") -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return handler


def client(url: str, **kw: float) -> GraphClient:
    return GraphClient("SECRET-TOKEN", base_url=url, version="v27.0", **kw)  # type: ignore[arg-type]


def test_an_accepted_message_gives_its_wamid_and_wa_id() -> None:
    seen: list[bytes] = []
    body = {
        "contacts": [{"input": "+4915", "wa_id": "4915"}],
        "messages": [{"id": "wamid.A", "message_status": "accepted"}],
    }

    def handler(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        data = json.dumps(body).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(data), data)
        )

    with raw_server(handler) as url, client(url) as c:
        got = c.send("123", {"to": "+4915", "type": "text"})
    assert (got.wamid, got.wa_id, got.message_status) == ("wamid.A", "4915", "accepted")
    assert seen[0].startswith(b"POST /v27.0/123/messages ")
    assert b"authorization: Bearer SECRET-TOKEN" in seen[0].replace(b"Authorization", b"authorization")


def test_a_graph_error_is_a_rejection_with_its_code() -> None:
    err = {
        "error": {
            "code": 132001,
            "message": "(#132001) Template name does not exist",
            "error_data": {"details": "x"},
        }
    }
    with raw_server(answer(404, json.dumps(err).encode())) as url, client(url) as c:
        with pytest.raises(ge.GraphError) as info:
            c.send("123", {})
    assert info.value.code == 132001 and info.value.kind == ge.JOB and info.value.http_status == 404


def test_a_refused_connection_was_not_written() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with client(f"http://127.0.0.1:{port}") as c, pytest.raises(ge.TransportError) as info:
        c.send("123", {})
    assert info.value.written is False


def test_a_connection_cut_after_the_request_is_an_unknown_outcome() -> None:
    with raw_server(lambda conn: (read_request(conn), None)[1]) as url, client(url) as c:
        with pytest.raises(ge.TransportError) as info:
            c.send("123", {})
    assert info.value.written is True and "unknown" in str(info.value)


def test_a_read_timeout_is_an_unknown_outcome() -> None:
    release = threading.Event()

    def slow(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(5)

    with raw_server(slow) as url, client(url, read_timeout=0.3) as c:
        with pytest.raises(ge.TransportError) as info:
            c.send("123", {})
        release.set()
    assert info.value.written is True


@pytest.mark.parametrize(
    ("status", "body", "written"),
    [(502, b"<html>Bad gateway</html>", True), (504, b"", True), (429, b"", False), (503, b"<html>", False)],
)
def test_a_gateway_answer_without_a_graph_body(status: int, body: bytes, written: bool) -> None:
    with raw_server(answer(status, body, "text/html")) as url, client(url) as c:
        with pytest.raises(ge.HttpError) as info:
            c.send("123", {})
    assert info.value.written is written and info.value.http_status == status


def test_a_200_without_a_message_id_is_an_unknown_outcome() -> None:
    with raw_server(answer(200, b"<html>ok</html>", "text/html")) as url, client(url) as c:
        with pytest.raises(ge.TransportError) as info:
            c.send("123", {})
    assert info.value.written is True


def test_the_token_is_not_in_the_clients_repr() -> None:
    c = client("http://127.0.0.1:9")
    assert "SECRET" not in repr(c)
    c.close()


# --- payloads -------------------------------------------------------------------------------------------


def claim(**kw: object) -> Claim:
    base: dict[str, object] = {
        "message_id": 7, "job_id": 1, "worker_id": "w", "attempt": 1, "phone": "+4915112345678",
        "body": "Hi Ann", "name": "Ann", "attachment": None, "lease_until": 0.0, "session": "biz", "sends": 1,
    }  # fmt: skip
    base.update(kw)
    return Claim(**base)  # type: ignore[arg-type]


def test_payloads_name_the_message_and_use_plus_e164() -> None:
    text = build_payload(claim(phone="4915112345678"))
    assert text["to"] == "+4915112345678" and text["type"] == "text" and text["text"]["body"] == "Hi Ann"
    assert message_id_from_callback(text["biz_opaque_callback_data"]) == 7
    tpl = build_payload(claim(template_name="order_ready", template_lang="en_US", params=("Ann", "B-1")))
    assert tpl["template"]["name"] == "order_ready" and tpl["template"]["language"] == {"code": "en_US"}
    assert [p["text"] for p in tpl["template"]["components"][0]["parameters"]] == ["Ann", "B-1"]
    img = build_payload(claim(attachment="/x/receipt.png"), media_id="M1")
    assert img["type"] == "image" and img["image"] == {"id": "M1", "caption": "Hi Ann"}
    doc = build_payload(claim(attachment="/x/inv.pdf"), media_id="M2")
    assert doc["document"]["filename"] == "inv.pdf"
    assert callback_data(7, 2) != callback_data(7, 1)


# --- webhooks: signature, handshake, parsing ---------------------------------------------------------------


def test_signatures_and_handshake() -> None:
    body = b'{"entry": []}'
    good = signature("s3cret", body)
    assert signature_ok("s3cret", body, good)
    assert not signature_ok("s3cret", body + b" ", good)
    assert not signature_ok("s3cret", body, None)
    assert not signature_ok(None, body, good)
    assert not signature_ok("s3cret", body, good.replace("sha256=", "sha1="))
    q = {"hub.mode": ["subscribe"], "hub.verify_token": ["vt"], "hub.challenge": ["1158201444"]}
    assert handshake(q, "vt") == (200, "1158201444")
    assert handshake({**q, "hub.verify_token": ["no"]}, "vt")[0] == 403
    assert handshake(q, None)[0] == 403


def test_every_status_of_a_batched_webhook_is_read() -> None:
    def status(i: int, st: str, **extra: object) -> dict[str, object]:
        return {"id": f"wamid.{i}", "status": st, "timestamp": "1751142888", "recipient_id": "4915", **extra}

    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "W", "changes": [
                {"field": "messages", "value": {"statuses": [status(1, "sent"), status(2, "read")]}},
            ]},
            {"id": "W", "changes": [
                {"field": "messages", "value": {"messages": [{"from": "4915", "text": {"body": "hi"}}]}},
                {"field": "messages", "value": {"statuses": [
                    status(3, "failed", errors=[{"code": 131026, "title": "Undeliverable"}]),
                    status(4, "delivered", pricing={"billable": True, "category": "utility"},
                           biz_opaque_callback_data="wb1:9:1"),
                    status(5, "played"),
                ]}},
            ]},
        ],
    }  # fmt: skip
    got = parse_statuses(payload)
    assert [s.wamid for s in got] == ["wamid.1", "wamid.2", "wamid.3", "wamid.4"]
    assert got[2].error_code == 131026
    assert (got[3].pricing_category, got[3].billable, got[3].callback) == ("utility", True, "wb1:9:1")
    assert parse_statuses({"entry": "nonsense"}) == [] and parse_statuses([1, 2]) == []


# --- the queue's webhook rules ------------------------------------------------------------------------


@pytest.fixture
def q(db_path: Path) -> Iterator[Queue]:
    queue = Queue(db_path)
    queue.enqueue(
        NewJob(name="t", template="x"),
        [NewMessage(phone=f"+1415555000{i}", body=f"m{i}") for i in range(4)],
    )
    yield queue
    queue.close()


def send_all(q: Queue, *, answer_kind: str = "sent") -> list[Claim]:
    claims = q.stamp_cloud_batch(q.claim_cloud_batch("w", "biz", 10, lease_seconds=60))
    q.finish_cloud_batch(
        [
            CloudOutcome(c, answer_kind, wamid=f"wamid.{c.message_id}", wa_id="x", delay=30, error="cut")
            for c in claims
        ]
    )
    return claims


def st(status: str, mid: int, **kw: object) -> CloudStatus:
    return CloudStatus(status=status, wamid=f"wamid.{mid}", timestamp=2000.0 + mid, **kw)  # type: ignore[arg-type]


def test_statuses_are_monotonic_and_idempotent(q: Queue) -> None:
    send_all(q)
    r = q.apply_cloud_statuses(
        [st("read", 1), st("delivered", 1), st("read", 1), st("failed", 1, error_code=131026)]
    )
    assert r.applied == 1 and r.duplicates == 3
    m = q.get_message(1)
    assert m.status == SENT and m.read_at == 2001.0 and m.delivered_at == 2001.0 and m.receipt == "read"
    again = q.apply_cloud_statuses([st("read", 1)])
    assert again.applied == 0 and again.duplicates == 1


def test_a_failed_status_fails_an_accepted_message_with_its_code(q: Queue) -> None:
    send_all(q)
    r = q.apply_cloud_statuses([st("failed", 2, error_code=131047, error_details="window closed")])
    m = q.get_message(2)
    assert m.status == FAILED and m.error_class == "graph_131047" and "24 hours" in (m.last_error or "")
    assert r.failed == [(2, 131047, "biz")]


def test_unknown_ids_are_ignored(q: Queue) -> None:
    send_all(q)
    r = q.apply_cloud_statuses([st("delivered", 99), CloudStatus("sent", None, callback="someone-else:1")])
    assert r.unknown == 2 and r.applied == 0


def test_an_unknown_outcome_is_settled_by_the_callback_data_even_late(q: Queue) -> None:
    claims = send_all(q, answer_kind="unknown")
    assert q.cloud_unsettled("biz") == 4
    first = claims[0]
    tok = callback_data(first.message_id, first.sends)
    r = q.apply_cloud_statuses([CloudStatus("sent", "wamid.X", callback=tok, timestamp=3000.0)])
    assert r.applied == 1
    m = q.get_message(first.message_id)
    assert m.status == SENT and m.wamid == "wamid.X"
    assert q.expire_cloud_unsettled("biz") == 3
    late = q.get_message(claims[1].message_id)
    assert late.status == FAILED and late.error_class == UNKNOWN_OUTCOME
    # A webhook after the window still turns it into sent; the stamped message is never claimed again.
    tok2 = callback_data(claims[1].message_id, claims[1].sends)
    q.apply_cloud_statuses([CloudStatus("delivered", "wamid.Y", callback=tok2, timestamp=3001.0)])
    assert q.get_message(claims[1].message_id).status == SENT
    assert q.claim_cloud_batch("w", "biz", 10, lease_seconds=60) == []


def test_a_rejected_post_clears_the_stamp_and_goes_back_to_pending(q: Queue) -> None:
    claims = q.stamp_cloud_batch(q.claim_cloud_batch("w", "biz", 1, lease_seconds=60))
    q.finish_cloud_batch([CloudOutcome(claims[0], "retry", error="throttled", error_class="graph_130429",
                                       uses_attempt=False)])  # fmt: skip
    m = q.get_message(claims[0].message_id)
    assert m.status == "pending" and m.send_started_at is None and m.attempts == 0
    again = q.claim_cloud_batch("w", "biz", 1, lease_seconds=60)
    assert again and again[0].message_id == claims[0].message_id


def test_a_webhook_that_beats_the_answer_keeps_its_settlement(q: Queue) -> None:
    claims = q.stamp_cloud_batch(q.claim_cloud_batch("w", "biz", 1, lease_seconds=60))
    c = claims[0]
    q.apply_cloud_statuses(
        [CloudStatus("delivered", "wamid.Z", callback=callback_data(c.message_id, c.sends))]
    )
    q.finish_cloud_batch([CloudOutcome(c, "sent", wamid="wamid.Z", wa_id="1415")])
    m = q.get_message(c.message_id)
    assert m.status == SENT and m.wamid == "wamid.Z" and m.wa_id == "1415" and m.delivered_at is not None


def test_a_chunk_of_answers_marks_each_accepted_message_with_its_own_wamid_and_keeps_a_settled_one(
    q: Queue,
) -> None:
    """The answers of a chunk are recorded in one multi-row statement, each fenced on its own claim: a
    message a webhook settled first keeps that settlement, the others get their own wamid and events."""
    claims = q.stamp_cloud_batch(q.claim_cloud_batch("w", "biz", 4, lease_seconds=60))
    first = claims[0]
    q.apply_cloud_statuses([CloudStatus("read", "wamid.early", callback=callback_data(first.message_id, 1))])
    q.finish_cloud_batch(
        [CloudOutcome(c, "sent", wamid=f"wamid.{c.message_id}", wa_id=f"wa{c.message_id}") for c in claims]
    )
    got = {c.message_id: q.get_message(c.message_id) for c in claims}
    assert got[first.message_id].wamid == "wamid.early" and got[first.message_id].receipt == "read"
    for c in claims[1:]:
        m = got[c.message_id]
        assert (m.status, m.wamid, m.wa_id, m.sent_by_session) == (
            SENT,
            f"wamid.{c.message_id}",
            f"wa{c.message_id}",
            "biz",
        )
        kinds = [(e.kind, e.to_status) for e in q.events(message_id=c.message_id)]
        assert kinds == [("send_started", "sending"), ("status", SENT)]
    assert q.counts(claims[0].job_id)["sent"] == 4


def test_unstamped_claims_of_a_killed_run_are_claimed_again_at_once_stamped_ones_never(q: Queue) -> None:
    """A run SIGKILLed between claim and stamp leaves leased messages nothing was POSTed for; the next run
    (registering replaces the dead worker) takes them at once instead of waiting out the lease, so
    ``--until-done`` never ends with them unsent. A stamped one stays for its status webhook."""
    dead = q.register_worker("biz", pid=999_999_999, host="here")
    claimed = q.claim_cloud_batch(dead, "biz", 4, lease_seconds=600)
    q.stamp_cloud_batch(claimed[:1])
    live = q.register_worker("biz", pid=os.getpid(), host="here")  # replaces the dead one
    again = q.claim_cloud_batch(live, "biz", 10, lease_seconds=600)
    assert sorted(c.message_id for c in again) == sorted(c.message_id for c in claimed[1:])
    assert all(c.attempt == 2 for c in again)
    assert q.stamp_cloud_batch(claimed[1:]) == []  # the dead run's claims are fenced off


def test_a_post_is_never_started_once_the_claims_lease_no_longer_covers_it() -> None:
    """A stamped message whose lease ran out (or runs out before the POST could be answered) may already be
    failed as unknown_outcome and resent by a person: the sender gives the claim back instead of POSTing
    (found by the Cloud queue model: the stale POST was a second copy)."""
    from wabulk.cloud.provider import CloudSender

    seen: list[bytes] = []
    body = json.dumps({"contacts": [{"wa_id": "4915"}], "messages": [{"id": "wamid.A"}]}).encode()

    def handler(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    now = 1_800_000_000.0
    with raw_server(handler) as url, client(url, connect_timeout=1.0, read_timeout=5.0) as c:
        sender = CloudSender(c, "123", limiter=RateLimiter(100), clock=lambda: now)
        for lease_until in (now - 1, now + 5.9):  # expired; expires before the answer could come
            report = sender.send(claim(lease_until=lease_until))
            assert report.outcome.kind == "release"
            assert "lease ran out" in report.outcome.error
        assert seen == []
        report = sender.send(claim(lease_until=now + 60))
    assert (report.outcome.kind, report.outcome.wamid) == ("sent", "wamid.A")
    assert len(seen) == 1
