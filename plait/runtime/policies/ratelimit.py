"""Rate limits: at most COUNT attempt starts in any sliding window of PERIOD (SPEC section 9).

A burst of up to COUNT may start at once; the next start waits until the oldest start in
the window is one PERIOD old (so `600/m` is not `10/s`).

Why not `asyncio_throttle.Throttler` itself: it keeps exactly this algorithm (a deque of
start times, an entry leaving the window one period later), and `SlidingWindow` below is
the same idea, but Throttler reads `time.monotonic` directly, so it cannot run on a
`FakeClock`; it waits by polling every `retry_interval` (10 ms: a thousand queued attempts
on `rate 1/m` would wake 100,000 times a second, where the scheduler must never poll); its
waiters race instead of queueing in order; and it takes whole counts only. `RateLimiter`
therefore shares one pure `SlidingWindow` between real and fake clocks and sleeps exactly
until the next free start, with waiters served first come, first served.

Non-integer counts: a count of at least 1 allows `floor(count)` starts per period (never more
than the rate in any window); a count below 1 (a rate normalised to a shorter period, e.g.
1/m written as 0.0167/s) allows 1 start per `period / count`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from plait.compiler.ir import Rate
from plait.runtime.clock import Clock

_EPSILON = 1e-9  # tolerance for counts such as 599.9999999 after unit conversion


def window_shape(count: float, per_s: float) -> tuple[int, float]:
    """(starts allowed, window length in seconds) for `rate count/per_s`."""
    if count <= 0 or per_s <= 0:
        raise ValueError(f"a rate needs a positive count and period, not {count}/{per_s}s")
    if count + _EPSILON >= 1:
        return math.floor(count + _EPSILON), per_s
    return 1, per_s / count


class SlidingWindow:
    """The pure sliding-window log: which start times are still inside the window."""

    def __init__(self, count: float, per_s: float) -> None:
        self.capacity, self.window_s = window_shape(count, per_s)
        self._starts: deque[float] = deque()

    def next_start(self, now: float) -> float:
        """The earliest time, not before `now`, at which one more start fits."""
        self._expire(now)
        if len(self._starts) < self.capacity:
            return now
        return self._starts[0] + self.window_s

    def record(self, at: float) -> None:
        """Count a start made at `at` (call only when `next_start(at) <= at`)."""
        self._starts.append(at)

    def in_window(self, now: float) -> int:
        self._expire(now)
        return len(self._starts)

    def _expire(self, now: float) -> None:
        # A start at t occupies the half-open window [t, t + window).
        while self._starts and self._starts[0] + self.window_s <= now:
            self._starts.popleft()


class RateLimiter:
    """One resource's rate, shared by every attempt of every step using the resource."""

    def __init__(self, rate: Rate, clock: Clock) -> None:
        self.rate = rate
        self.window = SlidingWindow(rate.count, rate.per_s)
        self._clock = clock
        self._queue = asyncio.Lock()  # waiters take turns in arrival order

    async def acquire(self) -> None:
        """Wait until this start fits the window, then count it.

        Cancelled while waiting, it counts nothing (the start was never made).
        """
        if not self._queue.locked() and self._try_start():
            return  # the common case: no queue, room in the window, no suspension
        async with self._queue:
            while not self._try_start():
                now = self._clock.now()
                await self._clock.sleep(self.window.next_start(now) - now)

    def _try_start(self) -> bool:
        now = self._clock.now()
        if self.window.next_start(now) > now:
            return False
        self.window.record(now)
        return True

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        return None
