"""Policies and values: resources exist, map-only policies sit on map steps, numbers are in
range, input types are known and defaults match them, a map runs over a list."""

from __future__ import annotations

import math
from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, error
from plait.compiler.expressions import did_you_mean
from plait.compiler.ir import (
    INPUT_TYPES,
    DictExpr,
    Input,
    LiteralExpr,
    Plan,
    RetryPolicy,
    Step,
    TemplateExpr,
    fits_input_type,
    is_input_type,
)
from plait.compiler.source import Span

MAX_RETRIES = 100


def check_resources_used(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Every name in `uses` (on a step or in `defaults`) is a declared resource."""
    known = list(plan.resources)
    for name in plan.defaults.uses:
        if name not in plan.resources:
            yield _unknown_resource(
                name,
                "`defaults`",
                ctx.span("defaults", "uses", name) or ctx.span("defaults", "uses"),
                known,
            )
    resources = plan.resources
    for step in plan.steps.values():
        for name in step.uses:
            if name in resources:  # the usual case: no span to look up
                continue
            own = ctx.span("step", step.name, "uses", name)
            if own or name not in plan.defaults.uses:
                yield _unknown_resource(
                    name,
                    f"step `{step.name}`",
                    own or ctx.step_span(step.name, "policy", "uses"),
                    known,
                )


def _unknown_resource(name: str, where: str, span: Span | None, known: list[str]) -> Diagnostic:
    hints = did_you_mean(name, known) or (f"declare it: `resource {name} {{ concurrency 4 }}`",)
    return error(
        codes.UNKNOWN_RESOURCE, f"unknown resource `{name}` in `uses` of {where}", span, *hints
    )


def check_map_only(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`tolerate` and step `concurrency` mean something only on a map step."""
    for step in ctx.groups.map_policies:
        if step.is_map:
            continue
        for policy, value in (("concurrency", step.concurrency), ("tolerate", step.tolerate)):
            if value is not None:
                yield error(
                    codes.MAP_ONLY_POLICY,
                    f"`{policy}` applies only to map steps, and `{step.name}` is not one",
                    ctx.step_span(step.name, "policy", policy),
                    "a map step reads `step NAME = for x in LIST: TOOL(...)`",
                )


def check_ranges(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Durations, counts, rates and percentages are within their bounds (SPEC section 9)."""
    yield from _positive("deadline", plan.deadline_s, ctx.span("deadline"))
    yield from _at_least_one("plan `concurrency`", plan.concurrency, ctx.span("concurrency"))
    yield from _positive(
        "`defaults` timeout", plan.defaults.timeout_s, ctx.span("defaults", "timeout")
    )
    if plan.defaults.retry is not None:
        yield from _retry(plan.defaults.retry, ctx.span("defaults", "retry"))
    for resource in plan.resources.values():
        yield from _resource_ranges(resource.name, plan, ctx)
    for step in plan.steps.values():
        if _in_range(step):  # the usual case, decided without a generator per step
            continue
        yield from _step_ranges(step, plan, ctx)


def _in_range(step: Step) -> bool:
    """True when `_step_ranges` has nothing to say about the step's own values."""
    timeout, retry, concurrency, tolerate = (
        step.timeout_s,
        step.retry,
        step.concurrency,
        step.tolerate,
    )
    return (
        (timeout is None or timeout > 0)
        and (retry is None or not _retry_is_odd(retry))
        and (concurrency is None or concurrency >= 1)
        and (tolerate is None or 0 <= tolerate <= 100)
    )


def _step_ranges(step: Step, plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    # Values are tested before positions are looked up: this runs for every step.
    def own(policy: str) -> bool:
        return ctx.written(step.name, policy)

    def span(policy: str) -> Span | None:
        return ctx.step_span(step.name, "policy", policy)

    timeout = step.timeout_s
    if (
        timeout is not None
        and timeout <= 0
        and (own("timeout") or timeout != plan.defaults.timeout_s)
    ):
        yield from _positive("timeout", timeout, span("timeout"))
    retry = step.retry
    if (
        retry is not None
        and _retry_is_odd(retry)
        and (own("retry") or retry != plan.defaults.retry)
    ):
        yield from _retry(retry, span("retry"))
    if step.concurrency is not None and step.concurrency < 1:
        yield from _at_least_one("`concurrency`", step.concurrency, span("concurrency"))
    if step.tolerate is not None and not 0 <= step.tolerate <= 100:
        yield error(
            codes.OUT_OF_RANGE,
            f"`tolerate` must be between 0% and 100%, got {_num(step.tolerate)}%",
            span("tolerate"),
        )


def _retry_is_odd(retry: RetryPolicy) -> bool:
    return (
        not 0 <= retry.retries <= MAX_RETRIES
        or retry.backoff_s < 0
        or retry.factor <= 0
        or (retry.max_s is not None and retry.max_s < 0)
        or not all(math.isfinite(x) for x in (retry.backoff_s, retry.factor, retry.max_s or 0.0))
    )


def _resource_ranges(name: str, plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    resource = plan.resources[name]
    where = f"resource `{name}`"
    if resource.rate is not None:
        span = ctx.span("resource", name, "rate") or ctx.span("resource", name)
        if resource.rate.count <= 0 or resource.rate.per_s <= 0:
            yield error(
                codes.OUT_OF_RANGE,
                f"the rate of {where} must be above zero, got "
                f"{_num(resource.rate.count)}/{_duration(resource.rate.per_s)}",
                span,
            )
    yield from _at_least_one(
        f"the `concurrency` of {where}",
        resource.concurrency,
        ctx.span("resource", name, "concurrency"),
    )
    if resource.breaker is not None:
        span = ctx.span("resource", name, "breaker") or ctx.span("resource", name)
        if resource.breaker.failures < 1:
            yield error(
                codes.OUT_OF_RANGE,
                f"the breaker of {where} must open after at least 1 failure, "
                f"got {resource.breaker.failures}",
                span,
            )
        yield from _positive(f"the breaker cooldown of {where}", resource.breaker.cooldown_s, span)


def _retry(retry: RetryPolicy, span: Span | None) -> Iterator[Diagnostic]:
    if not 0 <= retry.retries <= MAX_RETRIES:
        yield error(
            codes.OUT_OF_RANGE,
            f"`retry` takes 0 to {MAX_RETRIES} retries, got {retry.retries}",
            span,
            "for longer waits use a larger `backoff` or `max`",
        )
    if retry.backoff_s < 0 or (retry.max_s is not None and retry.max_s < 0):
        yield error(codes.OUT_OF_RANGE, "a retry `backoff` or `max` cannot be negative", span)
    if retry.factor <= 0:
        yield error(
            codes.OUT_OF_RANGE,
            f"the backoff factor must be above zero, got x{_num(retry.factor)}",
            span,
        )
    if not math.isfinite(retry.factor):
        yield error(
            codes.OUT_OF_RANGE,
            "the backoff factor is too large to be a number",
            span,
            "a factor like x2 or x1.5 doubles or grows each wait",
        )
    if not all(math.isfinite(x) for x in (retry.backoff_s, retry.max_s or 0.0)):
        yield error(codes.OUT_OF_RANGE, "a retry `backoff` or `max` is too large", span)


def _positive(what: str, seconds: float | None, span: Span | None) -> Iterator[Diagnostic]:
    if seconds is not None and seconds <= 0:
        yield error(codes.OUT_OF_RANGE, f"{what} must be positive, got {_duration(seconds)}", span)
    if seconds is not None and not math.isfinite(seconds):
        yield error(codes.OUT_OF_RANGE, f"{what} is too large", span)


def _at_least_one(what: str, value: int | None, span: Span | None) -> Iterator[Diagnostic]:
    if value is not None and value < 1:
        yield error(codes.OUT_OF_RANGE, f"{what} must be at least 1, got {value}", span)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _duration(seconds: float) -> str:
    if seconds != 0 and abs(seconds) < 1:
        return f"{_num(round(seconds * 1000, 3))}ms"
    return f"{_num(seconds)}s"


# --- inputs ---------------------------------------------------------------------------------


def check_inputs(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Input types are known, and a default is a literal of the declared type."""
    for item in plan.inputs.values():
        if not is_input_type(item.type):
            yield error(
                codes.UNKNOWN_TYPE,
                f"unknown type `{item.type}` for input `{item.name}`",
                ctx.span("input", item.name),
                *(
                    did_you_mean(item.type, INPUT_TYPES)
                    or ("types are " + ", ".join(INPUT_TYPES) + " and list[T]",)
                ),
            )
        elif item.has_default and not fits_input_type(item.type, item.default):
            yield _bad_default(item, ctx)


def _bad_default(item: Input, ctx: CheckContext) -> Diagnostic:
    hints = ("use type `any` to allow null",) if item.default is None else ()
    return error(
        codes.INPUT_DEFAULT_TYPE,
        f"the default of input `{item.name}` is {_describe(item.default)}, not {item.type}",
        ctx.span("input", item.name, "default") or ctx.span("input", item.name),
        *hints,
    )


def _describe(value: object) -> str:
    if value is None:
        return "null"
    kinds = {
        bool: "a bool",
        int: "an int",
        float: "a float",
        str: "a string",
        list: "a list",
        dict: "a dict",
    }
    return kinds.get(type(value), type(value).__name__)


# --- map steps ------------------------------------------------------------------------------


def check_map_over(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A map over a literal runs over a list literal (SPEC section 9)."""
    for step in ctx.groups.maps:
        if step.map is None:
            continue
        over = step.map.over
        found = None
        if isinstance(over, LiteralExpr):
            found = _describe(over.value)
        elif isinstance(over, DictExpr):
            found = "a dict"
        elif isinstance(over, TemplateExpr):
            found = "a string"
        if found is not None:
            yield error(
                codes.MAP_OVER_NON_LIST,
                f"step `{step.name}` maps over {found}; a map needs a list",
                over.span or ctx.step_span(step.name, "var"),
                "write a list, e.g. `for x in [1, 2, 3]: ...`",
            )


CHECKS = (check_inputs, check_resources_used, check_map_only, check_ranges, check_map_over)
