"""The runtime's side of a tool-calling conversation (SPEC section 11): the `AgentHost` a
conversation of `llm.chat(…, tools = […])` talks to.

Each model request is admitted like an attempt of the step (its breakers, its resources'
and the map's and the plan's slots, rate windows), releasing its slots when the reply
arrives. Each tool call runs under its preset's policies over `defaults` (a tool given by
name: `defaults`), never the step's, and is admitted on its own (its resources and the
plan's slots), so a breaker opened by the agent's calls protects the service from the rest
of the plan too. Tool calls emit `tool_call_started` / `tool_call_finished`, not `attempt_*`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from plait.compiler.ir import Preset, RetryPolicy
from plait.errors import ErrorKind, InvalidInput, ToolError, error_for_kind
from plait.runtime import events as ev
from plait.runtime.expressions import EvalError, evaluate
from plait.runtime.policies.retry import RetryVerdict, fits_deadline, retry_wait, should_retry
from plait.runtime.state import CallResult
from plait.stdlib.agent import AgentTool, ToolCall, ToolResult
from plait.stdlib.registry import ToolSpec

if TYPE_CHECKING:
    from plait.runtime.scheduler import Run, _Attempt

T = TypeVar("T")


class ConversationHost:
    """One attempt's conversation, seen from the scheduler."""

    def __init__(
        self,
        run: Run,
        at: _Attempt,
        parent_call: str | None = None,
        uses: tuple[str, ...] | None = None,
    ) -> None:
        self.run, self.at = run, at
        self.step = at.state.name
        # A sub-agent (an `llm.chat` with `tools` called as a tool): the call running it,
        # and the resources its requests are admitted under (its preset's, not the step's)
        self.parent_call, self.uses = parent_call, uses
        self._start_clock: Callable[[], None] = _no_clock  # (set by `bounded`)

    # --- the step's timeout -------------------------------------------------------------

    async def bounded(
        self, call: Callable[[float | None], Awaitable[CallResult]], timeout_s: float
    ) -> CallResult:
        """Make the conversation (`call(None)`: no timeout of its own) under the step's
        `timeout`, counted from its first request on: waits for slots before it do not
        count (SPEC section 9), tool calls and later waits do. A resumed conversation's
        timeout starts again with the first request or tool call it makes."""
        loop = asyncio.get_running_loop()
        scope = asyncio.timeout(None)

        def start() -> None:
            if scope.when() is None:
                scope.reschedule(loop.time() + timeout_s)

        self._start_clock = start
        try:
            async with scope:
                return await call(None)
        except TimeoutError:
            if not scope.expired():
                raise
            return CallResult(
                False, kind=ErrorKind.TIMEOUT.value, message=f"timed out after {timeout_s:g}s"
            )
        finally:
            self._start_clock = _no_clock

    # --- tools ------------------------------------------------------------------------

    def tools(self, names: list[str]) -> list[AgentTool]:
        return [self._tool(name) for name in names]

    def _tool(self, name: str) -> AgentTool:
        preset = self.run.plan.presets.get(name)
        spec = self._spec(preset.tool if preset is not None else name)
        if preset is None:
            return AgentTool(name, spec)
        return AgentTool(name, spec, frozenset(preset.args), self._py_function(preset))

    def _spec(self, name: str) -> ToolSpec:
        spec = self.run.registry.get(name)
        if spec is None:
            raise InvalidInput(f"llm.chat: unknown tool `{name}` in `tools`")
        return spec

    def _py_function(self, preset: Preset) -> Callable[..., Any] | None:
        """A `py.call` preset shows the model its function's parameters."""
        target = preset.args.get("function")
        if preset.tool != "py.call" or target is None:
            return None
        from plait.stdlib.py import resolve_function

        try:
            value = evaluate(target, self.run._scope(self.at.loop))
            return resolve_function(self.run._context(self.at), str(value))
        except (EvalError, ToolError):
            return None

    # --- model requests ---------------------------------------------------------------

    async def request(self, send: Callable[[], Awaitable[T]]) -> T:
        raised: list[BaseException] = []

        async def invoke() -> CallResult:
            self._start_clock()  # admitted: the step's timeout runs from the first request
            try:
                return CallResult(True, await send())
            except ToolError as exc:
                raised.append(exc)
                return CallResult(False, kind=exc.kind.value, message=exc.message)
            except Exception as exc:  # counted by the breakers as a tool_error
                raised.append(exc)
                return CallResult(False, kind=ErrorKind.TOOL_ERROR.value, message=str(exc))

        sub = self.parent_call is not None
        result = await self.run._admitted_call(
            self.at, invoke, [], uses=self.uses, map_slots=not sub
        )
        if result.ok:
            return result.value  # type: ignore[no-any-return]
        if raised:
            raise raised[0]
        raise error_for_kind(result.kind or ErrorKind.TOOL_ERROR, result.message or "")

    # --- tool calls -------------------------------------------------------------------

    async def run_tool(
        self,
        tool: AgentTool | None,
        call: ToolCall,
        args: dict[str, Any] | None,
        refused: str | None,
    ) -> ToolResult:
        name = tool.name if tool is not None else call.name
        shown = args if args is not None else call.arguments
        common = {
            "step": self.step,
            "iteration": self.at.state.iteration,
            "attempt": self.at.number,
            "element": self.at.element,
            "turn": call.turn,
            "call_id": call.id,
            "tool": name,
            "arguments": shown,
            "parent_call": self.parent_call,
        }
        self.run._emit(ev.ToolCallStarted, **common)
        started = self.run.clock.now()
        if refused is not None or tool is None or args is None:
            result = ToolResult.refused(refused or f"no tool `{call.name}` in `tools`")
        else:
            self._start_clock()  # (a resumed conversation may begin with a tool call)
            result = await self._execute(tool, args, call)
        self.run._emit(
            ev.ToolCallFinished,
            **common,
            status="succeeded" if result.ok else "failed",
            attempts=result.attempts,
            duration_s=round(self.run.clock.now() - started, 6),
            kind=result.kind,
            message=result.message,
        )
        return result

    async def _execute(self, tool: AgentTool, given: dict[str, Any], call: ToolCall) -> ToolResult:
        preset = self.run.plan.presets.get(tool.name)
        defaults = self.run.plan.defaults
        timeout = (
            preset.timeout_s if preset is not None and preset.timeout_s else (defaults.timeout_s)
        )
        retry = preset.retry if preset is not None and preset.retry else defaults.retry
        uses = tuple(sorted(set(preset.uses if preset is not None else ()) | set(defaults.uses)))
        try:
            args = tool.spec.validate_args({**self._fixed(preset), **given})
        except ToolError as exc:
            return ToolResult(False, kind=exc.kind.value, message=exc.message)
        return await self._with_retries(tool.spec, args, timeout, retry, uses, call)

    def _fixed(self, preset: Preset | None) -> dict[str, Any]:
        if preset is None:
            return {}
        scope = self.run._scope(self.at.loop)
        try:
            return {name: evaluate(expr, scope) for name, expr in preset.args.items()}
        except EvalError as exc:
            raise InvalidInput(f"preset `{preset.name}`: {exc.message}") from None

    async def _with_retries(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        timeout: float | None,
        retry: RetryPolicy | None,
        uses: tuple[str, ...],
        call: ToolCall,
    ) -> ToolResult:
        """The call with its preset's retries, under its idempotency key: the
        conversation's plus `/A.T.C` (SPEC section 10)."""
        key = f"/{self.at.number}.{call.turn}.{call.position}"
        from plait.runtime.scheduler import invoke_tool  # the one way a tool is called

        run, number = self.run, 0
        while True:
            number += 1
            ctx = run._context(self.at) if spec.context_param is not None else None
            if ctx is not None:
                ctx.idempotency_key = f"{ctx.idempotency_key}{key}"
                if spec.admits_itself(args):  # a sub-agent: its own conversation
                    ctx.agent = ConversationHost(run, self.at, call.id, uses)
            result = await run._admitted_call(
                self.at,
                lambda ctx=ctx: invoke_tool(
                    spec,
                    args,
                    ctx,
                    timeout,  # type: ignore[misc]
                    run.clock,
                    executor=run._execute,
                ),
                [],
                uses=uses,
                map_slots=False,
            )
            if result.ok:
                return ToolResult(True, _unwrapped(result.value), attempts=number)
            kind = ErrorKind(result.kind or ErrorKind.TOOL_ERROR)
            if should_retry(retry, kind, number) is not RetryVerdict.RETRY or retry is None:
                return ToolResult(False, kind=kind.value, message=result.message, attempts=number)
            wait = retry_wait(retry, number, run.rng, result.hint_s)
            if not fits_deadline(run.clock.now(), wait, run.deadline_at):
                return ToolResult(False, kind=kind.value, message=result.message, attempts=number)
            await run.clock.sleep(wait)

    # --- the journal ------------------------------------------------------------------

    def recorded(self) -> list[dict[str, Any]]:
        if self.parent_call is not None:
            return []  # a sub-agent's call without a recorded result runs again whole
        return self.run.take_conversation(self.at)

    async def record(self, entry: dict[str, Any] | None) -> None:
        save = self.run.opts.record_conversation
        if save is not None and self.parent_call is None:
            at = self.at
            await save((self.step, at.state.iteration, at.element, at.number), entry)


def _no_clock() -> None:
    """No step timeout to start."""


def _unwrapped(value: Any) -> Any:
    """A `Versioned` value (section 10) goes to the model as its value."""
    return getattr(value, "value", value) if type(value).__name__ == "Versioned" else value
