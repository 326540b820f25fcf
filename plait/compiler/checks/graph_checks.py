"""The dependency graph is acyclic; a cycle is named step by step, at its first step."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, Label, error
from plait.compiler.graph import dependency_cycles
from plait.compiler.ir import Plan


def check_cycles(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    for cycle in dependency_cycles(plan, ctx.order):
        first = cycle[0]
        if len(cycle) == 2 and cycle[1] == first:
            yield error(codes.DEPENDENCY_CYCLE, f"dependency cycle: step `{first}` depends on "
                        "itself", ctx.step_span(first),
                        "a step cannot read its own output or wait for itself")
            continue
        chain = ", which depends on ".join(f"`{n}`" for n in cycle[1:])
        labels = tuple(Label(span, f"`{name}` is part of the cycle")
                       for name in dict.fromkeys(cycle[1:-1])
                       if (span := ctx.span("step", name)) is not None)
        yield error(codes.DEPENDENCY_CYCLE,
                    f"dependency cycle: `{first}` depends on {chain}",
                    ctx.step_span(first),
                    "steps run after what they depend on, so a cycle can never start; "
                    "remove one of these references or `after` entries",
                    labels=labels)


CHECKS = (check_cycles,)
