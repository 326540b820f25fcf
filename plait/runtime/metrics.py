"""Run metrics, derived from the events alone: where each step's time went, and the run's shape.

Per step: attempts, seconds waiting in backoff (the `delay_s` of its `retry_scheduled`),
seconds queued for resources (`attempt_finished.queued_s`: breaker, concurrency slots, rate
window; None when the scheduler did not measure it), seconds in tool calls, and its wall time.
Per run: retries, fallbacks used, breaker trips, the makespan and the critical path (the
dependency chain whose step times add up to the most, i.e. the shortest the run could take
with unlimited concurrency and no waiting between steps).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from plait.runtime.events import parse_ts


class StepMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = 0
    backoff_s: float = 0.0
    queued_s: float | None = None
    call_s: float = 0.0
    duration_s: float | None = None


class RunMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retries: int = 0
    fallbacks_used: int = 0
    breaker_trips: int = 0
    makespan_s: float | None = None
    critical_path_s: float = 0.0
    critical_path: list[str] = []
    steps: dict[str, StepMetrics] = {}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((parse_ts(end) - parse_ts(start)).total_seconds(), 6)


class _Acc:
    """Per-step accumulator while the events are read."""

    def __init__(self) -> None:
        self.metrics = StepMetrics()
        self.first_start: str | None = None
        self.finished: str | None = None


def compute_metrics(events: Iterable[Mapping[str, Any]],
                    depends_on: Mapping[str, Iterable[str]] | None = None,
                    standbys: Iterable[str] = ()) -> RunMetrics:
    """Metrics of one run from its events (dicts as in `--events`, in order).

    `depends_on` (step -> its dependencies, from the plan) is needed for the critical path;
    `standbys` are left out of it, their time being inside their primary's.
    """
    run = RunMetrics()
    steps: dict[str, _Acc] = {}
    started_at = finished_at = None
    for e in events:
        name, step = e.get("event"), e.get("step")
        acc = steps.setdefault(str(step), _Acc()) if step is not None else None
        if name == "run_started":
            started_at = started_at or e.get("ts")
            for s in e.get("steps", {}) or {}:
                steps.setdefault(s, _Acc())
        elif name == "run_finished":
            finished_at = e.get("ts")
        elif name == "breaker_opened":
            run.breaker_trips += 1
        elif acc is not None:
            _apply_step_event(run, acc, e)
    run.makespan_s = _seconds(started_at, finished_at)
    for acc in steps.values():
        acc.metrics.duration_s = _seconds(acc.first_start, acc.finished)
    run.steps = {s: acc.metrics for s, acc in steps.items()}
    run.critical_path_s, run.critical_path = critical_path(
        {s: m.duration_s or 0.0 for s, m in run.steps.items() if s not in set(standbys)},
        depends_on or {})
    return run


def _apply_step_event(run: RunMetrics, acc: _Acc, e: Mapping[str, Any]) -> None:
    name, m = e.get("event"), acc.metrics
    if name == "attempt_started":
        m.attempts += 1
        acc.first_start = acc.first_start or e.get("ts")
    elif name == "attempt_finished":
        m.call_s = round(m.call_s + float(e.get("duration_s") or 0.0), 6)
        queued = e.get("queued_s")
        if queued is not None:
            m.queued_s = round((m.queued_s or 0.0) + float(queued), 6)
    elif name == "retry_scheduled":
        run.retries += 1
        m.backoff_s = round(m.backoff_s + float(e.get("delay_s") or 0.0), 6)
    elif name == "step_finished":
        acc.finished = e.get("ts") if acc.first_start else None
        if e.get("fallback_used"):
            run.fallbacks_used += 1


def critical_path(durations: Mapping[str, float],
                  depends_on: Mapping[str, Iterable[str]]) -> tuple[float, list[str]]:
    """The longest chain of dependencies by summed duration: (seconds, steps in order)."""
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(step: str, trail: frozenset[str]) -> tuple[float, list[str]]:
        if step in best:
            return best[step]
        head = (0.0, list[str]())
        for dep in depends_on.get(step, ()):
            if dep in durations and dep not in trail:  # `trail` guards against a bad cycle
                cand = longest(dep, trail | {step})
                head = max(head, cand, key=lambda c: c[0])
        best[step] = (round(head[0] + durations[step], 6), [*head[1], step])
        return best[step]

    paths = [longest(s, frozenset()) for s in durations]
    return max(paths, key=lambda p: p[0], default=(0.0, []))


def plan_dependencies(compiled_plan: Mapping[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """(step -> depends_on, standby names) from a compiled plan's JSON."""
    steps = compiled_plan.get("steps", {}) or {}
    deps = {name: list(s.get("depends_on", [])) for name, s in steps.items()}
    standbys = [name for name, s in steps.items() if s.get("standby_for")]
    return deps, standbys
