"""Loops (SPEC section 11): `loop NAME max N [until EXPR] [every DUR] { ... }`.

A loop is one node of the run's graph. Each iteration runs its body as a small plan with
the scheduler's own machinery: the body steps get fresh states (so attempts, `std.flaky`
and `--inject` count per iteration, while resources, breakers and scripted `times` stay
shared), are decided as their body dependencies finish, and run in a task group of their
own, which the loop's `timeout` can cancel. When every body step is terminal, `until` is
evaluated with `loop.index` and `loop.previous` in scope.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from plait.compiler.expressions import to_source, walk
from plait.compiler.ir import NameExpr, Plan
from plait.errors import ErrorKind
from plait.runtime import events as ev
from plait.runtime import outcomes
from plait.runtime.expressions import OUTPUT_STATUSES, EvalError, evaluate, truthy
from plait.runtime.state import CallResult, StepState

if TYPE_CHECKING:
    from plait.runtime.scheduler import Run

# What `loop.previous.STEP` holds of each body step of the previous iteration.
PREVIOUS_FIELDS = ("output", "status", "error", "attempts", "version", "read_at")


class LoopRun:
    """One loop's iterations; `await LoopRun(run, st).execute()` gives the loop's result."""

    def __init__(self, run: Run, st: StepState) -> None:
        assert st.step.loop is not None
        self.run, self.st, self.spec = run, st, st.step.loop
        self.body = [name for name in self.spec.body if name in run.states]
        inside = set(self.body)
        self.outside = {name: outside_reads(run.plan, name, inside) for name in self.body}
        self.rescued = False  # a body step recovered, or an optional one failed

    async def execute(self) -> CallResult:
        timeout = self.st.step.timeout_s
        try:
            if timeout is None:
                return await self._iterations()
            async with asyncio.timeout(timeout):
                return await self._iterations()
        except TimeoutError:
            self._close_after_timeout()
            return CallResult(
                False,
                kind=ErrorKind.TIMEOUT.value,
                message=f"the loop timed out after {timeout:g}s",
                retry="not_retryable",
            )

    async def _iterations(self) -> CallResult:
        first, previous = self._resume_point()
        kept = self._recorded(first)
        for index in range(first, self.spec.max):
            if index > first and self.spec.every_s:
                await self.run.clock.sleep(self.spec.every_s)  # holding no slot
            self.st.attempts = index + 1
            scope = {"loop": {"index": index, "previous": previous}}
            failed = await self._iteration(index, scope, kept if index == first else {})
            if failed is not None:
                self._emit_finished(index, None)
                return failed
            done, verdict = self._until(scope)
            self._emit_finished(index, verdict if self.spec.until is not None else None)
            if isinstance(done, CallResult):
                return done
            if done:
                return self._succeeded()
            previous = self._snapshot()
        if self.spec.until is None:
            return self._succeeded()
        return CallResult(
            False,
            kind=ErrorKind.LOOP_EXHAUSTED.value,
            message=f"`until {to_source(self.spec.until)}` was still false after "
            f"{self.spec.max} iterations (max {self.spec.max})",
            retry="not_retryable",
        )

    async def _iteration(
        self, index: int, scope: dict[str, Any], kept: dict[str, Any]
    ) -> CallResult | None:
        """Run the body once (a resume: all but the `kept` steps, recorded as finished in
        this iteration); the loop's failure when a required body step failed."""
        run = self.run
        run._emit(ev.LoopIterationStarted, step=self.st.name, iteration=index)
        fresh = self._fresh_body(index, scope, kept)
        roots = [
            n for n, b in fresh.items() if not b.step.is_standby and not b.done and b.pending == 0
        ]
        async with asyncio.TaskGroup() as group:
            run._loop_groups[self.st.name] = group
            run._decide_all(roots)
        return self._failure(fresh)

    def _fresh_body(
        self, index: int, scope: dict[str, Any], kept: dict[str, Any]
    ) -> dict[str, StepState]:
        """New states for the body's steps in iteration `index`, the `kept` ones ended at
        once with their recorded results (standbys first, as a resume seeds steps)."""
        fresh = {name: self._fresh(name, index, scope) for name in self.body}
        self.run.states.update(fresh)
        for name, body in fresh.items():
            # (the outside dependencies have ended: the loop waited for them)
            body.pending = 0 if body.step.is_standby else len(body.deps)
            if self.outside[name]:
                body.deps = tuple(dict.fromkeys((*body.deps, *self.outside[name])))
        for name in sorted(kept, key=lambda n: not fresh[n].step.is_standby):
            self.run.seed(fresh[name], kept[name])
        return fresh

    def _fresh(self, name: str, index: int, scope: dict[str, Any]) -> StepState:
        state = StepState(self.run.plan.steps[name])
        state.iteration, state.loop_scope = index, scope
        return state

    # --- resume ---------------------------------------------------------------------------

    def _resume_point(self) -> tuple[int, dict[str, Any] | None]:
        """Where a resumed loop continues (SPEC section 11): the last iteration an earlier
        session reached, with `loop.previous` rebuilt from the one before. The iterations
        before it are replayed from the journal (their body steps' `step_finished`, marked
        `resumed`), so `per_iteration` and the loop's outcome see them; none runs again."""
        recorded = self.run.opts.completed_iterations
        reached = max((i for n in self.body for i in recorded.get(n, {})), default=0)
        previous: dict[str, Any] | None = None
        for index in range(reached):
            done = {n: recorded[n][index] for n in self.body if index in recorded.get(n, {})}
            scope = {"loop": {"index": index, "previous": previous}}
            self._fresh_body(index, scope, done)
            self._failure({n: self.run.states[n] for n in self.body})  # (notes `rescued`)
            previous = self._snapshot()
        return reached, previous

    def _recorded(self, index: int) -> dict[str, Any]:
        """The body steps a resume keeps in iteration `index`: recorded there as finished
        for good, with their body dependencies kept too."""
        from plait.runtime.resume import kept_steps

        recorded = self.run.opts.completed_iterations
        done = {n: recorded[n][index] for n in self.body if index in recorded.get(n, {})}
        return dict(kept_steps(self.run.plan, done, body_of=self.st.name))

    def _failure(self, states: dict[str, StepState]) -> CallResult | None:
        for name, body in states.items():
            if body.step.is_standby:
                continue
            if body.status in (outcomes.FAILED, outcomes.CANCELLED) and not body.step.optional:
                self.st.cause = name
                return CallResult(
                    False,
                    kind=body.kind or ErrorKind.TOOL_ERROR.value,
                    message=f"body step `{name}` failed: {body.message or ''}",
                    retry="not_retryable",
                )
            if body.status == outcomes.RECOVERED or (
                body.status == outcomes.FAILED and body.step.optional
            ):
                self.rescued = True
        return None

    def _until(self, scope: dict[str, Any]) -> tuple[bool | CallResult, Any]:
        if self.spec.until is None:
            return False, None
        try:
            value = evaluate(self.spec.until, self.run._scope(scope))
        except EvalError as exc:
            return CallResult(
                False,
                kind=ErrorKind.INVALID_INPUT.value,
                message=self.run._expr_error("until", self.spec.until, exc),
                retry="not_retryable",
            ), None
        return truthy(value), value

    def _emit_finished(self, index: int, until: Any) -> None:
        self.run._emit(ev.LoopIterationFinished, step=self.st.name, iteration=index, until=until)

    def _snapshot(self) -> dict[str, Any]:
        """This iteration's body steps, as `loop.previous` shows them to the next one."""
        views = self.run.views
        snapshot: dict[str, Any] = {}
        for name in self.body:
            if name in views:
                view = views[name]
                snapshot[name] = {
                    "output": view.output if view.status in OUTPUT_STATUSES else None,
                    "status": view.status,
                    "error": view.error,
                    "attempts": view.attempts,
                    "version": view.version,
                    "read_at": view.read_at,
                }
        return snapshot

    def _succeeded(self) -> CallResult:
        states = self.run.states
        output = {
            name: states[name].output for name in self.body if not states[name].step.is_standby
        }
        if self.rescued:
            self.st.recovered_by = outcomes.RecoveredBy.BODY
        return CallResult(True, output)

    def _close_after_timeout(self) -> None:
        """The loop's `timeout` passed: running body steps fail with `timeout`, those not
        started are skipped (`upstream_failed`, caused by the loop)."""
        for name in self.body:
            body = self.run.states[name]
            if body.done:
                continue
            if body.started:
                body.kind, body.message = ErrorKind.TIMEOUT.value, "the loop timed out"
                body.retry = "not_retryable"
                self.run._finish(body, outcomes.FAILED, propagate=False)
            else:
                self.run._finish(
                    body,
                    outcomes.SKIPPED,
                    reason=outcomes.UPSTREAM_FAILED,
                    caused_by=self.st.name,
                    propagate=False,
                )


def outside_reads(plan: Plan, name: str, body: set[str]) -> tuple[str, ...]:
    """The steps outside the loop that body step `name` reads or waits for (`after`): its
    trigger rule sees them too, once the loop's own rule has let the loop start (SPEC
    section 11). A body step of another loop stands for that loop."""
    step = plan.steps[name]
    exprs = [*step.args.values(), step.condition, step.default]
    if step.map is not None:
        exprs.append(step.map.over)
    read = [n.name for e in exprs if e is not None for n, _ in walk(e) if isinstance(n, NameExpr)]
    found: dict[str, None] = {}
    for dep in (*read, *step.after):
        other = plan.steps.get(dep)
        if other is None or dep in body:
            continue
        found[other.in_loop or dep] = None
    return tuple(found)


def close_unstarted_body(run: Run, loop: StepState) -> None:
    """Body steps of a loop that never ran end as the loop did (SPEC section 11)."""
    assert loop.step.loop is not None and loop.status is not None
    for name in loop.step.loop.body:
        body = run.states.get(name)
        if body is None or body.done or body.started:
            continue
        body.kind, body.message = loop.kind, loop.message
        run._finish(
            body,
            loop.status,
            reason=loop.reason,
            caused_by=loop.caused_by or loop.name,
            propagate=False,
        )
