"""Loops and the presets of agents (SPEC section 11): what a loop may hold and name, where
its standbys stand, its `max` and `every`, `loop.previous.` without `?.`, and presets
whose `tools` lead back to themselves.

A loop holds `timeout`, `optional`, `fallback`, `default`, `when`, `if` and `after`; its
`if`, `default` and `after` are decided before the body runs, so they may not name body
steps. A standby stands where its primary does: a body step's fallbacks and compensation
in its body, a loop's fallbacks outside it; a loop is never a standby.
"""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.agents import tool_entries
from plait.compiler.checks.context import CheckContext, quoted
from plait.compiler.diagnostics import Diagnostic, error, warning
from plait.compiler.ir import AttrExpr, IndexExpr, NameExpr, Plan, Step
from plait.compiler.source import Span

MAX_ITERATIONS = (1, 10_000)
LOOP_POLICIES = frozenset({"timeout", "optional", "fallback", "default", "when", "if", "after"})


def _loops(plan: Plan) -> list[Step]:
    return [step for step in plan.steps.values() if step.loop is not None]


def check_loop_settings(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`max` from 1 to 10 000, a positive `every`, and only a loop's own policies."""
    loops = _loops(plan)
    if not loops:
        return
    low, high = MAX_ITERATIONS
    for step in loops:
        assert step.loop is not None
        if not low <= step.loop.max <= high:
            yield error(
                codes.OUT_OF_RANGE,
                f"`max` of loop `{step.name}` must be a whole number from {low} to 10 000, "
                f"not {step.loop.max}",
                ctx.step_span(step.name, "max"),
                "a loop is bounded: give the most iterations it may take",
            )
        if step.loop.every_s is not None and step.loop.every_s <= 0:
            yield error(
                codes.OUT_OF_RANGE,
                f"`every` of loop `{step.name}` must be positive",
                ctx.step_span(step.name, "every"),
                "drop `every` to start each iteration at once",
            )
    yield from _foreign_policies(ctx, {s.name for s in loops})


def _foreign_policies(ctx: CheckContext, loops: set[str]) -> Iterator[Diagnostic]:
    for key, span in ctx.source.spans.items():
        if len(key) != 4 or key[0] != "step" or key[2] != "policy" or key[1] not in loops:
            continue
        policy = key[3]
        if policy in LOOP_POLICIES:
            continue
        yield error(
            codes.FRESH_PLACEMENT if policy == "fresh" else codes.LOOP_PLACEMENT,
            f"loop `{key[1]}` cannot carry `{policy}`",
            span,
            "a loop holds timeout, optional, fallback, default, when, if and after; "
            f"put `{policy}` on the body steps that need it",
        )


def check_loop_reads(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A loop's `if`, `default` and `after` are decided outside its iterations: they may
    not name its body steps (`until` may)."""
    loops = {s.name: set(s.loop.body) for s in _loops(plan) if s.loop is not None}
    if not loops:
        return
    for (site, node, _), name in zip(ctx.names, ctx.read, strict=True):
        body = loops.get(site.owner or "")
        if body is not None and site.role in ("if", "default") and name in body:
            yield _reads_body(site.owner or "", f"`{site.role}`", name, node.span)
    for loop, body in loops.items():
        for target in plan.steps[loop].after:
            if target in body:
                span = ctx.span("step", loop, "after", target)
                yield _reads_body(
                    loop, "`after`", target, span or ctx.step_span(loop, "policy", "after")
                )


def _reads_body(loop: str, what: str, step: str, span: Span | None) -> Diagnostic:
    return error(
        codes.LOOP_PLACEMENT,
        f"{what} of loop `{loop}` names its body step `{step}`",
        span,
        f"the loop's {what} is decided before any iteration; to stop the loop on "
        f"`{step}`, write it in `until`",
    )


def check_loop_standbys(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A standby stands where its primary does; a loop is never a standby."""
    if not any(s.loop is not None or s.in_loop is not None for s in plan.steps.values()):
        return
    for standby, primaries in ctx.standbys.items():
        step = plan.steps.get(standby)
        if step is None:
            continue
        span = _named_at(ctx, primaries[0], standby)
        if step.loop is not None:
            yield error(
                codes.LOOP_PLACEMENT,
                f"loop `{standby}` cannot be a standby ({ctx.role(standby)})",
                span,
                "a loop is neither a fallback nor a compensation; make a step the standby",
            )
            continue
        for primary in primaries:
            owner = plan.steps.get(primary)
            if owner is not None and _home(owner) != step.in_loop:
                yield _misplaced(standby, ctx.role(standby), owner, span)


def _home(primary: Step) -> str | None:
    """Where a primary's standbys must stand: a body step's in its loop's body, a loop's
    and any other step's outside every loop."""
    return primary.in_loop


def _named_at(ctx: CheckContext, primary: str, standby: str) -> Span | None:
    """Where `primary` names `standby` (its `fallback` or `compensate`), else the standby."""
    return (
        ctx.span("step", primary, "fallback", standby)
        or ctx.span("step", primary, "policy", "compensate")
        or ctx.span("step", standby)
        or ctx.span("loop", standby)
    )


def _misplaced(standby: str, role: str, primary: Step, span: Span | None) -> Diagnostic:
    if primary.in_loop is not None:
        where = f"in the body of loop `{primary.in_loop}`, with `{primary.name}`"
    else:
        where = "outside every loop body"
    return error(
        codes.LOOP_PLACEMENT,
        f"standby `{standby}` ({role}) must be {where}",
        span,
        "a body step's standbys are in its body; a loop's fallbacks, and other steps', outside it",
    )


def check_previous_access(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`loop.previous.X` is an error in the first iteration, where `loop.previous` is null."""
    for _site, node, parent in ctx.of_kind("attr"):
        if not (
            isinstance(node, AttrExpr)
            and node.field == "previous"
            and isinstance(node.value, NameExpr)
            and node.value.name == "loop"
            and isinstance(parent, (AttrExpr, IndexExpr))
            and parent.value is node
            and not parent.optional
        ):
            continue
        yield warning(
            codes.NULLABLE_ACCESS,
            "`loop.previous` is null in a loop's first iteration, and "
            f"{'`.`' if isinstance(parent, AttrExpr) else '`[ ]`'} on null is an error",
            parent.span or node.span,
            "write `loop.previous?.STEP.output` to get null in the first iteration",
        )


def check_tools_cycles(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A preset whose `tools` (an agent as a tool) lead back to itself would recurse."""
    edges = [
        (preset.name, name)
        for preset in plan.presets.values()
        if "tools" in preset.args
        for name, _ in tool_entries(preset.args["tools"]) or []
        if name in plan.presets
    ]
    if not edges:
        return
    import networkx as nx  # (only here: `plait check` of other plans stays light)

    graph: nx.DiGraph[str] = nx.DiGraph(edges)
    reported: set[str] = set()
    for cycle in sorted(sorted(c) for c in nx.simple_cycles(graph)):
        if reported.intersection(cycle):
            continue
        reported.update(cycle)
        first = cycle[0]
        who = (
            f"the preset `{first}` lists itself"
            if len(cycle) == 1
            else f"the presets {quoted(cycle)} list each other"
        )
        yield error(
            codes.TOOLS_CYCLE,
            f"{who} in `tools`: a model calling `{first}` could call it again without end",
            ctx.span("preset", first, "arg", "tools") or ctx.span("preset", first),
            "an agent preset may list other tools, not one that leads back to it",
        )


CHECKS = (
    check_loop_settings,
    check_loop_reads,
    check_loop_standbys,
    check_previous_access,
    check_tools_cycles,
)
