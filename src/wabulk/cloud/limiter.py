"""A per-phone-number rate limiter: at most ``rate`` requests in any one-second window, evenly spaced.

Meta counts a number's throughput per second (80 by default, 1,000 for upgraded numbers) and answers
130429 beyond it. Even spacing keeps bursts away; the sliding window over the last ``rate`` send times
is what guarantees the rate is never exceeded, whatever the spacing's rounding. On 130429 the limiter
stops everyone for a back-off and halves its rate; it climbs back slowly (10 % per quiet 10 s) up to the
configured rate, never above it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

MIN_RATE = 1.0
RECOVER_AFTER = 10.0  # seconds without a 130429 before the rate climbs back
RECOVER_STEP = 1.1
MAX_BACKOFF = 30.0
SLACK = 0.02  # seconds of spacing a late sender may catch up on at once (a loaded machine wakes it late)


class RateLimiter:
    """Thread-safe. ``acquire()`` blocks until one more request may start now."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.max_rate = float(rate)
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest start of the next request (spacing)
        self._paused_until = 0.0
        self._window: collections.deque[float] = collections.deque()
        self._backoffs = 0
        self._last_throttle = -1e18
        self.throttled = 0  # 130429 answers seen

    def acquire(self, should_stop: Callable[[], bool] | None = None) -> bool:
        """Wait for a slot; returns False (no slot taken) if ``should_stop()`` turned true meanwhile."""
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if should_stop is not None and should_stop():
                return False
            self._sleep(min(wait, 0.25))

    def try_acquire(self) -> float:
        """Take a slot if one is free now (returns 0), else return how long until one may be (no slot
        taken): for an event loop that must not block."""
        with self._lock:
            now = self._clock()
            self._maybe_recover(now)
            cap = max(1, int(self.rate))
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            wait = max(self._paused_until - now, self._next - now)
            if len(self._window) >= cap:
                wait = max(wait, self._window[0] + 1.0 - now)
            if wait > 0:
                return wait
            self._window.append(now)
            # A sender that comes back late (a timer is only as precise as a millisecond or two) may
            # catch up on at most SLACK's worth of slots at once; the one-second window above is what
            # guarantees the rate, this only keeps the spacing even.
            interval = 1.0 / self.rate
            self._next = max(self._next, now - max(interval, SLACK)) + interval
            return 0.0

    def throttled_by_meta(self) -> float:
        """Meta answered 130429: halve the rate and stop every sender for a growing back-off.
        Returns the back-off in seconds."""
        with self._lock:
            now = self._clock()
            self.throttled += 1
            # Several in-flight requests get 130429 together: that is one event, not many.
            if now - self._last_throttle > 1.0:
                self._backoffs += 1
                self.rate = max(MIN_RATE, self.rate / 2)
            self._last_throttle = now
            backoff = min(MAX_BACKOFF, 2.0 ** min(self._backoffs - 1, 5))
            self._paused_until = max(self._paused_until, now + backoff)
            self._window.clear()
            return backoff

    def _maybe_recover(self, now: float) -> None:
        if self.rate < self.max_rate and now - self._last_throttle >= RECOVER_AFTER:
            self.rate = min(self.max_rate, self.rate * RECOVER_STEP)
            self._last_throttle = now - RECOVER_AFTER + 1.0  # the next step one second later at the earliest
            if self.rate >= self.max_rate:
                self._backoffs = 0
