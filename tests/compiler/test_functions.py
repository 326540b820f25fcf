"""The built-in functions of SPEC section 11: their results, their refusals, and the checks
`plait check` makes of calls (arity, did-you-mean, literal argument types) through the real
compiler."""

from __future__ import annotations

from typing import Any

import pytest

from plait.compiler.api import compile_source
from plait.compiler.functions import FUNCTIONS, FunctionError, call_function
from plait.runtime.expressions import EvalError, Scope, evaluate


def run(text: str, **inputs: Any) -> Any:
    declared = "\n".join(f"  input {name}: any" for name in inputs)
    result = compile_source(f"plan t {{\n{declared}\n  output o = {text}\n}}\n", "t.agent")
    assert result.plan is not None, result.render()
    scope = Scope(inputs=inputs, steps={}, env={}, run_id="r1")
    return evaluate(result.plan.outputs["o"].expr, scope)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keys({b: 1, a: 2})", ["b", "a"]),
        ("values({b: 1, a: 2})", [1, 2]),
        ("compact([1, null, 2, null])", [1, 2]),
        ("flatten([[1, 2], 3, [[4]], []])", [1, 2, 3, [4]]),
        ('join([1, "a", null, {k: true}], "-")', '1-a-null-{"k":true}'),
        ('split("a,b,,c", ",")', ["a", "b", "", "c"]),
        ('lower("AbC")', "abc"),
        ('upper("AbC")', "ABC"),
        (r'trim("  x y \n\t")', "x y"),
        ("contains([1, 2], 2.0)", True),
        ("contains([1, true], 1)", True),
        ("contains([true], 1)", False),
        ('contains("fire", "ir")', True),
        ('contains({a: 1}, "a")', True),
        ("contains([1, null], null)", True),
        ("min([3, 1.5, 2])", 1.5),
        ('max(["b", "c", "a"])', "c"),
        ("sum([1, 2, 3])", 6),
        ("sum([])", 0),
        ("sum([1, 2.5])", 3.5),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(0.125, 2)", 0.13),
        ("round(1250, -2)", 1300),
        ('to_json("x")', '"x"'),
        ("to_json(null)", "null"),
        ('to_json({a: [1, 2], b: "é"})', '{"a":[1,2],"b":"é"}'),
        ('from_json("[1, {\\"a\\": null}]")', [1, {"a": None}]),
        ("len(compact(xs))", 2),
    ],
)
def test_results(text: str, expected: Any) -> None:
    got = run(text, xs=[1, None, 2])
    assert got == expected
    assert type(got) is type(expected)  # ints stay ints (sum, round)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("min([])", "`min` of an empty list"),
        ('max([1, "a"])', "`max` takes a list of numbers or of strings"),
        ("min([1, null])", "`min` takes a list of numbers or of strings"),
        ("sum([1, null])", "`sum` takes a list of numbers; it holds null"),
        ('split("a", "")', "the separator of `split` may not be empty"),
        ('from_json("{nope")', "`from_json` was given invalid JSON"),
        ("upper(n)", "argument `t` of `upper` must be a string, not null"),
        ("keys(xs)", "argument `o` of `keys` must be a dict, not a list"),
        ("round(1.5, 0.5)", "the digits of `round` must be a whole number"),
    ],
)
def test_run_time_errors_name_the_call(text: str, why: str) -> None:
    with pytest.raises(EvalError) as caught:
        run(text, xs=[1], n=None)
    assert why in caught.value.message
    assert caught.value.message.startswith(f"`{text.split('(')[0]}(")


def test_every_function_is_callable_through_the_table() -> None:
    assert set(FUNCTIONS) == {
        "len",
        "keys",
        "values",
        "compact",
        "flatten",
        "join",
        "split",
        "lower",
        "upper",
        "trim",
        "contains",
        "min",
        "max",
        "sum",
        "round",
        "to_json",
        "from_json",
    }
    with pytest.raises(FunctionError, match="takes 1 to 2 arguments, got 3"):
        call_function("round", [1, 2, 3])


def diagnostics(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    source = f"plan t {{\n  input xs: list = []\n  output o = {text}\n}}\n"
    result = compile_source(source, "t.agent")
    return [(d.code.id, d.message, d.hints) for d in result.diagnostics]


def test_check_unknown_function_suggests_a_close_one() -> None:
    assert diagnostics("compcat(xs)") == [
        ("E322", "unknown function `compcat`", ("did you mean `compact`?",))
    ]


def test_check_wrong_argument_count() -> None:
    assert diagnostics("join(xs)") == [
        ("E322", "`join` takes exactly 2 arguments, got 1", ("call it as `join(list, sep)`",))
    ]
    assert diagnostics("round()")[0][1] == "`round` takes 1 to 2 arguments, got 0"


def test_check_literal_argument_of_the_wrong_type() -> None:
    assert diagnostics("upper(3)") == [
        ("E307", "argument `t` of `upper` must be a string, not a number", ())
    ]
    assert diagnostics("keys(null)")[0][0] == "E307"
    assert diagnostics("to_json(null)") == []
    assert diagnostics("contains(xs, null)") == []
    assert diagnostics("upper(xs)") == []  # not a literal: checked at run time
