"""A WhatsApp account restricted on linked devices (2026: a block bar instead of the composer): the worker
spends no attempt, keeps any send stamp, pauses no job, shows ``restricted`` (status and ``--check``),
re-checks slowly and resumes by itself. Real queue, FakeTransport, injected clock: no browser."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from conftest import Clock
from wabulk import exitcodes, identity
from wabulk.errors import AccountRestricted, ConfigError
from wabulk.fakes import FakeTransport
from wabulk.models import PENDING, SENT, NewJob, NewMessage, SendResult, Verification, WorkerInfo
from wabulk.pacing import PROFILES
from wabulk.queue import Queue
from wabulk.report import attention
from wabulk.settings import restricted_recheck_seconds
from wabulk.worker import Worker, WorkerConfig, WorkerEvent, build_config

T0 = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()


@dataclass
class RestrictedFake(FakeTransport):
    """A fake account that WhatsApp restricts until ``restricted`` goes False: opening a chat (to send or
    to verify) raises AccountRestricted, as the sender does when the chat shows the block bar."""

    restricted: bool = True
    tries: list[float] = field(default_factory=list)  # when a chat was opened while restricted

    def _check(self) -> None:
        if self.restricted:
            self.tries.append(self.clock())
            raise AccountRestricted("WhatsApp restricts this account on linked devices (fake)")

    def send(self, phone: str, body: str, **kw: Any) -> SendResult:
        self._check()
        return super().send(phone, body, **kw)

    def verify_sent(self, phone: str, body: str, since: float, **kw: Any) -> Verification:
        self._check()
        return super().verify_sent(phone, body, since, **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def queue(db_path: Path, clock: Clock) -> Queue:
    q = Queue(db_path, clock=clock)
    yield q
    q.close()


def _job(queue: Queue, phones: list[str]) -> int:
    stats = queue.enqueue(
        NewJob(name="promo", template="Hi", max_attempts=3),
        [NewMessage(phone=p, body=f"Hello {p[-4:]}") for p in phones],
    )
    return stats.job_id


def _msg(queue: Queue, job: int, phone: str):  # type: ignore[no-untyped-def]
    return next(m for m in queue.iter_messages(job) if m.phone == phone)


def _worker(queue: Queue, fake: FakeTransport, clock: Clock, events: list[WorkerEvent], **cfg: Any) -> Worker:
    config = replace(WorkerConfig(session="main", until_done=True, pace=PROFILES["off"]), **cfg)
    return Worker(
        queue, fake, config, clock=clock, sleep=clock.sleep, on_event=events.append, sender_zone=dt.UTC
    )


def test_a_restricted_account_spends_nothing_pauses_nothing_and_resumes_by_itself(
    queue: Queue, clock: Clock
) -> None:
    a, b = "+14155550001", "+14155550002"
    job = _job(queue, [a, b])
    fake = RestrictedFake(clock=clock, advance=clock.advance, send_seconds=1.0)
    events: list[WorkerEvent] = []
    worker = _worker(queue, fake, clock, events, restricted_recheck=60.0)
    seen: dict[str, Any] = {}

    def look() -> None:  # while restricted: what status and the queue say
        seen["messages"] = [(m.status, m.attempts) for m in queue.iter_messages(job)]
        seen["job"] = queue.get_job(job).status
        seen["workers"] = [(w.session, w.state) for w in queue.workers()]
        seen["attention"] = attention(queue.summaries(None), queue.workers())

    clock.at(T0 + 100, look)
    clock.at(T0 + 150, lambda: setattr(fake, "restricted", False))
    assert worker.run() == exitcodes.OK

    assert seen["messages"] == [(PENDING, 0), (PENDING, 0)]  # released untried: no attempt spent
    assert seen["job"] == "running"  # not paused: other sessions may go on sending
    assert seen["workers"] == [("main", "restricted")]
    assert any("'main' is restricted" in line for line in seen["attention"])
    # slow re-checks, growing (60 s, then 120 s), never a tight loop
    assert len(fake.tries) == 2 and fake.tries[1] - fake.tries[0] >= 60.0
    assert fake.delivered_to(a) == 1 and fake.delivered_to(b) == 1
    assert _msg(queue, job, a).status == SENT and _msg(queue, job, a).attempts == 1
    names = [e.kind for e in events]
    assert "restricted" in names and "restricted_lifted" in names
    assert names.index("restricted_lifted") > names.index("restricted")
    assert "blocked" not in names and "breaker" not in names


def test_a_stamped_message_keeps_its_stamp_and_is_verified_once_the_restriction_lifts(
    queue: Queue, clock: Clock
) -> None:
    a = "+14155550003"
    job = _job(queue, [a])
    # An earlier worker stamped the message and was killed (on this host: provably gone; one on another
    # host might still press, and its stamp is never proved absent): it is ambiguous.
    old = queue.register_worker("main", pid=999_999_999, host=identity.place_key())
    claim = queue.claim(old, "main", lease_seconds=5)
    assert claim is not None
    queue.mark_send_started(claim)
    stamp = _msg(queue, job, a).send_started_at
    clock.advance(60)  # lease expired, old registration stale
    fake = RestrictedFake(clock=clock, advance=clock.advance)
    events: list[WorkerEvent] = []
    worker = _worker(queue, fake, clock, events, restricted_recheck=30.0)
    seen: dict[str, Any] = {}
    clock.at(clock.t + 10, lambda: seen.update(m=_msg(queue, job, a)))
    clock.at(clock.t + 40, lambda: setattr(fake, "restricted", False))
    assert worker.run() == exitcodes.OK
    m = seen["m"]
    assert m.status == PENDING and m.send_started_at == stamp  # the stamp stays: verified before any resend
    assert m.attempts == 1  # the earlier worker's attempt only
    assert ("verify_sent", a) in fake.calls  # looked in the chat first once it could
    assert fake.delivered_to(a) == 1 and _msg(queue, job, a).status == SENT


def test_an_idle_worker_stays_restricted_until_a_send_goes_through(queue: Queue, clock: Clock) -> None:
    fake = RestrictedFake(clock=clock)
    worker = _worker(queue, fake, clock, [], until_done=False, restricted_recheck=30.0)
    job = _job(queue, ["+14155550004"])
    assert worker.run_once().outcome == "restricted"
    queue.stop_job(job)  # nothing claimable any more: no chat to look at, the state stays
    assert worker.run_once().outcome == "idle"
    assert worker.state == "restricted"


def test_restricted_sessions_need_attention_only_while_their_worker_is_alive() -> None:
    def w(state: str, alive: bool) -> WorkerInfo:
        return WorkerInfo("w1", "acct", 1, "h", T0, T0, alive, state)

    assert attention([], [w("restricted", True)]) == [
        "session 'acct' is restricted by WhatsApp (linked devices): it sends nothing until the restriction "
        "lifts (re-checked by its worker); other sessions go on"
    ]
    assert attention([], [w("restricted", False)]) == []
    assert attention([], [w("sending", True)]) == []


def test_the_recheck_interval_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WABULK_RESTRICTED_RECHECK", raising=False)
    assert restricted_recheck_seconds() == 900.0
    assert build_config(session="s").restricted_recheck == 900.0
    monkeypatch.setenv("WABULK_RESTRICTED_RECHECK", "2.5")
    assert build_config(session="s").restricted_recheck == 2.5
    monkeypatch.setenv("WABULK_RESTRICTED_RECHECK", "0")
    with pytest.raises(ConfigError, match="WABULK_RESTRICTED_RECHECK must be a number of seconds above 0"):
        build_config(session="s")


def test_the_live_view_shows_the_restricted_session(queue: Queue, clock: Clock) -> None:
    import io

    from rich.console import Console

    from wabulk.live import LiveView

    console = Console(record=True, width=160, force_terminal=True, file=io.StringIO())
    view = LiveView(console, profile=PROFILES["balanced"], live=True, clock=clock)
    _job(queue, ["+14155550005"])
    worker = _worker(queue, RestrictedFake(clock=clock), clock, [], restricted_recheck=900.0)
    worker.on_event = view.handle
    assert worker.run_once().outcome == "restricted"
    console.print(view.render())
    text = console.export_text()
    assert "[restricted]" in text
    line = "session 'main' is restricted by WhatsApp on linked devices; other sessions go on; checking again"
    assert f"{line} in 900s" in text
