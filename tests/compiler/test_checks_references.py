"""Names: unknown references, step fields, bare step names, functions, after/fallback targets,
map variables (hand-built IR, so these run without the parser)."""

from __future__ import annotations

from plait.compiler.ir import CallExpr, MapSpec, TemplateExpr
from tests.compiler.irkit import at, check, codes_of, lit, make_plan, only, ref, step


def test_clean_plan_has_no_diagnostics() -> None:
    plan = make_plan(
        step("a", args={"value": ref("topic")}),
        step("b", args={"value": TemplateExpr(parts=["x ", ref("a", "output", "k")])}),
        inputs={"topic": "str"},
        outputs={"r": ref("b", "output")},
    )
    assert check(plan) == []


def test_unknown_reference_suggests_a_close_name() -> None:
    plan = make_plan(step("classify"), step("draft", args={"value": ref("clasify", "output")}))
    diag = only(check(plan), "E301")
    assert diag.message == (
        "unknown name `clasify` in step `draft`: no input or step has this name"
    )
    assert diag.hints == ("did you mean `classify`?",)
    assert diag.span == at("clasify")
    assert diag.path == "t.agent"


def test_unknown_reference_without_close_name_says_how_to_declare() -> None:
    plan = make_plan(step("a", args={"value": ref("zzz")}))
    assert only(check(plan), "E301").hints == (
        "declare it as an input (`input zzz: str`) or define a step named `zzz`",
    )


def test_bare_env() -> None:
    diag = only(check(make_plan(step("a", args={"value": ref("env")}))), "E303")
    assert diag.message == "`env` is used without a variable name"
    assert diag.hints == ("read an environment variable as `env.NAME`",)


def test_output_referencing_unknown_name() -> None:
    plan = make_plan(step("draft"), outputs={"reply": ref("drat", "output")})
    diag = only(check(plan), "E301")
    assert diag.message == "unknown name `drat` in output `reply`: no input or step has this name"
    assert diag.hints == ("did you mean `draft`?",)


def test_unknown_step_field() -> None:
    plan = make_plan(step("a"), step("b", args={"value": ref("a", "outptu")}))
    diag = only(check(plan), "E302")
    assert diag.message == "step `a` has no field `outptu`"
    assert diag.hints == ("did you mean `output`?",)


def test_unknown_step_field_without_close_name_lists_fields() -> None:
    plan = make_plan(step("a"), step("b", args={"value": ref("a", "zz")}))
    assert only(check(plan), "E302").hints == (
        "the fields of step `a` are `output`, `status`, `error`, `attempts`, `version`, "
        "`read_at`, `age`",
    )


def test_run_has_only_id() -> None:
    plan = make_plan(step("a", args={"value": ref("run", "name")}))
    assert only(check(plan), "E302").message == "`run` has no field `name`"
    assert check(make_plan(step("a", args={"value": ref("run", "id")}))) == []


def test_bare_step_name() -> None:
    plan = make_plan(step("a"), step("b", args={"value": ref("a")}))
    diag = only(check(plan), "E303")
    assert diag.message == "step `a` is used without a field"
    assert diag.hints == (
        "read one of its fields (`output`, `status`, `error`, `attempts`, "
        "`version`, `read_at`, `age`), e.g. `a.output`",
    )
    # Indexing a step directly is also a bare use.
    plan = make_plan(step("a"), step("b", args={"value": ref("a", 0)}))
    assert codes_of(check(plan)) == ["E303"]


def test_unknown_function_and_len_arity() -> None:
    plan = make_plan(step("a", args={"value": CallExpr(func="lenn", args=[lit([])])}))
    diag = only(check(plan), "E322")
    assert diag.message == "unknown function `lenn`"
    assert diag.hints == ("did you mean `len`?",)
    plan = make_plan(step("a", args={"value": CallExpr(func="len", args=[lit(1), lit(2)])}))
    assert only(check(plan), "E322").message == "`len` takes exactly 1 argument, got 2"


def test_unknown_step_in_after_and_fallback() -> None:
    spans = {("step", "b", "after", "aa"): at("after-aa")}
    plan = make_plan(step("a"), step("b", after=["aa"]), step("c", fallback=["x"]))
    diags = check(plan, spans)
    after = sorted((d for d in diags if d.code.id == "E323"), key=lambda d: d.message)
    assert [d.message for d in after] == [
        "unknown step `aa` in `after` of step `b`",
        "unknown step `x` in `fallback` of step `c`",
    ]
    assert after[0].hints == ("did you mean `a`?",)
    assert after[0].span == at("after-aa")


def test_input_named_in_after() -> None:
    plan = make_plan(step("b", after=["topic"]), inputs={"topic": "str"})
    diag = only(check(plan), "E323")
    assert diag.message == "`topic` in `after` is an input, not a step"
    assert diag.hints == ("`after` takes step names",)


def test_loop_variable_in_scope_and_shadowing() -> None:
    over = lit([1, 2])
    ok = make_plan(step("m", args={"value": ref("x")}, map=MapSpec(var="x", over=over)))
    assert check(ok) == []
    bad = make_plan(
        step("m", args={"value": ref("topic")}, map=MapSpec(var="topic", over=over)),
        inputs={"topic": "str"},
    )
    diag = only(check(bad), "E320")
    assert diag.message == "loop variable `topic` of step `m` shadows the input `topic`"
    assert diag.hints == ("rename the loop variable",)


def test_loop_variable_is_not_in_scope_in_if() -> None:
    plan = make_plan(step("m", map=MapSpec(var="x", over=lit([1])), condition=ref("x")))
    assert codes_of(check(plan)) == ["E301"]
