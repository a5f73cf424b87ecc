"""The bubble reader (web/js/bubbles.js + web/bubbles.py) on small static pages of each era, in headless
Chromium, and the verification decisions on plain values (no simulator)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from browser_marks import needs_chromium
from wabulk import models
from wabulk.web import bubbles as B
from wabulk.web import dates as D

NEEDS_BROWSER = needs_chromium


# --- static pages, one builder per era (as whatsapp-web-dom.md and the simulator README describe them) ---


def _tick_2023(status: str) -> str:
    icon = {"pending": "msg-time", "sent": "msg-check", "delivered": "msg-dblcheck", "read": "msg-dblcheck"}
    return f'<span data-icon="{icon[status]}" aria-label=" {status.title()} "></span>'


def _tick_2026(status: str, *, label: bool = True) -> str:
    title = {"pending": "wds-ic-pending", "sent": "wds-ic-delivered", "delivered": "wds-ic-read"}
    title["read"] = "wds-ic-read"
    aria = f' aria-label=" {status.title()} "' if label else ""
    return f"<span{aria}><svg><title>{title[status]}</title></svg></span>"


def _fail() -> str:
    return '<span data-icon="message-fail"><svg><title>message-fail</title></svg></span>'


def row_2023(mid: str, text: str, status: str = "delivered", pre: str = "[10:31, 3/12/2026] Me: ") -> str:
    return (
        f'<div role="row"><div data-id="true_14155550123@c.us_{mid}"><div class="message-out">'
        '<span data-icon="tail-out"></span><div class="bubble">'
        f'<div class="copyable-text" data-pre-plain-text="{pre}"><div>'
        f'<span dir="auto" class="selectable-text copyable-text"><span>{text}</span></span></div></div>'
        f'<div data-testid="msg-meta"><span class="time">10:31</span>{_tick_2023(status)}</div>'
        "</div></div></div></div>"
    )


def row_2026(mid: str, text: str, status: str = "delivered", pre: str = "[10:31, 3/12/2026] Me: ") -> str:
    return (
        f'<div role="row"><div data-id="{mid}"><div class="x9f619">'
        '<span class="visually-hidden" aria-label="You:"></span><span data-icon="tail-out"></span>'
        f'<div class="bubble"><div class="copyable-text" data-pre-plain-text="{pre}"><div>'
        f'<span dir="auto" class="selectable-text copyable-text"><span>{text}</span></span></div></div>'
        f'<div data-testid="msg-meta"><span class="time">10:31</span>{_tick_2026(status)}</div>'
        "</div></div></div></div>"
    )


def row_2609(
    mid: str | None,
    text: str | None,
    status: str = "delivered",
    *,
    first: bool = True,
    author: str = "You:",
    pre: str = "[10:31, 3/12/2026] Me: ",
    media: str | None = None,
    tick: str | None = None,
    label: bool = True,
    raw: str | None = None,
) -> str:
    """A 2026-09 bubble: author label on every bubble, tail only on the first of a series, the text span
    and msg-meta (time + tick) inside the same copyable-text container, no message-out class."""
    ours = author == "You:"
    tail = f'<span data-icon="tail-{"out" if ours else "in"}"></span>' if first else ""
    if tick is None:
        tick = _tick_2026(status, label=label) if ours else ""
    block = raw or (f'<div data-testid="{media}"><img alt=""></div>' if media else "")
    span = (
        f'<span data-testid="selectable-text copyable-text" dir="auto"><span>{text}</span></span>'
        if text is not None
        else ""
    )
    ident = f' data-id="{mid}"' if mid else ""
    return (
        f'<div role="row"><div{ident}><div><span class="hidden" aria-label="{author}"></span>{tail}'
        f'<div>{block}<div class="copyable-text" data-pre-plain-text="{pre}">{span}'
        f'<div data-testid="msg-meta"><span>10:31</span>{tick}</div></div></div></div></div></div>'
    )


def page(*rows: str, header: str = "") -> str:
    return (
        '<html><body><div id="app"><div id="main"><header>'
        + header
        + '</header><div role="application">'
        + "".join(rows)
        + '</div><footer><div contenteditable="true" role="textbox"></div></footer></div></div></body></html>'
    )


# --- the browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A bare headless Chromium (no wabulk session) in Berlin time, for the static pages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("WABULK_CHROME_BINARY", "/usr/bin/chromium")
    for flag in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--lang=en-US"):
        opts.add_argument(flag)
    if os.geteuid() == 0:
        opts.add_argument("--no-sandbox")
    service = Service(
        os.environ.get("WABULK_CHROMEDRIVER", "/usr/bin/chromedriver"),
        env={**os.environ, "TZ": "Europe/Berlin"},
    )
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def read_page(driver: Any, html: str) -> B.ChatRead:
    driver.get("data:text/html;charset=utf-8," + quote(html))
    return B.read(driver)


# --- reading each era -------------------------------------------------------------------------------------


@NEEDS_BROWSER
@pytest.mark.browser
@pytest.mark.parametrize("era", ["2023", "2025", "2026", "2026-09"])
def test_each_era_reads_our_bubbles_with_exact_text_ids_and_ticks(chromium: Any, era: str) -> None:
    body = "hello 😀\nsecond line"
    shown = body.replace("\n", "<br>")
    if era in ("2023", "2025"):
        rows = [row_2023("3EB0A1", "older", "read"), row_2023("3EB0A2", shown, "sent")]
    elif era == "2026":
        rows = [row_2026("3EB0A1", "older", "read"), row_2026("3EB0A2", shown, "sent")]
    else:
        rows = [row_2609("3EB0A1", "older", "read"), row_2609("3EB0A2", shown, "sent", first=False)]
    read = read_page(chromium, page(*rows))
    ours = read.ours
    assert [b.text for b in ours] == ["older", body]  # never "hello…10:31" from the container
    assert [b.tick for b in ours] == ["read", "sent"]
    assert all(b.id and b.id.endswith(("3EB0A1", "3EB0A2")) for b in ours)
    assert read.readable and read.snapshot().count == 2 and len(read.snapshot().ids) == 2


@NEEDS_BROWSER
@pytest.mark.browser
def test_2026_09_incoming_identical_text_is_not_ours_and_tail_only_on_the_first(chromium: Any) -> None:
    rows = [
        row_2609("IN1", "same words", author="+1 415-555-0123:", first=True),
        row_2609("IN2", "again", author="+1 415-555-0123:", first=False),
        row_2609("OUT1", "first of ours", "read", first=True),
        row_2609("OUT2", "same words", "delivered", first=False),  # no tail: still ours by its label
        row_2609("OUT3", "same words", "sent", first=False),
    ]
    read = read_page(chromium, page(*rows))
    assert [b.id for b in read.ours] == ["OUT1", "OUT2", "OUT3"]
    assert [b.direction for b in read.messages] == ["in", "in", "out", "out", "out"]
    assert read.messages[0].tick is None  # incoming bubbles have no tick
    # 2026-09 ticks: wds-ic-delivered is the single tick, wds-ic-read needs the aria-label to say "read"
    assert [b.tick for b in read.ours] == ["read", "delivered", "sent"]


@NEEDS_BROWSER
@pytest.mark.browser
def test_ticks_without_aria_label_are_read_from_the_svg_title_as_observed(chromium: Any) -> None:
    rows = [
        row_2609("A", "one tick", "sent", label=False),
        row_2609("B", "two ticks", "read", first=False, label=False),
        row_2609("C", "failed", first=False, tick=_fail()),
    ]
    read = read_page(chromium, page(*rows))
    # wds-ic-read is drawn for delivered AND read: without a label it only proves "delivered"
    assert [b.tick for b in read.ours] == ["sent", "delivered", B.TICK_FAILED]
    assert read.ours[2].ours  # a failed bubble (no tick, only the author label) is still ours


@NEEDS_BROWSER
@pytest.mark.browser
def test_media_bubbles_have_a_kind_and_their_caption(chromium: Any) -> None:
    rows = [
        row_2609("I", "a caption", media="image-msg"),
        row_2609("S", None, first=False, media="sticker-msg"),
        row_2609("D", "invoice", first=False, media="document-msg"),
        row_2609("V", None, first=False, media="video-msg"),
    ]
    ours = read_page(chromium, page(*rows)).ours
    assert [(b.kind, b.text) for b in ours] == [
        ("image", "a caption"),
        ("sticker", None),
        ("document", "invoice"),
        ("video", None),
    ]
    assert all(b.readable for b in ours)  # a file without caption is read by its kind
    assert B.kind_fits(ours[0], "media") and not B.kind_fits(ours[1], "media")
    assert B.kind_fits(ours[2], "document") and not B.kind_fits(ours[0], "document")
    assert not B.kind_fits(ours[0], None)  # a photo is not a text message


@NEEDS_BROWSER
@pytest.mark.browser
def test_a_page_without_ids_or_texts_is_not_readable(chromium: Any) -> None:
    no_ids = read_page(chromium, page(row_2609(None, "x"), row_2609(None, "y", first=False)))
    assert len(no_ids.ours) == 2 and not no_ids.readable
    snap = no_ids.snapshot()
    assert (snap.ids, snap.count, snap.readable, snap.whole) == ((), 2, False, False)
    assert snap.page_clock is not None  # the page's own clock, for the time fallback
    blind = read_page(chromium, page(row_2609("A", None), row_2609("B", None, first=False)))
    assert not blind.readable and blind.snapshot().ids == ("A", "B")
    # a message row whose direction nothing tells (no label, tail, tick or old marker)
    bare = (
        '<div role="row"><div data-id="Z">'
        '<div class="copyable-text" data-pre-plain-text="[1:00, 1/1/2026] x: ">'
        '<span data-testid="selectable-text">?</span></div></div></div>'
    )
    odd = read_page(chromium, page(bare))
    assert odd.ours == [] and len(odd.unclassified) == 1 and not odd.readable


NOTICE = (
    '<div role="row"><div class="e2e"><span data-icon="lock-small"></span><span dir="auto">Messages and calls'
    " are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them."
    "</span></div></div>"
)


@NEEDS_BROWSER
@pytest.mark.browser
def test_the_start_of_chat_notice_counts_only_above_every_message(chromium: Any) -> None:
    # issue 20: the notice is the evidence that the whole history is shown (an empty read is not)
    assert read_page(chromium, page(NOTICE)).start
    shown = read_page(chromium, page(NOTICE, row_2609("A", "x")))
    assert shown.start and [b.id for b in shown.ours] == ["A"] and shown.snapshot().whole
    assert not read_page(chromium, page()).start
    assert not read_page(chromium, page(row_2609("A", "x"))).start
    # a message quoting it, or the text below a message, is not the start of the chat
    quoting = row_2609("A", "Messages and calls are end-to-end encrypted, they say")
    assert not read_page(chromium, page(quoting)).start
    assert not read_page(chromium, page(row_2609("A", "x"), NOTICE)).start
    assert not read_page(chromium, page(header=NOTICE)).start


@NEEDS_BROWSER
@pytest.mark.browser
def test_media_found_by_the_markers_public_code_uses_and_unknown_media_is_not_text(chromium: Any) -> None:
    # issue 20, "attachments on a page whose media markers differ"
    thumb = '<div role="button" aria-label="Open picture"><img data-testid="image-thumb" src="data:,"></div>'
    video = '<div data-testid="video-thumb"><img src="data:,"><span data-icon="media-play"></span></div>'
    doc = '<div data-testid="document-thumb"><span>invoice.pdf</span></div>'
    read = read_page(
        chromium,
        page(
            row_2609("I", "a caption", raw=thumb),
            row_2609("V", "a clip", first=False, raw=video),
            row_2609("D", "invoice", first=False, raw=doc),
            row_2609("C", "drawn", first=False, raw="<div><canvas width=10 height=10></canvas></div>"),
            row_2609("U", "odd", first=False, raw='<div><img src="https://x.invalid/p.jpg" alt=""></div>'),
            row_2609("E", 'hi <img alt="😀" class="emoji" src="data:,">', first=False),
        ),
    )
    kinds = {b.id: b.kind for b in read.ours}
    assert kinds == {"I": "image", "V": "video", "D": "document", "C": None, "U": None, "E": "text"}
    # a captioned photo whose marker is unknown is not "the file arrived as text": it fits a media send
    assert B.kind_fits(read.ours[3], "media") and not B.kind_fits(read.ours[5], "media")


@NEEDS_BROWSER
@pytest.mark.browser
def test_dates_are_read_in_the_page_order_only(chromium: Any) -> None:
    read = read_page(chromium, page(row_2609("A", "x", pre="[13:57, 5/6/2026] Me: ")))
    (b,) = read.ours
    assert D.span(b, None) is None  # 5 June or 6 May: not guessed
    june5, may6 = D.span(b, D.DM), D.span(b, D.MD)
    assert june5 is not None and may6 is not None and june5[0] - may6[0] == 30 * 86400
    assert D.date_order(read) is None
    # a date that reads one way only settles the order for the page
    both = read_page(
        chromium,
        page(
            row_2609("A", "x", pre="[13:57, 5/6/2026] Me: "), row_2609("B", "y", pre="[9:00, 6/15/2026] Me: ")
        ),
    )
    assert D.date_order(both) == D.MD
    assert D.date_order(both, learnt=D.DM) == D.MD  # the page's own evidence wins
    assert D.date_order(read, learnt=D.DM) == D.DM
    dotted = read_page(chromium, page(row_2609("A", "x", pre="[15:52, 31.08.2026] Me: ")))
    assert D.date_order(dotted) == D.DM and D.span(dotted.ours[0], None) is not None
    twelve = read_page(chromium, page(row_2609("A", "x", pre="[1:57 PM, 12/20/2026] Me: ")))
    lo, hi = D.span(twelve.ours[0], D.MD) or (0, 0)
    assert hi - lo == 60  # 13:57 Berlin time, one minute
    import datetime as dt

    assert dt.datetime.fromtimestamp(lo, dt.timezone.utc).strftime("%H:%M %d/%m") == "12:57 20/12"


@NEEDS_BROWSER
@pytest.mark.browser
def test_the_repeated_dst_hour_covers_both_instants(chromium: Any) -> None:
    # Berlin, 25 Oct 2026: 02:30 happens twice (CEST, then CET)
    read = read_page(chromium, page(row_2609("A", "x", pre="[02:30, 25.10.2026] Me: ")))
    lo, hi = D.span(read.ours[0], D.DM) or (0, 0)
    assert hi - lo == 3600 + 60
    # a message sent at the second 02:30 (00:30 + 1 h UTC) is not "before" a stamp taken at 01:30 UTC
    second = lo + 3600 + 10
    v = B.verify(read, "x", second, None, chat_open=True, order=D.DM, skew=0)
    assert v.outcome == models.VERIFY_UNKNOWN  # around the stamp: not absent, not a guess


@NEEDS_BROWSER
@pytest.mark.browser
def test_learning_the_order_from_a_bubble_sent_today(chromium: Any) -> None:
    import datetime as dt

    now = dt.datetime(2026, 5, 6, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    read = read_page(chromium, page(row_2609("A", "x", pre="[14:00, 5/6/2026] Me: ")))
    assert D.learn_order(read.ours[0], now) == D.MD  # 6 May is today: month first
    assert D.learn_order(read.ours[0], now + 30 * 86400) == D.DM  # 5 June is today: day first


# --- decisions on plain values ------------------------------------------------------------------------


def bub(mid: str | None, text: str | None, tick: str | None = "sent", **kw: Any) -> B.Bubble:
    return B.Bubble("out", mid, text, tick, kw.pop("kind", "text" if text is not None else None), **kw)


def chat(*bs: B.Bubble) -> B.ChatRead:
    return B.ChatRead(tuple(bs))


def snap(*ids: str) -> models.ChatSnapshot:
    return models.ChatSnapshot(ids=ids, count=len(ids))


def test_verify_by_id() -> None:
    known = snap("A", "B")
    # a new bubble with the text: sent, with its id and tick
    v = B.verify(
        chat(bub("A", "hi"), bub("B", "x"), bub("C", "hi", "delivered")), "hi", 0, known, chat_open=True
    )
    assert (v.outcome, v.message_ref, v.tick) == (models.VERIFY_SENT, "C", "delivered")
    # the same text in an OLD bubble (another job's, before the stamp) is not this message: absent
    v = B.verify(chat(bub("A", "hi"), bub("B", "x")), "hi", 0, known, chat_open=True)
    assert v.absent and "before the send" in v.reason
    # a new bubble of ours with another text (re-rendered, trimmed…) proves nothing: unknown (issue 20, 7)
    assert (
        B.verify(
            chat(bub("A", "hi"), bub("B", "x"), bub("C", "other")), "hi", 0, known, chat_open=True
        ).outcome
        == models.VERIFY_UNKNOWN
    )
    # a new bubble whose text cannot be read: unknown
    v = B.verify(chat(bub("A", "hi"), bub("B", "x"), bub("C", None)), "hi", 0, known, chat_open=True)
    assert v.outcome == models.VERIFY_UNKNOWN and "cannot be read" in v.reason
    # the bubbles from before are not shown (scrolled away, another chat): nothing proves absence
    v = B.verify(chat(bub("C", "other")), "hi", 0, known, chat_open=True)
    assert v.outcome == models.VERIFY_UNKNOWN
    # WhatsApp marked it failed and the bubble is in the chat: never re-pressed automatically (issue 20, 8)
    v = B.verify(
        chat(bub("A", "hi"), bub("B", "x"), bub("C", "hi", B.TICK_FAILED)), "hi", 0, known, chat_open=True
    )
    assert v.outcome == models.VERIFY_UNKNOWN and "failed" in v.reason
    # still on the clock: read again (the sender does), unknown meanwhile (issue 20, 9)
    v = B.verify(
        chat(bub("A", "x"), bub("B", "x"), bub("C", "hi", "pending")), "hi", 0, known, chat_open=True
    )
    assert B.still_pending(v)
    # an older bubble rendered late above the snapshot's last one is history, not this send
    v = B.verify(chat(bub("Z", "hi"), bub("A", "x"), bub("B", "x")), "hi", 0, known, chat_open=True)
    assert v.absent
    # the chat did not open
    assert B.verify(chat(), "hi", 0, known, chat_open=False).outcome == models.VERIFY_UNKNOWN


def test_verify_an_empty_chat() -> None:
    empty = models.ChatSnapshot(whole=True)  # the start-of-chat notice was shown and nothing else
    start = B.ChatRead((), start=True)
    assert B.verify(start, "hi", 0, empty, chat_open=True).absent
    # an empty read without the notice is a chat whose history has not rendered: unknown (issue 20, 1)
    assert B.verify(chat(), "hi", 0, empty, chat_open=True).outcome == models.VERIFY_UNKNOWN
    assert B.verify(chat(bub("Z", "other")), "hi", 0, empty, chat_open=True).outcome == models.VERIFY_UNKNOWN
    assert B.verify(chat(bub("Z", "hi")), "hi", 0, empty, chat_open=True).sent
    # a snapshot that saw no bubble and no notice (read before the history showed): a bubble now may be older
    early = models.ChatSnapshot()
    assert B.verify(chat(bub("Z", "hi")), "hi", 0, early, chat_open=True).outcome == models.VERIFY_UNKNOWN
    assert B.verify(start, "hi", 0, early, chat_open=True).absent
    # no snapshot, or an unreadable one: an empty-looking chat may be a blind reader
    assert B.verify(chat(), "hi", 0, None, chat_open=True).outcome == models.VERIFY_UNKNOWN
    blind = models.ChatSnapshot(ids=(), count=3, readable=False)
    assert B.verify(chat(), "hi", 0, blind, chat_open=True).outcome == models.VERIFY_UNKNOWN
    # a message row whose direction cannot be read
    odd = B.ChatRead((B.Bubble(None, "Q", "hi", None, "text", pre="[1:00, 1/1/2026] x: "),))
    assert B.verify(odd, "hi", 0, empty, chat_open=True).outcome == models.VERIFY_UNKNOWN


def _at(ts: float) -> dict[str, Any]:
    ms = ts * 1000.0
    return {"a": 20, "b": 12, "dm": None, "md": None, "ymd": [ms, ms]}


def test_verify_by_time_without_ids() -> None:
    since = 1_800_000_000.0  # a stamp, on the page's clock (recorded with the snapshot)
    minute = B.minute_floor(since)
    long_before = bub(None, "hi", when=_at(minute - 3600))
    same_minute = bub(None, "hi", when=_at(minute))
    later = bub(None, "hi", when=_at(minute + 600))
    other = bub(None, "other", when=_at(minute))
    known = models.ChatSnapshot(count=1, page_clock=since)  # long_before was there
    assert B.verify(chat(long_before, later), "hi", since, known, chat_open=True).sent
    # the minute of the stamp: ours, or an identical message a moment earlier (another job): unknown
    v = B.verify(chat(long_before, same_minute), "hi", since, known, chat_open=True)
    assert v.outcome == models.VERIFY_UNKNOWN and "identical" in v.reason
    # only the old identical message, as before the send: absent
    assert B.verify(chat(long_before), "hi", since, known, chat_open=True).absent
    # a new bubble of ours with another text: unknown, not absent
    assert (
        B.verify(chat(long_before, other), "hi", since, known, chat_open=True).outcome
        == models.VERIFY_UNKNOWN
    )
    # no page clock in the stamp: the skew measured now (host 90 s ahead of the page) moves the stamp
    skewed = bub(None, "hi", when=_at(minute - 60))
    read = B.ChatRead((skewed,), page_now=since)
    v = B.verify(read, "hi", since + 30, None, chat_open=True, host_now=since + 90)
    assert v.outcome == models.VERIFY_UNKNOWN
    # a date that cannot be read in a known order: unknown
    ambiguous = bub(None, "hi", when={"a": 5, "b": 6, "dm": [1, 1], "md": [2, 2], "ymd": None})
    v = B.verify(chat(ambiguous), "hi", since, known, chat_open=True, order=None)
    assert v.outcome == models.VERIFY_UNKNOWN and "order" in v.reason


def test_new_bubbles_after_a_snapshot_by_id_then_position() -> None:
    before = chat(bub("A", "x"), bub("B", "y"))
    now = chat(bub("A", "x"), bub("B", "y"), bub("C", "z"))
    assert [b.id for b in B.new_bubbles(before, now)] == ["C"]
    no_ids_before = chat(bub(None, "x"))
    no_ids_now = chat(bub(None, "x"), bub(None, "x"))
    assert len(B.new_bubbles(no_ids_before, no_ids_now)) == 1


def test_receipt_takes_the_best_tick_of_matching_bubbles_not_before_since() -> None:
    since = 1_800_000_000.0
    old = bub(None, "hi", "read", when=_at(since - 3600))
    new = bub(None, "hi", "delivered", when=_at(since))
    assert B.receipt(chat(old, new), "hi", since, None) == "delivered"
    assert B.receipt(chat(old), "hi", since, None) is None
    assert B.receipt(chat(bub("A", "hi", None)), "hi", since, None) == "pending"
