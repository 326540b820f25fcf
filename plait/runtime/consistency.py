"""Consistency with the outside world (SPEC section 10), the parts the scheduler asks about:
conditional-write arguments, and which steps a stale write re-decides over.

The scheduler calls in through a narrow seam; everything here is a pure function over the
IR, so the rules are tested without running anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from plait.compiler.expressions import children
from plait.compiler.ir import AttrExpr, Expr, NameExpr, Plan, Step
from plait.versions import CONDITION_ARGS


def null_condition(step: Step, tool: str, args: Mapping[str, Any]) -> str | None:
    """Why the attempt fails with `invalid_input`: a condition written but null."""
    name = CONDITION_ARGS.get(tool)
    if name is None or name not in step.args or args.get(name) is not None:
        return None
    return (f"argument `{name}` is null, so the write has no condition to check; "
            f"write `S.version ?? \"*\"` to accept any version")


def step_reads(expr: Expr, steps: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(step, field) for every `STEP.field` read in `expr`, in source order."""
    if isinstance(expr, AttrExpr) and isinstance(expr.value, NameExpr) \
            and expr.value.name in steps:
        yield expr.value.name, expr.field
        return
    for child in children(expr):
        yield from step_reads(child, steps)


def arg_reads(step: Step, steps: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(step, field) read by `step`'s arguments (and a map's list), in source order."""
    found: list[tuple[str, str]] = []
    exprs = list(step.args.values())
    if step.map is not None:
        exprs.insert(0, step.map.over)
    for expr in exprs:
        found.extend(step_reads(expr, steps))
    return found


def data_deps(plan: Plan, step: Step) -> list[str]:
    """The steps `step` reads through data references (arguments, map list, `if`,
    `default`): `after` and `guard` edges do not count."""
    exprs = list(step.args.values())
    if step.map is not None:
        exprs.append(step.map.over)
    for extra in (step.condition, step.default):
        if extra is not None:
            exprs.append(extra)
    names: list[str] = []
    for expr in exprs:
        for name, _ in step_reads(expr, plan.steps):
            if name not in names:
                names.append(name)
    return names
