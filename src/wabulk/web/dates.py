"""Bubble dates: "[HH:MM, date]" in the page's locale, read without guessing.

``js/bubbles.js`` hands over each bubble's two numbers before the year and the instants each reading (day
first, month first, year first) means in the browser's time zone, widened over a repeated DST hour. Here
the page's order is decided from evidence only: a date on the page that reads one way (a day above 12),
or the order a bubble we sent today showed (learnt, and kept per profile by the sender). "5/6/2026" with
neither stays unread; the browser language is not evidence (WhatsApp formats in the account's locale).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bubbles import Bubble, ChatRead

DM, MD, YMD = "dm", "md", "ymd"  # date orders: day first, month first, year first


def date_order(read: ChatRead, learnt: str | None = None) -> str | None:
    """The page's date order: from a date on the page that can only be read one way (a day above 12),
    else what was ``learnt`` on this profile (:func:`learn_order`). None when nothing establishes it (then
    ambiguous dates stay unread: see :func:`span`). The browser language's order (``order_hint``) is NOT
    used: WhatsApp formats dates in the account's locale, which need not be the browser's."""
    seen = set()
    for b in read.messages:
        w = b.when or {}
        if w.get("ymd"):
            seen.add(YMD)
        elif w.get("a") and w.get("b"):
            if int(w["a"]) > 12 >= int(w["b"]):
                seen.add(DM)
            elif int(w["b"]) > 12 >= int(w["a"]):
                seen.add(MD)
    if len(seen - {YMD}) == 1:
        return next(iter(seen - {YMD}))
    if len(seen - {YMD}) > 1:
        return None  # the page contradicts itself: trust no order
    return learnt


def learn_order(bubble: Bubble, now: float) -> str | None:
    """The date order that makes a bubble we just sent dated today (None when both or neither do)."""
    w = bubble.when or {}
    fits = [o for o in (DM, MD) if w.get(o) and abs(w[o][0] / 1000.0 - now) < 36 * 3600]
    return fits[0] if len(fits) == 1 else None


def span(bubble: Bubble, order: str | None) -> tuple[float, float] | None:
    """The earliest and latest instant (unix seconds) the bubble's time can mean: its minute, widened by a
    repeated DST hour. None without a readable time, or when the date reads two ways and the page's order
    is not known ("5/6/2026" is 5 June or 6 May)."""
    w = bubble.when or {}
    dm, md = w.get(DM), w.get(MD)
    if w.get("ymd"):
        found = w["ymd"]
    elif dm and md and dm != md:
        if order not in (DM, MD):
            return None
        found = w[order]
    else:
        found = dm or md
    if not found:
        return None
    return float(found[0]) / 1000.0, float(found[1]) / 1000.0 + 60.0
