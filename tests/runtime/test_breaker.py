"""The circuit breaker: every sentence of SPEC sections 4 and 9, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.compiler.ir import BreakerPolicy
from plait.errors import ErrorKind
from plait.runtime.clock import FakeClock
from plait.runtime.policies.breaker import (
    Admission,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)

COUNTED = [ErrorKind.TIMEOUT, ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.TOOL_ERROR]
NOT_COUNTED = [
    ErrorKind.PERMANENT,
    ErrorKind.INVALID_INPUT,
    ErrorKind.INVALID_OUTPUT,
    ErrorKind.CANCELLED,
    ErrorKind.BREAKER_OPEN,
]
OPENED = BreakerTransition("opened", "api")
HALF_OPEN = BreakerTransition("half_open", "api")
CLOSED = BreakerTransition("closed", "api")


def make(failures: int = 3, cooldown: float = 30.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    policy = BreakerPolicy(failures=failures, cooldown_s=cooldown)
    return CircuitBreaker("api", policy, clock), clock


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call, so the type checker does not narrow the property between steps."""
    return breaker.state


def admitted(breaker: CircuitBreaker) -> Admission:
    admission = breaker.admit()
    assert admission is not None, f"refused in state {state(breaker)}"
    return admission


def fail(
    breaker: CircuitBreaker, kind: ErrorKind = ErrorKind.TRANSIENT, times: int = 1
) -> list[BreakerTransition]:
    transitions: list[BreakerTransition] = []
    for _ in range(times):
        transitions += breaker.record(admitted(breaker), kind)
    return transitions


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, times=breaker.policy.failures)
    assert state(breaker) is BreakerState.OPEN


@pytest.mark.parametrize("kind", COUNTED)
def test_opens_after_n_consecutive_counted_failures(kind: ErrorKind) -> None:
    breaker, _ = make(failures=3)
    assert fail(breaker, kind, times=2) == []
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2
    assert fail(breaker, kind) == [OPENED]
    assert state(breaker) is BreakerState.OPEN


def test_a_success_resets_the_count() -> None:
    breaker, _ = make(failures=3)
    fail(breaker, times=2)
    assert breaker.record(admitted(breaker), None) == []
    assert breaker.consecutive_failures == 0
    fail(breaker, times=2)
    assert state(breaker) is BreakerState.CLOSED


@pytest.mark.parametrize("kind", NOT_COUNTED)
def test_uncounted_kinds_neither_count_nor_reset(kind: ErrorKind) -> None:
    breaker, _ = make(failures=3)
    fail(breaker, times=2)
    assert fail(breaker, kind, times=5) == []
    assert breaker.consecutive_failures == 2
    assert fail(breaker) == [OPENED]


def test_open_refuses_at_once_and_refusals_do_not_extend_the_cooldown() -> None:
    breaker, clock = make(failures=1, cooldown=30)
    open_breaker(breaker)
    for _ in range(29):
        clock.advance(1)
        assert breaker.admit() is None  # refused, consuming nothing
    assert breaker.reopens_at() == 30
    clock.advance(1)  # 30 s after opening, however many refusals happened meanwhile
    trial = admitted(breaker)
    assert trial.trial and trial.transitions == (HALF_OPEN,)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_exactly_one_trial_while_half_open() -> None:
    breaker, clock = make(failures=1, cooldown=5)
    open_breaker(breaker)
    clock.advance(5)
    trial = admitted(breaker)
    assert breaker.admit() is None
    assert breaker.admit() is None
    assert breaker.still_closed_for(trial)
    assert breaker.record(trial, None) == [CLOSED]
    assert state(breaker) is BreakerState.CLOSED
    assert not admitted(breaker).trial


def test_trial_failure_reopens_with_a_fresh_cooldown() -> None:
    breaker, clock = make(failures=2, cooldown=10)
    open_breaker(breaker)
    clock.advance(12)
    trial = admitted(breaker)
    clock.advance(3)  # the trial took 3 s
    assert breaker.record(trial, ErrorKind.TIMEOUT) == [OPENED]
    assert state(breaker) is BreakerState.OPEN
    assert breaker.reopens_at() == 25
    clock.advance(9.9)
    assert breaker.admit() is None
    clock.advance(0.1)
    assert admitted(breaker).transitions == (HALF_OPEN,)


def test_a_closed_breaker_counts_from_zero_again() -> None:
    breaker, clock = make(failures=2, cooldown=1)
    open_breaker(breaker)
    clock.advance(1)
    breaker.record(admitted(breaker), None)
    assert fail(breaker) == []
    assert fail(breaker) == [OPENED]


def test_uncounted_trial_failure_leaves_it_half_open_for_the_next_asker() -> None:
    breaker, clock = make(failures=1, cooldown=5)
    open_breaker(breaker)
    clock.advance(5)
    trial = admitted(breaker)
    assert breaker.record(trial, ErrorKind.PERMANENT) == []
    assert state(breaker) is BreakerState.HALF_OPEN
    second = admitted(breaker)
    assert second.trial
    assert second.transitions == ()  # half_open is announced once per entry
    assert breaker.admit() is None
    assert breaker.record(second, ErrorKind.TRANSIENT) == [OPENED]


def test_a_cancelled_trial_frees_the_trial_slot() -> None:
    breaker, clock = make(failures=1, cooldown=5)
    open_breaker(breaker)
    clock.advance(5)
    breaker.record(admitted(breaker), ErrorKind.CANCELLED)
    assert admitted(breaker).trial


def test_results_of_attempts_admitted_before_opening_change_nothing() -> None:
    breaker, clock = make(failures=2, cooldown=10)
    early_success = admitted(breaker)
    early_failure = admitted(breaker)
    open_breaker(breaker)
    assert breaker.record(early_success, None) == []  # does not close it
    assert state(breaker) is BreakerState.OPEN
    clock.advance(10)
    trial = admitted(breaker)
    assert breaker.record(early_failure, ErrorKind.TRANSIENT) == []  # does not reopen it
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.record(trial, None) == [CLOSED]
    assert breaker.record(early_failure, ErrorKind.TRANSIENT) == []
    assert breaker.consecutive_failures == 0


def test_recheck_after_waiting_sees_an_opened_breaker() -> None:
    breaker, _ = make(failures=1)
    waiting = admitted(breaker)
    assert breaker.still_closed_for(waiting)
    fail(breaker)  # another attempt opens it meanwhile
    assert not breaker.still_closed_for(waiting)


def test_recording_a_trial_twice_decides_once() -> None:
    breaker, clock = make(failures=1, cooldown=5)
    open_breaker(breaker)
    clock.advance(5)
    trial = admitted(breaker)
    assert breaker.record(trial, None) == [CLOSED]
    assert breaker.record(trial, ErrorKind.TRANSIENT) == []
    assert state(breaker) is BreakerState.CLOSED


def test_breaker_is_shared_state_across_callers() -> None:
    # Two different steps using one resource share one breaker object: their failures add up.
    breaker, _ = make(failures=2)
    step_a, step_b = admitted(breaker), admitted(breaker)
    assert breaker.record(step_a, ErrorKind.TIMEOUT) == []
    assert breaker.record(step_b, ErrorKind.TOOL_ERROR) == [OPENED]


# A random sequence of operations never lets two trials through at once and half_open is
# announced exactly once per entry into half-open.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 20)),
        st.tuples(st.just("admit"), st.none()),
        st.tuples(st.just("record"), st.sampled_from([None, *COUNTED, *NOT_COUNTED])),
    ),
    max_size=60,
)


@given(operations)
def test_never_two_trials_in_flight(ops: list[tuple[str, object]]) -> None:
    breaker, clock = make(failures=2, cooldown=10)
    in_flight: list[Admission] = []
    entries = announced = 0
    for op, arg in ops:
        if op == "advance":
            assert isinstance(arg, float)
            clock.advance(arg)
        elif op == "admit":
            before = state(breaker)
            admission = breaker.admit()
            if admission is not None:
                in_flight.append(admission)
                announced += len(admission.transitions)
                entries += before is BreakerState.OPEN
        elif in_flight:
            breaker.record(in_flight.pop(0), arg)  # type: ignore[arg-type]
        live_trials = [a for a in in_flight if a.trial and breaker.still_closed_for(a)]
        assert len(live_trials) <= 1
        if state(breaker) is BreakerState.OPEN:
            assert not live_trials
    assert announced == entries
