"""Scheduler benchmark: plait against a hand-written asyncio baseline, in one process.

Workloads: 10,000 no-op steps fanned out from one root; a 1,000-step chain; a 100-step DAG
of 50 ms sleeps (makespan against its critical path); peak memory of the 10,000-step run.
The baseline runs one task per step, each awaiting its dependencies' futures, then calling
the same tool function. Each timed run starts after a `gc.collect()` (neither side pays for
the other's garbage); the `plait gc` column is the part of plait's time spent in the
garbage collector. Run: `.venv/bin/python bench/scheduler.py`.

`run_plan` leaves the collector as the embedding program set it, so the figures are given
twice: with CPython's default collector, and with the collector as `plait run` sets it for
its own process (`gcscope.frozen_heap`, at the CLI edge), around both plait and the
baseline alike (`--gc cli` / `--gc default`; both by default).

Under each of the first two rows, "its report fold alone" replays that run's own recorded
events into a fresh `ReportBuilder` and builds the report: the report's share of a step,
without scheduling, tool calls or making the events. Its ratio to the baseline is a floor
for the row above while every step's events are folded into the report (the design issue
#13 asks for); the in-process 3x goal has to fit the scheduler, the tool call and the events
themselves in what is left above it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plait.compiler.ir import CompiledPlan, LiteralExpr, Step
from plait.runtime.api import Runner
from plait.runtime.gcscope import frozen_heap
from plait.runtime.report import ReportBuilder
from plait.stdlib.registry import tool


@tool(name="bench.noop")
async def noop(value: Any = None) -> Any:
    """The no-op step: the same coroutine the baseline awaits."""
    return value


def _plan(deps: dict[str, list[str]], tool: str, args: dict[str, Any]) -> CompiledPlan:
    steps = {
        name: Step(
            name=name,
            tool=tool,
            depends_on=d,
            after=d,
            args={k: LiteralExpr(value=v) for k, v in args.items()},
        )
        for name, d in deps.items()
    }
    return CompiledPlan(plan="bench", steps=steps)


def fan_out(n: int) -> dict[str, list[str]]:
    return {"root": [], **{f"s{i}": ["root"] for i in range(n - 1)}}


def chain(n: int) -> dict[str, list[str]]:
    return {f"s{i}": ([f"s{i - 1}"] if i else []) for i in range(n)}


def random_dag(n: int, seed: int = 1) -> dict[str, list[str]]:
    rng = random.Random(seed)
    deps: dict[str, list[str]] = {}
    for i in range(n):
        earlier = list(deps)
        k = min(len(earlier), rng.choice([0, 1, 2, 3]))
        deps[f"s{i}"] = sorted(
            rng.sample(earlier[-20:], k=min(k, len(earlier[-20:]))), key=earlier.index
        )
    return deps


def critical_path(deps: dict[str, list[str]], cost: float) -> float:
    depth: dict[str, int] = {}
    for name, d in deps.items():
        depth[name] = 1 + max((depth[x] for x in d), default=0)
    return max(depth.values()) * cost


async def baseline(deps: dict[str, list[str]], call: Callable[[], Awaitable[Any]]) -> None:
    """What a hand-written asyncio program would do: a task per step awaiting its deps."""
    loop = asyncio.get_running_loop()
    futures = {name: loop.create_future() for name in deps}

    async def one(name: str) -> None:
        for d in deps[name]:
            await futures[d]
        futures[name].set_result(await call())

    async with asyncio.TaskGroup() as tg:
        for name in deps:
            tg.create_task(one(name))


async def _noop() -> None:
    await noop()


def _sleeper(seconds: float) -> Callable[[], Awaitable[Any]]:
    async def call() -> None:
        await asyncio.sleep(seconds)

    return call


class GcClock:
    """Seconds spent in the garbage collector (gc.callbacks), to say where time goes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


GC = GcClock()


COLLECTOR: Callable[[], Any] = contextlib.nullcontext  # or frozen_heap: `--gc cli`


def time_plait(plan: CompiledPlan) -> tuple[float, float]:
    """(seconds, of which in the garbage collector) of one run."""
    runner = Runner(plan, {}, environ={}, warn=lambda _s: None)
    gc.collect()  # each side starts without the garbage of the run before
    gc_before = GC.seconds  # (after that collection: it is not the run's)
    t0 = time.perf_counter()
    with COLLECTOR():
        report = asyncio.run(runner.run())
    elapsed = time.perf_counter() - t0
    assert report.outcome == "succeeded", report.outcome
    return elapsed, GC.seconds - gc_before


def time_baseline(deps: dict[str, list[str]], call: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    with COLLECTOR():
        asyncio.run(baseline(deps, call))
    return time.perf_counter() - t0


def peak_memory_mb(plan: CompiledPlan) -> float:
    gc.collect()
    tracemalloc.start()
    runner = Runner(plan, {}, environ={}, warn=lambda _s: None)
    asyncio.run(runner.run())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def time_fold(plan: CompiledPlan) -> tuple[float, int]:
    """(seconds, events) to fold one run's own events into a fresh report and build it.

    The floor of the design (issue #13: every step makes its events, the report is their
    fold): what plait pays per step with no scheduling, no tool call and no event made,
    only the report's share. The events are recorded from a real run, then replayed."""
    events: list[Any] = []
    asyncio.run(Runner(plan, {}, environ={}, events=events.append, warn=lambda _s: None).run())
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        with COLLECTOR():
            builder = ReportBuilder()
            for event in events:
                builder.apply(event)
            builder.report()
        best = min(best, time.perf_counter() - t0)
    return best, len(events)


def best_plait(plan: CompiledPlan) -> tuple[float, float]:
    """Best of 3 plait runs: (seconds, of which in the garbage collector)."""
    return min(time_plait(plan) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gc", choices=["cli", "default", "both"], default="both")
    opts = parser.parse_args()
    global COLLECTOR
    for mode in ["default", "cli"] if opts.gc == "both" else [opts.gc]:
        COLLECTOR = frozen_heap if mode == "cli" else contextlib.nullcontext
        label = (
            "as `plait run` sets it (frozen_heap), both sides"
            if mode == "cli"
            else "CPython default"
        )
        print(f"--- collector: {label}")
        table()


def table() -> None:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'workload':<28}{'plait':>10}{'baseline':>10}{'ratio':>8}{'us/step':>10}{'plait gc':>10}"
    )
    for label, deps in [
        ("10,000 no-op fan-out", fan_out(10_000)),
        ("1,000-step chain", chain(1_000)),
    ]:
        plan = _plan(deps, "bench.noop", {"value": None})
        plait_s, gc_s = best_plait(plan)
        base_s = min(time_baseline(deps, _noop) for _ in range(3))
        n = len(deps)
        print(
            f"{label:<28}{plait_s:>9.3f}s{base_s:>9.3f}s{plait_s / base_s:>8.1f}"
            f"{(plait_s - base_s) / n * 1e6:>10.1f}{gc_s:>9.3f}s"
        )
        fold_s, count = time_fold(plan)
        print(
            f"{'  its report fold alone':<28}{fold_s:>9.3f}s{'':>10}{fold_s / base_s:>8.1f}"
            f"{fold_s / n * 1e6:>10.1f}   ({count / n:.0f} events a step, no scheduling)"
        )
    deps = random_dag(100)
    plan = _plan(deps, "std.sleep", {"seconds": 0.05})
    cp = critical_path(deps, 0.05)
    plait_s = min(time_plait(plan) for _ in range(3))[0]
    base_s = min(time_baseline(deps, _sleeper(0.05)) for _ in range(3))
    print(
        f"{'100-step DAG of 50ms sleeps':<28}{plait_s:>9.3f}s{base_s:>9.3f}s"
        f"{plait_s / base_s:>8.2f}   critical path {cp:.3f}s, makespan/cp "
        f"{plait_s / cp:.3f} (+{(plait_s - cp) * 1000:.0f} ms)"
    )
    mb = peak_memory_mb(_plan(fan_out(10_000), "bench.noop", {"value": None}))
    print(f"peak memory, 10,000-step plan (tracemalloc): {mb:.1f} MB")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
