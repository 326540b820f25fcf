"""Clocks: the one source of time for the runtime, injectable so tests never really sleep.

`RealClock` is monotonic time and `asyncio.sleep`. `FakeClock` (Trio's `MockClock` idea) keeps
virtual time: `sleep()` returns once `advance()` moves time past its deadline, or, in
autojump mode, as soon as every task of the loop is blocked, time jumps to the next deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds for measuring, a sleep, and wall time for reports."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def wall(self) -> datetime: ...


class RealClock:
    """Real time: `time.monotonic`, `asyncio.sleep`, `datetime.now(UTC)`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def wall(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """Virtual time for tests.

    `now()` starts at `start` and only moves through `advance(dt)` (or autojump). `wall()` is
    `epoch + now`. With `autojump=True`, when no task of the running loop is runnable and some
    are sleeping on this clock, time jumps to the earliest deadline, so a test of a 30 s
    cooldown finishes at once. Autojump reads the loop's ready queue (CPython's `_ready`);
    work running in threads is not seen, so autojump may jump while a thread is still busy.
    """

    def __init__(
        self, start: float = 0.0, *, autojump: bool = False, epoch: datetime = DEFAULT_EPOCH
    ) -> None:
        self._now = start
        self._epoch = epoch - timedelta(seconds=start)
        self.autojump = autojump
        # (deadline, sequence, future): the sequence keeps equal deadlines in FIFO order.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._watching = False

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._epoch + timedelta(seconds=self._now)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # still a checkpoint, like asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        if self.autojump:
            self._watch(loop)
        await future  # a cancelled sleep leaves a cancelled future, skipped when waking

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        self._wake_due()

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        self._drop_done()
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self, rounds: int = 3, limit: int = 10_000) -> None:
        """Let runnable tasks run until the loop was idle for `rounds` checks in a row.

        Meant for manual mode (after `advance`); gives up after `limit` loop iterations.
        """
        loop = asyncio.get_running_loop()
        idle = 0
        for _ in range(limit):
            if idle >= rounds:
                return
            await asyncio.sleep(0)
            idle = idle + 1 if _loop_idle(loop) else 0

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._watching:
            self._watching = True
            loop.call_soon(self._check_idle, loop, 0)

    def _check_idle(self, loop: asyncio.AbstractEventLoop, idle_rounds: int) -> None:
        """Jump to the next deadline once the loop had nothing to run for two checks in a row.

        Two rounds let a callback scheduled by a just-woken task (a future resolved with
        `call_soon`) run before we decide that everything is blocked.
        """
        self._drop_done()
        if not self._sleepers or not self.autojump:
            self._watching = False
            return
        idle_rounds = idle_rounds + 1 if _loop_idle(loop) else 0
        if idle_rounds >= 2:
            self._now = max(self._now, self._sleepers[0][0])
            self._wake_due()
            idle_rounds = 0
        loop.call_soon(self._check_idle, loop, idle_rounds)


# iso_from_micros formats the date and time up to the second once per second (every event
# and every step's `read_at` is stamped, at a high rate), and the microseconds from two
# tables of three digits (a join of three strings instead of a format); the text up to the
# millisecond is kept too (a busy run stamps many events per millisecond).
_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")
_MILLIS = tuple(f"{i:03d}" for i in range(1000))
_MICROS_Z = tuple(f"{i:03d}Z" for i in range(1000))


def iso_from_micros(micros: int) -> str:
    """Microseconds since the epoch as ISO-8601 UTC text (`2026-01-01T10:00:00.123456Z`)."""
    global _second_cache, _milli_cache
    milli, micro = divmod(micros, 1000)
    cached, head = _milli_cache
    if milli != cached:
        second, millis = divmod(milli, 1000)
        cached, prefix = _second_cache
        if second != cached:
            prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6] + "."  # no "+00:00"
            _second_cache = (second, prefix)
        head = prefix + _MILLIS[millis]
        _milli_cache = (milli, head)
    return head + _MICROS_Z[micro]


def iso_from_seconds(seconds: float) -> str:
    """Wall-clock seconds since the epoch as ISO-8601 UTC text, as events stamp time."""
    whole = math.floor(seconds)  # (the fraction rounded alone, exactly as datetime does)
    return iso_from_micros(whole * 1_000_000 + round((seconds - whole) * 1_000_000))


def seconds_from_iso(text: str) -> float:
    """The inverse of `iso_from_seconds` (any ISO-8601 text with a zone)."""
    return datetime.fromisoformat(text).timestamp()


def wall_seconds(clock: Clock) -> float:
    """The clock's wall time as seconds since the epoch."""
    if type(clock) is RealClock:  # (no datetime made: every tool call reads this)
        return time.time()
    return clock.wall().timestamp()


def _loop_idle(loop: asyncio.AbstractEventLoop) -> bool:
    """True when nothing but the caller is queued to run on the loop."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) == 0
