"""The expression evaluator: every operator and rule of SPEC sections 5 and 9, on IR trees."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CallExpr,
    DictEntry,
    DictExpr,
    EnvExpr,
    Expr,
    IndexExpr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    NotExpr,
    TemplateExpr,
)
from plait.runtime.expressions import (
    EvalError,
    Scope,
    StepView,
    evaluate,
    json_equal,
    to_json_text,
    to_source,
    truthy,
)

# --- tiny tree builders (the parser is written elsewhere) -------------------------------------


def lit(value: Any) -> LiteralExpr:
    return LiteralExpr(value=value)


def name(text: str) -> NameExpr:
    return NameExpr(name=text)


def attr(value: Expr, field: str, optional: bool = False) -> AttrExpr:
    return AttrExpr(value=value, field=field, optional=optional)


def idx(value: Expr, index: Expr | int | str, optional: bool = False) -> IndexExpr:
    index_expr = index if not isinstance(index, (int, str)) else lit(index)
    return IndexExpr(value=value, index=index_expr, optional=optional)


def op(left: Expr, operator: str, right: Expr) -> BinaryExpr:
    return BinaryExpr(op=operator, left=left, right=right)


def path(*parts: str) -> Expr:
    """`a.b.c` as nested AttrExprs."""
    expr: Expr = name(parts[0])
    for part in parts[1:]:
        expr = attr(expr, part)
    return expr


def make_scope(**overrides: Any) -> Scope:
    steps = {
        "classify": StepView(
            status="succeeded",
            output={"category": "bug", "urgency": 3, "tags": ["a", "b", "c"]},
            attempts=2,
        ),
        "history": StepView(
            status="failed",
            output=None,
            optional=True,
            attempts=1,
            error={"kind": "transient", "message": "503"},
        ),
        "skipped_one": StepView(status="skipped", reason="upstream_failed"),
        "recovered_one": StepView(status="recovered", output=[1, 2]),
        "nothing": StepView(status="succeeded", output=None),
        "leaky": StepView(status="failed", output={"partial": True}),
    }
    values: dict[str, Any] = {
        "inputs": {
            "ticket": "my printer is on fire",
            "count": 3,
            "empty": "",
            "nil": None,
            "items": [10, 20, 30],
            "obj": {"a": 1, "b": {"c": [1, 2]}},
        },
        "steps": steps,
        "env": {"TOKEN": "s3cret-token"},
        "run_id": "run-123",
    }
    values.update(overrides)
    return Scope(**values)


def ev(expr: Expr, **overrides: Any) -> Any:
    return evaluate(expr, make_scope(**overrides))


def error_of(expr: Expr, **overrides: Any) -> str:
    with pytest.raises(EvalError) as caught:
        ev(expr, **overrides)
    assert str(caught.value) == caught.value.message
    return caught.value.message


# --- literals, containers, templates ----------------------------------------------------------


@pytest.mark.parametrize("value", [None, True, False, 0, -3, 1.5, "", "text"])
def test_literals_are_themselves(value: Any) -> None:
    assert ev(lit(value)) == value


def test_lists_and_dicts_evaluate_their_items() -> None:
    expr = DictExpr(
        entries=[
            DictEntry(key="n", value=name("count")),
            DictEntry(key="quoted key", value=ListExpr(items=[lit(1), name("ticket")])),
        ]
    )
    assert ev(expr) == {"n": 3, "quoted key": [1, "my printer is on fire"]}


def test_template_joins_strings_and_writes_other_values_as_compact_json() -> None:
    expr = TemplateExpr(
        parts=[
            "t=",
            name("ticket"),
            " l=",
            lit(None),
            " n=",
            name("count"),
            " f=",
            lit(1.5),
            " b=",
            lit(True),
            " list=",
            name("items"),
            " obj=",
            name("obj"),
            " u=",
            lit("é"),
        ]
    )
    assert ev(expr) == (
        "t=my printer is on fire l=null n=3 f=1.5 b=true list=[10,20,30] "
        'obj={"a":1,"b":{"c":[1,2]}} u=é'
    )


def test_to_json_text_is_compact_and_keeps_unicode() -> None:
    assert to_json_text({"a": [1, None, "ü"]}) == '{"a":[1,null,"ü"]}'


# --- names ------------------------------------------------------------------------------------


def test_names_resolve_loop_variable_then_input_then_step() -> None:
    assert ev(name("ticket")) == "my printer is on fire"
    assert ev(name("ticket"), loop={"ticket": "from loop"}) == "from loop"
    # An input called like a step shadows it (the compiler forbids it; the order still holds).
    scope_inputs = {"classify": {"output": "input value"}}
    assert ev(attr(name("classify"), "output"), inputs=scope_inputs) == "input value"


def test_step_fields() -> None:
    assert ev(path("classify", "output", "category")) == "bug"
    assert ev(path("classify", "status")) == "succeeded"
    assert ev(path("classify", "attempts")) == 2
    assert ev(path("classify", "error")) is None
    assert ev(path("history", "error", "kind")) == "transient"
    assert ev(path("recovered_one", "output")) == [1, 2]


def test_output_is_null_unless_succeeded_or_recovered() -> None:
    assert ev(path("leaky", "output")) is None
    assert ev(path("skipped_one", "output")) is None


def test_a_bare_step_name_is_an_error() -> None:
    assert error_of(name("classify")) == (
        "`classify` is a step: read it through a field "
        "(`classify.output`, `.status`, `.error` or `.attempts`)"
    )
    assert "has no field `foo`" in error_of(path("classify", "foo"))
    assert "cannot be indexed" in error_of(idx(name("classify"), "output"))


def test_unknown_name() -> None:
    assert error_of(name("nope")) == "`nope` is not an input, a step or a loop variable"


def test_run_id() -> None:
    assert ev(path("run", "id")) == "run-123"
    assert error_of(path("run", "name")) == "`run.name`: `run` has only the field `id`"
    assert error_of(name("run")) == "`run` is not a value: read `run.id`"


def test_env() -> None:
    assert ev(EnvExpr(name="TOKEN")) == "s3cret-token"
    assert error_of(EnvExpr(name="MISSING")) == (
        "`env.MISSING`: environment variable MISSING is not set"
    )


def test_unset_env_with_coalesce_gives_the_fallback() -> None:
    assert ev(op(EnvExpr(name="MISSING"), "??", lit("dflt"))) == "dflt"
    assert ev(op(EnvExpr(name="TOKEN"), "??", lit("dflt"))) == "s3cret-token"


# --- field and index access -------------------------------------------------------------------


def test_field_and_index_access() -> None:
    assert ev(path("obj", "b", "c")) == [1, 2]
    assert ev(idx(name("obj"), "a")) == 1
    assert ev(idx(name("items"), 0)) == 10
    assert ev(idx(name("items"), lit(1.0))) == 20
    assert ev(idx(name("ticket"), 3)) == "p"


def test_negative_index_counts_from_the_end() -> None:
    assert ev(idx(name("items"), -1)) == 30
    assert ev(idx(name("items"), -3)) == 10
    assert ev(idx(ListExpr(items=[lit(1), lit(2)]), -1)) == 2  # postfix on a literal


def test_out_of_range_index_is_an_error() -> None:
    items = attr(name("x"), "items")
    assert error_of(idx(items, 5), inputs={"x": {"items": [1, 2, 3]}}) == (
        "`x.items[5]`: index 5 is past the end of a list of 3"
    )
    assert error_of(idx(name("items"), -4)) == (
        "`items[-4]`: index -4 is before the start of a list of 3"
    )


def test_missing_key_is_an_error() -> None:
    assert error_of(path("obj", "zzz")) == '`obj.zzz`: no key "zzz" in the dict (keys: a, b)'
    assert error_of(idx(name("obj"), "zzz")) == (
        '`obj["zzz"]`: no key "zzz" in the dict (keys: a, b)'
    )


def test_access_on_null_is_an_error_naming_where_the_null_came_from() -> None:
    assert error_of(path("history", "output", "body")) == (
        "`history.output` is null: `history` ended `failed` (optional)"
    )
    assert error_of(path("skipped_one", "output", "x")) == (
        "`skipped_one.output` is null: `skipped_one` ended `skipped` (upstream_failed)"
    )
    assert error_of(path("nothing", "output", "x")) == (
        "`nothing.output` is null: `nothing` returned null"
    )
    assert error_of(idx(path("classify", "error"), "kind")) == (
        "`classify.error` is null: `classify` ended `succeeded`"
    )
    assert error_of(path("nil", "x")) == "`nil` is null: cannot read `.x` of null"
    assert error_of(idx(name("nil"), 0)) == "`nil` is null: cannot index null with [0]"


def test_wrong_types_for_access() -> None:
    assert error_of(path("items", "x")) == "`items.x`: cannot read field `x` of a list"
    assert error_of(idx(name("items"), "x")) == (
        '`items["x"]`: a list is indexed by an integer, not a string'
    )
    assert error_of(idx(name("obj"), 1)) == (
        "`obj[1]`: a dict is indexed by a string key, not a number"
    )
    assert error_of(idx(name("count"), 0)) == "`count[0]`: cannot index a number"
    assert "not a boolean" in error_of(idx(name("items"), lit(True)))


def test_optional_access_gives_null() -> None:
    assert ev(attr(name("nil"), "x", optional=True)) is None
    assert ev(attr(name("obj"), "zzz", optional=True)) is None
    assert ev(idx(name("items"), 9, optional=True)) is None
    assert ev(idx(name("items"), -9, optional=True)) is None
    assert ev(idx(name("nil"), 0, optional=True)) is None
    assert ev(attr(path("history", "output"), "body", optional=True)) is None
    assert ev(attr(name("obj"), "a", optional=True)) == 1


def test_optional_access_short_circuits_the_rest_of_the_chain() -> None:
    chain = attr(attr(attr(name("nil"), "a", optional=True), "b"), "c")
    assert ev(chain) is None
    chain2 = idx(attr(name("obj"), "zzz", optional=True), 0)
    assert ev(chain2) is None
    # ... but not past the chain: a comparison sees null and cannot order it.
    assert "cannot order null against a number" in error_of(op(chain, "<", lit(1)))
    # and a non-optional access before the `?.` still fails
    assert "is null" in error_of(attr(attr(name("nil"), "a"), "b", optional=True))


def test_optional_access_still_rejects_wrong_types() -> None:
    assert "cannot read field" in error_of(attr(name("items"), "x", optional=True))


# --- operators --------------------------------------------------------------------------------


def test_coalesce() -> None:
    assert ev(op(lit(None), "??", lit(5))) == 5
    assert ev(op(lit(0), "??", lit(5))) == 0
    assert ev(op(lit(False), "??", lit(5))) is False
    assert ev(op(path("history", "output"), "??", lit("none"))) == "none"
    # the right side is not evaluated when the left is not null
    assert ev(op(lit(1), "??", name("undefined"))) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (1, True),
        (-1, True),
        (0.1, True),
        ("0", True),
        ("false", True),
        ([0], True),
        ({"a": None}, True),
    ],
)
def test_truthiness(value: Any, expected: bool) -> None:
    assert truthy(value) is expected
    assert ev(NotExpr(operand=name("v")), inputs={"v": value}) is (not expected)


def test_and_or_give_booleans_and_short_circuit() -> None:
    assert ev(op(lit("a"), "or", lit("b"))) is True
    assert ev(op(lit(""), "or", lit(0))) is False
    assert ev(op(lit("a"), "and", ListExpr(items=[lit(1)]))) is True
    assert ev(op(lit("a"), "and", lit(0))) is False
    assert ev(op(lit(1), "or", name("undefined"))) is True
    assert ev(op(lit(0), "and", name("undefined"))) is False


def test_not_gives_a_boolean() -> None:
    assert ev(NotExpr(operand=lit("x"))) is False
    assert ev(NotExpr(operand=ListExpr(items=[]))) is True


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (1, 2, False),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (None, None, True),
        (None, False, False),
        ("1", 1, False),
        ("a", "a", True),
        ([1, 2], [1.0, 2.0], True),
        ([1], [True], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"b": 1}, False),
        ([1, 2], [1, 2, 3], False),
        ({}, [], False),
    ],
)
def test_equality_compares_json_values(left: Any, right: Any, equal: bool) -> None:
    assert json_equal(left, right) is equal
    assert ev(op(name("l"), "==", name("r")), inputs={"l": left, "r": right}) is equal
    assert ev(op(name("l"), "!=", name("r")), inputs={"l": left, "r": right}) is (not equal)


@pytest.mark.parametrize(
    ("operator", "left", "right", "expected"),
    [
        ("<", 1, 2, True),
        ("<", 2, 1, False),
        ("<=", 2, 2.0, True),
        (">", 3.5, 3, True),
        (">=", 3, 4, False),
        ("<", "abc", "abd", True),
        (">", "b", "a", True),
        ("<=", "a", "a", True),
    ],
)
def test_ordering(operator: str, left: Any, right: Any, expected: bool) -> None:
    assert ev(op(lit(left), operator, lit(right))) is expected


@pytest.mark.parametrize(
    ("left", "right", "message"),
    [
        (1, "a", "cannot order a number against a string"),
        ("a", 1, "cannot order a string against a number"),
        (True, 1, "cannot order a boolean against a number"),
        (None, 1, "cannot order null against a number"),
        ([1], [2], "cannot order a list against a list"),
    ],
)
def test_ordering_mismatched_types_is_an_error(left: Any, right: Any, message: str) -> None:
    expr = op(name("a"), "<", name("b"))
    assert error_of(expr, inputs={"a": left, "b": right}) == f"`a < b`: {message}"


def test_in_and_not_in() -> None:
    assert ev(op(lit(20), "in", name("items"))) is True
    assert ev(op(lit(20.0), "in", name("items"))) is True
    assert ev(op(lit(True), "in", ListExpr(items=[lit(1)]))) is False
    assert ev(op(lit("a"), "in", name("obj"))) is True
    assert ev(op(lit("c"), "in", name("obj"))) is False
    assert ev(op(lit(1), "in", name("obj"))) is False
    assert ev(op(lit("printer"), "in", name("ticket"))) is True
    assert ev(op(lit("printer"), "not in", name("ticket"))) is False
    assert ev(op(lit(99), "not in", name("items"))) is True


def test_in_errors() -> None:
    assert error_of(op(lit(1), "in", name("ticket"))) == (
        "`1 in ticket`: cannot look for a number in a string"
    )
    assert error_of(op(lit(1), "in", name("nil"))) == (
        "`1 in nil`: `in` needs a list, dict or string on its right, not null"
    )


def test_len() -> None:
    def call(*args: Expr) -> CallExpr:
        return CallExpr(func="len", args=list(args))

    assert ev(call(name("ticket"))) == 21
    assert ev(call(name("items"))) == 3
    assert ev(call(name("obj"))) == 2
    assert error_of(call(name("count"))) == (
        "`len(count)`: argument `x` of `len` must be a string or a list or a dict, not a number"
    )
    assert "`len` takes exactly 1 argument, got 0" in error_of(call())
    assert "unknown function `maximum`" in error_of(CallExpr(func="maximum", args=[lit(1)]))


def test_errors_inside_containers_propagate() -> None:
    assert "not set" in error_of(ListExpr(items=[EnvExpr(name="NOPE")]))
    assert "not set" in error_of(TemplateExpr(parts=["x ", EnvExpr(name="NOPE")]))


# --- precedence and rendering -----------------------------------------------------------------


def test_precedence_of_trees() -> None:
    # `a ?? b or c` parses as `a ?? (b or c)`: null ?? (false or 1) -> True
    tree = op(lit(None), "??", op(lit(False), "or", lit(1)))
    assert ev(tree) is True
    assert to_source(tree) == "null ?? false or 1"
    # `not a == b` is `not (a == b)`
    tree2 = NotExpr(operand=op(lit(1), "==", lit(2)))
    assert ev(tree2) is True
    assert to_source(tree2) == "not 1 == 2"
    # `(not 1) == false` needs its parentheses back
    tree3 = op(NotExpr(operand=lit(1)), "==", lit(False))
    assert ev(tree3) is True
    assert to_source(tree3) == "(not 1) == false"
    # `a or b and c` is `a or (b and c)`
    tree4 = op(lit(0), "or", op(lit(1), "and", lit(0)))
    assert ev(tree4) is False
    assert to_source(tree4) == "0 or 1 and 0"
    assert to_source(op(op(lit(0), "or", lit(1)), "and", lit(0))) == "(0 or 1) and 0"


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (path("classify", "output", "category"), "classify.output.category"),
        (attr(idx(name("x"), -1, optional=True), "y", optional=True), "x?[-1]?.y"),
        (idx(name("x"), "a b"), 'x["a b"]'),
        (EnvExpr(name="TOKEN"), "env.TOKEN"),
        (CallExpr(func="len", args=[name("x")]), "len(x)"),
        (op(name("a"), "not in", ListExpr(items=[lit(1), lit(2.5)])), "a not in [1, 2.5]"),
        (
            DictExpr(
                entries=[
                    DictEntry(key="k", value=lit(True)),
                    DictEntry(key="a key", value=lit(None)),
                ]
            ),
            '{k: true, "a key": null}',
        ),
        (TemplateExpr(parts=['say "hi" ${', name("x"), "\n"]), '"say \\"hi\\" \\${${x}\\n"'),
        (attr(op(name("a"), "??", name("b")), "c"), "(a ?? b).c"),
        (op(op(name("a"), "<", name("b")), "==", lit(True)), "(a < b) == true"),
    ],
)
def test_to_source(expr: Expr, text: str) -> None:
    assert to_source(expr) == text


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values)
def test_equality_is_reflexive_and_not_and_truthiness_agree(value: Any) -> None:
    assert json_equal(value, value)
    assert ev(NotExpr(operand=name("v")), inputs={"v": value}) is (not truthy(value))


@given(json_values, json_values)
def test_equality_is_symmetric(left: Any, right: Any) -> None:
    assert json_equal(left, right) is json_equal(right, left)


@given(st.lists(st.integers(), max_size=5), st.integers(min_value=-8, max_value=8))
def test_optional_index_is_null_exactly_when_out_of_range(items: list[int], i: int) -> None:
    result = ev(idx(name("xs"), i, optional=True), inputs={"xs": items})
    if -len(items) <= i < len(items):
        assert result == items[i]
    else:
        assert result is None
