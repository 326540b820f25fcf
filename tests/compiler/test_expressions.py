"""The expression toolkit (plait/compiler/expressions.py): printing round-trips.

For every expression of the test corpus and for generated trees, parse(to_source(e)) == e,
spans aside: the printer writes exactly the parentheses the tree needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from plait.compiler import nodes
from plait.compiler.expressions import children, did_you_mean, to_source, walk
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
from plait.compiler.parse import parse

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted([*ROOT.glob("tests/**/*.agent"), *ROOT.glob("examples/*.agent")])
_SPANS = {"span", "field_span", "key_span"}


def shape(value: Any) -> Any:
    """An expression as plain data without positions (what the round trip must keep)."""
    if isinstance(value, BaseModel):
        return {k: shape(v) for k, v in value.__dict__.items() if k not in _SPANS}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return (type(value).__name__, value)


def reparse(source: str) -> Expr:
    tree, diagnostics = parse(f"plan p {{\n  output o = {source}\n}}\n", "t.agent")
    assert diagnostics == [], (source, diagnostics)
    assert tree is not None
    item = tree.items[0]
    assert isinstance(item, nodes.OutputNode)
    return item.expr


def expressions_of(tree: nodes.PlanNode) -> list[Expr]:
    """The top-level expressions written in a plan."""
    found: list[Expr] = []
    for item in tree.items:
        if isinstance(item, nodes.OutputNode):
            found.append(item.expr)
        elif isinstance(item, nodes.InputNode) and item.default is not None:
            found.append(item.default)
        elif isinstance(item, nodes.StepNode):
            found += [arg.value for arg in item.call.args]
            if item.map is not None:
                found.append(item.map.over)
            for policy in item.policies:
                if isinstance(policy, nodes.IfPolicy):
                    found.append(policy.condition)
                elif isinstance(policy, nodes.DefaultPolicy):
                    found.append(policy.value)
    return found


def corpus_expressions() -> list[Expr]:
    found: list[Expr] = []
    for path in CORPUS:
        tree, diagnostics = parse(path.read_text(encoding="utf-8"), str(path))
        if tree is not None and not any(d.code.id.startswith("E1") for d in diagnostics):
            found += expressions_of(tree)
    return found


def test_the_corpus_has_expressions() -> None:
    assert len(CORPUS) >= 15
    assert len(corpus_expressions()) > 100


@pytest.mark.parametrize("expr", corpus_expressions(), ids=to_source)
def test_corpus_expressions_round_trip(expr: Expr) -> None:
    assert shape(reparse(to_source(expr))) == shape(expr)


@pytest.mark.parametrize(
    ("source", "printed"),
    [
        ("(a ?? b) == 1", "(a ?? b) == 1"),
        ("a ?? b == 1", "a ?? b == 1"),
        ("not (a == b)", "not a == b"),
        ("(not a) == b", "(not a) == b"),
        ("(a or b) and c", "(a or b) and c"),
        ("a ?? (b ?? c)", "a ?? (b ?? c)"),
        ("(a < b).x", "(a < b).x"),
        ('"$${x}"', '"\\${x}"'),
        ('"\\$${x}"', '"\\$${x}"'),
        ('"""${a ?? "none"}!"""', '"""${a ?? "none"}!"""'),
        ('"""\\u{20}\\u{20}${a ?? "b"}"""', '"""\\u{20} ${a ?? "b"}"""'),
    ],
)
def test_printing_keeps_the_meaning(source: str, printed: str) -> None:
    expr = reparse(source)
    assert to_source(expr) == printed
    assert shape(reparse(printed)) == shape(expr)


# --- generated trees --------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "ticket", "classify", "x_1", "max", "rate", "run"])
FIELDS = st.sampled_from(["output", "status", "max", "not", "in", "step", "id", "k"])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
LITERALS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
).map(lambda value: LiteralExpr(value=value))
OPS = st.sampled_from(["??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in"])


def _compound(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(AttrExpr, value=inner, field=FIELDS, optional=st.booleans()),
        st.builds(IndexExpr, value=inner, index=inner, optional=st.booleans()),
        st.builds(
            CallExpr, func=st.sampled_from(["len", "keys"]), args=st.lists(inner, max_size=2)
        ),
        st.builds(BinaryExpr, op=OPS, left=inner, right=inner),
        st.builds(NotExpr, operand=inner),
        st.builds(ListExpr, items=st.lists(inner, max_size=3)),
        st.builds(
            DictExpr,
            entries=st.lists(
                st.builds(DictEntry, key=st.one_of(NAMES, TEXT), value=inner), max_size=2
            ),
        ),
    )


LEAVES = st.one_of(
    LITERALS,
    st.builds(NameExpr, name=NAMES),
    st.builds(EnvExpr, name=st.sampled_from(["HOME", "API_KEY"])),
)
# Inside `${...}` a `{` cannot be written (the first `}` would end it): no dicts there.
PLAIN = st.recursive(
    LEAVES,
    lambda inner: _compound(inner).filter(
        lambda e: not any(isinstance(n, DictExpr) for n, _ in walk(e))
    ),
    max_leaves=6,
)


@st.composite
def templates(draw: st.DrawFn) -> TemplateExpr:
    """A string with interpolations, as the parser builds it: text and expressions
    alternate, no empty text, at least one expression."""
    parts: list[str | Expr] = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(TEXT)
        if text:
            parts.append(text)
        parts.append(draw(PLAIN))
    tail = draw(TEXT)
    if tail:
        parts.append(tail)
    return TemplateExpr(parts=parts)


EXPRESSIONS = st.recursive(st.one_of(LEAVES, templates()), _compound, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS)
def test_generated_expressions_round_trip(expr: Expr) -> None:
    assert shape(reparse(to_source(expr))) == shape(expr)


def test_walk_visits_every_node_once_with_its_parent() -> None:
    expr = reparse('[a.b, {k: not c}, "${d}", len(e)[0]]')
    visited = walk(expr)
    assert len(visited) == len({id(node) for node, _ in visited})
    for node, parent in visited:
        if parent is not None:
            assert any(child is node for child in children(parent))
    names = sorted(n.name for n, _ in visited if isinstance(n, NameExpr))
    assert names == ["a", "c", "d", "e"]


def test_did_you_mean() -> None:
    assert did_you_mean("clasify", ["classify", "draft"]) == ("did you mean `classify`?",)
    assert did_you_mean("zzz", ["classify"]) == ()
