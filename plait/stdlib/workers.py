"""Where tool code runs besides the event loop: daemon threads, and what a call leaves behind.

A sync function runs in a fresh daemon thread per call, not `asyncio.to_thread`: the default
executor is joined at loop shutdown, so a call that cannot be interrupted would keep a
timed-out run (and the process) alive. A cancelled call is abandoned: its thread finishes
(or not) on its own and its result is dropped. The runtime still needs to know it is
running (an abandoned attempt keeps its concurrency slot until its thread really ends), so
the thread's end is reported to the `CallWatch` of the call, if the runtime set one.

Whatever a tool raises becomes an ordinary exception here: `SystemExit` (a tool calling
`sys.exit`), `KeyboardInterrupt`, `GeneratorExit` and other `BaseException`s are failures
of that call (kind `tool_error`), never a reason for plait to exit; `StopIteration`, which
an asyncio future refuses, too. Only a real Ctrl-C or SIGTERM to plait interrupts a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from plait.errors import ToolError


class ToolRaised(ToolError):
    """A tool raised something an exception handler would not see as an error (`SystemExit`,
    `KeyboardInterrupt`, `StopIteration`, ...): kind `tool_error`, saying what it was."""


def as_failure(exc: BaseException) -> BaseException:
    """The exception to report for what a tool raised: ordinary ones as they are, the
    others (see the module doc) as a `ToolRaised` naming them."""
    if isinstance(exc, Exception) and not isinstance(exc, (StopIteration, StopAsyncIteration)):
        return exc
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        text = f"the tool called sys.exit({exc.code!r})"
    elif isinstance(exc, KeyboardInterrupt):
        text = "the tool raised KeyboardInterrupt (only Ctrl-C sent to plait stops a run)"
    else:
        detail = str(exc)
        text = f"{name}: {detail}" if detail else f"the tool raised {name}"
    return ToolRaised(text)


@dataclass
class CallWatch:
    """What the runtime learns about one tool call: workers still running after the call
    was given up (each a future the loop resolves when its worker ends)."""

    tool: str = ""
    stragglers: list[asyncio.Future[float]] = field(default_factory=list)


# Set by the runtime around a tool call (a task's context: the tool's own awaits see it).
current_call: ContextVar[CallWatch | None] = ContextVar("plait_current_call", default=None)


async def run_in_thread(
    func: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    name: str,
    finish: Callable[[Any], Any] | None = None,
) -> Any:
    """`func(**kwargs)` in a daemon thread, then `finish(result)` there too (the JSON
    coercion, so a lazy generator is consumed off the loop); awaits the result. Cancelling
    the await abandons the thread and tells the call's watch when the thread ends."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ended: list[asyncio.Future[float]] = []  # set when the call is abandoned
    lock = threading.Lock()
    finished: list[bool] = []  # non-empty once the thread is done (under `lock`)

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = func(**kwargs)
            if finish is not None:
                result = finish(result)
            outcome: tuple[bool, Any] = (True, result)
        except BaseException as exc:  # every failure belongs to the step
            outcome = (False, as_failure(exc))
        with lock:
            finished.append(True)
            waiters = list(ended)
        with contextlib.suppress(RuntimeError):  # the loop closed while we ran: abandoned
            loop.call_soon_threadsafe(settle, *outcome)
            for waiter in waiters:
                loop.call_soon_threadsafe(_resolve, waiter, time.monotonic())

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        return await future
    except asyncio.CancelledError:
        _abandon(loop, ended, finished, lock)
        raise


def _abandon(
    loop: asyncio.AbstractEventLoop,
    ended: list[asyncio.Future[float]],
    finished: list[bool],
    lock: threading.Lock,
) -> None:
    watch = current_call.get()
    if watch is None:
        return
    waiter: asyncio.Future[float] = loop.create_future()
    with lock:
        if finished:
            return
        ended.append(waiter)
    watch.stragglers.append(waiter)


def _resolve(waiter: asyncio.Future[float], when: float) -> None:
    if not waiter.done():
        waiter.set_result(when)


# --- child processes that die with plait -------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's `prctl`, loaded before any fork (loading it in a forked child could deadlock)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def child_options() -> dict[str, Any]:
    """Options for `asyncio.create_subprocess_exec` (or `subprocess.Popen`) that make a
    child its own process group (so a timeout can end it and all it started) and, on Linux,
    make the kernel SIGKILL it when plait dies, even by `kill -9` (`PR_SET_PDEATHSIG`), so a
    command's side effects never happen after its run is gone (and `plait resume` does not
    repeat them). Elsewhere the process group is what a timeout or Ctrl-C ends."""
    import os
    import signal

    options: dict[str, Any] = {"start_new_session": True}
    prctl = _prctl
    if prctl is None:
        return options
    parent = os.getpid()

    def die_with_parent() -> None:  # runs in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # plait died before the line above took effect
            os._exit(1)

    options["preexec_fn"] = die_with_parent
    return options
