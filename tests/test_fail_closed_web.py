"""Issue 20, "fail closed, second round", the page side: "absent" only on positive evidence (the snapshot's
anchors shown again, or the start-of-chat notice, read twice across the settle time). Each test drives the
real decision code (``web/bubbles.py``, ``sender.py``) with only the page's timing faked: a page whose reads
change with a fake clock (history rendered late, a bubble leaving the clock, the page's own clock off the
host's). Each failed on the code before the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wabulk import errors, models
from wabulk.errors import ConfirmTimeout
from wabulk.fakes import FailAtSend, FakeTransport
from wabulk.web import bubbles as B
from wabulk.web import compose, dom, sender

T0 = 1_800_000_030.0  # a page-clock instant 30 s into a minute
Result = dict[str, Any]


def msg(mid: str | None, text: str | None, tick: str | None = "read", *, at: float | None = None, **kw: Any):
    """A message as ``bubbles.js`` returns it (``at``: its minute on the page's clock)."""
    when = None
    if at is not None:
        ms = (at // 60) * 60 * 1000.0
        when = {"a": None, "b": None, "ymd": [ms, ms], "dm": None, "md": None}
    return {
        "dir": "out",
        "id": mid,
        "text": text,
        "tick": tick,
        "kind": kw.pop("kind", "text"),
        "when": when,
        "pre": "[x] Me: " if at is not None else None,
        **kw,
    }


def result(*messages: Result, start: bool = False, now: float | None = None) -> Result:
    out: Result = {"messages": list(messages), "lang": "en-US", "order": "ymd", "start": start}
    if now is not None:
        out["now"] = now * 1000.0
    return out


class FakeTime:
    """``time`` for the page layer: monotonic and sleep on a fake clock; ``time()`` is the host's wall
    clock, ``host_offset`` off the page's."""

    def __init__(self, host_offset: float = 0.0) -> None:
        self.t = 0.0
        self.host_offset = host_offset

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.001)

    def time(self) -> float:
        return T0 + self.t + self.host_offset


class Page:
    """A driver whose page-script answers depend on the fake clock: ``timeline(t)`` is what the open chat
    shows ``t`` seconds after it was opened."""

    def __init__(self, clock: FakeTime, timeline: Callable[[float], Result]) -> None:
        self.clock = clock
        self.timeline = timeline
        self.opened = 0.0

    def show(self, timeline: Callable[[float], Result]) -> None:
        self.timeline = timeline
        self.opened = self.clock.t

    def execute_script(self, script: str, *args: Any) -> Any:
        res = dict(self.timeline(self.clock.t - self.opened))
        res.setdefault("now", (T0 + self.clock.t) * 1000.0)  # the page's clock
        return res


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    c = FakeTime()
    monkeypatch.setattr(B, "time", c)
    monkeypatch.setattr(compose, "first_visible", lambda driver, sel: object())
    return c


def make_sender(page: Page, tmp_path: Path, *, open_error: Exception | None = None) -> sender.WhatsAppSender:
    """The real sender with its browser replaced by ``page`` (opening a chat shows the page's timeline)."""
    wa = sender.WhatsAppSender.__new__(sender.WhatsAppSender)
    wa.timeouts = dom.Timeouts()
    wa.browser = SimpleNamespace(  # type: ignore[assignment]
        driver=page,
        timeouts=wa.timeouts,
        ensure_ready=lambda: None,
        snapshot=lambda: ("chat", {}),
        state=lambda: "chat",
        capture=lambda name: f"/tmp/{name}",
    )

    def open_chat(phone: str) -> None:
        if open_error is not None:
            raise open_error
        page.show(page.timeline)

    wa.chats = SimpleNamespace(open=open_chat)  # type: ignore[assignment]
    wa._date_order = "md"
    wa._order_file = tmp_path / "page.json"
    return wa


def empty_until(seconds: float, later: Result) -> Callable[[float], Result]:
    """A chat whose history renders ``seconds`` after opening (as right after a browser restart)."""
    return lambda t: later if t >= seconds else result()


# --- 1 and 2: an empty or partial read is not an empty chat --------------------------------------------


def test_1_an_empty_read_of_a_chat_whose_history_comes_late_is_never_absent(
    clock: FakeTime, tmp_path: Path
) -> None:
    # First message to a contact: the chat is new (only the start-of-chat notice) when the snapshot is taken.
    page = Page(clock, lambda t: result(start=True))
    wa = make_sender(page, tmp_path)
    known = wa._before().snapshot()
    since = clock.time()
    # Crash after Enter; the message arrived. After the browser restart the history renders 3 s late.
    arrived = result(msg("N1", "hello", "delivered"), start=True)
    page.timeline = empty_until(3.0, arrived)
    found = wa.verify_sent("+14155550100", "hello", since, evidence=known.to_evidence())
    assert found.outcome == models.VERIFY_SENT
    # A history that never shows within any wait: unknown, never absent
    page.timeline = empty_until(1e9, arrived)
    assert (
        wa.verify_sent("+14155550100", "hello", since, evidence=known.to_evidence()).outcome
        == models.VERIFY_UNKNOWN
    )


def test_2_the_snapshot_waits_for_the_history_so_an_older_identical_bubble_is_not_taken_for_ours(
    clock: FakeTime, tmp_path: Path
) -> None:
    # Job 1 sent "Same text" earlier; its bubble renders 0.5 s after the chat opens.
    old = result(msg("J1", "Same text"))
    page = Page(clock, empty_until(0.5, old))
    wa = make_sender(page, tmp_path)
    known = wa._before().snapshot()
    assert known.ids == ("J1",)
    since = clock.time()
    # Crash before job 2's message left: the chat still shows only job 1's bubble.
    page.timeline = lambda t: old
    assert not wa.verify_sent("+14155550100", "Same text", since, evidence=known.to_evidence()).sent


def test_2_a_chat_that_never_shows_its_history_is_not_pressed(clock: FakeTime, tmp_path: Path) -> None:
    page = Page(clock, lambda t: result())  # neither bubbles nor the start-of-chat notice
    wa = make_sender(page, tmp_path)
    with pytest.raises(errors.TransientSendError) as raised:
        wa._before()
    assert not isinstance(raised.value, ConfirmTimeout)  # nothing pressed: a plain retry is safe


# --- 3: a popup during verification -------------------------------------------------------------------


def test_3_an_invalid_number_popup_while_verifying_is_unknown_not_absent(
    clock: FakeTime, tmp_path: Path
) -> None:
    page = Page(clock, lambda t: result(start=True))
    popup = errors.NotOnWhatsApp("WhatsApp says: The phone number +14155550100 isn't on WhatsApp.")
    wa = make_sender(page, tmp_path, open_error=popup)
    found = wa.verify_sent(
        "+14155550100", "hello", clock.time(), evidence=models.ChatSnapshot(ids=("A",), count=1).to_evidence()
    )
    assert found.outcome == models.VERIFY_UNKNOWN


# --- 6: the id-less time fallback on the page's own clock ---------------------------------------------


def test_6_a_fast_host_clock_does_not_make_our_bubble_look_too_old(tmp_path: Path, clock: FakeTime) -> None:
    clock.host_offset = 180.0  # host 3 min fast
    old = msg(None, "other", at=T0 - 3600)
    page = Page(clock, lambda t: result(old))
    wa = make_sender(page, tmp_path)
    known = wa._before().snapshot()
    since = clock.time()
    page.timeline = lambda t: result(old, msg(None, "hi", "delivered", at=T0 + clock.t))
    assert not wa.verify_sent("+14155550100", "hi", since, evidence=known.to_evidence()).absent


def test_6_a_slow_host_clock_does_not_take_an_older_identical_bubble_for_ours(
    tmp_path: Path, clock: FakeTime
) -> None:
    clock.host_offset = -240.0  # host 4 min slow
    older = result(msg(None, "hi", at=T0 - 60))  # another job's identical message, a minute before
    page = Page(clock, lambda t: older)
    wa = make_sender(page, tmp_path)
    known = wa._before().snapshot()
    since = clock.time()
    # crash before the message left: only the older bubble is there
    assert not wa.verify_sent("+14155550100", "hi", since, evidence=known.to_evidence()).sent


def test_6_without_the_pages_clock_the_time_fallback_is_unknown() -> None:
    # a stamp without the page's clock, read on a page that does not give its clock: the skew is not known
    later = B.parse(result(msg(None, "hi", at=T0 + 600)))
    read = B.ChatRead(later.messages, start=True)
    v = B.verify(read, "hi", T0, models.ChatSnapshot(count=0, readable=True, whole=True), chat_open=True)
    assert v.outcome == models.VERIFY_UNKNOWN and "clock" in v.reason


# --- 7, 8, 9: new bubbles that do not prove absence ---------------------------------------------------


def bub(mid: str, text: str, tick: str = "read") -> B.Bubble:
    return B.Bubble("out", mid, text, tick, "text")


def test_7_a_new_outgoing_bubble_with_another_text_is_unknown_not_absent() -> None:
    known = models.ChatSnapshot(ids=("A",), count=1)
    read = B.ChatRead((bub("A", "x"), bub("C", "Hello Ann,  see you")))
    v = B.verify(read, "Hello Ann, see you!", T0, known, chat_open=True)
    assert v.outcome == models.VERIFY_UNKNOWN


def test_8_a_failed_bubble_in_the_chat_is_never_pressed_again_automatically(clock: FakeTime) -> None:
    known = models.ChatSnapshot(ids=("A",), count=1)
    read = B.ChatRead((bub("A", "x"), bub("C", "hi", B.TICK_FAILED)))
    assert B.verify(read, "hi", T0, known, chat_open=True).outcome == models.VERIFY_UNKNOWN
    # right after Enter: the failure icon is an unconfirmed send (verified, never re-pressed blindly)
    before = B.parse(result(msg("A", "x")))
    page = Page(clock, lambda t: result(msg("A", "x"), msg("C", "hi", B.TICK_FAILED)))
    browser = SimpleNamespace(
        driver=page,
        timeouts=dom.Timeouts(),
        snapshot=lambda: ("chat", {}),
        state=lambda: "chat",
        capture=lambda name: name,
    )
    with pytest.raises(ConfirmTimeout):
        B.confirm(browser, before, "hi")


def test_9_a_bubble_still_on_the_clock_is_rechecked_not_taken_as_sent(
    clock: FakeTime, tmp_path: Path
) -> None:
    page = Page(clock, lambda t: result(msg("A", "x")))
    wa = make_sender(page, tmp_path)
    known = wa._before().snapshot()
    since = clock.time()
    # on the clock for a second, then WhatsApp's failure icon: nothing arrived
    page.timeline = lambda t: result(msg("A", "x"), msg("C", "hi", "pending" if t < 1 else B.TICK_FAILED))
    assert not wa.verify_sent("+14155550100", "hi", since, evidence=known.to_evidence()).sent
    # on the clock for good: unknown
    page.timeline = lambda t: result(msg("A", "x"), msg("C", "hi", "pending"))
    assert (
        wa.verify_sent("+14155550100", "hi", since, evidence=known.to_evidence()).outcome
        == models.VERIFY_UNKNOWN
    )
    # on the clock, then a tick: sent
    page.timeline = lambda t: result(msg("A", "x"), msg("C", "hi", "pending" if t < 1 else "sent"))
    assert wa.verify_sent("+14155550100", "hi", since, evidence=known.to_evidence()).sent


# --- 10: two jobs, same text, same number, interleaved ------------------------------------------------


def test_10_a_second_job_to_the_same_chat_waits_until_the_first_is_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_fail_closed import Clock, enqueue, make_worker

    from wabulk.queue import Queue

    c = Clock()
    queue = Queue(tmp_path / "q.db", clock=c)
    fake = FakeTransport(clock=c, advance=c.advance, send_seconds=2.0)
    phone = "+14155550100"
    try:
        j1 = enqueue(queue, [phone], body="Same text")
        j2 = enqueue(queue, [phone], body="Same text")
        # job 1's press shows nothing (it never left): a retry is scheduled to look in the chat first
        fake.script(phone, FailAtSend(ConfirmTimeout("no bubble appeared")))
        worker = make_worker(queue, fake, c)
        for _ in range(40):
            if worker.remaining_work() == 0:
                break
            step = worker.run_once()
            c.advance(max(step.wait, 1.0))
        worker.shutdown()
        statuses = [m.status for j in (j1, j2) for m in queue.iter_messages(j)]
        # each job's message reached the phone once, or is reported unknown: never "sent" without a copy
        assert fake.delivered_to(phone) == statuses.count(models.SENT)
    finally:
        queue.close()
