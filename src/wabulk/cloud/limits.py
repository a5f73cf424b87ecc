"""The Cloud API messaging limit: how many unique people an account may start conversations with in a
rolling 24 hours, enforced as the daily cap of template sends.

Meta sets the limit per business portfolio (since October 2025; shared by all its numbers) and reports it
on the phone number node as ``whatsapp_business_manager_messaging_limit`` (``TIER_250`` … ``TIER_UNLIMITED``;
the old per-number ``messaging_limit_tier`` only up to v23.0). A recipient counts once per window however
many messages they get. wabulk cannot see which recipients have an open customer-service window (those do
not count for Meta), so it counts every template recipient: it may stop early, never late.

The limit is shared: every Cloud API session whose number belongs to the same business portfolio (what
``login --cloud`` recorded as ``portfolio_id``; else the same WABA, ``waba_id``) counts against one cap
(:func:`portfolio_sessions`). A session whose portfolio is unknown counts alone.

The worker side calls :func:`account_limit` on the account facts it reads and asks a :class:`LimitGate`
before each template send (``allow(phone)``); ``status``, ``doctor`` and the dashboard show
:func:`describe`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wabulk.queue import Queue

WINDOW_SECONDS = 24 * 3600
CURRENT_FIELD = "whatsapp_business_manager_messaging_limit"
DEPRECATED_FIELD = "messaging_limit_tier"
# The fields to ask the phone number node for (GET /{v}/{PHONE_ID}?fields=…).
ACCOUNT_FIELDS = f"quality_rating,throughput,{CURRENT_FIELD},{DEPRECATED_FIELD}"
TIERS: dict[str, int | None] = {
    "TIER_50": 50,  # the old per-number tiers (≤ v23.0)
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
# A tier wabulk does not know (or none reported): the lowest current one, so an unknown answer can only make
# wabulk stop too early.
FALLBACK_TIER = "TIER_250"
QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "UNKNOWN", "NA")


@dataclass(frozen=True)
class AccountLimit:
    """What the account facts say about sending limits and quality."""

    tier: str  # as Meta names it, e.g. TIER_2K; FALLBACK_TIER when Meta said nothing usable
    limit: int | None  # unique recipients per rolling 24 h; None: unlimited
    quality: str  # GREEN, YELLOW, RED, or UNKNOWN/NA for new numbers
    reported: bool = True  # False: the tier was missing or unknown and FALLBACK_TIER is assumed
    throughput: str | None = None  # STANDARD (80/s) or HIGH (1,000/s)


def limit_of(tier: str | None) -> int | None:
    """The unique recipients a tier allows per 24 h (None: unlimited; an unknown tier: the lowest)."""
    key = (tier or "").strip().upper()
    return TIERS[key] if key in TIERS else TIERS[FALLBACK_TIER]


def account_limit(facts: Mapping[str, Any]) -> AccountLimit:
    """Read the messaging limit, quality rating and throughput level from the phone number node's answer.
    The current field wins over the deprecated one; neither (or an unknown value) assumes the lowest tier."""
    raw = facts.get(CURRENT_FIELD)
    if not isinstance(raw, str) or raw.strip().upper() not in TIERS:
        raw = facts.get(DEPRECATED_FIELD)
    tier = raw.strip().upper() if isinstance(raw, str) else ""
    reported = tier in TIERS
    if not reported:
        tier = FALLBACK_TIER
    quality = str(facts.get("quality_rating") or "UNKNOWN").upper()
    throughput = facts.get("throughput")
    level = throughput.get("level") if isinstance(throughput, dict) else throughput
    return AccountLimit(
        tier=tier,
        limit=TIERS[tier],
        quality=quality,
        reported=reported,
        throughput=str(level) if level else None,
    )


def describe(limit: AccountLimit, used: int | None = None) -> str:
    """One line for ``status``/``doctor``: ``quality GREEN, messaging limit 2,000 people/24 h (TIER_2K),
    1,234 used``."""
    cap = "unlimited" if limit.limit is None else f"{limit.limit:,} people/24 h"
    tier = limit.tier if limit.reported else f"not reported, {limit.tier} assumed"
    used_part = f", {used:,} used" if used is not None else ""
    return f"quality {limit.quality}, messaging limit {cap} ({tier}){used_part}"


def portfolio_key(provider_settings: Mapping[str, Any]) -> str | None:
    """What the messaging limit of a Cloud API session is shared by: ``portfolio:<id>`` (the business
    portfolio), else ``waba:<id>``, else None (unknown: the session counts alone)."""
    portfolio = provider_settings.get("portfolio_id")
    if portfolio:
        return f"portfolio:{portfolio}"
    waba = provider_settings.get("waba_id")
    return f"waba:{waba}" if waba else None


def portfolio_sessions(session: str, providers: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The Cloud API sessions sharing ``session``'s messaging limit (itself first), from the recorded
    sessions (``Queue.session_providers()``)."""
    kind, mine = providers.get(session, ("", {}))
    key = portfolio_key(mine) if kind == "cloud" else None
    if key is None:
        return [session]
    others = sorted(
        n for n, (k, st) in providers.items() if n != session and k == "cloud" and portfolio_key(st) == key
    )
    return [session, *others]


def shared_by(provider_settings: Mapping[str, Any], sharing: list[str]) -> str:
    """Who shares a session's messaging limit, for ``status``/``doctor``/``login``: the business portfolio
    (and the other sessions counted with it), or why it is this number's alone."""
    others = f", counted with session(s) {', '.join(sharing[1:])}" if len(sharing) > 1 else ""
    portfolio = provider_settings.get("portfolio_id")
    if portfolio:
        return f"business portfolio {portfolio}{others}"
    waba = provider_settings.get("waba_id")
    if waba:
        return f"WhatsApp Business Account {waba} (its business portfolio is unknown){others}"
    return (
        "this number alone: its business portfolio is unknown (run `wabulk login --cloud` again, with "
        "--waba-id), so other numbers of the portfolio are not counted"
    )


def recipients_in_window(queue: Queue, sessions: Iterable[str], *, now: float | None = None) -> set[str]:
    """The distinct numbers ``sessions`` started a template send to within the last 24 hours (a send
    whose outcome is unknown counts: Meta may have delivered it)."""
    t = time.time() if now is None else now
    return queue.template_recipients_since(list(sessions), t - WINDOW_SECONDS)


@dataclass
class LimitGate:
    """The messaging limit as a daily cap for template sends: ``allow(phone)`` before each one.

    ``seen`` holds the recipients already counted in the window (they may be messaged again without using
    the limit up). Not thread-safe; refresh it (``reload``) now and then, as the window moves."""

    limit: int | None
    seen: set[str] = field(default_factory=set)
    refused: int = 0
    # With other sessions of the same portfolio: re-read their recipients every ``refresh_every`` seconds
    # (they may be sending at the same time, from another process). Only added to: a recipient counted
    # here stays counted (the window moving on can only make the gate stop early, never late).
    reload: Callable[[], set[str]] | None = None
    refresh_every: float = 1.0
    _loaded_at: float = field(default_factory=time.monotonic)

    @classmethod
    def load(
        cls, queue: Queue, sessions: Iterable[str], limit: int | None, *, now: float | None = None
    ) -> LimitGate:
        """A gate for ``sessions`` (those sharing the account's portfolio) with their last 24 hours; with
        more than one session it re-reads their recipients now and then while it is used."""
        if limit is None:
            return cls(None)
        names = list(sessions)
        reload = None
        if len(names) > 1:

            def reload() -> set[str]:
                return recipients_in_window(queue, names)

        return cls(limit, recipients_in_window(queue, names, now=now), reload=reload)

    @classmethod
    def for_session(
        cls, queue: Queue, session: str, provider_settings: Mapping[str, Any], *, now: float | None = None
    ) -> LimitGate:
        """The gate of a Cloud API session from what ``login --cloud`` recorded (``messaging_limit``: the
        tier; missing or unknown: the lowest), counting the last 24 hours of every session of its business
        portfolio."""
        sessions = portfolio_sessions(session, queue.session_providers())
        return cls.load(
            queue, sessions, limit_of(str(provider_settings.get("messaging_limit") or "")), now=now
        )

    def refusal(self) -> str:
        """Why a template send is refused: one line for the run's stop reason."""
        cap = "unlimited" if self.limit is None else f"{self.limit:,}"
        return (
            f"messaging limit reached: {self.used:,} unique recipients in the last 24 hours (limit {cap}); "
            "the rest waits, nothing was spent (run again later, or once Meta raises the tier)"
        )

    def allow(self, phone: str) -> bool:
        """Whether a template send to ``phone`` stays within the limit; counts it when it does."""
        if self.limit is None:
            return True
        if self.reload is not None and time.monotonic() - self._loaded_at >= self.refresh_every:
            self.seen |= self.reload()
            self._loaded_at = time.monotonic()
        if phone in self.seen:
            return True
        if len(self.seen) >= self.limit:
            self.refused += 1
            return False
        self.seen.add(phone)
        return True

    @property
    def used(self) -> int:
        return len(self.seen)

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - len(self.seen))
