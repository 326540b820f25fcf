"""The policies as values with pure maths, and the thin async parts that apply them.

The scheduler applies them to each attempt in this fixed order (SPEC section 9), so nothing
deadlocks and no rate token is wasted:

1. breaker check: every breaker the attempt uses (`CircuitBreaker.admit`); a refusal fails
   the attempt at once with `breaker_open`, consuming nothing;
2. concurrency slots (`Bulkhead`): each resource's, in resource-name order, then the map
   step's, then the plan's;
3. rate windows (`RateLimiter.acquire`) of each resource;
4. breaker re-check (`CircuitBreaker.still_closed_for`): if one opened meanwhile, release
   everything and fail with `breaker_open`;
5. the tool call under the step's `timeout` (`asyncio.timeout`; waiting above does not
   count toward it); slots are released when the call ends and each admission is recorded.

Around an attempt, retry (`should_retry`, `retry_wait`, `fits_deadline`) decides whether and
when the next attempt runs (backoff waits hold no slot); after the last failure, fallbacks
and then `default` apply.
"""

from __future__ import annotations

from plait.runtime.policies.breaker import (
    COUNTED_KINDS,
    Admission,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)
from plait.runtime.policies.bulkhead import Bulkhead
from plait.runtime.policies.ratelimit import RateLimiter, SlidingWindow, window_shape
from plait.runtime.policies.retry import RetryVerdict, fits_deadline, retry_wait, should_retry

__all__ = [
    "COUNTED_KINDS",
    "Admission",
    "BreakerState",
    "BreakerTransition",
    "Bulkhead",
    "CircuitBreaker",
    "RateLimiter",
    "RetryVerdict",
    "SlidingWindow",
    "fits_deadline",
    "retry_wait",
    "should_retry",
    "window_shape",
]
