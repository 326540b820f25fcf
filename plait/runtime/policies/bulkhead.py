"""Bulkheads: at most N attempts in flight, as a semaphore (None = unlimited, no overhead).

One `Bulkhead` exists per limited thing: each resource with `concurrency`, each map step
with `concurrency`, and the plan's `concurrency`. Backoff waits hold no slot (SPEC 9): the
scheduler enters the bulkhead for the attempt only.
"""

from __future__ import annotations

import asyncio


class Bulkhead:
    """A concurrency limit with an `in_flight` count, usable as `async with bulkhead:`."""

    def __init__(self, limit: int | None, name: str = "") -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, not {limit}")
        self.limit = limit
        self.name = name
        self.in_flight = 0
        self._semaphore = asyncio.Semaphore(limit) if limit is not None else None

    async def acquire(self) -> None:
        """Take a slot, waiting for one if all are taken (cancellation takes none)."""
        if self._semaphore is not None:
            await self._semaphore.acquire()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self._semaphore is not None:
            self._semaphore.release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
