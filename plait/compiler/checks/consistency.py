"""The checks of SPEC section 10 (and its share of section 11's list): `guard`, `fresh` and
`compensate` stand where they may and name what they may; conditional writes read a
version; several writes conditioned on one version can all go stale."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, error, warning
from plait.compiler.expressions import children, did_you_mean
from plait.compiler.ir import AttrExpr, Expr, LiteralExpr, NameExpr, Plan, Step
from plait.errors import ErrorKind
from plait.versions import CONDITION_ARGS

READ_TOOLS = frozenset({"http.get", "file.read"})


def check_compensate(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`compensate C`: C is another step, serves only this primary, and compensates nothing
    itself."""
    for step in plan.steps.values():
        target = step.compensate
        if target is None:
            continue
        span = ctx.step_span(step.name, "compensate", target)
        if target not in plan.steps:
            yield error(
                codes.COMPENSATION,
                f"unknown step `{target}` in `compensate` of step `{step.name}`",
                span,
                *did_you_mean(target, plan.steps),
            )
        elif target == step.name:
            yield error(
                codes.COMPENSATION,
                f"step `{step.name}` names itself in `compensate`",
                span,
                "a compensation is another step that undoes this one",
            )
        elif plan.steps[target].compensate is not None:
            yield error(
                codes.COMPENSATION,
                f"compensation `{target}` (of `{step.name}`) cannot carry `compensate`",
                ctx.step_span(target, "policy", "compensate"),
                "a compensation is never compensated itself",
            )
        elif step.is_standby and plan.steps[step.standby_for or ""].compensate == step.name:
            yield error(
                codes.COMPENSATION, f"compensation `{step.name}` cannot carry `compensate`", span
            )


def check_guard(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`guard S`: S is a plain step (not W, a map or a standby) that calls a read."""
    for step in plan.steps.values():
        for target in step.guard:
            span = ctx.step_span(step.name, "guard", target)
            problem = _guard_problem(plan, ctx, step, target)
            if problem is not None:
                message, hint = problem
                yield error(codes.GUARD_TARGET, message, span, *hint)


def _guard_problem(
    plan: Plan, ctx: CheckContext, step: Step, target: str
) -> tuple[str, tuple[str, ...]] | None:
    guarded = plan.steps.get(target)
    where = f"`guard` of step `{step.name}`"
    if guarded is None:
        return f"unknown step `{target}` in {where}", did_you_mean(target, plan.steps)
    if target == step.name:
        return f"step `{step.name}` guards itself", ("guard the steps whose data it acts on",)
    if guarded.is_map:
        return (
            f"map step `{target}` cannot be guarded ({where})",
            ("guard a plain step that reads the data",),
        )
    if guarded.is_standby:
        return None  # reported as a standby referenced (E310)
    not_reads = [
        name
        for name in (target, *guarded.fallback)
        if name in plan.steps and not _is_read(ctx, plan.steps[name].tool)
    ]
    if not_reads:
        tool = plan.steps[not_reads[0]].tool
        return (
            f"step `{not_reads[0]}` calls `{tool}`, which is not a read, so `{target}` "
            f"cannot be guarded ({where})",
            (
                "a guarded step (and its fallbacks) calls `http.get`, `file.read` or a Python "
                "tool registered with `@plait.tool(read=True)`",
            ),
        )
    return None


def _is_read(ctx: CheckContext, tool: str) -> bool:
    if tool in READ_TOOLS:
        return True
    spec = ctx.registry.get(tool)
    return spec is not None and spec.read


def check_fresh(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`fresh` is positive and not on a standby; shorter than `timeout` it is a warning."""
    for step in plan.steps.values():
        if step.fresh is None:
            continue
        span = ctx.step_span(step.name, "policy", "fresh")
        if step.fresh <= 0:
            yield error(
                codes.FRESH_PLACEMENT, f"`fresh` of step `{step.name}` must be positive", span
            )
        elif step.name in ctx.standbys:
            yield error(
                codes.FRESH_PLACEMENT,
                f"standby step `{step.name}` ({ctx.role(step.name)}) cannot carry `fresh`",
                span,
                "standbys are never refreshed; put `fresh` on a step that reads the data",
            )
        elif step.timeout_s is not None and step.fresh < step.timeout_s:
            yield warning(
                codes.FRESH_BELOW_TIMEOUT,
                f"`fresh` of step `{step.name}` is shorter than its `timeout`: its "
                "data may expire while it is read",
                span,
                "make `fresh` at least as long as the `timeout`",
            )


def check_compensation_timeout(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """The deadline does not bound a compensation: without a `timeout` it may hang."""
    for step in plan.steps.values():
        comp = plan.steps.get(step.compensate or "")
        if comp is not None and comp.name != step.name and comp.timeout_s is None:
            yield warning(
                codes.COMPENSATION_WITHOUT_TIMEOUT,
                f"compensation `{comp.name}` has no `timeout`, and the run's "
                "deadline does not apply to compensations",
                ctx.step_span(comp.name),
                f"give `{comp.name}` a `timeout`",
            )


def version_reads(expr: Expr, plan: Plan) -> list[str]:
    """The steps whose `.version` an expression reads."""
    if (
        isinstance(expr, AttrExpr)
        and expr.field == "version"
        and isinstance(expr.value, NameExpr)
        and expr.value.name in plan.steps
    ):
        return [expr.value.name]
    return [name for child in children(expr) for name in version_reads(child, plan)]


def check_conditions(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Warnings on `if_match` / `if_version`: a condition that reads no version, reads an
    unreliable one, or is shared by several writes that do not all retry on stale."""
    sharing: dict[str, list[Step]] = {}
    for step in plan.steps.values():
        arg = CONDITION_ARGS.get(step.tool)
        expr = step.args.get(arg) if arg is not None else None
        if arg is None or expr is None:
            continue
        span = ctx.step_span(step.name, "arg", arg)
        sources = version_reads(expr, plan)
        if not sources:
            if not (isinstance(expr, LiteralExpr) and expr.value in ("*", "")):
                yield warning(
                    codes.WEAK_CONDITION,
                    f"`{arg}` of step `{step.name}` reads no `.version`, so it "
                    "does not say what the write was decided on",
                    span,
                    f"write `{arg} = S.version` for the step S that read the data",
                )
            continue
        for source in dict.fromkeys(sources):
            yield from _unreliable(plan, ctx, step, arg, source)
            sharing.setdefault(source, []).append(step)
    for source, writers in sharing.items():
        many = len(writers) > 1 or any(w.is_map or _repeats_with(plan, w, source) for w in writers)
        if many and not all(_retries_stale(w) for w in writers):
            first = writers[1] if len(writers) > 1 else writers[0]
            yield warning(
                codes.SHARED_CONDITION,
                f"several writes are conditioned on `{source}.version`, not all "
                "with `retry … on stale`",
                ctx.step_span(first.name, "arg", CONDITION_ARGS[first.tool]),
                f"after the first write `{source}.version` changes and the others "
                "go stale: condition each write on the previous write's "
                "`.version`, or add `retry N on stale`",
            )


def _repeats_with(plan: Plan, writer: Step, source: str) -> bool:
    """A body step writes once per iteration (SPEC section 11): with the same `source`
    version in each when `source` is outside the loop."""
    loop = plan.steps.get(writer.in_loop) if writer.in_loop is not None else None
    home = plan.steps.get(source)
    return (
        loop is not None
        and loop.loop is not None
        and loop.loop.max > 1
        and (home is None or home.in_loop != writer.in_loop)
    )


def _unreliable(
    plan: Plan, ctx: CheckContext, step: Step, arg: str, source: str
) -> Iterator[Diagnostic]:
    read = plan.steps[source]
    why = (
        "optional"
        if read.optional
        else "has an `if`"
        if read.condition is not None
        else "has a `fallback`"
        if read.fallback
        else "has a `default`"
        if read.default is not None
        else None
    )
    if why is not None:
        yield warning(
            codes.WEAK_CONDITION,
            f"`{arg}` of step `{step.name}` reads the version of `{source}`, which "
            f"{'is ' if why == 'optional' else ''}{why}: its version may be null or "
            "not the data's",
            ctx.step_span(step.name, "arg", arg),
            f'write `{source}.version ?? "*"` if any version will do',
        )


def _retries_stale(step: Step) -> bool:
    retry = step.retry
    return (
        retry is not None
        and retry.on is not None
        and ErrorKind.STALE in retry.on
        and retry.retries > 0
    )


CHECKS = (check_compensate, check_guard, check_fresh, check_compensation_timeout, check_conditions)
