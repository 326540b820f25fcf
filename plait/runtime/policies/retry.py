"""Retry as pure maths: whether to retry after a failed attempt, and how long to wait.

The wait before retry k is `d_k = min(MAX, BACKOFF * FACTOR^(k-1))` (`RetryPolicy.delay`),
drawn uniformly from `[0, d_k]` with `jitter` (full jitter), then raised to a tool's retry
hint when it gave one (`max` does not cap a hint; only the deadline does, see
`fits_deadline`). SPEC sections 4 and 9.
"""

from __future__ import annotations

import random
from enum import StrEnum

from plait.compiler.ir import RetryPolicy
from plait.errors import ErrorKind


class RetryVerdict(StrEnum):
    """What happens after a failed attempt; the last three are the report's `error.retry`."""

    RETRY = "retry"
    EXHAUSTED = "exhausted"
    NOT_RETRYABLE = "not_retryable"
    DEADLINE = "deadline"  # decided by the scheduler with `fits_deadline`


def should_retry(
    policy: RetryPolicy | None, kind: ErrorKind | str, attempts_made: int
) -> RetryVerdict:
    """Whether another attempt follows `attempts_made` attempts, the last failing with `kind`.

    Without a policy the (zero) retries are used up: `exhausted`. A kind the policy does not
    retry is `not_retryable` (checked first: the count does not matter then).
    """
    if policy is None:
        return RetryVerdict.EXHAUSTED
    if not policy.retries_kind(ErrorKind(kind)):
        return RetryVerdict.NOT_RETRYABLE
    if attempts_made > policy.retries:
        return RetryVerdict.EXHAUSTED
    return RetryVerdict.RETRY


def retry_wait(
    policy: RetryPolicy, k: int, rng: random.Random, hint_s: float | None = None
) -> float:
    """Seconds to wait before retry `k` (1-based): d_k, jittered, then at least the hint."""
    wait = policy.delay(k)
    if policy.jitter:
        wait = rng.uniform(0.0, wait)
    if hint_s is not None:
        wait = max(wait, hint_s)
    return max(0.0, wait)


def fits_deadline(now: float, wait: float, deadline_at: float | None) -> bool:
    """Whether a wait starting at `now` ends by the deadline (a wait ending past it does not)."""
    return deadline_at is None or now + wait <= deadline_at
