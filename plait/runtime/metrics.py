"""Run metrics, derived from the events alone: where each step's time went, and the run's shape.

Per step: attempts, seconds waiting in backoff (the `delay_s` of its `retry_scheduled`),
seconds queued for resources (`attempt_finished.queued_s`: breaker, concurrency slots, rate
window; None when the scheduler did not measure it), seconds in tool calls, and its wall time.
Per run: retries, fallbacks used, breaker trips, the makespan and the critical path (the
dependency chain whose step times add up to the most, i.e. the shortest the run could take
with unlimited concurrency and no waiting between steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.runtime.events import seconds_between


@dataclass(slots=True, kw_only=True)
class StepMetrics:
    attempts: int = 0
    backoff_s: float = 0.0
    queued_s: float | None = None
    call_s: float = 0.0
    duration_s: float | None = None


@dataclass(slots=True, kw_only=True)
class RunMetrics:
    retries: int = 0
    fallbacks_used: int = 0
    breaker_trips: int = 0
    makespan_s: float | None = None
    critical_path_s: float = 0.0
    critical_path: list[str] = field(default_factory=list)
    steps: dict[str, StepMetrics] = field(default_factory=dict)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return seconds_between(start, end)


class StepAccumulator:
    """Per-step accumulator while the events are read (plain fields: one per step, updated
    per event; `StepMetrics` is built only by `result()`)."""

    __slots__ = ("attempts", "backoff_s", "call_s", "duration_s", "first_start", "queued_s")

    def __init__(self) -> None:
        self.attempts = 0
        self.backoff_s = 0.0
        self.queued_s: float | None = None
        self.call_s = 0.0
        self.first_start: str | None = None
        # first attempt start -> step_finished, set when the step finishes (the report
        # reads it too: one computation per step)
        self.duration_s: float | None = None

    def metrics(self) -> StepMetrics:
        return StepMetrics(
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            queued_s=self.queued_s,
            call_s=self.call_s,
            duration_s=self.duration_s,
        )


class MetricsFold:
    """Folds events (dicts or typed events) into RunMetrics; `apply` each, then `result()`.

    The dependencies for the critical path come from `run_started`'s step list (its
    `depends_on` and `standby_for`), or from the arguments, which win.
    """

    def __init__(
        self,
        depends_on: Mapping[str, Iterable[str]] | None = None,
        standbys: Iterable[str] | None = None,
    ) -> None:
        self.run = RunMetrics()
        self.steps: dict[str, StepAccumulator] = {}
        self.depends_on: dict[str, list[str]] = {k: list(v) for k, v in (depends_on or {}).items()}
        self.standbys = set(standbys or ())
        self._given = depends_on is not None
        self.started_at: str | None = None
        self.finished_at: str | None = None

    def __call__(self, event: Any) -> None:
        self.apply(event)

    def accumulator(self, step: str) -> StepAccumulator:
        """The step's accumulator (made on first use), for a fold that feeds it directly."""
        acc = self.steps.get(step)
        if acc is None:
            acc = self.steps[step] = StepAccumulator()
        return acc

    def apply(self, event: Any) -> None:
        """One event: a typed event (read by attribute, no dump) or its JSON dict."""
        e: Any = event
        # a typed event has an `event` attribute; the ABC check is only for other mappings
        if type(event) is dict or (not hasattr(event, "event") and isinstance(event, Mapping)):
            e = _DictEvent(event)
        name = e.event
        step_event = _STEP_EVENTS.get(name)
        if step_event is not None:  # the common case: one attribute read, one dict lookup
            step = e.step
            if step is None:
                return
            acc = self.steps.get(step)
            if acc is None:
                acc = self.steps[str(step)] = StepAccumulator()
            step_event(self.run, acc, e)
            return
        step = getattr(e, "step", None)
        if step is not None and step not in self.steps:  # every step named gets metrics
            self.steps[str(step)] = StepAccumulator()
        if name == "run_started":
            self._on_run_started(e)
        elif name == "run_finished":
            self.finished_at = e.ts
        elif name == "breaker_opened":
            self.run.breaker_trips += 1

    def _on_run_started(self, e: Any) -> None:
        self.started_at = self.started_at or e.ts
        steps, depends_on, take_deps = self.steps, self.depends_on, not self._given
        for s, info in (e.steps or {}).items():
            if s not in steps:
                steps[s] = StepAccumulator()
            if not info:
                continue
            if take_deps and "depends_on" in info:
                depends_on[s] = info["depends_on"] or []  # read, never changed here
            if info.get("standby_for"):
                self.standbys.add(s)

    def result(self) -> RunMetrics:
        run = dataclasses.replace(self.run)
        run.makespan_s = _seconds(self.started_at, self.finished_at)
        steps = {s: acc.metrics() for s, acc in self.steps.items()}
        run.steps = steps
        run.critical_path_s, run.critical_path = critical_path(
            {s: m.duration_s or 0.0 for s, m in steps.items() if s not in self.standbys},
            self.depends_on,
        )
        return run


class _DictEvent:
    """Attribute access over an event's JSON dict (missing fields read as None)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return self._data.get(name)


def compute_metrics(
    events: Iterable[Mapping[str, Any]],
    depends_on: Mapping[str, Iterable[str]] | None = None,
    standbys: Iterable[str] = (),
) -> RunMetrics:
    """Metrics of one run from its events (dicts as in `--events`, in order).

    `depends_on` (step -> its dependencies, from the plan) is needed for the critical path
    unless `run_started` carries it; `standbys` are left out of it, their time being inside
    their primary's.
    """
    fold = MetricsFold(depends_on, standbys)
    for e in events:
        fold.apply(e)
    return fold.result()


def metric_attempt_started(run: RunMetrics, acc: StepAccumulator, e: Any) -> None:
    acc.attempts += 1
    if acc.first_start is None:
        acc.first_start = e.ts


def metric_attempt_finished(run: RunMetrics, acc: StepAccumulator, e: Any) -> None:
    acc.call_s = round(acc.call_s + float(e.duration_s or 0.0), 6)
    queued = e.queued_s
    if queued is not None:
        acc.queued_s = round((acc.queued_s or 0.0) + float(queued), 6)


def metric_retry_scheduled(run: RunMetrics, acc: StepAccumulator, e: Any) -> None:
    run.retries += 1
    acc.backoff_s = round(acc.backoff_s + float(e.delay_s or 0.0), 6)


def metric_step_finished(run: RunMetrics, acc: StepAccumulator, e: Any) -> None:
    acc.duration_s = _seconds(acc.first_start, e.ts)
    if e.fallback_used:
        run.fallbacks_used += 1


_STEP_EVENTS: dict[str, Callable[[RunMetrics, StepAccumulator, Any], None]] = {
    "attempt_started": metric_attempt_started,
    "attempt_finished": metric_attempt_finished,
    "retry_scheduled": metric_retry_scheduled,
    "step_finished": metric_step_finished,
}


def critical_path(
    durations: Mapping[str, float], depends_on: Mapping[str, Iterable[str]]
) -> tuple[float, list[str]]:
    """The longest chain of dependencies by summed duration: (seconds, steps in order).

    networkx's `dag_longest_path` over the steps that ran: an edge carries the duration of
    the step it leads to, and a start node leads to every step, so a chain weighs the sum
    of its steps. (A dependency cycle cannot come from a checked plan; if recorded data
    holds one, its back edges are left out.)
    """
    fast = _chain_in_order(durations, depends_on)
    if fast is not None:
        return fast
    import networkx as nx

    start = object()  # a node no step name can equal
    graph = nx.DiGraph()
    graph.add_weighted_edges_from((start, step, seconds) for step, seconds in durations.items())
    graph.add_weighted_edges_from(
        (dep, step, durations[step])
        for step in durations
        for dep in depends_on.get(step, ())
        if dep in durations and dep != step
    )
    while not nx.is_directed_acyclic_graph(graph):
        graph.remove_edge(*nx.find_cycle(graph)[-1][:2])
    path = [step for step in nx.dag_longest_path(graph) if step is not start]
    return (round(sum(durations[step] for step in path), 6), path)


def _chain_in_order(
    durations: Mapping[str, float], depends_on: Mapping[str, Iterable[str]]
) -> tuple[float, list[str]] | None:
    """`critical_path` in one pass when `durations` lists every step after its
    dependencies (a plan written top-down, as most are), else None. The same weight as
    networkx's longest path over the same graph, and mostly the same chain: it grows by a
    dependency only when that makes it heavier, and among equally heavy chains ends at the
    shallowest step, as networkx does (among those, it may pick another). (A run of
    10,000 steps: a few milliseconds instead of ~0.1 s.)"""
    # step -> (chain weight, step before, depth: the length of its longest chain of steps)
    best: dict[str, tuple[float, str | None, int]] = {}
    top, end, end_depth = 0.0, None, 0
    for step, seconds in durations.items():
        weight, before, depth = seconds, None, 1
        for dep in depends_on.get(step, ()):
            if dep not in durations or dep == step:
                continue
            found = best.get(dep)
            if found is None:
                return None  # a dependency listed after its dependant
            if found[0] + seconds > weight:
                weight, before = found[0] + seconds, dep
            depth = max(depth, found[2] + 1)
        best[step] = (weight, before, depth)
        # (among equal chains, networkx ends at the shallowest step: it walks generations)
        if weight > top or (weight == top and end is not None and depth < end_depth):
            top, end, end_depth = weight, step, depth
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = best[end][1]
    path.reverse()
    return (round(sum(durations[step] for step in path), 6), path)


def plan_dependencies(compiled_plan: Mapping[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """(step -> depends_on, standby names) from a compiled plan's JSON."""
    steps = compiled_plan.get("steps", {}) or {}
    deps = {name: list(s.get("depends_on", [])) for name, s in steps.items()}
    standbys = [name for name, s in steps.items() if s.get("standby_for")]
    return deps, standbys
