"""The run report of SPEC section 7, built as a pure fold over events.

The report's records are slotted dataclasses with closed `StrEnum` fields; pydantic makes
their JSON (`to_json_dict`), reads one back (`report_from_json`) and exports the JSON Schema
(`report_json_schema`), at the edge only.

`ReportBuilder.apply(event)` consumes the event stream (live from the bus, or replayed
from an `--events` file or a journal) and `ReportBuilder.report()` gives the `RunReport`.
Values in events are already masked, so the report is too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plait.errors import ErrorKind
from plait.runtime import outcomes
from plait.runtime.events import (
    AttemptFailed,
    AttemptFinished,
    AttemptStarted,
    Event,
    FallbackStarted,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    adapter,
    seconds_between,
)
from plait.runtime.metrics import (
    MetricsFold,
    RunMetrics,
    StepAccumulator,
    metric_attempt_finished,
    metric_attempt_started,
    metric_retry_scheduled,
    metric_step_finished,
)
from plait.runtime.outcomes import (
    AttemptStatus,
    CancelReason,
    RunOutcome,
    SkipReason,
    StepProgress,
    StepStatus,
)
from plait.runtime.policies.retry import RetryVerdict

ATTEMPT_LOG_SIZE = 20
# Events that only name a step (the fold keeps nothing of them).
_STEP_NAMING: tuple[type[Event], ...] = (StepStarted, FallbackStarted)
# Statuses that never decide a run's outcome or add a reason (SPEC section 6).
_NOT_DECIDING = frozenset({outcomes.SUCCEEDED, outcomes.SKIPPED})


@dataclass(slots=True, kw_only=True)
class StepError:
    kind: ErrorKind
    message: str
    retry: RetryVerdict | None = None  # exhausted | not_retryable | deadline


@dataclass(slots=True, kw_only=True)
class AttemptRecord:
    attempt: int
    element: int | None = None
    started_at: str
    duration_s: float | None = None
    kind: ErrorKind | None = None
    message: str | None = None
    delay_s: float | None = None
    injected: bool = False
    execution: int | None = None  # SPEC section 10: from the step's second execution on
    iteration: int | None = None  # SPEC section 11: a loop's body step's iteration


@dataclass(slots=True, kw_only=True)
class ElementError:
    index: int
    kind: ErrorKind
    message: str


@dataclass(slots=True, kw_only=True)
class ElementSummary:
    total: int
    failed: int
    errors: list[ElementError] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Reason:
    """Why the outcome is degraded or failed: a deciding step, or a failed `output`."""

    step: str | None = None
    output: str | None = None
    status: StepStatus | None = None
    why: str
    kind: ErrorKind | None = None


@dataclass(slots=True, kw_only=True)
class StepReport:
    status: StepStatus | StepProgress
    reason: SkipReason | None = None
    caused_by: str | None = None
    attempts: int = 0
    output: Any = None
    error: StepError | None = None
    fallback_used: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    attempt_log: list[AttemptRecord] = field(default_factory=list)
    elements: ElementSummary | None = None
    # SPEC section 10: the output's version, when it was read, and its age when the run
    # ended (seconds; while the run goes on, at the step's end).
    version: str | None = None
    read_at: str | None = None
    age: float | None = None
    # A model conversation (`llm.chat` with `tools`, SPEC section 11): the final attempt's
    # requests, and {TOOL: {"calls": n, "failures": n}} over all attempts. Left out of the
    # JSON for other steps.
    turns: int | None = None
    tool_calls: dict[str, dict[str, int]] | None = None
    # Loops (SPEC section 11): on a loop {"max", "until", "every", "body", "iterations"}; on
    # a body step its loop, and [{iteration, status, attempts, duration_s}] per iteration.
    loop: dict[str, Any] | None = None
    in_loop: str | None = None
    per_iteration: list[dict[str, Any]] | None = None
    # SPEC section 10: how many times the step ran (1 unless run again), the steps that
    # finished with an output of it that was later replaced, and its re-decisions.
    executions: int = 1
    stale_readers: list[str] = field(default_factory=list)
    redecisions: list[dict[str, Any]] = field(default_factory=list)
    # A step that called a model (`llm.chat`): its token usage and model. Left out of the
    # JSON for other steps.
    usage: LlmUsage | None = None


_AGENT_FIELDS = ("turns", "tool_calls", "loop", "in_loop", "per_iteration", "usage")


@dataclass(slots=True, kw_only=True)
class LlmUsage:
    """What a step's (or the run's) model requests used: token counts summed over every
    request (null while no request reported one, as the scripted provider does not), the
    number of requests, and the model(s) that answered."""

    model: str | None = None  # the last answer's model (a step), or the models joined (run)
    requests: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    def add(self, model: str | None, prompt: Any, completion: Any, total: Any) -> None:
        self.requests += 1
        if model:
            self.model = model
        self.prompt_tokens = _plus(self.prompt_tokens, prompt)
        self.completion_tokens = _plus(self.completion_tokens, completion)
        if not isinstance(total, int) and isinstance(prompt, int) and isinstance(completion, int):
            total = prompt + completion
        self.total_tokens = _plus(self.total_tokens, total)


def _plus(so_far: int | None, more: Any) -> int | None:
    if not isinstance(more, int) or isinstance(more, bool):
        return so_far
    return more if so_far is None else so_far + more


def run_usage(steps: dict[str, StepReport]) -> LlmUsage | None:
    """The run's totals over its steps' usage; None when no step called a model."""
    used = [s.usage for s in steps.values() if s.usage is not None]
    if not used:
        return None
    total = LlmUsage(model=", ".join(dict.fromkeys(u.model for u in used if u.model)) or None)
    for u in used:
        total.requests += u.requests
        total.prompt_tokens = _plus(total.prompt_tokens, u.prompt_tokens)
        total.completion_tokens = _plus(total.completion_tokens, u.completion_tokens)
        total.total_tokens = _plus(total.total_tokens, u.total_tokens)
    return total


@dataclass(slots=True, kw_only=True)
class AbandonedAttempt:
    """An attempt that ended (timeout) while its tool's thread ran on, and how long it
    overran the attempt (so far, when `still_running` at the run's end)."""

    step: str
    attempt: int
    element: int | None = None
    tool: str
    overran_s: float | None = None
    still_running: bool = True


@dataclass(slots=True, kw_only=True)
class RunWarning:
    """Something that went wrong without failing a step (`loop_blocked`: an async tool held
    the event loop, so timeouts and the deadline could not act meanwhile)."""

    kind: str
    step: str | None = None
    attempt: int | None = None
    element: int | None = None
    message: str


@dataclass(slots=True, kw_only=True, repr=False)
class RunReport:
    plan: str
    run_id: str
    outcome: RunOutcome
    plait_version: str
    plan_sha256: str | None = None
    cancelled_by: CancelReason | None = None
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    steps: dict[str, StepReport] = field(default_factory=dict)
    # Added (optional): where the time went, per step and for the run (runtime/metrics.py).
    metrics: RunMetrics | None = None
    abandoned: list[AbandonedAttempt] = field(default_factory=list)
    warnings: list[RunWarning] = field(default_factory=list)
    # SPEC section 10: the compensations a failed run owed, in running order.
    compensations: list[dict[str, Any]] = field(default_factory=list)
    # The run's model usage, summed over its steps (null when no step called a model).
    usage: LlmUsage | None = None

    def __repr__(self) -> str:
        # Short on purpose: asyncio reprs the finished main task (and so its result) when
        # `asyncio.run` restores the SIGINT handler; a full repr of a big run costs seconds.
        return (
            f"RunReport(plan={self.plan!r}, run_id={self.run_id!r}, "
            f"outcome={self.outcome!r}, steps={len(self.steps)})"
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON of SPEC section 7 (a reason leaves out the fields it does not use),
        made by pydantic at this edge."""
        data: dict[str, Any] = adapter(RunReport).dump_python(self, mode="json")
        data["reasons"] = [{k: v for k, v in r.items() if v is not None} for r in data["reasons"]]
        for step in data["steps"].values():
            _drop_unused_agent_fields(step)
        return data

    def to_json_text(self) -> str:
        """The report as indented JSON text (`--json`, `--report`): what `to_json_dict`
        gives, as `pydantic_core.to_json(..., indent=2)` writes it. To write a big report
        to a file or stdout, `report_json.write_report_json` holds one step at a time."""
        from plait.runtime.report_json import report_json_text

        return report_json_text(self)

    def model_dump_json(self) -> str:
        """The report as compact JSON text (what `to_json_dict` gives)."""
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False)


def step_json_dict(step: StepReport) -> dict[str, Any]:
    """One step's entry of the report's JSON (as in `RunReport.to_json_dict`)."""
    data: dict[str, Any] = adapter(StepReport).dump_python(step, mode="json")
    _drop_unused_agent_fields(data)
    return data


def _drop_unused_agent_fields(step: dict[str, Any]) -> None:
    for name in _AGENT_FIELDS:
        if step.get(name) is None:
            step.pop(name, None)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of the run report (`--json`, `--report`), exported by pydantic."""
    schema: dict[str, Any] = adapter(RunReport).json_schema(mode="serialization")
    return schema


def report_from_json(data: dict[str, Any]) -> RunReport:
    """A RunReport from its JSON (`--report FILE`), validated by pydantic."""
    report: RunReport = adapter(RunReport).validate_python(data)
    return report


class _Attempt:
    """One attempt while events arrive (a plain object: one is made per attempt; it becomes
    an `AttemptRecord` only when the report is built)."""

    __slots__ = (
        "attempt",
        "delay_s",
        "duration_s",
        "element",
        "execution",
        "injected",
        "iteration",
        "kind",
        "message",
        "started_at",
    )

    def __init__(
        self,
        attempt: int,
        element: int | None,
        started_at: str,
        execution: int | None = None,
        iteration: int | None = None,
    ) -> None:
        self.attempt, self.element, self.started_at = attempt, element, started_at
        self.execution, self.iteration = execution, iteration
        self.duration_s: float | None = None
        self.kind: ErrorKind | None = None
        self.message: str | None = None
        self.delay_s: float | None = None
        self.injected = False

    def record(self) -> AttemptRecord:
        return AttemptRecord(
            attempt=self.attempt,
            element=self.element,
            started_at=self.started_at,
            duration_s=self.duration_s,
            kind=self.kind,
            message=self.message,
            delay_s=self.delay_s,
            injected=self.injected,
            execution=self.execution,
            iteration=self.iteration,
        )


class _StepFold:
    """What the fold keeps per step while events arrive."""

    __slots__ = (
        "acc",
        "executions",
        "final",
        "iteration_started",
        "last_failed",
        "log",
        "per_iteration",
        "redecisions",
        "stale_readers",
        "started_at",
        "tool_calls",
        "turns",
        "usage",
    )

    def __init__(self, acc: StepAccumulator) -> None:
        self.acc = acc  # the step's metrics, updated by the same handlers
        self.started_at: str | None = None
        self.log: list[_Attempt] = []  # the last ATTEMPT_LOG_SIZE attempts
        # The last failed attempt per element (made only when an attempt fails).
        self.last_failed: dict[int | None, _Attempt] | None = None
        self.final: StepFinished | None = None
        # a conversation's requests per attempt, and its tool calls by tool (SPEC 11)
        self.turns: dict[int, int] | None = None
        self.tool_calls: dict[str, dict[str, int]] | None = None
        # a loop's body step: when its current iteration started, and each one's summary
        self.iteration_started: str | None = None
        self.per_iteration: list[dict[str, Any]] | None = None
        self.executions = 1  # SPEC section 10
        # None until a step has some (most never do: two empty lists per step otherwise)
        self.stale_readers: list[str] | None = None
        self.redecisions: list[dict[str, Any]] | None = None
        self.usage: LlmUsage | None = None  # from the tool's `llm_usage` events


class ReportBuilder:
    """Folds events into a RunReport; `apply` is the only way state changes.

    Each event costs O(1): a dict lookup for its handler and a few attribute updates;
    pydantic records are built only by `report()`. The run metrics are folded alongside:
    the four per-attempt event types update the step's report fold and its metrics in one
    handler (they are most of the events of a run); the rest also pass through
    `MetricsFold.apply`.
    """

    def __init__(self) -> None:
        self.started: RunStarted | None = None
        self.finished: RunFinished | None = None
        self.steps: dict[str, _StepFold] = {}
        # Attempts still open, by (step, attempt, element): one dict for the run, not per step.
        self.open: dict[tuple[str, int, int | None], _Attempt] = {}
        self.metrics = MetricsFold()
        self.abandoned: dict[tuple[str, int, int | None], AbandonedAttempt] = {}
        self.warnings: list[RunWarning] = []
        # by class: these handlers fold the metrics too
        self._step_handlers: dict[type[Event], Callable[[Any], None]] = {
            AttemptStarted: self._on_attempt_started,
            AttemptFinished: self._on_attempt_finished,
            RetryScheduled: self._on_retry_scheduled,
            StepFinished: self._on_step_finished,
        }
        self._handlers: dict[str, Callable[[Any], None]] = {
            "run_started": self._on_run_started,
            "step_started": self._on_step_started,  # (a body step's iteration starts)
            "attempt_failed": self._on_attempt_failed,
            "tool_event": self._on_tool_event,
            "tool_call_finished": self._on_tool_call_finished,
            "run_finished": self._on_run_finished,
            "attempt_abandoned": self._on_attempt_abandoned,
            "abandoned_finished": self._on_abandoned_finished,
            "loop_blocked": self._on_loop_blocked,
            "execution_started": self._on_execution_started,
            "execution_finished": self._on_execution_finished,
            "probe_finished": self._on_probe_finished,
            "redecide_started": self._on_redecide_started,
        }

    def apply(self, event: Event) -> None:
        handler = self._step_handlers.get(type(event))
        if handler is not None:
            handler(event)
            return
        self.metrics.apply(event)
        handler = self._handlers.get(event.event)
        if handler is not None:
            handler(event)

    def __call__(self, event: Event) -> None:  # usable directly as a bus sink
        self.apply(event)

    def handler_for(self, cls: type[Event]) -> Callable[[Any], None]:
        """The bus's route for `cls` events (`events.RoutedSink`): the per-attempt events go
        straight to their handler, skipping `apply`'s lookup."""
        handler = self._step_handlers.get(cls)
        if handler is not None:
            return handler
        if cls is StepStarted:
            return self._on_step_started
        if cls in _STEP_NAMING:  # nothing to fold: only make sure the step is known
            return self._on_step_named
        return self.apply

    def _on_step_started(self, event: StepStarted) -> None:
        fold = self.steps.get(event.step) or self._step(event.step)
        if event.iteration is not None:
            fold.iteration_started = event.ts

    def _on_step_named(self, event: Any) -> None:
        if event.step not in self.steps:
            self._step(event.step)  # (its metrics accumulator with it)

    def _step(self, name: str) -> _StepFold:
        fold = self.steps.get(name)
        if fold is None:
            fold = self.steps[name] = _StepFold(self.metrics.accumulator(name))
        return fold

    def _on_run_started(self, event: RunStarted) -> None:
        self.started = event
        for name in event.steps:
            self._step(name)

    def _on_attempt_started(self, event: AttemptStarted) -> None:
        fold = self.steps.get(event.step) or self._step(event.step)
        metric_attempt_started(self.metrics.run, fold.acc, event)
        if fold.started_at is None:
            fold.started_at = event.ts
        record = _Attempt(event.attempt, event.element, event.ts, event.execution, event.iteration)
        self.open[(event.step, event.attempt, event.element)] = record
        log = fold.log
        log.append(record)
        if len(log) > ATTEMPT_LOG_SIZE:
            del log[0]

    def _on_attempt_finished(self, event: AttemptFinished) -> None:
        fold = self.steps.get(event.step) or self._step(event.step)
        metric_attempt_finished(self.metrics.run, fold.acc, event)
        record = self.open.pop((event.step, event.attempt, event.element), None)
        if record is None:
            return
        record.duration_s = event.duration_s
        if event.status is not AttemptStatus.SUCCEEDED:
            record.kind, record.message = event.kind, event.message
            record.injected = event.injected
            if fold.last_failed is None:
                fold.last_failed = {}
            fold.last_failed[event.element] = record

    def _on_attempt_failed(self, event: AttemptFailed) -> None:
        self._step(event.step)
        record = self.open.get((event.step, event.attempt, event.element))
        if record is not None:
            record.kind, record.message, record.injected = (
                event.kind,
                event.message,
                event.injected,
            )

    def _on_tool_event(self, event: Any) -> None:
        if event.tool_event == "llm_usage":
            self._on_llm_usage(event)
            return
        if event.tool_event == "tool_call_replayed":
            self._count_tool_call(event.step, event.tool, event.status == "succeeded")
            return
        if event.tool_event != "llm_request" or getattr(event, "parent_call", None):
            return  # (a sub-agent's requests are not the step's turns)
        fold = self._step(event.step)
        turns = fold.turns if fold.turns is not None else {}
        fold.turns = turns
        turn = int(getattr(event, "turn", 0) or 0)  # an extra field of the tool's event
        turns[event.attempt] = max(turns.get(event.attempt, 0), turn)

    def _on_llm_usage(self, event: Any) -> None:
        """A model answered (the tool's own event; its fields are extras of the event)."""
        fold = self._step(event.step)
        if fold.usage is None:
            fold.usage = LlmUsage()
        data = getattr(event, "fields", None) or {}
        fold.usage.add(
            data.get("model"),
            data.get("prompt_tokens"),
            data.get("completion_tokens"),
            data.get("total_tokens"),
        )

    def _on_tool_call_finished(self, event: Any) -> None:
        self._count_tool_call(event.step, event.tool, event.status == AttemptStatus.SUCCEEDED)

    def _count_tool_call(self, step: str, tool: str, succeeded: bool) -> None:
        fold = self._step(step)
        calls = fold.tool_calls if fold.tool_calls is not None else {}
        fold.tool_calls = calls
        count = calls.setdefault(tool, {"calls": 0, "failures": 0})
        count["calls"] += 1
        if not succeeded:
            count["failures"] += 1

    def _on_retry_scheduled(self, event: RetryScheduled) -> None:
        fold = self._step(event.step)
        metric_retry_scheduled(self.metrics.run, fold.acc, event)
        last_failed = fold.last_failed
        record = last_failed.get(event.element) if last_failed is not None else None
        if record is not None:
            record.delay_s = event.delay_s

    def _on_step_finished(self, event: StepFinished) -> None:
        fold = self.steps.get(event.step) or self._step(event.step)
        metric_step_finished(self.metrics.run, fold.acc, event)
        fold.final = event
        if event.iteration is not None:
            started = fold.iteration_started if event.attempts else None
            runs = fold.per_iteration if fold.per_iteration is not None else []
            fold.per_iteration = runs
            runs.append(
                {
                    "iteration": event.iteration,
                    "status": event.status,
                    "attempts": event.attempts,
                    "duration_s": seconds_between(started, event.ts) if started else None,
                }
            )
            fold.iteration_started = None

    def _on_run_finished(self, event: RunFinished) -> None:
        self.finished = event

    def _on_execution_started(self, event: Any) -> None:
        for fold in self.steps.values():  # running again: no longer a stale reader
            if fold.stale_readers and event.step in fold.stale_readers:
                fold.stale_readers.remove(event.step)

    def _on_execution_finished(self, event: Any) -> None:
        fold = self._step(event.step)
        fold.executions = max(fold.executions, int(event.execution))
        self._replace_result(fold, event.step, event)

    def _on_probe_finished(self, event: Any) -> None:
        """A guard's probe updated its source's `read_at`, or replaced its output."""
        if event.outcome is not None:
            self._replace_result(self._step(event.source), event.source, event)

    def _replace_result(self, fold: Any, step: str, event: Any) -> None:
        for reader in event.stale_readers:
            if fold.stale_readers is None:
                fold.stale_readers = []
            if reader not in fold.stale_readers:
                fold.stale_readers.append(reader)
        outcome = event.outcome
        if outcome is not None and not isinstance(outcome, dict | type(None)):
            fold.final = StepFinished(
                step=step, outcome=outcome, ts=event.ts, seq=event.seq, run_id=event.run_id
            )
        elif isinstance(outcome, dict):  # read back from JSON
            fold.final = StepFinished(
                step=step, ts=event.ts, seq=event.seq, run_id=event.run_id, **outcome
            )

    def _on_redecide_started(self, event: Any) -> None:
        fold = self._step(event.step)
        if fold.redecisions is None:
            fold.redecisions = []
        fold.redecisions.append(
            {"attempt": event.attempt, "sources": list(event.sources), "rerun": list(event.rerun)}
        )

    def _on_attempt_abandoned(self, event: Any) -> None:
        self.abandoned[(event.step, event.attempt, event.element)] = AbandonedAttempt(
            step=event.step, attempt=event.attempt, element=event.element, tool=event.tool
        )

    def _on_abandoned_finished(self, event: Any) -> None:
        record = self.abandoned.get((event.step, event.attempt, event.element))
        if record is not None:
            record.overran_s = event.overran_s
            record.still_running = bool(event.still_running)

    def add_warning(self, kind: str, message: str) -> None:
        """A warning that is not an event (the journal failed: it cannot record its own
        failure)."""
        self.warnings.append(RunWarning(kind=kind, message=message))

    def _on_loop_blocked(self, event: Any) -> None:
        self.warnings.append(
            RunWarning(
                kind="loop_blocked",
                step=event.step,
                attempt=event.attempt,
                element=event.element,
                message=f"tool `{event.tool}` blocked the event loop for {event.duration_s:.1f}s "
                "(a blocking call in an async tool: nothing else could run, timeouts "
                "included)",
            )
        )

    # --- building ----------------------------------------------------------------------

    def step_report(self, name: str) -> StepReport:
        return self._step_record(self._step(name), name)

    def _step_record(self, fold: _StepFold, name: str) -> StepReport:
        final = fold.final
        if final is None:  # not finished yet (a live view asks mid-run)
            return StepReport(
                status=(StepProgress.RUNNING if fold.started_at else StepProgress.PENDING),
                started_at=fold.started_at,
                attempt_log=[a.record() for a in fold.log],
            )
        out = final.outcome  # (read directly: a run of 10,000 steps makes 10,000 of these)
        error = None
        if out.kind is not None:
            error = StepError(kind=out.kind, message=out.message or "", retry=out.retry)
        started = fold.started_at if out.attempts > 0 else None
        meta = self.started.steps.get(name) if self.started is not None else None
        loop = meta.get("loop") if meta else None
        return StepReport(
            status=out.status,
            reason=out.reason,
            caused_by=out.caused_by,
            attempts=out.attempts,
            output=out.output,
            error=error,
            fallback_used=out.fallback_used,
            started_at=started,
            finished_at=final.ts if started else None,
            duration_s=fold.acc.duration_s if started else None,
            attempt_log=[a.record() for a in fold.log],
            elements=_element_summary(out.elements) if out.elements else None,
            version=out.version,
            read_at=out.read_at,
            age=self._age(final) if out.read_at is not None else None,
            turns=fold.turns[max(fold.turns)] if fold.turns else None,
            tool_calls=fold.tool_calls,
            executions=fold.executions,
            stale_readers=list(fold.stale_readers) if fold.stale_readers else [],
            redecisions=list(fold.redecisions) if fold.redecisions else [],
            usage=dataclasses.replace(fold.usage) if fold.usage is not None else None,
            # SPEC section 11: what the report says of loops and their body steps
            loop={**loop, "iterations": out.attempts} if loop else None,
            in_loop=meta.get("in_loop") if meta else None,
            per_iteration=fold.per_iteration,
        )

    def _age(self, final: StepFinished) -> float | None:
        if final.read_at is None:
            return None
        until = self.finished.ts if self.finished is not None else final.ts
        return max(0.0, seconds_between(final.read_at, until))

    def step_views(self, *, deciding_only: bool = False) -> list[outcomes.StepView]:
        """Finished steps as the outcome rules see them, in definition order.

        `deciding_only` leaves out `succeeded` and `skipped` steps, which neither the run
        outcome nor its reasons look at (most steps of a run)."""
        info = self.started.steps if self.started is not None else {}
        views = []
        for name, fold in self.steps.items():
            if fold.final is None:
                continue
            if deciding_only and fold.final.status in _NOT_DECIDING:
                continue
            meta = info.get(name, {})
            if meta.get("in_loop"):
                continue  # the loop decides, not its body steps (SPEC section 11)
            f = fold.final
            views.append(
                outcomes.step_view(
                    name,
                    f.status,
                    f.reason,
                    bool(meta.get("optional")),
                    bool(meta.get("standby_for")),
                    f.kind,
                    f.fallback_used,
                    f.recovered_by == "default",
                    (f.elements or {}).get("failed"),
                )
            )
        return views

    def report(self) -> RunReport:
        """The report of the events so far (the final one once `run_finished` arrived)."""
        if self.started is None:
            raise ValueError("no run_started event")
        # (no collector tuning here: this runs inside `run_plan_async`, in an embedding
        # program's process; `plait run` tunes it once, at its edge, for the whole run)
        return self._build()

    def _build(self) -> RunReport:
        assert self.started is not None
        views = self.step_views(deciding_only=True)
        reasons = [
            Reason(
                step=r["step"],
                status=StepStatus(r["status"]),
                why=r["why"],
                kind=None if r["kind"] is None else ErrorKind(r["kind"]),
            )
            for r in outcomes.reasons(views)
        ]
        fin = self.finished
        if fin is not None:
            reasons += [Reason(output=e["output"], why=e["why"]) for e in fin.output_errors]
        steps = {name: self._step_record(fold, name) for name, fold in self.steps.items()}
        return RunReport(
            plan=self.started.plan,
            run_id=self.started.run_id,
            outcome=fin.outcome if fin else outcomes.run_outcome(views),
            plait_version=self.started.plait_version,
            plan_sha256=self.started.plan_sha256,
            cancelled_by=fin.cancelled_by if fin else None,
            started_at=self.started.ts,
            finished_at=fin.ts if fin else None,
            duration_s=seconds_between(self.started.ts, fin.ts) if fin else None,
            inputs=self.started.inputs,
            outputs=fin.outputs if fin else {},
            reasons=reasons,
            steps=steps,
            metrics=self.metrics.result(),
            abandoned=[dataclasses.replace(a) for a in self.abandoned.values()],
            warnings=list(self.warnings),
            usage=run_usage(steps),
            compensations=list(fin.compensations) if fin else [],
        )


def _element_summary(elements: dict[str, Any] | None) -> ElementSummary | None:
    """A map step's summary from its `step_finished` (a dict, as in the JSON)."""
    if not elements:
        return None
    errors = [
        ElementError(index=e["index"], kind=ErrorKind(e["kind"]), message=e["message"])
        for e in elements.get("errors", [])
    ]
    return ElementSummary(total=elements["total"], failed=elements["failed"], errors=errors)
