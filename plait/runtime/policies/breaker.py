"""The circuit breaker of a resource: a small pure state machine on an injected clock.

CLOSED counts consecutive failed attempts of the counted kinds; after N it OPENs. Once the
cooldown has passed, the first attempt to ask becomes the single HALF_OPEN trial: success
closes the breaker, a counted failure opens it again with a fresh cooldown, an uncounted
failure (e.g. `permanent`) leaves it half-open for the next attempt to try. SPEC sections 4
and 9.

Every admitted attempt carries the breaker's generation, which grows each time it opens:
results of attempts admitted before it opened are stale and change nothing. The scheduler
must `record` every admission exactly once (use kind `cancelled` for an attempt that never
reached its tool), so a half-open trial slot is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from plait.compiler.ir import BreakerPolicy
from plait.errors import ErrorKind
from plait.runtime.clock import Clock

# Failures that count toward opening; the other kinds neither count nor reset the count.
COUNTED_KINDS = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.TRANSIENT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.TOOL_ERROR,
    }
)

TransitionKind = Literal["opened", "half_open", "closed"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerTransition:
    """A state change, turned by the scheduler into `breaker_opened/_half_open/_closed`."""

    kind: TransitionKind
    resource: str


@dataclass(frozen=True)
class Admission:
    """Permission for one attempt to pass a breaker.

    `transitions` holds the `half_open` transition when asking made the breaker enter
    half-open (this admission is then the trial).
    """

    resource: str
    generation: int
    trial: bool = False
    transitions: tuple[BreakerTransition, ...] = ()


class CircuitBreaker:
    """One resource's breaker, shared by every step that uses the resource within a run."""

    def __init__(self, name: str, policy: BreakerPolicy, clock: Clock) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0  # consecutive counted failures while closed
        self._opened_at = 0.0
        self._trial: Admission | None = None  # the half-open trial in flight, if any

    @property
    def state(self) -> BreakerState:
        """The state as last decided (an expired cooldown shows once an attempt asks)."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def generation(self) -> int:
        return self._generation

    def reopens_at(self) -> float | None:
        """When an open breaker will let a trial through; None unless open."""
        if self._state is not BreakerState.OPEN:
            return None
        return self._opened_at + self.policy.cooldown_s

    def admit(self) -> Admission | None:
        """Let an attempt through, or None: refused with `breaker_open`, consuming nothing."""
        if self._state is BreakerState.CLOSED:
            return Admission(self.name, self._generation)
        if self._state is BreakerState.OPEN:
            if self._clock.now() < self._opened_at + self.policy.cooldown_s:
                return None
            self._state = BreakerState.HALF_OPEN
            entered = BreakerTransition("half_open", self.name)
            return self._start_trial((entered,))
        if self._trial is not None:
            return None  # half-open: exactly one trial in flight
        return self._start_trial(())  # the previous trial's failure was not counted

    def _start_trial(self, transitions: tuple[BreakerTransition, ...]) -> Admission:
        self._trial = Admission(self.name, self._generation, trial=True, transitions=transitions)
        return self._trial

    def still_closed_for(self, admission: Admission) -> bool:
        """The re-check after waiting for slots and rate windows: may the attempt still go?"""
        if admission.generation != self._generation:
            return False  # the breaker opened meanwhile
        if admission.trial:
            return admission is self._trial
        return self._state is BreakerState.CLOSED

    def record(self, admission: Admission, kind: ErrorKind | str | None) -> list[BreakerTransition]:
        """The result of an admitted attempt (kind None = success); the transitions it caused."""
        if admission.generation != self._generation:
            return []  # admitted before the breaker opened: stale
        counted = kind is not None and ErrorKind(kind) in COUNTED_KINDS
        if admission.trial:
            if admission is not self._trial:
                return []  # recorded twice, or an earlier trial: nothing to decide
            return self._record_trial(kind is None, counted)
        if self._state is not BreakerState.CLOSED:
            return []  # pragma: no cover - a same-generation non-trial is always closed
        if kind is None:
            self._failures = 0
        elif counted:
            self._failures += 1
            if self._failures >= self.policy.failures:
                return [self._open()]
        return []

    def _record_trial(self, succeeded: bool, counted: bool) -> list[BreakerTransition]:
        self._trial = None
        if succeeded:
            self._state = BreakerState.CLOSED
            self._failures = 0
            return [BreakerTransition("closed", self.name)]
        if counted:
            return [self._open()]
        return []  # not counted: stays half-open, the next attempt to ask is the new trial

    def _open(self) -> BreakerTransition:
        self._state = BreakerState.OPEN
        self._generation += 1
        self._failures = 0
        self._opened_at = self._clock.now()
        self._trial = None
        return BreakerTransition("opened", self.name)
