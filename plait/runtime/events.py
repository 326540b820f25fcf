"""Typed run events (SPEC sections 7 and 9) and the bus that stamps and fans them out.

The runtime only emits events; progress, the `--events` JSONL file, the journal and the
report all consume them. Each event is a slotted dataclass whose closed fields (statuses,
reasons, kinds) are `StrEnum`s; pydantic serialises them, validates what is read back and
exports their JSON Schemas, at the edges only (`to_json_dict`, `event_from_dict`,
`event_json_schema`). `EventBus.emit` stamps `seq` (1-based, no gaps), `ts` (ISO-8601 UTC)
and `run_id`, masks secrets in every field (through `masking.Masker.mask_event`, the one
place that masks), and calls every sink in order. Beyond the fields SPEC section 9 names,
`step_finished` and `run_finished` carry what the report needs (output, attempts, error,
...), so the report is a pure fold of the events (see `report.ReportBuilder`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar, cast, runtime_checkable

from pydantic import TypeAdapter

from plait.errors import ErrorKind
from plait.runtime.clock import iso_from_micros
from plait.runtime.outcomes import (
    AttemptStatus,
    CancelReason,
    RecoveredBy,
    RunOutcome,
    SkipReason,
    StepOutcome,
    StepStatus,
    outcome_from_fields,
)
from plait.runtime.policies.retry import RetryVerdict

_time_ns = time.time_ns


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with microseconds (`2026-01-01T10:00:00.123456Z`).
    Integer nanoseconds: no float rounding."""
    return iso_from_micros(_time_ns() // 1000)


def format_ts(moment: datetime) -> str:
    # isoformat is several times faster than strftime; events are stamped at a high rate
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python 3.11 reads the trailing `Z` as UTC


def seconds_between(start: str, end: str) -> float:
    """`end - start` in seconds (rounded to the microsecond) of two event stamps.

    Most steps start and end within one second: for two stamps of our own form
    (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, 27 characters) that share everything up to the `.`,
    only the microseconds are read (a report needs this for every step); anything else is parsed in
    full. (An integer count of microseconds over 1e6 is already the float that rounding to
    six decimals gives.)
    """
    if start[:20] == end[:20] and len(start) == 27 == len(end):
        try:
            return (int(end[20:26]) - int(start[20:26])) / 1_000_000
        except ValueError:
            pass
    return round((parse_ts(end) - parse_ts(start)).total_seconds(), 6)


@dataclass(slots=True, kw_only=True)
class Event:
    """Fields every event has; `seq`, `ts` and `run_id` are stamped by the bus. `event`
    (the JSON's name of the event) is the class's, never an instance's."""

    event: ClassVar[str] = ""
    seq: int = 0
    ts: str = ""
    run_id: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object written to `--events` and the journal (empty optional fields left
        out; `event` first), made by pydantic at this edge."""
        return _json_dict(self)

    def model_dump_json(self) -> str:
        """The event as compact JSON text (what `to_json_dict` gives)."""
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    event: ClassVar[str] = "run_started"
    plan: str
    description: str | None = None
    plait_version: str = ""
    plan_sha256: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    # Every step in definition order (standbys included) with what the outcome rules
    # need: {"optional": bool, "standby_for": str | None, "map": bool}, plus
    # "depends_on": [step, ...] for the critical path of the run metrics.
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int | None = None


@dataclass(slots=True, kw_only=True)
class StepStarted(Event):
    event: ClassVar[str] = "step_started"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    standby_for: str | None = None


@dataclass(slots=True, kw_only=True)
class AttemptStarted(Event):
    event: ClassVar[str] = "attempt_started"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    attempt: int
    element: int | None = None
    execution: int | None = None  # SPEC section 10: from a step's second execution on


@dataclass(slots=True, kw_only=True)
class AttemptFinished(Event):
    """Follows every attempt; `status` is `succeeded`, `failed` or `cancelled`."""

    event: ClassVar[str] = "attempt_finished"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    attempt: int
    element: int | None = None
    execution: int | None = None
    status: AttemptStatus
    duration_s: float
    kind: ErrorKind | None = None
    message: str | None = None
    injected: bool = False
    # Seconds between attempt_started and the tool call (waiting for a breaker, concurrency
    # slots or a rate window); None when the scheduler did not measure it. Read by metrics.
    queued_s: float | None = None

    def __post_init__(self) -> None:  # a closed set: an unknown value is refused here
        if type(self.status) is not AttemptStatus:  # (the scheduler passes the enum itself)
            self.status = AttemptStatus(self.status)
        if self.kind is not None and type(self.kind) is not ErrorKind:
            self.kind = ErrorKind(self.kind)


@dataclass(slots=True, kw_only=True)
class AttemptFailed(Event):
    event: ClassVar[str] = "attempt_failed"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    attempt: int
    element: int | None = None
    execution: int | None = None
    kind: ErrorKind
    message: str
    injected: bool = False

    def __post_init__(self) -> None:
        if type(self.kind) is not ErrorKind:
            self.kind = ErrorKind(self.kind)


@dataclass(slots=True, kw_only=True)
class RetryScheduled(Event):
    """`attempt` is the attempt about to be made (SPEC section 9)."""

    event: ClassVar[str] = "retry_scheduled"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    attempt: int
    element: int | None = None
    delay_s: float
    hint_s: float | None = None


@dataclass(slots=True, kw_only=True)
class FallbackStarted(Event):
    event: ClassVar[str] = "fallback_started"
    step: str
    fallback: str


@dataclass(slots=True, kw_only=True)
class BreakerOpened(Event):
    event: ClassVar[str] = "breaker_opened"
    resource: str
    step: str | None = None


@dataclass(slots=True, kw_only=True)
class BreakerHalfOpen(Event):
    event: ClassVar[str] = "breaker_half_open"
    resource: str
    step: str | None = None


@dataclass(slots=True, kw_only=True)
class BreakerClosed(Event):
    event: ClassVar[str] = "breaker_closed"
    resource: str
    step: str | None = None


@dataclass(slots=True, init=False)
class StepFinished(Event):
    """Exactly one per step, also for steps skipped or cancelled without starting.

    It carries the step's `StepOutcome` (the very value the scheduler's state holds, unless
    masking made a masked copy): what the report needs, so the report is derivable from
    events alone. Its JSON is flat (`status`, `reason`, ..., `kind`, `message`, `retry` of
    the final error). Built from an outcome, or from those flat fields.
    """

    event: ClassVar[str] = "step_finished"
    step: str
    outcome: StepOutcome
    # A resume seeded this step from the journal: it did not run in this session.
    resumed: bool
    iteration: int | None  # a loop's body step: its iteration (0-based, SPEC section 11)

    def __init__(
        self,
        *,
        step: str,
        outcome: StepOutcome | None = None,
        resumed: bool = False,
        iteration: int | None = None,
        seq: int = 0,
        ts: str = "",
        run_id: str = "",
        **flat: Any,
    ) -> None:
        self.seq, self.ts, self.run_id = seq, ts, run_id
        self.step, self.resumed, self.iteration = step, resumed, iteration
        self.outcome = outcome if outcome is not None else outcome_from_fields(flat)

    # the outcome's fields, read through the event (progress, metrics, tracing, tests)
    @property
    def status(self) -> StepStatus:
        return self.outcome.status

    @property
    def reason(self) -> SkipReason | None:
        return self.outcome.reason

    @property
    def caused_by(self) -> str | None:
        return self.outcome.caused_by

    @property
    def attempts(self) -> int:
        return self.outcome.attempts

    @property
    def output(self) -> Any:
        return self.outcome.output

    @property
    def kind(self) -> ErrorKind | None:
        return self.outcome.kind

    @property
    def message(self) -> str | None:
        return self.outcome.message

    @property
    def retry(self) -> RetryVerdict | None:
        return self.outcome.retry

    @property
    def fallback_used(self) -> str | None:
        return self.outcome.fallback_used

    @property
    def recovered_by(self) -> RecoveredBy | None:
        return self.outcome.recovered_by

    @property
    def elements(self) -> dict[str, Any] | None:
        return self.outcome.elements

    @property
    def version(self) -> str | None:
        return self.outcome.version

    @property
    def read_at(self) -> str | None:
        return self.outcome.read_at


@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    event: ClassVar[str] = "run_finished"
    outcome: RunOutcome
    cancelled_by: CancelReason | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    # Outputs whose expression failed: [{"output": NAME, "why": "..."}] (SPEC section 7).
    output_errors: list[dict[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    # SPEC section 10: the compensations the run owed, in running order:
    # [{"step", "compensation", "iteration", "status", "error"}].
    compensations: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcome = RunOutcome(self.outcome)
        if self.cancelled_by is not None:
            self.cancelled_by = CancelReason(self.cancelled_by)


@dataclass(slots=True, init=False)
class ToolEvent(Event):
    """A tool's own observation (LLM token usage, model, ...), from `ToolContext.emit`;
    the tool's fields (`fields`) appear in the JSON beside the event's own."""

    event: ClassVar[str] = "tool_event"
    step: str
    attempt: int
    element: int | None
    tool_event: str
    fields: dict[str, Any]

    def __init__(
        self,
        *,
        step: str,
        attempt: int,
        tool_event: str,
        element: int | None = None,
        seq: int = 0,
        ts: str = "",
        run_id: str = "",
        **fields: Any,
    ) -> None:
        self.seq, self.ts, self.run_id = seq, ts, run_id
        self.step, self.attempt, self.element, self.tool_event = step, attempt, element, tool_event
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        """A tool's own field, by name (`event.prompt_tokens`)."""
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(slots=True, kw_only=True)
class ToolCallStarted(Event):
    """A model's tool call begins (SPEC section 11); `tool` is its plait name."""

    event: ClassVar[str] = "tool_call_started"
    step: str
    iteration: int | None = None  # a loop's body step: its iteration (0-based)
    attempt: int
    element: int | None = None
    turn: int
    call_id: str
    tool: str
    arguments: Any = None
    parent_call: str | None = None  # a sub-agent's call: the call that runs the sub-agent


@dataclass(slots=True, kw_only=True)
class ToolCallFinished(ToolCallStarted):
    """A model's tool call ended, its policies used up or not (SPEC section 11)."""

    event: ClassVar[str] = "tool_call_finished"
    status: AttemptStatus
    attempts: int = 0
    duration_s: float = 0.0
    kind: ErrorKind | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if type(self.status) is not AttemptStatus:
            self.status = AttemptStatus(self.status)
        if self.kind is not None and type(self.kind) is not ErrorKind:
            self.kind = ErrorKind(self.kind)


@dataclass(slots=True, kw_only=True)
class LoopBlocked(Event):
    """A warning: an async tool held the event loop (a blocking call in an `async def`)
    for `duration_s`, so nothing else in the run moved meanwhile, timeouts included."""

    event: ClassVar[str] = "loop_blocked"
    step: str
    attempt: int
    element: int | None = None
    tool: str
    duration_s: float


@dataclass(slots=True, kw_only=True)
class AttemptAbandoned(Event):
    """An attempt ended (timeout) while its tool's thread runs on: the thread cannot be
    stopped, so it keeps the attempt's concurrency slots until it ends."""

    event: ClassVar[str] = "attempt_abandoned"
    step: str
    attempt: int
    element: int | None = None
    tool: str


@dataclass(slots=True, kw_only=True)
class AbandonedFinished(Event):
    """The thread of an abandoned attempt ended `overran_s` after its attempt did (or,
    `still_running`, was still going when the run ended)."""

    event: ClassVar[str] = "abandoned_finished"
    step: str
    attempt: int
    element: int | None = None
    overran_s: float
    still_running: bool = False


@dataclass(slots=True, kw_only=True)
class ElementFinished(Event):
    """A map element's call ended for good (a checkpoint: `plait resume` keeps it)."""

    event: ClassVar[str] = "element_finished"
    step: str
    element: int
    status: AttemptStatus  # succeeded | failed
    attempts: int = 0
    output: Any = None
    kind: ErrorKind | None = None
    message: str | None = None
    resumed: bool = False

    def __post_init__(self) -> None:
        if type(self.status) is not AttemptStatus:
            self.status = AttemptStatus(self.status)
        if self.kind is not None and type(self.kind) is not ErrorKind:
            self.kind = ErrorKind(self.kind)


@dataclass(slots=True, kw_only=True)
class StaleDetected(Event):
    """SPEC section 10: `step` went stale on `source`'s data (versions null when unknown)."""

    event: ClassVar[str] = "stale_detected"
    step: str
    source: str
    old_version: str | None = None
    new_version: str | None = None


@dataclass(slots=True, kw_only=True)
class RedecideStarted(Event):
    """A stale attempt of `step` re-decides: `sources` and every step on a path from them
    to `step` (`rerun`, in running order) run again before it retries."""

    event: ClassVar[str] = "redecide_started"
    step: str
    attempt: int
    sources: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class RedecideFinished(Event):
    event: ClassVar[str] = "redecide_finished"
    step: str
    ok: bool


@dataclass(slots=True, kw_only=True)
class ExecutionStarted(Event):
    """A step runs again (`why`: refresh, redecide or compensate) as execution N."""

    event: ClassVar[str] = "execution_started"
    step: str
    execution: int
    why: str


@dataclass(slots=True, kw_only=True)
class ExecutionFinished(Event):
    """An execution ended; `outcome` is the step's result from now on (a refresh that did
    not succeed changes nothing); `stale_readers` the finished steps that read the output
    it replaced."""

    event: ClassVar[str] = "execution_finished"
    step: str
    execution: int
    status: StepStatus
    version: str | None = None
    outcome: StepOutcome | None = None
    stale_readers: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ProbeStarted(Event):
    """Before an attempt of `step`, its guarded step `source` is read again; `version` is
    the version `step` was decided on."""

    event: ClassVar[str] = "probe_started"
    step: str
    source: str
    version: str | None = None
    attempt: int | None = None
    element: int | None = None


@dataclass(slots=True, kw_only=True)
class ProbeFinished(Event):
    """A probe ended: `version` is what it found (null when it failed, with `kind` and
    `message`), `changed` whether that differs; a changed source's output was replaced (a
    same one's `read_at` updated), and `stale_readers` are the finished steps that read the
    old one."""

    event: ClassVar[str] = "probe_finished"
    step: str
    source: str
    version: str | None = None
    changed: bool = False
    kind: ErrorKind | None = None
    message: str | None = None
    outcome: StepOutcome | None = None  # `source`'s result from now on (new `read_at`)
    stale_readers: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Refreshed(Event):
    """`step`'s output was older than its `fresh` bound when `reader` was about to use it:
    it runs again (an execution, `why`: refresh)."""

    event: ClassVar[str] = "refreshed"
    step: str
    reader: str
    age_s: float


@dataclass(slots=True, kw_only=True)
class CompensationFailed(Event):
    """A compensation ended failed (the others still run)."""

    event: ClassVar[str] = "compensation_failed"
    step: str
    compensation: str
    kind: ErrorKind | None = None
    message: str | None = None


@dataclass(slots=True, init=False)
class OtherEvent(Event):
    """An event this plait does not know (read back from a newer plait's journal or JSONL):
    its name and fields, kept as they were."""

    name: str
    fields: dict[str, Any]

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.seq, self.ts, self.run_id = (
            int(fields.get("seq") or 0),
            str(fields.get("ts") or ""),
            str(fields.get("run_id") or ""),
        )
        self.name = name
        self.fields = {k: v for k, v in fields.items() if k not in ("event", "seq", "ts", "run_id")}

    @property
    def event(self) -> str:  # type: ignore[override]  # (a known event's is its class's)
        return self.name

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(slots=True, kw_only=True)
class LoopIterationStarted(Event):
    event: ClassVar[str] = "loop_iteration_started"
    step: str  # the loop
    iteration: int


@dataclass(slots=True, kw_only=True)
class LoopIterationFinished(Event):
    """`until` is its value after the iteration, or null (no `until`, or not evaluated)."""

    event: ClassVar[str] = "loop_iteration_finished"
    step: str
    iteration: int
    until: Any = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event: cls
    for cls in (
        RunStarted,
        StepStarted,
        AttemptStarted,
        AttemptFinished,
        AttemptFailed,
        RetryScheduled,
        FallbackStarted,
        BreakerOpened,
        BreakerHalfOpen,
        BreakerClosed,
        StepFinished,
        RunFinished,
        ToolEvent,
        ToolCallStarted,
        ToolCallFinished,
        LoopBlocked,
        AttemptAbandoned,
        AbandonedFinished,
        ElementFinished,
        LoopIterationStarted,
        LoopIterationFinished,
        StaleDetected,
        RedecideStarted,
        RedecideFinished,
        ExecutionStarted,
        ExecutionFinished,
        CompensationFailed,
        ProbeStarted,
        ProbeFinished,
        Refreshed,
    )
}


# --- the JSON edge: pydantic serialises, validates what is read back, exports schemas -------

# Fields left out of the JSON when they hold None/False, so events stay small and the
# fixed fields of SPEC section 9 (e.g. `reason: null` on step_finished) stay present.
_OMIT_WHEN_EMPTY = frozenset(
    {
        "element",
        "hint_s",
        "injected",
        "tool_event",
        "caused_by",
        "fallback_used",
        "retry",
        "elements",
        "recovered_by",
        "cancelled_by",
        "kind",
        "message",
        "output_errors",
        "description",
        "plan_sha256",
        "queued_s",
        "resumed",
        "still_running",
        "iteration",
        "execution",
        "outcome",
        "stale_readers",
        "compensations",
    }
)
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
# outcome fields in the JSON of `step_finished`, in this order, after `step`
_OUTCOME_ORDER = (
    "status",
    "reason",
    "caused_by",
    "attempts",
    "output",
    "kind",
    "message",
    "retry",
    "fallback_used",
    "recovered_by",
    "elements",
)


def adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """pydantic's TypeAdapter for a runtime record class (made once per class)."""
    made = _ADAPTERS.get(cls)
    if made is None:
        made = _ADAPTERS[cls] = TypeAdapter(cls)
    return made


def _json_dict(event: Event) -> dict[str, Any]:
    if isinstance(event, StepFinished):
        body = adapter(StepOutcome).dump_python(event.outcome, mode="json")
        data: dict[str, Any] = {
            "event": event.event,
            "seq": event.seq,
            "ts": event.ts,
            "run_id": event.run_id,
            "step": event.step,
            "iteration": event.iteration,
        }
        data.update((k, body[k]) for k in _OUTCOME_ORDER)
        data["resumed"] = event.resumed
        data["version"], data["read_at"] = body["version"], body["read_at"]
    elif isinstance(event, ToolEvent | OtherEvent):
        fields = event.fields
        data = {
            "event": event.event,
            **adapter(type(event)).dump_python(event, mode="json", exclude={"fields"}),
        }
        if isinstance(event, ToolEvent):
            data.update(adapter(dict[str, Any]).dump_python(fields, mode="json"))
        else:
            data.update(fields)
    else:
        data = {"event": event.event, **adapter(type(event)).dump_python(event, mode="json")}
    return {
        k: v
        for k, v in data.items()
        if not (k in _OMIT_WHEN_EMPTY and (v is None or v is False or v == []))
    }


# What the journal's events table keeps in columns, so not in an event's stored JSON.
_COLUMNS: set[str] = {"seq", "ts", "run_id", "step"}  # (pydantic wants a set)


def stored_json(event: Event) -> bytes:
    """The event as the journal stores it: compact JSON of the fields that are not columns
    (`event`, `seq`, `ts`, `run_id`, `step`) and differ from their defaults, made by
    pydantic straight to bytes. `event_from_dict` of it (plus the columns) gives the event
    back, defaults included."""
    cls = type(event)
    if cls is AttemptFinished:  # (one per attempt: most succeed plainly, see below)
        text = _plain_attempt_finished(cast(AttemptFinished, event))
        if text is not None:
            return text.encode()
    to_json = _STORED_PLAIN.get(cls)
    if to_json is not None:
        return to_json(event, exclude=_COLUMNS, exclude_defaults=True, fallback=str)
    if isinstance(event, StepFinished):
        if not event.resumed and event.iteration is None:
            return outcome_json(event.outcome)
        body = adapter(StepOutcome).dump_python(
            event.outcome, mode="json", exclude_defaults=True, fallback=str
        )
        if event.resumed:
            body["resumed"] = True
        if event.iteration is not None:  # (a loop's body step: `per_iteration` needs it)
            body["iteration"] = event.iteration
        return json.dumps(body, separators=(",", ":")).encode()
    if isinstance(event, ToolEvent | OtherEvent):
        data = {k: v for k, v in _json_dict(event).items() if k not in _COLUMNS}
        data.pop("event", None)
        return json.dumps(data, separators=(",", ":"), default=str).encode()
    # (the serializer itself, kept per class: `dump_json` is a Python layer over it)
    to_json = _STORED_PLAIN[cls] = adapter(cls).serializer.to_json
    dumped: bytes = to_json(event, exclude=_COLUMNS, exclude_defaults=True, fallback=str)
    return dumped


def stored_text(event: Event) -> str:
    """`stored_json` as text (what the journal's rows hold): the common shapes written
    below are made as text, not encoded only to be decoded again."""
    cls = type(event)
    text: str | None = None
    if cls is AttemptFinished:  # (these exact classes: a subclass may have more fields)
        text = _plain_attempt_finished(cast(AttemptFinished, event))
    elif cls is StepFinished:
        finished = cast(StepFinished, event)
        if not finished.resumed and finished.iteration is None:
            text = _plain_outcome(finished.outcome)
    return stored_json(event).decode() if text is None else text


# Event classes stored as pydantic's JSON of their non-column fields, by class
_STORED_PLAIN: dict[type[Event], Callable[..., bytes]] = {}


def outcome_json(outcome: StepOutcome) -> bytes:
    """A step's outcome as compact JSON (fields at their defaults left out)."""
    text = _plain_outcome(outcome)
    if text is not None:
        return text.encode()
    global _outcome_to_json
    if _outcome_to_json is None:
        _outcome_to_json = adapter(StepOutcome).serializer.to_json
    dumped: bytes = _outcome_to_json(outcome, exclude_defaults=True, fallback=str)
    return dumped


_outcome_to_json: Callable[..., bytes] | None = None


# The journal stores four events per step, two of them through pydantic: `attempt_finished`
# and the step's outcome. Their common shapes (an attempt that succeeded; a step that
# succeeded with a plain output) are written here instead, as the very text pydantic writes
# (tests/runtime/test_stored_text.py compares the two); any other shape or value goes to
# pydantic. Floats: pydantic and `float.__repr__` write the same shortest digits from 1e-4
# up to 1e9 (checked over millions of values); below 1e-4 pydantic writes `1e-6` or
# `0.00001` where repr writes `1e-06` or `1e-05`, so a 6-decimal duration under 0.1 ms is
# looked up in a table pydantic made, and any other float goes to pydantic.
_float_repr = float.__repr__
_SMALL_FLOATS: dict[float, str] = {}


def _float_text(value: Any) -> str | None:
    if type(value) is not float:
        return None
    if 1e-4 <= value < 1e9 or value == 0.0:
        return _float_repr(value)
    if not _SMALL_FLOATS:
        tenths = [round(k / 1_000_000, 6) for k in range(1, 100)]
        texts = adapter(list[float]).serializer.to_json(tenths).decode()[1:-1].split(",")
        _SMALL_FLOATS.update(zip(tenths, texts, strict=True))
    return _SMALL_FLOATS.get(value)


def plain_attempt(event: AttemptFinished) -> bool:
    """Whether `event` is a plainly succeeded attempt, whose stored JSON is
    `plain_attempt_text` of its attempt, duration and queueing time."""
    queued = event.queued_s
    return (
        event.status is AttemptStatus.SUCCEEDED
        and event.iteration is None
        and event.element is None
        and event.execution is None
        and event.kind is None
        and event.message is None
        and event.injected is False
        and type(event.attempt) is int
        and _has_float_text(event.duration_s)
        and (queued is None or _has_float_text(queued))
    )


def _has_float_text(value: Any) -> bool:
    return type(value) is float and (
        1e-4 <= value < 1e9 or value == 0.0 or _float_text(value) is not None
    )


def plain_attempt_text(attempt: int, duration_s: float, queued_s: float | None) -> str:
    """`stored_json` (as text) of a plainly succeeded attempt (`plain_attempt`)."""
    duration = _float_text(duration_s)
    if queued_s is None:
        return f'{{"attempt":{attempt},"status":"succeeded","duration_s":{duration}}}'
    return (
        f'{{"attempt":{attempt},"status":"succeeded","duration_s":{duration},'
        f'"queued_s":{_float_text(queued_s)}}}'
    )


def _plain_attempt_finished(event: AttemptFinished) -> str | None:
    """`stored_json` of a plainly succeeded attempt, or None for pydantic to write it."""
    if not plain_attempt(event):
        return None
    return plain_attempt_text(event.attempt, event.duration_s, event.queued_s)


def _plain_text(value: Any) -> str | None:
    """JSON of a string that needs no escaping (printable ASCII without `"` or `\\`), or of
    an int; None for anything else."""
    kind = type(value)
    if kind is str:
        text: str = value
        if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
            return '"' + text + '"'
        return None
    if kind is int and -(2**63) <= value < 2**63:
        return int.__repr__(value)
    return None


def _plain_outcome(outcome: StepOutcome) -> str | None:
    """`outcome_json` of a step that succeeded plainly (no error, fallback or elements;
    a string, int or no output), or None for pydantic to write it."""
    if not (
        type(outcome) is StepOutcome
        and outcome.status is StepStatus.SUCCEEDED
        and outcome.reason is None
        and outcome.caused_by is None
        and outcome.kind is None
        and outcome.message is None
        and outcome.retry is None
        and outcome.fallback_used is None
        and outcome.recovered_by is None
        and outcome.elements is None
        and type(outcome.attempts) is int
        and outcome.attempts != 0
    ):
        return None
    text = '{"status":"succeeded","attempts":' + int.__repr__(outcome.attempts)
    output, version, read_at = outcome.output, outcome.version, outcome.read_at
    if output is not None:
        value = _plain_text(output)
        if value is None:
            return None
        text += ',"output":' + value
    if version is not None:
        value = _plain_text(version)
        if value is None:
            return None
        text += ',"version":' + value
    if read_at is not None:
        value = _plain_text(read_at)
        if value is None:
            return None
        text += ',"read_at":' + value
    return text + "}"


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild a typed event from its JSON object (a line of `--events`, a journal row),
    validated by pydantic; an unknown event is kept as an `OtherEvent`."""
    name = str(data.get("event"))
    cls = EVENT_TYPES.get(name)
    if cls is None:
        return OtherEvent(name, data)
    if cls is StepFinished:
        outcome = adapter(StepOutcome).validate_python(
            {k: data[k] for k in (*_OUTCOME_ORDER, "version", "read_at") if k in data}
        )
        return StepFinished(
            step=str(data["step"]),
            outcome=outcome,
            resumed=bool(data.get("resumed")),
            iteration=data.get("iteration"),
            seq=int(data.get("seq") or 0),
            ts=str(data.get("ts") or ""),
            run_id=str(data.get("run_id") or ""),
        )
    if cls is ToolEvent:
        if not all(k in data for k in ("step", "attempt", "tool_event")):
            return OtherEvent(name, data)
        return ToolEvent(**{k: v for k, v in data.items() if k != "event"})
    names = {f.name for f in dataclasses.fields(cls)}
    validated: Event = adapter(cls).validate_python({k: v for k, v in data.items() if k in names})
    return validated


def event_json_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event class's JSON object (`event` included, flat)."""
    if cls is StepFinished:
        schema = adapter(StepOutcome).json_schema()
        props = {
            "step": {"type": "string"},
            "iteration": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            **schema.get("properties", {}),
            "resumed": {"type": "boolean", "default": False},
        }
        required = ["step", *schema.get("required", [])]
    else:
        schema = adapter(cls).json_schema()
        props = dict(schema.get("properties", {}))
        props.pop("fields", None)
        required = [r for r in schema.get("required", []) if r != "fields"]
    head = {"event": {"const": cls.event}}
    out: dict[str, Any] = {
        "title": cls.__name__,
        "type": "object",
        "properties": {**head, **props},
        "required": ["event", *required],
    }
    if "$defs" in schema:
        out["$defs"] = schema["$defs"]
    if cls is ToolEvent:
        out["additionalProperties"] = True
    return out


Sink = Callable[[Event], None]
E = TypeVar("E", bound=Event)


@runtime_checkable
class RoutedSink(Protocol):
    """A sink that names, per event class, the function that handles it (or None for an
    event it ignores), so the bus calls that function directly: a run sends about four
    events per step to the report fold, and skipping its own dispatch is a large part of
    what each costs."""

    def __call__(self, event: Event) -> None: ...

    def handler_for(self, cls: type[Event]) -> Sink | None: ...


class EventBus:
    """Stamps `seq`/`ts`/`run_id`, masks every field, and calls each sink in order.

    Sinks are plain callables so a journal, a tracer or a test can subscribe; a sink that
    raises is an internal error (it propagates), never silently dropped. Delivery is
    routed by event class: each class gets the list of its sinks' handlers once.
    """

    def __init__(
        self,
        run_id: str,
        sinks: Iterable[Sink] = (),
        mask: Callable[[Event], None] | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.run_id = run_id
        self._stamp: Callable[[], str] = (
            utc_now_iso if wall is None else (lambda: format_ts(wall()))
        )
        self.sinks: list[Sink] = list(sinks)
        self._numbers = itertools.count(1)  # seq: 1-based, no gaps, one counter per run
        # masks an event's fields (`Masker.mask_event`); None: nothing to mask
        self._mask = mask
        self._routes: dict[type[Event], list[Sink]] = {}
        self.publish = self._publisher()

    def subscribe(self, sink: Sink) -> None:
        self.sinks.append(sink)
        for cls, route in self._routes.items():
            _add_route(route, sink, cls)

    def emit(self, event: E) -> E:
        """Stamp and deliver an event (`publish`; the name events had first)."""
        return self.publish(event)

    def make(self, cls: type[E], **fields: Any) -> E:
        """Build an event from its fields and publish it."""
        return self.publish(cls(**fields))

    def _publisher(self) -> Callable[[E], E]:
        """`publish(event)`: stamp `seq`, `ts` and `run_id`, mask, and call the event's
        route. A closure over what it reads: a run publishes about four events per step."""
        routes, route_for, numbers = self._routes, self._route, self._numbers
        stamp, run_id = self._stamp, self.run_id
        mask = self._mask
        real_time = stamp is utc_now_iso  # (its body inline below: one call less per event)

        def publish(event: E) -> E:
            event.seq = next(numbers)
            event.ts = iso_from_micros(_time_ns() // 1000) if real_time else stamp()
            event.run_id = run_id
            if mask is not None:
                mask(event)
            route = routes.get(type(event))
            if route is None:
                route = route_for(type(event))
            for handler in route:
                handler(event)
            return event

        return publish

    def _route(self, cls: type[Event]) -> list[Sink]:
        route = self._routes.get(cls)
        if route is None:
            route = self._routes[cls] = []
            for sink in self.sinks:
                _add_route(route, sink, cls)
        return route


def _add_route(route: list[Sink], sink: Sink, cls: type[Event]) -> None:
    if isinstance(sink, RoutedSink):
        handler = sink.handler_for(cls)
        if handler is not None:
            route.append(handler)
    else:
        route.append(sink)
