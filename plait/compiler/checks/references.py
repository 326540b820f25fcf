"""Names: unknown references, step fields, bare step names, functions, `after`/`fallback`
targets and map variables that shadow a name."""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.checks.walk import Site
from plait.compiler.diagnostics import Diagnostic, error
from plait.compiler.expressions import did_you_mean, literal_value
from plait.compiler.functions import FUNCTIONS, arity_problem, type_problem
from plait.compiler.ir import (
    LOOP_FIELDS,
    STEP_FIELDS,
    AttrExpr,
    CallExpr,
    Expr,
    NameExpr,
    Plan,
    TriggerRule,
)

RUN_FIELDS = ("id",)


def check_references(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Every name read in an expression is an input, a step read through a field, the map
    variable, or `run.id`; every function called exists."""
    inputs, steps = plan.inputs, plan.steps
    for site, node, parent in ctx.names:
        name = node.name
        if (
            name in inputs
            or name == site.loop_var
            or (
                name in steps
                and parent.__class__ is AttrExpr  # `STEP.output` (or another field)
                and parent.value is node
                and parent.field in STEP_FIELDS
            )
        ):
            continue  # the common cases, decided without building a diagnostic
        yield from _check_name(node, parent, site, ctx)
    for _, call, _ in ctx.calls:
        yield from _check_call(call)


def _check_name(
    node: NameExpr, parent: Expr | None, site: Site, ctx: CheckContext
) -> Iterator[Diagnostic]:
    plan = ctx.plan
    name = node.name
    if name == site.loop_var or name in plan.inputs:
        return
    field = parent if isinstance(parent, AttrExpr) and parent.value is node else None
    if name == "loop":
        yield from _check_loop_name(node, field, site, plan)
    elif name in plan.steps:
        fields = LOOP_FIELDS if plan.steps[name].loop is not None else STEP_FIELDS
        yield from _check_field(name, node, field, "step", fields)
    elif name == "run":
        yield from _check_field(name, node, field, "`run`", RUN_FIELDS)
    elif name in plan.presets:
        yield error(
            codes.UNKNOWN_REFERENCE,
            f"`{name}` is a tool preset, not a value",
            node.span,
            f"a preset stands only as a step's tool (`{name}(...)`) and in a `tools` list",
        )
    elif name == "env":
        yield error(
            codes.BARE_STEP_REFERENCE,
            "`env` is used without a variable name",
            node.span,
            "read an environment variable as `env.NAME`",
        )
    else:
        scope = [*plan.inputs, *plan.steps]
        if site.loop_var:
            scope.append(site.loop_var)
        where = f"output `{site.name}`" if site.owner is None else f"step `{site.owner}`"
        hints = (
            _misread_word_hint(name, site)
            or did_you_mean(name, scope)
            or (f"declare it as an input (`input {name}: str`) or define a step named `{name}`",)
        )
        yield error(
            codes.UNKNOWN_REFERENCE,
            f"unknown name `{name}` in {where}: no input or step has this name",
            node.span,
            *hints,
        )


LOOP_NAMES = ("index", "previous")


def _check_loop_name(
    node: NameExpr, attr: AttrExpr | None, site: Site, plan: Plan
) -> Iterator[Diagnostic]:
    """`loop.index` and `loop.previous`, only in a loop's body steps and its `until`."""
    owner = plan.steps.get(site.owner or "")
    inside = owner is not None and (
        owner.in_loop is not None or (owner.loop is not None and site.role == "until")
    )
    if not inside:
        yield error(
            codes.UNKNOWN_REFERENCE,
            "`loop` is read outside a loop's body",
            node.span,
            "`loop.index` and `loop.previous` are valid only in the "
            "body steps of a loop and in its `until`",
        )
        return
    yield from _check_field("loop", node, attr, "`loop`", LOOP_NAMES)


# Literals as other languages spell them (Python's `True`, `None`, ...).
LITERAL_SPELLINGS = {
    "true": "true",
    "false": "false",
    "none": "null",
    "null": "null",
    "nil": "null",
}
TRIGGER_RULES = frozenset(rule.value for rule in TriggerRule)


def _misread_word_hint(name: str, site: Site) -> tuple[str, ...]:
    """A name that is a literal written another language's way, or a trigger rule in `if`."""
    literal = LITERAL_SPELLINGS.get(name.lower())
    if literal is not None and name != literal:
        return (
            f"write `{literal}`: plait's literals are `true`, `false` and `null`, in lower case",
        )
    if name in TRIGGER_RULES:
        return (f"`{name}` is a trigger rule: write `when {name}`; `if` tests data",)
    return ()


def _check_field(
    name: str, node: NameExpr, attr: AttrExpr | None, what: str, fields: tuple[str, ...]
) -> Iterator[Diagnostic]:
    label = f"step `{name}`" if what == "step" else what
    listed = ", ".join(f"`{f}`" for f in fields)
    if attr is None:
        example = f"{name}.{fields[0]}"
        yield error(
            codes.BARE_STEP_REFERENCE,
            f"{label} is used without a field",
            node.span,
            f"read one of its fields ({listed}), e.g. `{example}`",
        )
    elif attr.field not in fields:
        hints = did_you_mean(attr.field, fields) or (f"the fields of {label} are {listed}",)
        yield error(
            codes.UNKNOWN_STEP_FIELD,
            f"{label} has no field `{attr.field}`",
            attr.field_span or attr.span or node.span,
            *hints,
        )


def _check_call(node: CallExpr) -> Iterator[Diagnostic]:
    func = FUNCTIONS.get(node.func)
    if func is None:
        names = ", ".join(f"`{name}`" for name in FUNCTIONS)
        hints = did_you_mean(node.func, FUNCTIONS) or (f"the built-in functions are {names}",)
        yield error(codes.UNKNOWN_FUNCTION, f"unknown function `{node.func}`", node.span, *hints)
        return
    problem = arity_problem(func, len(node.args))
    if problem is not None:
        yield error(codes.UNKNOWN_FUNCTION, problem, node.span, f"call it as `{func.signature}`")
        return
    for position, arg in enumerate(node.args):
        written, value = literal_value(arg)
        if not written:
            continue
        problem = type_problem(func, position, value)
        if problem is not None:
            yield error(codes.ARGUMENT_TYPE, problem, arg.span or node.span)


def check_step_targets(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Every name in `after` and `fallback` is a step of this plan."""
    for step in ctx.groups.targets:
        for policy, targets in (("after", step.after), ("fallback", step.fallback)):
            for target in targets:
                if target in plan.steps:
                    continue
                span = ctx.step_span(step.name, policy, target)
                if target in plan.inputs or target in plan.presets:
                    kind = "an input" if target in plan.inputs else "a tool preset"
                    yield error(
                        codes.UNKNOWN_STEP,
                        f"`{target}` in `{policy}` is {kind}, not a step",
                        span,
                        f"`{policy}` takes step names",
                    )
                else:
                    yield error(
                        codes.UNKNOWN_STEP,
                        f"unknown step `{target}` in `{policy}` of step `{step.name}`",
                        span,
                        *did_you_mean(target, plan.steps),
                    )


def check_loop_vars(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A map's loop variable may not shadow an input or a step (SPEC section 9)."""
    for step in ctx.groups.maps:
        if step.map is None:
            continue
        var = step.map.var
        kind = "input" if var in plan.inputs else "step" if var in plan.steps else None
        if kind is not None:
            yield error(
                codes.LOOP_VAR_SHADOWS,
                f"loop variable `{var}` of step `{step.name}` shadows the {kind} `{var}`",
                ctx.step_span(step.name, "var"),
                "rename the loop variable",
            )


CHECKS = (check_references, check_step_targets, check_loop_vars)
