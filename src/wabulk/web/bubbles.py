"""Reading the messages of the open chat, and deciding from them what happened to a send.

The page script (``js/bubbles.js``) reads every message row; this module turns that into :class:`Bubble`
values and holds the decisions, which are plain functions so they can be tested without a browser:

- :func:`new_bubbles` - which bubbles appeared after a snapshot (by message id; by position where the page
  has no ids), for the confirmation right after Enter.
- :func:`verify` - after a crash, whether the message is in the chat: **sent** when a new outgoing bubble
  (id not in the snapshot) shows its text, **absent** only on positive evidence that the chat can be read
  and lacks it, else **unknown** (never resend on that). Without ids it falls back to the bubbles' time,
  with a clock-skew margin and the date order learnt from the page, never guessed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wabulk import models
from wabulk.web import dom
from wabulk.web import selectors as S

from . import scripts
from .dates import learn_order, span

# A bubble's time comes from the page's clock and ours from the host's; a Grid node's clock or the
# WhatsApp server's can be a little off, so "before"/"after" the stamp is only trusted beyond this margin.
CLOCK_SKEW = 120.0

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
        return models.ChatSnapshot(ids=ids, count=len(ours), readable=self.readable)


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
                kind=m.get("kind") or ("text" if m.get("text") is not None else None),
                pre=m.get("pre"),
                when=m.get("when"),
                more=bool(m.get("more")),
            )
        )
    return ChatRead(tuple(out), result.get("lang"), result.get("order"))


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
        "kinds": [
            [kind, c(sel)]
            for kind, sel in (
                ("sticker", S.STICKER_BLOCK),
                ("image", S.IMAGE_BLOCK),
                ("video", S.VIDEO_BLOCK),
                ("document", S.DOCUMENT_BLOCK),
                ("audio", S.AUDIO_BLOCK),
                ("media", S.MEDIA_BLOCK),
            )
        ],
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


def new_bubbles(before: ChatRead, now: ChatRead) -> list[Bubble]:
    """Our bubbles in ``now`` that were not in ``before``: by id, and for bubbles without an id by their
    position after the ones counted before (on the same page, seconds apart, so history cannot shift)."""
    known = {b.id for b in before.ours if b.id}
    count = len(before.ours)
    out = []
    for i, b in enumerate(now.ours):
        if b.id:
            if b.id not in known:
                out.append(b)
        elif i >= count:
            out.append(b)
    return out


# --- verification ----------------------------------------------------------------------------------------


def _unknown(reason: str) -> models.Verification:
    return models.Verification(models.VERIFY_UNKNOWN, reason)


def _sent(b: Bubble, reason: str) -> models.Verification:
    return models.Verification(models.VERIFY_SENT, reason, b.id, b.tick)


def verify(
    read: ChatRead,
    body: str,
    since: float,
    known: models.ChatSnapshot | None,
    *,
    chat_open: bool,
    order: str | None = None,
    skew: float = CLOCK_SKEW,
) -> models.Verification:
    """Whether the message with ``body`` whose send started at ``since`` is in the chat ``read`` shows.

    ``known``: our bubbles' ids right before Enter (None for a stamp without a snapshot). ``chat_open``:
    the chat's compose box was there (the reader looked at the right, loaded page). ``order``: the page's
    date order (:func:`date_order`) for the time fallback.
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
        return _verify_by_id(ours, body, known)
    return _verify_by_time(ours, body, since, known, order, skew)


def _verify_by_id(ours: Sequence[Bubble], body: str, known: models.ChatSnapshot) -> models.Verification:
    ids = set(known.ids)
    new = [b for b in ours if b.id not in ids]
    unreadable = [b for b in new if not b.readable]
    mine = [b for b in new if b.readable and bubble_matches(b, body)]
    live = [b for b in mine if b.tick != TICK_FAILED]
    if live:
        return _sent(live[-1], "a new outgoing bubble with this text is in the chat")
    if unreadable:
        return _unknown("a new outgoing bubble is in the chat but its text cannot be read")
    if mine:  # only failed ones: WhatsApp never accepted it
        return models.Verification(
            models.VERIFY_ABSENT, "the chat shows this message as failed (WhatsApp did not accept it)"
        )
    page_ids = [b.id for b in ours]
    if known.count == 0:
        # The chat had none of our bubbles before: every bubble now is new, readable and not this one.
        return models.Verification(
            models.VERIFY_ABSENT,
            "the chat can be read and has no outgoing bubble with this text"
            if ours
            else "the chat is open and empty, as it was before the send",
        )
    if known.ids[-1] in page_ids:
        # The last bubble before the send is shown again: everything after it is on the page, readable.
        return models.Verification(
            models.VERIFY_ABSENT,
            "the chat shows the bubbles from before the send and no new one with this text",
        )
    return _unknown("the bubbles seen before the send are not shown, so the chat cannot be compared")


def _verify_by_time(
    ours: Sequence[Bubble],
    body: str,
    since: float,
    known: models.ChatSnapshot | None,
    order: str | None,
    skew: float,
) -> models.Verification:
    mine = [b for b in ours if b.readable and bubble_matches(b, body) and b.tick != TICK_FAILED]
    after: list[Bubble] = []
    around: list[Bubble] = []
    untimed: list[Bubble] = []
    for b in mine:
        when = span(b, order)
        if when is None:
            untimed.append(b)
        elif when[0] >= since + skew:
            after.append(b)
        elif when[1] > since - skew:
            around.append(b)
    if after:
        return _sent(after[-1], "an outgoing bubble with this text is dated after the send started")
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
    if ours:
        return models.Verification(
            models.VERIFY_ABSENT,
            "the chat can be read and has no outgoing bubble with this text since the send",
        )
    if known is not None and known.readable and known.count == 0:
        return models.Verification(
            models.VERIFY_ABSENT, "the chat is open and empty, as it was before the send"
        )
    return _unknown("no outgoing bubble can be read in this chat")


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


def settled(
    driver: Any, timeout: float, *, wait_for: Iterable[str] = (), poll: float = 0.3, allow_empty: bool = False
) -> ChatRead:
    """Read the chat once the list stopped growing (history renders after the chat opens) and, when
    given, the ids ``wait_for`` are shown (up to ``timeout``). An empty chat is only taken as settled
    with ``allow_empty`` (else it is read until the timeout, in case its history is still coming)."""
    want = set(wait_for)
    deadline = time.monotonic() + timeout
    prev = read(driver)
    while time.monotonic() < deadline:
        time.sleep(poll)
        cur = read(driver)
        ids = {b.id for b in cur.ours}
        if len(cur.messages) == len(prev.messages) and (cur.messages or allow_empty) and want <= ids:
            return cur
        prev = cur
    return prev


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

    Raises ConfirmTimeout (outcome unknown: verified before any resend), TransientSendError
    ``send_failed`` when the bubble shows WhatsApp's failure icon, PermanentSendError ``wrong_kind`` when a
    file arrived as something else (it was sent: never resend it), NotLoggedIn.
    """
    from wabulk import errors
    from wabulk.web import browser as sess

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
            # WhatsApp shows its failure icon instead of a tick: its server never accepted the message,
            # so nothing reached the recipient, and a plain transient error (not "outcome unknown") lets
            # the normal retry send it again. Why that is safe enough: the failed bubble stays in the
            # chat, so it is in the next attempt's snapshot (never mistaken for that attempt's bubble),
            # and verification reads a failed bubble as "absent", never "sent". The residual risk is an
            # automatic re-send by WhatsApp itself of a bubble it marked failed (the apps offer a manual
            # "retry"; no report shows WhatsApp Web retrying on its own): that would be a second copy.
            raise errors.TransientSendError(
                "WhatsApp marked the message as failed (not sent)",
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
            if st in (sess.QR, sess.LOGGED_OUT):
                raise errors.NotLoggedIn("WhatsApp Web logged out while the message was being sent")
            if st in (sess.TAKEOVER_WINDOW, sess.TAKEOVER_COMPUTER):
                # The chat is gone from the page: the tick can no longer be seen. Waiting out the confirm
                # timeout would only delay the verdict, which is the same: unconfirmed (the message may
                # have left), so it is verified in the chat before any resend.
                raise errors.ConfirmTimeout(
                    "WhatsApp Web was opened elsewhere before the message was confirmed"
                )
        if now >= deadline:
            break
        time.sleep(CONFIRM_POLL)
    offline = browser.state() == sess.OFFLINE
    where = " (WhatsApp Web shows it is offline)" if offline else ""
    if bubble is not None:
        raise errors.ConfirmTimeout(f"the message is still pending (clock) after {timeout:g}s{where}")
    path = browser.capture("no-bubble")
    raise errors.ConfirmTimeout(
        f"no outgoing message with this text appeared within {timeout:g}s{where}; saved {path}"
    )
