"""Sagas (SPEC section 10, "Compensation"): when a run fails, undo finished steps.

`compensate C` on step `S` makes `C` a standby of `S`. When the run's outcome is `failed`
(by a step's failure or the deadline), after the outputs are evaluated and before
`run_finished`, `C` runs once for each execution of `S` that ended `succeeded` or
`recovered`, latest first, with `S` meaning that execution's result. The deadline does not
apply; a signal (Ctrl-C, SIGTERM) stops them: the one running ends `cancelled`, the rest are
listed `pending`. The scheduler's seam: `note` when a step finishes, `is_compensation`,
`run`, `interrupt`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plait.errors import ErrorKind
from plait.runtime import events as ev
from plait.runtime import outcomes
from plait.runtime.state import StepState

if TYPE_CHECKING:
    from plait.runtime.scheduler import Run

_DONE = (outcomes.SUCCEEDED, outcomes.RECOVERED)


@dataclass(slots=True)
class _Owed:
    """One finished execution of a compensated step, as it ended (a body step's: of one
    iteration, whose state and scope it keeps)."""

    seq: int
    state: StepState
    output: Any
    version: str | None
    read_at_s: float | None
    status: outcomes.StepStatus

    @property
    def step(self) -> str:
        return self.state.name

    @property
    def key(self) -> str:
        return compensation_key(self.state.name, self.state.iteration)


def compensation_key(step: str, iteration: int | None) -> str:
    """Names one compensation of a run: its primary, and the iteration of a body step."""
    return step if iteration is None else f"{step}@{iteration}"


class Compensator:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.owed: list[_Owed] = []
        self.names = {s.compensate for s in run.plan.steps.values() if s.compensate}
        self._task: asyncio.Task[None] | None = None
        self._interrupted = False

    def is_compensation(self, name: str) -> bool:
        return name in self.names

    def note(self, st: StepState) -> None:
        """A step finished (or finished an execution): remember what a failure must undo.
        A map that failed with some element succeeded is owed too, its output listing the
        element outputs (null for failed ones)."""
        if st.step.compensate is None or st.status is None:
            return
        if st.status in _DONE:
            self.owed.append(
                _Owed(st.finish_seq, st, st.output, st.version, st.read_at_s, st.status)
            )
        elif st.status == outcomes.FAILED and st.partial is not None:
            self.owed.append(_Owed(st.finish_seq, st, st.partial, None, None, st.status))

    def interrupt(self) -> bool:
        """A signal while compensating: cancel the running one; True if there was one."""
        if self._task is None or self._task.done():
            return False
        self._interrupted = True
        self._task.cancel()
        return True

    async def settle(self, failed: bool, done: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Run (or, after a signal, list as pending) every compensation the run owes.
        `done`: the compensations an earlier session recorded `succeeded` (keys)."""
        entries: list[dict[str, Any]] = []
        if failed:
            signalled = self.run.cancelled_by == outcomes.CancelReason.SIGNAL
            self.run.deadline_at = None  # the deadline does not apply to compensations
            recorded = Counter(done)
            for owed in sorted(self.owed, key=lambda o: o.seq, reverse=True):
                if recorded[owed.key] > 0:
                    recorded[owed.key] -= 1
                    continue
                if signalled or self._interrupted:
                    entries.append(self._entry(owed, "pending"))
                    continue
                entries.append(await self._compensate(owed))
        self._close_unused()
        return entries

    async def _compensate(self, owed: _Owed) -> dict[str, Any]:
        run = self.run
        st = owed.state
        comp_name = st.step.compensate
        assert comp_name is not None
        shown = run.states[owed.step]  # (a body step: the latest iteration's state)
        run.states[owed.step] = st
        comp, swapped = self._comp_state(comp_name, owed)
        kept = (st.output, st.version, st.read_at_s, st.status)
        _show(st, owed.output, owed.version, owed.read_at_s, owed.status)
        if owed.status == outcomes.FAILED:  # a partly succeeded map: its element outputs
            st.for_expressions().partial = True
        self._task = asyncio.ensure_future(self._run_once(comp))
        try:
            await self._task
        except asyncio.CancelledError:
            comp.kind, comp.message = ErrorKind.CANCELLED.value, "cancelled by the signal"
            if not comp.finished:
                run._finish(comp, outcomes.CANCELLED, propagate=False)
            return self._entry(owed, "cancelled", comp)
        finally:
            _show(st, *kept)
            run.states[owed.step] = shown
            if swapped is not None:
                run.states[comp_name] = swapped
        status = "succeeded" if comp.status in _DONE else "failed"
        if status == "failed":
            run._emit(
                ev.CompensationFailed,
                step=owed.step,
                compensation=comp.name,
                kind=None if comp.kind is None else ErrorKind(comp.kind),
                message=comp.message,
            )
        return self._entry(owed, status, comp)

    def _comp_state(self, name: str, owed: _Owed) -> tuple[StepState, StepState | None]:
        """The compensation's state for `owed`, and the state it stands in for meanwhile: a
        body step's compensation runs in that iteration's scope, as a state of its own."""
        current = self.run.states[name]
        iteration = owed.state.iteration
        if iteration is None or current.iteration == iteration:
            return current, None
        comp = StepState(self.run.plan.steps[name])
        comp.iteration, comp.loop_scope = iteration, owed.state.loop_scope
        self.run.states[name] = comp
        return comp, current

    async def _run_once(self, comp: StepState) -> None:
        """The first run is the compensation's own step_started/step_finished; later ones
        are executions (`why`: compensate)."""
        run = self.run
        if not comp.finished:
            await run._run_step(comp)
            run._finish(comp, comp.status or outcomes.FAILED, propagate=False)
        else:
            await run.cx.execute_again(comp.name, "compensate")

    def _entry(self, owed: _Owed, status: str, comp: StepState | None = None) -> dict[str, Any]:
        st = owed.state
        error = None
        if comp is not None and status != "succeeded" and comp.kind is not None:
            error = {"kind": comp.kind, "message": comp.message or "", "retry": comp.retry}
        return {
            "step": st.name,
            "compensation": st.step.compensate,
            "iteration": st.iteration,
            "status": status,
            "error": error,
        }

    def _close_unused(self) -> None:
        for name in self.names:
            comp = self.run.states.get(name)
            if comp is not None and not comp.finished:
                self.run._finish(
                    comp, outcomes.SKIPPED, reason=outcomes.NOT_NEEDED, propagate=False
                )


def _show(
    st: StepState,
    output: Any,
    version: str | None,
    read_at_s: float | None,
    status: outcomes.StepStatus | None,
) -> None:
    """Let expressions see `st` as one of its executions ended (its compensation reads it)."""
    st.output, st.version, st.read_at_s, st.status = output, version, read_at_s, status
    st.expression_view = None
    st.final_view = None
