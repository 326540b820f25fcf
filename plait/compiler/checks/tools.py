"""Tools: `use` items load, every step's tool exists, and its arguments fit the tool's schema.

Arguments made only of literals are type-checked here; other expressions are checked when
the step runs (SPEC section 4, `invalid_input`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext, did_you_mean, quoted
from plait.compiler.checks.walk import literal_value
from plait.compiler.diagnostics import Diagnostic, error
from plait.compiler.ir import Plan, Step
from plait.stdlib.registry import ToolLoadError, ToolSpec


def check_uses(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Load every `use` target into the plan's registry; a failure is a diagnostic."""
    for index, use in enumerate(plan.uses):
        try:
            ctx.registry.load_use(use.target, ctx.plan_dir)
        except ToolLoadError as exc:
            ctx.use_failed = True
            yield error(codes.USE_NOT_LOADABLE, f"cannot load `use \"{use.target}\"`: {exc}",
                        ctx.span("use", str(index)),
                        "a module is imported by its dotted name (`pkg.module`); a file path "
                        "(`./tools.py`) is relative to the plan's folder")


def check_tools(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Every step calls a registered tool with known, present and well-typed arguments."""
    for step in plan.steps.values():
        spec = ctx.registry.get(step.tool)
        if spec is None:
            if not ctx.use_failed:
                yield _unknown_tool(step, ctx)
            continue
        yield from _check_args(step, spec, ctx)


def _unknown_tool(step: Step, ctx: CheckContext) -> Diagnostic:
    hints = did_you_mean(step.tool, ctx.registry.names())
    if not hints:
        hints = ("`plait tools` lists the available tools; `use \"./file.py\"` loads your own",)
    return error(codes.UNKNOWN_TOOL, f"unknown tool `{step.tool}` in step `{step.name}`",
                 ctx.step_span(step.name, "tool"), *hints)


def _check_args(step: Step, spec: ToolSpec, ctx: CheckContext) -> Iterator[Diagnostic]:
    names = [p.name for p in spec.params]
    for arg, value in step.args.items():
        span = ctx.step_span(step.name, "arg", arg)
        if spec.param(arg) is None:
            if not spec.accepts_extra:
                hints = did_you_mean(arg, names) or (_takes(spec),)
                yield error(codes.UNKNOWN_ARGUMENT,
                            f"`{spec.name}` has no argument `{arg}`", span, *hints)
            continue
        is_literal, literal = literal_value(value)
        problem = spec.literal_error(arg, literal) if is_literal else None
        if problem is not None:
            param = spec.param(arg)
            expected = param.annotation if param else "?"
            yield error(codes.ARGUMENT_TYPE,
                        f"argument `{arg}` of `{spec.name}` expects {expected}: {problem}",
                        value.span or span)
    missing = [p.name for p in spec.params if p.required and p.name not in step.args]
    if missing:
        word = "argument" if len(missing) == 1 else "arguments"
        yield error(codes.MISSING_ARGUMENT,
                    f"step `{step.name}` is missing required {word} {quoted(missing)} "
                    f"of `{spec.name}`",
                    ctx.step_span(step.name, "tool"), _takes(spec))


def _takes(spec: ToolSpec) -> str:
    if not spec.params:
        return f"`{spec.name}` takes no arguments"
    shown = ", ".join(p.name if p.required else f"{p.name} = {_show(p.default)}"
                      for p in spec.params)
    return f"`{spec.name}` takes ({shown})"


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


CHECKS = (check_uses, check_tools)
