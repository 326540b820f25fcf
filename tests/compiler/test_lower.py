"""Lowering: units, `defaults`, dependencies, standbys, env, span keys, and structural errors."""

from __future__ import annotations

from pathlib import Path

from plait.compiler.diagnostics import Diagnostic
from plait.compiler.ir import EnvExpr, LiteralExpr, Plan, Rate, TriggerRule
from plait.compiler.lower import lower
from plait.compiler.parse import parse
from plait.compiler.source import SourceMap
from plait.errors import ErrorKind

ROOT = Path(__file__).resolve().parents[2]


def lowered(text: str) -> tuple[Plan, list[Diagnostic], SourceMap]:
    tree, syntax = parse(text, "t.agent")
    assert tree is not None and syntax == [], [d.message for d in syntax]
    source = SourceMap("t.agent", text)
    plan, diagnostics = lower(tree, source)
    return plan, diagnostics, source


def ok(text: str) -> Plan:
    plan, diagnostics, _ = lowered(text)
    assert diagnostics == [], [d.message for d in diagnostics]
    return plan


def where(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.column


def in_plan(body: str) -> str:
    return "plan p {\n" + body + "\n}\n"


def test_spec_example_lowers_to_the_expected_ir() -> None:
    plan, diagnostics, source = lowered((ROOT / "examples" / "triage.agent").read_text())
    assert diagnostics == []
    assert (plan.plan, plan.deadline_s, plan.concurrency) == ("triage", 120.0, 8)
    assert plan.inputs["tone"].default == "friendly" and plan.inputs["ticket"].required
    api = plan.resources["llm_api"]
    assert api.rate == Rate(count=10, per_s=1) and api.concurrency == 4
    assert api.breaker is not None and (api.breaker.failures, api.breaker.cooldown_s) == (5, 30.0)
    steps = plan.steps
    assert steps["classify"].timeout_s == 20.0 and steps["history"].timeout_s == 5.0
    assert steps["draft"].timeout_s == 30.0  # from defaults
    assert steps["classify"].retry is not None and steps["classify"].retry.on == [
        ErrorKind.TIMEOUT,
        ErrorKind.TRANSIENT,
    ]
    assert steps["draft"].retry is not None and steps["draft"].retry.jitter  # the default's
    assert steps["draft"].depends_on == ["classify", "history"]
    assert steps["escalate"].depends_on == ["classify"] and steps["escalate"].condition is not None
    assert (
        steps["notify_failure"].depends_on == ["draft"]
        and steps["notify_failure"].when is TriggerRule.ANY_FAILED
    )
    assert steps["classify_by_rules"].standby_for == "classify"
    assert steps["classify"].fallback == ["classify_by_rules"] and steps["history"].optional
    assert (
        isinstance(steps["classify"].default, LiteralExpr) or steps["classify"].default is not None
    )
    assert plan.edges == [] and plan.env == []
    assert source.span("step", "draft") is not None
    assert source.span("step", "classify", "policy", "retry") is not None
    # the IR survives a JSON round trip
    assert Plan.model_validate_json(plan.model_dump_json()) == Plan.model_validate(
        plan.model_dump()
    )


def test_units_and_percentages() -> None:
    plan = ok(
        in_plan(
            "  deadline 1h\n  resource r { rate 600/m; breaker after 3 failures cooldown 1m30s }\n"
            "  step m = for x in [1]: std.echo(value = x) {\n    timeout 1.5s\n"
            "    retry 4 backoff 250ms x1.5 max 2s\n    tolerate 25%\n    concurrency 2\n  }"
        )
    )
    assert plan.deadline_s == 3600
    assert plan.resources["r"].rate == Rate(count=600, per_s=60)
    assert plan.resources["r"].breaker is not None and plan.resources["r"].breaker.cooldown_s == 90
    step = plan.steps["m"]
    assert step.timeout_s == 1.5 and step.tolerate == 25 and step.concurrency == 2
    assert step.retry is not None
    assert (step.retry.retries, step.retry.backoff_s, step.retry.factor, step.retry.max_s) == (
        4,
        0.25,
        1.5,
        2,
    )
    assert step.map is not None and step.map.var == "x"


def test_a_steps_own_policy_replaces_the_default_entirely() -> None:
    plan = ok(
        in_plan(
            "  step a = f()\n  step b = f() {\n    retry 3\n    uses other\n  }\n"
            "  defaults {\n    timeout 10s\n    retry 2 backoff 1s x2 jitter\n    uses api\n  }"
        )
    )
    a, b = plan.steps["a"], plan.steps["b"]
    assert a.timeout_s == 10 and a.uses == ["api"]
    assert a.retry is not None and (a.retry.retries, a.retry.factor, a.retry.jitter) == (
        2,
        2.0,
        True,
    )
    assert b.retry is not None and (
        b.retry.retries,
        b.retry.factor,
        b.retry.jitter,
        b.retry.backoff_s,
    ) == (3, 1.0, False, 1.0)
    assert b.uses == ["other"] and b.timeout_s == 10
    assert plan.defaults.timeout_s == 10 and plan.defaults.uses == ["api"]


def test_dependencies_in_step_order_from_every_place() -> None:
    plan = ok(
        in_plan(
            "  input n: int\n  step a = f()\n  step b = f()\n  step c = f()\n"
            "  step d = f()\n  step e = f()\n"
            '  step z = for x in e.output: f(v = d.output ?? x, w = "${c.status}") {\n'
            "    after a, a\n    if b.output\n    default n\n  }"
        )
    )
    assert plan.steps["z"].depends_on == ["a", "b", "c", "d", "e"]
    assert plan.steps["z"].after == ["a", "a"]  # as written


def test_loop_variable_is_not_a_dependency() -> None:
    plan = ok(in_plan("  step x = f()\n  step m = for x in [1]: f(v = x)"))
    assert plan.steps["m"].depends_on == []


def test_standby_serves_the_first_primary() -> None:
    plan = ok(
        in_plan(
            "  step a = f() {\n    fallback s\n  }\n  step b = f() {\n    fallback s, t\n  }\n"
            "  step s = f()\n  step t = f()"
        )
    )
    assert plan.steps["s"].standby_for == "a" and plan.steps["t"].standby_for == "b"
    assert plan.steps["b"].fallback == ["s", "t"] and plan.steps["a"].standby_for is None


def test_env_names_sorted_unique() -> None:
    plan = ok(
        in_plan('  step a = f(k = env.TOKEN, u = "${env.HOME}")\n  output o = env.TOKEN ?? env.A')
    )
    assert plan.env == ["A", "HOME", "TOKEN"]
    assert isinstance(plan.steps["a"].args["k"], EnvExpr)


def test_values_out_of_range_are_kept_as_written() -> None:
    plan = ok(
        in_plan(
            "  concurrency 0\n  step a = f() {\n    timeout 0s\n    retry 200\n"
            "    tolerate 150%\n  }"
        )
    )
    assert plan.concurrency == 0
    step = plan.steps["a"]
    assert (
        step.timeout_s == 0
        and step.retry is not None
        and step.retry.retries == 200
        and step.tolerate == 150
    )


def test_span_keys() -> None:
    _, _, source = lowered(
        in_plan(
            '  use "m"\n  input i: int = 1\n  output o = i\n  deadline 1s\n  concurrency 2\n'
            "  defaults {\n    timeout 1s\n    uses r\n  }\n  resource r { rate 1/s }\n"
            "  step s = for v in [i]: t.x(a = v) {\n    after q\n    fallback q\n    uses r\n  }\n"
            "  step q = f()"
        )
    )
    keys = [
        ("plan",),
        ("use", "0"),
        ("input", "i"),
        ("input", "i", "default"),
        ("output", "o"),
        ("deadline",),
        ("concurrency",),
        ("defaults", "timeout"),
        ("defaults", "uses"),
        ("defaults", "uses", "r"),
        ("resource", "r"),
        ("resource", "r", "rate"),
        ("step", "s"),
        ("step", "s", "tool"),
        ("step", "s", "arg", "a"),
        ("step", "s", "var"),
        ("step", "s", "policy", "after"),
        ("step", "s", "after", "q"),
        ("step", "s", "fallback", "q"),
        ("step", "s", "uses", "r"),
        ("step", "q"),
    ]
    for key in keys:
        assert source.span(*key) is not None, key
    tool = source.span("step", "s", "tool")
    assert tool is not None and (tool.line, tool.column, tool.end_column) == (12, 26, 29)


# --- structural errors --------------------------------------------------------------------------


def test_duplicate_names_reported_at_the_second_definition() -> None:
    plan, ds, _ = lowered(in_plan("  input a: str\n  step a = f()\n  step b = f()\n  step b = g()"))
    assert [(d.code.id, d.span.line if d.span else 0) for d in ds] == [("E201", 3), ("E201", 5)]
    assert ds[0].message == "`a` is already defined as an input"
    assert ds[0].labels[0].span.line == 2
    assert plan.steps["b"].tool == "f"


def test_duplicate_outputs_and_resources() -> None:
    _, ds, _ = lowered(in_plan("  output o = 1\n  output o = 2\n  resource r {}\n  resource r {}"))
    assert [(d.code.id, d.span.line if d.span else 0) for d in ds] == [("E201", 3), ("E201", 5)]


def test_policy_given_twice() -> None:
    _, ds, _ = lowered(
        in_plan(
            "  step a = f() {\n    optional\n    timeout 1s\n    optional\n  }\n"
            "  resource r { rate 1/s; rate 2/s }"
        )
    )
    assert [(d.code.id, d.span.line if d.span else 0) for d in ds] == [("E202", 5), ("E202", 7)]
    assert (
        ds[0].message == "`optional` is given twice in step `a`" and ds[0].labels[0].span.line == 3
    )


def test_duplicate_dict_key_and_argument() -> None:
    _, ds, _ = lowered(
        in_plan('  step a = f(x = {k: 1, "k": 2}, x = 3)\n  output o = [{a: 1, a: 1}]')
    )
    assert [(d.code.id, where(d)) for d in ds] == [
        ("E203", (2, 25)),
        ("E204", (2, 34)),
        ("E203", (3, 22)),
    ]
    assert ds[1].message == "argument `x` is given twice"
    assert ds[0].message == "dict key `k` is given twice" and ds[0].labels[0].span.column == 19


def test_policies_not_allowed_in_defaults() -> None:
    _, ds, _ = lowered(
        in_plan(
            "  defaults {\n    timeout 1s\n    optional\n    when all_done\n    timeout 2s\n  }"
        )
    )
    assert [(d.code.id, d.span.line if d.span else 0) for d in ds] == [
        ("E205", 4),
        ("E205", 5),
        ("E202", 6),
    ]
    assert ds[0].message == "`optional` cannot be a default"


def test_plan_settings_given_twice() -> None:
    _, ds, _ = lowered(
        in_plan(
            "  deadline 1s\n  deadline 2s\n  concurrency 1\n  concurrency 2\n"
            "  defaults {}\n  defaults {}"
        )
    )
    assert [(d.code.id, d.span.line if d.span else 0) for d in ds] == [
        ("E206", 3),
        ("E206", 5),
        ("E206", 7),
    ]
    assert ds[0].message == "`deadline` is given twice" and ds[0].labels[0].span.line == 2
