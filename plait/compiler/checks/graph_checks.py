"""The dependency graph is acyclic; a cycle is named step by step, at its first step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, Label, error
from plait.compiler.ir import Plan


def check_cycles(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    for cycle in dependency_cycles(plan, ctx.order):
        first = cycle[0]
        if len(cycle) == 2 and cycle[1] == first:
            yield error(
                codes.DEPENDENCY_CYCLE,
                f"dependency cycle: step `{first}` depends on itself",
                ctx.step_span(first),
                "a step cannot read its own output or wait for itself",
            )
            continue
        chain = ", which depends on ".join(f"`{n}`" for n in cycle[1:])
        labels = tuple(
            Label(span, f"`{name}` is part of the cycle")
            for name in dict.fromkeys(cycle[1:-1])
            if (span := ctx.span("step", name)) is not None
        )
        yield error(
            codes.DEPENDENCY_CYCLE,
            f"dependency cycle: `{first}` depends on {chain}",
            ctx.step_span(first),
            "steps run after what they depend on, so a cycle can never start; "
            "remove one of these references or `after` entries",
            labels=labels,
        )


def dependency_cycles(plan: Plan, order: dict[str, int] | None = None) -> list[list[str]]:
    """Each dependency cycle once, as [first, dep, dep-of-dep, ..., first], starting at the
    cycle's first step in file order (SPEC section 9 reports it there); in file order of
    that first step. `order` (step name -> position in the file) saves building it."""
    if order is None:
        order = {name: i for i, name in enumerate(plan.steps)}
    # The usual case: every step depends only on steps above it, so the file order is a
    # topological order and there is no cycle. This test takes a few ms at 10,000 steps
    # and spares `plait check` importing networkx (a tenth of a second or more).
    if in_file_order(plan, order):
        return []
    import networkx as nx

    needs = nx.DiGraph()  # step -> what it depends on: a cycle reads as "a depends on b"
    needs.add_nodes_from(plan.steps)
    needs.add_edges_from(
        (name, dep)
        for name, step in plan.steps.items()
        for dep in step.depends_on
        if dep in plan.steps
    )
    cycles = []
    for component in nx.strongly_connected_components(needs):
        first = min(component, key=order.__getitem__)
        if len(component) > 1 or needs.has_edge(first, first):
            cycles.append(shortest_cycle(needs.subgraph(component), first))
    return sorted(cycles, key=lambda c: order[c[0]])


def shortest_cycle(graph: Any, start: str) -> list[str]:
    """A shortest cycle through `start` in a strongly connected `graph` (breadth first,
    neighbours in name order, so the same plan always names the same cycle)."""
    import networkx as nx

    if graph.has_edge(start, start):
        return [start, start]
    came_from = dict(nx.bfs_predecessors(graph, start, sort_neighbors=sorted))
    reached = [start, *(v for _, v in nx.bfs_edges(graph, start, sort_neighbors=sorted))]
    last = next(node for node in reached if graph.has_edge(node, start))
    path = [last]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return [*reversed(path), start]


def in_file_order(plan: Plan, order: dict[str, int]) -> bool:
    """Whether every step depends only on steps above it (names that are not steps aside)."""
    get = order.get
    for here, step in enumerate(plan.steps.values()):
        for dep in step.depends_on:
            at = get(dep)
            if at is not None and at >= here:
                return False
    return True


CHECKS = (check_cycles,)
