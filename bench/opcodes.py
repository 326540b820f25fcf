"""Python opcodes per step of a run, counted exactly: a measure the shared CPU cannot move.

Timings on this machine move by up to 50% with the host's load, so a change worth a few
percent cannot be seen in them. This counts the Python opcodes a run executes
(`sys.settrace` with opcode events; ~50x slower, so keep N small) and divides by the number
of steps; work done in C (dict copies, pydantic-core, the allocator) is not counted, so it is
a proxy for the Python-level work, not for time. Same workloads as bench/scheduler.py.

    .venv/bin/python bench/opcodes.py                 # fan-out of 1,000 and a 300-step chain
    .venv/bin/python bench/opcodes.py chain 300 --top 25   # with the top functions
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scheduler as workloads  # bench/scheduler.py: the plans and the tool

from plait.runtime.api import Runner


def count(shape: str, n: int) -> collections.Counter[CodeType]:
    """Opcodes executed per code object during one run of the workload."""
    deps = workloads.fan_out(n) if shape == "fan" else workloads.chain(n)
    plan = workloads._plan(deps, "bench.noop", {"value": None})
    warm = workloads._plan(workloads.fan_out(3), "bench.noop", {"value": None})
    asyncio.run(Runner(warm, {}, environ={}, warn=lambda _s: None).run())  # one-time costs
    counts: collections.Counter[CodeType] = collections.Counter()

    def per_opcode(frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "opcode":
            counts[frame.f_code] += 1
        return per_opcode

    def on_call(frame: FrameType, _event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return per_opcode

    runner = Runner(plan, {}, environ={}, warn=lambda _s: None)

    async def traced() -> None:
        sys.settrace(on_call)
        try:
            await runner.run()
        finally:
            sys.settrace(None)

    asyncio.run(traced())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", nargs="?", choices=("fan", "chain"))
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("--top", type=int, default=0, help="also list the N busiest functions")
    args = parser.parse_args()
    runs = [(args.shape, args.n or 1000)] if args.shape else [("fan", 1000), ("chain", 300)]
    for shape, n in runs:
        counts = count(shape, n)
        print(f"{shape} of {n}: {sum(counts.values()) / n:,.0f} opcodes/step")
        for code, c in counts.most_common(args.top):
            where = f"{Path(code.co_filename).name}:{code.co_firstlineno}"
            print(f"  {c / n:8.1f}  {code.co_name} ({where})")


if __name__ == "__main__":
    main()
