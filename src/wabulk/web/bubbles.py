"""Reading the messages of the open chat, and deciding from them what happened to a send.

The page script (``js/bubbles.js``) reads every message row; this module turns that into :class:`Bubble`
values and holds the decisions, which are plain functions so they can be tested without a browser:

- :func:`new_bubbles` - which bubbles appeared after a snapshot (by message id; by position where the page
  has no ids), for the confirmation right after Enter.
- :func:`verify` - after a crash, whether the message is in the chat: **sent** when a new outgoing bubble
  (id not in the snapshot, after the snapshot's last bubble) shows its text and left the clock, **absent**
  only on positive evidence that the whole chat since the snapshot is shown and lacks it, else **unknown**
  (never resend on that). Without ids it falls back to the bubbles' time on the page's own clock, with the
  date order learnt from the page, never guessed.

Positive evidence that a read shows the chat (:func:`settled`): the snapshot's last bubble shown again, or
the page's start-of-chat notice (the end-to-end encryption notice, the first row of a chat whose whole
history is shown), seen in two reads across :data:`SETTLE_WINDOW`. An empty read is not an empty chat: the
history renders after the chat opens, seconds later right after a browser start.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from wabulk import models
from wabulk.web import dom
from wabulk.web import selectors as S

from . import scripts
from .dates import learn_order, span

# A stamp without the page's clock (written before it was recorded): its host time is moved onto the page's
# clock by the skew measured now, and "before"/"after" is only trusted beyond this margin (the host clock
# may have moved since).
CLOCK_SKEW = 120.0
# The snapshot's page clock and a bubble's time are the same clock (our bubbles carry the sending page's
# time); this margin covers WhatsApp correcting it with its server's.
PAGE_SKEW = 10.0
# Evidence that a read shows the chat must hold in two reads at least this far apart (a list still being
# rendered changes between them).
SETTLE_WINDOW = 0.5

TICK_FAILED = "failed"  # the bubble shows WhatsApp's failure icon: it was never accepted
# Outcomes of a bubble for confirmation: the message left our hands (WhatsApp has it).
LEFT = (models.TICK_SENT, models.TICK_DELIVERED, models.TICK_READ)
_TICK_ORDER = {models.TICK_PENDING: 0, models.TICK_SENT: 1, models.TICK_DELIVERED: 2, models.TICK_READ: 3}

# Kinds of what a bubble holds (``Bubble.kind``); "media" is a photo or a video on a page that does not say
# which. The kinds a file of each sort may arrive as:
MEDIA_KINDS = ("image", "video", "media")
ACCEPTED_KINDS = {"media": MEDIA_KINDS, "document": ("document",)}


@dataclass(frozen=True)
class Bubble:
    """One message row as the page shows it."""

    direction: str | None  # "out" (ours), "in", or None when the page does not say
    id: str | None  # the message id (data-id), None on pages without one
    text: str | None  # the text span's text; None when there is no text span
    tick: str | None  # TICK_* or TICK_FAILED; None when not read
    kind: str | None  # "text", "image", "video", "media", "document", "sticker", "audio"; None: unknown
    pre: str | None = None  # the raw "[HH:MM, date] Name: "
    when: dict[str, Any] | None = None  # the date's numbers and the instants each date order means
    more: bool = False  # the text is cut ("Read more")

    @property
    def ours(self) -> bool:
        return self.direction == "out"

    @property
    def has_message(self) -> bool:
        """Whether the row is a message (text, media or a time), not a date separator or notice."""
        return self.text is not None or self.kind is not None or self.pre is not None

    @property
    def readable(self) -> bool:
        """Whether what it says can be read: a text span, or a media block (a file without caption)."""
        return self.text is not None or (self.kind is not None and self.kind != "text")

    def shown(self) -> str:
        return self.text or ""


@dataclass(frozen=True)
class ChatRead:
    """What one read of the open chat found."""

    messages: tuple[Bubble, ...]
    lang: str | None = None
    order_hint: str | None = None  # the date order of the browser's language (Intl), when it has one
    start: bool = False  # the start-of-chat notice is shown: the whole history is on the page
    page_now: float | None = None  # the page's clock (unix seconds) when it was read
    settled: bool = False  # the read passed :func:`settled` (evidence, twice across the settle window)

    @property
    def ours(self) -> list[Bubble]:
        return [b for b in self.messages if b.ours]

    @property
    def unclassified(self) -> list[Bubble]:
        """Messages (they carry a time) whose direction the reader could not tell."""
        return [b for b in self.messages if b.direction is None and b.pre is not None]

    @property
    def readable(self) -> bool:
        """Whether every message's direction, and each of ours' id and content, could be read."""
        return not self.unclassified and all(b.id and b.readable for b in self.ours)

    def snapshot(self) -> models.ChatSnapshot:
        """Our bubbles as the stamp records them right before the send action."""
        ours = self.ours
        ids = tuple(str(b.id) for b in ours if b.id)
        return models.ChatSnapshot(
            ids=ids, count=len(ours), readable=self.readable, whole=self.start, page_clock=self.page_now
        )

    @property
    def shown(self) -> bool:
        """Whether the chat's history is on the page: the start-of-chat notice, or a message row."""
        return self.start or any(b.has_message for b in self.messages)


def parse(result: Any) -> ChatRead:
    """The page script's answer as a :class:`ChatRead` (an empty read for a page mid-navigation)."""
    if not isinstance(result, dict):
        return ChatRead(())
    out = []
    for m in result.get("messages") or ():
        out.append(
            Bubble(
                direction=m.get("dir"),
                id=str(m["id"]) if m.get("id") else None,
                text=None if m.get("text") is None else str(m["text"]),
                tick=m.get("tick"),
                kind=_kind(m),
                pre=m.get("pre"),
                when=m.get("when"),
                more=bool(m.get("more")),
            )
        )
    now = result.get("now")
    return ChatRead(
        tuple(out),
        result.get("lang"),
        result.get("order"),
        start=bool(result.get("start")),
        page_now=float(now) / 1000.0 if isinstance(now, (int, float)) else None,
    )


def _kind(m: dict[str, Any]) -> str | None:
    """A bubble's kind: what the page script recognised; "unknown" (an image, video or canvas no selector
    knows) is None, never "text"; a bubble with only a text span is text."""
    kind = m.get("kind")
    if kind == "unknown":
        return None
    return kind or ("text" if m.get("text") is not None else None)


def script_args() -> dict[str, Any]:
    """The selectors ``bubbles.js`` works with (all from ``selectors.py``)."""
    c = scripts.cands
    return {
        "rows": c(S.MESSAGE_ROW),
        "idAttr": S.MESSAGE_ID_ATTRIBUTE,
        "ownLabels": [w.lower() for w in S.TEXTS["own_author"]],
        "author": c(S.AUTHOR_LABEL),
        "incoming": c(S.INCOMING_MARK),
        "outgoing": c(S.OUTGOING_MARK),
        "text": c(S.MESSAGE_TEXT),
        "pre": c(S.MESSAGE_PRE_PLAIN),
        "preAttr": S.PRE_PLAIN_ATTRIBUTE,
        "ticks": c(S.STATUS_ICON),
        "tickByLabel": S.TICK_BY_LABEL,
        "tickByIcon": S.TICK_BY_DATA_ICON,
        "tickBySvg": S.TICK_BY_SVG_TITLE,
        # Most specific first: a document or a video can carry a thumbnail image (img[src^=blob:]).
        "kinds": [
            [kind, c(sel)]
            for kind, sel in (
                ("sticker", S.STICKER_BLOCK),
                ("document", S.DOCUMENT_BLOCK),
                ("audio", S.AUDIO_BLOCK),
                ("video", S.VIDEO_BLOCK),
                ("image", S.IMAGE_BLOCK),
                ("media", S.MEDIA_BLOCK),
            )
        ],
        "chat": c(S.CHAT),
        "chrome": c(S.CHAT_CHROME),
        "mediaEls": c(S.MEDIA_ELEMENT),
        "startTexts": [w.lower() for w in S.TEXTS["chat_start"]],
        "more": c(S.READ_MORE),
        "moreTexts": [w.lower() for w in S.TEXTS["read_more"]],
    }


def read(driver: Any) -> ChatRead:
    """Read every message of the open chat (one script round trip)."""
    return parse(scripts.run(driver, "bubbles", script_args()))


# --- matching text ---------------------------------------------------------------------------------------

_MARKUP = re.compile(r"[*_~`]")


def same_text(a: str, b: str) -> bool:
    """Equality after :func:`dom.normalise_text` (NBSP, CRLF, trailing newlines)."""
    return dom.normalise_text(a) == dom.normalise_text(b)


def bubble_matches(bubble: Bubble | dict[str, Any], body: str) -> bool:
    """Whether a bubble shows ``body``.

    Exact (after :func:`same_text`), or - for what the real page renders differently from what was typed -
    equal once WhatsApp's formatting markers (``*bold*``, ``_italic_``, ``~strike~``, ```` ``` ````) are
    dropped from both, or a prefix of a long body when the bubble has a "Read more" button. The last two are
    from the real page's behaviour and are not exercised by the simulator.
    """
    if isinstance(bubble, Bubble):
        text, more = bubble.text, bubble.more
    else:
        text, more = bubble.get("text"), bool(bubble.get("more"))
    shown = dom.normalise_text(str(text or ""))
    want = dom.normalise_text(body)
    if shown == want:
        return True
    if not shown:
        return False
    if _MARKUP.sub("", shown) == _MARKUP.sub("", want):
        return True
    cut = shown.rstrip("…. ")
    return more and len(cut) >= 50 and want.startswith(cut)


def kind_fits(bubble: Bubble, expected: str | None) -> bool:
    """Whether a bubble holds what was sent: ``expected`` None = a text message; "media"/"document" = a
    file of that sort. A bubble whose kind the page does not show is not held against it."""
    if expected is None:
        return bubble.kind in (None, "text")
    return bubble.kind is None or bubble.kind in ACCEPTED_KINDS[expected]


def minute_floor(ts: float) -> float:
    """``ts`` rounded down to its minute (bubbles only carry minutes)."""
    return math.floor(ts / 60.0) * 60.0


# --- what appeared after a snapshot --------------------------------------------------------------------


def _after_anchor(ours: Sequence[Bubble], known_ids: Sequence[str]) -> list[Bubble] | None:
    """Our bubbles placed after the last of ``known_ids`` shown on the page, or None when none of them is
    shown. Rows are in time order, so a bubble rendered late *above* the anchor (older history) is never
    taken for one sent after the snapshot."""
    page_ids = [b.id for b in ours]
    for anchor in reversed(known_ids):
        if anchor in page_ids:
            at = len(page_ids) - 1 - page_ids[::-1].index(anchor)
            return list(ours[at + 1 :])
    return None


def new_bubbles(before: ChatRead, now: ChatRead) -> list[Bubble]:
    """Our bubbles in ``now`` that were not in ``before``: by id, after the last bubble ``before`` showed,
    and for bubbles without an id by their position after the ones counted before (on the same page,
    seconds apart, so history cannot shift)."""
    known_ids = [str(b.id) for b in before.ours if b.id]
    known = set(known_ids)
    count = len(before.ours)
    ours = now.ours
    after = _after_anchor(ours, known_ids) if known_ids else None
    out = []
    for i, b in enumerate(ours):
        if b.id:
            if b.id not in known and (after is None or b in after):
                out.append(b)
        elif i >= count:
            out.append(b)
    return out


# --- verification ----------------------------------------------------------------------------------------


def _unknown(reason: str, tick: str | None = None) -> models.Verification:
    return models.Verification(models.VERIFY_UNKNOWN, reason, None, tick)


def _absent(reason: str) -> models.Verification:
    return models.Verification(models.VERIFY_ABSENT, reason)


def _sent(b: Bubble, reason: str) -> models.Verification:
    return models.Verification(models.VERIFY_SENT, reason, b.id, b.tick)


def still_pending(v: models.Verification) -> bool:
    """Whether ``v`` is unknown only because our bubble is still on the clock (worth reading again)."""
    return v.outcome == models.VERIFY_UNKNOWN and v.tick == models.TICK_PENDING


FAILED_IN_CHAT = (
    "WhatsApp shows this message as failed and the failed bubble is still in the chat; it is not pressed "
    "again automatically (WhatsApp may retry it itself)"
)


def _judge(mine: Sequence[Bubble]) -> models.Verification | None:
    """The verdict from new bubbles of ours with the text: sent once one left the clock (or its tick cannot
    be read: the bubble is there), else unknown (on the clock, or failed and still in the chat)."""
    left = [b for b in mine if b.tick in LEFT or b.tick is None]
    if left:
        return _sent(left[-1], "a new outgoing bubble with this text is in the chat")
    if any(b.tick == models.TICK_PENDING for b in mine):
        return _unknown("a new outgoing bubble with this text is still on the clock", models.TICK_PENDING)
    if mine:
        return _unknown(FAILED_IN_CHAT)
    return None


def verify(
    read: ChatRead,
    body: str,
    since: float,
    known: models.ChatSnapshot | None,
    *,
    chat_open: bool,
    order: str | None = None,
    skew: float = CLOCK_SKEW,
    host_now: float | None = None,
) -> models.Verification:
    """Whether the message with ``body`` whose send started at ``since`` (host clock) is in the chat
    ``read`` shows.

    ``known``: our bubbles right before Enter (None for a stamp without a snapshot). ``chat_open``: the
    chat's compose box was there (the reader looked at the right, loaded page). ``order``: the page's date
    order (:func:`date_order`) for the time fallback; ``host_now``: the host's clock at the read (to move
    ``since`` onto the page's clock when the snapshot did not record the page's clock).
    """
    if not chat_open:
        return _unknown("the chat did not open, so it could not be read")
    ours = read.ours
    if read.unclassified:
        return _unknown(f"{len(read.unclassified)} message(s) whose direction cannot be read")
    usable_ids = (
        known is not None and known.readable and len(known.ids) == known.count and all(b.id for b in ours)
    )
    if usable_ids:
        assert known is not None
        return _verify_by_id(read, body, known)
    return _verify_by_time(read, body, since, known, order, skew, host_now)


def _verify_by_id(read: ChatRead, body: str, known: models.ChatSnapshot) -> models.Verification:
    ours = read.ours
    if known.count == 0:
        if not known.whole:
            # The snapshot saw no bubble but not the start of the chat either: it may have been read before
            # the history rendered, so a bubble now cannot be told from an older one.
            if read.start and not ours:
                return _absent("the whole chat is shown and holds no outgoing message")
            return _unknown(
                "the chat's history was not shown before the send, so its bubbles cannot be told apart"
            )
        if not read.start and not ours:
            return _unknown("the chat's history is not shown (no messages, no start-of-chat notice)")
        new = list(ours)  # the chat was empty: every bubble of ours is newer than the snapshot
    else:
        after = _after_anchor(ours, known.ids[-1:])
        if after is None:
            return _unknown("the bubbles seen before the send are not shown, so the chat cannot be compared")
        ids = set(known.ids)
        new = [b for b in after if b.id not in ids]
    verdict = _judge([b for b in new if b.readable and bubble_matches(b, body)])
    if verdict is not None:
        return verdict
    if any(not b.readable for b in new):
        return _unknown("a new outgoing bubble is in the chat but its text cannot be read")
    if new:
        # Ours, newer than the snapshot, and not this text as we read it (re-rendered, trimmed…).
        return _unknown("a new outgoing bubble is in the chat whose text does not match this message")
    if known.count == 0:
        return _absent("the whole chat is shown, as empty as it was before the send")
    return _absent("the chat shows the bubbles from before the send and no new one after them")


def _page_since(
    read: ChatRead, since: float, known: models.ChatSnapshot | None, host_now: float | None, skew: float
) -> tuple[float, float] | None:
    """The send's start on the page's clock and the margin to trust it by; None when the skew between
    the host's clock and the page's is not known."""
    if known is not None and known.page_clock is not None:
        return known.page_clock, PAGE_SKEW
    if read.page_now is not None and host_now is not None:
        return since - (host_now - read.page_now), skew
    return None


def _verify_by_time(
    read: ChatRead,
    body: str,
    since: float,
    known: models.ChatSnapshot | None,
    order: str | None,
    skew: float,
    host_now: float | None,
) -> models.Verification:
    ours = read.ours
    mine = [b for b in ours if b.readable and bubble_matches(b, body)]
    page = _page_since(read, since, known, host_now, skew)
    if mine and page is None:
        return _unknown(
            "an outgoing bubble with this text is in the chat, and the page's clock is not known to date it"
        )
    after: list[Bubble] = []
    around: list[Bubble] = []
    untimed: list[Bubble] = []
    for b in mine:
        assert page is not None
        start, margin = page
        when = span(b, order)
        if when is None:
            untimed.append(b)
        elif when[0] >= start + margin:
            after.append(b)
        elif when[1] > start - margin:
            around.append(b)
    verdict = _judge(after)
    if verdict is not None:
        return verdict
    if around:
        return _unknown(
            "an outgoing bubble with this text is dated around the time the send started; without message "
            "ids it cannot be told from an earlier identical message"
        )
    if untimed:
        return _unknown(
            "an outgoing bubble with this text has a date that cannot be read"
            + ("" if order else " (the page's date order is not known)")
        )
    if not all(b.readable for b in ours):
        return _unknown("some outgoing bubbles cannot be read")
    if known is None:
        return _unknown("without a snapshot from before the send, what the chat lacks proves nothing")
    before = known.count if known is not None and known.readable else None
    if before is not None and len(ours) > before and (before > 0 or known.whole):
        return _unknown("more outgoing bubbles than before the send, and none can be dated after it")
    if read.start and not ours:
        return _absent("the whole chat is shown and holds no outgoing message")
    if read.start and before is not None and len(ours) == before:
        return _absent("the whole chat is shown with the bubbles from before the send and no new one")
    if before and len(ours) >= before:
        return _absent(
            "the chat shows as many outgoing bubbles as before the send, none with this text since"
        )
    return _unknown("the chat's history is not shown well enough to prove the message absent")


def receipt(
    read: ChatRead, body: str, since: float, order: str | None, skew: float = CLOCK_SKEW
) -> str | None:
    """The best tick of our bubbles with ``body`` not dated before ``since`` (an unreadable date counts),
    or None when there is none. A tick that cannot be read counts as pending."""
    best: str | None = None
    for b in read.ours:
        if not (b.readable and bubble_matches(b, body)) or b.tick == TICK_FAILED:
            continue
        when = span(b, order)
        if when is not None and when[1] <= since - skew:
            continue
        tick = b.tick or models.TICK_PENDING
        if best is None or _TICK_ORDER.get(tick, 0) > _TICK_ORDER.get(best, 0):
            best = tick
    return best


def host_now() -> float:
    """The host's clock (unix seconds), for moving a stamp onto the page's clock."""
    return time.time()


def recheck(
    driver: Any, first: ChatRead, judge: Callable[[ChatRead], models.Verification], timeout: float
) -> models.Verification:
    """``judge(first)``, and while that says our bubble is still on the clock, read the chat again until
    it leaves the clock (sent) or fails (unknown), up to ``timeout``: still on the clock then is unknown,
    never "sent" for good (a bubble on the clock can still turn into the failure icon)."""
    found = judge(first)
    deadline = time.monotonic() + timeout
    while still_pending(found) and time.monotonic() < deadline:
        time.sleep(CONFIRM_POLL * 4)
        found = judge(read(driver))
    return found


def anchored(known: models.ChatSnapshot | None) -> Callable[[ChatRead], bool]:
    """Evidence that a read shows the chat as it was at ``known``: the start-of-chat notice, or the
    snapshot's last bubble (by id; by count on a page without ids); with no usable snapshot, any message."""
    last = known.ids[-1] if known is not None and known.ids else None

    def shows(read: ChatRead) -> bool:
        if read.start:
            return True
        if last is not None and any(b.id for b in read.ours):
            return last in {b.id for b in read.ours}
        if known is not None and known.count > 0:
            return len(read.ours) >= known.count
        return read.shown

    return shows


def _shape(read: ChatRead) -> tuple[Any, ...]:
    return (read.start, tuple((b.id, b.direction, b.text, b.kind) for b in read.messages))


def settled(
    driver: Any,
    timeout: float,
    *,
    evidence: Callable[[ChatRead], bool] = lambda r: r.shown,
    window: float = SETTLE_WINDOW,
    poll: float = 0.1,
) -> ChatRead:
    """Read the chat until ``evidence`` holds in two reads at least ``window`` apart that show the same
    rows (history renders after the chat opens), up to ``timeout``. The read returned has ``settled``
    True then; at the timeout it is the last read with ``settled`` False: what it lacks proves nothing."""
    deadline = time.monotonic() + timeout
    first: ChatRead | None = None
    first_at = 0.0
    cur = read(driver)
    while True:
        now = time.monotonic()
        if evidence(cur):
            if first is not None and _shape(first) == _shape(cur):
                if now - first_at >= window:
                    return replace(cur, settled=True)
            else:
                first, first_at = cur, now
        else:
            first = None
        if now >= deadline:
            return cur
        time.sleep(poll)
        cur = read(driver)


# --- confirmation right after the send action -----------------------------------------------------------

CONFIRM_POLL = 0.05  # every poll interval is latency added to each message; one read is a ~10 ms script
STATE_CHECK_EVERY = 1.0


def confirm(
    browser: Any,
    before: ChatRead,
    body: str,
    *,
    press_again: Any = None,
    expected: str | None = None,
) -> tuple[models.SendResult, str | None]:
    """Wait until a new outgoing bubble (not in ``before``) with ``body`` leaves the clock.

    ``expected``: None for a text, "media"/"document" for a file (the bubble must hold that sort: a sticker
    or an audio is not it). ``press_again()``: called once, after a moment with no new bubble at all, to
    press send again when Enter did nothing (returns whether it pressed). Returns the result and the date
    order the new bubble showed (:func:`learn_order`).

    Raises ConfirmTimeout (outcome unknown: verified before any resend; class ``send_failed`` when the
    bubble shows WhatsApp's failure icon, which is never re-pressed while it is in the chat),
    PermanentSendError ``wrong_kind`` when a file arrived as something else (it was sent: never resend
    it), NotLoggedIn.
    """
    from wabulk import errors
    from wabulk.web.states import LOGGED_OUT, OFFLINE, QR, TAKEOVER_COMPUTER, TAKEOVER_WINDOW

    timeout = browser.timeouts.confirm
    start = time.monotonic()
    deadline = start + timeout
    pressed = press_again is None
    last_state_check = start
    bubble: Bubble | None = None
    while True:
        fresh = new_bubbles(before, read(browser.driver))
        texts = [b for b in fresh if b.readable and bubble_matches(b, body)]
        mine = [b for b in texts if kind_fits(b, expected)]
        bubble = mine[-1] if mine else None
        if bubble is not None and bubble.tick in LEFT:
            result = models.SendResult(tick=str(bubble.tick), confirmed_at=time.time(), message_ref=bubble.id)
            return result, learn_order(bubble, time.time())
        if bubble is not None and bubble.tick == TICK_FAILED:
            # WhatsApp shows its failure icon instead of a tick. Pressing again while the failed bubble is
            # in the chat would make a second copy if WhatsApp retries it itself (its apps offer "retry"),
            # so this is an unconfirmed send: the chat is looked at before anything else, and a failed
            # bubble there is "unknown" for a person to resolve, never re-pressed automatically.
            raise errors.ConfirmTimeout(
                "WhatsApp marked the message as failed (the failure icon); it is not pressed again while "
                "the failed bubble is in the chat",
                error_class="send_failed",
                scope=errors.SCOPE_ACCOUNT,  # WhatsApp's failure icon says nothing about the recipient
            )
        if expected is not None and texts and not mine:
            wrong = texts[-1]
            raise errors.PermanentSendError(
                f"the file arrived as {wrong.kind or 'something else'}, not as a {expected}; it was sent "
                "and will not be sent again",
                error_class="wrong_kind",
            )
        now = time.monotonic()
        if not fresh and not pressed and now - start > dom.MINI:
            pressed = True
            press_again()
        if now - last_state_check > STATE_CHECK_EVERY:
            last_state_check = now
            st, _ = browser.snapshot()
            if st in (QR, LOGGED_OUT):
                raise errors.NotLoggedIn("WhatsApp Web logged out while the message was being sent")
            if st in (TAKEOVER_WINDOW, TAKEOVER_COMPUTER):
                # The chat is gone from the page: the tick can no longer be seen. Waiting out the confirm
                # timeout would only delay the verdict, which is the same: unconfirmed (the message may
                # have left), so it is verified in the chat before any resend.
                raise errors.ConfirmTimeout(
                    "WhatsApp Web was opened elsewhere before the message was confirmed"
                )
        if now >= deadline:
            break
        time.sleep(CONFIRM_POLL)
    offline = browser.state() == OFFLINE
    where = " (WhatsApp Web shows it is offline)" if offline else ""
    if bubble is not None:
        raise errors.ConfirmTimeout(f"the message is still pending (clock) after {timeout:g}s{where}")
    path = browser.capture("no-bubble")
    raise errors.ConfirmTimeout(
        f"no outgoing message with this text appeared within {timeout:g}s{where}; saved {path}"
    )
