"""Warnings: rules never met, nullable access, steps that look like forgotten standbys."""

from __future__ import annotations

from plait.compiler.diagnostics import Severity
from plait.compiler.ir import IndexExpr, TriggerRule
from tests.compiler.irkit import check, codes_of, lit, make_plan, only, ref, step


def test_rule_without_dependencies() -> None:
    diag = only(check(make_plan(step("a", when=TriggerRule.ANY_FAILED))), "W402")
    assert diag.severity is Severity.WARNING
    assert diag.message == (
        "`when any_failed` is never met for step `a`, which has no "
        "dependencies: it will always be skipped"
    )
    assert diag.hints == ("add `after STEP` to say which steps the rule watches, or remove `when`",)
    assert check(make_plan(step("a", when=TriggerRule.ALL_DONE))) == []
    assert check(make_plan(step("b"), step("a", when=TriggerRule.ANY_FAILED, after=["b"]))) == []


def test_plain_access_into_an_optional_step() -> None:
    reader = ref("h", "output", "body")
    plan = make_plan(step("h", optional=True), step("d", args={"value": reader}))
    diag = only(check(plan), "W403")
    assert diag.message == (
        "`h.output` may be null here (`h` is optional), and `.` on null is an error"
    )
    assert diag.hints == ("use `?.` to get null instead, or `?? VALUE` to supply a default",)
    assert diag.span is reader.span  # points at the reading expression


def test_safe_access_and_whole_output_do_not_warn() -> None:
    plan = make_plan(
        step("h", optional=True),
        step("d", args={"value": ref("h", "output", "body", optional=True)}),
        step("e", args={"value": ref("h", "output")}),
    )
    assert check(plan) == []


def test_step_with_if_and_index_access_in_output() -> None:
    plan = make_plan(
        step("x"), step("h", condition=ref("x", "status")), outputs={"first": ref("h", "output", 0)}
    )
    diag = only(check(plan), "W403")
    assert diag.message == (
        "`h.output` may be null here (`h` has an `if` and may be skipped), "
        "and `[ ]` on null is an error"
    )
    assert diag.hints[0].startswith("use `?[ ]`")


def test_dependency_of_a_step_with_another_rule() -> None:
    plan = make_plan(
        step("a"), step("n", when=TriggerRule.ALL_DONE, args={"value": ref("a", "output", "x")})
    )
    diag = only(check(plan), "W403")
    assert diag.message == (
        "`a.output` may be null here (`n` runs `when all_done`, so `a` may "
        "have ended without output), and `.` on null is an error"
    )


def test_plain_reads_of_required_steps_do_not_warn() -> None:
    plan = make_plan(
        step("a"),
        step("b", args={"value": ref("a", "output", "x")}),
        outputs={"o": IndexExpr(value=ref("b", "output"), index=lit(0))},
    )
    assert check(plan) == []


def test_forgotten_standby() -> None:
    plan = make_plan(
        step("classify"), step("classify_by_rules"), outputs={"c": ref("classify", "output")}
    )
    diag = only(check(plan), "W401")
    assert diag.message == (
        "step `classify_by_rules` looks like a standby, but no `fallback` "
        "names it: it will run on its own and nothing reads its output"
    )
    assert diag.hints[0] == "add `fallback classify_by_rules` to step `classify`"
    plan = make_plan(step("backup_fetch"), step("fetch"), outputs={"c": ref("fetch", "output")})
    assert codes_of(check(plan)) == ["W401"]


def test_ordinary_leaf_steps_are_not_forgotten_standbys() -> None:
    plan = make_plan(
        step("hello"),
        step("notify"),
        step("fetch"),
        step("fetch_details", args={"value": ref("fetch", "output")}),
    )
    assert check(plan) == []
    used = make_plan(
        step("classify"), step("classify_rules"), outputs={"r": ref("classify_rules", "output")}
    )
    assert check(used) == []


def test_step_whose_own_rule_may_not_be_met() -> None:
    plan = make_plan(
        step("a"),
        step("n", when=TriggerRule.ANY_FAILED, after=["a"]),
        outputs={"o": ref("n", "output", "x")},
    )
    diag = only(check(plan), "W403")
    assert diag.message == (
        "`n.output` may be null here (`n` runs only `when any_failed` and "
        "may be skipped), and `.` on null is an error"
    )
