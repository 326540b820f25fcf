"""Events and report records: closed sets refuse unknown values, pydantic round-trips them
at the edges, and their JSON Schemas describe the JSON plait writes."""

from __future__ import annotations

import json

import pytest

from plait.runtime import events as ev
from plait.runtime.outcomes import StepStatus
from plait.runtime.report import report_from_json, report_json_schema
from tests.runtime.conftest import RunFn
from tests.runtime.planlib import P, R, S, retry


def _plan() -> object:
    return P(
        S("a", "std.echo", value={"n": 1}),
        S("b", "std.flaky", fail_times=1, value=R("a.output.n"), retry=retry(2, 0)),
        S("c", "std.fail", message="no", optional=True),
        S("d", "std.echo", value=1, condition=R("c.output", optional=True)),
        outputs={"n": R("b.output")},
    )


def test_unknown_statuses_reasons_and_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        ev.StepFinished(step="a", status="succeded")
    with pytest.raises(ValueError):
        ev.StepFinished(step="a", status="skipped", reason="because")
    with pytest.raises(ValueError):
        ev.AttemptFinished(step="a", attempt=1, status="faild", duration_s=0.1)
    with pytest.raises(ValueError):
        ev.AttemptFailed(step="a", attempt=1, kind="oops", message="m")
    with pytest.raises(TypeError):
        ev.StepFinished(step="a", status="succeeded", statu="x")  # a typo'd field
    with pytest.raises(AttributeError):
        ev.StepStarted(step="a").stpe = "b"  # type: ignore[attr-defined]  # slotted


def test_every_event_of_a_run_round_trips_through_its_json(run: RunFn) -> None:
    ran = run(_plan())
    assert ran.report.outcome == "degraded"
    for event in ran.events:
        data = event.to_json_dict()
        assert list(data)[:4] == ["event", "seq", "ts", "run_id"]
        again = ev.event_from_dict(json.loads(json.dumps(data)))
        assert type(again) is type(event)
        assert again.to_json_dict() == data


def test_the_step_outcome_is_one_value_shared_by_state_and_event(run: RunFn) -> None:
    ran = run(_plan())
    finished = {e.step: e for e in ran.of("step_finished")}
    assert finished["a"].outcome.status is StepStatus.SUCCEEDED
    assert finished["a"].status == "succeeded" and finished["b"].attempts == 2
    assert ran.report.steps["b"].status == "succeeded"


def test_report_json_reads_back_and_matches_its_schema(run: RunFn) -> None:
    report = run(_plan()).report
    data = report.to_json_dict()
    assert report_from_json(json.loads(json.dumps(data))).to_json_dict() == data
    schema = report_json_schema()
    assert set(schema["properties"]) == set(data)
    step_schema = schema["$defs"]["StepReport"]
    for step in data["steps"].values():
        assert set(step) <= set(step_schema["properties"])
    statuses = schema["$defs"]["StepStatus"]["enum"]
    assert sorted(statuses) == ["cancelled", "failed", "recovered", "skipped", "succeeded"]


def test_event_schemas_describe_the_event_json(run: RunFn) -> None:
    ran = run(_plan())
    for event in ran.events:
        schema = ev.event_json_schema(type(event))
        data = event.to_json_dict()
        assert schema["properties"]["event"] == {"const": data["event"]}
        assert set(data) <= set(schema["properties"]) | {"seq", "ts", "run_id"}, data["event"]
        assert set(schema["required"]) <= set(data) | {"seq", "ts", "run_id"}
