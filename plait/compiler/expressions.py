"""The one expression toolkit: children, walking and printing of expression trees, and the
did-you-mean helper the compiler's messages share.

Printing round-trips: `parse(to_source(e))` gives `e` again (spans aside), with exactly the
parentheses the tree needs (tests/compiler/test_expressions.py checks it over the test
corpus and over generated trees).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator

from plait.compiler.ir import (
    AttrExpr,
    BinaryExpr,
    CallExpr,
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

# --- structure ------------------------------------------------------------------------------


def children(expr: Expr) -> Iterator[Expr]:
    """The direct sub-expressions of `expr`, in source order (shared by every tree walk)."""
    if isinstance(expr, ListExpr):
        yield from expr.items
    elif isinstance(expr, DictExpr):
        for entry in expr.entries:
            yield entry.value
    elif isinstance(expr, TemplateExpr):
        for part in expr.parts:
            if not isinstance(part, str):
                yield part
    elif isinstance(expr, AttrExpr):
        yield expr.value
    elif isinstance(expr, IndexExpr):
        yield expr.value
        yield expr.index
    elif isinstance(expr, CallExpr):
        yield from expr.args
    elif isinstance(expr, BinaryExpr):
        yield expr.left
        yield expr.right
    elif isinstance(expr, NotExpr):
        yield expr.operand


_LEAVES = frozenset({"literal", "name", "env"})


def walk(expr: Expr, parent: Expr | None = None) -> list[tuple[Expr, Expr | None]]:
    """Every node of the tree with its parent (a parent before its children; siblings may
    come in any order). Iterative, so deep trees are fine; a list rather than a generator and
    dispatched on the `node` tag because this is the compiler's hottest loop."""
    found: list[tuple[Expr, Expr | None]] = []
    add = found.append
    stack: list[tuple[Expr, Expr | None]] = [(expr, parent)]
    pop, push = stack.pop, stack.append
    while stack:
        node, up = pop()
        add((node, up))
        kind = node.node
        if kind in _LEAVES:
            continue
        if kind == "attr":
            push((node.value, node))  # type: ignore[union-attr,arg-type]
        else:
            for child in children(node):
                push((child, node))
    return found


def referenced_names(expr: Expr) -> Iterator[NameExpr]:
    """Every bare name read in `expr`."""
    for node, _ in walk(expr):
        if isinstance(node, NameExpr):
            yield node


def literal_value(expr: Expr) -> tuple[bool, object]:
    """(True, value) when `expr` is made only of literals (lists and dicts included)."""
    if isinstance(expr, LiteralExpr):
        return True, expr.value
    if isinstance(expr, ListExpr):
        values = [literal_value(item) for item in expr.items]
        return all(ok for ok, _ in values), [v for _, v in values]
    if isinstance(expr, DictExpr):
        pairs = [(e.key, literal_value(e.value)) for e in expr.entries]
        return all(ok for _, (ok, _) in pairs), {k: v for k, (_, v) in pairs}
    return False, None


# --- printing -------------------------------------------------------------------------------

# Binding strength, loosest first (SPEC 5); postfix and atoms bind tightest.
_PRECEDENCE = {"??": 1, "or": 2, "and": 3, "not": 4, "compare": 5, "postfix": 6, "atom": 7}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def to_source(expr: Expr) -> str:
    """`expr` in plait syntax, with the parentheses its tree needs."""
    if isinstance(expr, LiteralExpr):
        return _literal_source(expr.value)
    if isinstance(expr, ListExpr):
        return "[" + ", ".join(to_source(item) for item in expr.items) + "]"
    if isinstance(expr, DictExpr):
        entries = (f"{_key_source(e.key)}: {to_source(e.value)}" for e in expr.entries)
        return "{" + ", ".join(entries) + "}"
    if isinstance(expr, TemplateExpr):
        return _template_source(expr)
    if isinstance(expr, NameExpr):
        return expr.name
    if isinstance(expr, EnvExpr):
        return f"env.{expr.name}"
    return _compound_source(expr)


def _compound_source(expr: Expr) -> str:
    if isinstance(expr, AttrExpr):
        return f"{_wrap(expr.value, 6)}{'?.' if expr.optional else '.'}{expr.field}"
    if isinstance(expr, IndexExpr):
        opener = "?[" if expr.optional else "["
        return f"{_wrap(expr.value, 6)}{opener}{to_source(expr.index)}]"
    if isinstance(expr, CallExpr):
        return f"{expr.func}(" + ", ".join(to_source(a) for a in expr.args) + ")"
    if isinstance(expr, NotExpr):
        return f"not {_wrap(expr.operand, _PRECEDENCE['not'])}"
    if isinstance(expr, BinaryExpr):
        own = _binary_precedence(expr)
        # Comparisons do not chain, so both sides must bind tighter; the rest are left-assoc.
        right_min = own + 1
        left_min = own + 1 if own == _PRECEDENCE["compare"] else own
        return f"{_wrap(expr.left, left_min)} {expr.op} {_wrap(expr.right, right_min)}"
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover


def _precedence(expr: Expr) -> int:
    if isinstance(expr, BinaryExpr):
        return _binary_precedence(expr)
    if isinstance(expr, NotExpr):
        return _PRECEDENCE["not"]
    if isinstance(expr, (AttrExpr, IndexExpr, CallExpr)):
        return _PRECEDENCE["postfix"]
    return _PRECEDENCE["atom"]


def _binary_precedence(expr: BinaryExpr) -> int:
    return _PRECEDENCE.get(expr.op, _PRECEDENCE["compare"])


def _wrap(expr: Expr, minimum: int) -> str:
    text = to_source(expr)
    return text if _precedence(expr) >= minimum else f"({text})"


def _literal_source(value: str | int | float | bool | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + _escape(value) + '"'
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return json.dumps(value)


def _escape(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return escaped.replace("${", "\\${")


def _key_source(key: str) -> str:
    return key if _IDENTIFIER.match(key) else '"' + _escape(key) + '"'


def _template_source(expr: TemplateExpr) -> str:
    """A `"..."` string; a `\"\"\"...\"\"\"` one when an interpolation holds a `"` (which a
    `"..."` string cannot hold), its leading blank escaped so dedenting keeps it."""
    pieces = [
        _escape(part) if isinstance(part, str) else "${" + to_source(part) + "}"
        for part in expr.parts
    ]
    for i, piece in enumerate(pieces[:-1]):  # a `$` just before `${` would make `$${`
        if isinstance(expr.parts[i], str) and piece.endswith("$"):
            pieces[i] = piece[:-1] + "\\$"
    if not any(
        '"' in piece
        for piece, part in zip(pieces, expr.parts, strict=True)
        if not isinstance(part, str)
    ):
        return '"' + "".join(pieces) + '"'
    body = "".join(pieces)
    if body[:1] == " ":
        body = "\\u{20}" + body[1:]
    return '"""' + body + '"""'


# --- messages -------------------------------------------------------------------------------


def did_you_mean(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    """A one-element hint tuple "did you mean `x`?" when a close name exists, else ()."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return (f"did you mean `{close[0]}`?",) if close else ()
