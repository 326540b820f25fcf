"""The guards of a plan's resources: each one's breaker, concurrency slots and rate window.

A run makes its own (`ResourceGuards.for_plan`), or is handed one from outside through
`RunOptions.guards`: `plait batch` shares one set among all the runs of a batch, so
`rate 10/s` is 10/s for the whole batch and one breaker protects the service for everyone.
Across processes (a batch on Ray) the same three roles are played by proxies of one actor
per resource (`plait.runtime.executors.ray`), so the scheduler only sees these interfaces.

A breaker's admission may need a round trip to wherever its state lives, so the scheduler
awaits `admit`, `still_closed_for` and `record`; `release` (giving back an admission that
never reached its tool, on cancellation) must not wait and is sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from plait.compiler.ir import Plan
from plait.errors import ErrorKind
from plait.runtime.clock import Clock
from plait.runtime.policies.breaker import BreakerTransition, CircuitBreaker
from plait.runtime.policies.bulkhead import Bulkhead
from plait.runtime.policies.ratelimit import RateLimiter


class BreakerGuard(Protocol):
    """A resource's circuit breaker as the scheduler uses it (SPEC section 9 order)."""

    name: str

    async def admit(self) -> Any | None:
        """An admission (carrying `transitions`), or None: refused with `breaker_open`."""

    async def still_closed_for(self, admission: Any) -> bool:
        """The re-check after slots and rate windows: may the attempt still go?"""

    async def record(self, admission: Any, kind: ErrorKind | str | None) -> list[BreakerTransition]:
        """The admitted attempt's result (None = success); the transitions it caused."""

    def release(self, admission: Any) -> list[BreakerTransition]:
        """Give back an admission whose attempt never reached its tool (cancelled)."""


class SlotGuard(Protocol):
    """A concurrency limit, entered around one attempt (`async with`)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: object) -> Any: ...


class RateGuard(Protocol):
    """A rate window: `acquire` returns when one more attempt may start."""

    async def acquire(self) -> None: ...


class LocalBreaker:
    """A `CircuitBreaker` in this process, behind the awaitable interface (no suspension)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.name = breaker.name

    async def admit(self) -> Any | None:
        return self.breaker.admit()

    async def still_closed_for(self, admission: Any) -> bool:
        return self.breaker.still_closed_for(admission)

    async def record(self, admission: Any, kind: ErrorKind | str | None) -> list[BreakerTransition]:
        return self.breaker.record(admission, kind)

    def release(self, admission: Any) -> list[BreakerTransition]:
        # `cancelled` neither counts nor resets, so a held half-open trial is simply freed
        return self.breaker.record(admission, ErrorKind.CANCELLED)


@dataclass
class ResourceGuards:
    """Breakers, bulkheads and rate windows by resource name (only those a resource sets)."""

    breakers: Mapping[str, BreakerGuard] = field(default_factory=dict)
    bulkheads: Mapping[str, SlotGuard] = field(default_factory=dict)
    limiters: Mapping[str, RateGuard] = field(default_factory=dict)

    @classmethod
    def for_plan(cls, plan: Plan, clock: Clock) -> ResourceGuards:
        """Guards living in this process, on `clock` (one run's, or a local batch's)."""
        resources = plan.resources.values()
        return cls(
            breakers={
                r.name: LocalBreaker(CircuitBreaker(r.name, r.breaker, clock))
                for r in resources
                if r.breaker is not None
            },
            bulkheads={
                r.name: Bulkhead(r.concurrency, r.name)
                for r in resources
                if r.concurrency is not None
            },
            limiters={r.name: RateLimiter(r.rate, clock) for r in resources if r.rate is not None},
        )
