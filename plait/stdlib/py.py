"""`py.call`: call a Python function named `"pkg.module:name"` (or `"./file.py:name"`) with
the step's other arguments. Async targets are awaited; sync ones run in a daemon thread, so a
timeout or cancellation abandons them instead of blocking the run (SPEC section 9), or with
`isolation = "process"` in a worker process that is killed instead (`stdlib.isolation`)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait.errors import InvalidInput
from plait.stdlib.registry import (
    ToolContext,
    ToolLoadError,
    ToolSpec,
    _import_target,
    spec_from_function,
    tool,
)
from plait.stdlib.workers import run_in_thread

MODULES_KEY = "py.call.modules"


@tool(name="py.call")
async def call(ctx: ToolContext, function: str, isolation: str = "thread", **kwargs: Any) -> Any:
    """Call `function = "pkg.module:name"` with the remaining arguments; returns its result.

    `isolation = "process"` runs it in a worker process that is killed on timeout, deadline
    or Ctrl-C (README, "Isolation"); by default a sync function runs in a thread."""
    if isolation not in ("thread", "process"):
        raise InvalidInput(f'py.call: `isolation` must be "thread" or "process", got {isolation!r}')
    if isolation == "process":
        from plait.stdlib.isolation import call_isolated

        resolve_function(ctx, function)  # a wrong name fails here, before any process starts
        return await call_isolated(function, kwargs, ctx, None)
    target, args = prepared_call(ctx, function, kwargs)
    if inspect.iscoroutinefunction(target):
        result = await target(**args)
    else:
        result = await run_in_thread(
            target, args, name=f"plait-py.call-{getattr(target, '__name__', '?')}"
        )
    if inspect.isawaitable(result):
        result = await result
    return result


def prepared_call(
    ctx: ToolContext, function: str, kwargs: dict[str, Any]
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The function `"pkg.module:name"` names and its checked arguments."""
    target = resolve_function(ctx, function)
    return target, _checked_args(target, function, kwargs, ctx)


def resolve_function(ctx: ToolContext, spec: str) -> Callable[..., Any]:
    """Import the module part of `spec` and walk the attribute path after the `:`."""
    module_name, sep, attr_path = spec.rpartition(":")
    if not sep or not module_name or not attr_path:
        raise InvalidInput(
            f'py.call: `function` must look like "pkg.module:name" or '
            f'"./file.py:name", got {spec!r}'
        )
    value: Any = _module(ctx, module_name)
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidInput(f"py.call: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(value):
        raise InvalidInput(f"py.call: {spec!r} is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


def _module(ctx: ToolContext, name: str) -> Any:
    """The module, imported once per run; a module name that is not importable but names a
    file beside the plan (`helpers` -> `./helpers.py`) loads that file."""
    cache: dict[str, Any] = ctx.run_state.setdefault(MODULES_KEY, {})
    if name in cache:
        return cache[name]
    target = name
    beside = Path(ctx.plan_dir) / (name.replace(".", "/") + ".py")
    if not _looks_like_file(name) and not _importable(name) and beside.is_file():
        target = str(beside)
    try:
        module = _import_target(target, Path(ctx.plan_dir))
    except ToolLoadError as exc:
        raise InvalidInput(f"py.call: cannot import {name!r}: {exc}") from None
    cache[name] = module
    return module


def _looks_like_file(name: str) -> bool:
    return name.endswith(".py") or "/" in name or name.startswith(".")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _checked_args(
    target: Callable[..., Any], name: str, kwargs: dict[str, Any], ctx: ToolContext
) -> dict[str, Any]:
    """Check the arguments against the target's type hints (InvalidInput saying why), the
    way a registered tool's are; a target without a readable signature is called as is."""
    try:
        spec: ToolSpec = spec_from_function(target, name)
    except Exception:  # builtins without signatures, unresolvable hints: no checking
        return dict(kwargs)
    args = spec.validate_args(kwargs)
    if spec.context_param:
        args[spec.context_param] = ctx
    return args
