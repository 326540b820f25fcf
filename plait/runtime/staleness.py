"""Is the data an attempt reads still current? (SPEC section 10, "Guards" and "Freshness").

Two checks the scheduler makes around an attempt:
- `fresh DUR` on a step: before a direct reader's `if` and before each attempt of a reader
  evaluates its arguments, an output older than DUR is read again (an execution, `why`:
  refresh). Concurrent checks share one refresh.
- `guard S` on a step W: after W's arguments are evaluated and before any breaker or slot,
  each guarded step is *probed*: its read is called again with the arguments recorded for
  the call that produced its output. Another version replaces S's output and fails W's
  attempt with `stale` without calling W's tool. Concurrent attempts share a probe.

The scheduler's seam: `Staleness.reads_fresh`, `refresh_before_if`, `refresh_before_attempt`
and `probe_guards`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plait.compiler.ir import Plan, Step
from plait.errors import ErrorKind
from plait.runtime import events as ev
from plait.runtime import outcomes
from plait.runtime.clock import wall_seconds
from plait.runtime.consistency import step_reads
from plait.runtime.policies.retry import RetryVerdict, fits_deadline, retry_wait, should_retry
from plait.runtime.state import CallResult, StepState
from plait.versions import value_hash

if TYPE_CHECKING:
    from plait.runtime.scheduler import Run
    from plait.stdlib.registry import ToolSpec

_DONE = (outcomes.SUCCEEDED, outcomes.RECOVERED)


def fresh_reads(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Per reader (not a standby), the steps with `fresh` it reads directly: in its
    arguments, its map list or its `if` (`after` alone does not make a reader)."""
    found: dict[str, tuple[str, ...]] = {}
    if not any(step.fresh is not None for step in plan.steps.values()):
        return found  # (most plans: no expression walked)
    for step in plan.steps.values():
        if step.is_standby:
            continue
        names = [n for n in _direct_reads(step, plan) if plan.steps[n].fresh is not None]
        if names:
            found[step.name] = tuple(dict.fromkeys(names))
    return found


def _direct_reads(step: Step, plan: Plan) -> list[str]:
    exprs = list(step.args.values())
    if step.map is not None:
        exprs.append(step.map.over)
    if step.condition is not None:
        exprs.append(step.condition)
    return [name for expr in exprs for name, _ in step_reads(expr, plan.steps)]


def recorded_reads(plan: Plan) -> frozenset[str]:
    """The steps whose producing call is kept for probes: guarded steps and their fallbacks."""
    names: set[str] = set()
    for step in plan.steps.values():
        for target in step.guard:
            names.add(target)
            if target in plan.steps:
                names.update(plan.steps[target].fallback)
    return frozenset(names)


@dataclass(slots=True)
class _Probe:
    """What a probe found: the new version (None when it failed) and the failure."""

    old_version: str | None
    version: str | None
    failure: CallResult | None = None

    @property
    def changed(self) -> bool:
        return self.failure is None and self.version != self.old_version


class Staleness:
    """Refreshes and probes for one run (shared futures keep concurrent checks to one)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.fresh = fresh_reads(run.plan)
        self._probes: dict[str, asyncio.Future[_Probe]] = {}

    # --- freshness --------------------------------------------------------------------------

    def due(self, reader: StepState) -> list[tuple[str, float]]:
        """(step, age) of each `fresh` step `reader` reads whose output is too old now."""
        names = self.fresh.get(reader.name)
        if not names:
            return []
        now = wall_seconds(self.run.clock)
        due = []
        for name in names:
            st = self.run.states[name]
            limit = st.step.fresh
            if limit is None or st.read_at_s is None or not st.finished:
                continue
            age = max(0.0, now - st.read_at_s)
            if age > limit:
                due.append((name, age))
        return due

    async def refresh(self, reader: StepState) -> str | None:
        """Read again each expired `fresh` step `reader` reads; the first whose refresh did
        not succeed (it stays as it was), or None."""
        failed = None
        for name, age in self.due(reader):
            cx = self.run.cx
            if not cx.running(name):  # (a refresh already under way is shared, not repeated)
                self.run._emit(ev.Refreshed, step=name, reader=reader.name, age_s=round(age, 6))
            ok = await cx.execute_again(name, "refresh")
            if not ok and failed is None:
                failed = name
        return failed

    async def refresh_before_attempt(self, reader: StepState) -> CallResult | None:
        """The refreshes before an attempt evaluates its arguments; a failed one fails the
        attempt with `stale`, naming the step as its source."""
        failed = await self.refresh(reader)
        if failed is None:
            return None
        result = CallResult(
            False,
            kind=ErrorKind.STALE.value,
            message=f"`{failed}` was older than its `fresh` bound and reading it again failed",
        )
        result.stale_source = failed
        return result

    # --- guards -----------------------------------------------------------------------------

    async def probe_guards(
        self, writer: StepState, attempt: int, element: int | None
    ) -> CallResult | None:
        """Probe each guarded step of `writer` that has a version; the attempt's failure
        (`stale` when one changed, the probe's kind when one failed), or None."""
        changed: dict[str, tuple[str | None, str | None]] = {}
        for name in writer.step.guard:
            source = self.run.states[name]
            if source.version is None or not source.finished:
                continue
            found = await self._shared_probe(writer, source, attempt, element)
            if found.failure is not None:
                return found.failure
            if found.changed:
                changed[name] = (found.old_version, found.version)
        if not changed:
            return None
        names = ", ".join(f"`{n}`" for n in changed)
        result = CallResult(
            False,
            kind=ErrorKind.STALE.value,
            message=f"the data of {names} changed since it was read (guard); "
            f"`{writer.name}` was not called",
        )
        result.probed = changed
        return result

    async def _shared_probe(
        self, writer: StepState, source: StepState, attempt: int, element: int | None
    ) -> _Probe:
        running = self._probes.get(source.name)
        if running is not None:
            found = await asyncio.shield(running)
            # (the shared probe was of the version this attempt was decided on, or a later one)
            return found
        done: asyncio.Future[_Probe] = asyncio.get_running_loop().create_future()
        self._probes[source.name] = done
        try:
            found = await self._probe(writer, source, attempt, element)
            done.set_result(found)
            return found
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # (retrieved: a waiter that went away must not log it)
            raise
        finally:
            del self._probes[source.name]

    async def _probe(
        self, writer: StepState, source: StepState, attempt: int, element: int | None
    ) -> _Probe:
        run = self.run
        old = source.version
        run._emit(
            ev.ProbeStarted,
            step=writer.name,
            source=source.name,
            version=old,
            attempt=attempt,
            element=element,
        )
        result = await self._call_read(source)
        if not result.ok:
            assert result.kind is not None
            run._emit(
                ev.ProbeFinished,
                step=writer.name,
                source=source.name,
                kind=ErrorKind(result.kind),
                message=result.message,
            )
            return _Probe(old, None, _probe_failure(source.name, result))
        found = _Probe(old, result.version or value_hash(result.value))
        readers: list[str] = []
        if found.changed:
            source.output, source.version = result.value, found.version
            readers = run.cx.readers_of(source.name, besides=writer.name)
        source.read_at_s = result.read_at_s
        source.expression_view = None
        source.outcome = source.make_outcome()
        if run.opts.record_output is not None:  # the journal keeps the replaced result
            run.opts.record_output(source.name, source.output)
        run._emit(
            ev.ProbeFinished,
            step=writer.name,
            source=source.name,
            version=found.version,
            changed=found.changed,
            outcome=source.outcome,
            stale_readers=readers,
        )
        return found

    async def _call_read(self, source: StepState) -> CallResult:
        """The guarded step's read again (a fallback-recovered step's: its standby's), with
        the arguments of the call that produced its output, under that step's timeout,
        resources and retry policy."""
        run = self.run
        producer = source
        if source.fallback_used is not None:
            producer = run.states.get(source.fallback_used, source)
        call = producer.read_call or source.read_call
        if call is None:  # (resumed: the call was not journaled; its arguments again)
            prepared = run.prepare_call(producer)
            if isinstance(prepared, CallResult):
                return prepared
            call = prepared
        spec, args = call
        return await self._with_retries(producer, spec, args)

    async def _with_retries(
        self, producer: StepState, spec: ToolSpec, args: dict[str, Any]
    ) -> CallResult:
        run, policy = self.run, producer.step.retry
        number = 0
        while True:
            number += 1
            result = await run.call_outside_attempt(producer, spec, args)
            if result.ok:
                return result
            assert result.kind is not None
            verdict = should_retry(policy, ErrorKind(result.kind), number)
            if verdict is not RetryVerdict.RETRY or policy is None:
                result.retry = verdict.value
                return result
            wait = retry_wait(policy, number, run.rng, result.hint_s)
            if not fits_deadline(run.clock.now(), wait, run.deadline_at):
                result.retry = RetryVerdict.DEADLINE.value
                return result
            await run.clock.sleep(wait)


def _probe_failure(source: str, result: CallResult) -> CallResult:
    failure = CallResult(
        False,
        kind=result.kind,
        message=f"probing guarded step `{source}` failed: {result.message or ''}",
    )
    failure.hint_s = result.hint_s
    return failure
