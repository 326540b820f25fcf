"""Typed run events (SPEC sections 7 and 9) and the bus that stamps and fans them out.

The runtime only emits events; progress, the `--events` JSONL file, the journal and the
report all consume them. Each event is a pydantic model; `EventBus.emit` stamps `seq`
(1-based, no gaps), `ts` (ISO-8601 UTC) and `run_id`, masks secrets in free text, and
calls every sink in order. Beyond the fields SPEC section 9 names, `step_finished` and
`run_finished` carry what the report needs (output, attempts, error, ...), so the report is
a pure fold of the events (see `report.ReportBuilder`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from plait.runtime.fastmodel import maker

# Fields left out of the JSON when they hold None/False, so events stay small and the
# fixed fields of SPEC section 9 (e.g. `reason: null` on step_finished) stay present.
_OMIT_WHEN_EMPTY = frozenset({
    "element", "hint_s", "injected", "tool_event", "caused_by", "fallback_used", "retry",
    "elements", "recovered_by", "cancelled_by", "kind", "message", "output_errors", "description",
    "plan_sha256", "queued_s", "resumed", "still_running",
})


# utc_now_iso formats the date and time up to the second once per second (events are
# stamped at a high rate), and the microseconds from two tables of three digits (a join of
# three strings instead of a format). Integer nanoseconds: no float rounding.
_second_cache: tuple[int, str] = (-1, "")
_time_ns = time.time_ns
_MILLIS = tuple(f"{i:03d}" for i in range(1000))
_MICROS_Z = tuple(f"{i:03d}Z" for i in range(1000))


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with microseconds (`2026-01-01T10:00:00.123456Z`)."""
    global _second_cache
    second, micro = divmod(_time_ns() // 1000, 1_000_000)
    cached, prefix = _second_cache
    if second != cached:
        prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6] + "."  # no "+00:00"
        _second_cache = (second, prefix)
    millis, micros = divmod(micro, 1000)
    return prefix + _MILLIS[millis] + _MICROS_Z[micros]


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


class Event(BaseModel):
    """Fields every event has; `seq`, `ts` and `run_id` are stamped by the bus."""

    model_config = ConfigDict(extra="allow")

    event: str
    seq: int = 0
    ts: str = ""
    run_id: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object written to `--events` (empty optional fields left out)."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items()
                if not (k in _OMIT_WHEN_EMPTY and (v is None or v is False or v == []))}


class RunStarted(Event):
    event: Literal["run_started"] = "run_started"
    plan: str
    description: str | None = None
    plait_version: str = ""
    plan_sha256: str | None = None
    inputs: dict[str, Any] = {}
    # Every step in definition order (standbys included) with what the outcome rules
    # need: {"optional": bool, "standby_for": str | None, "map": bool}, plus
    # "depends_on": [step, ...] for the critical path of the run metrics.
    steps: dict[str, dict[str, Any]] = {}
    seed: int | None = None


class StepStarted(Event):
    event: Literal["step_started"] = "step_started"
    step: str
    standby_for: str | None = None


class AttemptStarted(Event):
    event: Literal["attempt_started"] = "attempt_started"
    step: str
    attempt: int
    element: int | None = None


class AttemptFinished(Event):
    """Follows every attempt; `status` is `succeeded`, `failed` or `cancelled`."""

    event: Literal["attempt_finished"] = "attempt_finished"
    step: str
    attempt: int
    element: int | None = None
    status: str
    duration_s: float
    kind: str | None = None
    message: str | None = None
    injected: bool = False
    # Seconds between attempt_started and the tool call (waiting for a breaker, concurrency
    # slots or a rate window); None when the scheduler did not measure it. Read by metrics.
    queued_s: float | None = None


class AttemptFailed(Event):
    event: Literal["attempt_failed"] = "attempt_failed"
    step: str
    attempt: int
    element: int | None = None
    kind: str
    message: str
    injected: bool = False


class RetryScheduled(Event):
    """`attempt` is the attempt about to be made (SPEC section 9)."""

    event: Literal["retry_scheduled"] = "retry_scheduled"
    step: str
    attempt: int
    element: int | None = None
    delay_s: float
    hint_s: float | None = None


class FallbackStarted(Event):
    event: Literal["fallback_started"] = "fallback_started"
    step: str
    fallback: str


class BreakerOpened(Event):
    event: Literal["breaker_opened"] = "breaker_opened"
    resource: str
    step: str | None = None


class BreakerHalfOpen(Event):
    event: Literal["breaker_half_open"] = "breaker_half_open"
    resource: str
    step: str | None = None


class BreakerClosed(Event):
    event: Literal["breaker_closed"] = "breaker_closed"
    resource: str
    step: str | None = None


class StepFinished(Event):
    """Exactly one per step, also for steps skipped or cancelled without starting.

    `kind`/`message`/`retry` are the step's final error (of its own attempts), `output` its
    masked output: what the report needs, so the report is derivable from events alone.
    """

    event: Literal["step_finished"] = "step_finished"
    step: str
    status: str
    reason: str | None = None
    caused_by: str | None = None
    attempts: int = 0
    output: Any = None
    kind: str | None = None
    message: str | None = None
    retry: str | None = None
    fallback_used: str | None = None
    recovered_by: str | None = None  # fallback | default | tolerance, when recovered
    elements: dict[str, Any] | None = None
    # A resume seeded this step from the journal: it did not run in this session.
    resumed: bool = False
    # SPEC section 10: the output's version and when the attempt producing it ended.
    version: str | None = None
    read_at: str | None = None


class RunFinished(Event):
    event: Literal["run_finished"] = "run_finished"
    outcome: str
    cancelled_by: str | None = None
    outputs: dict[str, Any] = {}
    # Outputs whose expression failed: [{"output": NAME, "why": "..."}] (SPEC section 7).
    output_errors: list[dict[str, str]] = []
    duration_s: float = 0.0


class ToolEvent(Event):
    """A tool's own observation (LLM token usage, model, ...), from `ToolContext.emit`."""

    event: Literal["tool_event"] = "tool_event"
    step: str
    attempt: int
    element: int | None = None
    tool_event: str


class ToolCallStarted(Event):
    """A model's tool call begins (SPEC section 11); `tool` is its plait name."""

    event: Literal["tool_call_started"] = "tool_call_started"
    step: str
    attempt: int
    element: int | None = None
    turn: int
    call_id: str
    tool: str
    arguments: Any = None


class ToolCallFinished(ToolCallStarted):
    """A model's tool call ended, its policies used up or not (SPEC section 11)."""

    event: Literal["tool_call_finished"] = "tool_call_finished"  # type: ignore[assignment]
    status: str
    attempts: int = 0
    duration_s: float = 0.0
    kind: str | None = None
    message: str | None = None


class LoopBlocked(Event):
    """A warning: an async tool held the event loop (a blocking call in an `async def`)
    for `duration_s`, so nothing else in the run moved meanwhile, timeouts included."""

    event: Literal["loop_blocked"] = "loop_blocked"
    step: str
    attempt: int
    element: int | None = None
    tool: str
    duration_s: float


class AttemptAbandoned(Event):
    """An attempt ended (timeout) while its tool's thread runs on: the thread cannot be
    stopped, so it keeps the attempt's concurrency slots until it ends."""

    event: Literal["attempt_abandoned"] = "attempt_abandoned"
    step: str
    attempt: int
    element: int | None = None
    tool: str


class AbandonedFinished(Event):
    """The thread of an abandoned attempt ended `overran_s` after its attempt did (or,
    `still_running`, was still going when the run ended)."""

    event: Literal["abandoned_finished"] = "abandoned_finished"
    step: str
    attempt: int
    element: int | None = None
    overran_s: float
    still_running: bool = False


class ElementFinished(Event):
    """A map element's call ended for good (a checkpoint: `plait resume` keeps it)."""

    event: Literal["element_finished"] = "element_finished"
    step: str
    element: int
    status: str  # succeeded | failed
    attempts: int = 0
    output: Any = None
    kind: str | None = None
    message: str | None = None
    resumed: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event"].default: cls
    for cls in (RunStarted, StepStarted, AttemptStarted, AttemptFinished, AttemptFailed,
                RetryScheduled, FallbackStarted, BreakerOpened, BreakerHalfOpen,
                BreakerClosed, StepFinished, RunFinished, ToolEvent, ToolCallStarted,
                ToolCallFinished, LoopBlocked, AttemptAbandoned, AbandonedFinished,
                ElementFinished)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild a typed event from its JSON object (a line of `--events`, a journal row)."""
    cls = EVENT_TYPES.get(str(data.get("event")), Event)
    return cls.model_validate(data)


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
    """Stamps `seq`/`ts`/`run_id`, masks free text, and calls each sink in order.

    Sinks are plain callables so a journal, a tracer or a test can subscribe; a sink that
    raises is an internal error (it propagates), never silently dropped. Delivery is
    routed by event class: each class gets the list of its sinks' handlers once.
    """

    def __init__(self, run_id: str, sinks: Iterable[Sink] = (),
                 mask_text: Callable[[str], str] | None = None,
                 mask_value: Callable[[Any], Any] | None = None,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.run_id = run_id
        self._stamp: Callable[[], str] = (
            utc_now_iso if wall is None else (lambda: format_ts(wall())))
        self.sinks: list[Sink] = list(sinks)
        self._numbers = itertools.count(1)  # seq: 1-based, no gaps, one counter per run
        self._mask_text = mask_text
        self._mask_value = mask_value
        self._masking = mask_text is not None or mask_value is not None
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
        """Build an event from its fields without validation (`fastmodel.maker`: the
        runtime passes declared fields with correctly typed values) and publish it."""
        return self.publish(maker(cls)(**fields))

    def _publisher(self) -> Callable[[E], E]:
        """`publish(event)`: stamp `seq`, `ts` and `run_id`, mask, and call the event's
        route. A closure over what it reads: a run publishes about four events per step.

        The stamps go straight into `__dict__`: every event declares the three fields
        (so the field order does not change) and none is validated on assignment.
        """
        routes, route_for, numbers = self._routes, self._route, self._numbers
        stamp, run_id = self._stamp, self.run_id
        mask = self._mask if self._masking else None

        def publish(event: E) -> E:
            data = event.__dict__
            data["seq"] = next(numbers)
            data["ts"] = stamp()
            data["run_id"] = run_id
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

    def _mask(self, event: Event) -> None:
        if self._mask_text is not None:
            message = getattr(event, "message", None)
            if isinstance(message, str):
                event.message = self._mask_text(message)  # type: ignore[attr-defined]
        if self._mask_value is not None:
            for name in ("output", "outputs", "inputs", "arguments"):
                if name in type(event).model_fields:
                    setattr(event, name, self._mask_value(getattr(event, name)))


def _add_route(route: list[Sink], sink: Sink, cls: type[Event]) -> None:
    if isinstance(sink, RoutedSink):
        handler = sink.handler_for(cls)
        if handler is not None:
            route.append(handler)
    else:
        route.append(sink)
