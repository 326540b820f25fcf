"""Fallback rules and dependency cycles."""

from __future__ import annotations

from plait.compiler.ir import TriggerRule
from tests.compiler.irkit import at, check, codes_of, make_plan, only, ref, step


def test_spec_shaped_fallback_is_clean() -> None:
    plan = make_plan(
        step("classify", fallback=["by_rules"]),
        step("by_rules"),
        outputs={"c": ref("classify", "output")},
    )
    assert check(plan) == []


def test_self_fallback() -> None:
    diag = only(check(make_plan(step("a", fallback=["a"]))), "E312")
    assert diag.message == "step `a` names itself in `fallback`"
    assert diag.hints == (
        "a fallback is another step, tried when this one has failed; to try again use `retry`",
    )


def test_standby_shared_by_two_primaries() -> None:
    spans = {("step", "b", "fallback", "s"): at("b-fallback")}
    plan = make_plan(step("a", fallback=["s"]), step("b", fallback=["s"]), step("s"))
    diag = only(check(plan, spans), "E313")
    assert diag.message == (
        "step `s` is already the fallback of `a`; a standby serves exactly one primary"
    )
    assert diag.span == at("b-fallback")


def test_fallback_cycle() -> None:
    plan = make_plan(
        step("a", fallback=["b"]), step("b", fallback=["c"]), step("c", fallback=["a"])
    )
    diags = check(plan)
    diag = only(diags, "E311")
    assert diag.message == (
        "fallback cycle: `a` falls back to `b`, which falls back to `c`, which falls back to `a`"
    )


def test_standby_referenced_by_an_expression_and_by_after() -> None:
    plan = make_plan(
        step("a", fallback=["s"]),
        step("s"),
        step("b", args={"value": ref("s", "output")}),
        step("c", after=["s"]),
        outputs={"o": ref("s", "status")},
    )
    diags = [d for d in check(plan) if d.code.id == "E310"]
    assert len(diags) == 3
    assert {d.message for d in diags} == {
        "step `s` is a standby (a fallback of `a`) and cannot be referenced by other steps "
        "or outputs"
    }
    assert diags[0].hints == (
        "read `a.output` instead: it carries `s`'s output when the fallback is used",
    )


def test_standby_with_when_if_or_optional() -> None:
    spans = {("step", "s", "policy", "when"): at("when")}
    plan = make_plan(
        step("x"),
        step("a", fallback=["s"]),
        step("s", when=TriggerRule.ALL_DONE, condition=ref("x", "status"), optional=True),
    )
    diags = [d for d in check(plan, spans) if d.code.id == "E315"]
    assert sorted(d.message for d in diags) == [
        f"standby step `s` (a fallback of `a`) cannot carry `{p}`"
        for p in ("if", "optional", "when")
    ]


def test_standby_dependencies_must_be_finished_when_primary_fails() -> None:
    plan = make_plan(
        step("x"),
        step("y"),
        step("a", args={"value": ref("x", "output")}, fallback=["s"]),
        step("s", args={"value": ref("y", "output")}),
    )
    diag = only(check(plan), "E314")
    assert diag.message == (
        "standby `s` depends on `y`, which may not be finished when its primary `a` fails"
    )
    assert diag.hints == (
        "a standby may only depend on steps that `a` itself depends on, "
        "directly or not; add `after y` to `a`",
    )


def test_standby_may_read_ancestors_of_its_primary() -> None:
    plan = make_plan(
        step("x"),
        step("y", args={"value": ref("x", "output")}),
        step("a", args={"value": ref("y", "output")}, fallback=["s"]),
        step("s", args={"value": ref("x", "output")}, after=["y"]),
    )
    assert check(plan) == []


def test_dependency_cycle_named_in_order_at_first_step() -> None:
    spans = {("step", n): at(n) for n in "abc"}
    plan = make_plan(
        step("z"),
        step("a", args={"value": ref("c", "output")}),
        step("b", args={"value": ref("a", "output")}),
        step("c", args={"value": ref("b", "output")}),
    )
    diag = only(check(plan, spans), "E309")
    assert diag.message == (
        "dependency cycle: `a` depends on `c`, which depends on `b`, which depends on `a`"
    )
    assert diag.span == at("a")
    assert [label.message for label in diag.labels] == [
        "`c` is part of the cycle",
        "`b` is part of the cycle",
    ]


def test_self_dependency_and_after_cycle() -> None:
    plan = make_plan(step("a", args={"value": ref("a", "output")}))
    assert only(check(plan), "E309").message == "dependency cycle: step `a` depends on itself"
    plan = make_plan(step("a", after=["b"]), step("b", after=["a"]))
    assert codes_of(check(plan)) == ["E309"]
    assert check(plan)[0].message == "dependency cycle: `a` depends on `b`, which depends on `a`"


def test_two_separate_cycles_are_both_reported() -> None:
    plan = make_plan(
        step("a", after=["b"]),
        step("b", after=["a"]),
        step("c", after=["d"]),
        step("d", after=["c"]),
    )
    assert codes_of(check(plan)) == ["E309", "E309"]


def test_standby_named_twice_by_one_primary() -> None:
    plan = make_plan(step("a", fallback=["s", "s"]), step("s"))
    diag = only(check(plan), "E313")
    assert diag.message == "step `s` is named twice in the `fallback` of `a`"
    assert diag.hints == ("a standby is tried once; name it once",)
