"""The one seam through which every tool call goes: `await execute(spec, args, ctx)`.

Async tools run on the event loop. A sync tool runs in a fresh daemon thread per call,
not `asyncio.to_thread`: the default executor is joined at loop shutdown, so a sync call
that cannot be interrupted would keep a timed-out or cancelled run (and the process) alive.
Here a cancelled call is simply abandoned: its thread finishes (or not) on its own, its
result is dropped, and being a daemon it never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable
from typing import Any

from plait.stdlib.registry import ToolContext, ToolSpec


def execute(spec: ToolSpec, args: dict[str, Any], ctx: ToolContext | None) -> Awaitable[Any]:
    """Call a tool with validated arguments: `await` the result; exceptions propagate as
    raised by the tool (when awaited, or at once for arguments the function does not take).

    `ctx` may be None only for a tool that takes no context. Not itself a coroutine: an
    async tool's own awaitable is handed back (one coroutine less per call)."""
    kwargs = args if spec.context_param is None else {**args, spec.context_param: ctx}
    if spec.is_async:
        return spec.func(**kwargs)  # type: ignore[no-any-return]
    return _in_daemon_thread(spec, dict(kwargs))


async def _in_daemon_thread(spec: ToolSpec, kwargs: dict[str, Any]) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():  # cancelled meanwhile: the result is abandoned
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = spec.func(**kwargs)
        except BaseException as exc:  # handed to the loop, which re-raises it in the step
            _post(loop, deliver, False, exc)
        else:
            _post(loop, deliver, True, result)

    threading.Thread(target=work, name=f"plait-tool-{spec.name}", daemon=True).start()
    return await future


def _post(loop: asyncio.AbstractEventLoop, deliver: Any, ok: bool, value: Any) -> None:
    # the loop may have closed while an abandoned call was still running
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(deliver, ok, value)
