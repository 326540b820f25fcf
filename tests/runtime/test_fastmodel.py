"""`fastmodel`: models built without validation equal the validated ones, field for field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from plait.runtime import events as ev
from plait.runtime.fastmodel import construct, maker, trusted
from plait.runtime.metrics import StepMetrics
from plait.runtime.report import AttemptRecord, StepReport

CASES: list[tuple[type[BaseModel], dict[str, object]]] = [
    (ev.AttemptStarted, {"step": "a", "attempt": 2, "element": 3, "seq": 7, "ts": "t",
                         "run_id": "r"}),
    (ev.AttemptFinished, {"step": "a", "attempt": 1, "status": "failed", "duration_s": 0.5,
                          "kind": "timeout", "message": "m", "queued_s": 0.1}),
    (ev.StepFinished, {"step": "a", "status": "succeeded", "output": {"x": [1, 2]},
                       "attempts": 1}),
    (ev.RunFinished, {"outcome": "degraded", "outputs": {"o": 1}}),
    (ev.RunStarted, {"plan": "p"}),
    (StepMetrics, {"attempts": 3, "call_s": 1.5, "duration_s": None}),
    (AttemptRecord, {"attempt": 1, "started_at": "t", "kind": "timeout"}),
    (StepReport, {"status": "skipped", "reason": "condition_false"}),
]


@pytest.mark.parametrize(("cls", "fields"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_maker_builds_what_validation_builds(cls: type[BaseModel],
                                             fields: dict[str, object]) -> None:
    made = maker(cls)(**fields)
    validated = cls(**fields)
    assert type(made) is cls
    assert made == validated
    assert list(made.__dict__) == list(validated.__dict__)  # declared order: JSON order
    assert made.model_dump_json() == validated.model_dump_json()
    assert made == trusted(cls, dict(fields)) == construct(cls, dict(fields))


def test_maker_gives_each_instance_its_own_mutable_defaults() -> None:
    make = maker(ev.RunFinished)
    first, second = make(outcome="succeeded"), make(outcome="succeeded")
    first.outputs["x"] = 1
    first.output_errors.append({"output": "x", "why": "?"})
    assert second.outputs == {} and second.output_errors == []


def test_maker_requires_the_required_fields() -> None:
    with pytest.raises(TypeError):
        maker(ev.AttemptStarted)(step="a")  # no attempt


def test_assignment_keeps_the_shared_fields_set_whole() -> None:
    make = maker(ev.StepFinished)
    first, second = make(step="a", status="failed"), make(step="b", status="failed")
    first.message = "masked"
    assert first.model_fields_set == second.model_fields_set == set(ev.StepFinished.model_fields)
    assert second.message is None
