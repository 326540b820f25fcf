"""Agents (SPEC section 11): a step's `tools` list and `max_turns`, checked before the run.

`tools` is a literal list of tool names (strings) and preset names; each must exist, and
two may not clash once `.` becomes `_` (the name a model sees). `max_turns` is a literal
from 1 to 100, allowed only with `tools`. Tools that act on the world without a preset
fixing where (`shell.run`, `file.write`, `py.call`, an `http.*` without a fixed `url`) are
warned about: the model would choose what they do.
"""

from __future__ import annotations

from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext
from plait.compiler.diagnostics import Diagnostic, error, warning
from plait.compiler.expressions import did_you_mean
from plait.compiler.ir import Expr, ListExpr, LiteralExpr, NameExpr, Plan, Step
from plait.compiler.source import Span

MAX_TURNS = (1, 100)
RISKY_TOOLS = ("shell.run", "file.write", "py.call")


def check_agents(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    for step in plan.steps.values():
        tools = step.args.get("tools")
        turns = step.args.get("max_turns")
        if tools is None and turns is None:
            continue
        if turns is not None:
            yield from _check_max_turns(step, turns, tools is not None, ctx)
        if tools is not None:
            yield from _check_tools(plan, step, tools, ctx)


def _check_max_turns(
    step: Step, turns: Expr, with_tools: bool, ctx: CheckContext
) -> Iterator[Diagnostic]:
    span = turns.span or ctx.step_span(step.name, "arg", "max_turns")
    if not with_tools:
        yield error(
            codes.AGENT_ARGUMENT,
            f"`max_turns` of step `{step.name}` is allowed only with `tools`",
            span,
            "give the model `tools = [...]`, or drop `max_turns`",
        )
        return
    value = turns.value if isinstance(turns, LiteralExpr) else None
    low, high = MAX_TURNS
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        yield error(
            codes.OUT_OF_RANGE,
            f"`max_turns` must be a whole number from {low} to {high}, written out",
            span,
        )


def tool_entries(tools: Expr) -> list[tuple[str, Expr]] | None:
    """The names a literal `tools` list gives (a string or a bare preset name), or None."""
    if not isinstance(tools, ListExpr):
        return None
    names: list[tuple[str, Expr]] = []
    for item in tools.items:
        if isinstance(item, LiteralExpr) and isinstance(item.value, str):
            names.append((item.value, item))
        elif isinstance(item, NameExpr):
            names.append((item.name, item))
        else:
            return None
    return names


def _check_tools(plan: Plan, step: Step, tools: Expr, ctx: CheckContext) -> Iterator[Diagnostic]:
    span = tools.span or ctx.step_span(step.name, "arg", "tools")
    entries = tool_entries(tools)
    if entries is None:
        yield error(
            codes.AGENT_ARGUMENT,
            f"`tools` of step `{step.name}` must be a list of "
            "tool names (strings) and preset names, written out",
            span,
            'e.g. `tools = [search, "http.get"]`',
        )
        return
    seen: dict[str, str] = {}
    for name, item in entries:
        where = item.span or span
        known = name in plan.presets or ctx.registry.get(name) is not None
        if not known:
            if not ctx.use_failed:
                hints = did_you_mean(name, [*plan.presets, *ctx.registry.names()])
                yield error(
                    codes.UNKNOWN_TOOL,
                    f"unknown tool `{name}` in `tools` of step `{step.name}`",
                    where,
                    *hints,
                )
            continue
        wire = name.replace(".", "_")
        if wire in seen and seen[wire] != name:
            yield error(
                codes.AGENT_ARGUMENT,
                f"`{name}` and `{seen[wire]}` in `tools` of step "
                f"`{step.name}` both reach the model as `{wire}`",
                where,
                "a model sees `.` as `_`: rename a preset",
            )
        seen[wire] = name
        yield from _warn_risky(plan, step, name, where)


def _warn_risky(plan: Plan, step: Step, name: str, span: Span | None) -> Iterator[Diagnostic]:
    preset = plan.presets.get(name)
    tool = preset.tool if preset is not None else name
    fixed = set(preset.args) if preset is not None else set()
    risky = tool in RISKY_TOOLS or (tool.startswith("http.") and "url" not in fixed)
    if risky:
        what = "its `url`" if tool.startswith("http.") else "what it does"
        yield warning(
            codes.RISKY_AGENT_TOOL,
            f"step `{step.name}` lets the model call `{tool}` and choose {what}",
            span,
            "wrap it in a `tool` preset that fixes what the model may not choose",
        )


def check_presets(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """A preset wraps a known tool, not a preset, with arguments that tool has."""
    for preset in plan.presets.values():
        span = ctx.span("preset", preset.name, "tool") or ctx.span("preset", preset.name)
        if ctx.registry.get(preset.name) is not None:
            yield error(
                codes.DUPLICATE_NAME,
                f"the preset `{preset.name}` has the name of a tool",
                ctx.span("preset", preset.name) or span,
                "name the preset after what it is for (`tool search = ...`)",
            )
        if preset.tool in plan.presets:
            yield error(
                codes.UNKNOWN_TOOL,
                f"the preset `{preset.name}` wraps the preset `{preset.tool}`",
                span,
                "a preset wraps a tool, not a preset: "
                f"give `{preset.tool}`'s tool and arguments here",
            )
            continue
        spec = ctx.registry.get(preset.tool)
        if spec is None:
            if not ctx.use_failed:
                yield error(
                    codes.UNKNOWN_TOOL,
                    f"unknown tool `{preset.tool}` in preset `{preset.name}`",
                    span,
                    *did_you_mean(preset.tool, ctx.registry.names()),
                )
            continue
        for arg in preset.args:
            if spec.param(arg) is None and not spec.accepts_extra:
                yield error(
                    codes.UNKNOWN_ARGUMENT,
                    f"`{spec.name}` has no argument `{arg}`",
                    ctx.span("preset", preset.name, "arg", arg) or span,
                    *did_you_mean(arg, [p.name for p in spec.params]),
                )


CHECKS = (check_agents, check_presets)
