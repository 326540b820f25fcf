"""Retry maths: the exact delay formula, jitter, hints, verdicts and the deadline check."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.compiler.ir import RetryPolicy
from plait.errors import ErrorKind
from plait.runtime.policies.retry import RetryVerdict, fits_deadline, retry_wait, should_retry

RNG = random.Random(0)


@pytest.mark.parametrize(
    ("policy", "waits"),
    [
        # defaults: BACKOFF 1s, FACTOR 1, no MAX
        (RetryPolicy(retries=3), [1.0, 1.0, 1.0]),
        # `backoff 200ms x2 max 5s`
        (
            RetryPolicy(retries=7, backoff_s=0.2, factor=2, max_s=5),
            [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0],
        ),
        # `backoff 1s x2 max 8s`
        (RetryPolicy(retries=5, backoff_s=1, factor=2, max_s=8), [1, 2, 4, 8, 8]),
        # `x1.5`
        (RetryPolicy(retries=3, backoff_s=2, factor=1.5), [2.0, 3.0, 4.5]),
        # a max below the backoff caps every wait
        (RetryPolicy(retries=3, backoff_s=10, factor=3, max_s=2), [2, 2, 2]),
        # `backoff 0ms` retries at once
        (RetryPolicy(retries=2, backoff_s=0, factor=2), [0, 0]),
    ],
)
def test_delay_formula(policy: RetryPolicy, waits: list[float]) -> None:
    got = [retry_wait(policy, k, RNG) for k in range(1, len(waits) + 1)]
    assert got == pytest.approx(waits)


def test_jitter_is_seedable_and_spread_over_the_range() -> None:
    policy = RetryPolicy(retries=3, backoff_s=4, jitter=True)
    first = [retry_wait(policy, 1, random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]  # the same seed, the same wait
    draws = [retry_wait(policy, 1, random.Random(seed)) for seed in range(200)]
    assert all(0 <= d <= 4 for d in draws)
    assert min(draws) < 1 and max(draws) > 3  # full jitter, not a narrow band


@given(
    backoff=st.floats(0, 100),
    factor=st.floats(1, 5),
    k=st.integers(1, 10),
    cap=st.none() | st.floats(0, 50),
    seed=st.integers(0, 2**32),
)
def test_jitter_always_within_zero_and_d_k(
    backoff: float, factor: float, k: int, cap: float | None, seed: int
) -> None:
    policy = RetryPolicy(retries=10, backoff_s=backoff, factor=factor, max_s=cap, jitter=True)
    wait = retry_wait(policy, k, random.Random(seed))
    assert 0 <= wait <= policy.delay(k)


def test_hint_raises_the_wait_and_is_not_capped_by_max() -> None:
    policy = RetryPolicy(retries=3, backoff_s=1, factor=2, max_s=2)
    assert retry_wait(policy, 1, RNG, hint_s=0.5) == 1.0  # max(d_1, hint)
    assert retry_wait(policy, 1, RNG, hint_s=7.0) == 7.0  # above max: the hint wins
    jittered = RetryPolicy(retries=3, backoff_s=1, jitter=True)
    assert retry_wait(jittered, 1, random.Random(1), hint_s=3.0) == 3.0


def test_no_policy_is_exhausted_at_once() -> None:
    assert should_retry(None, ErrorKind.TRANSIENT, 1) is RetryVerdict.EXHAUSTED
    assert should_retry(None, ErrorKind.PERMANENT, 1) is RetryVerdict.EXHAUSTED


def test_retries_up_to_n_more_attempts() -> None:
    policy = RetryPolicy(retries=2)
    verdicts = [should_retry(policy, ErrorKind.TIMEOUT, made) for made in (1, 2, 3)]
    assert verdicts == [RetryVerdict.RETRY, RetryVerdict.RETRY, RetryVerdict.EXHAUSTED]
    assert should_retry(RetryPolicy(retries=0), "timeout", 1) is RetryVerdict.EXHAUSTED


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_default_retried_kinds(kind: ErrorKind) -> None:
    excluded = {
        ErrorKind.PERMANENT,
        ErrorKind.INVALID_INPUT,
        ErrorKind.BREAKER_OPEN,
        ErrorKind.CANCELLED,
        ErrorKind.STALE,
        ErrorKind.LOOP_EXHAUSTED,
    }
    expected = RetryVerdict.NOT_RETRYABLE if kind in excluded else RetryVerdict.RETRY
    assert should_retry(RetryPolicy(retries=1), kind, 1) is expected


def test_on_lists_exactly_the_retried_kinds() -> None:
    policy = RetryPolicy(retries=3, on=[ErrorKind.TIMEOUT, ErrorKind.TRANSIENT])
    assert should_retry(policy, ErrorKind.TIMEOUT, 1) is RetryVerdict.RETRY
    assert should_retry(policy, ErrorKind.TRANSIENT, 1) is RetryVerdict.RETRY
    assert should_retry(policy, ErrorKind.RATE_LIMITED, 1) is RetryVerdict.RETRY  # covered
    assert should_retry(policy, ErrorKind.TOOL_ERROR, 1) is RetryVerdict.NOT_RETRYABLE
    # `retry on timeout` facing a transient error
    only_timeout = RetryPolicy(retries=3, on=[ErrorKind.TIMEOUT])
    assert should_retry(only_timeout, ErrorKind.TRANSIENT, 1) is RetryVerdict.NOT_RETRYABLE
    # rate_limited does not cover transient
    only_429 = RetryPolicy(retries=3, on=[ErrorKind.RATE_LIMITED])
    assert should_retry(only_429, ErrorKind.TRANSIENT, 1) is RetryVerdict.NOT_RETRYABLE
    # listing permanent makes it retried
    perm = RetryPolicy(retries=1, on=[ErrorKind.PERMANENT])
    assert should_retry(perm, ErrorKind.PERMANENT, 1) is RetryVerdict.RETRY


def test_not_retryable_wins_over_exhausted() -> None:
    policy = RetryPolicy(retries=1)
    assert should_retry(policy, ErrorKind.PERMANENT, 5) is RetryVerdict.NOT_RETRYABLE


def test_verdict_values_are_the_report_strings() -> None:
    assert [str(v) for v in RetryVerdict] == ["retry", "exhausted", "not_retryable", "deadline"]


def test_fits_deadline() -> None:
    assert fits_deadline(10.0, 5.0, None)
    assert fits_deadline(10.0, 5.0, 15.0)  # ending exactly at the deadline fits
    assert not fits_deadline(10.0, 5.1, 15.0)
    assert fits_deadline(10.0, 0.0, 10.0)
