"""Fallback rules (SPEC sections 4 and 9): a standby serves one primary, is read by nothing
else, carries no `when`/`if`/`optional`, and only needs what is finished when its primary
fails."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext, quoted
from plait.compiler.diagnostics import Diagnostic, error
from plait.compiler.ir import Plan, Step
from plait.compiler.source import Span


def check_self_fallback(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    for step in ctx.groups.fallbacks:
        if step.name in step.fallback:
            yield error(
                codes.SELF_FALLBACK,
                f"step `{step.name}` names itself in `fallback`",
                ctx.step_span(step.name, "fallback", step.name),
                "a fallback is another step, tried when this one has failed; "
                "to try again use `retry`",
            )


def check_shared_standby(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    for standby, primaries in ctx.standbys.items():
        if standby not in plan.steps:
            continue
        first = primaries[0]
        if primaries.count(first) > 1:
            yield error(
                codes.STANDBY_SHARED,
                f"step `{standby}` is named twice in the `fallback` of `{first}`",
                ctx.step_span(first, "policy", "fallback"),
                "a standby is tried once; name it once",
            )
        for other in dict.fromkeys(p for p in primaries[1:] if p not in (standby, first)):
            yield error(
                codes.STANDBY_SHARED,
                f"step `{standby}` is already the fallback of `{first}`; "
                "a standby serves exactly one primary",
                ctx.step_span(other, "fallback", standby),
                f"define a second step with the same call for `{other}`",
            )


def check_fallback_cycles(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    fallbacks = {
        step.name: [t for t in step.fallback if t in plan.steps and t != step.name]
        for step in ctx.groups.fallbacks
    }
    # A cycle needs a standby that has standbys itself: usually there is none, and
    # networkx is not imported for nothing.
    if not any(t in fallbacks for targets in fallbacks.values() for t in targets):
        return
    import networkx as nx

    graph = nx.DiGraph([(name, t) for name, targets in fallbacks.items() for t in targets])
    for component in sorted(
        nx.strongly_connected_components(graph), key=lambda c: min(ctx.order[n] for n in c)
    ):
        if len(component) < 2:
            continue
        first = min(component, key=ctx.order.__getitem__)
        cycle = [first]
        while len(cycle) == 1 or cycle[-1] != first:
            cycle.append(next(t for t in plan.steps[cycle[-1]].fallback if t in component))
            if len(cycle) > len(component) + 1:
                break
        chain = ", which falls back to ".join(f"`{n}`" for n in cycle[1:])
        yield error(
            codes.FALLBACK_CYCLE,
            f"fallback cycle: `{first}` falls back to {chain}",
            ctx.step_span(first, "fallback", cycle[1]),
            "a standby cannot fall back, directly or not, to its own primary",
        )


def check_standby_references(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Nothing but `fallback` may name a standby: not an expression, not `after`."""
    standbys = ctx.standbys
    if not standbys:
        return
    steps = plan.steps
    if not standbys.keys().isdisjoint(ctx.read):  # (a scan of strings: usually nothing)
        for _, node, _ in ctx.names:
            name = node.name
            if name in standbys and name in steps:
                yield _referenced(name, ctx.role(name), standbys[name][0], node.span)
    for step in ctx.groups.afters:
        for target in step.after:
            if target in standbys and target in steps:
                yield _referenced(
                    target,
                    ctx.role(target),
                    standbys[target][0],
                    ctx.step_span(step.name, "after", target),
                )
    for step in plan.steps.values():
        for target in step.guard:
            if target in standbys and target in steps:
                yield _referenced(
                    target,
                    ctx.role(target),
                    standbys[target][0],
                    ctx.step_span(step.name, "guard", target),
                )


def _referenced(standby: str, role: str, primary: str, span: Span | None) -> Diagnostic:
    return error(
        codes.STANDBY_REFERENCED,
        f"step `{standby}` is a standby ({role}) and cannot be "
        "referenced by other steps or outputs",
        span,
        f"read `{primary}.output` instead: it carries `{standby}`'s output when "
        "the fallback is used",
    )


def check_standby_policies(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A standby runs only when its primary needs it: `when`, `if` and `optional` make no sense."""
    for name, primaries in ctx.standbys.items():
        step = plan.steps.get(name)
        if step is None:
            continue
        written = {
            "when": ctx.written(name, "when") or step.when != "all_succeeded",
            "if": step.condition is not None,
            "optional": step.optional,
        }
        for policy in (p for p, present in written.items() if present):
            yield error(
                codes.STANDBY_POLICY,
                f"standby step `{name}` ({ctx.role(name)}) cannot carry `{policy}`",
                ctx.step_span(name, "policy", policy),
                "a standby runs only when its primary has failed; put the policy "
                f"on `{primaries[0]}`",
            )


def check_standby_dependencies(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A standby's dependencies must all be finished when its primary fails: they are among
    the primary's dependencies or their ancestors."""
    for name, primaries in ctx.standbys.items():
        step, primary = plan.steps.get(name), plan.steps.get(primaries[0])
        if step is None or primary is None or primary.name == name:
            continue
        wanted = {d for d in step.depends_on if d in plan.steps and d not in ctx.standbys}
        if primary.compensate == name:
            wanted.discard(primary.name)  # a compensation may read its primary
        missing = _not_ancestors(plan, primary, wanted)
        if missing:
            bad = [d for d in step.depends_on if d in missing]
            yield _standby_dependency(step, primary.name, bad, ctx)


def _standby_dependency(step: Step, primary: str, bad: list[str], ctx: CheckContext) -> Diagnostic:
    word = "depends on" if len(bad) == 1 else "depends on each of"
    return error(
        codes.STANDBY_DEPENDENCIES,
        f"standby `{step.name}` {word} {quoted(bad)}, which may not be finished "
        f"when its primary `{primary}` fails",
        ctx.step_span(step.name),
        f"a standby may only depend on steps that `{primary}` itself depends on, "
        f"directly or not; add `after {bad[0]}` to `{primary}`",
    )


def _not_ancestors(plan: Plan, step: Step, wanted: set[str]) -> set[str]:
    """The names in `wanted` that are not ancestors of `step`. Walks up from `step` and stops
    as soon as all are found: a standby usually reads its primary's direct dependencies."""
    missing = set(wanted)
    seen: set[str] = set()
    stack = list(step.depends_on)
    while stack and missing:
        name = stack.pop()
        if name in seen or name not in plan.steps:
            continue
        seen.add(name)
        missing.discard(name)
        stack.extend(plan.steps[name].depends_on)
    return missing


CHECKS = (
    check_self_fallback,
    check_shared_standby,
    check_fallback_cycles,
    check_standby_references,
    check_standby_policies,
    check_standby_dependencies,
)
