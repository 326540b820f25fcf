"""Warnings (exit 0; exit 2 with --strict): trigger rules that can never be met, plain access
into outputs that may be null, and steps that look like forgotten standbys."""

from __future__ import annotations

import re
from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.checks.walk import Site
from plait.compiler.diagnostics import Diagnostic, warning
from plait.compiler.expressions import to_source
from plait.compiler.ir import AttrExpr, Expr, IndexExpr, NameExpr, Plan, Step, TriggerRule
from plait.compiler.source import Span

RUN_WITHOUT_DEPENDENCIES = (
    TriggerRule.ALL_SUCCEEDED,
    TriggerRule.ALL_DONE,
    TriggerRule.NONE_FAILED,
)


def check_rule_without_dependencies(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """`any_succeeded`, `any_failed` and `all_failed` are never met without dependencies."""
    for step in ctx.groups.independent:
        if step.depends_on or step.when in RUN_WITHOUT_DEPENDENCIES or step.standby_for is not None:
            continue
        yield warning(
            codes.RULE_WITHOUT_DEPENDENCIES,
            f"`when {step.when}` is never met for step `{step.name}`, which has no "
            "dependencies: it will always be skipped",
            ctx.step_span(step.name, "policy", "when"),
            "add `after STEP` to say which steps the rule watches, or remove `when`",
        )


# --- the routing trap -----------------------------------------------------------------------


def check_skipped_with_condition(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A step under the default rule that depends on a step with `if`: whenever that
    condition is false it is skipped too (`upstream_skipped`), its fallback and default do
    not apply, and the run still succeeds. Usually a branch meant to be joined."""
    gated = {name for name, step in plan.steps.items() if step.condition is not None}
    if not gated:
        return
    for step in plan.steps.values():
        if step.when is not TriggerRule.ALL_SUCCEEDED or step.standby_for is not None:
            continue
        source = next((d for d in step.depends_on if d in gated), None)
        if source is None or _same_condition(plan, step, source):
            continue
        yield warning(
            codes.SKIPPED_WITH_CONDITION,
            f"step `{step.name}` is skipped whenever the `if` of `{source}` is false: "
            f"under the default rule `all_succeeded` a skipped dependency skips it "
            f"too (`upstream_skipped`), its fallback and default do not apply, and "
            f"the run still succeeds",
            ctx.step_span(step.name),
            f"to run `{step.name}` either way, give it `when none_failed` (runs "
            f"unless a dependency failed) and read `{source}.output` with `?.` or "
            "`??`, or `when all_done` (runs whatever its dependencies ended as)",
            f"if `{step.name}` belongs to the branch, give it the same `if`",
        )


def _same_condition(plan: Plan, step: Step, source: str) -> bool:
    """`step` is gated by the same condition as `source`: skipping with it is intended."""
    gate = plan.steps[source].condition
    return (
        step.condition is not None
        and gate is not None
        and to_source(step.condition) == to_source(gate)
    )


# --- nullable access ------------------------------------------------------------------------


def check_nullable_access(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Plain `.`/`[ ]` on `STEP.output` where that output may be null (SPEC sections 5, 9)."""
    for site, node, parent in ctx.of_kind("attr"):  # `STEP.output` is an attr node
        if not isinstance(parent, (AttrExpr, IndexExpr)) or parent.optional:
            continue
        source = _output_of(node)
        if source is None or parent.value is not node:
            continue
        reader = plan.steps.get(site.owner) if site.owner else None
        why = _why_nullable(plan, source, reader, site)
        if why is not None:
            yield _nullable(source, why, parent, node.span)


def _output_of(node: Expr) -> str | None:
    """The step name when `node` is `STEP.output`."""
    if isinstance(node, AttrExpr) and node.field == "output" and isinstance(node.value, NameExpr):
        return node.value.name
    return None


def _why_nullable(plan: Plan, source: str, reader: Step | None, site: Site) -> str | None:
    step = plan.steps.get(source)
    if step is None or source == site.loop_var:
        return None
    if step.optional:
        return f"`{source}` is optional"
    if step.condition is not None:
        return f"`{source}` has an `if` and may be skipped"
    if step.when not in RUN_WITHOUT_DEPENDENCIES:
        return f"`{source}` runs only `when {step.when}` and may be skipped"
    if (
        reader is not None
        and reader.when != TriggerRule.ALL_SUCCEEDED
        and source in reader.depends_on
    ):
        return (
            f"`{reader.name}` runs `when {reader.when}`, so `{source}` may have ended "
            "without output"
        )
    return None


def _nullable(
    source: str, why: str, reader: AttrExpr | IndexExpr, fallback_span: Span | None
) -> Diagnostic:
    access = "`.`" if isinstance(reader, AttrExpr) else "`[ ]`"
    safe = "?." if isinstance(reader, AttrExpr) else "?[ ]"
    return warning(
        codes.NULLABLE_ACCESS,
        f"`{source}.output` may be null here ({why}), and {access} on null is an error",
        reader.span or fallback_span,
        f"use `{safe}` to get null instead, or `?? VALUE` to supply a default",
    )


# --- steps that look like forgotten standbys ------------------------------------------------

STANDBY_WORDS = re.compile(
    r"(^|_)(fallback|backup|standby|spare|secondary|alt|alternative)"
    r"(_|$)|_by_",
    re.IGNORECASE,
)


def check_unused_standby(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A step that looks like a standby nobody names in `fallback`.

    Such a step runs on its own at the start of the run and its output goes nowhere. It
    fires only when all hold: the step is not a standby, has no dependencies, nothing reads
    it or waits for it (no step, no output), and its name says standby (`..._fallback`,
    `backup_...`, `..._by_rules`) or extends the name of another step (`classify_rules` for
    `classify`) that has no `fallback` of its own.
    """
    used: set[str] | None = None  # built for the first step that gets that far (few do)
    standbys = ctx.standbys
    for step in ctx.groups.independent:
        if step.depends_on or step.standby_for is not None or step.name in standbys:
            continue
        if used is None:
            used = _used_steps(plan, ctx)
        if step.name in used:
            continue
        primary = _likely_primary(plan, step.name)
        if primary is None and not STANDBY_WORDS.search(step.name):
            continue
        hint = (
            f"add `fallback {step.name}` to step `{primary}`"
            if primary
            else "name it in the `fallback` of the step it stands in for"
        )
        yield warning(
            codes.UNUSED_STANDBY,
            f"step `{step.name}` looks like a standby, but no `fallback` names it: "
            "it will run on its own and nothing reads its output",
            ctx.step_span(step.name),
            hint,
            "if it is meant to run on its own, read its output in an `output`",
        )


def _used_steps(plan: Plan, ctx: CheckContext) -> set[str]:
    used = set(ctx.read)
    for step in ctx.groups.afters:
        used.update(step.after)
    return used


def _likely_primary(plan: Plan, name: str) -> str | None:
    """The step `name` extends (`classify` for `classify_rules`) when it has no fallback.

    Only the prefixes of `name` that end before a `_` can be that step, so they are looked
    up, longest first (looping over every step for each step was quadratic in the plan).
    """
    cut = name.rfind("_")
    while cut > 0:
        other = plan.steps.get(name[:cut])
        if other is not None and not other.fallback:
            return other.name
        cut = name.rfind("_", 0, cut)
    return None


CHECKS = (
    check_rule_without_dependencies,
    check_nullable_access,
    check_unused_standby,
    check_skipped_with_condition,
)
