"""The clocks: real time behaves like time, fake time moves only when told (or autojumps)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from plait.runtime.clock import Clock, FakeClock, RealClock


def test_real_clock_measures_and_sleeps() -> None:
    clock = RealClock()
    assert isinstance(clock, Clock)

    async def main() -> float:
        start = clock.now()
        await clock.sleep(0.05)
        return clock.now() - start

    elapsed = asyncio.run(main())
    assert 0.04 <= elapsed < 1.0
    wall = clock.wall()
    assert wall.tzinfo is not None
    assert abs((wall - datetime.now(UTC)).total_seconds()) < 5


def test_fake_clock_is_a_clock_with_a_fixed_epoch() -> None:
    epoch = datetime(2030, 5, 1, tzinfo=UTC)
    clock = FakeClock(start=10.0, epoch=epoch)
    assert isinstance(clock, Clock)
    assert clock.now() == 10.0
    assert clock.wall() == epoch
    clock.advance(2.5)
    assert clock.now() == 12.5
    assert clock.wall() == epoch + timedelta(seconds=2.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_fake_sleep_waits_for_advance() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(s)) for s in (3.0, 1.0, 2.0)]
        await clock.settle()
        assert clock.sleeping == 3 and woke == []
        clock.advance(0.5)
        await clock.settle()
        assert woke == []
        clock.advance(0.5)  # t = 1.0: exactly the first deadline
        await clock.settle()
        assert woke == [1.0]
        clock.advance(5)
        await asyncio.gather(*tasks)
        assert woke == [1.0, 6.0, 6.0]  # woken at the time advance reached

    asyncio.run(main())


def test_fake_sleep_of_zero_returns_at_once() -> None:
    clock = FakeClock()

    async def main() -> None:
        await clock.sleep(0)
        await clock.sleep(-1)
        assert clock.sleeping == 0

    asyncio.run(main())


def test_cancelled_fake_sleep_is_forgotten() -> None:
    clock = FakeClock()

    async def main() -> None:
        task = asyncio.create_task(clock.sleep(5))
        await clock.settle()
        assert clock.next_deadline() == 5
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.sleeping == 0
        assert clock.next_deadline() is None
        clock.advance(10)  # waking a cancelled sleep must not raise

    asyncio.run(main())


def test_autojump_runs_long_sleeps_without_waiting() -> None:
    clock = FakeClock(autojump=True)
    order: list[tuple[str, float]] = []

    async def worker(name: str, waits: list[float]) -> None:
        for wait in waits:
            await clock.sleep(wait)
            order.append((name, clock.now()))

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(worker("a", [30.0, 30.0]))
            group.create_task(worker("b", [45.0]))

    real_start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - real_start < 2.0
    assert order == [("a", 30.0), ("b", 45.0), ("a", 60.0)]
    assert clock.now() == 60.0


def test_autojump_waits_while_other_tasks_are_runnable() -> None:
    clock = FakeClock(autojump=True)

    async def busy(rounds: int) -> float:
        for _ in range(rounds):
            await asyncio.sleep(0)
        return clock.now()

    async def main() -> tuple[float, float]:
        sleeper = asyncio.create_task(clock.sleep(100))
        seen = await busy(50)  # the loop is never idle meanwhile: no jump
        await sleeper
        return seen, clock.now()

    seen, after = asyncio.run(main())
    assert seen == 0.0
    assert after == 100.0
