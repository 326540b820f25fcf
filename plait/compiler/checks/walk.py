"""Every expression of a plan with where it was written (the tree walks themselves are
in plait/compiler/expressions.py)."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import index
from plait.compiler.index import Site, Visit, index_plan
from plait.compiler.ir import Plan


def step_sites(plan: Plan, step_name: str) -> Iterator[Site]:
    """The expressions of one step: map list, arguments, `if`, `default`."""
    return index.step_sites(plan.steps[step_name])


def sites(plan: Plan) -> Iterator[Site]:
    """Every top-level expression of the plan: steps in file order, then outputs."""
    for name in plan.steps:
        yield from step_sites(plan, name)
    for output in plan.outputs.values():
        yield Site(None, "output", output.name, output.expr)


def flatten(plan: Plan) -> list[Visit]:
    """Every expression node of the plan as (site, node, parent), sites in file order."""
    return index_plan(plan).nodes


__all__ = ["Site", "Visit", "flatten", "sites", "step_sites"]
