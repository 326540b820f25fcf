"""The scheduler: runs a compiled plan over one asyncio TaskGroup, event-driven.

A step starts the moment its last dependency becomes terminal and its trigger rule and `if`
allow (no polling, no layers): finishing a step decrements its dependants' counters, and
steps whose counter reaches zero are decided at once. Steps decided `skipped` are finished
synchronously in a work-list loop (no recursion, so a 1,000-step chain is fine).

Per attempt (SPEC section 9, in this order): `attempt_started`; arguments evaluated and
validated (an error is an `invalid_input` attempt); breakers asked (refused at once with
`breaker_open`, consuming nothing); concurrency slots of each used resource in name order,
then the map's, then the plan's; each resource's rate window; breakers checked again; the
tool called under the per-attempt `timeout` (which covers the call only); slots released;
the breakers told the result. Around that: retries with backoff (no slot held while
waiting), then the fallback chain, then `default`.

Cancellation (deadline or signal) cancels the task running the TaskGroup; every in-flight
attempt is closed with an `attempt_finished` of status `cancelled`, and every step without
a status ends `cancelled` (a standby that never ran: `skipped`/`not_needed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import random
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from plait import __version__
from plait.compiler.expressions import to_source
from plait.compiler.graph import edges
from plait.compiler.ir import CompiledPlan, Expr, Plan, Step, TemplateExpr, TriggerRule
from plait.errors import ErrorKind, Stale, ToolError, error_for_kind, kind_of
from plait.runtime import events as ev
from plait.runtime import outcomes
from plait.runtime.clock import Clock, RealClock, seconds_from_iso, wall_seconds
from plait.runtime.compensation import Compensator
from plait.runtime.consistency import MapGate, Redecider, null_condition
from plait.runtime.executor import execute
from plait.runtime.expressions import EvalError, Scope, evaluate, template_pieces, truthy
from plait.runtime.guards import BreakerGuard, ResourceGuards
from plait.runtime.loops import LoopRun, close_unstarted_body
from plait.runtime.masking import Masker
from plait.runtime.policies.bulkhead import Bulkhead
from plait.runtime.policies.retry import RetryVerdict, fits_deadline, retry_wait, should_retry
from plait.runtime.staleness import Staleness, recorded_reads
from plait.runtime.state import CallResult, FinishedSteps, StepState
from plait.runtime.values import DEFAULT_OUTPUT_LIMIT, to_json_value
from plait.stdlib.registry import ToolContext, ToolRegistry, ToolSpec
from plait.stdlib.shell import shell_script
from plait.stdlib.workers import CallWatch, current_call
from plait.versions import Versioned, value_hash


class Executor(Protocol):
    """How a tool call is made: `await executor(spec, validated_args, ctx, limit=...,
    on_block=...)` gives the result as a JSON value (at most `limit` bytes) or raises the
    tool's error. The default runs it in this process (`runtime.executor.execute`);
    `runtime.executors.ray.RayExecutor` makes it a Ray task."""

    def __call__(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        ctx: ToolContext | None,
        *,
        limit: int | None = ...,
        on_block: Callable[[float], None] | None = ...,
    ) -> Awaitable[Any]: ...


@dataclass
class Injection:
    """`--inject STEP=KIND[:N]`: the first `times` attempts (all when None) fail with `kind`."""

    kind: ErrorKind
    times: int | None = None
    # per map element, and per (iteration, element) in a loop's body
    used: dict[Any, int] = field(default_factory=dict)

    def take(self, element: Any) -> bool:
        n = self.used.get(element, 0)
        if self.times is not None and n >= self.times:
            return False
        self.used[element] = n + 1
        return True


@dataclass
class RunOptions:
    run_id: str
    inputs: dict[str, Any]
    env: dict[str, str]
    clock: Clock = field(default_factory=RealClock)
    seed: int | None = None
    inject: dict[str, Injection] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    plan_dir: Path = field(default_factory=Path.cwd)
    # Folders `file.*` may touch besides the plan's (`--files DIR`, `PLAIT_FILES`)
    file_roots: tuple[Path, ...] = ()
    # Resume (journal): steps recorded as finished by an earlier session, by name, each a
    # `step_finished`-shaped dict with the REAL output. They end at once with that result
    # (`step_finished` marked `resumed`) and are never run again.
    completed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Compensations an earlier session recorded `succeeded` (resume), one key each:
    # the primary's name, `@ITERATION` for a body step (`compensation.compensation_key`).
    compensated: tuple[str, ...] = ()
    # Called with (step, unmasked output) just before each `step_finished` is emitted, so
    # the journal can keep what events (masked) cannot carry.
    record_output: Callable[[str, Any], None] | None = None
    # Map elements: each finished element's result (unmasked) goes to
    # `record_element(step, index, result)` (a checkpoint); a resume gives back those of
    # maps that did not finish in `completed_elements` ({step: {index: result}}), and an
    # element whose list item is unchanged is not run again.
    record_element: Callable[[str, int, dict[str, Any]], None] | None = None
    completed_elements: Mapping[str, Mapping[int, Mapping[str, Any]]] = field(default_factory=dict)
    # Loops (SPEC section 11): on resume, the body steps' results per iteration of loops
    # that did not finish ({step: {iteration: result}}); each loop continues at the last
    # iteration it reached, keeping the body steps that finished there.
    completed_iterations: Mapping[str, Mapping[int, Mapping[str, Any]]] = field(
        default_factory=dict
    )
    # Model conversations (SPEC section 11): each reply and tool result is awaited into
    # `record_conversation((step, iteration, element, attempt), entry)` as it arrives (None:
    # the attempt starts afresh); a resume gives back those whose attempt did not end, by
    # (step, iteration, element): (attempt, entries), continued in that attempt.
    record_conversation: (
        Callable[[tuple[str, int | None, int | None, int], dict[str, Any] | None], Awaitable[None]]
        | None
    ) = None
    conversations: Mapping[tuple[str, int | None, int | None], tuple[int, list[dict[str, Any]]]] = (
        field(default_factory=dict)
    )
    # Where tool calls run (None: in this process).
    executor: Executor | None = None
    # The resources' breakers, slots and rate windows, when shared with other runs (a
    # batch); None: this run makes its own.
    guards: ResourceGuards | None = None


_SUCCEEDED, _FAILED, _CANCELLED = (
    outcomes.AttemptStatus.SUCCEEDED,
    outcomes.AttemptStatus.FAILED,
    outcomes.AttemptStatus.CANCELLED,
)
# The events every step makes.
_new_step_started = ev.StepStarted
_new_attempt_started = ev.AttemptStarted
_new_attempt_finished = ev.AttemptFinished
# A step that made exactly one step ready runs it on in its own task; after this many
# such links in a row the task lets the event loop run others (timers, signals, I/O).
_LINKS_PER_TURN = 8
# At most this many steps are given their tasks in one turn of the loop (`_start_all`).
_SPAWN_BURST = 256
# Statuses that never make a run degraded or failed (SPEC section 6).
_NEVER_DECIDING = frozenset({outcomes.SUCCEEDED, outcomes.SKIPPED})


class _Attempt:
    """Identifies one attempt: which step, which attempt number, which element."""

    __slots__ = ("element", "loop", "number", "state", "watch")

    def __init__(
        self, state: StepState, number: int, element: int | None, loop: dict[str, Any]
    ) -> None:
        self.state, self.number, self.element, self.loop = state, number, element, loop
        self.watch: CallWatch | None = None  # set while its tool is called


class Run:
    """One run of a plan. `await run.execute()` returns when every step is terminal."""

    def __init__(
        self, plan: Plan, registry: ToolRegistry, options: RunOptions, sinks: Iterable[ev.Sink] = ()
    ) -> None:
        self.plan = plan
        self.registry = registry
        self.opts = options
        self.clock = options.clock
        self.rng = random.Random(options.seed)
        self.masker = Masker(options.secrets)
        # every event is masked on its way out (without secrets the bus skips masking)
        self.bus = ev.EventBus(
            options.run_id,
            sinks,
            mask=self.masker.mask_event if self.masker else None,
            # real time: the bus's own fast UTC stamp
            wall=None if type(self.clock) is RealClock else self.clock.wall,
        )
        # `_emit(EventClass, **fields)`: build, stamp and deliver (the bus's `make`, bound
        # once: four events per step)
        self._emit = self.bus.make
        self._publish = self.bus.publish  # for the four events of every step (below)
        self.states = {name: StepState(step) for name, step in plan.steps.items()}
        # who waits for each step; a step nobody waits for has no entry (most of a fan-out)
        self.dependants: dict[str, list[str]] = {}
        self.views = FinishedSteps(self.states)  # what expressions may read
        self._specs: dict[str, ToolSpec | None] = {}  # tool name -> spec, looked up once
        self.cancelled_by: outcomes.CancelReason | None = None
        self._conversations = dict(options.conversations)  # resume: not yet continued
        self.deadline_at: float | None = None
        self.run_state: dict[str, Any] = {}
        self.on_run_end: list[Any] = []
        self._tg: asyncio.TaskGroup | None = None
        # the task group of each running loop's current iteration (runtime/loops.py)
        self._loop_groups: dict[str, asyncio.TaskGroup] = {}
        self._stop: asyncio.Future[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # abandoned attempts whose thread runs on: the task waiting for each to end
        self._abandoned: dict[asyncio.Task[None], tuple[_Attempt, float]] = {}
        self._output_limit = plan.max_output or DEFAULT_OUTPUT_LIMIT
        self._plan_slots = Bulkhead(plan.concurrency)
        self._plan_limited = plan.concurrency is not None
        self._map_slots: dict[str, Bulkhead] = {}
        self._map_gates: dict[str, MapGate] = {}  # maps whose stale elements re-decide
        guards = options.guards or ResourceGuards.for_plan(plan, self.clock)
        self._breakers = guards.breakers
        self._bulkheads = guards.bulkheads
        self._limiters = guards.limiters
        self._execute: Executor = options.executor or execute
        self._wall_s = lambda: wall_seconds(self.clock)
        self._finish_count = 0
        # steps `_decide_all` holds back from a task of their own (see there), and how
        # many steps ran on in the task of the step before them
        self._held: list[tuple[StepState, CallResult | None]] | None = None
        self._links = 0
        self.cx = Redecider(self)  # re-deciding and executions (SPEC section 10)
        self.saga = Compensator(self)  # compensations when the run fails
        self.staleness = Staleness(self)  # `fresh` refreshes and `guard` probes
        self._recorded_reads = recorded_reads(plan)  # steps whose producing call is kept
        # steps whose attempts first refresh what they read, or probe what they guard
        self._stale_checked = frozenset(self.staleness.fresh).union(
            name for name, step in plan.steps.items() if step.guard
        )
        self._link()

    def _link(self) -> None:
        """Who waits for whom, from the plan's edges (those of `plan.graph`): a step waits
        for its dependencies (its in-edges); standbys wait for nothing, they run when their
        primary needs them. (The edge list, not the networkx graph: building that graph's
        node attributes cost a run of 10,000 steps ~0.1 s before its first step.)"""
        states, dependants = self.states, self.dependants
        plan = self.plan
        for source, target in dict.fromkeys((s, t) for s, t, _ in plan.edges or edges(plan)):
            st = states.get(target)
            if st is not None and source in states and not st.step.is_standby:
                st.pending += 1
                waiting = dependants.get(source)
                if waiting is None:
                    dependants[source] = [target]
                else:
                    waiting.append(target)

    # --- the run as a whole ------------------------------------------------------------

    def release(self) -> None:
        """Let go of the steps' run state once the run is over (its report is the fold of
        its events, which holds what it needs). The run's helpers refer back to it, so
        without this the states live until the collector finds the cycle; with it they go
        at once, before the report is built: for a 10,000-step run, their memory is where
        the report's records then go instead of on top of it."""
        self.states.clear()
        self.dependants.clear()
        self._specs.clear()

    async def execute(self) -> None:
        """Run every step, then evaluate outputs; emits run_started ... run_finished."""
        started = self.clock.now()
        self._emit_run_started()
        self._seed_completed()
        if self.plan.deadline_s is not None:
            self.deadline_at = started + self.plan.deadline_s
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop = loop.create_future()
        steps_task = asyncio.ensure_future(self._run_steps())
        watchers: list[asyncio.Future[Any]] = [self._stop]
        if self.plan.deadline_s is not None:
            watchers.append(asyncio.ensure_future(self._deadline(self.plan.deadline_s)))
        try:
            pending: list[asyncio.Future[Any]] = [steps_task, *watchers]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not steps_task.done():
                self.cancelled_by = self.cancelled_by or outcomes.CancelReason.DEADLINE
                steps_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await steps_task
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            if not steps_task.done():  # our own task was cancelled: leave nothing behind
                steps_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await steps_task
        self._close_unfinished()
        await self._close_abandoned()
        outputs, errors, outcome = self._outputs_and_outcome()
        compensations = await self.saga.settle(
            outcome == outcomes.RunOutcome.FAILED, self.opts.compensated
        )
        await self._run_end_hooks()
        self._emit(
            ev.RunFinished,
            outcome=outcome,
            cancelled_by=self.cancelled_by,
            outputs=outputs,
            output_errors=errors,
            duration_s=round(self.clock.now() - started, 6),
            compensations=compensations,
        )

    def stop(self, why: str = "signal") -> None:
        """Cancel the run like the deadline does (Ctrl-C, SIGTERM); safe to call twice."""
        if self._stop is not None and not self._stop.done():
            self.cancelled_by = outcomes.CancelReason(why)
            self._stop.set_result(why)
        elif self.saga.interrupt():  # a signal while compensating: nothing more is undone
            self.cancelled_by = outcomes.CancelReason(why)

    async def _deadline(self, seconds: float) -> None:
        # (`execute` says "cancelled by the deadline" only if steps were still running:
        # a run whose last step ended as the deadline passed was not cancelled)
        await self.clock.sleep(seconds)

    async def _run_steps(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            roots = [
                n
                for n, st in self.states.items()
                if not st.step.is_standby
                and st.step.in_loop is None
                and st.pending == 0
                and not st.done
            ]
            self._decide_all(roots)

    async def _run_end_hooks(self) -> None:
        for hook in self.on_run_end:
            result = hook()
            if inspect.isawaitable(result):
                await result

    def _emit_run_started(self) -> None:
        plan = self.plan
        sha = plan.plan_sha256 if isinstance(plan, CompiledPlan) else None
        # Per step, for the critical path (metrics) and the report. Steps with equal
        # entries share one dict (read only, like the rest of the event): the report
        # builder keeps this event for the whole run, and a 10,000-step fan-out has two
        # distinct entries, not 10,000 dicts (~2 MB).
        info: dict[str, dict[str, Any]] = {}
        same: dict[tuple[Any, ...], dict[str, Any]] = {}
        for n, s in plan.steps.items():
            if s.in_loop is None and s.loop is None:
                key = (s.optional, s.standby_for, s.is_map, *s.depends_on)
                entry = same.get(key)
                if entry is None:
                    entry = same[key] = _step_info(s)
                info[n] = entry
                continue
            entry = info[n] = _step_info(s)
            if s.in_loop is not None:  # SPEC section 11: what the report says of loops
                entry["in_loop"] = s.in_loop
            if s.loop is not None:
                entry["loop"] = {
                    "max": s.loop.max,
                    "every": s.loop.every_s,
                    "until": to_source(s.loop.until) if s.loop.until else None,
                    "body": list(s.loop.body),
                }
        self._emit(
            ev.RunStarted,
            plan=plan.plan,
            description=plan.description,
            plait_version=__version__,
            plan_sha256=sha,
            inputs=dict(self.opts.inputs),
            steps=info,
            seed=self.opts.seed,
        )

    def _outputs_and_outcome(self) -> tuple[dict[str, Any], list[dict[str, str]], str]:
        """The outputs evaluated from what finished, and the run's outcome."""
        outputs: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        scope = self._scope({})
        for name, out in self.plan.outputs.items():
            try:
                outputs[name] = evaluate(out.expr, scope)
            except EvalError as exc:
                outputs[name] = None
                errors.append({"output": name, "why": exc.message})
        # only these statuses can make the run degraded or failed
        views = [
            st.outcome_view()
            for st in self.states.values()
            if st.status not in _NEVER_DECIDING and st.step.in_loop is None
        ]
        return outputs, errors, outcomes.run_outcome(views)

    def _close_unfinished(self) -> None:
        """After a cancellation: every step without a status ends now, in definition order."""
        for st in self.states.values():
            if st.done or (not st.started and self.saga.is_compensation(st.name)):
                continue  # (a compensation not run yet may still run: the saga closes it)
            if st.step.is_standby and not st.started:
                self._finish(st, outcomes.SKIPPED, reason=outcomes.NOT_NEEDED, propagate=False)
                continue
            st.kind = ErrorKind.CANCELLED.value
            st.message = f"cancelled by the {self.cancelled_by or 'deadline'}"
            st.retry = None
            self._finish(st, outcomes.CANCELLED, propagate=False)

    # --- deciding and finishing steps --------------------------------------------------

    def _seed_completed(self) -> None:
        """Resume: end each recorded step at once with its recorded result. Standbys first,
        so a seeded primary does not mark a standby that really ran as `not_needed`."""
        completed = self.opts.completed
        names = [n for n in self.states if n in completed]
        # (in the order they finished, so compensations still run latest first)
        names.sort(key=lambda n: (not self.states[n].step.is_standby, completed[n].get("ts") or ""))
        for name in names:
            self.seed(self.states[name], self.opts.completed[name])

    def seed(self, st: StepState, rec: Mapping[str, Any]) -> list[str]:
        """End `st` at once with a recorded result (marked `resumed`); returns the
        dependants now ready. Also a loop's body step kept by a resumed iteration."""
        st.attempts = int(rec.get("attempts") or 0)
        st.execution = int(rec.get("execution") or 1)
        for attr in (
            "output",
            "kind",
            "message",
            "retry",
            "fallback_used",
            "recovered_by",
            "elements",
            "version",
        ):
            setattr(st, attr, rec.get(attr))
        read_at = rec.get("read_at")
        st.read_at_s = seconds_from_iso(read_at) if read_at else None
        st.resumed = True
        reason = rec.get("reason")
        return self._finish(
            st,
            outcomes.StepStatus(rec["status"]),
            reason=None if reason is None else outcomes.SkipReason(reason),
            caused_by=rec.get("caused_by"),
            propagate=not st.step.is_standby,
        )

    def _decide_all(
        self, names: list[str], finished: StepState | None = None
    ) -> tuple[StepState, CallResult | None] | None:
        """Decide each ready step; skips finish here and may make further steps ready.

        Given the step whose task `finished`, when exactly one step is to start and it
        belongs to the same task group, it is returned (step, early failure) for that task
        to run on, instead of being given a task of its own."""
        held = self._held = []
        try:
            work = list(reversed(names))
            while work:
                st = self.states[work.pop()]
                skipped = self._decide(st)
                for name in reversed(skipped):
                    work.append(name)
        finally:
            self._held = None
        if not held:
            return None
        if (
            finished is not None
            and len(held) == 1
            and held[0][0].step.in_loop == finished.step.in_loop
        ):
            return held[0]
        self._start_all(held)
        return None

    def _start_all(self, held: list[tuple[StepState, CallResult | None]]) -> None:
        """Give each decided step a task. A wider burst than `_SPAWN_BURST` (a fan-out's
        thousands of steps made ready at once) starts that many now and the rest that many
        per loop turn, from a feeder task: the steps of a batch mostly end within their
        turn, so a few hundred tasks and coroutines are alive at a time instead of all of
        them (a 10,000-step fan-out's peak RSS: about 4 MB lower). Steps still start in
        the order they were decided; one held back when the run is cancelled ends as a
        step that never started does (`_close_unfinished`)."""
        now, later = held[:_SPAWN_BURST], held[_SPAWN_BURST:]
        if later and (self._tg is None or any(st.step.in_loop is not None for st, _ in held)):
            now, later = held, []  # (a loop's body starts in its own group: all at once)
        for st, early_failure in now:
            self._spawn(st, early_failure)
        if later:
            assert self._tg is not None
            self._tg.create_task(self._feed(later), name="plait:start")

    async def _feed(self, held: list[tuple[StepState, CallResult | None]]) -> None:
        for start in range(0, len(held), _SPAWN_BURST):
            await asyncio.sleep(0)  # (the batch before runs first)
            for st, early_failure in held[start : start + _SPAWN_BURST]:
                self._spawn(st, early_failure)

    def _decide(self, st: StepState) -> list[str]:
        """Start `st` or skip it. Returns the steps that became ready through a skip."""
        if self.cancelled_by is not None:
            return []
        states = self.states
        runs = st.step.when is TriggerRule.ALL_SUCCEEDED
        if runs:
            for d in st.deps:  # (a loop, not all() over a generator: once per step)
                if states[d].status != outcomes.SUCCEEDED:
                    runs = False
                    break
        if not runs:
            # (the default rule over succeeded dependencies runs: no views needed for that)
            deps = [dep.outcome_view() for dep in map(states.__getitem__, st.deps)]
            decision = outcomes.trigger(st.step.when, deps)
            if not decision.run:
                return self._finish(
                    st, outcomes.SKIPPED, reason=decision.reason, caused_by=decision.caused_by
                )
        if st.step.condition is not None:
            if self.staleness.fresh and self.staleness.due(st):
                self._spawn_task(st, self._decide_when_fresh(st))
                return []
            return self._decide_if(st)
        self._spawn(st, None)
        return []

    async def _decide_when_fresh(self, st: StepState) -> None:
        """A reader's `if` reads data older than its `fresh` bound: read it again first."""
        await self.staleness.refresh(st)
        self._decide_all(self._decide_if(st))

    def _decide_if(self, st: StepState) -> list[str]:
        """Start `st` or skip it by its `if` (its trigger rule allowed it)."""
        assert st.step.condition is not None
        if self.cancelled_by is not None:
            return []
        try:
            ok = truthy(evaluate(st.step.condition, self._scope(st.loop_scope)))
        except EvalError as exc:
            self._spawn(
                st,
                CallResult(
                    False,
                    kind=ErrorKind.INVALID_INPUT.value,
                    message=self._expr_error("if", st.step.condition, exc),
                    retry="not_retryable",
                ),
            )
            return []
        if not ok:
            return self._finish(st, outcomes.SKIPPED, reason=outcomes.CONDITION_FALSE)
        self._spawn(st, None)
        return []

    def _spawn(self, st: StepState, early_failure: CallResult | None) -> None:
        if self._held is not None:  # (`_decide_all` decides where it runs)
            self._held.append((st, early_failure))
            return
        self._spawn_task(st, self._run_step(st, early_failure, primary=True))

    def _spawn_task(self, st: StepState, work: Coroutine[Any, Any, None]) -> None:
        group = self._loop_groups[st.step.in_loop] if st.step.in_loop is not None else self._tg
        assert group is not None
        group.create_task(work, name=f"plait:{st.name}")

    def _finish(
        self,
        st: StepState,
        status: outcomes.StepStatus,
        *,
        reason: outcomes.SkipReason | None = None,
        caused_by: str | None = None,
        propagate: bool = True,
    ) -> list[str]:
        """Record a terminal status, emit `step_finished`; returns dependants now ready."""
        st.status, st.reason = status, reason
        st.caused_by = caused_by if caused_by is not None else st.caused_by
        if status not in (outcomes.SUCCEEDED, outcomes.RECOVERED):
            st.output = st.version = st.read_at_s = None
        st.finished = True  # now visible to expressions (`self.views`)
        self._finish_count += 1
        st.finish_seq = self._finish_count
        self.saga.note(st)
        if self.opts.record_output is not None:
            self.opts.record_output(st.name, st.output)
        outcome = st.outcome = st.make_outcome()  # one value: state, event and report
        self._publish(
            ev.StepFinished(
                step=st.name,
                outcome=outcome,
                resumed=st.resumed,
                iteration=st.iteration,
            )
        )
        if st.step.loop is not None:
            close_unstarted_body(self, st)
        for standby in st.step.fallback:  # unused standbys are not needed any more
            sb = self.states[standby]
            if not sb.done and not sb.started:
                self._finish(sb, outcomes.SKIPPED, reason=outcomes.NOT_NEEDED, propagate=False)
        if not propagate:
            return []
        ready = []
        for name in self.dependants.get(st.name, ()):
            dep = self.states[name]
            dep.pending -= 1
            if dep.pending == 0:
                ready.append(name)
        return ready

    # --- running a step ----------------------------------------------------------------

    async def _run_step(
        self, st: StepState, early_failure: CallResult | None = None, *, primary: bool = False
    ) -> None:
        """Own attempts, then fallbacks, then default; sets st.status. A primary (the task
        of a step that is not a standby) is then finished, and what became ready decided;
        a standby is finished by its primary."""
        while True:
            st.started = True
            self._publish(
                _new_step_started(
                    step=st.name, standby_for=st.step.standby_for, iteration=st.iteration
                )
            )
            if self.cx.any_running():  # a dependency running again: its new result
                await self.cx.wait_for(st.deps)
            await self._run_body(st, early_failure)
            if not primary:
                return
            assert st.status is not None
            follow = self._decide_all(self._finish(st, st.status, caused_by=st.cause), st)
            if follow is None:
                return
            # The one step this one made ready runs on in this task (a chain's next link)
            # instead of in a task of its own; every few links the loop gets its turn.
            st, early_failure = follow
            self._links += 1
            if not self._links % _LINKS_PER_TURN:
                await asyncio.sleep(0)

    async def _run_body(self, st: StepState, early_failure: CallResult | None = None) -> None:
        """The step's attempts (or its map), then fallbacks and default: sets st.status.
        Shared by a step's first run and its later executions (SPEC section 10)."""
        if early_failure is not None:
            result = early_failure
        elif st.step.loop is not None:
            result = await LoopRun(self, st).execute()
        elif st.step.map is None:  # (awaited here directly: one coroutine less per step)
            result = await self._call_unit(st, None, st.loop_scope)
        else:
            result = await self._run_map(st)
        if result.ok:
            st.output = result.value
            st.version = result.version if result.version is not None else value_hash(result.value)
            st.read_at_s = result.read_at_s
            st.read_call = result.call
            st.status = outcomes.RECOVERED if st.recovered_by else outcomes.SUCCEEDED
        else:
            await self._rescue(st, result)

    async def _rescue(self, st: StepState, result: CallResult) -> None:
        """After the step's own attempts failed: its fallbacks in order, then `default`."""
        st.kind, st.message, st.retry = result.kind, result.message, result.retry
        for name in st.step.fallback:
            standby = self.states[name]
            self._emit(ev.FallbackStarted, step=st.name, fallback=name)
            await self._run_step(standby)
            self._finish(standby, standby.status or outcomes.FAILED, propagate=False)
            if standby.status in (outcomes.SUCCEEDED, outcomes.RECOVERED):
                st.output, st.fallback_used = standby.output, name
                st.version, st.read_at_s = standby.version, standby.read_at_s
                st.status, st.recovered_by = outcomes.RECOVERED, "fallback"
                return
        st.status = outcomes.FAILED
        if st.step.default is not None:
            self._apply_default(st)

    def _apply_default(self, st: StepState) -> None:
        assert st.step.default is not None
        try:
            st.output = evaluate(st.step.default, self._scope(st.loop_scope))
        except EvalError as exc:
            st.kind = ErrorKind.INVALID_INPUT.value
            st.message = self._expr_error("default", st.step.default, exc)
            st.retry = "not_retryable"
            return
        st.status, st.recovered_by = outcomes.RECOVERED, "default"
        st.version = st.read_at_s = None  # nothing was read

    async def _run_map(self, st: StepState) -> CallResult:
        assert st.step.map is not None
        spec = st.step.map
        try:
            items = evaluate(spec.over, self._scope(st.loop_scope))
        except EvalError as exc:
            return CallResult(
                False,
                kind=ErrorKind.INVALID_INPUT.value,
                message=self._expr_error("map list", spec.over, exc),
                retry="not_retryable",
            )
        if not isinstance(items, list):
            return CallResult(
                False,
                kind=ErrorKind.INVALID_INPUT.value,
                message=f"`{to_source(spec.over)}` is not a list (got {_type_name(items)})",
                retry="not_retryable",
            )
        st.partial = None
        if st.step.concurrency is not None:
            self._map_slots[st.name] = Bulkhead(st.step.concurrency)
        done = {} if st.loop_scope else self.opts.completed_elements.get(st.name, {})
        if _redecides(st.step):
            self._map_gates[st.name] = MapGate(self, st, items)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(
                    self._element(st, i, {**st.loop_scope, spec.var: item}, item, done.get(i))
                )
                for i, item in enumerate(items)
            ]
        gate = self._map_gates.pop(st.name, None)
        results = [t.result() for t in tasks]
        result = self._map_result(st, results)
        if gate is not None and gate.failure is not None:  # (whatever the map tolerates)
            st.recovered_by = None
            if any(r.ok for r in results):  # (its compensation reads the element outputs)
                st.partial = [r.value if r.ok else None for r in results]
            return dataclasses.replace(gate.failure, attempts=0)
        return result

    async def _element(
        self,
        st: StepState,
        index: int,
        scope: dict[str, Any],
        item: Any,
        recorded: Mapping[str, Any] | None,
    ) -> CallResult:
        """One map element: kept from its checkpoint when a resume has one for the same
        list item, else called (with its retries) and checkpointed."""
        item_hash = value_hash(item)
        if recorded is not None and recorded.get("item") == item_hash:
            result = CallResult(
                bool(recorded.get("ok")),
                recorded.get("output"),
                kind=recorded.get("kind"),
                message=recorded.get("message"),
                retry=recorded.get("retry"),
                version=recorded.get("version"),
                read_at_s=recorded.get("read_at_s"),
                attempts=int(recorded.get("attempts") or 0),
            )
            st.attempts += result.attempts
            self._element_finished(st, index, result, resumed=True)
            return result
        gate = self._map_gates.get(st.name)
        if gate is None:
            result = await self._call_unit(st, index, scope)
        else:
            stopped = await gate.enter()
            if stopped is not None:  # a re-decision failed the map: this one never starts
                return dataclasses.replace(stopped)
            try:
                result = await self._call_unit(st, index, scope)
            except BaseException:
                gate.active -= 1  # (cancelled: nothing re-decides any more)
                raise
            await gate.leave()
        if self.opts.record_element is not None and not st.loop_scope:  # (not per iteration)
            self.opts.record_element(
                st.name,
                index,
                {
                    "item": item_hash,
                    "ok": result.ok,
                    "output": result.value,
                    "kind": result.kind,
                    "message": result.message,
                    "retry": result.retry,
                    "version": result.version,
                    "read_at_s": result.read_at_s,
                    "attempts": result.attempts,
                },
            )
        self._element_finished(st, index, result, resumed=False)
        return result

    def _element_finished(
        self, st: StepState, index: int, result: CallResult, *, resumed: bool
    ) -> None:
        self._emit(
            ev.ElementFinished,
            step=st.name,
            element=index,
            status=_SUCCEEDED if result.ok else _FAILED,
            attempts=result.attempts,
            output=result.value if result.ok else None,
            kind=None if result.ok else result.kind,
            message=None if result.ok else result.message,
            resumed=resumed,
        )

    def _map_result(self, st: StepState, results: list[CallResult]) -> CallResult:
        failed = [(i, r) for i, r in enumerate(results) if not r.ok]
        st.elements = {
            "total": len(results),
            "failed": len(failed),
            "errors": [{"index": i, "kind": r.kind, "message": r.message} for i, r in failed],
        }
        output = [r.value if r.ok else None for r in results]
        version = value_hash(
            [
                (r.version if r.version is not None else value_hash(r.value)) if r.ok else None
                for r in results
            ]
        )
        read_times = [r.read_at_s for r in results if r.ok and r.read_at_s is not None]
        read_at_s = min(read_times) if read_times else None
        if not failed:
            return CallResult(True, output, version=version, read_at_s=read_at_s)
        first = failed[0][1]
        share = 100.0 * len(failed) / len(results)
        if share > (st.step.tolerate or 0.0):
            if len(failed) < len(results):  # (its compensation reads the element outputs)
                st.partial = output
            return CallResult(False, kind=first.kind, message=first.message, retry=first.retry)
        st.kind, st.message, st.retry = first.kind, first.message, first.retry
        st.recovered_by = "tolerance"
        return CallResult(True, output, version=version, read_at_s=read_at_s)

    # --- attempts and retries ----------------------------------------------------------

    async def _call_unit(
        self, st: StepState, element: int | None, loop: dict[str, Any]
    ) -> CallResult:
        """One call with its retries: a plain step, or one element of a map."""
        number = self._continued_attempt(st, element) if self._conversations else 0
        while True:
            number += 1
            result = await self._attempt(_Attempt(st, number, element, loop))
            result.attempts = number
            if result.ok:
                return result
            assert result.kind is not None
            verdict = should_retry(st.step.retry, ErrorKind(result.kind), number)
            if verdict is not RetryVerdict.RETRY:
                result.retry = verdict.value
                return result
            assert st.step.retry is not None
            wait = retry_wait(st.step.retry, number, self.rng, result.hint_s)
            if not wait <= MAX_RETRY_WAIT_S:  # (a factor that overflows): never, in effect
                result.retry = "exhausted"
                return result
            if not fits_deadline(self.clock.now(), wait, self.deadline_at):
                result.retry = "deadline"
                return result
            if result.kind == ErrorKind.STALE and not st.step.is_standby:
                if element is None:
                    stopped = await self.cx.redecide(st, number, result)
                else:  # a map's elements re-decide together, once
                    stopped = await self._map_gates[st.name].stale(number, result)
                if stopped is not None:
                    return dataclasses.replace(stopped, attempts=number)
            self._emit(
                ev.RetryScheduled,
                step=st.name,
                attempt=number + 1,
                element=element,
                iteration=st.iteration,
                delay_s=round(wait, 6),
                hint_s=result.hint_s,
            )
            await self.clock.sleep(wait)

    def _continued_attempt(self, st: StepState, element: int | None) -> int:
        """0, or on resume of a conversation whose attempt did not end, the attempts
        before it: the conversation continues in the same attempt (SPEC section 11)."""
        held = self._conversations.get((st.name, st.iteration, element))
        if held is None:
            return 0
        st.attempts += held[0] - 1
        return held[0] - 1

    def take_conversation(self, at: _Attempt) -> list[dict[str, Any]]:
        """What the journal holds of this attempt's conversation (once: a later execution
        of the step starts afresh)."""
        key = (at.state.name, at.state.iteration, at.element)
        held = self._conversations.get(key)
        if held is None or held[0] != at.number:
            return []
        del self._conversations[key]
        return held[1]

    async def _attempt(self, at: _Attempt) -> CallResult:
        st = at.state
        st.attempts += 1
        start = self.clock.now()
        execution = st.execution if st.execution > 1 else None
        self._publish(
            _new_attempt_started(
                step=st.name,
                attempt=at.number,
                iteration=st.iteration,
                element=at.element,
                execution=execution,
            )
        )
        queued: list[float] = []
        try:
            if st.name in self._stale_checked:  # (most steps: no coroutine for it)
                prepared = await self._prepare_checked(at)
            else:
                prepared = self._prepare(at)
            if isinstance(prepared, CallResult):
                result = prepared
            elif not (st.uses or self._plan_limited or st.name in self._map_slots) or (
                prepared[0].admits_itself(prepared[1])
            ):
                # nothing to acquire (the common fast path), or a conversation, which admits
                # each of its model requests itself (SPEC section 11)
                queued.append(self.clock.now())
                result = await self._call_tool(at, prepared[0], prepared[1])
                self._keep_abandoned(at, None)
            else:  # (a partial, not a lambda: `_attempt` then makes no cells per call)
                call = functools.partial(self._call_tool, at, prepared[0], prepared[1])
                result = await self._admitted_call(at, call, queued)
        except asyncio.CancelledError:
            self._publish(
                _new_attempt_finished(
                    iteration=st.iteration,
                    step=st.name,
                    attempt=at.number,
                    element=at.element,
                    status=_CANCELLED,
                    execution=execution,
                    duration_s=round(self.clock.now() - start, 6),
                    kind=ErrorKind.CANCELLED,
                    message=f"cancelled by the {self.cancelled_by or 'deadline'}",
                )
            )
            raise
        # an attempt refused before any call (an open breaker, arguments that could not be
        # evaluated) counts as an attempt (SPEC section 9) but took no call time
        duration = round(self.clock.now() - start, 6) if queued else 0.0
        queued_s = round(queued[0] - start, 6) if queued else None
        if result.ok:
            if st.name in self._recorded_reads and not isinstance(prepared, CallResult):
                result.call = prepared  # a guard may probe this read again
            self._publish(
                _new_attempt_finished(
                    iteration=st.iteration,
                    step=st.name,
                    attempt=at.number,
                    element=at.element,
                    status=_SUCCEEDED,
                    execution=execution,
                    duration_s=duration,
                    queued_s=queued_s,
                )
            )
            return result
        assert result.kind is not None and result.message is not None
        kind = ErrorKind(result.kind)
        self._emit(
            ev.AttemptFailed,
            step=st.name,
            attempt=at.number,
            element=at.element,
            kind=kind,
            message=result.message,
            injected=result.injected,
            iteration=st.iteration,
            execution=execution,
        )
        self._publish(
            _new_attempt_finished(
                iteration=st.iteration,
                step=st.name,
                attempt=at.number,
                element=at.element,
                status=_FAILED,
                execution=execution,
                duration_s=duration,
                kind=kind,
                message=result.message,
                injected=result.injected,
                queued_s=queued_s,
            )
        )
        return result

    async def _prepare_checked(self, at: _Attempt) -> CallResult | tuple[ToolSpec, dict[str, Any]]:
        """`_prepare`, with SPEC section 10's checks around it: data older than its `fresh`
        bound is read again before the arguments are evaluated, and a guarded step probed
        after (each may fail the attempt instead)."""
        st = at.state
        staleness = self.staleness
        if st.name in staleness.fresh:  # (standbys never refresh: they are not in it)
            failed = await staleness.refresh_before_attempt(st)
            if failed is not None:
                return failed
        prepared = self._prepare(at)
        if st.step.guard and not isinstance(prepared, CallResult):
            failed = await staleness.probe_guards(st, at.number, at.element)
            if failed is not None:
                return failed
        return prepared

    def prepare_call(self, st: StepState) -> CallResult | tuple[ToolSpec, dict[str, Any]]:
        """`st`'s tool and arguments as its next attempt would call them (a probe of a
        resumed step, whose producing call was not journaled)."""
        return self._prepare(_Attempt(st, 0, None, st.loop_scope))

    async def call_outside_attempt(
        self, st: StepState, spec: ToolSpec, args: dict[str, Any]
    ) -> CallResult:
        """One call of `st`'s tool that is not an attempt of it (a guard's probe): under
        `st`'s timeout and resources, with no attempt events."""
        at = _Attempt(st, 0, None, st.loop_scope)
        ctx = self._context(at, spec, args) if spec.context_param is not None else None

        def invoke() -> Awaitable[CallResult]:
            return invoke_tool(
                spec,
                args,
                ctx,
                st.step.timeout_s,
                self.clock,
                limit=st.step.max_output or self._output_limit,
                executor=self._execute,
            )

        return await self._admitted_call(at, invoke, [], map_slots=False)

    def _prepare(self, at: _Attempt) -> CallResult | tuple[ToolSpec, dict[str, Any]]:
        """The tool and its validated arguments, or the attempt's `invalid_input` failure."""
        step = at.state.step
        try:
            spec = self._specs[step.tool]
        except KeyError:
            spec = self._specs[step.tool] = self.registry.get(step.tool)
        if spec is None:
            return _failure(ErrorKind.INVALID_INPUT, f"unknown tool `{step.tool}`")
        try:
            literal = at.state.literal_args
            args = dict(literal) if literal is not None else self._evaluate_args(step, at.loop)
            null = null_condition(step, spec.name, args)
            if null is not None:
                return _failure(ErrorKind.INVALID_INPUT, null)
            return spec, spec.validate_args(args)
        except ToolError as exc:
            return _failure(kind_of(exc), exc.message)

    async def _admitted_call(
        self,
        at: _Attempt,
        invoke: Callable[[], Awaitable[CallResult]],
        queued: list[float],
        uses: tuple[str, ...] | None = None,
        map_slots: bool = True,
    ) -> CallResult:
        """Breakers, slots and rate windows (SPEC section 9 order), then `invoke()`: a
        step's tool call, or one request or tool call of a model conversation (`uses`
        then names the resources, and `map_slots=False` leaves the map's slots out)."""
        uses = at.state.uses if uses is None else uses
        admissions: list[tuple[BreakerGuard, Any]] = []
        for name in uses:
            breaker = self._breakers.get(name)
            if breaker is None:
                continue
            admission = await breaker.admit()
            if admission is None:
                self._release_admissions(at, admissions)
                return _failure(
                    ErrorKind.BREAKER_OPEN, f"the circuit breaker of resource `{name}` is open"
                )
            self._breaker_events(at, self._admission_transitions(breaker, admission))
            admissions.append((breaker, admission))
        kind: str | None = None
        try:
            result = await self._guarded_call(at, invoke, uses, admissions, queued, map_slots)
        except asyncio.CancelledError:
            self._release_admissions(at, admissions)
            raise
        kind = None if result.ok else result.kind
        for breaker, admission in admissions:
            self._breaker_events(at, await breaker.record(admission, kind))
        return result

    async def _guarded_call(
        self,
        at: _Attempt,
        invoke: Callable[[], Awaitable[CallResult]],
        uses: tuple[str, ...],
        admissions: list[tuple[BreakerGuard, Any]],
        queued: list[float],
        map_slots: bool,
    ) -> CallResult:
        mapped = self._map_slots.get(at.state.name) if map_slots else None
        async with contextlib.AsyncExitStack() as slots:
            for name in uses:
                if name in self._bulkheads:
                    await slots.enter_async_context(self._bulkheads[name])
            if mapped is not None:
                await slots.enter_async_context(mapped)
            await slots.enter_async_context(self._plan_slots)
            for name in uses:
                if name in self._limiters:
                    await self._limiters[name].acquire()
            for breaker, admission in admissions:
                if not await breaker.still_closed_for(admission):
                    return _failure(
                        ErrorKind.BREAKER_OPEN,
                        f"the circuit breaker of resource `{breaker.name}` opened",
                    )
            queued.append(self.clock.now())
            at.watch = None
            result = await invoke()
            if at.watch is not None and at.watch.stragglers:
                self._keep_abandoned(at, slots.pop_all())
            return result

    async def _call_tool(self, at: _Attempt, spec: ToolSpec, args: dict[str, Any]) -> CallResult:
        step = at.state.step
        injection = self.opts.inject.get(step.name)
        if injection is not None and injection.take(
            at.element if at.state.iteration is None else (at.state.iteration, at.element)
        ):
            return CallResult(
                False,
                kind=injection.kind.value,
                message=f"injected failure ({injection.kind.value}, --inject)",
                injected=True,
            )
        # the context is made only for a tool that takes one
        ctx = self._context(at, spec, args) if spec.context_param is not None else None
        at.watch = watch = CallWatch(tool=spec.name)
        # (no closure here: its captured names would be cells made at every call)
        if ctx is not None and ctx.agent is not None and step.timeout_s is not None:
            call = functools.partial(self._invoke, at, spec, args, ctx, watch)
            result: CallResult = await ctx.agent.bounded(call, step.timeout_s)
        else:
            result = await self._invoke(at, spec, args, ctx, watch, step.timeout_s)
        if self.deadline_at is not None and self.clock.now() >= self.deadline_at:
            # the result came after the deadline (the tool held the event loop, so the
            # deadline could not interrupt it): cancelled, as the deadline would have
            self.stop("deadline")
            raise asyncio.CancelledError
        return result

    def _invoke(
        self,
        at: _Attempt,
        spec: ToolSpec,
        args: dict[str, Any],
        ctx: ToolContext | None,
        watch: CallWatch,
        timeout_s: float | None,
    ) -> Awaitable[CallResult]:
        """The attempt's tool call under `timeout_s` (a conversation: under none)."""
        return invoke_tool(
            spec,
            args,
            ctx,
            timeout_s,
            self.clock,
            limit=at.state.step.max_output or self._output_limit,
            on_block=self._block_reporter(at, spec),
            watch=watch,
            executor=self._execute,
        )

    def _block_reporter(self, at: _Attempt, spec: ToolSpec) -> Callable[[float], None]:
        return functools.partial(self._report_block, at, spec)  # (a closure: three cells)

    def _report_block(self, at: _Attempt, spec: ToolSpec, seconds: float) -> None:
        self._emit(
            ev.LoopBlocked,
            step=at.state.name,
            attempt=at.number,
            element=at.element,
            tool=spec.name,
            duration_s=round(seconds, 3),
        )

    def _context(
        self, at: _Attempt, spec: ToolSpec | None = None, args: Mapping[str, Any] | None = None
    ) -> ToolContext:
        def emit(name: str, fields: dict[str, Any]) -> None:
            # a sync tool calls this from its thread: the event is built there (its fields
            # made JSON, so a bad value fails the tool, not the run) and handed to the loop
            data = {
                (f"tool_{k}" if k in _TOOL_EVENT_OWN else k): v
                for k, v in to_json_value(dict(fields)).items()
            }
            event = ev.ToolEvent(
                step=at.state.name,
                attempt=at.number,
                element=at.element,
                tool_event=str(name),
                **data,
            )
            if threading.get_ident() == self._loop_thread or self._loop is None:
                self.bus.emit(event)
                return
            with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
                self._loop.call_soon_threadsafe(self.bus.emit, event)

        ctx = ToolContext(
            run_id=self.opts.run_id,
            step=at.state.name,
            attempt=at.number,
            element=at.element,
            plan_dir=self.opts.plan_dir,
            file_roots=self.opts.file_roots,
            run_state=self.run_state,
            emit=emit,
            on_run_end=self.on_run_end,
            idempotency_key=self._idempotency_key(at),
            iteration=at.state.iteration,
        )
        if spec is not None and args is not None and spec.admits_itself(args):
            from plait.runtime.agents import ConversationHost  # built on this module

            ctx.agent = ConversationHost(self, at)
        return ctx

    def _idempotency_key(self, at: _Attempt) -> str:
        """`RUN_ID:STEP`, `:INDEX` for a map element, `#N` from the second decision on
        (SPEC section 10): equal across retries of one decision and across a resume."""
        key = f"{self.opts.run_id}:{at.state.name}"
        if at.state.iteration is not None:
            key += f"@{at.state.iteration}"
        if at.element is not None:
            key += f":{at.element}"
        decision = at.state.decision
        return key if decision <= 1 else f"{key}#{decision}"

    # --- abandoned attempts --------------------------------------------------------------

    def _keep_abandoned(self, at: _Attempt, slots: contextlib.AsyncExitStack | None) -> None:
        """An attempt ended while its tool's thread runs on: the thread keeps the attempt's
        concurrency slots (`slots`) until it ends, so a bulkhead still bounds what runs."""
        watch = at.watch
        if watch is None or not watch.stragglers:
            return
        self._emit(
            ev.AttemptAbandoned,
            step=at.state.name,
            attempt=at.number,
            element=at.element,
            tool=watch.tool,
        )
        ended_at = self.clock.now()
        task = asyncio.ensure_future(self._await_abandoned(at, watch, slots, ended_at))
        self._abandoned[task] = (at, ended_at)

    async def _await_abandoned(
        self,
        at: _Attempt,
        watch: CallWatch,
        slots: contextlib.AsyncExitStack | None,
        ended_at: float,
    ) -> None:
        try:
            await asyncio.gather(*watch.stragglers)
            self._emit(
                ev.AbandonedFinished,
                step=at.state.name,
                attempt=at.number,
                element=at.element,
                overran_s=round(self.clock.now() - ended_at, 6),
            )
        finally:
            if slots is not None:
                await slots.aclose()

    async def _close_abandoned(self) -> None:
        """At the run's end: threads still running are reported (they are daemons: they
        never keep the process alive) and their slots given back."""
        for task, (at, ended_at) in list(self._abandoned.items()):
            if task.done():
                continue
            task.cancel()
            self._emit(
                ev.AbandonedFinished,
                step=at.state.name,
                attempt=at.number,
                element=at.element,
                overran_s=round(self.clock.now() - ended_at, 6),
                still_running=True,
            )
        await asyncio.gather(*self._abandoned, return_exceptions=True)
        self._abandoned.clear()

    # --- breakers ------------------------------------------------------------------------

    def _admission_transitions(self, breaker: BreakerGuard, admission: Any) -> list[Any]:
        return list(getattr(admission, "transitions", []) or [])

    def _release_admissions(self, at: _Attempt, admissions: list[tuple[BreakerGuard, Any]]) -> None:
        """Give back admissions not used for a call (a held half-open trial is freed)."""
        for breaker, admission in admissions:
            self._breaker_events(at, breaker.release(admission))

    def _breaker_events(self, at: _Attempt, transitions: Iterable[Any]) -> None:
        types: dict[str, type[ev.BreakerOpened | ev.BreakerHalfOpen | ev.BreakerClosed]] = {
            "opened": ev.BreakerOpened,
            "half_open": ev.BreakerHalfOpen,
            "closed": ev.BreakerClosed,
        }
        for t in transitions:
            self._emit(types[t.kind], resource=t.resource, step=at.state.name)

    # --- expressions ---------------------------------------------------------------------

    def _scope(self, loop: Mapping[str, Any]) -> Scope:
        return Scope(
            inputs=self.opts.inputs,
            steps=self.views,
            env=self.opts.env,
            run_id=self.opts.run_id,
            loop=dict(loop),
            wall_s=self._wall_s,
        )

    def _evaluate_args(self, step: Step, loop: Mapping[str, Any]) -> dict[str, Any]:
        scope = self._scope(loop)
        args = {}
        for name, expr in step.args.items():
            try:
                args[name] = evaluate(expr, scope)
                if name == "cmd" and step.tool == "shell.run" and isinstance(expr, TemplateExpr):
                    _shell_command(args, template_pieces(expr, scope))
            except EvalError as exc:
                raise error_for_kind(
                    ErrorKind.INVALID_INPUT, self._expr_error(f"argument `{name}`", expr, exc)
                ) from None
        return args

    @staticmethod
    def _expr_error(where: str, expr: Expr, exc: EvalError) -> str:
        text = exc.message
        source = to_source(expr)
        # the evaluator names the failing sub-expression; name the whole one when it differs
        if f"`{source}`" not in text and len(source) <= 80:
            text = f"in `{source}`: {text}"
        return f"{where}: {text}"


async def invoke_tool(
    spec: ToolSpec,
    args: dict[str, Any],
    ctx: ToolContext | None,
    timeout_s: float | None,
    clock: Clock,
    *,
    limit: int | None = DEFAULT_OUTPUT_LIMIT,
    on_block: Callable[[float], None] | None = None,
    watch: CallWatch | None = None,
    executor: Executor = execute,
) -> CallResult:
    """Call a tool (through `executor`: here, or on Ray) under a per-call timeout;
    whatever it raises becomes a failure with a kind, whatever it returns a JSON value
    (`executor.execute`). Workers the tool leaves running after a timeout are reported to
    `watch`."""
    scope = None
    token = current_call.set(watch)
    began = clock.now()
    try:
        if timeout_s is None:
            value = await executor(spec, args, ctx, limit=limit, on_block=on_block)
        else:
            async with asyncio.timeout(timeout_s) as scope:
                value = await executor(spec, args, ctx, limit=limit, on_block=on_block)
    except TimeoutError as exc:
        if scope is not None and scope.expired():
            return _failure(ErrorKind.TIMEOUT, f"timed out after {_secs(timeout_s)}")
        return _failure(ErrorKind.TOOL_ERROR, _describe(exc))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # whatever a tool does is the step's
        hint = exc.retry_after if isinstance(exc, ToolError) else None
        result = _failure(kind_of(exc), _describe(exc, spec))
        result.hint_s = _capped_hint(hint)
        result.stale_source = exc.source if isinstance(exc, Stale) else None
        return result
    finally:
        current_call.reset(token)
    took = clock.now() - began
    if timeout_s is not None and took > timeout_s:
        # the tool held the event loop past its timeout, so the timeout could not act
        return _failure(
            ErrorKind.TIMEOUT,
            f"timed out after {_secs(timeout_s)} (the tool returned after "
            f"{took:.1f}s, holding the event loop; its result is discarded)",
        )
    read_at_s = wall_seconds(clock)
    if isinstance(value, Versioned):
        return CallResult(True, value.value, version=value.version, read_at_s=read_at_s)
    return CallResult(True, value, read_at_s=read_at_s)


def _step_info(step: Step) -> dict[str, Any]:
    """A step's entry in `run_started`'s `steps`."""
    return {
        "optional": step.optional,
        "standby_for": step.standby_for,
        "map": step.is_map,
        "depends_on": step.depends_on,
    }


def _redecides(step: Step) -> bool:
    """Whether a stale attempt of `step` re-decides (`retry ... on stale`, not a standby)."""
    retry = step.retry
    return (
        retry is not None
        and retry.on is not None
        and ErrorKind.STALE in retry.on
        and not step.is_standby
    )


def _failure(kind: ErrorKind | str, message: str) -> CallResult:
    return CallResult(False, kind=ErrorKind(kind).value, message=message)


def _describe(exc: BaseException, spec: ToolSpec | None = None) -> str:
    """The failure's message; for an exception a tool did not mean (not a ToolError), also
    where in the tool's code it was raised, and with PLAIT_DEBUG=1 its traceback on stderr."""
    if isinstance(exc, ToolError):
        return exc.message or type(exc).__name__
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if os.environ.get("PLAIT_DEBUG") == "1":
        traceback.print_exception(exc, file=sys.stderr)
    where = _tool_frame(exc, spec)
    return f"{message} (at {where})" if where else message


_PLAIT_DIR = str(Path(__file__).resolve().parent.parent)


def _tool_frame(exc: BaseException, spec: ToolSpec | None) -> str | None:
    """`FILE:LINE in FUNCTION` of the innermost frame in the tool's own source file (else
    the innermost one outside plait), so a tool's own error says where it happened."""
    frames = traceback.extract_tb(exc.__traceback__)
    try:
        own = inspect.getsourcefile(spec.func) if spec is not None else None
    except TypeError:
        own = None
    chosen = next((f for f in reversed(frames) if own and f.filename == own), None)
    if chosen is None:
        chosen = next((f for f in reversed(frames) if not f.filename.startswith(_PLAIT_DIR)), None)
    if chosen is None:
        return None
    shown = chosen.filename
    with contextlib.suppress(ValueError):
        shown = os.path.relpath(shown)
    return f"{shown}:{chosen.lineno} in {chosen.name}"


# A tool event's own fields: a tool's field of the same name is kept as `tool_NAME`.
_TOOL_EVENT_OWN = frozenset(
    {"event", "seq", "ts", "run_id", "step", "attempt", "element", "tool_event"}
)

# A retry wait longer than this (30 days: an overflowing backoff factor) is not scheduled:
# the step fails with its retries counted as exhausted, rather than sleep for ever.
MAX_RETRY_WAIT_S = 30 * 86_400.0

# A server's retry hint (`Retry-After`) is capped: `inf` or a year must not stall a run.
MAX_RETRY_HINT_S = 600.0


def _capped_hint(hint: float | None) -> float | None:
    """A tool's retry hint, at most `MAX_RETRY_HINT_S` (and the deadline still refuses a
    wait past it: SPEC section 9); None for a hint that is not a number."""
    if hint is None:
        return None
    try:
        hint = float(hint)
    except (TypeError, ValueError, OverflowError):
        return None
    if hint != hint or hint < 0:  # NaN or negative: no hint
        return None
    return min(hint, MAX_RETRY_HINT_S)


def _secs(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:g}s"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", dict: "dict"}.get(
        type(value), type(value).__name__
    )


def _shell_command(args: dict[str, Any], pieces: list[str | tuple[str]]) -> None:
    """`shell.run` with an interpolated string `cmd`: the literal text is the script and
    each `${...}` value one positional parameter of `sh -c` (after any `args` given), so
    data never becomes shell text (docs/security.md)."""
    given = args.get("args")
    first = 1 + (len(given) if isinstance(given, list) else 0)
    script, values = shell_script(pieces, first)
    args["cmd"] = script
    args["args"] = [*(given if isinstance(given, list) else []), *values]
