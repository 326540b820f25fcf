"""`plait run` as users run it: each workload in a fresh `plait` process, with the default
journal and with `--no-journal`.

Reports, per run: the in-run time (the report's `duration_s`: from `run_started` to
`run_finished`, without start-up and compile), the whole process's wall time, its peak
RSS (`wait4`), and the journal's size per step. The 5x20 DAG of 50 ms sleeps reports its
makespan against its critical path. Best of `--repeat` runs (default 3) per cell.
Run: `.venv/bin/python bench/cli.py` (add `--quick` for the chain and the DAG only;
`--tree DIR` measures another checkout's plait, for a before/after in one window;
`--spread N` lists N runs of the fan-out per cell, sorted, with their medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import chain, critical_path_s, fan_out, layers, plan_text

PLAIT = [sys.executable, "-m", "plait"]


@dataclass
class Run:
    in_run_s: float
    wall_s: float
    rss_mb: float
    journal_bytes: int


def run_once(plan: Path, folder: Path, journal: bool, tree: str | None = None) -> Run:
    """One `plait run` in a fresh process (a fresh journal each time); `tree`: run the
    plait of another checkout (put first on the child's PYTHONPATH) instead of this one."""
    db = folder / f"j-{time.monotonic_ns()}.db"
    args = [*PLAIT, "run", str(plan), "--quiet", "--json"]
    args += ["--journal", str(db)] if journal else ["--no-journal"]
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    # both streams to files: a pipe nobody reads fills up and blocks the child for good
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # (run from the temporary folder: `python -m` puts the current folder first on
        # sys.path, which would shadow `tree` when run from a checkout)
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=folder)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise SystemExit(f"plait run {plan} exited {proc.returncode}:\n{tail}")
        out.seek(0)
        report = json.loads(out.read())
    size = sum(p.stat().st_size for p in folder.glob(db.name + "*") if p.is_file())
    return Run(report["duration_s"], wall, usage.ru_maxrss / 1024, size)


def best(plan: Path, folder: Path, journal: bool, repeat: int, tree: str | None) -> Run:
    runs = [run_once(plan, folder, journal, tree) for _ in range(repeat)]
    return min(runs, key=lambda r: r.in_run_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--tree",
        metavar="DIR",
        help="measure the plait of another checkout (e.g. a `git worktree` of an older "
        "commit) with this interpreter, for a before/after in one window",
    )
    parser.add_argument(
        "--spread",
        metavar="N",
        type=int,
        help="instead: N runs of the fan-out with the journal and N without, alternated "
        "(and with --tree, N of that tree's too), each in-run time listed sorted, with the "
        "medians: one run's time moves by up to half from run to run, more than a best of 3 "
        "can settle",
    )
    opts = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if opts.spread:
        spread(opts.spread, opts.tree)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        work = [("chain", chain(1_000), None), ("dag", layers(5, 20), 0.05)]
        if not opts.quick:
            work.insert(0, ("fanout", fan_out(10_000), None))
        print(
            f"{'workload':<30}{'journal':>9}{'in-run':>9}{'us/step':>9}{'wall':>8}"
            f"{'peak RSS':>10}{'journal/step':>14}"
        )
        for name, deps, sleep in work:
            plan = folder / f"{name}.agent"
            plan.write_text(plan_text(name, deps, sleep))
            n = len(deps)
            cells = {j: best(plan, folder, j, opts.repeat, opts.tree) for j in (True, False)}
            for journal, r in cells.items():
                per_step = f"{r.journal_bytes / n:.0f} B" if journal else "-"
                print(
                    f"{name + f' ({n} steps)':<30}{'on' if journal else 'off':>9}"
                    f"{r.in_run_s:>8.3f}s{r.in_run_s / n * 1e6:>9.1f}{r.wall_s:>7.2f}s"
                    f"{r.rss_mb:>8.1f}MB{per_step:>14}"
                )
            ratio = cells[True].in_run_s / cells[False].in_run_s
            print(f"{'':<30}journal / no journal: {ratio:.2f}x")
            if sleep is not None:
                cp = critical_path_s(deps, sleep)
                for journal, r in cells.items():
                    print(
                        f"{'':<30}makespan {r.in_run_s:.3f}s, critical path {cp:.3f}s "
                        f"(+{(r.in_run_s / cp - 1) * 100:.1f}%, "
                        f"+{(r.in_run_s - cp) * 1000:.0f} ms) journal "
                        f"{'on' if journal else 'off'}"
                    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def spread(n: int, tree: str | None) -> None:
    """`--spread N`: the fan-out's in-run times, N alternated runs per cell, sorted."""
    trees = [("this", None)] + ([("--tree", tree)] if tree else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan = folder / "fanout.agent"
        deps = fan_out(10_000)
        plan.write_text(plan_text("fanout", deps))
        times: dict[tuple[str, bool], list[float]] = {}
        for _ in range(n):
            for label, where in trees:
                for journal in (True, False):
                    run = run_once(plan, folder, journal, where)
                    times.setdefault((label, journal), []).append(run.in_run_s)
        steps = len(deps)
        for label, _ in trees:
            medians = {}
            for journal in (True, False):
                cell = sorted(times[label, journal])
                medians[journal] = statistics.median(cell)
                listed = " ".join(f"{t / steps * 1e6:.1f}" for t in cell)
                print(
                    f"{label:<7} journal {'on ' if journal else 'off'} us/step: {listed}"
                    f"  (median {medians[journal] / steps * 1e6:.1f})"
                )
            print(
                f"{label:<7} medians, journal / no journal: {medians[True] / medians[False]:.2f}x"
            )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
