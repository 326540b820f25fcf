"""`std.*`: small tools for wiring plans together and for rehearsing failure.

None of them blocks, so all are `async`: they run on the event loop, without the thread a
sync tool gets (a 10,000-step fan-out of `std.echo` spent most of its time starting them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from plait.errors import ErrorKind, error_for_kind
from plait.stdlib.registry import ToolContext, tool


@tool(name="std.echo")
async def echo(value: Any) -> Any:
    """Return `value` unchanged."""
    return value


@tool(name="std.sleep")
async def sleep(seconds: float, value: Any = None) -> Any:
    """Wait `seconds`, then return `value`."""
    await asyncio.sleep(seconds)
    return value


@tool(name="std.fail")
async def fail(message: str, kind: str = "tool_error") -> Any:
    """Always fail with `message` and error kind `kind`."""
    raise error_for_kind(_kind(kind), message)


@tool(name="std.flaky")
async def flaky(
    ctx: ToolContext, fail_times: int, value: Any = None, kind: str = "transient"
) -> Any:
    """Fail the first `fail_times` attempts in a run (per step, and per map element), then
    return `value`."""
    counters: dict[tuple[str, int | None, int | None], int] = ctx.run_state.setdefault(
        "std.flaky", {}
    )
    key = (ctx.step, ctx.iteration, ctx.element)  # per iteration in a loop (SPEC 8)
    seen = counters.get(key, 0) + 1
    counters[key] = seen
    if seen <= fail_times:
        raise error_for_kind(_kind(kind), f"flaky failure {seen} of {fail_times}")
    return value


def _kind(kind: str) -> ErrorKind:
    try:
        return ErrorKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in ErrorKind)
        raise error_for_kind(
            ErrorKind.INVALID_INPUT, f"unknown error kind {kind!r}; known kinds: {known}"
        ) from None
