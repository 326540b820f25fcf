"""Walking expression trees: every expression of a plan with where it was written."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import index
from plait.compiler.index import Site, Visit, index_plan
from plait.compiler.ir import (
    DictExpr,
    Expr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    Plan,
    children,
)


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
        elif kind == "template":
            for part in node.parts:  # type: ignore[union-attr]
                if not isinstance(part, str):
                    push((part, node))
        else:
            for child in children(node):
                push((child, node))
    return found


_LEAVES = frozenset({"literal", "name", "env"})


def step_sites(plan: Plan, step_name: str) -> Iterator[Site]:
    """The expressions of one step: map list, arguments, `if`, `default`."""
    return index.step_sites(plan.steps[step_name])


def sites(plan: Plan) -> Iterator[Site]:
    """Every top-level expression of the plan: steps in file order, then outputs."""
    for name in plan.steps:
        yield from step_sites(plan, name)
    for output in plan.outputs.values():
        yield Site(None, "output", output.name, output.expr)


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


def referenced_names(expr: Expr) -> Iterator[NameExpr]:
    """Every bare name read in `expr`."""
    for node, _ in walk(expr):
        if isinstance(node, NameExpr):
            yield node


def flatten(plan: Plan) -> list[Visit]:
    """Every expression node of the plan as (site, node, parent), sites in file order."""
    return index_plan(plan).nodes


__all__ = ["Site", "Visit", "flatten", "literal_value", "referenced_names", "sites",
           "step_sites", "walk"]
