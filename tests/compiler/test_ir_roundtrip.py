"""`plait compile` JSON loads back into an equal CompiledPlan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.compiler.api import compiled_json, load_compiled_json, load_plan
from plait.compiler.graph import edges
from plait.compiler.ir import (
    BinaryExpr,
    CompiledPlan,
    Defaults,
    EnvExpr,
    MapSpec,
    RetryPolicy,
    TemplateExpr,
    TriggerRule,
)
from plait.errors import ErrorKind, UserError
from tests.compiler.irkit import lit, make_plan, ref, step


def sample() -> CompiledPlan:
    plan = make_plan(
        step(
            "a",
            args={"value": TemplateExpr(parts=["hi ", ref("topic"), "!"])},
            retry=RetryPolicy(
                retries=2, on=[ErrorKind.TIMEOUT], backoff_s=0.5, factor=2.0, max_s=4.0, jitter=True
            ),
            timeout_s=3.0,
            fallback=["b"],
            default=lit({"x": [1, None, True]}),
        ),
        step("b", args={"value": EnvExpr(name="HOME")}),
        step(
            "m",
            map=MapSpec(var="x", over=lit([1, 2.5])),
            args={"value": ref("x")},
            concurrency=2,
            tolerate=25.0,
            optional=True,
        ),
        step(
            "n",
            args={
                "value": BinaryExpr(
                    op="??", left=ref("a", "output", "x", 0, optional=True), right=lit(0)
                )
            },
            when=TriggerRule.ALL_DONE,
            after=["m"],
        ),
        inputs={"topic": "str"},
        outputs={"out": ref("n", "output")},
        deadline_s=60.0,
        defaults=Defaults(timeout_s=30.0),
    )
    plan.env = ["HOME"]
    plan.edges = edges(plan)
    return CompiledPlan(**plan.model_dump(), source_path="/x/p.agent", plan_sha256="ab" * 32)


def test_json_round_trip_is_equal() -> None:
    plan = sample()
    text = compiled_json(plan)
    assert load_compiled_json(text.encode(), "p.json") == plan


def test_json_has_the_documented_fields() -> None:
    data = json.loads(compiled_json(sample()))
    for key in (
        "version",
        "plan",
        "description",
        "inputs",
        "outputs",
        "resources",
        "steps",
        "edges",
        "env",
    ):
        assert key in data
    assert data["steps"]["a"]["tool"] == "std.echo"
    assert data["steps"]["n"]["depends_on"] == ["a", "m"]
    assert data["steps"]["a"]["retry"]["retries"] == 2
    assert ["a", "b", "fallback"] in data["edges"]
    assert ["m", "n", "after"] in data["edges"]


def test_load_plan_reads_compiled_json_by_suffix_or_brace(tmp_path: Path) -> None:
    plan = sample()
    (tmp_path / "p.json").write_text(compiled_json(plan))
    (tmp_path / "p.compiled").write_text(compiled_json(plan))
    assert load_plan(tmp_path / "p.json") == plan
    assert load_plan(tmp_path / "p.compiled") == plan


def test_bad_json_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"plan": 3}')
    with pytest.raises(UserError, match="is not a compiled plan"):
        load_plan(bad)
    bad.write_text("{oops")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_plan(bad)
    bad.write_text('{"version": 99, "plan": "x"}')
    with pytest.raises(UserError, match="IR version 99"):
        load_plan(bad)
    with pytest.raises(UserError, match="no such plan file"):
        load_plan(tmp_path / "missing.agent")
