"""plait beside LangGraph and Dask on the same three workloads, in one process each.

Workloads (bench/workloads.py): a 10,000-step fan-out and a 1,000-step chain of no-op steps,
and the 5x20 layered DAG of 50 ms sleeps (makespan against its 1.0 s critical path). Each
framework builds its graph first (not timed: plait's compile, LangGraph's `compile()`,
Dask's delayed graph), then runs it; the time of the run is the best of `--repeat`.

- plait: `Runner.run` of the compiled plan (the library path of `plait.run_plan`: typed
  events, report, no journal), steps `std.echo` / `std.sleep` (both async);
- LangGraph: a `StateGraph` with one async node per step, an edge per dependency (a node
  with several dependencies waits for all of them), run with `ainvoke`;
- Dask: one `dask.delayed` task per step, computed with the threaded scheduler (the sleep
  DAG with 5 workers, its width);
- asyncio: the hand-written baseline of bench/scheduler.py (a task per step).

Needs `bash bench/compare/setup.sh` first; run
`bench/compare/.venv/bin/python bench/compare/compare.py [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workloads import Deps, chain, critical_path_s, fan_out, layers

SLEEP_S = 0.05


def timed(run: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


# --- plait ----------------------------------------------------------------------------------


def plait_runner(deps: Deps, sleep_s: float | None) -> Callable[[], Any]:
    from plait.compiler.ir import CompiledPlan, LiteralExpr, Step
    from plait.runtime.api import Runner

    tool = "std.echo" if sleep_s is None else "std.sleep"
    args = {"value": LiteralExpr(value=None)}
    if sleep_s is not None:
        args["seconds"] = LiteralExpr(value=sleep_s)
    plan = CompiledPlan(
        plan="bench",
        steps={
            name: Step(name=name, tool=tool, depends_on=d, after=d, args=args)
            for name, d in deps.items()
        },
    )

    def run() -> None:
        report = asyncio.run(Runner(plan, {}, environ={}, warn=lambda _s: None).run())
        assert report.outcome == "succeeded", report.outcome

    return run


# --- LangGraph ------------------------------------------------------------------------------


class _State(TypedDict, total=False):
    x: int


def langgraph_runner(deps: Deps, sleep_s: float | None) -> Callable[[], Any]:
    from langgraph.graph import END, START, StateGraph

    async def node(_state: _State) -> dict[str, Any]:
        if sleep_s is not None:
            await asyncio.sleep(sleep_s)
        return {}

    builder = StateGraph(_State)
    for name in deps:
        builder.add_node(name, node)
    dependants = {name for d in deps.values() for name in d}
    for name, d in deps.items():
        if not d:
            builder.add_edge(START, name)
        elif len(d) == 1:
            builder.add_edge(d[0], name)
        else:
            builder.add_edge(list(d), name)  # waits for every one of them
        if name not in dependants:
            builder.add_edge(name, END)
    graph = builder.compile()
    config = {"recursion_limit": len(deps) + 10}

    def run() -> None:
        asyncio.run(graph.ainvoke({"x": 0}, config=config))

    return run


# --- Dask -----------------------------------------------------------------------------------


def dask_runner(deps: Deps, sleep_s: float | None) -> Callable[[], Any]:
    import dask
    from dask import delayed

    def task(*_deps: Any) -> None:
        if sleep_s is not None:
            time.sleep(sleep_s)

    tasks: dict[str, Any] = {}
    for name, d in deps.items():
        tasks[name] = delayed(task, pure=False)(*[tasks[x] for x in d], dask_key_name=name)
    workers = 5 if sleep_s is not None else None

    def run() -> None:
        dask.compute(*tasks.values(), scheduler="threads", num_workers=workers)

    return run


# --- the hand-written asyncio baseline ------------------------------------------------------


def asyncio_runner(deps: Deps, sleep_s: float | None) -> Callable[[], Any]:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = {name: loop.create_future() for name in deps}

        async def one(name: str) -> None:
            for d in deps[name]:
                await futures[d]
            if sleep_s is not None:
                await asyncio.sleep(sleep_s)
            futures[name].set_result(None)

        async with asyncio.TaskGroup() as tg:
            for name in deps:
                tg.create_task(one(name))

    return lambda: asyncio.run(main())


RUNNERS = {
    "plait": plait_runner,
    "LangGraph": langgraph_runner,
    "Dask": dask_runner,
    "asyncio (baseline)": asyncio_runner,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    work = [
        ("10,000-step no-op fan-out", fan_out(10_000), None),
        ("1,000-step no-op chain", chain(1_000), None),
        ("5x20 DAG of 50 ms sleeps", layers(5, 20), SLEEP_S),
    ]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| workload | " + " | ".join(RUNNERS) + " |")
    print("|---|" + "---|" * len(RUNNERS))
    for label, deps, sleep_s in work:
        cells = []
        for make in RUNNERS.values():
            t0 = time.perf_counter()
            run = make(deps, sleep_s)
            build = time.perf_counter() - t0
            seconds = timed(run, opts.repeat)
            if sleep_s is None:
                cells.append(
                    f"{seconds:.3f} s ({seconds / len(deps) * 1e6:.0f} µs/step;"
                    f" build {build:.2f} s)"
                )
            else:
                cp = critical_path_s(deps, sleep_s)
                cells.append(f"{seconds:.3f} s (cp {cp:.2f} s, +{(seconds - cp) * 1000:.0f} ms)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
