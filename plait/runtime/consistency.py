"""Consistency with the outside world (SPEC section 10), the parts the scheduler asks about:
conditional-write arguments, and which steps a stale write re-decides over.

The scheduler calls in through a narrow seam; everything here is a pure function over the
IR, so the rules are tested without running anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from plait.compiler.expressions import children
from plait.compiler.ir import AttrExpr, Expr, NameExpr, Plan, Step
from plait.errors import ErrorKind
from plait.runtime import events as ev
from plait.runtime import outcomes
from plait.runtime.expressions import EvalError, evaluate, truthy
from plait.runtime.state import CallResult, StepState
from plait.versions import CONDITION_ARGS, value_hash

if TYPE_CHECKING:
    from plait.runtime.scheduler import Run


def null_condition(step: Step, tool: str, args: Mapping[str, Any]) -> str | None:
    """Why the attempt fails with `invalid_input`: a condition written but null."""
    name = CONDITION_ARGS.get(tool)
    if name is None or name not in step.args or args.get(name) is not None:
        return None
    return (
        f"argument `{name}` is null, so the write has no condition to check; "
        f'write `S.version ?? "*"` to accept any version'
    )


def step_reads(expr: Expr, steps: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(step, field) for every `STEP.field` read in `expr`, in source order."""
    if isinstance(expr, AttrExpr) and isinstance(expr.value, NameExpr) and expr.value.name in steps:
        yield expr.value.name, expr.field
        return
    for child in children(expr):
        yield from step_reads(child, steps)


def arg_reads(step: Step, steps: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(step, field) read by `step`'s arguments (and a map's list), in source order."""
    found: list[tuple[str, str]] = []
    exprs = list(step.args.values())
    if step.map is not None:
        exprs.insert(0, step.map.over)
    for expr in exprs:
        found.extend(step_reads(expr, steps))
    return found


def data_deps(plan: Plan, step: Step) -> list[str]:
    """The steps `step` reads through data references (arguments, map list, `if`,
    `default`; a loop: what its body reads from outside it): `after` and `guard` edges do
    not count."""
    exprs = list(step.args.values())
    if step.map is not None:
        exprs.append(step.map.over)
    for extra in (step.condition, step.default):
        if extra is not None:
            exprs.append(extra)
    names: list[str] = []
    for expr in exprs:
        for name, _ in step_reads(expr, plan.steps):
            if name not in names:
                names.append(name)
    if step.loop is not None:  # a loop reads what its body reads from outside it
        inside = {step.name, *step.loop.body}
        for body in step.loop.body:
            for name in data_deps(plan, plan.steps[body]):
                if name not in inside and name not in names:
                    names.append(name)
    return names


def version_sources(step: Step, steps: Mapping[str, Any]) -> list[str]:
    """The steps whose `.version` `step`'s arguments read, in source order."""
    names = [name for name, field in arg_reads(step, steps) if field == "version"]
    return list(dict.fromkeys(names))


# --- re-deciding (the scheduler's seam: `Run.cx`) --------------------------------------------


class Redecider:
    """Re-deciding a stale write and running steps again as new executions.

    The scheduler calls `redecide` when an attempt failed `stale` and its retry policy
    allows another; everything else here is private to the seam."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._running: dict[str, asyncio.Future[bool]] = {}  # executions in flight
        self._data_deps: dict[str, list[str]] | None = None
        self._order: dict[str, int] | None = None

    # --- which steps ---------------------------------------------------------------------

    def data_deps(self) -> dict[str, list[str]]:
        if self._data_deps is None:
            plan = self.run.plan
            self._data_deps = {name: data_deps(plan, step) for name, step in plan.steps.items()}
        return self._data_deps

    def order(self) -> dict[str, int]:
        """A topological position per step (dependency order)."""
        if self._order is None:
            import networkx as nx

            self._order = {n: i for i, n in enumerate(nx.topological_sort(self.run.plan.graph))}
        return self._order

    def sources(self, st: StepState, result: CallResult) -> list[str]:
        """SPEC section 10, re-deciding step 2: what went stale."""
        steps = self.run.plan.steps
        found = version_sources(st.step, steps)
        for probed in result.probed or {}:
            if probed not in found:
                found.append(probed)
        named = result.stale_source
        if named is not None and named in self.data_deps()[st.name] and named not in found:
            found.append(named)
        if not found:
            found = list(dict.fromkeys(name for name, _ in arg_reads(st.step, steps)))
        return [s for s in found if not self.run.states[s].step.is_standby]

    def path(self, sources: list[str], target: str) -> list[str]:
        """Sources, then every step on a data-reference path from one to `target`, in
        dependency order (`target` itself left out)."""
        deps = self.data_deps()
        ancestors: set[str] = set()
        stack = list(deps[target])
        while stack:
            name = stack.pop()
            if name not in ancestors:
                ancestors.add(name)
                stack.extend(deps.get(name, ()))
        on_path = set(sources)
        order = self.order()
        for name in sorted(ancestors, key=order.__getitem__):
            if any(d in on_path for d in deps[name]):
                on_path.add(name)
        return sorted(on_path, key=order.__getitem__)

    # --- re-deciding ------------------------------------------------------------------------

    async def redecide(self, st: StepState, attempt: int, result: CallResult) -> CallResult | None:
        """Run the stale sources and the steps between them and `st` again; None when `st`
        may retry with the new values, else the failure that ends its attempts."""
        run = self.run
        sources = self.sources(st, result)
        probed = result.probed or {}
        for source in sources:
            old, new = probed.get(source, (run.states[source].version, None))
            run._emit(
                ev.StaleDetected, step=st.name, source=source, old_version=old, new_version=new
            )
        # (a guarded step a probe found changed was replaced already: it does not run again)
        rerun = [name for name in self.path(sources, st.name) if name not in probed]
        run._emit(ev.RedecideStarted, step=st.name, attempt=attempt, sources=sources, rerun=rerun)
        for name in rerun:
            await self.execute_again(name, "redecide")
        stopped = self._still_runs(st)
        run._emit(ev.RedecideFinished, step=st.name, ok=stopped is None)
        st.decision += 1  # a retry after a re-decision has a new idempotency key
        return stopped

    def _still_runs(self, st: StepState) -> CallResult | None:
        """`st`'s trigger rule and `if`, evaluated again; the `stale` failure if it would
        not run now (`caused_by` set on the state)."""
        run = self.run
        deps = [run.states[d].outcome_view() for d in st.deps]
        decision = outcomes.trigger(st.step.when, deps)
        if not decision.run:
            st.caused_by = decision.caused_by
            return CallResult(
                False,
                kind=ErrorKind.STALE.value,
                retry="not_retryable",
                message=f"the data went stale and, re-decided, `{st.name}` "
                f"would not run now (`{decision.caused_by}` ended "
                f"`{run.states[decision.caused_by or ''].status}`)",
            )
        if st.step.condition is None:
            return None
        try:
            ok = truthy(evaluate(st.step.condition, run._scope({})))
        except EvalError as exc:
            ok, why = False, exc.message
        else:
            why = "its `if` is now false"
        if ok:
            return None
        return CallResult(
            False,
            kind=ErrorKind.STALE.value,
            retry="not_retryable",
            message=f"the data went stale and, re-decided, `{st.name}` would not run now: {why}",
        )

    # --- executions ---------------------------------------------------------------------------

    def running(self, name: str) -> bool:
        """Whether `name` is running again right now."""
        return name in self._running

    def any_running(self) -> bool:
        """Whether any step is running again right now (most runs: never)."""
        return bool(self._running)

    async def execute_again(self, name: str, why: str) -> bool:
        """Run a finished step again as a new execution; concurrent callers share one.
        True when it ended `succeeded` or `recovered`."""
        running = self._running.get(name)
        if running is not None:
            return await asyncio.shield(running)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._running[name] = done
        ok = False
        try:
            ok = await self._execute(self.run.states[name], why)
        finally:
            del self._running[name]
            done.set_result(ok)
        return ok

    async def wait_for(self, names: Iterable[str]) -> None:
        """Wait until none of `names` is running again (a reader waits for the new result)."""
        for name in names:
            running = self._running.get(name)
            if running is not None:
                await asyncio.shield(running)

    async def _execute(self, st: StepState, why: str) -> bool:
        """One more execution of `st`; True when it ended `succeeded` or `recovered`."""
        run = self.run
        st.execution += 1
        st.decision += 1
        old_version = st.version
        run._emit(ev.ExecutionStarted, step=st.name, execution=st.execution, why=why)
        kept = _result_of(st)
        _reset(st)
        await self._decide_and_run(st)
        status, version = st.status, st.version
        ok = status in (outcomes.SUCCEEDED, outcomes.RECOVERED)
        unchanged = why == "refresh" and not ok  # a failed refresh changes nothing
        if unchanged:
            _restore(st, kept)
        elif not ok:
            st.output = st.version = st.read_at_s = None
        st.outcome = st.make_outcome()
        st.final_view = st.expression_view = None
        if not unchanged:
            run._finish_count += 1
            st.finish_seq = run._finish_count
            if why != "compensate":
                run.saga.note(st)
        readers = self.readers_of(st.name) if st.version != old_version else []
        assert status is not None
        if run.opts.record_output is not None:  # the journal keeps the later result
            run.opts.record_output(st.name, st.output)
        run._emit(
            ev.ExecutionFinished,
            step=st.name,
            execution=st.execution,
            status=status,
            version=None if unchanged else version,
            outcome=st.outcome,
            stale_readers=readers,
        )
        return ok

    async def _decide_and_run(self, st: StepState) -> None:
        """As in a first run: trigger rule, `if`, attempts, fallbacks, default."""
        run = self.run
        deps = [run.states[d].outcome_view() for d in st.deps]
        decision = outcomes.trigger(st.step.when, deps)
        if not decision.run:
            st.status, st.reason, st.caused_by = (
                outcomes.SKIPPED,
                decision.reason,
                decision.caused_by,
            )
            return
        if st.step.condition is not None:
            try:
                ok = truthy(evaluate(st.step.condition, run._scope({})))
            except EvalError as exc:
                await run._run_body(
                    st,
                    CallResult(
                        False,
                        kind=ErrorKind.INVALID_INPUT.value,
                        retry="not_retryable",
                        message=run._expr_error("if", st.step.condition, exc),
                    ),
                )
                return
            if not ok:
                st.status, st.reason = outcomes.SKIPPED, outcomes.CONDITION_FALSE
                return
        await run._run_body(st)

    def readers_of(self, step: str, besides: str | None = None) -> list[str]:
        """Finished steps that read `step`'s replaced output (and are not running again)."""
        return [
            name
            for name, deps in self.data_deps().items()
            if step in deps
            and name != besides
            and self.run.states[name].finished
            and name not in self._running
        ]


_RESULT_FIELDS = (
    "status",
    "reason",
    "caused_by",
    "kind",
    "message",
    "retry",
    "fallback_used",
    "recovered_by",
    "elements",
    "output",
    "version",
    "read_at_s",
    "read_call",
)


def _result_of(st: StepState) -> tuple[Any, ...]:
    return tuple(getattr(st, name) for name in _RESULT_FIELDS)


def _restore(st: StepState, kept: tuple[Any, ...]) -> None:
    for name, value in zip(_RESULT_FIELDS, kept, strict=True):
        setattr(st, name, value)


def _reset(st: StepState) -> None:
    st.status = st.reason = st.caused_by = None
    st.kind = st.message = st.retry = st.fallback_used = st.recovered_by = None
    st.elements = None


# --- re-deciding a map ----------------------------------------------------------------------


class MapGate:
    """A map's elements while stale ones re-decide (SPEC section 10, the map paragraph).

    A stale element that may retry closes the gate: no new element starts, those in flight
    finish (or go stale too), then the map re-decides once. If its list now evaluates
    differently the map fails with `stale`; else the stale elements retry with the new
    values and the gate opens for the rest."""

    def __init__(self, run: Run, st: StepState, items: Any) -> None:
        self.run, self.st = run, st
        self.items_hash = value_hash(items)
        self.open = asyncio.Event()
        self.open.set()
        self.active = 0  # elements started, not waiting for a re-decision
        self.waiting: list[tuple[int, CallResult, asyncio.Future[CallResult | None]]] = []
        self.failure: CallResult | None = None  # the map fails with this, whatever it tolerates

    async def enter(self) -> CallResult | None:
        """Before an element starts: wait while the gate is closed; the map's failure if a
        re-decision decided it."""
        await self.open.wait()
        if self.failure is not None:
            return self.failure
        self.active += 1
        return None

    async def leave(self) -> None:
        """An element finished."""
        self.active -= 1
        await self._maybe_redecide()

    async def stale(self, attempt: int, result: CallResult) -> CallResult | None:
        """An element's attempt failed `stale` and may retry: None to retry with the new
        values, else the failure that ends it."""
        self.open.clear()
        done: asyncio.Future[CallResult | None] = asyncio.get_running_loop().create_future()
        self.waiting.append((attempt, result, done))
        self.active -= 1
        await self._maybe_redecide()
        outcome = await done
        self.active += 1
        return outcome

    async def _maybe_redecide(self) -> None:
        if self.active > 0 or not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        attempt, result, _ = waiting[0]
        stopped = await self.run.cx.redecide(self.st, attempt, result)
        if stopped is None and self._list_changed():
            stopped = CallResult(
                False,
                kind=ErrorKind.STALE.value,
                retry="not_retryable",
                message=f"the data went stale and, re-decided, the list of map "
                f"`{self.st.name}` evaluates differently",
            )
        self.failure = stopped
        for _, _, done in waiting:
            done.set_result(stopped)
        self.open.set()

    def _list_changed(self) -> bool:
        spec = self.st.step.map
        assert spec is not None
        try:
            items = evaluate(spec.over, self.run._scope(self.st.loop_scope))
        except EvalError:
            return True
        return value_hash(items) != self.items_hash
