"""Bulkheads: a limit on attempts in flight, unlimited when None, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from plait.runtime.clock import FakeClock
from plait.runtime.policies.bulkhead import Bulkhead


def peak_in_flight(bulkhead: Bulkhead, calls: int) -> int:
    clock = FakeClock(autojump=True)
    peak = 0

    async def call() -> None:
        nonlocal peak
        async with bulkhead:
            peak = max(peak, bulkhead.in_flight)
            await clock.sleep(1)

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(calls):
                group.create_task(call())

    asyncio.run(main())
    assert bulkhead.in_flight == 0
    return peak


def test_limit_caps_attempts_in_flight() -> None:
    assert peak_in_flight(Bulkhead(4), 20) == 4
    assert peak_in_flight(Bulkhead(1), 5) == 1


def test_none_is_unlimited() -> None:
    assert peak_in_flight(Bulkhead(None), 50) == 50


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Bulkhead(0)


def test_cancelled_waiter_takes_no_slot_and_errors_release_theirs() -> None:
    bulkhead = Bulkhead(1)

    async def main() -> None:
        await bulkhead.acquire()
        waiter = asyncio.create_task(bulkhead.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        bulkhead.release()
        assert bulkhead.in_flight == 0
        with pytest.raises(RuntimeError):
            async with bulkhead:
                raise RuntimeError("tool blew up")
        assert bulkhead.in_flight == 0
        async with bulkhead:  # the slot is free again
            assert bulkhead.in_flight == 1

    asyncio.run(main())
