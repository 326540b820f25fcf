"""SPEC section 10 across `plait resume`, through the real command line: a run is stopped
mid-way with SIGTERM, then resumed. Idempotency keys stay the same across retries and the
resume; expired `fresh` data is read again instead of reused; compensations a run still
owes run on a resume that fails; a step run again keeps its later result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait.runtime.journal import Journal, run_report
from tests.consistency.conftest import Planner
from tests.servers import TestServer, VersionedStore

pytestmark = pytest.mark.timeout(90)

TOOLS = """
import json, os, time
import plait

HERE = os.path.dirname(__file__)

def _log(name, value):
    with open(os.path.join(HERE, name), "a") as f:
        f.write(json.dumps(value) + "\\n")

@plait.tool(name="t.undo")
def undo(what: object, hold: bool = False) -> str:
    _log("undo.log", what)
    while hold and os.path.exists(os.path.join(HERE, "hold")):
        time.sleep(0.05)
    return "undone"

@plait.tool(name="t.count")
def count() -> int:
    _log("reads.log", 1)
    with open(os.path.join(HERE, "reads.log")) as f:
        return len(f.readlines())

@plait.tool(name="t.slow")
def slow(fail: bool = False) -> int:
    # holds while the file `hold` exists, so the test can stop the run here
    _log("slow.log", 1)
    while os.path.exists(os.path.join(HERE, "hold")):
        time.sleep(0.05)
    if fail:
        raise plait.Permanent("declined")
    return 1
"""


def lines(path: Path) -> list[Any]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def plait_cli(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "plait", *args, "--quiet", "--journal", str(folder / "j.db")],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def stop_when(folder: Path, proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> int:
    """SIGTERM the run once `ready()`; its exit code."""
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def run_then_stop(folder: Path, plan: str, ready: Callable[[], bool]) -> tuple[str, dict[str, Any]]:
    """Run `plan` (with TOOLS) until `ready()`, stop it; its run id and report."""
    (folder / "tools.py").write_text(TOOLS)
    (folder / "plan.agent").write_text(plan)
    report = folder / "first.json"
    proc = plait_cli(folder, "run", "plan.agent", "--report", str(report))
    assert stop_when(folder, proc, ready) == 143
    data = json.loads(report.read_text())
    return data["run_id"], data


def resume(folder: Path, run_id: str) -> tuple[int, dict[str, Any]]:
    report = folder / "resumed.json"
    proc = plait_cli(folder, "resume", run_id, "--report", str(report))
    code = proc.wait(timeout=60)
    assert report.exists(), proc.stderr.read() if proc.stderr else ""
    return code, json.loads(report.read_text())


def test_idempotency_keys_are_equal_across_retries_and_resume(tmp_path: Path) -> None:
    with TestServer() as server:
        url = server.url("/flaky/pay?fail=2&code=503")
        plan = f"""
plan pay {{
  step charge = http.post(url = "{url}", json = {{amount: 5}}) {{ retry 3 backoff 2s }}
}}
"""
        run_id, first = run_then_stop(tmp_path, plan, lambda: server.count("/flaky/pay") >= 1)
        assert first["steps"]["charge"]["status"] == "cancelled"
        code, report = resume(tmp_path, run_id)
        assert code == 0, report
        keys = [r.headers.get("idempotency-key") for r in server.requests]
    assert len(keys) == 3  # a 503 before the stop, a 503 and the success after it
    assert keys == [f"{run_id}:charge"] * 3


def test_resume_reads_expired_fresh_data_again(tmp_path: Path) -> None:
    (tmp_path / "hold").write_text("x")
    plan = """
plan fresh {
  use "./tools.py"
  step src = t.count() { fresh 1s }
  step kept = std.echo(value = src.output)
  step slow = t.slow() { after kept }
  step reader = std.echo(value = src.output) { after slow }
}
"""
    run_id, first = run_then_stop(tmp_path, plan, lambda: (tmp_path / "slow.log").exists())
    assert first["steps"]["src"]["output"] == 1
    time.sleep(1.5)  # the recorded read is now older than its bound
    (tmp_path / "hold").unlink()
    code, report = resume(tmp_path, run_id)
    assert code == 0, report
    assert report["steps"]["reader"]["output"] == 2  # read again, not reused
    assert report["steps"]["kept"]["output"] == 1  # finished before: kept as it was
    assert report["steps"]["src"]["executions"] == 2
    assert len(lines(tmp_path / "reads.log")) == 2
    with Journal.open(tmp_path / "j.db") as journal:  # the whole run, both sessions
        whole = run_report(journal, run_id)
        assert journal.finished_steps(run_id)["src"]["execution"] == 2
    assert (whole.steps["src"].executions, whole.steps["src"].output) == (2, 2)


def test_a_failed_resume_runs_the_compensations_the_run_still_owes(tmp_path: Path) -> None:
    (tmp_path / "hold").write_text("x")
    plan = """
plan owed {
  use "./tools.py"
  step a = std.echo(value = "A") { compensate undo_a }
  step undo_a = t.undo(what = a.output) { timeout 10s }
  step mark = file.write(path = "started", content = "x") { after a }
  step pay = t.slow(fail = true) { after mark }
}
"""
    run_id, first = run_then_stop(tmp_path, plan, lambda: (tmp_path / "started").exists())
    assert [(c["step"], c["status"]) for c in first["compensations"]] == [("a", "pending")]
    assert lines(tmp_path / "undo.log") == []
    (tmp_path / "hold").unlink()
    code, report = resume(tmp_path, run_id)
    assert code == 1 and report["outcome"] == "failed"
    assert lines(tmp_path / "undo.log") == ["A"]
    assert [(c["step"], c["status"]) for c in report["compensations"]] == [("a", "succeeded")]


def test_a_resume_skips_compensations_recorded_succeeded(tmp_path: Path) -> None:
    """Stopped during its compensations: `c`'s undo succeeded, `b`'s was running (cancelled),
    `a`'s pending. The resume (the run still fails) runs `b`'s and `a`'s only."""
    plan = """
plan saga {
  use "./tools.py"
  step a = std.echo(value = "A") { compensate undo_a }
  step undo_a = t.undo(what = "A") { timeout 10s }
  step b = std.echo(value = "B") { after a; compensate undo_b }
  step undo_b = t.undo(what = "B", hold = true) { timeout 20s }
  step c = std.echo(value = "C") { after b; compensate undo_c }
  step undo_c = t.undo(what = "C") { timeout 10s }
  step pay = std.fail(message = "declined", kind = "permanent") { after c }
}
"""
    (tmp_path / "hold").write_text("x")
    run_id, first = run_then_stop(tmp_path, plan, lambda: len(lines(tmp_path / "undo.log")) >= 2)
    assert [(c["step"], c["status"]) for c in first["compensations"]] == [
        ("c", "succeeded"),
        ("b", "cancelled"),
        ("a", "pending"),
    ]
    (tmp_path / "hold").unlink()
    code, report = resume(tmp_path, run_id)
    assert code == 1 and report["outcome"] == "failed"
    assert lines(tmp_path / "undo.log") == ["C", "B", "B", "A"]
    assert [(c["step"], c["status"]) for c in report["compensations"]] == [
        ("b", "succeeded"),
        ("a", "succeeded"),
    ]


def test_a_step_run_again_is_journaled_with_its_later_result(
    planner: Planner, store: VersionedStore
) -> None:
    """A re-decision runs the read again: the journal keeps its later output, which is what a
    resume would seed."""
    store.records["c"] = {"n": 0}
    store.readers_meet = 2  # both reads see the first version, whatever the load
    url = store.url("/records/c")
    journal = planner.folder / "j.db"
    ran = planner.run(
        f"""
        plan two {{
          step read_a = http.get(url = "{url}")
          step read_b = http.get(url = "{url}")
          step put_a = http.put(url = "{url}", json = {{by: "a"}}, if_match = read_a.version) {{
            retry 3 on stale backoff 0ms
          }}
          step put_b = http.put(url = "{url}", json = {{by: "b"}}, if_match = read_b.version) {{
            retry 3 on stale backoff 0ms
          }}
        }}
        """,
        journal=str(journal),
    )
    assert ran.report.outcome == "succeeded" and store.conflicts == 1
    loser = "a" if ran.step("put_a").redecisions else "b"
    with Journal.open(journal) as opened:
        record = opened.finished_steps(ran.report.run_id)[f"read_{loser}"]
    assert record["output"] == ran.step(f"read_{loser}").output
    assert record["output"]["body"] != {"n": 0}  # the later read, after the winner's write
