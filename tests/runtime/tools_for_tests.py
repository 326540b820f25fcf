"""Tools used by the runtime tests (registered globally under `tt.*`)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from plait.errors import Permanent, RateLimited, Transient
from plait.stdlib.registry import ToolContext, tool

CALLS: dict[str, int] = {}
IN_FLIGHT = {"now": 0, "peak": 0}
STARTS: list[float] = []
_lock = threading.Lock()


def reset() -> None:
    CALLS.clear()
    IN_FLIGHT.update(now=0, peak=0)
    STARTS.clear()
    TASKS_ALIVE.clear()


@tool(name="tt.count")
def count(ctx: ToolContext, value: Any = None) -> Any:
    """Count calls per step (to prove a tool was or was not called)."""
    with _lock:
        CALLS[ctx.step] = CALLS.get(ctx.step, 0) + 1
    return value


@tool(name="tt.busy")
async def busy(seconds: float, value: Any = None) -> Any:
    """Sleep while counting how many calls are in flight at once."""
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["peak"] = max(IN_FLIGHT["peak"], IN_FLIGHT["now"])
    STARTS.append(time.monotonic())
    try:
        await asyncio.sleep(seconds)
    finally:
        IN_FLIGHT["now"] -= 1
    return value


@tool(name="tt.block")
def block(seconds: float) -> str:
    """A sync call that cannot be interrupted."""
    time.sleep(seconds)
    return "done"


TASKS_ALIVE: list[int] = []


@tool(name="tt.tasks_alive")
async def tasks_alive(value: Any = None, hog_s: float = 0.0) -> Any:
    """Note how many asyncio tasks are alive now; with `hog_s`, then hold the event loop
    that long (a call that misbehaves: it blocks the loop from an async tool)."""
    TASKS_ALIVE.append(len(asyncio.all_tasks()))
    if hog_s:
        time.sleep(hog_s)
    return value


@tool(name="tt.hint")
def hint(ctx: ToolContext, retry_after: float, fail_times: int = 1, rate: bool = False) -> str:
    """Fail the first `fail_times` calls with a retry hint."""
    key = f"hint:{ctx.step}"
    n = CALLS[key] = CALLS.get(key, 0) + 1
    if n <= fail_times:
        cls = RateLimited if rate else Transient
        raise cls("slow down", retry_after=retry_after)
    return "ok"


@tool(name="tt.permanent_then_ok")
def permanent_then_ok(ctx: ToolContext) -> str:
    key = f"perm:{ctx.step}"
    n = CALLS[key] = CALLS.get(key, 0) + 1
    if n == 1:
        raise Permanent("no point")
    return "ok"


@tool(name="tt.boom")
def boom() -> None:
    """Any exception is a `tool_error`."""
    raise ValueError("kaput")
