"""Peak RSS of `plait run` as users run it, and where in the run the high-water mark rises.

Default: the 10,000-step `std.echo` fan-out (bench/workloads.py) in fresh `plait run`
processes, with the journal on and off, each with the output options a user would pass
(`--json` on stdout; `--report FILE --events FILE`); per cell the largest and smallest
peak RSS (`wait4`'s `ru_maxrss`) of `--repeat` runs. The goal (issue #13) is under 100 MB.

`--stages`: one run in this process through the library calls `plait run` makes (compile,
`Runner`, the run, the report written to a file), printing VmHWM / VmRSS from
/proc/self/status after each, to see which stage sets the mark.

Run: `.venv/bin/python bench/rss.py [--repeat 3] [--steps 10000] [--stages]`
(`--tree DIR` measures another checkout's plait, for a before/after in one window).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import fan_out, plan_text

OUTPUTS = {"--json": ["--json"], "--report --events": ["--report", "r.json", "--events", "e.jsonl"]}


def peak_rss_mb(args: list[str], folder: Path, tree: str | None) -> float:
    """One `plait run` in a fresh process; its peak RSS in MB."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plait", "run", *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=folder,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"plait run {args} failed:\n{err.read()[-2000:].decode()}")
    return usage.ru_maxrss / 1024


def table(steps: int, repeat: int, tree: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan = folder / "fanout.agent"
        plan.write_text(plan_text("fanout", fan_out(steps)))
        print(f"{'outputs':<22}{'journal':>9}{'peak RSS max':>14}{'min':>9}")
        for label, outputs in OUTPUTS.items():
            for journal in (True, False):
                where = ["--journal", str(folder / f"j{time.monotonic_ns()}.db")]
                args = [str(plan), "--quiet", *outputs, *(where if journal else ["--no-journal"])]
                runs = [peak_rss_mb(args, folder, tree) for _ in range(repeat)]
                print(
                    f"{label:<22}{'on' if journal else 'off':>9}"
                    f"{max(runs):>11.1f} MB{min(runs):>6.1f} MB"
                )


def _status() -> str:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return f"VmHWM {int(fields['VmHWM'].split()[0]) / 1024:6.1f} MB  VmRSS " + (
        f"{int(fields['VmRSS'].split()[0]) / 1024:6.1f} MB"
    )


def stages(steps: int) -> None:
    """The library calls of `plait run PLAN --no-journal --report FILE`, one at a time."""
    t0 = time.perf_counter()

    def mark(label: str) -> None:
        print(f"{time.perf_counter() - t0:6.2f}s  {_status()}  {label}")

    mark("interpreter")
    import asyncio

    from plait.runtime.api import Runner, load_plan
    from plait.runtime.gcscope import frozen_heap
    from plait.runtime.report_json import write_report_json

    mark("imports (plait.runtime.api)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fanout.agent"
        path.write_text(plan_text("fanout", fan_out(steps)))
        plan = load_plan(path)
        mark("compiled (parse, lower, checks, edges)")
        runner = Runner(plan, {})
        mark("Runner (inputs, tools)")
        with frozen_heap():
            report = asyncio.run(runner.run())
        mark("run and report built")
        with open(Path(tmp) / "report.json", "w", encoding="utf-8") as handle:
            write_report_json(report, handle)
        mark("report written")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--tree", metavar="DIR", help="measure another checkout's plait")
    opts = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if opts.stages:
        stages(opts.steps)
    else:
        table(opts.steps, opts.repeat, opts.tree)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
