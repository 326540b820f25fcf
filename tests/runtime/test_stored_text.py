"""The journal's text of the common events, written without pydantic, is pydantic's text.

`events.stored_json` writes a plainly succeeded `attempt_finished` and `outcome_json` a
plainly succeeded step by hand (they are two of the four rows every step stores); each
must be byte for byte what pydantic writes, and every other shape or value must still go
to pydantic."""

from __future__ import annotations

import random
from typing import Any

import pytest

from plait.errors import ErrorKind
from plait.runtime import events as ev
from plait.runtime.outcomes import AttemptStatus, RecoveredBy, SkipReason, StepOutcome, StepStatus
from plait.runtime.policies.retry import RetryVerdict


def _pydantic_stored(event: ev.Event) -> bytes:
    dumped: bytes = ev.adapter(type(event)).dump_json(
        event, exclude={"seq", "ts", "run_id", "step"}, exclude_defaults=True, fallback=str
    )
    return dumped


def _pydantic_outcome(outcome: StepOutcome) -> bytes:
    dumped: bytes = ev.adapter(StepOutcome).dump_json(outcome, exclude_defaults=True, fallback=str)
    return dumped


def _floats() -> list[Any]:
    rng = random.Random(13)
    values: list[Any] = [0.0, -0.0, 1e-4, 9.9e-5, 1e-6, 5e-7, 1e-7, 1e9, 1e9 - 1, 1e16, -1.0]
    values += [round(k / 1_000_000, 6) for k in range(0, 3_000)]  # every duration under 3 ms
    values += [float("inf"), float("nan"), 2, 0, True]
    for _ in range(3_000):
        x = 10 ** rng.uniform(-8, 12)
        values += [x, round(x, 6), round(x, rng.randint(0, 9))]
    return values


def test_attempt_finished_text_is_pydantics() -> None:
    for duration in _floats():
        for queued in (None, 0.0, duration, 0.000123):
            event = ev.AttemptFinished(
                step="s", attempt=1, status=AttemptStatus.SUCCEEDED, duration_s=duration
            )
            event.queued_s = queued
            assert ev.stored_json(event) == _pydantic_stored(event), (duration, queued)


@pytest.mark.parametrize(
    "fields",
    [
        {"attempt": 3},
        {"iteration": 0},
        {"element": 2},
        {"execution": 2},
        {"status": AttemptStatus.FAILED, "kind": ErrorKind.TIMEOUT, "message": "slow"},
        {"status": AttemptStatus.CANCELLED, "kind": ErrorKind.CANCELLED, "message": "x"},
        {"injected": True},
    ],
)
def test_other_attempt_finished_shapes_are_pydantics(fields: dict[str, Any]) -> None:
    event = ev.AttemptFinished(
        **{"step": "s", "attempt": 1, "status": AttemptStatus.SUCCEEDED, "duration_s": 0.5} | fields
    )
    assert ev.stored_json(event) == _pydantic_stored(event)


_OUTPUTS: list[Any] = [
    None,
    0,
    1,
    -5,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    10**30,
    True,
    False,
    1.5,
    "",
    "plain text",
    'a "quoted" word',
    "back\\slash",
    "line\nbreak",
    "tab\there",
    "\x7f",
    "\x00",
    "caf\u00e9",
    "\u2028",
    "emoji \U0001f600",
    [1, "a"],
    {"k": "v"},
]


@pytest.mark.parametrize("output", _OUTPUTS)
@pytest.mark.parametrize("attempts", [1, 2, 0])
def test_outcome_text_is_pydantics(output: Any, attempts: int) -> None:
    for version, read_at in (
        (None, None),
        ("0123456789abcdef", "2026-01-01T10:00:00.123456Z"),
        ('v"1', "\u00e9"),
    ):
        outcome = StepOutcome(
            status=StepStatus.SUCCEEDED,
            attempts=attempts,
            output=output,
            version=version,
            read_at=read_at,
        )
        assert ev.outcome_json(outcome) == _pydantic_outcome(outcome), (output, version)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": StepStatus.FAILED, "kind": ErrorKind.TOOL_ERROR, "message": "m"},
        {"status": StepStatus.SKIPPED, "reason": SkipReason.CONDITION_FALSE},
        {"status": StepStatus.RECOVERED, "recovered_by": RecoveredBy.DEFAULT},
        {"caused_by": "a"},
        {"retry": RetryVerdict.EXHAUSTED},
        {"fallback_used": "b"},
        {"elements": {"total": 2, "failed": 0}},
    ],
)
def test_other_outcomes_are_pydantics(fields: dict[str, Any]) -> None:
    outcome = StepOutcome(**{"status": StepStatus.SUCCEEDED, "attempts": 1, "output": 1} | fields)
    assert ev.outcome_json(outcome) == _pydantic_outcome(outcome)


def test_other_events_are_pydantics() -> None:
    for event in (
        ev.StepStarted(step="s"),
        ev.StepStarted(step="s", iteration=2, standby_for="p"),
        ev.AttemptStarted(step="s", attempt=1),
        ev.AttemptStarted(step="s", attempt=2, element=3, execution=2),
        ev.AttemptStarted(step="s", attempt=1),  # the class's serializer, kept
    ):
        assert ev.stored_json(event) == _pydantic_stored(event)


@pytest.mark.parametrize("output", _OUTPUTS)
def test_stored_text_is_stored_json(output: Any) -> None:
    outcome = StepOutcome(status=StepStatus.SUCCEEDED, attempts=1, output=output, version="v")
    for event in (
        ev.StepFinished(step="s", outcome=outcome),
        ev.StepFinished(step="s", outcome=outcome, resumed=True),
        ev.StepFinished(step="s", outcome=outcome, iteration=1),
        ev.AttemptFinished(step="s", attempt=1, status=AttemptStatus.SUCCEEDED, duration_s=2e-05),
        ev.AttemptFinished(step="s", attempt=1, status=AttemptStatus.SUCCEEDED, duration_s=1e-07),
        ev.StepStarted(step="s"),
    ):
        assert ev.stored_text(event) == ev.stored_json(event).decode()
