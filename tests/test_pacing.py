"""Pacing: gap distributions, long pauses, daily cap ramp, quiet hours in the recipient's zone, ETA."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from zoneinfo import ZoneInfo

import pytest

from wabulk.errors import BadInput
from wabulk.pacing import (
    DAY,
    PROFILES,
    WARMUP,
    Pacer,
    QuietHours,
    daily_limit,
    estimate_eta,
    local_midnight,
    make_profile,
    next_local_midnight,
    recipient_zone,
)

UTC = dt.timezone.utc


def ts(y: int, mo: int, d: int, h: int, mi: int, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


@pytest.mark.parametrize("name", ["fast", "balanced", "safe"])
def test_gaps_are_bounded_and_long_pauses_come_about_every_n(name: str) -> None:
    p = PROFILES[name]
    pacer = Pacer(p, random.Random(7))
    delays = [pacer.next_delay(i + 1) for i in range(3000)]
    short = [d for d in delays if d <= p.max_delay]
    long = [i for i, d in enumerate(delays) if d > p.max_delay]
    assert all(p.min_delay <= d <= p.max_delay for d in short)
    assert all(p.long_pause_min <= delays[i] <= p.long_pause_max for i in long)
    spacings = [b - a for a, b in zip(long, long[1:], strict=False)]
    lo, hi = p.long_pause_every - p.long_pause_jitter, p.long_pause_every + p.long_pause_jitter
    assert spacings and all(lo <= s <= hi for s in spacings)
    # On average one long pause per long_pause_every messages.
    assert abs(statistics.mean(spacings) - p.long_pause_every) < 1.0


def test_gaps_are_not_periodic() -> None:
    p = PROFILES["balanced"]
    pacer = Pacer(p, random.Random(1))
    delays = [pacer.next_delay(i + 1) for i in range(500)]
    short = [d for d in delays if d <= p.max_delay]
    # Spread over the range, no repeated value, skewed to the short end (median below the midpoint).
    assert len({round(d, 6) for d in short}) > 0.99 * len(short)
    assert statistics.pstdev(short) > 0.5
    assert statistics.median(short) < (p.min_delay + p.max_delay) / 2
    # Long-pause spacing varies too: not one fixed period.
    long = [i for i, d in enumerate(delays) if d > p.max_delay]
    assert len({b - a for a, b in zip(long, long[1:], strict=False)}) > 1


def test_same_seed_same_sequence_different_seed_differs() -> None:
    p = PROFILES["fast"]

    def seq(seed: int) -> list[float]:
        pacer = Pacer(p, random.Random(seed))
        return [pacer.next_delay(i) for i in range(1, 60)]

    assert seq(3) == seq(3) != seq(4)


def test_off_profile_never_waits() -> None:
    pacer = Pacer(PROFILES["off"], random.Random(0))
    assert {pacer.next_delay(i) for i in range(1, 100)} == {0.0}
    assert PROFILES["off"].is_off


def test_make_profile_overrides_and_rejects_nonsense() -> None:
    p = make_profile("balanced", min_delay=1, max_delay=2, long_pause_every=0, daily_cap=50)
    assert (p.min_delay, p.max_delay, p.long_pause_every, p.daily_cap) == (1, 2, 0, 50)
    pacer = Pacer(p, random.Random(0))
    assert all(1 <= pacer.next_delay(i) <= 2 for i in range(1, 200))  # no long pauses when every=0
    assert make_profile("safe", min_delay=40).max_delay >= 40
    with pytest.raises(BadInput, match="unknown pace"):
        make_profile("turbo")
    with pytest.raises(BadInput, match="min-delay"):
        make_profile("fast", min_delay=5, max_delay=1)


def test_daily_limit_ramps_up_over_the_first_days() -> None:
    first = ts(2026, 1, 1, 9, 0)
    assert daily_limit(500, None, first) == WARMUP[0]
    assert daily_limit(500, first, first + 3600) == WARMUP[0]
    assert daily_limit(500, first, first + DAY + 1) == WARMUP[1]
    assert daily_limit(500, first, first + 2 * DAY + 1) == WARMUP[2]
    assert daily_limit(500, first, first + 30 * DAY) == 500
    assert daily_limit(30, first, first + DAY + 1) == 30  # the cap bounds the ramp
    assert daily_limit(0, None, first) >= 10**9  # 0 = no cap
    # With a zone, days are calendar days: a first send at 23:00 is day 1, 01:00 next morning is day 2.
    late = ts(2026, 1, 1, 23, 0)
    assert daily_limit(500, late, late + 2 * 3600, tz=UTC) == WARMUP[1]
    assert daily_limit(500, late, late + 2 * 3600) == WARMUP[0]


def test_local_day_boundaries_follow_the_sender_zone() -> None:
    tz = ZoneInfo("Asia/Kolkata")
    now = ts(2026, 3, 10, 20, 0)  # 01:30 on the 11th in India
    assert local_midnight(now, tz) == ts(2026, 3, 11, 0, 0, tz)
    assert next_local_midnight(now, tz) == ts(2026, 3, 12, 0, 0, tz)


def test_quiet_hours_parse() -> None:
    q = QuietHours.parse("21:00-08:30", UTC)
    assert q is not None and (q.start, q.end) == (21 * 60, 8 * 60 + 30)
    assert QuietHours.parse(None) is None and QuietHours.parse("") is None
    for bad in ("9-5", "25:00-08:00", "21:00", "21:61-08:00"):
        with pytest.raises(BadInput):
            QuietHours.parse(bad, UTC)


def test_quiet_hours_use_the_recipients_time_zone() -> None:
    q = QuietHours.parse("21:00-08:00", UTC)
    assert q is not None
    now = ts(2026, 6, 1, 17, 0)  # 17:00 UTC = 22:30 in India, 13:00 in New York
    india, new_york = "+919876543210", "+12125550123"
    assert q.next_allowed(new_york, now) == now
    # India is quiet until 08:00 local on the next day.
    assert q.next_allowed(india, now) == ts(2026, 6, 2, 8, 0, ZoneInfo("Asia/Kolkata"))
    # Early morning (before the end) in a window that wraps midnight: allowed at 08:00 the same day.
    early = ts(2026, 6, 1, 10, 0)  # 06:00 in New York
    assert q.next_allowed(new_york, early) == ts(2026, 6, 1, 8, 0, ZoneInfo("America/New_York"))


def test_quiet_hours_window_within_one_day() -> None:
    q = QuietHours.parse("12:00-14:00", UTC)
    assert q is not None
    de = "+4915112345678"  # Europe/Berlin, UTC+2 in June
    assert q.next_allowed(de, ts(2026, 6, 1, 10, 30)) == ts(2026, 6, 1, 14, 0, ZoneInfo("Europe/Berlin"))
    assert q.next_allowed(de, ts(2026, 6, 1, 12, 30)) == ts(2026, 6, 1, 12, 30)


def test_ambiguous_numbers_use_the_senders_zone() -> None:
    sender = ZoneInfo("Europe/Lisbon")
    now = ts(2026, 6, 1, 12, 0)
    assert recipient_zone("+18005550123", sender, now) is sender  # US toll-free: dozens of zones
    assert recipient_zone("+79161234567", sender, now) is sender  # Russian mobile: many zones
    assert recipient_zone("not a number", sender, now) is sender
    # Zones that agree on the time are not ambiguous (UK mobile: London/Jersey/Guernsey/Isle of Man).
    assert str(recipient_zone("+447700900123", sender, now)) in {
        "Europe/Guernsey",
        "Europe/Isle_of_Man",
        "Europe/Jersey",
        "Europe/London",
    }
    q = QuietHours.parse("21:00-08:00", sender)
    assert q is not None
    late_in_lisbon = ts(2026, 6, 1, 21, 30)  # 22:30 in Lisbon (UTC+1), afternoon in most of the US
    assert q.next_allowed("+18005550123", late_in_lisbon) == ts(2026, 6, 2, 8, 0, sender)


def test_eta_accounts_for_pacing_cap_and_quiet_hours() -> None:
    p = make_profile("balanced", long_pause_every=0)
    now = ts(2026, 6, 1, 12, 0)
    end = ts(2026, 6, 2, 0, 0)
    plain = estimate_eta(
        100, p, send_seconds=2, left_today=10**9, daily_cap_today=10**9, now=now, day_ends_at=end
    )
    assert plain == pytest.approx(100 * (p.mean_delay + 2))
    quiet = estimate_eta(
        100,
        p,
        send_seconds=2,
        left_today=10**9,
        daily_cap_today=10**9,
        now=now,
        day_ends_at=end,
        quiet_fraction=0.5,
    )
    assert quiet == pytest.approx(2 * plain)
    capped = estimate_eta(100, p, send_seconds=2, left_today=10, daily_cap_today=40, now=now, day_ends_at=end)
    assert capped is not None and capped > 2 * DAY  # 10 today, then 40 + 40 + 10 on three more days
    assert estimate_eta(0, p, send_seconds=2, left_today=0, daily_cap_today=40, now=now, day_ends_at=end) == 0


def test_eta_of_a_job_scheduled_for_later_starts_at_its_time() -> None:
    p = PROFILES["fast"]
    now = 1_000_000.0
    kw = {
        "send_seconds": 1.0,
        "left_today": 10**9,
        "daily_cap_today": 10**9,
        "now": now,
        "day_ends_at": now + 3600,
    }
    soon = estimate_eta(10, p, **kw)  # type: ignore[arg-type]
    later = estimate_eta(10, p, start_at=now + 7200, **kw)  # type: ignore[arg-type]
    assert soon is not None and later is not None and later == pytest.approx(7200 + soon)
