"""Account safety: randomised gaps between sends, long pauses, a daily cap with a warm-up ramp, and
quiet hours in the recipient's local time.

Everything here is pure computation over an injected clock and random generator, so it is unit-tested
without sleeping. The worker asks three questions: how long to wait after this send
(:meth:`Pacer.next_delay`), how many sends the session may still make today (:func:`daily_limit`,
:meth:`Pacer.cap_reopens_at`), and when a recipient may be messaged (:meth:`QuietHours.next_allowed`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    import random

DAY = 86400.0


@dataclass(frozen=True)
class PaceProfile:
    """Gaps between sends (seconds) and a longer pause roughly every ``long_pause_every`` sends.

    ``long_pause_jitter`` spreads the long-pause spacing by ± that many messages so pauses are not
    periodic either. ``long_pause_every=0`` disables long pauses. ``daily_cap`` is the default cap per
    session and day (0 = no cap)."""

    name: str
    min_delay: float
    max_delay: float
    long_pause_every: int
    long_pause_min: float
    long_pause_max: float
    long_pause_jitter: int = 0
    daily_cap: int = 0

    @property
    def is_off(self) -> bool:
        return self.max_delay <= 0 and self.long_pause_every <= 0

    @property
    def mean_delay(self) -> float:
        """The average gap per message including amortised long pauses (used for the ETA)."""
        base = self.min_delay + (self.max_delay - self.min_delay) * _BETA_A / (_BETA_A + _BETA_B)
        if self.long_pause_every > 0:
            base += (self.long_pause_min + self.long_pause_max) / 2 / self.long_pause_every
        return base


PROFILES: dict[str, PaceProfile] = {
    "fast": PaceProfile("fast", 2.0, 5.0, 25, 10.0, 20.0, long_pause_jitter=5, daily_cap=1000),
    "balanced": PaceProfile("balanced", 4.0, 8.0, 10, 20.0, 40.0, long_pause_jitter=2, daily_cap=500),
    "safe": PaceProfile("safe", 10.0, 30.0, 6, 60.0, 180.0, long_pause_jitter=2, daily_cap=200),
    "off": PaceProfile("off", 0.0, 0.0, 0, 0.0, 0.0, daily_cap=0),
}

# Warm-up ramp: a session's daily cap on its 1st, 2nd, … day of sending, before the full cap applies.
WARMUP = (20, 40, 80, 150, 250)

# Shape of the gap distribution inside [min, max]: Beta(1.6, 2.8) is skewed towards the short end with a
# long tail, like a person working through a list, and never produces a fixed period.
_BETA_A = 1.6
_BETA_B = 2.8


def make_profile(
    name: str,
    *,
    min_delay: float | None = None,
    max_delay: float | None = None,
    long_pause_every: int | None = None,
    daily_cap: int | None = None,
) -> PaceProfile:
    """A named profile with the CLI's overrides applied and checked. Raises BadInput on nonsense."""
    if name not in PROFILES:
        raise BadInput(f"unknown pace {name!r} (choose one of: {', '.join(PROFILES)})")
    p = PROFILES[name]
    changes: dict[str, object] = {}
    if min_delay is not None:
        changes["min_delay"] = float(min_delay)
    if max_delay is not None:
        changes["max_delay"] = float(max_delay)
    if long_pause_every is not None:
        changes["long_pause_every"] = int(long_pause_every)
    if daily_cap is not None:
        changes["daily_cap"] = int(daily_cap)
    if changes:
        p = replace(p, name=f"{name}*", **changes)  # type: ignore[arg-type]
        if "min_delay" in changes and "max_delay" not in changes and p.max_delay < p.min_delay:
            p = replace(p, max_delay=p.min_delay * 1.5)
    if p.min_delay < 0 or p.max_delay < p.min_delay:
        raise BadInput(
            f"delays must satisfy 0 <= min-delay <= max-delay (got {p.min_delay:g}, {p.max_delay:g})"
        )
    if p.long_pause_every < 0:
        raise BadInput("--long-pause-every must be >= 0")
    if p.daily_cap < 0:
        raise BadInput("--daily-cap must be >= 0")
    return p


class Pacer:
    """Draws the wait after each send. Keeps the position of the next long pause, drawn around
    ``long_pause_every`` (± ``long_pause_jitter``) so that pauses, like gaps, have no fixed period."""

    def __init__(
        self, profile: PaceProfile, rng: random.Random | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.profile = profile
        if rng is None:
            import random  # here: `status` imports this module for the daily cap and never draws

            rng = random.Random()
        self.rng = rng
        self.clock = clock
        self._next_long_at: int | None = None
        self._count = 0

    def _draw_spacing(self) -> int:
        p = self.profile
        return max(1, p.long_pause_every + self.rng.randint(-p.long_pause_jitter, p.long_pause_jitter))

    def next_delay(self, sent_in_row: int | None = None) -> float:
        """Seconds to wait after a send. ``sent_in_row`` is how many messages this run has sent so far
        (the pacer counts calls itself when it is None). A long pause comes when that count reaches the
        next drawn spacing. Returns 0 for the ``off`` profile."""
        p = self.profile
        self._count = self._count + 1 if sent_in_row is None else sent_in_row
        if p.is_off:
            return 0.0
        if p.long_pause_every > 0:
            if self._next_long_at is None:
                self._next_long_at = self._draw_spacing()
            if self._count >= self._next_long_at:
                self._next_long_at = self._count + self._draw_spacing()
                return self.rng.uniform(p.long_pause_min, p.long_pause_max)
        span = p.max_delay - p.min_delay
        return p.min_delay + span * self.rng.betavariate(_BETA_A, _BETA_B)


# --- daily cap ---------------------------------------------------------------------------------------


def _day_of_sending(first_send_at: float | None, now: float, tz: _dt.tzinfo | None) -> int:
    """0 on the day of the first send (or when it never sent), 1 the next day, …"""
    if first_send_at is None:
        return 0
    if tz is None:
        return max(0, int((now - first_send_at) // DAY))
    first_day = _dt.datetime.fromtimestamp(first_send_at, tz).date()
    return max(0, (_dt.datetime.fromtimestamp(now, tz).date() - first_day).days)


def daily_limit(
    cap: int,
    first_send_at: float | None,
    now: float,
    warmup: tuple[int, ...] = WARMUP,
    tz: _dt.tzinfo | None = None,
) -> int:
    """Today's cap for a session: the warm-up ramp on its first days (day 1 = the day of its first
    send, or today when it never sent), then ``cap``. Days are calendar days in ``tz`` (the sender's
    zone, like the cap's own day), or 24-hour periods from the first send when ``tz`` is None.
    ``cap <= 0`` means unlimited (returns a huge number) and skips the ramp: ``--daily-cap 0``."""
    if cap <= 0:
        return 10**9
    day = _day_of_sending(first_send_at, now, tz)
    if day < len(warmup):
        return min(cap, warmup[day])
    return cap


@dataclass(frozen=True)
class CapState:
    """A session's daily cap at one moment. ``status``, the live view and the dashboard all show this
    (made by :func:`cap_state` only), so they agree on the cap, what is left and until when it waits."""

    cap: int  # the cap the session runs with; 0 = no cap
    cap_today: int | None  # today's limit, with the warm-up ramp; None = no cap
    sent_today: int
    warmup_day: int | None  # 1-based day of the warm-up ramp while it limits; None after it (or no cap)
    day_ends_at: float  # the next local midnight, when a reached cap opens again

    @property
    def left_today(self) -> int | None:
        """Sends left today (None: no cap)."""
        return None if self.cap_today is None else max(0, self.cap_today - self.sent_today)

    @property
    def reached(self) -> bool:
        return self.cap_today is not None and self.sent_today >= self.cap_today

    @property
    def waiting_until(self) -> float | None:
        """When sending may go on: the next midnight once the cap is reached, else None."""
        return self.day_ends_at if self.reached else None

    def as_dict(self) -> dict[str, Any]:
        """The fields ``status --json`` and the dashboard API give per session."""
        return {
            "daily_cap": self.cap,
            "cap_today": self.cap_today,
            "sent_today": self.sent_today,
            "left_today": self.left_today,
            "warmup_day": self.warmup_day,
            "cap_reached": self.reached,
            "waiting_until": self.waiting_until,
        }


def cap_state(
    cap: int,
    first_send_at: float | None,
    sent_today: int,
    now: float,
    tz: _dt.tzinfo,
    warmup: tuple[int, ...] = WARMUP,
) -> CapState:
    """A session's :class:`CapState`: ``cap`` (0 = none) with the warm-up ramp of a new session (day 1 =
    the day of its first send), ``sent_today`` counted from local midnight in ``tz``."""
    day_ends = next_local_midnight(now, tz)
    if cap <= 0:
        return CapState(0, None, sent_today, None, day_ends)
    day = _day_of_sending(first_send_at, now, tz)
    limit = daily_limit(cap, first_send_at, now, warmup, tz)
    warm = day + 1 if day < len(warmup) and warmup[day] < cap else None
    return CapState(cap, limit, sent_today, warm, day_ends)


def local_midnight(now: float, tz: _dt.tzinfo) -> float:
    """The start of the local day containing ``now`` (unix seconds)."""
    local = _dt.datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_local_midnight(now: float, tz: _dt.tzinfo) -> float:
    """The start of the next local day after ``now`` (DST-safe)."""
    local = _dt.datetime.fromtimestamp(now, tz)
    nxt = (local + _dt.timedelta(days=1)).date()
    return _dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()


# --- quiet hours ----------------------------------------------------------------------------------------

_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def local_zone() -> _dt.tzinfo:
    """The sender's (this machine's) time zone."""
    tz = _dt.datetime.now().astimezone().tzinfo
    return tz if tz is not None else _dt.timezone.utc


def recipient_zone(phone: str, fallback: _dt.tzinfo, now: float | None = None) -> _dt.tzinfo:
    """The recipient's time zone from the number. When the number maps to several zones that disagree
    on the time at ``now`` (US toll-free, Russian or Australian mobiles), or to none, it is ambiguous and
    ``fallback`` (the sender's zone) decides. Zones that agree (the UK's London/Jersey/Guernsey) count
    as one. A number known only to its country (many mobiles) uses the country's zones."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    import phonenumbers
    from phonenumbers import timezone as pn_tz

    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return fallback
    names = [z for z in pn_tz.time_zones_for_number(parsed) if z and z != "Etc/Unknown"]
    if not names:
        country_level = getattr(pn_tz, "_country_level_time_zones_for_number", None)
        if callable(country_level):
            names = [z for z in country_level(parsed) if z and z != "Etc/Unknown"]
    zones: list[ZoneInfo] = []
    for name in names:
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            return fallback
    if not zones:
        return fallback
    at = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc)
    if len({at.astimezone(z).utcoffset() for z in zones}) != 1:
        return fallback
    return zones[0]


@dataclass(frozen=True)
class QuietHours:
    """A daily window ``start``–``end`` (minutes after local midnight) when nobody is messaged.
    ``start > end`` wraps over midnight (``21:00-08:00``). ``start == end`` is an empty window."""

    start: int
    end: int
    sender_zone: _dt.tzinfo

    @classmethod
    def parse(cls, spec: str | None, sender_zone: _dt.tzinfo | None = None) -> QuietHours | None:
        """Parse ``"HH:MM-HH:MM"``; None/empty gives None (no quiet hours). Raises BadInput."""
        if spec is None or not spec.strip() or spec.strip().lower() in {"off", "none"}:
            return None
        m = _HHMM.match(spec)
        if not m:
            raise BadInput(f"quiet hours must look like 21:00-08:00, got {spec!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise BadInput(f"quiet hours must look like 21:00-08:00, got {spec!r}")
        return cls(h1 * 60 + m1, h2 * 60 + m2, sender_zone or local_zone())

    def _quiet(self, minute: int) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def zone_for(self, phone: str, now: float | None = None) -> _dt.tzinfo:
        """The zone whose clock decides for this recipient."""
        return recipient_zone(phone, self.sender_zone, now)

    def next_allowed(self, phone: str, now: float) -> float:
        """``now`` when ``phone`` may be messaged now, else the end of its quiet window (unix seconds)."""
        tz = self.zone_for(phone, now)
        local = _dt.datetime.fromtimestamp(now, tz)
        minute = local.hour * 60 + local.minute
        if not self._quiet(minute):
            return now
        end_h, end_m = divmod(self.end, 60)
        day = local.date()
        if minute >= self.end:  # in the evening part of a window that wraps past midnight
            day = day + _dt.timedelta(days=1)
        end = _dt.datetime(day.year, day.month, day.day, end_h, end_m, tzinfo=tz).timestamp()
        return max(end, now)


def estimate_eta(
    remaining: int,
    profile: PaceProfile,
    *,
    send_seconds: float,
    left_today: int,
    daily_cap_today: int,
    now: float,
    day_ends_at: float,
    quiet_fraction: float = 0.0,
    start_at: float | None = None,
    per_message: float | None = None,
) -> float | None:
    """A rough number of seconds until ``remaining`` messages are sent: the mean gap plus the measured
    send time per message (or ``per_message``, e.g. the observed rate), whole days added when the cap
    runs out, stretched by the share of the day that is quiet, and nothing before ``start_at`` (a job
    scheduled with ``--at``). None when nothing can be said (no cap left and no cap tomorrow).
    The one ETA of ``status``, the live view and the dashboard."""
    if remaining <= 0:
        return 0.0
    per = max(0.05, per_message if per_message is not None else profile.mean_delay + send_seconds)
    stretch = 1.0 / max(0.05, 1.0 - quiet_fraction)
    wait = max(0.0, (start_at or now) - now)
    if wait >= max(0.0, day_ends_at - now) and daily_cap_today < 10**9:
        left_today = daily_cap_today  # it starts on a later day: that day's allowance, not today's
        day_ends_at = now + wait + DAY
    if daily_cap_today >= 10**9 or remaining <= left_today:
        return wait + remaining * per * stretch
    if daily_cap_today <= 0:
        return None
    # Finish today's allowance, then full days of the cap.
    rest = remaining - max(0, left_today)
    days = math.ceil(rest / daily_cap_today)
    last = rest - (days - 1) * daily_cap_today
    return max(wait, day_ends_at - now) + (days - 1) * DAY + last * per * stretch
