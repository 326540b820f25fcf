"""Tools: `use` items load, every step's tool exists, and its arguments fit the tool's schema.

Arguments made only of literals are type-checked here; other expressions are checked when
the step runs (SPEC section 4, `invalid_input`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from plait.compiler import codes
from plait.compiler.checks.context import CheckContext, quoted
from plait.compiler.diagnostics import Diagnostic, error, warning
from plait.compiler.expressions import did_you_mean, literal_value
from plait.compiler.ir import Expr, ListExpr, LiteralExpr, Plan, Step
from plait.stdlib.registry import ToolLoadError, ToolSpec, UseNotImported


def check_uses(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Load every `use` target into the plan's registry as `ctx.use_policy` allows (a file
    is read, not imported, unless the plan is run); a failure is a diagnostic."""
    for index, use in enumerate(plan.uses):
        try:
            ctx.registry.load_use(use.target, ctx.plan_dir, ctx.use_policy)
        except UseNotImported:
            ctx.use_failed = True
            yield warning(
                codes.USE_NOT_IMPORTED,
                f'`use "{use.target}"` was not imported (--no-import): the steps '
                "calling its tools are not checked",
                ctx.span("use", str(index)),
                "without --no-import, `plait check` imports a module named by its "
                'dotted name (installed code you trust); `use "./file.py"` is '
                "read without running it",
            )
        except ToolLoadError as exc:
            ctx.use_failed = True
            yield error(
                codes.USE_NOT_LOADABLE,
                f'cannot load `use "{use.target}"`: {exc}',
                ctx.span("use", str(index)),
                "a module is imported by its dotted name (`pkg.module`); a file path "
                "(`./tools.py`) is relative to the plan's folder",
            )


def check_tools(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """Every step calls a registered tool with known, present and well-typed arguments."""
    # Most plans call a few tools many times: each tool is looked up (through the parent
    # registries) and its parameters indexed once per pass, not once per step.
    shapes: dict[str, _Shape | None] = {}
    for step in plan.steps.values():
        if step.loop is not None:
            continue  # a loop calls no tool: its body steps do
        tool = step.tool
        shape = shapes[tool] if tool in shapes else shapes.setdefault(tool, _shape(tool, ctx))
        if shape is None:
            if not ctx.use_failed:
                yield _unknown_tool(step, ctx)
            continue
        yield from _check_args(step, shape, ctx)


class _Shape:
    """A tool's parameters by name, and the names of the required ones."""

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec
        self.params = {p.name: p for p in spec.params}
        self.required = [p.name for p in spec.params if p.required]


def _shape(tool: str, ctx: CheckContext) -> _Shape | None:
    spec = ctx.registry.get(tool)
    return _Shape(spec) if spec is not None else None


def _unknown_tool(step: Step, ctx: CheckContext) -> Diagnostic:
    hints = did_you_mean(step.tool, ctx.registry.names())
    if not hints:
        hints = ('`plait tools` lists the available tools; `use "./file.py"` loads your own',)
    return error(
        codes.UNKNOWN_TOOL,
        f"unknown tool `{step.tool}` in step `{step.name}`",
        ctx.step_span(step.name, "tool"),
        *hints,
    )


_LITERAL_ROOTS = frozenset({"literal", "list", "dict"})  # what `literal_value` may accept


def _check_args(step: Step, shape: _Shape, ctx: CheckContext) -> Iterator[Diagnostic]:
    spec, params = shape.spec, shape.params
    for arg, value in step.args.items():
        param = params.get(arg)
        if param is None:
            if not spec.accepts_extra:
                hints = did_you_mean(arg, params) or (_takes(spec),)
                yield error(
                    codes.UNKNOWN_ARGUMENT,
                    f"`{spec.name}` has no argument `{arg}`",
                    ctx.step_span(step.name, "arg", arg),
                    *hints,
                )
            continue
        if value.node not in _LITERAL_ROOTS:  # a name, a template, ...: checked at run time
            continue
        is_literal, literal = literal_value(value)
        if not is_literal:
            continue
        span = value.span or ctx.step_span(step.name, "arg", arg)
        problem = spec.literal_error(arg, literal)
        if problem is not None:
            yield error(
                codes.ARGUMENT_TYPE,
                f"argument `{arg}` of `{spec.name}` expects {param.annotation}: {problem}",
                span,
            )
        elif spec.arg_checks and (problem := spec.value_error(arg, literal)) is not None:
            yield error(codes.ARGUMENT_TYPE, f"argument `{arg}` of `{spec.name}`: {problem}", span)
    for required in shape.required:
        if required not in step.args:  # (the list of every missing one is built only now)
            yield _missing(step, shape, ctx)
            break


def _missing(step: Step, shape: _Shape, ctx: CheckContext) -> Diagnostic:
    missing = [name for name in shape.required if name not in step.args]
    word = "argument" if len(missing) == 1 else "arguments"
    return error(
        codes.MISSING_ARGUMENT,
        f"step `{step.name}` is missing required {word} {quoted(missing)} of `{shape.spec.name}`",
        ctx.step_span(step.name, "tool"),
        _takes(shape.spec),
    )


def _takes(spec: ToolSpec) -> str:
    if not spec.params:
        return f"`{spec.name}` takes no arguments"
    shown = ", ".join(
        p.name if p.required else f"{p.name} = {_show(p.default)}" for p in spec.params
    )
    return f"`{spec.name}` takes ({shown})"


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})


def check_shell_text(plan: Plan, ctx: CheckContext) -> Iterator[Diagnostic]:
    """W410: `shell.run(cmd = ["sh", "-c", SCRIPT])` whose SCRIPT is built from data. A
    string `cmd` passes each `${...}` as one argument; this form writes the data into the
    shell text itself, so a value can become a command (docs/security.md)."""
    for step in plan.steps.values():
        cmd = step.args.get("cmd") if step.tool == "shell.run" else None
        if not isinstance(cmd, ListExpr):
            continue
        script = _shell_script_item(cmd.items)
        if script is not None and not isinstance(script, LiteralExpr):
            yield warning(
                codes.SHELL_TEXT_FROM_DATA,
                f"step `{step.name}` builds shell text from data: the script of "
                "`sh -c` is not a literal, so a value in it can run as a command",
                script.span or ctx.step_span(step.name, "arg", "cmd"),
                "write `cmd` as a string: each `${...}` is then passed as one "
                'argument ("$1", "$2", ...), never as shell text',
            )


def _shell_script_item(items: list[Expr]) -> Expr | None:
    """The SCRIPT of `[SHELL, ..., "-c", SCRIPT, ...]`, or None for another command."""
    first = items[0] if items else None
    if not (
        isinstance(first, LiteralExpr)
        and isinstance(first.value, str)
        and first.value.rsplit("/", 1)[-1] in _SHELLS
    ):
        return None
    for index, item in enumerate(items[1:-1], start=1):
        if isinstance(item, LiteralExpr) and item.value == "-c":
            return items[index + 1]
    return None


CHECKS = (check_uses, check_tools, check_shell_text)
