"""Policies and values: resources, map-only policies, ranges, input types and defaults,
maps over literals."""

from __future__ import annotations

from typing import Any

import pytest

from plait.compiler.ir import (
    BreakerPolicy,
    Defaults,
    Input,
    MapSpec,
    Plan,
    Rate,
    Resource,
    RetryPolicy,
    TemplateExpr,
)
from tests.compiler.irkit import at, check, codes_of, lit, make_plan, only, step


def test_unknown_resource_on_step_and_in_defaults() -> None:
    spans = {("step", "a", "uses", "lm_api"): at("uses")}
    plan = make_plan(step("a", uses=["lm_api"]), resources=("llm_api",))
    diag = only(check(plan, spans), "E308")
    assert diag.message == "unknown resource `lm_api` in `uses` of step `a`"
    assert diag.hints == ("did you mean `llm_api`?",)
    assert diag.span == at("uses")
    # A bad name in `defaults` is reported once, in `defaults`, not on every step.
    plan = make_plan(step("a", uses=["db"]), step("b", uses=["db"]), defaults=Defaults(uses=["db"]))
    diag = only(check(plan), "E308")
    assert diag.message == "unknown resource `db` in `uses` of `defaults`"
    assert diag.hints == ("declare it: `resource db { concurrency 4 }`",)


def test_map_only_policies_on_a_plain_step() -> None:
    plan = make_plan(step("a", concurrency=2, tolerate=10.0))
    diags = [d for d in check(plan) if d.code.id == "E316"]
    assert [d.message for d in diags] == [
        "`concurrency` applies only to map steps, and `a` is not one",
        "`tolerate` applies only to map steps, and `a` is not one",
    ]
    mapped = make_plan(step("m", map=MapSpec(var="x", over=lit([1])), concurrency=2, tolerate=10.0))
    assert check(mapped) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timeout_s": 0.0}, "timeout must be positive, got 0s"),
        ({"timeout_s": -0.5}, "timeout must be positive, got -500ms"),
        ({"retry": RetryPolicy(retries=101)}, "`retry` takes 0 to 100 retries, got 101"),
        (
            {"retry": RetryPolicy(retries=1, backoff_s=-1)},
            "a retry `backoff` or `max` cannot be negative",
        ),
        (
            {"retry": RetryPolicy(retries=1, factor=0)},
            "the backoff factor must be above zero, got x0",
        ),
        (
            {"map": MapSpec(var="x", over=lit([1])), "concurrency": 0},
            "`concurrency` must be at least 1, got 0",
        ),
        (
            {"map": MapSpec(var="x", over=lit([1])), "tolerate": 150.0},
            "`tolerate` must be between 0% and 100%, got 150%",
        ),
    ],
)
def test_step_values_out_of_range(fields: dict[str, Any], message: str) -> None:
    diag = only(check(make_plan(step("a", **fields))), "E317")
    assert diag.message == message


def test_zero_backoff_and_retry_100_are_fine() -> None:
    plan = make_plan(step("a", retry=RetryPolicy(retries=100, backoff_s=0.0)))
    assert check(plan) == []


def test_plan_and_resource_values_out_of_range() -> None:
    plan = make_plan(step("a"), deadline_s=0.0, concurrency=0)
    plan.resources = {
        "r": Resource(
            name="r",
            rate=Rate(count=0, per_s=1),
            concurrency=0,
            breaker=BreakerPolicy(failures=0, cooldown_s=0),
        )
    }
    messages = sorted(d.message for d in check(plan))
    assert messages == sorted(
        [
            "deadline must be positive, got 0s",
            "plan `concurrency` must be at least 1, got 0",
            "the rate of resource `r` must be above zero, got 0/1s",
            "the `concurrency` of resource `r` must be at least 1, got 0",
            "the breaker of resource `r` must open after at least 1 failure, got 0",
            "the breaker cooldown of resource `r` must be positive, got 0s",
        ]
    )


def test_defaults_out_of_range_reported_once() -> None:
    plan = make_plan(
        step("a", timeout_s=0.0), step("b", timeout_s=0.0), defaults=Defaults(timeout_s=0.0)
    )
    assert codes_of(check(plan)) == ["E317"]
    assert check(plan)[0].message == "`defaults` timeout must be positive, got 0s"


def _with_input(type_name: str, default: object) -> Plan:
    plan = make_plan(step("a"))
    plan.inputs = {"x": Input(name="x", type=type_name, has_default=True, default=default)}
    return plan


@pytest.mark.parametrize(
    ("type_name", "default", "found"),
    [
        ("int", "3", "a string"),
        ("int", True, "a bool"),
        ("float", "x", "a string"),
        ("bool", 1, "an int"),
        ("str", 1.5, "a float"),
        ("list[int]", [1, "a"], "a list"),
        ("dict", [], "a list"),
        ("str", None, "null"),
    ],
)
def test_input_default_of_the_wrong_type(type_name: str, default: object, found: str) -> None:
    diag = only(check(_with_input(type_name, default)), "E318")
    assert diag.message == f"the default of input `x` is {found}, not {type_name}"


@pytest.mark.parametrize(
    ("type_name", "default"),
    [
        ("int", 3),
        ("float", 3),
        ("float", 2.5),
        ("str", "a"),
        ("secret", "s"),
        ("bool", False),
        ("list", []),
        ("list[str]", ["a"]),
        ("dict", {"a": 1}),
        ("any", None),
    ],
)
def test_input_default_of_the_right_type(type_name: str, default: object) -> None:
    assert check(_with_input(type_name, default)) == []


def test_null_default_hint_and_unknown_type() -> None:
    assert only(check(_with_input("int", None)), "E318").hints == ("use type `any` to allow null",)
    plan = make_plan(step("a"), inputs={"x": "strng"})
    diag = only(check(plan), "E324")
    assert diag.message == "unknown type `strng` for input `x`"
    assert diag.hints == ("did you mean `str`?",)
    assert codes_of(check(make_plan(step("a"), inputs={"x": "list[nope]"}))) == ["E324"]


@pytest.mark.parametrize(
    ("over", "found"),
    [
        (lit(3), "an int"),
        (lit("abc"), "a string"),
        (lit({"a": 1}), "a dict"),
        (TemplateExpr(parts=["a"]), "a string"),
        (lit(None), "null"),
    ],
)
def test_map_over_a_literal_that_is_not_a_list(over: object, found: str) -> None:
    plan = make_plan(step("m", map=MapSpec(var="x", over=over)))
    diag = only(check(plan), "E319")
    assert diag.message == f"step `m` maps over {found}; a map needs a list"
