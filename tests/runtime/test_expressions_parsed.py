"""The evaluator on expressions written in plait syntax, through the real compiler.

Skipped until the parser (`plait.compiler.parse`) exists; the hand-built trees in
test_expressions.py cover the same rules meanwhile.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("plait.compiler.parse")
pytest.importorskip("plait.compiler.lower")

from plait.compiler.api import compile_source
from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CallExpr,
    Expr,
    IndexExpr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    NotExpr,
)
from plait.runtime.expressions import EvalError, Scope, StepView, evaluate, to_source

INPUTS: dict[str, Any] = {
    "a": None,
    "b": False,
    "c": 1,
    "s": "my printer is on fire",
    "xs": [10, 20, 30],
    "obj": {"k": {"deep": [1, 2]}, "n": None},
}


def parse_expr(text: str) -> Expr:
    """Compile a one-output plan around `text` and return the output's expression tree."""
    declared = "\n".join(f"  input {name}: any" for name in INPUTS)
    source = f"plan t {{\n{declared}\n  output o = {text}\n}}\n"
    result = compile_source(source, "t.agent")
    assert result.plan is not None, result.render()
    return result.plan.outputs["o"].expr


def run(text: str) -> Any:
    return evaluate(
        parse_expr(text), Scope(inputs=INPUTS, steps={}, env={"HOME_DIR": "/h"}, run_id="r1")
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a ?? b or c", True),  # `??` is loosest: a ?? (b or c)
        ("b or c and a", False),  # `and` binds tighter than `or`
        ("not c == 2", True),  # `not` is looser than `==`
        ("not xs", False),
        ("c in xs or 20 in xs", True),
        ('"fire" in s', True),
        ('"k" not in obj', False),
        ("len(xs) >= 3 and len(s) > 0", True),
        ("xs[-1]", 30),
        ("[1, 2][-1]", 2),
        ("obj.k.deep[0]", 1),
        ('obj["k"]?.missing.more', None),
        ("a?.x.y", None),
        ("xs?[7]", None),
        ('obj.n ?? "none"', "none"),
        ("1 == 1.0", True),
        ("true == 1", False),
        ("run.id", "r1"),
        ("env.HOME_DIR", "/h"),
        ('env.NOT_SET ?? "fallback"', "fallback"),
        ('"n=${c} xs=${xs} o=${obj.k} a=${a}"', 'n=1 xs=[10,20,30] o={"deep":[1,2]} a=null'),
    ],
)
def test_parsed_expressions(text: str, expected: Any) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xs[5]", "`xs[5]`: index 5 is past the end of a list of 3"),
        ("c < s", "`c < s`: cannot order a number against a string"),
        ("a.x", "`a` is null: cannot read `.x` of null"),
    ],
)
def test_parsed_errors(text: str, message: str) -> None:
    with pytest.raises(EvalError) as caught:
        run(text)
    assert caught.value.message == message


@pytest.mark.parametrize(
    "text",
    [
        "a ?? b or c",
        "not c == 2",
        "(not c) == false",
        "(b or c) and a",
        "obj.k?.deep[-1]",
        "len(xs) > 2",
        "c not in xs",
        '{k: [1, 2.5], "a b": null}',
        "xs?[-1] == 30",
        '"a ${s} b"',
        "[1, 2][-1]",
        'env.HOME_DIR ?? "x"',
    ],
)
def test_to_source_round_trips(text: str) -> None:
    assert to_source(parse_expr(text)) == text


def test_spec_message_for_a_failed_optional_step() -> None:
    source = (
        "plan t {\n"
        "  step history = std.echo(value = {body: 1}) {\n    optional\n  }\n"
        "  output o = history.output.body\n}\n"
    )
    result = compile_source(source, "t.agent")
    assert result.plan is not None, result.render()
    scope = Scope(
        inputs={},
        env={},
        run_id="r",
        steps={"history": StepView(status="failed", optional=True, attempts=1)},
    )
    with pytest.raises(EvalError) as caught:
        evaluate(result.plan.outputs["o"].expr, scope)
    assert caught.value.message == "`history.output` is null: `history` ended `failed` (optional)"
    scope.steps = {"history": StepView(status="succeeded", output={"body": 7})}
    assert evaluate(result.plan.outputs["o"].expr, scope) == 7


# --- to_source and the parser agree on every tree ---------------------------------------------

_SPAN_KEYS = {"span", "field_span", "key_span"}


def _shape(value: Any) -> Any:
    """An expression dump without positions."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _SPAN_KEYS}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


_atoms = st.one_of(
    st.sampled_from(sorted(INPUTS)).map(lambda n: NameExpr(name=n)),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-50, 50),
        st.sampled_from([2.5, 0.125]),
        st.text("abc xyz", max_size=5),
    ).map(lambda v: LiteralExpr(value=v)),
)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    ops = st.sampled_from(["??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in"])
    return st.one_of(
        st.builds(BinaryExpr, op=ops, left=children, right=children),
        st.builds(NotExpr, operand=children),
        st.builds(
            AttrExpr,
            value=children,
            field=st.sampled_from(["k", "n", "max"]),
            optional=st.booleans(),
        ),
        st.builds(IndexExpr, value=children, index=children, optional=st.booleans()),
        # (`to_json` takes any value, so a literal argument never fails the check)
        st.builds(CallExpr, func=st.just("to_json"), args=children.map(lambda c: [c])),
        st.lists(children, max_size=3).map(lambda items: ListExpr(items=items)),
    )


@settings(max_examples=60, deadline=None)
@given(st.recursive(_atoms, _extend, max_leaves=6))
def test_parse_of_to_source_gives_the_same_tree(tree: Expr) -> None:
    parsed = parse_expr(to_source(tree))
    assert _shape(parsed.model_dump()) == _shape(tree.model_dump())
