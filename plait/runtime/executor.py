"""The one seam through which every tool call goes: `await execute(spec, args, ctx)`.

Async tools run on the event loop, each step of their coroutine timed: a step that held the
loop longer than `BLOCKED_AFTER_S` (a `time.sleep` in an `async def`) is reported through
`on_block`, naming the tool, so the run can record a `loop_blocked` warning. Sync tools run
in a daemon thread (`stdlib.workers`); tools registered with `isolation="process"` in a
worker process that is killed on timeout or cancellation (`stdlib.isolation`).

Whatever the tool returns goes through `values.to_json_value` right after the call (in the
thread or worker process for those), so everything after it sees JSON values only; what
it raises becomes an ordinary exception (`workers.as_failure`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from plait.runtime.values import DEFAULT_OUTPUT_LIMIT, to_json_value
from plait.stdlib.registry import ToolContext, ToolSpec
from plait.stdlib.workers import ToolRaised, as_failure, run_in_thread

# A single step of an async tool longer than this is reported as blocking the loop.
BLOCKED_AFTER_S = 1.0

BlockReport = Callable[[float], None]


async def execute(
    spec: ToolSpec,
    args: dict[str, Any],
    ctx: ToolContext | None,
    *,
    limit: int | None = DEFAULT_OUTPUT_LIMIT,
    on_block: BlockReport | None = None,
) -> Any:
    """Call a tool with validated arguments and return its result as a JSON value.

    Raises what the tool raised (see the module doc), or `values.NotJson` (kind
    `invalid_output`) for a result that is not JSON or is over `limit` bytes. `ctx` may be
    None only for a tool that takes no context."""
    kwargs = args if spec.context_param is None else {**args, spec.context_param: ctx}
    if spec.isolation == "process":
        from plait.stdlib.isolation import run_isolated

        return await run_isolated(spec.func, kwargs, ctx, limit=limit, name=spec.name)
    if not spec.is_async:
        coerce = functools.partial(to_json_value, limit=limit)
        return await run_in_thread(
            spec.func, dict(kwargs), name=f"plait-tool-{spec.name}", finish=coerce
        )
    try:
        value = await _Timed(spec.func(**kwargs), on_block)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise ToolRaised("the tool raised asyncio.CancelledError of its own accord") from None
    except BaseException as exc:  # every failure belongs to the step
        failure = as_failure(exc)
        if failure is exc:
            raise
        raise failure from None
    return to_json_value(value, limit)


class _Timed:
    """Awaits an awaitable, timing each step it runs on the loop."""

    __slots__ = ("awaitable", "on_block")

    def __init__(self, awaitable: Awaitable[Any], on_block: BlockReport | None) -> None:
        self.awaitable, self.on_block = awaitable, on_block

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self.awaitable.__await__()
        if self.on_block is None:
            return (yield from inner)
        send: Any = None
        error: BaseException | None = None
        while True:
            began = time.monotonic()
            try:
                yielded = inner.send(send) if error is None else inner.throw(error)
            except StopIteration as stop:
                if time.monotonic() - began > BLOCKED_AFTER_S:  # (`_check`, inline)
                    self._check(began)
                return stop.value
            except BaseException:
                self._check(began)
                raise
            self._check(began)
            try:
                send, error = (yield yielded), None
            except BaseException as exc:  # handed on to the tool
                send, error = None, exc

    def _check(self, began: float) -> None:
        held = time.monotonic() - began
        if held > BLOCKED_AFTER_S and self.on_block is not None:
            self.on_block(held)
