"""Semantic checks: a tuple of small passes over the IR, run in a fixed order.

Each pass is `(plan, ctx) -> Iterator[Diagnostic]`; passes yield, never raise. The order
matters once: `use` items are loaded (tools.check_uses) before tools are looked up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

from plait.compiler.checks import (
    agents,
    consistency,
    fallbacks,
    graph_checks,
    loops,
    policies,
    references,
    tools,
    warnings,
)
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, sort_key
from plait.compiler.index import ExprIndex
from plait.compiler.ir import Plan
from plait.compiler.source import SourceMap
from plait.stdlib.registry import READ_FILES, ToolRegistry, UsePolicy

Check = Callable[[Plan, CheckContext], Iterator[Diagnostic]]

CHECKS: tuple[Check, ...] = (
    *tools.CHECKS,
    *references.CHECKS,
    *agents.CHECKS,
    *policies.CHECKS,
    *fallbacks.CHECKS,
    *loops.CHECKS,
    *graph_checks.CHECKS,
    *consistency.CHECKS,
    *warnings.CHECKS,
)


def run_checks(
    plan: Plan, source: SourceMap, registry: ToolRegistry, plan_dir: Path | None = None
) -> list[Diagnostic]:
    """Every diagnostic of every check, in source order, each carrying the plan's path.

    `registry` receives the tools of the plan's `use` items.
    """
    return check_plan(plan, source, registry, plan_dir)[0]


def check_plan(
    plan: Plan,
    source: SourceMap,
    registry: ToolRegistry,
    plan_dir: Path | None = None,
    index: ExprIndex | None = None,
    *,
    use_policy: UsePolicy = READ_FILES,
) -> tuple[list[Diagnostic], CheckContext]:
    """`run_checks`, also returning the context: its derived facts (which steps each step
    reads) let the graph be built without walking the expressions again. `index` is the
    plan's expressions as `lower_indexed` walked them (else they are walked here)."""
    ctx = CheckContext(
        plan, source, registry, plan_dir or Path.cwd(), index=index, use_policy=use_policy
    )
    found: list[Diagnostic] = []
    for check in CHECKS:
        found.extend(check(plan, ctx))
    found = [d if d.path else dataclasses.replace(d, path=source.path) for d in found]
    return sorted(found, key=sort_key), ctx


__all__ = ["CHECKS", "Check", "CheckContext", "check_plan", "run_checks"]
