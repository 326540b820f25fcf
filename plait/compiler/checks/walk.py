"""Walking expression trees: every expression of a plan with where it was written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from plait.compiler.ir import (
    DictExpr,
    Expr,
    ListExpr,
    LiteralExpr,
    NameExpr,
    Plan,
    children,
)


@dataclass(frozen=True)
class Site:
    """One top-level expression: `owner` is the step name, or None for a plan `output`.

    `role` is "arg", "map", "if", "default" or "output"; `name` is the argument or output
    name; `loop_var` is the map variable in scope (arguments of a map step only).
    """

    owner: str | None
    role: str
    name: str
    expr: Expr
    loop_var: str | None = None


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
    """The expressions of one step: arguments, map list, `if`, `default`."""
    step = plan.steps[step_name]
    loop_var = step.map.var if step.map is not None else None
    if step.map is not None:
        yield Site(step_name, "map", step.map.var, step.map.over)
    for arg, value in step.args.items():
        yield Site(step_name, "arg", arg, value, loop_var)
    if step.condition is not None:
        yield Site(step_name, "if", "if", step.condition)
    if step.default is not None:
        yield Site(step_name, "default", "default", step.default)


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


Visit = tuple[Site, Expr, "Expr | None"]


def flatten(plan: Plan) -> list[Visit]:
    """Every expression node of the plan as (site, node, parent): walked once, read by many
    checks."""
    found: list[Visit] = []
    add = found.append
    for site in sites(plan):
        expr = site.expr
        if expr.node in _LEAVES:  # most arguments are a literal or a name: skip the walker
            add((site, expr, None))
            continue
        found.extend([(site, node, up) for node, up in walk(expr)])
    return found
