"""Interim stand-ins for the policy and masking modules (RUNTIME-CORE is writing the real
ones): the same interfaces, minimal. The scheduler imports the real modules when present.
Delete this file once `plait.runtime.masking` and `plait.runtime.policies.*` exist.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from plait.compiler.ir import BreakerPolicy, Rate, RetryPolicy
from plait.errors import ErrorKind
from plait.runtime.clock import Clock


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.too_short = [s for s in secrets if 0 < len(s) < 4]

    def mask_text(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def mask(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, list):
            return [self.mask(v) for v in value]
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        return value


class RetryVerdict(StrEnum):
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    NOT_RETRYABLE = "not_retryable"


def should_retry(policy: RetryPolicy | None, kind: ErrorKind, attempts_made: int) -> RetryVerdict:
    if policy is None:
        return RetryVerdict.EXHAUSTED
    if not policy.retries_kind(kind):
        return RetryVerdict.NOT_RETRYABLE
    if attempts_made > policy.retries:
        return RetryVerdict.EXHAUSTED
    return RetryVerdict.RETRY


def retry_wait(policy: RetryPolicy, k: int, rng: random.Random,
               hint_s: float | None = None) -> float:
    d = policy.delay(k)
    if policy.jitter:
        d = rng.uniform(0, d)
    return max(d, hint_s) if hint_s is not None else d


def fits_deadline(now: float, wait: float, deadline_at: float | None) -> bool:
    return deadline_at is None or now + wait <= deadline_at


@dataclass
class BreakerTransition:
    kind: str
    resource: str


@dataclass
class Admission:
    generation: int
    trial: bool
    transitions: list[BreakerTransition]


class CircuitBreaker:
    def __init__(self, name: str, policy: BreakerPolicy, clock: Clock) -> None:
        self.name, self.policy, self.clock = name, policy, clock
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.generation = 0
        self.trial_out = False

    def admit(self) -> Admission | None:
        transitions = []
        if self.state == "open":
            if self.clock.now() - self.opened_at < self.policy.cooldown_s:
                return None
            self.state = "half_open"
            self.trial_out = False
            transitions.append(BreakerTransition("half_open", self.name))
        if self.state == "half_open":
            if self.trial_out:
                return None
            self.trial_out = True
            return Admission(self.generation, True, transitions)
        return Admission(self.generation, False, transitions)

    def still_closed_for(self, admission: Admission) -> bool:
        return admission.generation == self.generation

    def record(self, admission: Admission, kind: ErrorKind | str | None) -> list[BreakerTransition]:
        counted = kind is not None and ErrorKind(kind) in (
            ErrorKind.TIMEOUT, ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.TOOL_ERROR)
        if admission.trial:
            self.trial_out = False
            if kind is None:
                return self._close()
            return self._open() if counted else []
        if admission.generation != self.generation or self.state != "closed":
            return []
        if kind is None:
            self.failures = 0
        elif counted:
            self.failures += 1
            if self.failures >= self.policy.failures:
                return self._open()
        return []

    def _open(self) -> list[BreakerTransition]:
        self.state, self.opened_at = "open", self.clock.now()
        self.generation += 1
        return [BreakerTransition("opened", self.name)]

    def _close(self) -> list[BreakerTransition]:
        self.state, self.failures = "closed", 0
        self.generation += 1
        return [BreakerTransition("closed", self.name)]


class RateLimiter:
    def __init__(self, rate: Rate, clock: Clock) -> None:
        self.rate, self.clock = rate, clock
        self.starts: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = self.clock.now()
                while self.starts and now - self.starts[0] >= self.rate.per_s:
                    self.starts.popleft()
                if len(self.starts) < self.rate.count:
                    self.starts.append(now)
                    return
                await self.clock.sleep(self.starts[0] + self.rate.per_s - now)


class Bulkhead:
    def __init__(self, limit: int | None) -> None:
        self.sem = asyncio.Semaphore(limit) if limit is not None else None

    async def __aenter__(self) -> None:
        if self.sem is not None:
            await self.sem.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self.sem is not None:
            self.sem.release()
