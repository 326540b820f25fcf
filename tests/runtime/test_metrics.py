"""Run metrics folded from events: backoff, queueing, retries, fallbacks, critical path."""

from __future__ import annotations

import itertools
import random
from typing import Any

from plait.runtime.metrics import compute_metrics, critical_path, plan_dependencies


def _ts(seconds: float) -> str:
    whole = int(seconds)
    micro = round((seconds - whole) * 1_000_000)
    return f"2026-01-01T10:00:{whole:02d}.{micro:06d}Z"


EVENTS: list[dict[str, Any]] = [
    {"event": "run_started", "ts": _ts(0), "steps": {"a": {}, "b": {}, "c": {}, "sb": {}}},
    {"event": "attempt_started", "step": "a", "attempt": 1, "ts": _ts(0)},
    {
        "event": "attempt_finished",
        "step": "a",
        "attempt": 1,
        "ts": _ts(1.5),
        "status": "failed",
        "duration_s": 1.0,
        "queued_s": 0.5,
    },
    {"event": "retry_scheduled", "step": "a", "attempt": 2, "ts": _ts(1.5), "delay_s": 2.0},
    {"event": "attempt_started", "step": "a", "attempt": 2, "ts": _ts(3.5)},
    {
        "event": "attempt_finished",
        "step": "a",
        "attempt": 2,
        "ts": _ts(4),
        "status": "succeeded",
        "duration_s": 0.5,
        "queued_s": 0.0,
    },
    {"event": "step_finished", "step": "a", "status": "succeeded", "ts": _ts(4)},
    {"event": "attempt_started", "step": "c", "attempt": 1, "ts": _ts(0)},
    {
        "event": "attempt_finished",
        "step": "c",
        "attempt": 1,
        "ts": _ts(1),
        "status": "failed",
        "duration_s": 1.0,
    },
    {"event": "breaker_opened", "resource": "api", "step": "c", "ts": _ts(1)},
    {"event": "fallback_started", "step": "c", "fallback": "sb", "ts": _ts(1)},
    {"event": "attempt_started", "step": "sb", "attempt": 1, "ts": _ts(1)},
    {
        "event": "attempt_finished",
        "step": "sb",
        "attempt": 1,
        "ts": _ts(2),
        "status": "succeeded",
        "duration_s": 1.0,
    },
    {"event": "step_finished", "step": "sb", "status": "succeeded", "ts": _ts(2)},
    {
        "event": "step_finished",
        "step": "c",
        "status": "recovered",
        "fallback_used": "sb",
        "ts": _ts(2),
    },
    {"event": "attempt_started", "step": "b", "attempt": 1, "ts": _ts(4)},
    {
        "event": "attempt_finished",
        "step": "b",
        "attempt": 1,
        "ts": _ts(5),
        "status": "succeeded",
        "duration_s": 1.0,
    },
    {"event": "step_finished", "step": "b", "status": "succeeded", "ts": _ts(5)},
    {"event": "run_finished", "outcome": "degraded", "ts": _ts(6)},
]


def test_step_and_run_metrics() -> None:
    deps, standbys = plan_dependencies(
        {
            "steps": {
                "a": {"depends_on": []},
                "b": {"depends_on": ["a"]},
                "c": {"depends_on": []},
                "sb": {"depends_on": [], "standby_for": "c"},
            }
        }
    )
    m = compute_metrics(EVENTS, deps, standbys)
    a = m.steps["a"]
    assert (a.attempts, a.backoff_s, a.queued_s, a.call_s, a.duration_s) == (2, 2.0, 0.5, 1.5, 4.0)
    assert m.steps["c"].queued_s is None  # not measured
    assert (m.retries, m.fallbacks_used, m.breaker_trips) == (1, 1, 1)
    assert m.makespan_s == 6.0
    assert m.critical_path == ["a", "b"]
    assert m.critical_path_s == 5.0


def test_critical_path_picks_the_heaviest_chain() -> None:
    durations = {"x": 1.0, "y": 5.0, "z": 1.0, "w": 1.0}
    deps = {"z": ["x", "y"], "w": ["z"]}
    assert critical_path(durations, deps) == (7.0, ["y", "z", "w"])
    assert critical_path({}, {}) == (0.0, [])


def _longest_chain(durations: dict[str, float], deps: dict[str, list[str]]) -> float:
    """Reference: the heaviest chain by plain memoised recursion."""
    memo: dict[str, float] = {}

    def longest(step: str) -> float:
        if step not in memo:
            memo[step] = durations[step] + max((longest(d) for d in deps[step]), default=0.0)
        return memo[step]

    return max((longest(s) for s in durations), default=0.0)


def test_critical_path_matches_a_brute_force_longest_chain() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 12)
        order = [f"s{i}" for i in range(n)]
        rank = {s: i for i, s in enumerate(order)}
        deps = {s: [d for d in order if rank[d] < rank[s] and rng.random() < 0.3] for s in order}
        listed = order[:]
        rng.shuffle(listed)  # definition order need not be a topological order
        durations = {s: float(rng.randint(0, 5)) for s in listed}
        seconds, path = critical_path(durations, deps)
        assert seconds == _longest_chain(durations, deps)
        assert sum(durations[s] for s in path) == seconds
        assert all(a in deps[b] for a, b in itertools.pairwise(path))


def test_the_one_pass_critical_path_weighs_what_networkx_weighs() -> None:
    """Steps listed after their dependencies take a one-pass path; others go to networkx.
    Both give the heaviest chain's weight, and a chain of real dependencies."""
    rng = random.Random(11)
    for _ in range(300):
        order = [f"s{i}" for i in range(rng.randint(1, 12))]
        deps = {s: [d for d in order[:i] if rng.random() < 0.3] for i, s in enumerate(order)}
        durations = {s: float(rng.choice([0, 1, 2, 3, 0.5])) for s in order}
        for listed in (order, list(reversed(order))):  # top-down, then bottom-up
            seconds, path = critical_path({s: durations[s] for s in listed}, deps)
            assert seconds == _longest_chain(durations, deps)
            assert sum(durations[s] for s in path) == seconds
            assert all(a in deps[b] for a, b in itertools.pairwise(path))
