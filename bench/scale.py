"""Scaling out: `plait batch` locally and on Ray, against a shell loop of `plait run`, and a
CPU-bound plan on 1 and 2 Ray workers. Prints a Markdown table (bench/README.md keeps one).

    python bench/scale.py                  # everything (needs `pip install plait[ray]`)
    python bench/scale.py --runs 200       # a smaller batch
    python bench/scale.py --only local     # skip Ray

One local Ray (`ray.init(num_cpus=2)`) is started here and the commands join it with
`--address`, so its start-up is measured once, apart. The shell loop is measured on a sample
of runs and extrapolated (said so in the table). A resource actor's round-trip rate and the
driver's cost per line are measured too: they are what limits a large cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PLAIT = str(Path(sys.executable).parent / "plait")

CHAIN = """plan chain {
  input n: int
%s  output out = s10.output
}
"""

CPU_TOOLS = """
import plait

@plait.tool(name="cpu.burn")
def burn(n: int) -> int:
    x = 0
    for i in range(n):
        x += i % 7
    return x
"""

CPU_PLAN = """plan cpu {
  use "./tools.py"
  input n: int
  step a = cpu.burn(n = %d)
  output out = a.output
}
"""


def chain_plan(steps: int = 10, sleep_s: float = 0.02) -> str:
    lines = []
    for i in range(1, steps + 1):
        value = "n" if i == 1 else f"s{i - 1}.output"
        lines.append(f"  step s{i} = std.sleep(seconds = {sleep_s}, value = {value})\n")
    return CHAIN % "".join(lines)


def write(folder: Path, plan: str, runs: int, tools: str | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.agent").write_text(plan)
    if tools:
        (folder / "tools.py").write_text(tools)
    inputs = folder / "in.jsonl"
    inputs.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(runs)))
    return folder / "plan.agent", inputs


def timed(args: list[str]) -> tuple[float, dict[str, Any]]:
    """Wall seconds, and the JSON summary with `cpu_s`: the command's own CPU time (the
    driver's: Ray workers are the raylet's children, not ours)."""
    before = _children_cpu()
    start = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    summary = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    summary["cpu_s"] = _children_cpu() - before
    return wall, summary


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch(plan: Path, inputs: Path, out: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    out.unlink(missing_ok=True)
    return timed(
        [
            PLAIT,
            "batch",
            str(plan),
            "--inputs",
            str(inputs),
            "-o",
            str(out),
            "--quiet",
            "--json",
            *extra,
        ]
    )


def shell_loop(plan: Path, sample: int) -> float:
    """Seconds per `plait run` started from a shell loop (measured on `sample` runs)."""
    start = time.perf_counter()
    for i in range(sample):
        subprocess.run(
            [PLAIT, "run", str(plan), "--input", f"n={i}", "--quiet", "--no-journal"],
            check=True,
            capture_output=True,
        )
    return (time.perf_counter() - start) / sample


def actor_round_trips(ray: Any, seconds: float = 3.0, callers: int = 64) -> float:
    """Breaker admissions per second one resource actor serves (admit + record = 2 calls)."""
    from plait.compiler.ir import BreakerPolicy
    from plait.runtime.executors.ray import ResourceState

    actor = (
        ray.remote(num_cpus=0)(ResourceState)
        .options(max_concurrency=10_000)
        .remote("bench", None, None, BreakerPolicy(failures=5, cooldown_s=30))
    )

    async def caller(stop: float, counts: list[int], k: int) -> None:
        while time.perf_counter() < stop:
            ticket = f"{k}-{counts[k]}"
            await actor.admit.remote(ticket)
            await actor.record.remote(ticket, None)
            counts[k] += 1

    async def drive() -> int:
        counts = [0] * callers
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(caller(stop, counts, k) for k in range(callers)))
        return sum(counts)

    done = asyncio.run(drive())
    ray.kill(actor)
    return 2 * done / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=20, help="shell-loop runs actually made")
    ap.add_argument("--cpu-lines", type=int, default=16)
    ap.add_argument("--burn", type=int, default=10_000_000)
    ap.add_argument("--only", choices=["local", "ray", "all"], default="all")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plait-scale-"))
    rows: list[tuple[str, str]] = []
    plan, inputs = write(tmp / "chain", chain_plan(), args.runs)
    out = tmp / "chain" / "out.jsonl"
    n = args.runs
    for conc in (32, 128) if args.only != "ray" else ():
        wall, s = batch(plan, inputs, out, "--concurrency", str(conc))
        rows.append(
            (
                f"batch local, --concurrency {conc}",
                f"{wall:.1f} s ({n / wall:.0f} runs/s; p50 {s['duration_p50_s']:.3f} s;"
                f" {1000 * s['cpu_s'] / n:.1f} ms CPU per run)",
            )
        )
    if args.only != "ray":
        per_run = shell_loop(plan, args.sample)
        rows.append(
            (
                f"shell loop of `plait run --no-journal` ({args.sample} runs measured, "
                f"x{n / args.sample:g})",
                f"{per_run * n:.0f} s extrapolated ({per_run:.2f} s per run)",
            )
        )
    if args.only != "local":
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        rows.append(("local Ray start-up (once)", f"{time.perf_counter() - t0:.1f} s"))
        address = ray.get_runtime_context().gcs_address
        ray_args = ["--executor", "ray", "--address", address]
        for conc in (64, 256):
            wall, s = batch(
                plan, inputs, out, *ray_args, "--workers", "2", "--concurrency", str(conc)
            )
            rows.append(
                (
                    f"batch ray, 2 workers, --concurrency {conc}",
                    f"{s['wall_s']:.1f} s once workers are up ({wall:.1f} s in all; "
                    f"{n / s['wall_s']:.0f} runs/s; driver "
                    f"{1000 * s['cpu_s'] / n:.2f} ms CPU per line, start-up included)",
                )
            )
        cplan, cinputs = write(tmp / "cpu", CPU_PLAN % args.burn, args.cpu_lines, CPU_TOOLS)
        cout = tmp / "cpu" / "out.jsonl"
        wall, s = batch(cplan, cinputs, cout, "--concurrency", "8")
        rows.append(
            (f"CPU plan, {args.cpu_lines} runs, batch local (one process)", f"{s['wall_s']:.1f} s")
        )
        for workers in (1, 2):
            wall, s = batch(
                cplan, cinputs, cout, *ray_args, "--workers", str(workers), "--concurrency", "8"
            )
            rows.append(
                (
                    f"CPU plan, {args.cpu_lines} runs, batch ray --workers {workers}",
                    f"{s['wall_s']:.1f} s once workers are up ({wall:.1f} s in all)",
                )
            )
        rate = actor_round_trips(ray)
        rows.append(("resource actor: calls served per second (64 callers)", f"{rate:.0f} calls/s"))
        ray.shutdown()
    load = os.getloadavg()[0]
    print(f"| what | result (load average {load:.1f}, {os.cpu_count()} cores) |")
    print("|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
