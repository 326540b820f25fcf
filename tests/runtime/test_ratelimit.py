"""Rate limits: bursts, the sliding window, odd counts and cancellation (SPEC section 9)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.compiler.ir import Rate
from plait.runtime.clock import FakeClock, RealClock
from plait.runtime.policies.ratelimit import RateLimiter, SlidingWindow, window_shape


def start_times(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """Start n acquirers at once on an autojumping clock; the times they got through."""
    got: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        got.append(clock.now())

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(n):
                group.create_task(one())

    asyncio.run(main())
    return got


def test_a_burst_up_to_count_starts_at_once_then_the_window_slides() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(Rate(count=3, per_s=1), clock)
    assert start_times(limiter, clock, 7) == [0, 0, 0, 1, 1, 1, 2]


def test_600_per_minute_is_not_10_per_second() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(Rate(count=600, per_s=60), clock)
    times = start_times(limiter, clock, 601)
    assert times[:600] == [0] * 600  # the whole burst at once
    assert times[600] == 60


def test_window_slides_from_each_start_not_in_fixed_buckets() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, 10)
    window.record(0)
    clock.advance(6)
    window.record(6)
    assert window.next_start(6) == 10  # the start at 0 leaves the window at 10
    window.record(10)
    assert window.next_start(10) == 16  # then the one at 6 leaves at 16
    assert window.next_start(16) == 16
    assert window.in_window(16) == 1


def test_non_integer_counts() -> None:
    assert window_shape(600, 60) == (600, 60)
    assert window_shape(599.9999999999, 60) == (600, 60)  # float noise from unit conversion
    assert window_shape(2.5, 1) == (2, 1)  # never more than 2.5 in any second
    capacity, window_s = window_shape(1 / 60, 1)  # `1/m` normalised per second
    assert capacity == 1 and window_s == pytest.approx(60)
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(Rate(count=1 / 60, per_s=1), clock)
    assert start_times(limiter, clock, 3) == pytest.approx([0, 60, 120])
    with pytest.raises(ValueError):
        window_shape(0, 1)


def test_cancelled_waiter_consumes_no_start() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(count=1, per_s=10), clock)

    async def main() -> None:
        await limiter.acquire()  # takes the only start of this window
        waiter = asyncio.create_task(limiter.acquire())
        await clock.settle()
        assert clock.sleeping == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        clock.advance(10)
        assert limiter.window.in_window(clock.now()) == 0  # the cancelled one took nothing
        await limiter.acquire()  # and the next acquirer goes at once
        assert limiter.window.in_window(clock.now()) == 1

    asyncio.run(main())


def test_waiters_are_served_in_arrival_order() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(Rate(count=1, per_s=1), clock)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for i in range(5):
                group.create_task(one(i))
                await asyncio.sleep(0)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]


@given(st.integers(1, 5), st.floats(0.5, 10), st.lists(st.floats(0, 3), max_size=30))
def test_never_more_than_count_in_any_window(count: int, per_s: float, gaps: list[float]) -> None:
    """Greedy starts at the earliest allowed times never put count+1 starts in one window."""
    window = SlidingWindow(count, per_s)
    now = 0.0
    starts: list[float] = []
    for gap in gaps:
        now = window.next_start(now + gap)
        window.record(now)
        starts.append(now)
    for i in range(len(starts) - count):
        assert starts[i + count] - starts[i] >= per_s - 1e-9


def test_real_clock_burst_then_wait() -> None:
    limiter = RateLimiter(Rate(count=2, per_s=0.3), RealClock())

    async def main() -> list[float]:
        begin = time.monotonic()
        stamps = []
        for _ in range(3):
            await limiter.acquire()
            stamps.append(time.monotonic() - begin)
        return stamps

    stamps = asyncio.run(main())
    assert stamps[0] < 0.1 and stamps[1] < 0.1
    assert 0.28 <= stamps[2] < 1.5
