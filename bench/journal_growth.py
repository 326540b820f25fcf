"""Does a run's journal cost grow with the runs already in the journal?

Runs a fan-out plan (10,000 steps by default) `--runs` times into ONE journal, each run in a
fresh `Journal` (as each `plait run` opens its own), and prints per run the CPU time of the
journal's writer thread (`plait-journal`: every event and step row of the run), the run's
wall time, and the writer's time as a ratio to run 1's. With `--ids descending` (default)
each run's id sorts before every earlier run's, the case that used to be slow (schema 4 and
before: each insert of the run read the next run's `run_started` row whole, ~800 KB at
10,000 steps); `--ids random` gives ids as plait does. A flat ratio column means the
journal's size and the ids' order do not matter.

Run: `.venv/bin/python bench/journal_growth.py` (`--tree DIR` measures another checkout's
plait, for a before/after in one window; `--journal PATH` keeps the file to look at).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _writer_cpu_s() -> float:
    """CPU seconds of the journal's writer thread (alive until its journal is closed)."""
    writers = [t for t in threading.enumerate() if t.name == "plait-journal"]
    if len(writers) != 1 or writers[0].ident is None:
        raise SystemExit(f"expected one live plait-journal thread, found {len(writers)}")
    return time.clock_gettime(time.pthread_getcpuclockid(writers[0].ident))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ids", choices=("descending", "random"), default="descending")
    parser.add_argument("--tree", help="import plait from this checkout instead")
    parser.add_argument("--journal", type=Path, help="the journal file (default: a temporary)")
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, str(Path(args.tree).resolve()))
    sys.path.insert(0, str(HERE))
    from workloads import fan_out, plan_text

    import plait
    from plait.runtime.journal import SCHEMA_VERSION, Journal
    from plait.runtime.session import RunSession

    with tempfile.TemporaryDirectory(prefix="plait-growth-") as tmp:  # (removed after)
        folder = Path(tmp)
        plan = folder / "fan.agent"
        plan.write_text(plan_text("fanout", fan_out(args.steps)))
        db = args.journal or folder / "journal.db"
        rng = random.Random(7)
        ids = [
            f"{15 - n:x}{n:015x}" if args.ids == "descending" else f"{rng.getrandbits(64):016x}"
            for n in range(args.runs)
        ]
        print(
            f"plait {Path(plait.__file__).parent.parent} (journal schema {SCHEMA_VERSION}),"
            f" {args.steps}-step fan-out, {args.runs} runs into one journal, ids {args.ids}"
        )
        print("run  id                writer CPU s  ratio to run 1  run wall s  journal MB")
        first = None
        for n, run_id in enumerate(ids, 1):
            t0 = time.perf_counter()
            with Journal.open(db) as journal:
                report = RunSession.start(
                    plan, journal=journal, run_id=run_id, environ={}
                ).run_sync()
                journal.flush()
                writer_s = _writer_cpu_s()
            wall = time.perf_counter() - t0
            if report.outcome != "succeeded":
                raise SystemExit(f"run {n} {report.outcome}")
            first = first or writer_s
            size = (
                sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if os.path.exists(p)) / 1e6
            )
            print(
                f"{n:>3}  {run_id}  {writer_s:12.3f}  {writer_s / first:14.2f}"
                f"  {wall:10.2f}  {size:10.1f}",
                flush=True,
            )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
