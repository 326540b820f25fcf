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


class MetricsFold:
    """Folds events (dicts or typed events) into RunMetrics; `apply` each, then `result()`.

    The dependencies for the critical path come from `run_started`'s step list (its
    `depends_on` and `standby_for`), or from the arguments, which win.
    """

    def __init__(self, depends_on: Mapping[str, Iterable[str]] | None = None,
                 standbys: Iterable[str] | None = None) -> None:
        self.run = RunMetrics()
        self.steps: dict[str, _Acc] = {}
        self.depends_on: dict[str, list[str]] = {
            k: list(v) for k, v in (depends_on or {}).items()}
        self.standbys = set(standbys or ())
        self._given = depends_on is not None
        self.started_at: str | None = None
        self.finished_at: str | None = None

    def __call__(self, event: Any) -> None:
        self.apply(event)

    def apply(self, event: Any) -> None:
        e: Mapping[str, Any] = event if isinstance(event, Mapping) else event.model_dump()
        name, step = e.get("event"), e.get("step")
        acc = self.steps.setdefault(str(step), _Acc()) if step is not None else None
        if name == "run_started":
            self._on_run_started(e)
        elif name == "run_finished":
            self.finished_at = e.get("ts")
        elif name == "breaker_opened":
            self.run.breaker_trips += 1
        elif acc is not None:
            _apply_step_event(self.run, acc, e)

    def _on_run_started(self, e: Mapping[str, Any]) -> None:
        self.started_at = self.started_at or e.get("ts")
        for s, info in (e.get("steps", {}) or {}).items():
            self.steps.setdefault(s, _Acc())
            info = info or {}
            if not self._given and "depends_on" in info:
                self.depends_on[s] = list(info.get("depends_on") or [])
            if info.get("standby_for"):
                self.standbys.add(s)

    def result(self) -> RunMetrics:
        run = self.run.model_copy()
        run.makespan_s = _seconds(self.started_at, self.finished_at)
        steps = {}
        for s, acc in self.steps.items():
            m = acc.metrics.model_copy()
            m.duration_s = _seconds(acc.first_start, acc.finished)
            steps[s] = m
        run.steps = steps
        run.critical_path_s, run.critical_path = critical_path(
            {s: m.duration_s or 0.0 for s, m in steps.items() if s not in self.standbys},
            self.depends_on)
        return run


def compute_metrics(events: Iterable[Mapping[str, Any]],
                    depends_on: Mapping[str, Iterable[str]] | None = None,
                    standbys: Iterable[str] = ()) -> RunMetrics:
    """Metrics of one run from its events (dicts as in `--events`, in order).

    `depends_on` (step -> its dependencies, from the plan) is needed for the critical path
    unless `run_started` carries it; `standbys` are left out of it, their time being inside
    their primary's.
    """
    fold = MetricsFold(depends_on, standbys)
    for e in events:
        fold.apply(e)
    return fold.result()


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
